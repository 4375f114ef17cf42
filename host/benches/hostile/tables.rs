//! The hostile bench's tables: each scenario's pair of windows, baseline then loaded, side by
//! side.

use super::*;

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// A row of a baseline/loaded comparison: the label, both values, and their ratio.
fn row(label: &str, base: f64, loaded: f64, digits: usize) {
    let ratio = if base.is_finite() && base != 0.0 { format!("{:.2}x", loaded / base) } else { "-".into() };
    println!("| {label:<44} | {base:>12.digits$} | {loaded:>12.digits$} | {ratio:>7} |");
}

fn comparison_rows(base: &Value, loaded: &Value) {
    row("well-behaved polls/s", f(base, "polls_per_s"), f(loaded, "polls_per_s"), 0);
    row("schedule lag p50, ms", f(base, "lag_p50_ms"), f(loaded, "lag_p50_ms"), 0);
    row("schedule lag p99, ms", f(base, "lag_p99_ms"), f(loaded, "lag_p99_ms"), 0);
    row("schedule lag max, ms", f(base, "lag_max_ms"), f(loaded, "lag_max_ms"), 0);
    row(
        "lag p99 of the median 10-s slice, ms",
        f(base, "lag_p99_median_slice_ms"),
        f(loaded, "lag_p99_median_slice_ms"),
        0,
    );
    row("well-behaved run wall mean, ms", f(base, "run_ms_mean"), f(loaded, "run_ms_mean"), 1);
    for stage in ["prepare", "transform", "outbox"] {
        let (b, l) = (f(&base["stage_ms_mean"], stage), f(&loaded["stage_ms_mean"], stage));
        row(&format!("  of which {stage}, ms"), b, l, 1);
    }
    row("well-behaved runs failed", f(base, "failed"), f(loaded, "failed"), 0);
    row("skipped ticks (all projects)", f(base, "skipped_ticks"), f(loaded, "skipped_ticks"), 0);
    row("Sluice CPU, cores", f(base, "cpu_cores"), f(loaded, "cpu_cores"), 2);
    row("VmRSS in window, min MiB", f(base, "rss_window_min_mib"), f(loaded, "rss_window_min_mib"), 0);
    row("VmRSS in window, max MiB", f(base, "rss_window_max_mib"), f(loaded, "rss_window_max_mib"), 0);
    row("VmHWM (peak), MiB", f(base, "rss_peak_mib"), f(loaded, "rss_peak_mib"), 0);
    row("VmRSS at the end, MiB", f(base, "rss_end_mib"), f(loaded, "rss_end_mib"), 0);
    row("other processes, cores", f(base, "others_cores"), f(loaded, "others_cores"), 2);
}

fn header(title: &str, base: &str, loaded: &str) {
    println!();
    println!("{title}");
    println!("| {:<44} | {base:>12} | {loaded:>12} | {:>7} |", "", "ratio");
}

/// The two windows side by side per 10 s: lag, the slowest outbox flush, Sluice's CPU, other
/// processes' CPU and disk wait (to tell this process's doing from the shared machine's), and for
/// the noisy scenario its tenant's runs, their wasm time and the RSS.
fn slice_table(base: &Value, loaded: &Value, name: &str) {
    let noisy = !loaded["noisy"].is_null();
    println!();
    println!(
        "Per 10 s, baseline | {name}: well-behaved lag p99 (and p50, max) and slowest outbox flush in ms; \
         CPU cores of Sluice, of other processes, and idle waiting for disk{}",
        if noisy { "; noisy runs started, their wasm seconds, and the largest RSS sampled" } else { "" }
    );
    let columns = [
        "slice s", "p99", "outbox", "own", "others", "iowait", "|", "p50", "p99", "max", "outbox", "own", "others",
        "iowait",
    ];
    let extra = if noisy { " noisy |  wasm s |     RSS |" } else { "" };
    println!("| {} |{extra}", columns.map(|c| format!("{c:>7}")).join(" | "));
    let empty = Vec::new();
    for (i, slice) in loaded["slices"].as_array().unwrap_or(&empty).iter().enumerate() {
        let (b, bm, lm) = (&base["slices"][i], &base["machine_slices"][i], &loaded["machine_slices"][i]);
        let cells = [
            format!("{:>3.0}-{:<3.0}", f(slice, "from_s"), f(slice, "to_s")),
            format!("{:.0}", f(b, "lag_p99_ms")),
            format!("{:.0}", f(b, "outbox_max_ms")),
            format!("{:.2}", f(bm, "own_cores")),
            format!("{:.2}", f(bm, "others_cores")),
            format!("{:.2}", f(bm, "iowait_cores")),
            "|".into(),
            format!("{:.0}", f(slice, "lag_p50_ms")),
            format!("{:.0}", f(slice, "lag_p99_ms")),
            format!("{:.0}", f(slice, "lag_max_ms")),
            format!("{:.0}", f(slice, "outbox_max_ms")),
            format!("{:.2}", f(lm, "own_cores")),
            format!("{:.2}", f(lm, "others_cores")),
            format!("{:.2}", f(lm, "iowait_cores")),
        ];
        let extra = if noisy {
            let n = &loaded["noisy"]["slices"][i];
            format!(
                " {:>5} | {:>7.1} | {:>3.0} MiB |",
                n["runs"].as_u64().unwrap_or(0),
                f(n, "transform_s"),
                f(lm, "rss_max_mib")
            )
        } else {
            String::new()
        };
        println!("| {} |{extra}", cells.map(|c| format!("{c:>7}")).join(" | "));
    }
}

fn print_noisy(base: &Value, loaded: &Value) {
    header("Noisy neighbours (shipped settings)", "baseline", "with noisy");
    comparison_rows(base, loaded);
    let peak = if loaded["rss_peak_is_window"] == true { "peak over the window" } else { "peak since start" };
    println!("  (VmHWM: {peak}; window {:.0} s)", f(loaded, "window_s"));
    slice_table(base, loaded, "with noisy");
    println!();
    println!("Noisy projects over the window:");
    print_noisy_projects(&loaded["noisy"]);
    print_totals([("baseline", base), ("with noisy", loaded)]);
}

/// Two runs beside the same hostile tenants, the first with a budget as large as the old bound.
fn print_budget(base: &Value, loaded: &Value) {
    let (b, l) = (f(base, "memory_budget_mib"), f(loaded, "memory_budget_mib"));
    header(
        &format!(
            "Plugin memory budget: {} hostile tenants, {} memory-hog projects in all, beside {} well-behaved",
            loaded["noisy_tenants"], loaded["noisy"]["all"]["projects"], loaded["n"]
        ),
        &format!("{b:.0} MiB"),
        &format!("{l:.0} MiB"),
    );
    comparison_rows(base, loaded);
    row(
        "plugin memory held at once, peak MiB",
        f(base, "plugin_memory_peak_mib"),
        f(loaded, "plugin_memory_peak_mib"),
        0,
    );
    slice_table(base, loaded, &format!("budget {l:.0} MiB"));
    let labels = [format!("budget {b:.0} MiB"), format!("budget {l:.0} MiB")];
    for (label, r) in [(&labels[0], base), (&labels[1], loaded)] {
        println!();
        println!("Hostile projects, {label}:");
        print_noisy_projects(&r["noisy"]);
    }
    print_totals([(&labels[0], base), (&labels[1], loaded)]);
}

/// The noisy projects' runs and errors by mode, and their status at the end.
fn print_noisy_projects(noisy: &Value) {
    for (mode, m) in noisy["modes"].as_object().into_iter().flatten() {
        println!(
            "  {mode}: {} projects, {} runs ({} failed, {} succeeded), runs per project min/median/max {}, {} skips recorded",
            m["projects"], m["ran"], m["failed"], m["succeeded"], m["runs_per_project"], m["skipped_recorded"]
        );
        for (error, count) in m["errors"].as_object().into_iter().flatten() {
            println!("    {count} x {error}");
        }
    }
    println!(
        "  at the end: status {}, consecutive failures {}, {} backed off with {} s left; e.g. \"{}\"",
        noisy["status_at_end"],
        noisy["consecutive_failures_at_end"],
        noisy["backed_off_at_end"],
        noisy["backoff_left_s_at_end"],
        noisy["status_message_example"].as_str().unwrap_or("")
    );
}

/// Per side: the well-behaved runs, their errors, and how busy the machine was.
fn print_totals(sides: [(&str, &Value); 2]) {
    for (label, r) in sides {
        println!(
            "  {label}: {} well-behaved runs ({} failed), {} skips recorded, run wall mean {:.1} ms; machine {:.0}% busy, peer {:.2} cores-equivalent",
            f(r, "succeeded") + f(r, "failed"),
            r["failed"],
            r["skipped"],
            f(r, "run_ms_mean"),
            f(r, "machine_busy") * 100.0,
            f(r, "peer_cpu_us_per_poll") * f(r, "polls_per_s") / 1e6,
        );
        if f(r, "failed") > 0.0 {
            println!("    errors: {}", r["errors"]);
        }
    }
}

fn print_control(base: &Value, loaded: &Value) {
    let api = &loaded["api"];
    header(
        &format!("Control plane under load: {} projects, API at {:.0} req/s", loaded["n"], f(api, "offered_per_s")),
        "no API load",
        "API load",
    );
    comparison_rows(base, loaded);
    row("load generator, cores (another process)", f(base, "helper_cores"), f(loaded, "helper_cores"), 2);
    slice_table(base, loaded, "API load");
    println!();
    println!(
        "API over {:.0} s: {} requests, {:.0}/s achieved of {:.0}/s offered; p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms; \
         {} errors, {} dropped, {} unfinished; sender late p99 {:.1} ms",
        f(api, "window_s"),
        api["completed"],
        f(api, "achieved_per_s"),
        f(api, "offered_per_s"),
        f(api, "p50_ms"),
        f(api, "p99_ms"),
        f(api, "max_ms"),
        api["errors"],
        api["dropped"],
        api["unfinished"],
        f(api, "late_p99_ms"),
    );
    println!(
        "| {:<46} | {:>5} | {:>6} | {:>8} | {:>8} | {:>8} | {:>11} | {:>6} |",
        "request", "share", "count", "p50 ms", "p99 ms", "max ms", "svc p99 ms", "errors"
    );
    for kind in api["kinds"].as_array().into_iter().flatten() {
        let errors: u64 = kind["errors"].as_object().map_or(0, |e| e.values().filter_map(Value::as_u64).sum());
        println!(
            "| {:<46} | {:>4}% | {:>6} | {:>8.1} | {:>8.1} | {:>8.0} | {:>11.1} | {:>6} |",
            kind["kind"].as_str().unwrap_or("?"),
            kind["share"].as_u64().unwrap_or(0),
            kind["count"].as_u64().unwrap_or(0),
            f(kind, "p50_ms"),
            f(kind, "p99_ms"),
            f(kind, "max_ms"),
            f(kind, "service_p99_ms"),
            errors
        );
        if errors > 0 {
            println!("    {}", kind["errors"]);
        }
        if kind["skipped"].as_u64().unwrap_or(0) > 0 {
            println!("    {} not sent: no project created earlier had come back yet", kind["skipped"]);
        }
    }
}

/// Prints the noisy and control comparisons among `results`, which come in (baseline, loaded)
/// pairs.
pub fn print(results: &[Value]) {
    let printers = [("noisy", print_noisy as fn(&Value, &Value)), ("budget", print_budget), ("control", print_control)];
    for (kind, print) in printers {
        let runs: Vec<&Value> = results.iter().filter(|r| r["kind"] == kind).collect();
        for pair in runs.chunks(2) {
            if let [base, loaded] = pair {
                print(base, loaded);
            }
        }
    }
}
