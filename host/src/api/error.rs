//! The API's one error type and its one JSON body:
//! `{"error": {"code": "snake_case_code", "message": "what was wrong and how to fix it"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::runtime::LoadError;
use crate::store::StoreError;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a field is invalid.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// 401: no token, or a token that matches nothing.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller is known but not allowed (a disabled tenant, a quota).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404: absent, or another tenant's (the two are never told apart).
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but does not take this method; axum adds the `Allow` header.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than this route accepts.
    #[error("{0}")]
    TooLarge(String),
    /// 503: the daemon cannot do this right now (no scheduler in this process, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// 500: the host failed; the message is logged, and the caller gets a generic one.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with the `invalid_request` code.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::Invalid { code: "invalid_request", message: message.into() }
    }

    /// A 400 with the `invalid_plugin` code: an uploaded component that does not load.
    pub fn invalid_plugin(message: impl Into<String>) -> Self {
        ApiError::Invalid { code: "invalid_plugin", message: message.into() }
    }

    /// A 403 with the `quota_exceeded` code.
    pub fn quota_exceeded(message: impl Into<String>) -> Self {
        ApiError::Forbidden { code: "quota_exceeded", message: message.into() }
    }

    /// A 403 with the `forbidden` code: the credential is known but not for this route.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden { code: "forbidden", message: message.into() }
    }

    /// A 403 with the `tenant_disabled` code.
    pub fn tenant_disabled(message: impl Into<String>) -> Self {
        ApiError::Forbidden { code: "tenant_disabled", message: message.into() }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

// Errors are answered with this type, so the schema in the OpenAPI document is the body sent.

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code: `invalid_request`, `invalid_plugin`, `unauthorized`, `forbidden`,
    /// `tenant_disabled`, `quota_exceeded`, `not_found`, `method_not_allowed`, `conflict`,
    /// `too_large`, `unavailable` or `internal`.
    #[schema(examples("not_found"))]
    pub code: &'static str,
    /// What was wrong and how to fix it.
    #[schema(examples("no project with id prj_0123456789abcdef; list your projects with GET /v1/projects"))]
    pub message: String,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<LoadError> for ApiError {
    /// A component that does not load is the caller's to fix, unless the host failed.
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Host(_) | LoadError::Cache(_) => ApiError::Internal(e.to_string()),
            other => ApiError::invalid_plugin(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                "the server failed to handle this request; try again, and report it if it persists".to_string()
            }
            other => other.to_string(),
        };
        (status, Json(ErrorBody { error: ErrorDetail { code, message } })).into_response()
    }
}
