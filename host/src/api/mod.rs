//! The HTTP API (axum): the only module that imports it.
//!
//! [`app`] builds the whole router from an [`AppState`], so tests call it in process with
//! `tower::ServiceExt::oneshot`. Every failure answers with the one [`ApiError`] body.
//!
//! `api` knows nothing of wasmtime, sled or AWS: it validates input, checks who is calling, and
//! calls `store` and `runtime`.

mod auth;
mod error;
mod health;
mod json;
mod tenants;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use sha2::{Digest, Sha256};

pub use error::ApiError;

use crate::store::Store;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Store,
    pub(crate) admin_token_sha256: Arc<[u8]>,
    /// Cleared when shutdown begins, so that `/readyz` turns away new traffic first.
    pub(crate) ready: Arc<AtomicBool>,
}

impl AppState {
    /// The state for a store and the operator's token.
    pub fn new(store: Store, admin_token: &str) -> Self {
        Self {
            store,
            admin_token_sha256: Arc::from(Sha256::digest(admin_token.as_bytes()).as_slice()),
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The flag `/readyz` reports; clear it to drain traffic before shutdown.
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }
}

/// The whole API, with JSON bodies limited to `max_json_bytes`.
pub fn app(state: AppState, max_json_bytes: usize) -> Router {
    Router::new()
        .merge(tenants::routes())
        .merge(health::routes())
        .fallback(|| async { ApiError::NotFound("no such route; see GET /openapi.json for the API".into()) })
        .layer(DefaultBodyLimit::max(max_json_bytes))
        .with_state(state)
}
