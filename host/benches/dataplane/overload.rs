//! The `overload` and `stall` sides (issue 17), on the throughput side's fleet in its shipped
//! configuration (`throughput.rs`).
//!
//! - `overload`: more projects at rate(1 second) than the shipped configuration can poll: 2× and
//!   5× (`--overload-factors`) its peak polls/s, which is the best of the throughput side's
//!   shipped windows in this run, else a calibration window at the largest throughput size, or
//!   `--overload-base`. Does throughput hold, or collapse, when far more is offered?
//! - `stall`: the shipped configuration at the first size with the API served and a light read
//!   load on it, three times: a healthy disk; one stall of the store's committer thread, a third
//!   of the way into the window (a disk that stops for `--stall-ms` once); and a disk on which
//!   every sync takes `--stall-ms` longer (`CommitOptions::stall_before_sync`).

use super::*;

use throughput::{Variant, bare_cpu, busy_mark, f, fleet_settings, print_window_notes};

/// The window that sets the overload side's base, if this run measured one: the calibration
/// window, else the shipped throughput window with the most polls/s.
pub fn shipped_peak(results: &[Value]) -> Option<&Value> {
    let calibration = results.iter().find(|r| r["kind"] == "overload" && r["variant"] == "peak");
    let shipped = results.iter().filter(|r| r["kind"] == "throughput" && r["variant"] == "d");
    calibration.or_else(|| shipped.max_by(|a, b| f(a, "polls_per_s").total_cmp(&f(b, "polls_per_s"))))
}

/// A window of the shipped configuration at `n`, to find its peak polls/s when the throughput
/// side does not run.
pub fn calibration_row(n: usize, tenants: usize, streams: usize, window: Duration, common: &Common) -> Row {
    let settings = Variant::D.apply(fleet_settings("overload", n, tenants, streams, window, common));
    Row {
        short: format!("peak N={n}"),
        scenario: Scenario {
            label: format!("overload calibration: shipped configuration, {n} projects of {tenants} tenants"),
            role: Role::Sluice(SluiceSettings { variant: "peak".into(), ..settings }),
        },
    }
}

/// The overload side's windows: the shipped configuration with `factor` × `base` projects (to the
/// nearest hundred) for each factor.
pub fn overload_rows(
    base: f64,
    factors: &[f64],
    tenants: usize,
    streams: usize,
    window: Duration,
    common: &Common,
) -> Vec<Row> {
    factors
        .iter()
        .map(|&factor| {
            let n = ((base * factor / 100.0).round() as usize).max(1) * 100;
            let settings = Variant::D.apply(fleet_settings("overload", n, tenants, streams, window, common));
            Row {
                short: format!("{factor}× N={n}"),
                scenario: Scenario {
                    label: format!(
                        "overload {factor}×: shipped configuration, {n} projects of {tenants} tenants at rate(1 second) \
                         ({factor} × {base:.0} polls/s)"
                    ),
                    role: Role::Sluice(SluiceSettings { variant: format!("{factor}x"), ..settings }),
                },
            }
        })
        .collect()
}

/// The overload side's table: the peak, then each overload, against the peak (against `base`
/// when this run measured no peak). `base_given`: the base came from `--overload-base`.
pub fn print_overload(scenarios: &[Row], results: &[Value], base: f64, base_given: bool) {
    let rows: Vec<(&Row, &Value)> =
        scenarios.iter().zip(results).filter(|(_, r)| r["kind"] == "overload" && r["variant"] != "peak").collect();
    if rows.is_empty() {
        return;
    }
    let peak = shipped_peak(results);
    let peak_polls = peak.map_or(base, |p| f(p, "polls_per_s"));
    let peak_cpu = peak.map_or(f64::NAN, |p| f(p, "cpu_us_per_poll"));
    println!();
    println!(
        "Overload: the shipped configuration offered multiples of {base:.0} polls/s ({}); ÷ peak is against {}",
        if base_given { "--overload-base" } else { "its peak in this run" },
        peak.map_or(format!("{base:.0} polls/s"), |p| format!("the peak, {peak_polls:.0} polls/s at N = {}", p["n"]))
    );
    println!(
        "| {:<14} | {:>8} | {:>7} | {:>7} | {:>8} | {:>8} | {:>6} | {:>8} | {:>9} | {:>5} | {:>6} |",
        "", "offered", "polls/s", "÷ peak", "CPU/poll", "÷ peak's", "× bare", "lag p99", "skipped", "busy", "others"
    );
    println!(
        "| {:<14} | {:>8} | {:>7} | {:>7} | {:>8} | {:>8} | {:>6} | {:>8} | {:>9} | {:>5} | {:>6} |",
        "", "/s", "", "", "µs", "", "closed", "ms", "ticks/s", "", "cores"
    );
    let line = |label: String, r: &Value| {
        println!(
            "| {:<14} | {:>8.0} | {:>7.0} | {:>7.2} | {:>8.0} | {:>8.2} | {:>6.2} | {:>8.0} | {:>9.0} | {:>4.0}% | {:>6.2} |",
            format!("{label}{}", busy_mark(r)),
            f(r, "offered_per_s"),
            f(r, "polls_per_s"),
            f(r, "polls_per_s") / peak_polls,
            f(r, "cpu_us_per_poll"),
            f(r, "cpu_us_per_poll") / peak_cpu,
            f(r, "cpu_us_per_poll") / bare_cpu(results, 0.0).0,
            f(r, "lag_p99_ms"),
            f(r, "skipped_ticks") / f(r, "window_s"),
            f(r, "machine_busy") * 100.0,
            f(r, "others_cores"),
        );
    };
    if let Some(peak) = peak {
        line(format!("peak N={}", peak["n"]), peak);
    }
    for (row, r) in &rows {
        line(row.short.clone(), r);
    }
    println!();
    for (row, r) in &rows {
        println!("{}:", row.scenario.label);
        print_window_notes(r);
    }
}

/// The stall side's three windows: no stall, one stall of `stall_ms`, every sync `stall_ms`
/// slower; `n` projects with `read_rate` API reads a second.
pub fn stall_rows(
    n: usize,
    tenants: usize,
    streams: usize,
    stall_ms: u64,
    read_rate: f64,
    window: Duration,
    common: &Common,
) -> Vec<Row> {
    let base = SluiceSettings {
        api_read_rate: read_rate,
        ..Variant::D.apply(fleet_settings("stall", n, tenants, streams, window, common))
    };
    let at = window.as_secs_f64() / 3.0;
    [
        ("none", "healthy disk".to_string(), SluiceSettings { variant: "none".into(), ..base.clone() }),
        (
            "once",
            format!("the committer stopped once for {stall_ms} ms, {at:.0} s into the window"),
            SluiceSettings { variant: "once".into(), stall_once_ms: stall_ms, ..base.clone() },
        ),
        (
            "every",
            format!("every sync {stall_ms} ms slower (stall_before_sync)"),
            SluiceSettings { variant: "every".into(), stall_before_sync_ms: stall_ms, ..base },
        ),
    ]
    .into_iter()
    .map(|(short, what, settings)| Row {
        short: format!("stall {short}"),
        scenario: Scenario {
            label: format!(
                "stall: shipped configuration, {n} projects of {tenants} tenants, API reads {read_rate:.0}/s, {what}"
            ),
            role: Role::Sluice(settings),
        },
    })
    .collect()
}

/// The slice of a window's `slices` that holds `at_ms`, if any.
fn slice_at(r: &Value, at_ms: f64) -> Option<&Value> {
    r["slices"].as_array()?.iter().find(|s| f(s, "from_s") * 1000.0 <= at_ms && at_ms < f(s, "to_s") * 1000.0)
}

/// The stall side's table: one column per window.
pub fn print_stall(scenarios: &[Row], results: &[Value]) {
    let rows: Vec<(&Row, &Value)> = scenarios.iter().zip(results).filter(|(_, r)| r["kind"] == "stall").collect();
    let Some((_, first)) = rows.first() else { return };
    let stall_ms =
        rows.iter().map(|(_, r)| f(r, "stall_once_ms").max(f(r, "stall_before_sync_ms"))).fold(0.0, f64::max);
    let stalled_at = rows.iter().find_map(|(_, r)| r["stalled_at_ms"].as_f64());
    println!();
    println!(
        "Disk stalls: {} projects of {} tenants at rate(1 second), shipped configuration, API reads {:.0}/s from a thread \
         of the Sluice process; stall {stall_ms:.0} ms",
        first["n"],
        first["tenants"],
        f(&first["reads"], "offered_per_s")
    );
    let header: Vec<String> = rows.iter().map(|(row, r)| format!("{}{}", row.short, busy_mark(r))).collect();
    println!("| {:<34} | {} |", "", header.iter().map(|h| format!("{h:>16}")).collect::<Vec<_>>().join(" | "));
    let cells = |cell: &dyn Fn(&Value) -> String| {
        rows.iter().map(|(_, r)| format!("{:>16}", cell(r))).collect::<Vec<_>>().join(" | ")
    };
    let print = |label: &str, cell: &dyn Fn(&Value) -> String| println!("| {label:<34} | {} |", cells(cell));
    let reads = |r: &Value, k: &str| f(&r["reads"]["all"], k);
    print("polls/s", &|r| format!("{:.0}", f(r, "polls_per_s")));
    print("run lag p50 / p99 / max, ms", &|r| {
        format!("{:.0} / {:.0} / {:.0}", f(r, "lag_p50_ms"), f(r, "lag_p99_ms"), f(r, "lag_max_ms"))
    });
    print("runs failed / succeeded", &|r| format!("{} / {}", r["failed"], r["succeeded"]));
    print("skipped ticks (metrics)", &|r| format!("{}", r["skipped_ticks"]));
    print("run wall mean, ms", &|r| format!("{:.1}", f(r, "run_ms_mean")));
    print("outbox stage mean, ms", &|r| format!("{:.1}", f(&r["stage_ms_mean"], "outbox")));
    print("flush + sync per batch, ms", &|r| format!("{:.1}", f(r, "sync_ms_per_batch")));
    print("commits per batch", &|r| format!("{:.1}", f(r, "commits_per_batch")));
    if let Some(at) = stalled_at {
        print("slice with the stall: lag p99 / max", &|r| {
            slice_at(r, at).map_or("-".into(), |s| format!("{:.0} / {:.0}", f(s, "lag_p99_ms"), f(s, "lag_max_ms")))
        });
        print("  its slowest outbox stage, ms", &|r| {
            slice_at(r, at).map_or("-".into(), |s| format!("{:.0}", f(s, "outbox_max_ms")))
        });
    }
    print("API reads p50 / p99 / max, ms", &|r| {
        format!("{:.1} / {:.1} / {:.0}", reads(r, "p50_ms"), reads(r, "p99_ms"), reads(r, "max_ms"))
    });
    print("API reads done / errors", &|r| format!("{} / {}", r["reads"]["all"]["count"], r["reads"]["errors"]));
    print("CPU per poll, µs", &|r| format!("{:.0}", f(r, "cpu_us_per_poll")));
    print("other processes, cores", &|r| format!("{:.2}", f(r, "others_cores")));
    println!();
    for (row, r) in &rows {
        println!("{}:", row.scenario.label);
        print_window_notes(r);
        let slices: Vec<String> = r["slices"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| {
                        format!(
                            "{:.0}-{:.0} s: p99 {:.0} max {:.0} outbox max {:.0}",
                            f(s, "from_s"),
                            f(s, "to_s"),
                            f(s, "lag_p99_ms"),
                            f(s, "lag_max_ms"),
                            f(s, "outbox_max_ms")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!("  lag by slice (ms): {}", slices.join("; "));
        println!(
            "  API reads: GET project p50 {:.1} p99 {:.1} ms, GET runs p50 {:.1} p99 {:.1} ms",
            f(&r["reads"]["project"], "p50_ms"),
            f(&r["reads"]["project"], "p99_ms"),
            f(&r["reads"]["runs"], "p50_ms"),
            f(&r["reads"]["runs"], "p99_ms")
        );
    }
}
