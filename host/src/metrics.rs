//! Prometheus metrics in the text exposition format, without a metrics crate: a few labelled
//! counters and histograms behind one mutex each, rendered on `GET /metrics`.
//!
//! Label values come only from the code (route templates, methods, status codes, outcome
//! names), never from tenant input, so the number of series stays bounded.

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
        for ((method, route), h) in self.http_latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(out, "sluice_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "sluice_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "sluice_http_request_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "sluice_http_request_duration_seconds_count{{{labels}}} {}", h.count);
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let metrics = Metrics::default();
        metrics.http_request("GET", "/v1/projects/{id}", 200, Duration::from_millis(3));
        metrics.http_request("GET", "/v1/projects/{id}", 200, Duration::from_millis(30));
        let text = metrics.render(&[("sluice_tenants", "Tenants.", 2.0)]);
        assert!(
            text.contains("sluice_http_requests_total{method=\"GET\",route=\"/v1/projects/{id}\",status=\"200\"} 2")
        );
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("sluice_tenants 2"));
    }
}
