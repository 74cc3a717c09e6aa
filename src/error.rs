//! The one error type of the REST boundary, shaped as the contract says:
//! `{"error": {"code", "message", "fields"?}}` with the HTTP status. Client faults carry their own
//! code; anything unexpected is logged here and reaches the client only as a generic 500.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// A failed request, as the client will see it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable snake_case code clients branch on.
    pub code: &'static str,
    /// Human text; never contains internals.
    pub message: String,
    /// Per-field validation messages, for `validation_failed` and body type errors.
    pub fields: Option<BTreeMap<String, String>>,
    /// Seconds, sent as `Retry-After` with 429 answers.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn too_many(code: &'static str, retry_after_secs: u64) -> Self {
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            code,
            format!("too many attempts; try again in {retry_after_secs} s"),
        );
        err.retry_after = Some(retry_after_secs);
        err
    }

    /// 400 `validation_failed` naming each bad field.
    pub fn validation(fields: BTreeMap<String, String>) -> Self {
        let mut err = Self::bad_request("validation_failed", "some fields are invalid");
        err.fields = Some(fields);
        err
    }

    /// An unexpected failure: logged with its cause, answered as a bare 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(category = "error", error = %cause, "❌ request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on our side",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::internal(err)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::internal(format!("{err:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(fields) = self.fields {
            error["fields"] = json!(fields);
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
