//! A JSON extractor whose rejections use the API's error body instead of axum's plain text.
//!
//! Every request body of this API is a JSON object. serde would also build a struct from an
//! array of its fields in order, so the body is checked to be an object before it is decoded.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use super::error::ApiError;

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
        T::deserialize(value).map(Json).map_err(|e| ApiError::invalid(format!("the body does not fit this route: {e}")))
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::TooLarge("the JSON body is larger than this route accepts (1 MiB by default)".into());
    }
    ApiError::invalid(format!("the body could not be read: {}", rejection.body_text()))
}
