//! Tenant routes for a project's outbox: what waits for Kinesis, what Kinesis refused for good
//! (parked), and the tenant's decision on each parked entry: retry it or discard it.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::Path;
use super::openapi::TenantErrors;
use super::projects::{NO_PROJECT, find};
use crate::store::ParkedAction;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show)).routes(routes!(discard)).routes(routes!(retry))
}

/// 404 on the routes of one entry.
const NO_ENTRY: &str = "The tenant has no project with this id, or the project has no entry of this run \
     (`not_found`): it was delivered, discarded, or never had records";

/// A run's records waiting for Kinesis.
#[derive(Debug, Serialize, ToSchema)]
struct WaitingEntry {
    /// The run that produced the records, as in `GET /v1/projects/{id}/runs`.
    run_id: String,
    /// When that run was scheduled, RFC 3339.
    scheduled_at: String,
    records: u64,
    /// Bytes of record data and partition keys.
    bytes: u64,
    /// Whether delivering the entry commits a new state for the project.
    state_pending: bool,
}

/// A run's records that Kinesis refused for a reason no retry fixes (an invalid argument, a
/// record over a limit), set aside so that later runs' records go out. They stay until the tenant
/// retries or discards them, and count against the `max_outbox_bytes` quota meanwhile.
#[derive(Debug, Serialize, ToSchema)]
struct ParkedEntry {
    /// The run that produced the records, as in `GET /v1/projects/{id}/runs`.
    run_id: String,
    /// When that run was scheduled, RFC 3339.
    scheduled_at: String,
    /// When Kinesis' refusal parked the entry, RFC 3339.
    parked_at: String,
    records: u64,
    /// Bytes of record data and partition keys.
    bytes: u64,
    /// What Kinesis said.
    error: String,
}

/// A project's outbox.
#[derive(Debug, Serialize, ToSchema)]
struct Outbox {
    /// Entries waiting for delivery, oldest first; they go out in this order.
    waiting: Vec<WaitingEntry>,
    /// Entries Kinesis refused for good, oldest first.
    parked: Vec<ParkedEntry>,
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap_or_default().to_string()
}

/// Show a project's outbox
///
/// The project's records waiting for Kinesis, and those Kinesis refused for good (parked), with
/// the error it gave. Tenant key only.
#[utoipa::path(
    get,
    path = "/v1/projects/{id}/outbox",
    operation_id = "show_outbox",
    tag = "projects",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The project id, `prj_` and 16 hex digits")),
    responses(
        (status = 200, description = "The project's outbox", body = Outbox),
        (status = 404, description = NO_PROJECT, body = ErrorBody),
        TenantErrors,
    )
)]
async fn show(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Outbox>, ApiError> {
    find(&state, &tenant, &id).await?;
    let waiting = state
        .store
        .waiting_of(&tenant.id, &id)
        .await?
        .into_iter()
        .map(|w| WaitingEntry {
            run_id: w.run_id,
            scheduled_at: rfc3339(w.scheduled_at_ms),
            records: w.records,
            bytes: w.bytes,
            state_pending: w.state_pending,
        })
        .collect();
    let parked = state
        .store
        .parked_of(&tenant.id, &id)
        .await?
        .into_iter()
        .map(|p| ParkedEntry {
            scheduled_at: rfc3339(p.entry.scheduled_at_ms),
            records: p.entry.records.len() as u64,
            bytes: p.entry.payload_bytes(),
            run_id: p.entry.run_id,
            parked_at: p.parked_at,
            error: p.error,
        })
        .collect();
    Ok(axum::Json(Outbox { waiting, parked }))
}

/// The error for an entry that is not parked.
fn not_parked(action: ParkedAction, id: &str, run: &str) -> ApiError {
    match action {
        ParkedAction::Waiting => ApiError::Conflict(format!(
            "the records of run {run} are waiting for delivery, not parked; only parked entries can be retried or \
             discarded (GET /v1/projects/{id}/outbox lists them)"
        )),
        _ => ApiError::NotFound(format!(
            "project {id} has no parked records of run {run}; GET /v1/projects/{id}/outbox lists them"
        )),
    }
}

/// Discard parked records
///
/// Deletes a parked entry and its records for good: they are never delivered. Tenant key only.
#[utoipa::path(
    delete,
    path = "/v1/projects/{id}/outbox/{run_id}",
    operation_id = "discard_parked",
    tag = "projects",
    security(("tenant_key" = [])),
    params(
        ("id" = String, Path, description = "The project id, `prj_` and 16 hex digits"),
        ("run_id" = String, Path, description = "The run whose parked records to discard, `run_` and 16 hex digits"),
    ),
    responses(
        (status = 204, description = "The records are gone"),
        (status = 404, description = NO_ENTRY, body = ErrorBody),
        (status = 409, description = "The run's records are waiting for delivery, not parked (`conflict`)", body = ErrorBody),
        TenantErrors,
    )
)]
async fn discard(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path((id, run)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    find(&state, &tenant, &id).await?;
    match state.store.discard_parked(&tenant.id, &id, &run).await? {
        ParkedAction::Done => Ok(StatusCode::NO_CONTENT),
        other => Err(not_parked(other, &id, &run)),
    }
}

/// Retry parked records
///
/// Puts a parked entry's records back in the outbox, after the entries waiting there; they go
/// out with the project's next delivery (its next run, or the outbox's retry within seconds), and
/// are parked again if Kinesis refuses them again. The project's state is not changed: it moved
/// on when the entry was parked. Tenant key only.
#[utoipa::path(
    post,
    path = "/v1/projects/{id}/outbox/{run_id}/retry",
    operation_id = "retry_parked",
    tag = "projects",
    security(("tenant_key" = [])),
    params(
        ("id" = String, Path, description = "The project id, `prj_` and 16 hex digits"),
        ("run_id" = String, Path, description = "The run whose parked records to retry, `run_` and 16 hex digits"),
    ),
    responses(
        (status = 202, description = "The records wait for delivery again", body = Outbox),
        (status = 404, description = NO_ENTRY, body = ErrorBody),
        (status = 409, description = "The run's records are waiting for delivery, not parked (`conflict`)", body = ErrorBody),
        TenantErrors,
    )
)]
async fn retry(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, run)): Path<(String, String)>,
) -> Result<(StatusCode, axum::Json<Outbox>), ApiError> {
    find(&state, &caller.0, &id).await?;
    match state.store.retry_parked(&caller.0.id, &id, &run).await? {
        ParkedAction::Done => {
            let axum::Json(outbox) = show(caller, State(state), Path(id)).await?;
            Ok((StatusCode::ACCEPTED, axum::Json(outbox)))
        }
        other => Err(not_parked(other, &id, &run)),
    }
}
