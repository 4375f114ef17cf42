//! Extractors whose rejections use the API's error body instead of axum's plain text: JSON
//! bodies, raw bodies, query strings and path parameters.
//!
//! Every request body of this API is a JSON object, and so is every struct inside one. serde
//! would also build a struct from an array of its fields in order, so the body is checked to be
//! an object and decoded through [`Strict`], which refuses that form at any depth.

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::strict::Strict;

/// Like `axum::Json`, but a bad body answers with [`ApiError`].
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json =
            req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return Err(ApiError::invalid("send the body as JSON with the header `content-type: application/json`"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::invalid("the body must be a JSON object, such as {\"name\": \"acme\"}"));
        }
        T::deserialize(Strict(value))
            .map(Json)
            .map_err(|e| ApiError::invalid(format!("the body does not fit this route: {e}")))
    }
}

/// The raw body of a non-JSON route (a plugin upload), with rejections in the API's error body.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(body_error)
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::TooLarge(
            "the body is larger than this route accepts (JSON: 1 MiB, plugins: 32 MiB, unless the operator changed them)"
                .into(),
        );
    }
    ApiError::invalid(format!("the body could not be read: {}", rejection.body_text()))
}

/// Like `axum::extract::Query`, but a bad query string answers with [`ApiError`].
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| ApiError::invalid(format!("the query string does not fit this route: {}", e.body_text())))
    }
}

/// Like `axum::extract::Path`, but a segment that cannot be decoded answers with [`ApiError`].
///
/// Ids are ASCII, so a segment that is not valid UTF-8 once percent-decoded (`/v1/projects/%FF`)
/// names nothing: it answers 404 like any other unknown id, which every route with an id
/// documents, rather than axum's plain-text 400.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => match e.into_kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => Err(ApiError::NotFound(format!(
                    "nothing has this `{key}`: it is not valid UTF-8 once percent-decoded; use an id as \
                     the list routes show it (GET /v1/tenants, /v1/plugins or /v1/projects)"
                ))),
                // Every path parameter of this API is a string, so anything else is a route whose
                // template and extractor disagree: a bug in the daemon, not in the request.
                other => Err(ApiError::Internal(format!("path parameters do not fit the route: {other}"))),
            },
            Err(other) => Err(ApiError::Internal(format!("path parameters are missing: {}", other.body_text()))),
        }
    }
}
