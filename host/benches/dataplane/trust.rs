//! The `trust` side: one fleet over several tenants on one role, run twice, once with every
//! project's own external id and once with its tenant's, to count the assumed-role sessions each
//! needs (from the peer's counts of `AssumeRole`) and the memory and CPU that follow.

use super::*;

/// The two Sluice children of the `trust` side: `n` projects over `tenants` on one role, with
/// trust of their own, then with their tenant's, on caps of `concurrency`.
pub fn trust_rows(n: usize, tenants: usize, concurrency: usize, window: Duration, common: &Common) -> Vec<Row> {
    [(Trust::Project, "project"), (Trust::Tenant, "tenant")]
        .into_iter()
        .map(|(trust, name)| Row {
            short: format!("trust {name}"),
            scenario: Scenario {
                label: format!(
                    "sluice, {n} projects of {tenants} tenants on one role at rate(1 second), trust {name}, caps \
                     {concurrency} global / {concurrency} per tenant"
                ),
                role: Role::Sluice(SluiceSettings {
                    kind: "trust".into(),
                    n,
                    tenants,
                    trust,
                    concurrency,
                    per_tenant: concurrency,
                    window,
                    // After every project's first run (see `sluice_side`).
                    warmup: Duration::from_secs(5),
                    perf: common.perf.clone(),
                    lags: common.lags.clone(),
                    ..SluiceSettings::default()
                }),
            },
        })
        .collect()
}

/// Seconds between two `AssumeRole` calls of one session: the credentials' lifetime less the
/// time before expiry at which Sluice renews them.
fn renewal_period_s() -> f64 {
    CREDENTIALS_S as f64 - AwsConfig::default().credentials_refresh_before_ms as f64 / 1000.0
}

/// The `trust` side's table, if it ran: per trust, the peer's `AssumeRole` calls and sessions,
/// the calls per hour they imply, CPU per poll and RSS per 1,000 projects, and tenant / project.
pub fn print_trust(scenarios: &[Row], results: &[Value]) {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let u = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let rows: Vec<(&Row, &Value)> =
        scenarios.iter().zip(results).filter(|(_, r)| r["side"] == "sluice" && r["kind"] == "trust").collect();
    let Some((_, first)) = rows.first() else { return };
    let sessions = |r: &Value| u(r, "peer_sessions_warmup") + u(r, "peer_sessions_window");
    let per_hour = |r: &Value| sessions(r) as f64 * 3600.0 / renewal_period_s();
    println!();
    println!(
        "Trust per tenant: {} projects at rate(1 second) of {} tenants on one role; AssumeRole as the peer counted it",
        first["n"], first["tenants"]
    );
    println!(
        "| {:<16} | {:>10} | {:>10} | {:>8} | {:>10} | {:>7} | {:>8} | {:>10} | {:>5} |",
        "trust", "AssumeRole", "AssumeRole", "sessions", "AssumeRole", "polls/s", "CPU/poll", "RSS/1000", "busy"
    );
    println!(
        "| {:<16} | {:>10} | {:>10} | {:>8} | {:>10} | {:>7} | {:>8} | {:>10} | {:>5} |",
        "", "warm-up", "window", "", "per hour", "", "µs", "projects", ""
    );
    for (row, r) in &rows {
        let busy = if f(r, "others_cores") > 0.25 { "*" } else { "" };
        println!(
            "| {:<16} | {:>10} | {:>10} | {:>8} | {:>10.1} | {:>7.0} | {:>8.0} | {:>6.1} MiB | {:>4.0}% |",
            format!("{}{busy}", row.short),
            u(r, "peer_assumes_warmup"),
            u(r, "peer_assumes_window"),
            sessions(r),
            per_hour(r),
            f(r, "polls_per_s"),
            f(r, "cpu_us_per_poll"),
            f(r, "rss_per_1000_mib"),
            f(r, "machine_busy") * 100.0,
        );
    }
    let by = |trust: &str| rows.iter().map(|(_, r)| *r).find(|r| r["trust"] == trust);
    if let (Some(own), Some(shared)) = (by("project"), by("tenant")) {
        let ratio = |k: &str| f(shared, k) / f(own, k);
        println!(
            "| {:<16} | {:>10.3} | {:>10} | {:>8.3} | {:>10.3} | {:>7} | {:>8.2} | {:>10.2} | {:>5} |",
            "tenant / project",
            ratio("peer_assumes_warmup"),
            "",
            sessions(shared) as f64 / sessions(own) as f64,
            per_hour(shared) / per_hour(own),
            "",
            ratio("cpu_us_per_poll"),
            ratio("rss_per_1000_mib"),
            ""
        );
        println!();
        let kib = (f(own, "rss_per_1000_mib") - f(shared, "rss_per_1000_mib")) * 1024.0 / 1000.0;
        println!(
            "Memory per project that its own session costs: (RSS/1000 with trust project - with trust tenant) / \
             1000 = {kib:.1} KiB"
        );
    }
    println!(
        "AssumeRole per hour = sessions × 3600 s / ({} s - {} s) = sessions × {:.3}: the peer's credentials last {} s \
         and Sluice renews them credentials_refresh_before_ms = {} ms before they expire",
        CREDENTIALS_S,
        AwsConfig::default().credentials_refresh_before_ms / 1000,
        3600.0 / renewal_period_s(),
        CREDENTIALS_S,
        AwsConfig::default().credentials_refresh_before_ms
    );
    println!();
    for (row, r) in &rows {
        println!("{}:", row.scenario.label);
        println!(
            "  sessions (distinct external id and session name) the peer saw: {} in the warm-up, {} in the window; \
             AssumeRole calls beyond one per session: {}; Sluice's own count of AssumeRole after the warm-up: {}",
            r["peer_sessions_warmup"],
            r["peer_sessions_window"],
            (u(r, "peer_assumes_warmup") + u(r, "peer_assumes_window")).saturating_sub(sessions(r)),
            r["sessions_after_warmup"]
        );
        println!(
            "  warm-up {:.0} s ({} projects had not run when it ended); runs in window: {} succeeded, {} failed, \
             {} skipped; lag p50 {:.0} ms, p99 {:.0} ms",
            f(r, "warmup_s"),
            r["projects_not_run_in_warmup"],
            r["succeeded"],
            r["failed"],
            r["skipped"],
            f(r, "lag_p50_ms"),
            f(r, "lag_p99_ms")
        );
        println!(
            "  RSS {:.1} MiB before projects, {:.1} after warm-up, {:.1} at the end; fds {}; peer CPU {:.0} µs/poll; \
             this process {:.2} cores; machine {:.0}% busy; other processes {:.2} cores",
            f(r, "rss_before_mib"),
            f(r, "rss_after_warmup_mib"),
            f(r, "rss_end_mib"),
            r["own_fds"],
            f(r, "peer_cpu_us_per_poll"),
            f(r, "cpu_cores"),
            f(r, "machine_busy") * 100.0,
            f(r, "others_cores")
        );
        if r["failed"].as_u64().unwrap_or(0) > 0 {
            println!("  errors: {}", r["errors"]);
        }
    }
}
