//! Bearer-token authentication: the operator's token, or a tenant's API key.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::store::{Tenant, TenantStatus, constant_time_eq};

/// Proof that the request carries the operator's token.
pub struct Operator;

/// The tenant whose active API key the request carries.
pub struct Caller(pub Tenant);

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("missing credentials; send the header `Authorization: Bearer <token>`".into())
    })?;
    header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("malformed credentials; send `Authorization: Bearer <token>`".into()))
}

/// Whether `token` is the operator's. Both sides are hashed first, so the comparison takes the
/// same time whatever the token's length or content.
fn is_operator(state: &AppState, token: &str) -> bool {
    constant_time_eq(&Sha256::digest(token.as_bytes()), &state.admin_token_sha256)
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        if is_operator(state, token) {
            return Ok(Operator);
        }
        if state.store.tenant_for_key(token).await?.is_some() {
            return Err(ApiError::forbidden("this route is for the operator; tenant API keys cannot use it"));
        }
        Err(ApiError::Unauthorized("the token is not valid; check it, or ask the operator for a new key".into()))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        match state.store.tenant_for_key(token).await? {
            Some(tenant) if tenant.status == TenantStatus::Disabled => {
                Err(ApiError::tenant_disabled("this tenant is disabled; ask the operator to enable it"))
            }
            Some(tenant) => Ok(Caller(tenant)),
            None if is_operator(state, token) => {
                Err(ApiError::forbidden("this route is for tenants; use a tenant API key, not the operator token"))
            }
            None => Err(ApiError::Unauthorized("the API key is not valid; it may have been rotated or revoked".into())),
        }
    }
}
