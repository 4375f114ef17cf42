//! Data-plane benchmark, run by `cargo xtask bench dataplane`: N projects on `rate(1 second)`
//! through the whole pipeline (scheduler, AssumeRole, fetch, passthrough plugin, outbox,
//! PutRecords, commit, run history) against a local peer, beside a bare loop that only does
//! GET + PutRecords, measured in the same run. The "under load" scenarios (noisy neighbours, the
//! plugin memory budget, the control plane under load) are the `hostile` bench
//! (`host/benches/hostile/`), which shares this directory's modules.
//!
//! Settings are flags: `cargo bench -p sluice-host --bench dataplane -- --help` lists them with
//! their units and defaults (`--sizes`, `--window-s`, `--concurrency`, `--sides`, `--tenants`,
//! `--streams-per-tenant`, `--variants`, `--overload-base`, `--overload-factors`, `--stall-ms`,
//! `--stall-read-rate`, `--perf`, `--lags`); `cargo xtask bench dataplane -- <flags>` passes them
//! on.
//!
//! The binary plays several roles so that every measured side is a process of its own (its CPU
//! time and RSS are its own, and one side's leftovers do not count against the next):
//!
//! - the orchestrator, when started with flags: starts the peer, runs each scenario in a fresh
//!   child, prints the table.
//! - `peer`: the source (`GET /items`, a 1 KiB JSON body), STS `AssumeRole` (query protocol, fixed
//!   credentials an hour ahead; it counts the calls and the distinct external id and session name
//!   pairs) and Kinesis `PutRecords` (awsJson1.1, every record accepted) on 127.0.0.1, in the
//!   minimum of code. The SDK reaches it through `AWS_ENDPOINT_URL`.
//! - `sluice`: a temp-dir store with one premium tenant and N projects using the `passthrough`
//!   plugin, each with trust of its own (its own external id, so its own assumed-role session), a
//!   `Scheduler` with the default jitter window, `RunConfig` defaults, and `DataPlane::run`: a
//!   warm-up, then the measured window. The `trust` side (`trust.rs`) runs it twice at the first
//!   size over `--tenants` tenants on one role: with trust of their own, then with their tenant's
//!   (one session per tenant), and compares the peer's `AssumeRole` counts, CPU and memory.
//!   The `throughput` side (`throughput.rs`) runs it over `--tenants` tenants with
//!   `--streams-per-tenant` streams each, its projects created with `POST /v1/projects`, with
//!   group commit and coalesced delivery off and on; the `overload` and `stall` sides
//!   (`overload.rs`) offer the shipped configuration more than it can poll, and make its disk
//!   stall. Its tenant's client of the API (creating projects, a light read load) is
//!   `tenant_client.rs`. The `shared` side (`shared.rs`) runs the fleet with the store on moto's
//!   DynamoDB and S3, started by the orchestrator, and counts the store's requests and write
//!   units per run.
//! - `bare`: the ratio's baseline: C concurrent loops of reqwest GET of the source and
//!   aws-sdk-kinesis `PutRecords` of the body through one default client, closed-loop (as fast as
//!   it goes) or paced at a fixed rate. No scheduler, plugin, outbox or store.
//! - `store` and `clients`, probes of where the time and memory go: the store's calls of one
//!   successful run alone, closed loop (`probes.rs`); and the memory and connections of one
//!   Kinesis client per assumed-role session, each with its own HTTP client (the SDK's default)
//!   against all of them sharing one (what `Aws` sets up).
//!
//! A child learns its role and settings from the orchestrator through one internal handoff, a
//! serialized `Child` in the environment variable `SLUICE_BENCH_CHILD` (`child.rs`), beside the
//! SDK's `AWS_*` variables; it is not an interface.
//!
//! The Sluice side runs with the scheduler's caps at 64 global / 64 per tenant (one tenant owns
//! every project here) and once more with the shipped per-tenant cap of 8. Each window also
//! reports the peer's CPU, the whole machine's, other processes' (this machine is shared: a
//! disturbed window is measured again, once) and disk writes per poll.
//!
//! Measured per window: polls/s (successful runs, or loop iterations), schedule lag p50/p99 (a
//! run's `started_at` minus its due time: the nominal `scheduled_at` plus the project's jitter
//! offset, read from `Scheduler::next_tick` before the first run), CPU per poll (the process's
//! own user + system time over the window ÷ polls; the peer is another process and reported
//! apart), and RSS per 1,000 projects (VmRSS after the warm-up minus VmRSS before the projects
//! were created, ÷ N/1000).

use clap::Parser;

mod bare;
mod child;
mod common;
mod fleet;
mod history;
mod measure;
mod orchestrator;
mod overload;
mod peer;
mod probes;
mod shared;
mod sluice_side;
mod throughput;
mod trust;

use bare::*;
use child::*;
use common::*;
use fleet::project;
use measure::*;
use orchestrator::*;
use overload::*;
use peer::*;
use probes::*;
use shared::*;
use sluice_side::*;
use throughput::*;
use trust::*;

/// Data-plane benchmark: N projects on rate(1 second) through the whole pipeline (scheduler,
/// AssumeRole, fetch, passthrough plugin, outbox, PutRecords, commit, run history) against a local
/// peer, beside a bare GET + PutRecords loop, each side a process of its own; the assumed-role
/// sessions, CPU and memory of projects trusting their tenant's external id against their own; and
/// throughput with group commit and coalesced delivery off and on, under overload and with a
/// stalling disk. The noisy-neighbour, memory-budget and control-plane scenarios are the `hostile`
/// bench.
#[derive(Parser)]
#[command(name = "dataplane", bin_name = "cargo bench -p sluice-host --bench dataplane --")]
struct Args {
    /// Fleet sizes, in projects at rate(1 second), comma-separated: one Sluice window each (the
    /// first only for shipped, store, clients and trust; the throughput side's variants at each;
    /// stall at the first), and the bare loop paced at each size up to 4,000/s [default:
    /// 1000,10000; for the throughput, overload and stall sides 1000,5000,10000]
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Measured window of each Sluice side, in seconds [default: 20, the stall side's 30; the bare
    /// loop and the store probe measure 10 s after a 3 s warm-up unless this is given]
    #[arg(long, value_name = "SECONDS")]
    window_s: Option<u64>,
    /// The scheduler's global and per-tenant caps, and the bare loop's concurrent loops (the
    /// throughput, overload and stall sides keep the shipped caps)
    #[arg(long, value_name = "C", default_value_t = 64)]
    concurrency: usize,
    /// Which scenarios to run, comma-separated
    #[arg(long, value_name = "SIDE,...", value_delimiter = ',', default_value = "bare,sluice,shipped,store,clients")]
    sides: Vec<Side>,
    /// Tenants the trust, throughput, overload and stall sides deal their projects out to (the
    /// other sides have one)
    #[arg(long, value_name = "T", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    tenants: u64,
    /// Streams of each tenant in the throughput, overload and stall sides
    /// (`stream/t{tenant}-s{stream}`); a tenant's projects take them in turn
    #[arg(long, value_name = "S", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    streams_per_tenant: u64,
    /// Variants of the throughput side to run at every size, comma-separated [default: all five at
    /// the first size, d and e at the others]
    #[arg(long, value_name = "V,...", value_delimiter = ',')]
    variants: Vec<Variant>,
    /// Polls/s the overload side multiplies [default: the most polls/s of the throughput side's
    /// shipped windows (d) in this run, else of a calibration window of d at the largest size]
    #[arg(long, value_name = "POLLS_PER_S")]
    overload_base: Option<f64>,
    /// Multiples of the base the overload side offers, in projects at rate(1 second),
    /// comma-separated
    #[arg(long, value_name = "X,...", value_delimiter = ',', default_value = "2,5")]
    overload_factors: Vec<f64>,
    /// Schedules of the shared side's windows, comma-separated: one window each, at the first
    /// size
    #[arg(long, value_name = "SCHEDULE,...", value_delimiter = ',', default_value = "rate(1 minute)")]
    shared_schedules: Vec<String>,
    /// How long the stall side's disk stalls, in ms: once, and before every sync
    #[arg(long, value_name = "MS", default_value_t = 500)]
    stall_ms: u64,
    /// API reads per second during the stall side's windows (a project or its runs, open-loop)
    #[arg(long, value_name = "PER_S", default_value_t = 50.0)]
    stall_read_rate: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Side {
    /// The bare loop, closed, and paced at each size up to 4,000/s
    Bare,
    /// Sluice at each size, with the scheduler's caps at --concurrency
    Sluice,
    /// Sluice at the first size with the shipped per-tenant cap of 8
    Shipped,
    /// The store's calls of a run alone, over the first size's projects
    Store,
    /// Memory of the first size's per-session Kinesis clients
    Clients,
    /// Sluice at the first size over --tenants tenants on one role, with trust of their own, then
    /// with their tenant's: AssumeRole calls the peer counted, sessions, CPU and memory
    Trust,
    /// Sluice over --tenants tenants with --streams-per-tenant streams each, projects created with
    /// POST /v1/projects, shipped caps, in --variants: group commit and coalescing off and on,
    /// and project trust
    Throughput,
    /// The shipped configuration offered --overload-factors times its peak polls/s
    Overload,
    /// The shipped configuration at the first size under API reads: a healthy disk, one stall of
    /// --stall-ms, every sync --stall-ms slower
    Stall,
    /// Sluice at the first size with the store on DynamoDB and S3 (moto's server), at each of
    /// --shared-schedules: the store's requests and write units per run
    Shared,
}

fn main() {
    match Child::from_env().map(Child::enter) {
        None => orchestrate(Args::parse()),
        Some(Role::Bare(settings)) => run_side(bare_side(settings)),
        Some(Role::Store(settings)) => run_side(store_side(settings)),
        Some(Role::Clients(settings)) => run_side(clients_side(settings)),
        Some(role) => play_shared(role),
    }
}

// The orchestrator.

fn orchestrate(args: Args) {
    let Args {
        sizes,
        window_s,
        concurrency,
        sides,
        tenants,
        streams_per_tenant,
        variants,
        overload_base,
        overload_factors,
        stall_ms,
        stall_read_rate,
        shared_schedules,
        common,
    } = args;
    let sizes_or = |default: &[usize]| if sizes.is_empty() { default.to_vec() } else { sizes.clone() };
    let throughput_sizes = sizes_or(&[1000, 5000, 10000]);
    let sizes = sizes_or(&[1000, 10000]);
    let new_sides = [Side::Throughput, Side::Overload, Side::Stall];
    let (tenants, streams) = (tenants as usize, streams_per_tenant as usize);
    let bare = |rate: usize| Row {
        short: if rate == 0 { "bare loop, closed".into() } else { format!("bare loop, paced {rate}/s") },
        scenario: Scenario {
            label: if rate == 0 {
                format!("bare loop, {concurrency} concurrent, closed loop")
            } else {
                format!("bare loop, {concurrency} concurrent, paced at {rate}/s")
            },
            role: Role::Bare(BareSettings {
                concurrency,
                rate: rate as u64,
                warmup: Duration::from_secs(3),
                window: Duration::from_secs(window_s.unwrap_or(10)),
                perf: common.perf.clone(),
            }),
        },
    };
    let sluice = |n: usize, per_tenant: usize| Row {
        short: format!("sluice N={n}, caps {concurrency}/{per_tenant}"),
        scenario: Scenario {
            label: format!(
                "sluice, {n} projects at rate(1 second), caps {concurrency} global / {per_tenant} per tenant"
            ),
            role: Role::Sluice(SluiceSettings {
                n,
                concurrency,
                per_tenant,
                window: Duration::from_secs(window_s.unwrap_or(20)),
                // After every project's first run (see `sluice_side`).
                warmup: Duration::from_secs(5),
                perf: common.perf.clone(),
                lags: common.lags.clone(),
                ..SluiceSettings::default()
            }),
        },
    };
    let probe = |n: usize| ProbeSettings {
        n,
        concurrency,
        warmup: Duration::from_secs(3),
        window: Duration::from_secs(window_s.unwrap_or(10)),
    };
    let mut scenarios = Vec::new();
    if sides.contains(&Side::Bare) {
        scenarios.push(bare(0));
        // Paced at the sizes of the other sides asked for.
        let mut paced_rates: Vec<usize> = Vec::new();
        if sides.iter().any(|side| !new_sides.contains(side)) {
            paced_rates.extend(&sizes);
        }
        if sides.iter().any(|side| new_sides.contains(side)) {
            paced_rates.extend(&throughput_sizes);
        }
        paced_rates.retain(|&n| n <= 4000);
        paced_rates.sort_unstable();
        paced_rates.dedup();
        scenarios.extend(paced_rates.iter().map(|&rate| bare(rate)));
    }
    if sides.contains(&Side::Sluice) {
        scenarios.extend(sizes.iter().map(|&n| sluice(n, concurrency)));
    }
    // The shipped per-tenant cap, for the smallest fleet: one tenant cannot use the global cap.
    let default_per_tenant = SchedulerConfig::default().max_concurrent_runs_per_tenant;
    if sides.contains(&Side::Shipped)
        && let Some(&n) = sizes.first()
        && default_per_tenant < concurrency
    {
        scenarios.push(sluice(n, default_per_tenant));
    }
    let first = sizes.first().copied().unwrap_or(1000);
    if sides.contains(&Side::Store) {
        scenarios.push(Row {
            short: "store alone".into(),
            scenario: Scenario {
                label: format!("store alone, {concurrency} concurrent, closed loop over {first} projects"),
                role: Role::Store(probe(first)),
            },
        });
    }
    if sides.contains(&Side::Clients) {
        scenarios.push(Row {
            short: "clients".into(),
            scenario: Scenario {
                label: format!("{first} per-session Kinesis clients, each with its own HTTP client or sharing one"),
                role: Role::Clients(probe(first)),
            },
        });
    }
    let window = Duration::from_secs(window_s.unwrap_or(20));
    if sides.contains(&Side::Trust) {
        scenarios.extend(trust_rows(first, tenants, concurrency, window, &common));
    }
    if sides.contains(&Side::Throughput) {
        let chosen = (!variants.is_empty()).then_some(variants.as_slice());
        scenarios.extend(throughput_rows(&throughput_sizes, chosen, tenants, streams, window, &common));
    }
    // The overload side's base comes from a shipped window of this run, or from one of its own.
    let shipped_in_throughput =
        sides.contains(&Side::Throughput) && (variants.is_empty() || variants.contains(&Variant::D));
    if sides.contains(&Side::Overload) && overload_base.is_none() && !shipped_in_throughput {
        let largest = throughput_sizes.iter().copied().max().unwrap_or(10000);
        scenarios.push(calibration_row(largest, tenants, streams, window, &common));
    }
    if sides.contains(&Side::Stall) {
        let stall_window = Duration::from_secs(window_s.unwrap_or(30));
        let n = throughput_sizes.first().copied().unwrap_or(1000);
        scenarios.extend(stall_rows(n, tenants, streams, stall_ms, stall_read_rate, stall_window, &common));
    }
    // moto lives as long as this function: the shared side's children use it.
    let moto = sides.contains(&Side::Shared).then(MotoServer::start);
    if let Some(moto) = &moto {
        // A 30 s window: the history is then read once, after it, and counts in no window.
        let window = Duration::from_secs(window_s.unwrap_or(30));
        scenarios.extend(shared_rows(first, &shared_schedules, window, &common, &moto.endpoint));
    }
    let mut results = run_scenarios("dataplane", scenarios.iter().map(|row| &row.scenario));
    let base = overload_base.or_else(|| shipped_peak(&results).map(|r| throughput::f(r, "polls_per_s")));
    let base = base.unwrap_or(f64::NAN);
    if sides.contains(&Side::Overload) {
        // Its windows need the base, so they run after the others, against a peer of their own.
        assert!(base > 0.0, "no polls/s to base the overload on: pass --overload-base");
        let more = overload_rows(base, &overload_factors, tenants, streams, window, &common);
        results.extend(run_scenarios("dataplane", more.iter().map(|row| &row.scenario)));
        scenarios.extend(more);
    }
    print_table(&scenarios, &results);
    print_trust(&scenarios, &results);
    print_throughput(&scenarios, &results);
    print_overload(&scenarios, &results, base, overload_base.is_some());
    print_stall(&scenarios, &results);
    print_shared(&scenarios, &results);
}

/// A scenario, with its label in the table.
pub struct Row {
    pub short: String,
    pub scenario: Scenario,
}

fn print_table(scenarios: &[Row], results: &[Value]) {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let bare_closed = results.iter().find(|r| r["side"] == "bare" && r["offered_per_s"] == 0);
    let bare_at = |rate: f64| results.iter().find(|r| r["side"] == "bare" && f(r, "offered_per_s") == rate);
    // Only fleets of one kind here; the hostile bench's scenarios have tables of their own.
    let rows = || {
        scenarios
            .iter()
            .zip(results)
            .filter(|(_, r)| r["side"] == "bare" || r["side"] == "sluice" && r["kind"] == "fleet")
    };
    if rows().next().is_none() {
        return print_probes(scenarios, results);
    }
    println!();
    println!("Data plane, 2 cores shared with the peer (source + STS + Kinesis in one other process)");
    println!(
        "| {:<28} | {:>8} | {:>9} | {:>8} | {:>8} | {:>9} | {:>9} | {:>9} | {:>10} | {:>5} |",
        "side", "offered", "polls/s", "lag p50", "lag p99", "CPU/poll", "× bare", "× bare", "RSS/1000", "busy"
    );
    println!(
        "| {:<28} | {:>8} | {:>9} | {:>8} | {:>8} | {:>9} | {:>9} | {:>9} | {:>10} | {:>5} |",
        "", "/s", "", "ms", "ms", "µs", "closed", "same rate", "projects", ""
    );
    for (scenario, r) in rows() {
        let cpu = f(r, "cpu_us_per_poll");
        let ratio = |b: Option<&Value>| b.map_or("-".into(), |b| format!("{:.2}", cpu / f(b, "cpu_us_per_poll")));
        let is_sluice = r["side"] == "sluice";
        let offered = f(r, "offered_per_s");
        let (lag50, lag99, rss) = if is_sluice {
            (
                format!("{:.0}", f(r, "lag_p50_ms")),
                format!("{:.0}", f(r, "lag_p99_ms")),
                format!("{:.1} MiB", f(r, "rss_per_1000_mib")),
            )
        } else {
            ("-".into(), "-".into(), "-".into())
        };
        println!(
            "| {:<28} | {:>8} | {:>9.0} | {:>8} | {:>8} | {:>9.0} | {:>9} | {:>9} | {:>10} | {:>4.0}% |",
            {
                // A trailing * marks a window that other processes disturbed even when repeated.
                let busy = if f(r, "others_cores") > 0.25 { "*" } else { "" };
                format!("{}{busy}", scenario.short)
            },
            if offered > 0.0 { format!("{offered:.0}") } else { "max".into() },
            f(r, "polls_per_s"),
            lag50,
            lag99,
            cpu,
            if is_sluice { ratio(bare_closed) } else { "-".into() },
            if is_sluice { ratio(bare_at(offered)) } else { "-".into() },
            rss,
            f(r, "machine_busy") * 100.0,
        );
    }
    println!();
    for (scenario, r) in rows() {
        println!("{}:", scenario.scenario.label);
        println!(
            "  peer CPU {:.0} µs/poll; this process {:.2} cores; machine {:.0}% busy; other processes {:.2} cores",
            f(r, "peer_cpu_us_per_poll"),
            f(r, "cpu_cores"),
            f(r, "machine_busy") * 100.0,
            f(r, "others_cores")
        );
        if r["side"] == "sluice" {
            println!(
                "  runs in window: {} succeeded, {} failed, {} skipped, {} catch-up; lag max {:.0} ms; \
                 run wall mean {:.1} ms",
                r["succeeded"],
                r["failed"],
                r["skipped"],
                r["catch_up"],
                f(r, "lag_max_ms"),
                f(r, "run_ms_mean")
            );
            println!("  stage wall ms per run: {}", stage_means(r));
            println!(
                "  warm-up {:.0} s ({} sessions); disk {:.1} writes and {:.1} KiB per poll",
                f(r, "warmup_s"),
                r["sessions_after_warmup"],
                f(r, "disk_writes_per_poll"),
                f(r, "disk_kib_per_poll")
            );
            println!(
                "  RSS {:.0} MiB before projects, {:.0} after warm-up, {:.0} at the end; fds {} here, {} in the peer",
                f(r, "rss_before_mib"),
                f(r, "rss_after_warmup_mib"),
                f(r, "rss_end_mib"),
                r["own_fds"],
                r["peer_fds"]
            );
            println!(
                "  calls in window: {} AssumeRole, {} PutRecords; peer saw {} records, {} GETs",
                r["assume_role_calls"], r["put_records_calls"], r["peer_records"], r["peer_gets"]
            );
            if r["failed"].as_u64().unwrap_or(0) > 0 {
                println!("  errors: {}", r["errors"]);
            }
        } else {
            println!("  errors: {}; RSS {:.0} MiB", r["errors"], f(r, "rss_end_mib"));
        }
    }
    print_probes(scenarios, results);
}

/// A side's mean wall time per run in each stage, as "stage ms, …".
fn stage_means(r: &Value) -> String {
    let stages: Vec<String> = r["stage_ms_mean"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {:.2}", v.as_f64().unwrap_or(0.0))).collect())
        .unwrap_or_default();
    stages.join(", ")
}

fn print_probes(scenarios: &[Row], results: &[Value]) {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    for (scenario, r) in scenarios.iter().zip(results) {
        if r["side"] == "store" {
            println!("{}:", scenario.scenario.label);
            println!(
                "  {:.0} runs/s, {:.0} µs CPU per run ({:.2} cores; machine {:.0}% busy; \
                 other processes {:.2} cores); \
                 disk {:.1} writes and {:.1} KiB per run",
                f(r, "polls_per_s"),
                f(r, "cpu_us_per_poll"),
                f(r, "cpu_cores"),
                f(r, "machine_busy") * 100.0,
                f(r, "others_cores"),
                f(r, "disk_writes_per_poll"),
                f(r, "disk_kib_per_poll")
            );
        } else if r["side"] == "clients" {
            println!("{}:", scenario.scenario.label);
            for (label, key) in
                [("own HTTP client each", "own_http_client"), ("one shared HTTP client", "shared_http_client")]
            {
                let c = &r[key];
                println!(
                    "  {label}: {:.1} KiB each built, {:.1} KiB more each once connected, {} fds",
                    f(c, "built_kib_each"),
                    f(c, "connected_kib_each"),
                    c["fds"]
                );
            }
        }
    }
}
