//! Tenant routes for plugins: upload (checked and compiled at once), list, show, delete, and a
//! dry run on a given response.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{Json, Query, RawBody};
use crate::runtime::{self, CallError, LogLine, Plugin, Poll, Response, plugin_id};
use crate::store::{CreatePlugin, DeletePlugin, PluginMeta, now_rfc3339};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/plugins", get(list))
        .route("/v1/plugins/{id}", get(show).delete(remove))
        .route("/v1/plugins/{id}/test", post(test))
}

/// The upload route, which takes a larger body than the JSON routes.
pub fn upload_routes() -> Router<AppState> {
    Router::new().route("/v1/plugins", post(upload))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: Option<String>,
}

#[derive(Debug, Serialize)]
struct PluginList {
    plugins: Vec<PluginMeta>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no plugin with id {id}; list your plugins with GET /v1/plugins"))
}

fn check_name(name: Option<&str>) -> Result<String, ApiError> {
    let name = name.unwrap_or_default();
    let valid = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(ApiError::invalid(
            "give the plugin a name with ?name=, 1 to 100 letters, digits, '-', '_' or '.', for example ?name=json-split",
        ));
    }
    Ok(name.to_string())
}

fn human(bytes: u64) -> String {
    runtime::human_bytes(bytes)
}

/// `POST /v1/plugins?name=N` with the component as the body.
async fn upload(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, axum::Json<PluginMeta>), ApiError> {
    let name = check_name(query.name.as_deref())?;
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !matches!(content_type, "application/wasm" | "application/octet-stream") {
        return Err(ApiError::invalid("send the component with the header `content-type: application/wasm`"));
    }
    let quotas = tenant.quotas();
    if body.len() as u64 > quotas.max_plugin_bytes {
        return Err(ApiError::Forbidden {
            code: "quota_exceeded",
            message: format!(
                "the plugin is {}, over this tenant's max_plugin_bytes quota of {}; shrink it (opt-level \"s\", LTO, strip) or ask the operator to raise the quota",
                human(body.len() as u64),
                human(quotas.max_plugin_bytes)
            ),
        });
    }
    let id = plugin_id(&body);
    if let Some(existing) = state.store.plugin(&tenant.id, &id)? {
        return Ok((StatusCode::OK, axum::Json(existing)));
    }
    let plugin = load(&state, body.clone()).await?;
    let meta = PluginMeta { id: id.clone(), name, size_bytes: body.len() as u64, created_at: now_rfc3339() };
    match state.store.create_plugin(&tenant.id, meta, &body, quotas.max_plugins).await? {
        CreatePlugin::Created(meta) => {
            state.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(id, plugin);
            Ok((StatusCode::CREATED, axum::Json(meta)))
        }
        CreatePlugin::Exists(meta) => Ok((StatusCode::OK, axum::Json(meta))),
        CreatePlugin::QuotaExceeded => Err(ApiError::Forbidden {
            code: "quota_exceeded",
            message: format!(
                "this tenant already has its max_plugins quota of {} plugins; delete one or ask the operator to raise the quota",
                quotas.max_plugins
            ),
        }),
    }
}

/// Compiles and checks a component off the async threads: a large plugin takes seconds.
async fn load(state: &AppState, bytes: Bytes) -> Result<Plugin, ApiError> {
    let runtime = state.runtime.clone();
    tokio::task::spawn_blocking(move || runtime.load(&bytes))
        .await
        .map_err(|e| ApiError::Internal(format!("plugin compilation task failed: {e}")))?
        .map_err(|e| ApiError::Invalid { code: "invalid_plugin", message: e.to_string() })
}

/// The loaded plugin for an id, compiling it (from the on-disk cache, usually) on first use.
async fn loaded(state: &AppState, id: &str) -> Result<Plugin, ApiError> {
    if let Some(plugin) = state.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
        return Ok(plugin.clone());
    }
    let bytes = state.store.plugin_bytes(id)?.ok_or_else(|| not_found(id))?;
    let plugin = load(state, Bytes::from(bytes)).await?;
    state.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), plugin.clone());
    Ok(plugin)
}

async fn list(Caller(tenant): Caller, State(state): State<AppState>) -> Result<axum::Json<PluginList>, ApiError> {
    Ok(axum::Json(PluginList { plugins: state.store.plugins(&tenant.id)? }))
}

async fn show(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<PluginMeta>, ApiError> {
    state.store.plugin(&tenant.id, &id)?.map(axum::Json).ok_or_else(|| not_found(&id))
}

async fn remove(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.store.delete_plugin(&tenant.id, &id).await? {
        DeletePlugin::Deleted => Ok(StatusCode::NO_CONTENT),
        DeletePlugin::Absent => Err(not_found(&id)),
        DeletePlugin::InUse(project) => Err(ApiError::Conflict(format!(
            "project {project} uses this plugin; point the project at another plugin or delete it first"
        ))),
    }
}

/// Bytes in JSON: `{"text": "..."}` for UTF-8, otherwise `{"base64": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Blob {
    Text(String),
    Base64(String),
}

impl Blob {
    fn from_bytes(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Blob::Text(text.to_string()),
            Err(_) => Blob::Base64(BASE64.encode(bytes)),
        }
    }

    fn into_bytes(self, field: &str) -> Result<Vec<u8>, ApiError> {
        match self {
            Blob::Text(text) => Ok(text.into_bytes()),
            Blob::Base64(b64) => BASE64.decode(b64).map_err(|e| {
                ApiError::invalid(format!(
                    "`{field}.base64` is not valid base64 ({e}); encode the bytes with standard base64"
                ))
            }),
        }
    }
}

/// `POST /v1/plugins/{id}/test`: a response to transform, as the daemon would.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    /// The response the plugin transforms.
    response: TestResponse,
    /// The state from a previous run, if any.
    #[serde(default)]
    state: Option<Blob>,
    /// Plugin settings.
    #[serde(default)]
    settings: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestResponse {
    #[serde(default = "ok_status")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Blob,
}

fn ok_status() -> u16 {
    200
}

#[derive(Debug, Serialize)]
struct TestRecord {
    partition_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    explicit_hash_key: Option<String>,
    data: Blob,
}

#[derive(Debug, Serialize)]
struct TestNext {
    method: String,
    url: String,
}

/// The outcome of a dry run: what would be delivered, or why nothing would.
#[derive(Debug, Serialize)]
struct TestReport {
    /// `ok` or `failed`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<Failure>,
    records: Vec<TestRecord>,
    /// The new state, absent when unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<Blob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<TestNext>,
    logs: Vec<LogLine>,
    duration_ms: f64,
}

#[derive(Debug, Serialize)]
struct Failure {
    kind: &'static str,
    message: String,
}

async fn test(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(request): Json<TestRequest>,
) -> Result<axum::Json<TestReport>, ApiError> {
    if state.store.plugin(&tenant.id, &id)?.is_none() {
        return Err(not_found(&id));
    }
    let plugin = loaded(&state, &id).await?;
    let poll = Poll {
        project_id: "test".into(),
        tenant_id: tenant.id.clone(),
        scheduled_at_ms: jiff::Timestamp::now().as_millisecond().max(0) as u64,
        state: request.state.map(|s| s.into_bytes("state")).transpose()?,
        settings: request.settings.into_iter().collect(),
    };
    let response = Response {
        status: request.response.status,
        headers: request.response.headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
        body: request.response.body.into_bytes("response.body")?,
    };
    let limits = state.runtime.default_limits().clone();
    let report = state.runtime.transform(&plugin, &limits, &poll, &response).await;
    let duration_ms = report.duration.as_secs_f64() * 1e3;
    let logs = report.logs.lines;
    Ok(axum::Json(match report.result {
        Ok(output) => TestReport {
            outcome: "ok",
            failure: None,
            records: output
                .records
                .iter()
                .map(|r| TestRecord {
                    partition_key: r.partition_key.clone(),
                    explicit_hash_key: r.explicit_hash_key.clone(),
                    data: Blob::from_bytes(&r.data),
                })
                .collect(),
            state: output.state.as_deref().map(Blob::from_bytes),
            next: output.next.map(|n| TestNext { method: n.method, url: n.url }),
            logs,
            duration_ms,
        },
        Err(error) => TestReport {
            outcome: "failed",
            failure: Some(failure(&error)),
            records: vec![],
            state: None,
            next: None,
            logs,
            duration_ms,
        },
    }))
}

fn failure(error: &CallError) -> Failure {
    Failure { kind: error.kind(), message: error.to_string() }
}
