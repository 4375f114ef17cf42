//! Operator routes: onboard, list, change, rotate and remove tenants.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{Caller, Operator};
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Path};
use super::openapi::{BAD_JSON, OperatorErrors, TOO_LARGE, TenantErrors};
use crate::store::{QuotaOverrides, Quotas, Tenant, TenantStatus, Tier};

/// Each `routes!` call holds the handlers of one path: `OpenApiRouter` registers every handler of
/// a call on every path in it.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, remove))
        .routes(routes!(rotate))
        .routes(routes!(me))
}

/// The body of `POST /v1/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// A display name, 1 to 100 characters without control characters.
    #[schema(min_length = 1, max_length = 100, examples("acme-weather"))]
    pub name: String,
    /// `free` (the default), `standard` or `premium`.
    #[serde(default)]
    pub tier: Tier,
}

/// The body of `PATCH /v1/tenants/{id}`: every field is optional; an absent or `null` field keeps
/// its current value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// A display name, 1 to 100 characters without control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// `disabled` stops the tenant's keys (403 `tenant_disabled`) and its projects.
    pub status: Option<TenantStatus>,
    pub tier: Option<Tier>,
    /// Replaces the quota overrides; `{}` returns to the tier's quotas.
    pub quotas: Option<QuotaOverrides>,
}

/// A tenant as the operator sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantBody {
    /// `ten_` and 16 hex digits.
    pub id: String,
    pub name: String,
    pub tier: Tier,
    pub status: TenantStatus,
    /// The quotas in force (the tier's, with overrides applied).
    pub quotas: Quotas,
    /// The operator's overrides alone.
    pub quota_overrides: QuotaOverrides,
    /// When the tenant was created, RFC 3339.
    pub created_at: String,
    /// The `sts:ExternalId` the tenant's roles must require of the platform principal for the
    /// tenant's projects with `trust: tenant` (the default): put it in the tenant stack once, and
    /// every such project on the stack's role runs without a stack update.
    pub external_id: String,
    /// The principal the platform assumes tenants' roles as: what the tenant stack's
    /// `PlatformPrincipalArn` must name, the same for every tenant and project of this platform.
    pub platform_principal_arn: String,
    /// Shown only when a key is issued: at creation and at rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl TenantBody {
    fn new(state: &AppState, tenant: Tenant, api_key: Option<String>) -> Self {
        Self {
            quotas: tenant.quotas(),
            id: tenant.id,
            name: tenant.name,
            tier: tenant.tier,
            status: tenant.status,
            quota_overrides: tenant.quota_overrides,
            created_at: tenant.created_at,
            external_id: tenant.external_id,
            platform_principal_arn: state.platform_principal_arn.to_string(),
            api_key,
        }
    }
}

/// Every tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantBody>,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if name.trim().is_empty() || chars > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "`name` must be 1 to 100 characters without control characters, for example \"acme-weather\"",
        ));
    }
    Ok(())
}

/// Quota overrides within the integer formats the document gives them (`int32` for counts,
/// `int64` for seconds and bytes), so that every client can read back what it set.
fn check_quotas(quotas: &QuotaOverrides) -> Result<(), ApiError> {
    let counts = [("max_projects", quotas.max_projects), ("max_plugins", quotas.max_plugins)];
    for (field, value) in counts {
        if value.is_some_and(|v| v > i32::MAX as u32) {
            return Err(ApiError::invalid(format!("`quotas.{field}` must be at most {}", i32::MAX)));
        }
    }
    let sizes = [
        ("min_interval_seconds", quotas.min_interval_seconds),
        ("max_plugin_bytes", quotas.max_plugin_bytes),
        ("max_state_bytes", quotas.max_state_bytes),
        ("max_outbox_bytes", quotas.max_outbox_bytes),
        ("max_plugin_memory_bytes", quotas.max_plugin_memory_bytes),
    ];
    for (field, value) in sizes {
        if value.is_some_and(|v| v > i64::MAX as u64) {
            return Err(ApiError::invalid(format!("`quotas.{field}` must be at most {}", i64::MAX)));
        }
    }
    Ok(())
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no tenant with id {id}; list tenants with GET /v1/tenants"))
}

/// Create a tenant
///
/// Onboards a tenant and issues its first API key, which appears only in this response. Operator
/// only.
#[utoipa::path(
    post,
    path = "/v1/tenants",
    operation_id = "create_tenant",
    tag = "tenants",
    security(("operator_token" = [])),
    request_body = CreateTenant,
    responses(
        (status = 201, description = "The tenant, with its API key in `api_key`", body = TenantBody),
        (status = 400, description = BAD_JSON, body = ErrorBody),
        (status = 413, description = TOO_LARGE, body = ErrorBody),
        OperatorErrors,
    )
)]
async fn create(
    _: Operator,
    State(state): State<AppState>,
    Json(body): Json<CreateTenant>,
) -> Result<(StatusCode, axum::Json<TenantBody>), ApiError> {
    check_name(&body.name)?;
    let (tenant, key) = state.store.create_tenant(body.name.trim(), body.tier).await?;
    Ok((StatusCode::CREATED, axum::Json(TenantBody::new(&state, tenant, Some(key.expose().to_string())))))
}

/// List tenants
///
/// Every tenant, without API keys. Operator only.
#[utoipa::path(
    get,
    path = "/v1/tenants",
    operation_id = "list_tenants",
    tag = "tenants",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Every tenant", body = TenantList),
        OperatorErrors,
    )
)]
async fn list(_: Operator, State(state): State<AppState>) -> Result<axum::Json<TenantList>, ApiError> {
    let tenants = state.store.tenants().await?.into_iter().map(|t| TenantBody::new(&state, t, None)).collect();
    Ok(axum::Json(TenantList { tenants }))
}

/// Show a tenant
///
/// One tenant, with the quotas in force and the operator's overrides. Operator only.
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}",
    operation_id = "show_tenant",
    tag = "tenants",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The tenant id, `ten_` and 16 hex digits")),
    responses(
        (status = 200, description = "The tenant", body = TenantBody),
        (status = 404, description = "No tenant has this id (`not_found`)", body = ErrorBody),
        OperatorErrors,
    )
)]
async fn show(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<TenantBody>, ApiError> {
    let tenant = state.store.tenant(&id).await?.ok_or_else(|| not_found(&id))?;
    Ok(axum::Json(TenantBody::new(&state, tenant, None)))
}

/// Change a tenant
///
/// Changes the fields present in the body: name, status, tier, or quota overrides (which replace
/// the previous overrides). Operator only.
#[utoipa::path(
    patch,
    path = "/v1/tenants/{id}",
    operation_id = "update_tenant",
    tag = "tenants",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The tenant id, `ten_` and 16 hex digits")),
    request_body = UpdateTenant,
    responses(
        (status = 200, description = "The changed tenant", body = TenantBody),
        (status = 400, description = BAD_JSON, body = ErrorBody),
        (status = 404, description = "No tenant has this id (`not_found`)", body = ErrorBody),
        (status = 413, description = TOO_LARGE, body = ErrorBody),
        OperatorErrors,
    )
)]
async fn update(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<UpdateTenant>,
) -> Result<axum::Json<TenantBody>, ApiError> {
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    if let Some(quotas) = &body.quotas {
        check_quotas(quotas)?;
    }
    let tenant = state
        .store
        .update_tenant(&id, |tenant| {
            if let Some(name) = &body.name {
                tenant.name = name.trim().to_string();
            }
            if let Some(status) = body.status {
                tenant.status = status;
            }
            if let Some(tier) = body.tier {
                tenant.tier = tier;
            }
            if let Some(quotas) = body.quotas {
                tenant.quota_overrides = quotas;
            }
        })
        .await?
        .ok_or_else(|| not_found(&id))?;
    if body.status.is_some()
        && let Some(control) = &state.control
    {
        control.tenant_changed(&tenant).await;
    }
    Ok(axum::Json(TenantBody::new(&state, tenant, None)))
}

/// Delete a tenant
///
/// Deletes the tenant with its key, plugins, projects, run history and usage. Operator only.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}",
    operation_id = "delete_tenant",
    tag = "tenants",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The tenant id, `ten_` and 16 hex digits")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No tenant has this id (`not_found`)", body = ErrorBody),
        OperatorErrors,
    )
)]
async fn remove(_: Operator, State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if let Some(control) = &state.control {
        control.tenant_removed(&id).await;
    }
    if state.store.delete_tenant(&id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(not_found(&id)) }
}

/// Rotate a tenant's API key
///
/// Issues a new API key, which appears only in this response; the previous key stops working at
/// once. Operator only.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/keys",
    operation_id = "rotate_tenant_key",
    tag = "tenants",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The tenant id, `ten_` and 16 hex digits")),
    responses(
        (status = 201, description = "The tenant, with its new API key in `api_key`", body = TenantBody),
        (status = 404, description = "No tenant has this id (`not_found`)", body = ErrorBody),
        OperatorErrors,
    )
)]
async fn rotate(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<TenantBody>), ApiError> {
    let key = state.store.rotate_key(&id).await?.ok_or_else(|| not_found(&id))?;
    let tenant = state.store.tenant(&id).await?.ok_or_else(|| not_found(&id))?;
    Ok((StatusCode::CREATED, axum::Json(TenantBody::new(&state, tenant, Some(key.expose().to_string())))))
}

/// The calling tenant
///
/// The calling tenant's own record and quotas, so that a tenant can check its key, status and
/// limits. Tenant key only.
#[utoipa::path(
    get,
    path = "/v1/me",
    operation_id = "show_me",
    tag = "tenants",
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "The calling tenant", body = TenantBody),
        TenantErrors,
    )
)]
async fn me(State(state): State<AppState>, Caller(tenant): Caller) -> axum::Json<TenantBody> {
    axum::Json(TenantBody::new(&state, tenant, None))
}
