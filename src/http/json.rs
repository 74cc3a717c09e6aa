//! JSON request bodies with the contract's error answers: 415 when the body is not
//! `application/json`, 413 past the body limit, 400 `invalid_json` for malformed JSON or wrong
//! types (naming the field when it can).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// A JSON body, deserialized into `T`.
pub struct Json<T>(pub T);

/// A JSON body that may also be absent (an empty body gives `T::default()`).
pub struct JsonOrEmpty<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json_content_type(&req)?;
        let bytes = read_body(req, state).await?;
        parse(&bytes).map(Json)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared = req.headers().contains_key(header::CONTENT_TYPE);
        if declared {
            require_json_content_type(&req)?;
        }
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrEmpty(T::default()));
        }
        if !declared {
            return Err(unsupported());
        }
        parse(&bytes).map(JsonOrEmpty)
    }
}

fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::UnsupportedMediaType,
        "the body must be JSON with Content-Type: application/json",
    )
}

fn require_json_content_type(req: &Request) -> Result<(), ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| {
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    if is_json { Ok(()) } else { Err(unsupported()) }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "the body is larger than 64 KiB",
            )
        } else {
            ApiError::bad_request(ErrorCode::InvalidBody, "the body could not be read")
        }
    })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = || ApiError::bad_request(ErrorCode::InvalidJson, "the body is not valid JSON");
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return malformed();
        }
        let mut error = ApiError::bad_request(
            ErrorCode::InvalidJson,
            "the body has a field of the wrong type",
        );
        let field = if path == "." { "body".to_owned() } else { path };
        let message = inner.to_string();
        // serde's text ends with " at line L column C"; the field name says where instead.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m)
            .to_owned();
        error.fields = Some(BTreeMap::from([(field, message)]));
        error
    })?;
    deserializer.end().map_err(|_| malformed())?;
    Ok(value)
}
