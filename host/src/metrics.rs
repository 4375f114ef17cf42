//! Prometheus metrics in the text exposition format, without a metrics crate: a few labelled
//! counters and histograms behind one mutex each, rendered on `GET /metrics`.
//!
//! Label values come only from the code (route templates, methods, status codes, outcome
//! names) or from ids the host generated (tenant ids, one series set per tenant), never from
//! tenant input, so the number of series stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// The daemon's metrics. One instance lives in the API state.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route template, status) → requests.
    http_requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (method, route template) → latency.
    http_latency: Mutex<BTreeMap<(String, String), Histogram>>,
    /// (trigger, outcome) → runs.
    runs: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Stage → time spent in it per run.
    stages: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Time from a run's due time (nominal plus jitter) to its start.
    schedule_lag: Mutex<Histogram>,
    /// Time in plugin calls per run.
    plugin_time: Mutex<Histogram>,
    /// Records and bytes Kinesis accepted.
    delivered: Mutex<(u64, u64)>,
    /// Outbox entries parked because Kinesis refused them for good.
    parked: Mutex<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Records one HTTP request.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut requests = self.http_requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((method.to_string(), route.to_string(), status)).or_default() += 1;
        drop(requests);
        let mut latency = self.http_latency.lock().unwrap_or_else(|e| e.into_inner());
        latency.entry((method.to_string(), route.to_string())).or_default().observe(elapsed.as_secs_f64());
    }

    /// Records one finished (or skipped) run.
    pub fn run(&self, trigger: &'static str, outcome: &'static str) {
        *lock(&self.runs).entry((trigger, outcome)).or_default() += 1;
    }

    /// Records the time one run spent in one stage.
    pub fn stage(&self, stage: &'static str, elapsed: Duration) {
        lock(&self.stages).entry(stage).or_default().observe(elapsed.as_secs_f64());
    }

    /// Records how late a run started.
    pub fn schedule_lag(&self, lag: Duration) {
        lock(&self.schedule_lag).observe(lag.as_secs_f64());
    }

    /// Records the time one run spent in plugin calls.
    pub fn plugin_time(&self, elapsed: Duration) {
        lock(&self.plugin_time).observe(elapsed.as_secs_f64());
    }

    /// Counts records and bytes Kinesis accepted.
    pub fn delivered(&self, records: u64, bytes: u64) {
        let mut delivered = lock(&self.delivered);
        delivered.0 += records;
        delivered.1 += bytes;
    }

    /// Counts one outbox entry parked.
    pub fn parked(&self) {
        *lock(&self.parked) += 1;
    }

    /// Renders every metric, plus the gauges passed in (name, help, value).
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP sluice_http_requests_total HTTP requests handled, by method, route and status.\n");
        out.push_str("# TYPE sluice_http_requests_total counter\n");
        for ((method, route, status), count) in self.http_requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "sluice_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP sluice_http_request_duration_seconds HTTP request latency, by method and route.\n");
        out.push_str("# TYPE sluice_http_request_duration_seconds histogram\n");
        for ((method, route), h) in lock(&self.http_latency).iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            render_histogram(&mut out, "sluice_http_request_duration_seconds", &labels, h);
        }
        out.push_str("# HELP sluice_runs_total Project runs, by trigger and outcome.\n");
        out.push_str("# TYPE sluice_runs_total counter\n");
        for ((trigger, outcome), count) in lock(&self.runs).iter() {
            let _ = writeln!(out, "sluice_runs_total{{trigger=\"{trigger}\",outcome=\"{outcome}\"}} {count}");
        }
        out.push_str("# HELP sluice_run_stage_duration_seconds Time per run spent in each stage.\n");
        out.push_str("# TYPE sluice_run_stage_duration_seconds histogram\n");
        for (stage, h) in lock(&self.stages).iter() {
            render_histogram(&mut out, "sluice_run_stage_duration_seconds", &format!("stage=\"{stage}\""), h);
        }
        let lag = lock(&self.schedule_lag).clone();
        out.push_str("# HELP sluice_schedule_lag_seconds How late runs start after their due time.\n");
        out.push_str("# TYPE sluice_schedule_lag_seconds histogram\n");
        render_histogram(&mut out, "sluice_schedule_lag_seconds", "", &lag);
        let plugin = lock(&self.plugin_time).clone();
        out.push_str("# HELP sluice_plugin_duration_seconds Time per run spent in plugin calls.\n");
        out.push_str("# TYPE sluice_plugin_duration_seconds histogram\n");
        render_histogram(&mut out, "sluice_plugin_duration_seconds", "", &plugin);
        let (records, bytes) = *lock(&self.delivered);
        let _ = writeln!(
            out,
            "# HELP sluice_records_delivered_total Records Kinesis accepted.\n# TYPE sluice_records_delivered_total counter\nsluice_records_delivered_total {records}"
        );
        let _ = writeln!(
            out,
            "# HELP sluice_bytes_delivered_total Record bytes (data and partition keys) Kinesis accepted.\n# TYPE sluice_bytes_delivered_total counter\nsluice_bytes_delivered_total {bytes}"
        );
        let parked = *lock(&self.parked);
        let _ = writeln!(
            out,
            "# HELP sluice_outbox_parked_total Outbox entries parked because Kinesis refused their records for good.\n# TYPE sluice_outbox_parked_total counter\nsluice_outbox_parked_total {parked}"
        );
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

/// Writes one gauge with a series per row; each row's labels are already formatted
/// (`tenant="ten_1",kind="state"`) and come from the code or from ids the host generated.
pub fn render_labelled_gauge(out: &mut String, name: &str, help: &str, rows: &[(String, f64)]) {
    render_labelled(out, name, help, "gauge", rows);
}

/// Writes one counter with a row per label set, as [`render_labelled_gauge`] does a gauge.
pub fn render_labelled_counter(out: &mut String, name: &str, help: &str, rows: &[(String, f64)]) {
    render_labelled(out, name, help, "counter", rows);
}

fn render_labelled(out: &mut String, name: &str, help: &str, kind: &str, rows: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Writes one histogram's buckets, sum and count; `labels` may be empty.
fn render_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, count) in BUCKETS.iter().zip(h.counts) {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let metrics = Metrics::default();
        metrics.http_request("GET", "/v1/projects/{id}", 200, Duration::from_millis(3));
        metrics.http_request("GET", "/v1/projects/{id}", 200, Duration::from_millis(30));
        metrics.run("schedule", "succeeded");
        metrics.stage("fetch", Duration::from_millis(2));
        metrics.delivered(3, 300);
        let text = metrics.render(&[("sluice_tenants", "Tenants.", 2.0)]);
        assert!(text.contains("sluice_runs_total{trigger=\"schedule\",outcome=\"succeeded\"} 1"), "{text}");
        assert!(text.contains("sluice_run_stage_duration_seconds_count{stage=\"fetch\"} 1"), "{text}");
        assert!(text.contains("sluice_schedule_lag_seconds_count 0"), "{text}");
        assert!(text.contains("sluice_records_delivered_total 3"), "{text}");
        assert!(
            text.contains("sluice_http_requests_total{method=\"GET\",route=\"/v1/projects/{id}\",status=\"200\"} 2")
        );
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("sluice_tenants 2"));
    }
}
