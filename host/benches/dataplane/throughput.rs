//! The `throughput` side (issue 17): the fleet at each size over several tenants, each tenant with
//! a few streams of its own, its projects created through the API as a tenant would, measured in
//! variants that turn group commit and coalesced delivery off and on, and the shipped
//! configuration once more with every project trusting its own external id (so every run signs
//! a call of its own). Beside the bare loop of the same run; the `overload` and `stall` sides
//! (`overload.rs`) build on the same fleet.

use super::*;

/// One configuration of the throughput fleet.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Variant {
    /// Group commit off (every commit synced on its own) and coalescing off (a PutRecords per
    /// delivery)
    A,
    /// Group commit on, coalescing off
    B,
    /// Group commit off, coalescing on
    C,
    /// Both on: the shipped configuration
    D,
    /// Both on, with every project trusting its own external id: a session, and so a
    /// PutRecords call, per project
    E,
}

impl Variant {
    pub const ALL: [Variant; 5] = [Variant::A, Variant::B, Variant::C, Variant::D, Variant::E];

    pub fn name(self) -> &'static str {
        match self {
            Variant::A => "a",
            Variant::B => "b",
            Variant::C => "c",
            Variant::D => "d",
            Variant::E => "e",
        }
    }

    /// What it turns on, for the tables.
    pub fn describe(self) -> &'static str {
        match self {
            Variant::A => "group commit off, coalescing off",
            Variant::B => "group commit on, coalescing off",
            Variant::C => "group commit off, coalescing on",
            Variant::D => "both on (shipped), tenant trust",
            Variant::E => "both on, project trust",
        }
    }

    /// The Sluice child's settings for this variant: `base` with the committer, delivery and
    /// trust the variant names.
    pub fn apply(self, base: SluiceSettings) -> SluiceSettings {
        let group_commit = !matches!(self, Variant::A | Variant::C);
        SluiceSettings {
            variant: self.name().into(),
            commit_max_batch: if group_commit { None } else { Some(1) },
            put_coalesce: !matches!(self, Variant::A | Variant::B),
            trust: if self == Variant::E { Trust::Project } else { Trust::Tenant },
            ..base
        }
    }
}

/// What every fleet of the `throughput`, `overload` and `stall` sides shares: `n` projects at
/// rate(1 second) dealt out to `tenants`, each tenant with `streams` streams, created with
/// `POST /v1/projects`, on the shipped scheduler caps, committer and delivery, with the tenant's
/// trust.
pub fn fleet_settings(
    kind: &str,
    n: usize,
    tenants: usize,
    streams: usize,
    window: Duration,
    common: &Common,
) -> SluiceSettings {
    let shipped = SchedulerConfig::default();
    SluiceSettings {
        kind: kind.into(),
        n,
        tenants,
        trust: Trust::Tenant,
        streams_per_tenant: Some(streams),
        create_via_api: true,
        concurrency: shipped.max_concurrent_runs,
        per_tenant: shipped.max_concurrent_runs_per_tenant,
        window,
        // After every project's first run (see `sluice_side`).
        warmup: Duration::from_secs(5),
        perf: common.perf.clone(),
        lags: common.lags.clone(),
        ..SluiceSettings::default()
    }
}

/// The throughput side's children: at each size, `variants` if given, else every variant at the
/// first size and the shipped one with each trust (d and e) at the others.
pub fn throughput_rows(
    sizes: &[usize],
    variants: Option<&[Variant]>,
    tenants: usize,
    streams: usize,
    window: Duration,
    common: &Common,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let at_size: &[Variant] = match variants {
            Some(chosen) => chosen,
            None if i == 0 => &Variant::ALL,
            None => &[Variant::D, Variant::E],
        };
        for &variant in at_size {
            rows.push(Row {
                short: format!("{} N={n}", variant.name()),
                scenario: Scenario {
                    label: format!(
                        "throughput ({}) {}: {n} projects of {tenants} tenants with {streams} streams each at rate(1 \
                         second), created with POST /v1/projects, shipped caps",
                        variant.name(),
                        variant.describe()
                    ),
                    role: Role::Sluice(variant.apply(fleet_settings(
                        "throughput",
                        n,
                        tenants,
                        streams,
                        window,
                        common,
                    ))),
                },
            });
        }
    }
    rows
}

pub fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// The bare loop's CPU per poll, closed, and paced at `rate` if it was.
pub fn bare_cpu(results: &[Value], rate: f64) -> (f64, f64) {
    let bare = |offered: f64| {
        results
            .iter()
            .find(|r| r["side"] == "bare" && f(r, "offered_per_s") == offered)
            .map_or(f64::NAN, |r| f(r, "cpu_us_per_poll"))
    };
    (bare(0.0), bare(rate))
}

/// A trailing * marks a window that other processes disturbed even when measured again.
pub fn busy_mark(r: &Value) -> &'static str {
    if f(r, "others_cores") > 0.25 { "*" } else { "" }
}

pub fn ctx_per_poll(r: &Value) -> f64 {
    f(r, "voluntary_switches_per_poll") + f(r, "involuntary_switches_per_poll")
}

fn ratio_text(x: f64) -> String {
    if x.is_finite() { format!("{x:.2}") } else { "-".into() }
}

/// The throughput side's tables, if it ran: every window, then each variant against the shipped
/// one (d) at the same size, then notes per window.
pub fn print_throughput(scenarios: &[Row], results: &[Value]) {
    let rows: Vec<(&Row, &Value)> =
        scenarios.iter().zip(results).filter(|(_, r)| r["side"] == "sluice" && r["kind"] == "throughput").collect();
    let Some((_, first)) = rows.first() else { return };
    println!();
    println!(
        "Throughput: projects at rate(1 second) of {} tenants, {} streams each, created through the API; shipped caps; \
         2 cores shared with the peer",
        first["tenants"], first["streams_per_tenant"]
    );
    println!(
        "| {:<12} | {:>7} | {:>7} | {:>7} | {:>8} | {:>6} | {:>6} | {:>6} | {:>7} | {:>6} | {:>7} | {:>5} | {:>6} |",
        "variant",
        "polls/s",
        "lag p50",
        "lag p99",
        "CPU/poll",
        "× bare",
        "× bare",
        "syncs",
        "commits",
        "Put-",
        "ctx sw",
        "busy",
        "others"
    );
    println!(
        "| {:<12} | {:>7} | {:>7} | {:>7} | {:>8} | {:>6} | {:>6} | {:>6} | {:>7} | {:>6} | {:>7} | {:>5} | {:>6} |",
        "", "", "ms", "ms", "µs", "closed", "paced", "/poll", "/batch", "Records", "/poll", "", "cores"
    );
    println!(
        "| {:<12} | {:>7} | {:>7} | {:>7} | {:>8} | {:>6} | {:>6} | {:>6} | {:>7} | {:>6} | {:>7} | {:>5} | {:>6} |",
        "", "", "", "", "", "", "", "", "", "/poll", "", "", ""
    );
    for (row, r) in &rows {
        let cpu = f(r, "cpu_us_per_poll");
        let (closed, paced) = bare_cpu(results, f(r, "offered_per_s"));
        println!(
            "| {:<12} | {:>7.0} | {:>7.0} | {:>7.0} | {:>8.0} | {:>6} | {:>6} | {:>6.3} | {:>7.1} | {:>6.3} | {:>7.1} | {:>4.0}% | {:>6.2} |",
            format!("{}{}", row.short, busy_mark(r)),
            f(r, "polls_per_s"),
            f(r, "lag_p50_ms"),
            f(r, "lag_p99_ms"),
            cpu,
            ratio_text(cpu / closed),
            ratio_text(cpu / paced),
            f(r, "syncs_per_poll"),
            f(r, "commits_per_batch"),
            f(r, "peer_puts_per_poll"),
            ctx_per_poll(r),
            f(r, "machine_busy") * 100.0,
            f(r, "others_cores"),
        );
    }
    // Each variant against the shipped one at its size.
    let shipped_at = |n: &Value| rows.iter().map(|(_, r)| *r).find(|r| r["variant"] == "d" && r["n"] == *n);
    if rows.iter().any(|(_, r)| r["variant"] != "d" && shipped_at(&r["n"]).is_some()) {
        println!();
        println!("Each variant ÷ the shipped one (d) at the same size");
        println!(
            "| {:<12} | {:>7} | {:>8} | {:>7} | {:>10} | {:>11} | {:>9} |",
            "variant", "polls/s", "CPU/poll", "lag p99", "syncs/poll", "PutRecords/", "ctx sw/"
        );
        println!("| {:<12} | {:>7} | {:>8} | {:>7} | {:>10} | {:>11} | {:>9} |", "", "", "", "", "", "poll", "poll");
        for (row, r) in &rows {
            let Some(d) = shipped_at(&r["n"]) else { continue };
            if r["variant"] == "d" {
                continue;
            }
            let q = |k: &str| ratio_text(f(r, k) / f(d, k));
            println!(
                "| {:<12} | {:>7} | {:>8} | {:>7} | {:>10} | {:>11} | {:>9} |",
                row.short,
                q("polls_per_s"),
                q("cpu_us_per_poll"),
                q("lag_p99_ms"),
                q("syncs_per_poll"),
                q("peer_puts_per_poll"),
                ratio_text(ctx_per_poll(r) / ctx_per_poll(d)),
            );
        }
    }
    println!();
    for (row, r) in &rows {
        println!("{}:", row.scenario.label);
        print_window_notes(r);
    }
}

/// The notes under a table, for one Sluice window of the throughput fleet.
pub fn print_window_notes(r: &Value) {
    println!(
        "  {} projects created {} in {:.1} s ({:.0}/s); warm-up {:.0} s ({} projects had not run when it ended)",
        r["n"],
        if r["created_via_api"] == true { "with POST /v1/projects" } else { "in the store" },
        f(r, "created_s"),
        f(r, "n") / f(r, "created_s"),
        f(r, "warmup_s"),
        r["projects_not_run_in_warmup"],
    );
    println!(
        "  runs in window: {} succeeded, {} failed, {} skipped ticks (metrics); lag max {:.0} ms; run wall mean {:.1} ms",
        r["succeeded"],
        r["failed"],
        r["skipped_ticks"],
        f(r, "lag_max_ms"),
        f(r, "run_ms_mean")
    );
    println!("  stage wall ms per run: {}", super::stage_means(r));
    println!(
        "  committer: {} batches, {} commits, {:.2} ms flush + sync per batch; {} PutRecords (peer), {} records; \
         {} AssumeRole",
        r["commit_batches"],
        r["commits"],
        f(r, "sync_ms_per_batch"),
        r["peer_puts"],
        r["peer_records"],
        r["assume_role_calls"]
    );
    println!(
        "  context switches per poll: {:.1} voluntary, {:.1} involuntary; disk {:.2} writes and {:.1} KiB per poll",
        f(r, "voluntary_switches_per_poll"),
        f(r, "involuntary_switches_per_poll"),
        f(r, "disk_writes_per_poll"),
        f(r, "disk_kib_per_poll")
    );
    println!(
        "  this process {:.2} cores; peer {:.0} µs/poll; machine {:.0}% busy; other processes {:.2} cores; RSS {:.0} MiB \
         at the end",
        f(r, "cpu_cores"),
        f(r, "peer_cpu_us_per_poll"),
        f(r, "machine_busy") * 100.0,
        f(r, "others_cores"),
        f(r, "rss_end_mib"),
    );
    if r["failed"].as_u64().unwrap_or(0) > 0 {
        println!("  errors: {}", r["errors"]);
    }
}
