//! Liveness and readiness for load balancers and orchestrators.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
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
