//! Liveness, readiness and metrics for load balancers, orchestrators and Prometheus.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// The body of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(examples("ok"))]
    status: &'static str,
}

/// The body of `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    /// Whether the store answers.
    store: bool,
    /// Whether the daemon accepts traffic; false once shutdown begins.
    accepting: bool,
    /// Whether the scheduler is running and, in a cluster, the host has taken its share of the
    /// leases or found none to take; always true in a process that serves the API only.
    scheduler: bool,
    /// Whether scheduled runs start later than `[scheduler] saturated_lag_ms` on average: the
    /// host is offered more than it can do. Its API still serves, so this alone does not make it
    /// unready; the overload shows as schedule lag and skipped ticks in `/metrics`.
    saturated: bool,
}

/// Liveness probe
///
/// The process is up and serving HTTP. Needs no credentials.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up", body = Health))
)]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Readiness probe
///
/// The store answers, the scheduler runs, and the daemon is not shutting down. Needs no
/// credentials.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: the store answers and the daemon accepts traffic", body = Readiness),
        (
            status = 503,
            description = "Not ready: the store failed, the scheduler stopped, or shutdown has begun",
            body = Readiness
        ),
    )
)]
async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<Readiness>) {
    let store_ok = state.store.tenant("readiness-probe").await.is_ok();
    let accepting = state.ready.load(Ordering::Relaxed);
    let scheduler = state.control.as_ref().is_none_or(|control| control.data_plane_ready());
    let saturated = state.control.as_ref().is_some_and(|control| control.scheduler_load().saturated);
    let ready = store_ok && accepting && scheduler;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(Readiness { store: store_ok, accepting, scheduler, saturated }))
}

/// Prometheus metrics
///
/// HTTP request counters and latency histograms by route template, and daemon gauges, in
/// Prometheus text format. Like the probes, it needs no token: it holds no tenant data, only
/// counts by route template.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((
        status = 200,
        description = "Prometheus text exposition format 0.0.4",
        body = String,
        content_type = "text/plain; version=0.0.4"
    ))
)]
async fn metrics(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let tenants = state.store.tenants().await.map_or(0, |t| t.len()) as f64;
    let loaded = state.runtime.loaded_count() as f64;
    let load = state.control.as_ref().map(|control| control.scheduler_load()).unwrap_or_default();
    // A scrape must not fail for a slow store: an unreadable depth shows as -1.
    let outbox_depth = state.store.outbox_depth().await.map_or(-1.0, |depth| depth as f64);
    let ready = if state.ready.load(Ordering::Relaxed) { 1.0 } else { 0.0 };
    let body = state.metrics.render(&[
        ("sluice_tenants", "Tenants in the store.", tenants),
        ("sluice_plugins_loaded", "Plugins compiled and pre-linked in this process.", loaded),
        ("sluice_ready", "1 while the daemon accepts traffic, 0 while it shuts down.", ready),
        (
            "sluice_plugin_memory_bytes",
            "Linear memory plugin calls hold now, out of runtime.memory_budget_bytes.",
            state.runtime.memory_in_use_bytes() as f64,
        ),
        (
            "sluice_plugin_memory_peak_bytes",
            "The most linear memory plugin calls have held at once since the daemon started.",
            state.runtime.memory_peak_bytes() as f64,
        ),
        (
            "sluice_plugin_memory_budget_bytes",
            "The host-wide budget of plugin linear memory (runtime.memory_budget_bytes).",
            state.runtime.memory_budget_bytes() as f64,
        ),
        ("sluice_runs_waiting", "Runs fired but waiting for a concurrency permit.", load.waiting as f64),
        (
            "sluice_schedule_lag_recent_seconds",
            "How late scheduled runs started lately, on average (0 when none started lately).",
            load.recent_lag.as_secs_f64(),
        ),
        (
            "sluice_saturated",
            "1 while scheduled runs start later than [scheduler] saturated_lag_ms on average.",
            if load.saturated { 1.0 } else { 0.0 },
        ),
        ("sluice_outbox_depth", "Runs whose records wait in the outbox for Kinesis.", outbox_depth),
    ]);
    let mut body = body;
    let rows: Vec<(String, f64)> = state
        .store
        .disk_usage_by_tenant()
        .into_iter()
        .flat_map(|(tenant, usage)| {
            [
                ("state", usage.state_bytes),
                ("outbox", usage.outbox_bytes),
                ("parked", usage.parked_bytes),
                ("history", usage.history_bytes),
            ]
            .map(|(kind, bytes)| (format!("tenant=\"{tenant}\",kind=\"{kind}\""), bytes as f64))
        })
        .collect();
    crate::metrics::render_labelled_gauge(
        &mut body,
        "sluice_tenant_store_bytes",
        "Bytes a tenant keeps in the store, by kind: committed state, outbox, parked entries, run history.",
        &rows,
    );
    let rows: Vec<(String, f64)> = state
        .runtime
        .memory_in_use_by_owner()
        .into_iter()
        .map(|(tenant, bytes)| (format!("tenant=\"{tenant}\""), bytes as f64))
        .collect();
    crate::metrics::render_labelled_gauge(
        &mut body,
        "sluice_tenant_plugin_memory_bytes",
        "Plugin linear memory a tenant's calls hold now, against its max_plugin_memory_bytes quota.",
        &rows,
    );
    if let Some(cluster) = state.control.as_ref().and_then(|control| control.cluster()) {
        let counters = cluster.counters();
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) as f64;
        let rows = [
            ("sluice_cluster_leases", "gauge", "Partition leases this host holds.", cluster.owned().len() as f64),
            (
                "sluice_cluster_leases_taken_total",
                "counter",
                "Leases this host took: free, expired or stolen.",
                load(&counters.taken),
            ),
            (
                "sluice_cluster_lease_losses_total",
                "counter",
                "Leases this host lost: renewal refused, or not renewed in time.",
                load(&counters.lost),
            ),
            (
                "sluice_cluster_fenced_runs_total",
                "counter",
                "Runs whose lease was lost while they ran; nothing of them was committed.",
                load(&counters.fenced_runs),
            ),
            (
                "sluice_cluster_handover_seconds",
                "gauge",
                "How long the last hand-over took, from taking partitions to scheduling their projects.",
                load(&counters.last_handover_ms) / 1000.0,
            ),
        ];
        for (name, kind, help, value) in rows {
            body.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
        }
    }
    if let Some(stats) = state.store.commit_stats() {
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let counters = [
            (
                "sluice_store_commit_batches_total",
                "Batches the store's committer made durable, each with one flush and one fdatasync.",
                load(&stats.batches) as f64,
            ),
            (
                "sluice_store_commits_total",
                "Writes the committer applied, in all batches.",
                load(&stats.commits) as f64,
            ),
            (
                "sluice_store_sync_seconds_total",
                "Time the committer spent flushing and syncing.",
                load(&stats.sync_us) as f64 / 1e6,
            ),
        ];
        for (name, help, value) in counters {
            body.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"));
        }
    }
    if let Some(meter) = state.store.meter() {
        let rows: Vec<(String, f64)> = meter
            .requests()
            .into_iter()
            .map(|(service, operation, count)| {
                (format!("service=\"{service}\",operation=\"{operation}\""), count as f64)
            })
            .collect();
        crate::metrics::render_labelled_counter(
            &mut body,
            "sluice_store_requests_total",
            "Requests the shared store sent to DynamoDB and S3, by operation, retries included.",
            &rows,
        );
        let name = "sluice_store_write_units_total";
        body.push_str(&format!(
            "# HELP {name} DynamoDB write units the shared store's batched writes took, by DynamoDB's rules.\n\
             # TYPE {name} counter\n{name} {}\n",
            meter.write_units()
        ));
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
