//! Operator routes: onboard, list, change, rotate and remove tenants.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Caller, Operator};
use super::error::ApiError;
use super::extract::Json;
use crate::store::{QuotaOverrides, Quotas, Tenant, TenantStatus, Tier};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", post(create).get(list))
        .route("/v1/tenants/{id}", get(show).patch(update).delete(remove))
        .route("/v1/tenants/{id}/keys", post(rotate))
        .route("/v1/me", get(me))
}

/// `POST /v1/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// A display name, 1 to 100 characters.
    pub name: String,
    /// `free` (the default), `standard` or `premium`.
    #[serde(default)]
    pub tier: Tier,
}

/// `PATCH /v1/tenants/{id}`: every field is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub name: Option<String>,
    pub status: Option<TenantStatus>,
    pub tier: Option<Tier>,
    /// Replaces the quota overrides; `{}` returns to the tier's quotas.
    pub quotas: Option<QuotaOverrides>,
}

/// A tenant as the operator sees it.
#[derive(Debug, Serialize)]
pub struct TenantBody {
    pub id: String,
    pub name: String,
    pub tier: Tier,
    pub status: TenantStatus,
    /// The quotas in force (the tier's, with overrides applied).
    pub quotas: Quotas,
    /// The operator's overrides alone.
    pub quota_overrides: QuotaOverrides,
    pub created_at: String,
    /// Shown only when a key is issued: at creation and at rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl TenantBody {
    fn new(tenant: Tenant, api_key: Option<String>) -> Self {
        Self {
            quotas: tenant.quotas(),
            id: tenant.id,
            name: tenant.name,
            tier: tenant.tier,
            status: tenant.status,
            quota_overrides: tenant.quota_overrides,
            created_at: tenant.created_at,
            api_key,
        }
    }
}

#[derive(Debug, Serialize)]
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

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no tenant with id {id}; list tenants with GET /v1/tenants"))
}

async fn create(
    _: Operator,
    State(state): State<AppState>,
    Json(body): Json<CreateTenant>,
) -> Result<(StatusCode, axum::Json<TenantBody>), ApiError> {
    check_name(&body.name)?;
    let (tenant, key) = state.store.create_tenant(body.name.trim(), body.tier).await?;
    Ok((StatusCode::CREATED, axum::Json(TenantBody::new(tenant, Some(key.expose().to_string())))))
}

async fn list(_: Operator, State(state): State<AppState>) -> Result<axum::Json<TenantList>, ApiError> {
    let tenants = state.store.tenants()?.into_iter().map(|t| TenantBody::new(t, None)).collect();
    Ok(axum::Json(TenantList { tenants }))
}

async fn show(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<TenantBody>, ApiError> {
    let tenant = state.store.tenant(&id)?.ok_or_else(|| not_found(&id))?;
    Ok(axum::Json(TenantBody::new(tenant, None)))
}

async fn update(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<UpdateTenant>,
) -> Result<axum::Json<TenantBody>, ApiError> {
    if let Some(name) = &body.name {
        check_name(name)?;
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
    Ok(axum::Json(TenantBody::new(tenant, None)))
}

async fn remove(_: Operator, State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if state.store.delete_tenant(&id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(not_found(&id)) }
}

async fn rotate(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<TenantBody>), ApiError> {
    let key = state.store.rotate_key(&id).await?.ok_or_else(|| not_found(&id))?;
    let tenant = state.store.tenant(&id)?.ok_or_else(|| not_found(&id))?;
    Ok((StatusCode::CREATED, axum::Json(TenantBody::new(tenant, Some(key.expose().to_string())))))
}

/// `GET /v1/me`: the calling tenant's own record and quotas, so that a tenant can check its key,
/// status and limits.
async fn me(Caller(tenant): Caller) -> axum::Json<TenantBody> {
    axum::Json(TenantBody::new(tenant, None))
}
