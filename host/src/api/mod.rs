//! The HTTP API (axum): the only module that imports it.
//!
//! [`app`] builds the whole router from an [`AppState`], so tests call it in process with
//! `tower::ServiceExt::oneshot`. Every failure answers with the one [`ApiError`] body. Every route
//! is registered together with its OpenAPI operation (see `openapi.rs`), and `GET /openapi.json`
//! serves the document.
//!
//! `api` knows nothing of wasmtime, sled or AWS: it validates input, checks who is calling, and
//! calls `store` and `runtime`, and tells the data plane's scheduler (through `run::Control`) about
//! every change.

mod auth;
mod cluster;
mod console;
mod error;
mod extract;
mod health;
mod openapi;
mod outbox;
mod plugins;
mod project_input;
mod projects;
mod strict;
mod tenants;
mod versions;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Extension, Router};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;

use crate::metrics::Metrics;
use crate::run::Control;
use crate::runtime::Runtime;
use crate::store::Store;

/// Body limits per kind of route.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest JSON body, in bytes.
    pub max_json_bytes: usize,
    /// Largest plugin upload, in bytes.
    pub max_plugin_bytes: usize,
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Store,
    pub(crate) runtime: Runtime,
    pub(crate) limits: BodyLimits,
    /// The AWS principal tenants' roles must trust, shown in every project's onboarding.
    pub(crate) platform_principal_arn: Arc<str>,
    pub(crate) admin_token_sha256: Arc<[u8]>,
    /// Cleared when shutdown begins, so that `/readyz` turns away new traffic first.
    pub(crate) ready: Arc<AtomicBool>,
    pub(crate) metrics: Arc<Metrics>,
    /// The data plane's scheduler, told about every change so that it takes effect at once.
    /// `None` when this process serves the API only (in-process tests).
    pub(crate) control: Option<Control>,
}

impl AppState {
    /// The state for a store, a runtime (which holds the compiled plugins the data plane shares),
    /// the metrics (shared with the data plane too), the operator's token, and the principal
    /// tenants trust.
    pub fn new(
        store: Store,
        runtime: Runtime,
        metrics: Arc<Metrics>,
        admin_token: &str,
        limits: BodyLimits,
        platform_principal_arn: &str,
    ) -> Self {
        Self {
            store,
            runtime,
            limits,
            platform_principal_arn: Arc::from(platform_principal_arn),
            admin_token_sha256: Arc::from(Sha256::digest(admin_token.as_bytes()).as_slice()),
            ready: Arc::new(AtomicBool::new(true)),
            metrics,
            control: None,
        }
    }

    /// Connects the API to a data plane's scheduler.
    pub fn with_control(mut self, control: Control) -> Self {
        self.control = Some(control);
        self
    }

    /// The same API with its control changed.
    pub fn map_control(mut self, change: impl FnOnce(Control) -> Control) -> Self {
        self.control = self.control.map(change);
        self
    }

    /// The same API without the data plane's control, for a host that runs no scheduler.
    pub fn without_control(mut self) -> Self {
        self.control = None;
        self
    }

    /// The metrics, to share with the data plane.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The flag `/readyz` reports; clear it to drain traffic before shutdown.
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }
}

/// The whole API. JSON bodies are limited to `max_json_bytes`; plugin uploads have their own
/// larger limit. The OpenAPI document comes from the same router, so it lists exactly the API's
/// routes; the console's static files are served beside them, outside the document.
pub fn app(state: AppState) -> Router {
    let limits = state.limits;
    let (router, doc) = OpenApiRouter::with_openapi(openapi::base())
        .merge(tenants::routes())
        .merge(cluster::routes())
        .merge(plugins::routes())
        .merge(projects::routes())
        .merge(outbox::routes())
        .layer(DefaultBodyLimit::max(limits.max_json_bytes))
        .merge(plugins::upload_routes().layer(DefaultBodyLimit::max(limits.max_plugin_bytes)))
        .merge(health::routes())
        .merge(openapi::routes())
        .split_for_parts();
    router
        // The console is static content, not part of the JSON API: outside the document.
        .merge(console::routes())
        // After every route is in: the fallback applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(openapi::Document::new(&doc)))
        .fallback(|| async { ApiError::NotFound("no such route; see GET /openapi.json for the API".into()) })
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// A method a path does not take answers with the API's error body, like every other failure;
/// axum still adds the `Allow` header with the methods the path takes.
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not served on {}; the Allow header lists the methods it takes, and GET /openapi.json documents them",
        uri.path()
    ))
}

/// Counts every request by its route template (never the raw path, which holds ids).
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let response = next.run(request).await;
    state.metrics.http_request(&method, &route, response.status().as_u16(), started.elapsed());
    response
}
