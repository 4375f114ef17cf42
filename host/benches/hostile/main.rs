//! The "under load" benchmark of issue 6, run by `cargo xtask bench hostile`: each scenario a
//! pair of windows, baseline then loaded, on the shipped scheduler, run and runtime settings.
//!
//! - `noisy`: well-behaved passthrough projects of several tenants, without and then with one more
//!   tenant whose projects run the hostile fixture (busy loop, memory bomb, oversized output).
//! - `budget`: the same well-behaved projects beside several hostile tenants whose projects hold
//!   memory until their deadline (`memory-hog`), without a plugin memory budget to speak of (one
//!   as large as every run in flight at its memory limit), then with the shipped budget.
//! - `control`: a fleet polling at `rate(1 second)` with the API served on loopback, without and
//!   then with a separate process sending a mix of API requests open-loop (`apiload.rs`).
//!
//! Settings are flags: `cargo bench -p sluice-host --bench hostile -- --help` lists them with
//! their units and defaults; `cargo xtask bench hostile -- <flags>` passes them on.
//!
//! The binary is built from the data-plane bench's modules (`host/benches/dataplane/`: the peer,
//! the Sluice side and its fleet, the measurements, the orchestrator's plumbing and the handoff
//! to its children) plus the scenarios here, their tables (`tables.rs`) and the API load
//! generator. Like the data-plane bench it plays several roles, each side a process of its own:
//! the orchestrator when started with flags, and the `peer`, `sluice` and `apiload` children,
//! which learn their role and settings from one internal handoff, a serialized `Child` in the
//! environment variable `SLUICE_BENCH_CHILD` (`../dataplane/child.rs`). The load generator is
//! started by the Sluice child that serves the API it loads, once that child's warm-up is over.

use clap::Parser;

#[path = "../dataplane/child.rs"]
mod child;
#[path = "../dataplane/common.rs"]
mod common;
#[path = "../dataplane/fleet.rs"]
mod fleet;
#[path = "../dataplane/history.rs"]
mod history;
#[path = "../dataplane/measure.rs"]
mod measure;
#[path = "../dataplane/orchestrator.rs"]
mod orchestrator;
#[path = "../dataplane/peer.rs"]
mod peer;
#[path = "../dataplane/sluice_side.rs"]
mod sluice_side;

mod apiload;
mod tables;

use apiload::apiload_side;
use child::*;
use common::*;
use measure::*;
use orchestrator::*;
use peer::*;

/// Under-load benchmark: well-behaved projects beside noisy neighbours, beside several tenants
/// holding plugin memory, and beside API load, each scenario a pair of windows (baseline, then
/// loaded) on the shipped settings, each side a process of its own.
#[derive(Parser)]
#[command(name = "hostile", bin_name = "cargo bench -p sluice-host --bench hostile --")]
struct Args {
    /// Which scenarios to run, comma-separated
    #[arg(long, value_name = "SIDE,...", value_delimiter = ',', default_value = "noisy,budget,control")]
    sides: Vec<Side>,

    /// Hostile projects of the noisy tenant
    #[arg(long, value_name = "N", default_value_t = 50, help_heading = "Noisy neighbours (`noisy`)")]
    noisy: usize,
    /// Tenants of the well-behaved projects (also in `budget`)
    #[arg(long, value_name = "T", default_value_t = 4, value_parser = at_least_one, help_heading = "Noisy neighbours (`noisy`)")]
    noisy_tenants: usize,
    /// Well-behaved passthrough projects per tenant, at rate(1 second) (also in `budget`)
    #[arg(long, value_name = "N", default_value_t = 50, help_heading = "Noisy neighbours (`noisy`)")]
    noisy_well_per_tenant: usize,
    /// Measured window, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 120, help_heading = "Noisy neighbours (`noisy`)")]
    noisy_window_s: u64,
    /// The hostile fixture's behaviours the noisy projects cycle through, comma-separated
    #[arg(
        long,
        value_name = "MODE,...",
        value_delimiter = ',',
        value_parser = clap::builder::NonEmptyStringValueParser::new(),
        default_value = "busy-loop,memory-bomb,big-output",
        help_heading = "Noisy neighbours (`noisy`)"
    )]
    noisy_modes: Vec<String>,
    /// MiB of 1 MiB records a `big-output` run returns: 100 outgrows the 64 MiB memory cap before
    /// the 16 MiB output cap, which a value under about 60 exercises
    #[arg(long, value_name = "MIB", default_value_t = 100, help_heading = "Noisy neighbours (`noisy`)")]
    noisy_output_mb: u32,

    /// Memory-hog projects, over all the hostile tenants
    #[arg(long, value_name = "N", default_value_t = 40, help_heading = "Memory budget (`budget`)")]
    budget_noisy: usize,
    /// Hostile tenants
    #[arg(long, value_name = "T", default_value_t = 4, value_parser = at_least_one, help_heading = "Memory budget (`budget`)")]
    budget_tenants: usize,
    /// Measured window, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 60, help_heading = "Memory budget (`budget`)")]
    budget_window_s: u64,
    /// MiB a `memory-hog` project holds until its deadline
    #[arg(long, value_name = "MIB", default_value_t = 48, help_heading = "Memory budget (`budget`)")]
    noisy_hog_mb: u32,

    /// Fleet sizes, in projects at rate(1 second), comma-separated, each measured as a pair: the
    /// default shows the API beside a data plane that holds its schedule and beside a saturated one
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "1000,2000",
        help_heading = "Control plane under load (`control`)"
    )]
    control_sizes: Vec<usize>,
    /// Tenants the fleet is dealt out to
    #[arg(long, value_name = "T", default_value_t = 10, value_parser = at_least_one, help_heading = "Control plane under load (`control`)")]
    control_tenants: usize,
    /// API requests per second from the load generator, open-loop
    #[arg(long, value_name = "PER_S", default_value_t = 500.0, help_heading = "Control plane under load (`control`)")]
    api_rate: f64,
    /// Measured window, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 30, help_heading = "Control plane under load (`control`)")]
    control_window_s: u64,

    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Side {
    /// Well-behaved tenants alone, then beside a tenant of hostile projects
    Noisy,
    /// Beside several memory-hogging tenants, with a budget as large as the old bound, then the
    /// shipped one
    Budget,
    /// The API on loopback idle, then under load from another process, at each control size
    Control,
}

fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        parsed => parsed.map_err(|e| e.to_string()),
    }
}

fn main() {
    match Child::from_env().map(Child::enter) {
        None => orchestrate(Args::parse()),
        Some(Role::Apiload { plan }) => run_side(apiload_side(plan)),
        Some(role) => play_shared(role),
    }
}

fn orchestrate(args: Args) {
    let scenarios = scenarios(&args);
    let results = run_scenarios("hostile", &scenarios);
    tables::print(&results);
}

/// The settings of a Sluice child for a scenario of `kind`: `n` well-behaved projects over
/// `tenants`, a window of `window_s`, the shipped scheduler caps; the scenario sets the rest.
fn sluice_settings(args: &Args, kind: &str, n: usize, tenants: usize, window_s: u64) -> SluiceSettings {
    let shipped = SchedulerConfig::default();
    SluiceSettings {
        kind: kind.into(),
        n,
        tenants,
        window: Duration::from_secs(window_s),
        concurrency: shipped.max_concurrent_runs,
        per_tenant: shipped.max_concurrent_runs_per_tenant,
        warmup: Duration::from_secs(5),
        noisy_modes: args.noisy_modes.clone(),
        output_mb: args.noisy_output_mb,
        hog_mb: args.noisy_hog_mb,
        perf: args.common.perf.clone(),
        lags: args.common.lags.clone(),
        ..SluiceSettings::default()
    }
}

/// The scenarios `args.sides` asks for, each as a pair: baseline, then loaded.
fn scenarios(args: &Args) -> Vec<Scenario> {
    let shipped = SchedulerConfig::default();
    let mut scenarios = Vec::new();
    let (tenants, per_tenant) = (args.noisy_tenants, args.noisy_well_per_tenant);
    if args.sides.contains(&Side::Noisy) {
        let n = tenants * per_tenant;
        for with in [0, args.noisy] {
            scenarios.push(Scenario {
                label: format!(
                    "{tenants} tenants x {per_tenant} passthrough projects at rate(1 second), shipped settings, {}",
                    if with == 0 {
                        "alone".to_string()
                    } else {
                        format!("beside a tenant with {with} hostile projects")
                    }
                ),
                role: Role::Sluice(SluiceSettings {
                    noisy: with,
                    ..sluice_settings(args, "noisy", n, tenants, args.noisy_window_s)
                }),
            });
        }
    }
    if args.sides.contains(&Side::Budget) {
        let (noisy, hostile_tenants) = (args.budget_noisy, args.budget_tenants);
        let runtime = sluice::runtime::RuntimeConfig::default();
        // What bounded plugin memory before the budget: every run in flight at its memory limit.
        let unbounded_mib = (shipped.max_concurrent_runs as u64 * runtime.limits.memory_bytes) >> 20;
        let shipped_mib = runtime.memory_budget_bytes >> 20;
        let n = tenants * per_tenant;
        for budget_mib in [unbounded_mib, shipped_mib] {
            scenarios.push(Scenario {
                label: format!(
                    "{tenants} tenants x {per_tenant} passthrough projects at rate(1 second) beside {hostile_tenants} \
                     tenants with {noisy} memory-hog projects in all, plugin memory budget {budget_mib} MiB"
                ),
                role: Role::Sluice(SluiceSettings {
                    noisy,
                    noisy_tenants: hostile_tenants,
                    noisy_modes: vec!["memory-hog".into()],
                    memory_budget_bytes: Some(budget_mib << 20),
                    ..sluice_settings(args, "budget", n, tenants, args.budget_window_s)
                }),
            });
        }
    }
    if args.sides.contains(&Side::Control) {
        let (tenants, rate) = (args.control_tenants, args.api_rate);
        for (n, with) in args.control_sizes.iter().flat_map(|&n| [(n, 0.0), (n, rate)]) {
            scenarios.push(Scenario {
                label: format!(
                    "{n} projects of {tenants} tenants at rate(1 second), shipped settings, API on loopback, {}",
                    if with == 0.0 { "idle".to_string() } else { format!("{with:.0} requests/s from another process") }
                ),
                role: Role::Sluice(SluiceSettings {
                    api: true,
                    api_rate: with,
                    ..sluice_settings(args, "control", n, tenants, args.control_window_s)
                }),
            });
        }
    }
    scenarios
}
