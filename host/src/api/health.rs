//! Liveness, readiness and metrics for load balancers, orchestrators and Prometheus.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// The process is up and serving HTTP.
async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

/// The store answers and the daemon is not shutting down.
async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<Value>) {
    let store_ok = state.store.tenant("readiness-probe").is_ok();
    let accepting = state.ready.load(Ordering::Relaxed);
    let status = if store_ok && accepting { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(json!({"store": store_ok, "accepting": accepting})))
}

/// Prometheus text format. Like the probes, it needs no token: it holds no tenant data, only
/// counts by route template.
async fn metrics(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let tenants = state.store.tenants().map_or(0, |t| t.len()) as f64;
    let loaded = state.loaded.lock().map_or(0, |l| l.len()) as f64;
    let ready = if state.ready.load(Ordering::Relaxed) { 1.0 } else { 0.0 };
    let body = state.metrics.render(&[
        ("sluice_tenants", "Tenants in the store.", tenants),
        ("sluice_plugins_loaded", "Plugins compiled and pre-linked in this process.", loaded),
        ("sluice_ready", "1 while the daemon accepts traffic, 0 while it shuts down.", ready),
    ]);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
