//! Tenant routes for plugins: upload (checked and compiled at once), list, show, delete, and a
//! dry run on a given response.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Path, Query, RawBody};
use super::openapi::{INTERNAL, TOO_LARGE, TenantErrors, UNAUTHORIZED};
use super::versions::{created, follow};
use crate::records::OutputCheck;
use crate::runtime::{self, CallError, LogLine, Plugin, Poll, Response, plugin_id};
use crate::store::{CreatePlugin, DeletePlugin, PluginMeta, rfc3339_ms};

/// The JSON routes. Each `routes!` call holds the handlers of one path: `OpenApiRouter` registers
/// every handler of a call on every path in it.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(show, remove)).routes(routes!(test))
}

/// The upload route, which takes a larger body than the JSON routes.
pub fn upload_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upload))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// The plugin's name: 1 to 100 letters, digits, `-`, `_` or `.`.
    #[param(
        required = true,
        value_type = String,
        min_length = 1,
        max_length = 100,
        pattern = r"^[A-Za-z0-9._-]+$",
        example = "json-split"
    )]
    name: Option<String>,
}

/// The tenant's plugins.
#[derive(Debug, Serialize, ToSchema)]
struct PluginList {
    plugins: Vec<PluginMeta>,
}

/// 404 on the routes of one plugin.
const NO_PLUGIN: &str =
    "The tenant has no plugin with this id (`not_found`); another tenant's plugin is not found either";

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

/// Upload a plugin
///
/// The body is the WebAssembly component's bytes, sent as `application/wasm` (or
/// `application/octet-stream`), and `?name=` names it. The component is compiled and checked before
/// the answer: it must export the `sluice:plugin` `transformer` world and import only its `host`
/// interface and WASI 0.2 (which grants nothing). The plugin's id is its content hash, so uploading
/// the same bytes again answers 200 with the record already stored. Uploads compile one at a time
/// per host, at the lowest CPU priority so that runs keep their schedule: a Rust plugin compiles in
/// well under a second, an 18 MiB Python one in some seconds on two cores, and an upload queued
/// behind others answers when its own turn is done. The body limit is the daemon's
/// `max_plugin_bytes` (32 MiB unless the operator changed it), and the tenant's `max_plugin_bytes`
/// quota may be lower. Tenant key only.
#[utoipa::path(
    post,
    path = "/v1/plugins",
    operation_id = "upload_plugin",
    tag = "plugins",
    security(("tenant_key" = [])),
    params(UploadQuery),
    request_body(
        description = "The component's bytes",
        content(("application/wasm"), ("application/octet-stream"))
    ),
    responses(
        (status = 201, description = "Compiled, checked and stored", body = PluginMeta),
        (status = 200, description = "The tenant already has these bytes; the stored record", body = PluginMeta),
        (
            status = 400,
            description = "`name` is missing or invalid, the query string has an unknown parameter, or the \
                content type is not `application/wasm` (`invalid_request`); or the component does not \
                compile, does not target the Sluice world, or imports something not allowed (`invalid_plugin`)",
            body = ErrorBody
        ),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (
            status = 403,
            description = "The operator token was sent to a tenant route (`forbidden`), the tenant is disabled \
                (`tenant_disabled`), or the upload exceeds the tenant's `max_plugin_bytes` or `max_plugins` quota \
                (`quota_exceeded`)",
            body = ErrorBody
        ),
        (
            status = 413,
            description = "The body is larger than the daemon's plugin limit, `max_plugin_bytes` (`too_large`)",
            body = ErrorBody
        ),
        (status = 500, description = INTERNAL, body = ErrorBody),
    )
)]
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
        return Err(ApiError::quota_exceeded(format!(
            "the plugin is {}, over this tenant's max_plugin_bytes quota of {}; shrink it (opt-level \"s\", LTO, strip) or ask the operator to raise the quota",
            human(body.len() as u64),
            human(quotas.max_plugin_bytes)
        )));
    }
    let id = plugin_id(&body);
    if let Some(existing) = state.store.plugin(&tenant.id, &id).await? {
        follow(&state, &tenant, &existing.name).await?;
        return Ok((StatusCode::OK, axum::Json(existing)));
    }
    let plugin = state.runtime.compile(body.to_vec()).await?;
    // In milliseconds: the newest version of a name is the one uploaded last, and versions are
    // often uploaded within a second of each other.
    let created_at = rfc3339_ms(jiff::Timestamp::now());
    let meta = PluginMeta { id: id.clone(), name, size_bytes: body.len() as u64, created_at };
    match state.store.create_plugin(&tenant.id, meta, &body, quotas.max_plugins).await? {
        CreatePlugin::Created(meta) => {
            state.runtime.keep(plugin);
            follow(&state, &tenant, &meta.name).await?;
            Ok((StatusCode::CREATED, axum::Json(meta)))
        }
        CreatePlugin::Exists(meta) => {
            follow(&state, &tenant, &meta.name).await?;
            Ok((StatusCode::OK, axum::Json(meta)))
        }
        CreatePlugin::QuotaExceeded => Err(ApiError::quota_exceeded(format!(
            "this tenant already has its max_plugins quota of {} plugins; delete one or ask the operator to raise the quota",
            quotas.max_plugins
        ))),
    }
}

/// The loaded plugin for an id, compiling it (from the on-disk cache, usually) on first use.
async fn loaded(state: &AppState, id: &str) -> Result<Plugin, ApiError> {
    state
        .runtime
        .get_or_load(id, async { Ok::<_, ApiError>(state.store.plugin_bytes(id).await?) })
        .await?
        .ok_or_else(|| not_found(id))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only the versions uploaded under this name.
    #[param(
        value_type = Option<String>,
        min_length = 1,
        max_length = 100,
        pattern = r"^[A-Za-z0-9._-]+$",
        example = "json-split"
    )]
    name: Option<String>,
}

/// List plugins
///
/// The calling tenant's plugins, newest first; with `?name=`, the versions uploaded under that
/// name, the newest (the one projects following the name run) first. Tenant key only.
#[utoipa::path(
    get,
    path = "/v1/plugins",
    operation_id = "list_plugins",
    tag = "plugins",
    security(("tenant_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The tenant's plugins, newest first", body = PluginList),
        (
            status = 400,
            description = "`name` is not a valid plugin name, or the query string has an unknown or malformed \
                parameter (`invalid_request`)",
            body = ErrorBody
        ),
        TenantErrors
    )
)]
async fn list(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<PluginList>, ApiError> {
    let name = query.name.as_deref().map(|name| check_name(Some(name))).transpose()?;
    let mut plugins = state.store.plugins(&tenant.id).await?;
    if let Some(name) = &name {
        plugins.retain(|plugin| &plugin.name == name);
    }
    plugins.sort_by_key(|plugin| std::cmp::Reverse(created(plugin)));
    Ok(axum::Json(PluginList { plugins }))
}

/// Show a plugin
///
/// One of the calling tenant's plugins. Tenant key only.
#[utoipa::path(
    get,
    path = "/v1/plugins/{id}",
    operation_id = "show_plugin",
    tag = "plugins",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The plugin id, `sha256:` and the hex digest of its bytes")),
    responses(
        (status = 200, description = "The plugin", body = PluginMeta),
        (status = 404, description = NO_PLUGIN, body = ErrorBody),
        TenantErrors,
    )
)]
async fn show(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<PluginMeta>, ApiError> {
    state.store.plugin(&tenant.id, &id).await?.map(axum::Json).ok_or_else(|| not_found(&id))
}

/// Delete a plugin
///
/// Deletes one of the calling tenant's plugins, unless a project uses it. Tenant key only.
#[utoipa::path(
    delete,
    path = "/v1/plugins/{id}",
    operation_id = "delete_plugin",
    tag = "plugins",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The plugin id, `sha256:` and the hex digest of its bytes")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = NO_PLUGIN, body = ErrorBody),
        (
            status = 409,
            description = "A project uses the plugin; the message names it (`conflict`)",
            body = ErrorBody
        ),
        TenantErrors,
    )
)]
async fn remove(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.store.delete_plugin(&tenant.id, &id).await? {
        DeletePlugin::Deleted => {
            // The compiled plugin goes with the last tenant that held its bytes.
            if state.store.plugin_bytes(&id).await?.is_none() {
                state.runtime.remove(&id);
            }
            Ok(StatusCode::NO_CONTENT)
        }
        DeletePlugin::Absent => Err(not_found(&id)),
        DeletePlugin::InUse(project) => Err(ApiError::Conflict(format!(
            "project {project} uses this plugin; point the project at another plugin or delete it first"
        ))),
    }
}

/// Bytes in JSON: `{"text": "..."}` for UTF-8, otherwise `{"base64": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

/// The body of `POST /v1/plugins/{id}/test`: a response to transform, as a run would.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = PluginTestRequest)]
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

/// The source's response, as the plugin would receive it.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = PluginTestResponse)]
#[serde(deny_unknown_fields)]
struct TestResponse {
    /// The HTTP status (default 200): three digits, as a real source could answer.
    #[serde(default = "ok_status")]
    #[schema(default = 200, minimum = 100, maximum = 999)]
    status: u16,
    /// Response headers; names are lowercased before the plugin sees them.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Blob,
}

fn ok_status() -> u16 {
    200
}

/// A record the plugin would deliver to Kinesis.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PluginTestRecord)]
struct TestRecord {
    partition_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    explicit_hash_key: Option<String>,
    data: Blob,
}

/// The next page the plugin asked for.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PluginTestNext)]
struct TestNext {
    method: String,
    url: String,
}

/// The outcome of a dry run: what would be delivered, or why nothing would.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PluginTestReport)]
struct TestReport {
    /// `ok` or `failed`.
    #[schema(value_type = String, examples("ok"))]
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<DryRunFailure>,
    records: Vec<TestRecord>,
    /// The new state, absent when unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<Blob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<TestNext>,
    /// Why a run would store nothing of this output, as a run's failure in stage `transform`
    /// would say it: records Kinesis would refuse, a state over the tenant's `max_state_bytes`.
    /// Empty when the output could be delivered; then `outcome` is `ok`.
    problems: Vec<String>,
    #[schema(value_type = Vec<LogLineSchema>)]
    logs: Vec<LogLine>,
    /// Wall-clock time of the call, in milliseconds.
    duration_ms: f64,
}

/// Why a dry run failed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PluginTestFailure)]
struct DryRunFailure {
    /// `rejected`, `retry`, `deadline`, `memory`, `output_too_large`, `too_many_records`,
    /// `stack_overflow`, `trap` or `host`; or `invalid_output` when the call succeeded but a run
    /// could not store its output (see `problems`).
    #[schema(value_type = String, examples("rejected"))]
    kind: &'static str,
    message: String,
}

// The schema of `runtime::LogLine`, declared here so that `runtime` stays free of API concerns.
// Only the schema is used; the dry-run tests check real responses against it.

/// One line of a plugin's log.
#[derive(ToSchema)]
#[schema(as = LogLine)]
#[allow(dead_code)]
struct LogLineSchema {
    /// `log` (the `host.log` import), `stdout` or `stderr`.
    source: LogSourceSchema,
    level: LogLevelSchema,
    /// The text, cut at 4 KiB.
    message: String,
}

/// Where a log line came from.
#[derive(ToSchema)]
#[schema(as = LogSource, rename_all = "lowercase")]
#[allow(dead_code)]
enum LogSourceSchema {
    Log,
    Stdout,
    Stderr,
}

/// The severity of a log line.
#[derive(ToSchema)]
#[schema(as = LogLevel, rename_all = "lowercase")]
#[allow(dead_code)]
enum LogLevelSchema {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Try a plugin
///
/// Transforms a given response with one of the calling tenant's plugins, as a run would, and
/// reports the records, state, next page and logs without delivering anything. A plugin that
/// rejects the response, traps or exceeds a limit still answers 200, with `outcome: failed`.
/// Tenant key only.
#[utoipa::path(
    post,
    path = "/v1/plugins/{id}/test",
    operation_id = "test_plugin",
    tag = "plugins",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The plugin id, `sha256:` and the hex digest of its bytes")),
    request_body = TestRequest,
    responses(
        (status = 200, description = "What the run would deliver, or why it would fail", body = TestReport),
        (
            status = 400,
            description = "The body does not fit (`invalid_request`), for example invalid base64; or the stored \
                plugin no longer compiles (`invalid_plugin`)",
            body = ErrorBody
        ),
        (status = 404, description = NO_PLUGIN, body = ErrorBody),
        (status = 413, description = TOO_LARGE, body = ErrorBody),
        TenantErrors,
    )
)]
async fn test(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(request): Json<TestRequest>,
) -> Result<axum::Json<TestReport>, ApiError> {
    if state.store.plugin(&tenant.id, &id).await?.is_none() {
        return Err(not_found(&id));
    }
    // The document promises a three-digit status, and a run never hands a plugin anything else.
    if !(100..=999).contains(&request.response.status) {
        return Err(ApiError::invalid(format!(
            "`response.status` is {}; use an HTTP status from 100 to 999",
            request.response.status
        )));
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
    // A dry run's memory counts against the tenant's share like a run's.
    let runtime = state.runtime.sharing(&tenant.id, tenant.quotas().max_plugin_memory_bytes);
    let report = runtime.transform(&plugin, &limits, &poll, &response).await;
    let duration_ms = report.duration.as_secs_f64() * 1e3;
    let logs = report.logs.lines;
    Ok(axum::Json(match report.result {
        Ok(output) => {
            let problems = OutputCheck::dry_run(&output, tenant.quotas().max_state_bytes, MAX_PROBLEMS);
            let failure = problems.first().map(|first| DryRunFailure {
                kind: "invalid_output",
                message: format!("a run would store nothing of this output: {first}"),
            });
            TestReport {
                outcome: if failure.is_none() { "ok" } else { "failed" },
                failure,
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
                problems,
                logs,
                duration_ms,
            }
        }
        Err(error) => TestReport {
            outcome: "failed",
            failure: Some(failure(&error)),
            records: vec![],
            state: None,
            next: None,
            problems: vec![],
            logs,
            duration_ms,
        },
    }))
}

/// Problems a dry run lists; the rest are counted.
const MAX_PROBLEMS: usize = 20;

fn failure(error: &CallError) -> DryRunFailure {
    DryRunFailure { kind: error.kind(), message: error.to_string() }
}
