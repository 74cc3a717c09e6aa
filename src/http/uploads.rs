//! `/api/uploads` (SPEC §12): the tus 1.0.0 protocol, core plus `creation`, `termination` and
//! `expiration`, so `tus-js-client` and every other tus client work unchanged. This file reads
//! and writes the protocol's headers; `attachments` does the work.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::path::UploadPath;
use crate::attachments::{self, NewUploadRequest};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::store::Upload;

pub const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,termination,expiration";
/// The longest `Upload-Metadata` read.
const METADATA_MAX: usize = 4096;

pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
pub const TUS_VERSION_HEADER: HeaderName = HeaderName::from_static("tus-version");
pub const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
pub const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
pub const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, options))
        .routes(routes!(offset, append, abandon, options_of_one))
        .layer(axum::middleware::from_fn(tus_headers))
}

/// Every answer says which protocol it speaks; a 412 also which version it wants.
async fn tus_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
    if response.status() == StatusCode::PRECONDITION_FAILED {
        response
            .headers_mut()
            .insert(TUS_VERSION_HEADER, HeaderValue::from_static(TUS_VERSION));
    }
    response
}

/// A request that speaks tus 1.0.0 (`Tus-Resumable: 1.0.0`); anything else is 412. Checked
/// before who is asking, as tus servers do.
struct Tus;

impl<S: Send + Sync> FromRequestParts<S> for Tus {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match parts.headers.get(TUS_RESUMABLE) {
            Some(v) if v == TUS_VERSION => Ok(Self),
            _ => Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                ErrorCode::UnsupportedTusVersion,
                "send `Tus-Resumable: 1.0.0`: this server speaks tus 1.0.0",
            )),
        }
    }
}

/// What this server supports: tus version, extensions, the largest upload.
#[utoipa::path(options, path = "/api/uploads", tag = "uploads",
    responses((status = 204, description = "Tus-Version, Tus-Extension and Tus-Max-Size")))]
async fn options(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(TUS_VERSION_HEADER, HeaderValue::from_static(TUS_VERSION));
    headers.insert(TUS_EXTENSION, HeaderValue::from_static(TUS_EXTENSIONS));
    headers.insert(
        TUS_MAX_SIZE,
        HeaderValue::from(state.config.upload_max_size),
    );
    response
}

/// As `OPTIONS /api/uploads`.
#[utoipa::path(options, path = "/api/uploads/{id}", tag = "uploads", params(("id" = String, Path, description = "any: OPTIONS answers the same for every path")),
    responses((status = 204, description = "Tus-Version, Tus-Extension and Tus-Max-Size")))]
async fn options_of_one(state: State<AppState>) -> Response {
    options(state).await
}

/// The `Tus-Resumable` header every tus request but OPTIONS carries (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
enum TusResumable {
    #[schema(rename = "1.0.0")]
    V1,
}

/// tus `creation`: starts an upload of `Upload-Length` bytes to a conversation the caller is a
/// member of. `Upload-Metadata` carries `filename`, `filetype` and `conversationId` (base64).
#[utoipa::path(post, path = "/api/uploads", tag = "uploads", security(("bearer" = []), ("cookie" = [])),
    params(
        ("Tus-Resumable" = inline(TusResumable), Header, description = "the tus version: 1.0.0"),
        ("Upload-Length" = u64, Header, description = "the file's size in bytes"),
        ("Upload-Metadata" = String, Header, description = "`filename`, `filetype`, `conversationId`: comma-separated `key base64(value)`"),
    ),
    responses(
        (status = 201, description = "created: Location /api/uploads/{id}, Upload-Expires"),
        (status = 400, description = "validation_failed: a missing or malformed header", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "conversation_not_found", body = ErrorBody),
        (status = 412, description = "unsupported_tus_version", body = ErrorBody),
        (status = 413, description = "payload_too_large: over UPLOAD_MAX_SIZE", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    _tus: Tus,
    caller: AuthUser,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let size = upload_length(&headers, state.config.upload_max_size)?;
    let metadata = metadata(&headers)?;
    let filename = metadata
        .get("filename")
        .cloned()
        .ok_or_else(|| bad_header("Upload-Metadata", "must carry `filename`"))?;
    let conversation_id = metadata
        .get("conversationId")
        .ok_or_else(|| bad_header("Upload-Metadata", "must carry `conversationId`"))?
        .parse::<Uuid>()
        .map_err(|_| ApiError::conversation_not_found())?;
    let request = NewUploadRequest {
        size,
        filename,
        filetype: metadata.get("filetype").cloned(),
        conversation_id,
    };
    let upload = attachments::create(&state, &caller.user, request).await?;
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    let location = format!("/api/uploads/{}", upload.id);
    headers.insert(header::LOCATION, header_value(&location));
    headers.insert(UPLOAD_OFFSET, HeaderValue::from(upload.received()));
    add_expiry(headers, &upload);
    Ok(response)
}

/// How far an upload is: `Upload-Offset` and `Upload-Length`.
#[utoipa::path(head, path = "/api/uploads/{id}", tag = "uploads", security(("bearer" = []), ("cookie" = [])),
    params(("id" = Uuid, Path), ("Tus-Resumable" = inline(TusResumable), Header, description = "the tus version: 1.0.0")),
    responses(
        (status = 200, description = "Upload-Offset, Upload-Length, Upload-Expires"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "upload_not_found: not the caller's, expired or unknown", body = ErrorBody),
        (status = 412, description = "unsupported_tus_version", body = ErrorBody)))]
async fn offset(
    State(state): State<AppState>,
    _tus: Tus,
    caller: AuthUser,
    UploadPath(id): UploadPath,
) -> ApiResult<Response> {
    let upload = attachments::own(&state, &caller.user, id).await?;
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(UPLOAD_OFFSET, HeaderValue::from(upload.received()));
    headers.insert(UPLOAD_LENGTH, HeaderValue::from(upload.size()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    add_expiry(headers, &upload);
    Ok(response)
}

/// Appends the body (`application/offset+octet-stream`) at `Upload-Offset`.
#[utoipa::path(patch, path = "/api/uploads/{id}", tag = "uploads", security(("bearer" = []), ("cookie" = [])),
    params(
        ("id" = Uuid, Path),
        ("Tus-Resumable" = inline(TusResumable), Header, description = "the tus version: 1.0.0"),
        ("Upload-Offset" = u64, Header, description = "where the body goes: the upload's offset"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Upload-Offset: the new offset"),
        (status = 400, description = "validation_failed: a missing or malformed Upload-Offset", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "csrf_rejected", body = ErrorBody),
        (status = 404, description = "upload_not_found", body = ErrorBody),
        (status = 409, description = "offset_mismatch: the upload is at another offset", body = ErrorBody),
        (status = 412, description = "unsupported_tus_version", body = ErrorBody),
        (status = 413, description = "payload_too_large: the body goes past Upload-Length", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody)))]
async fn append(
    State(state): State<AppState>,
    _tus: Tus,
    caller: AuthUser,
    UploadPath(id): UploadPath,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let octets = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/offset+octet-stream")
        });
    if !octets {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "a PATCH carries Content-Type: application/offset+octet-stream",
        ));
    }
    let offset = number(&headers, &UPLOAD_OFFSET, "Upload-Offset")?
        .ok_or_else(|| bad_header("Upload-Offset", "is required"))?;
    let declared = number(&headers, &header::CONTENT_LENGTH, "Content-Length")?;
    let offset = attachments::append(&state, &caller.user, id, offset, declared, body).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(offset));
    Ok(response)
}

/// tus `termination`: abandons an upload not attached to a message; its bytes are removed.
#[utoipa::path(delete, path = "/api/uploads/{id}", tag = "uploads", security(("bearer" = []), ("cookie" = [])),
    params(("id" = Uuid, Path), ("Tus-Resumable" = inline(TusResumable), Header, description = "the tus version: 1.0.0")),
    responses(
        (status = 204, description = "abandoned"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden: attached to a message (delete the message), or csrf_rejected", body = ErrorBody),
        (status = 404, description = "upload_not_found", body = ErrorBody),
        (status = 412, description = "unsupported_tus_version", body = ErrorBody)))]
async fn abandon(
    State(state): State<AppState>,
    _tus: Tus,
    caller: AuthUser,
    UploadPath(id): UploadPath,
) -> ApiResult<StatusCode> {
    attachments::abandon(&state, &caller.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `Upload-Expires` of an upload not yet attached, as an HTTP date.
fn add_expiry(headers: &mut HeaderMap, upload: &Upload) {
    if upload.message_id.is_none() {
        let date = upload
            .expires_at
            .to_datetime()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        headers.insert(UPLOAD_EXPIRES, header_value(&date));
    }
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("made of ids, digits and ASCII words")
}

fn bad_header(name: &str, why: &str) -> ApiError {
    ApiError::invalid_field(name, why)
}

/// A header that must be a non-negative integer when present.
fn number(headers: &HeaderMap, name: &HeaderName, label: &str) -> ApiResult<Option<u64>> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| bad_header(label, "must be a non-negative integer"))
}

/// `Upload-Length`: required (deferred lengths are not supported); a number past `max` — even
/// one too long for 64 bits — is 413.
fn upload_length(headers: &HeaderMap, max: u64) -> ApiResult<u64> {
    let Some(raw) = headers.get(UPLOAD_LENGTH) else {
        if headers.contains_key(UPLOAD_DEFER_LENGTH) {
            return Err(bad_header(
                "Upload-Defer-Length",
                "is not supported: send Upload-Length",
            ));
        }
        return Err(bad_header("Upload-Length", "is required"));
    };
    let digits = raw
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| bad_header("Upload-Length", "must be a non-negative integer"))?;
    match digits.parse::<u64>() {
        Ok(size) if size <= max => Ok(size),
        _ => Err(attachments::too_large(max)),
    }
}

/// `Upload-Metadata`: comma-separated `key base64(value)` pairs (a key may come alone), each
/// key once, values UTF-8.
fn metadata(headers: &HeaderMap) -> ApiResult<BTreeMap<String, String>> {
    let bad = |why: &str| bad_header("Upload-Metadata", why);
    let Some(raw) = headers.get(UPLOAD_METADATA) else {
        return Err(bad("is required (filename and conversationId)"));
    };
    if raw.len() > METADATA_MAX {
        return Err(bad("must be at most 4096 bytes"));
    }
    let raw = raw.to_str().map_err(|_| bad("must be ASCII"))?;
    let mut pairs = BTreeMap::new();
    for pair in raw.split(',') {
        let mut words = pair.trim().split(' ');
        let key = words.next().unwrap_or_default();
        let value = words.next();
        if key.is_empty() || words.next().is_some() {
            return Err(bad("must be comma-separated `key base64value` pairs"));
        }
        let value = match value {
            None => String::new(),
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| bad("has a value that is not base64 of UTF-8 text"))?,
        };
        if pairs.insert(key.to_owned(), value).is_some() {
            return Err(bad("names a key twice"));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn metadata_is_read_as_tus_writes_it() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let raw = format!(
            "filename {},filetype {}, conversationId {},is_confidential",
            b64("cat 🐈.png"),
            b64("image/png"),
            b64("0190c0de-0000-7000-8000-000000000000")
        );
        let read = metadata(&with(UPLOAD_METADATA, &raw)).unwrap();
        assert_eq!(read["filename"], "cat 🐈.png");
        assert_eq!(read["filetype"], "image/png");
        assert_eq!(read["is_confidential"], "");
        for bad in [
            "filename !!!notbase64",
            "filename a b",
            ",",
            "filename YQ==,filename Yg==",
            "filename //79",
        ] {
            let err = metadata(&with(UPLOAD_METADATA, bad)).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert!(metadata(&HeaderMap::new()).is_err());
    }

    #[test]
    fn lengths_past_the_limit_are_413_and_garbage_is_400() {
        assert_eq!(upload_length(&with(UPLOAD_LENGTH, "10"), 100).unwrap(), 10);
        assert_eq!(upload_length(&with(UPLOAD_LENGTH, "0"), 100).unwrap(), 0);
        for (raw, status) in [
            ("101", StatusCode::PAYLOAD_TOO_LARGE),
            ("99999999999999999999999999", StatusCode::PAYLOAD_TOO_LARGE),
            ("-1", StatusCode::BAD_REQUEST),
            ("1e3", StatusCode::BAD_REQUEST),
            ("", StatusCode::BAD_REQUEST),
        ] {
            let err = upload_length(&with(UPLOAD_LENGTH, raw), 100).unwrap_err();
            assert_eq!(err.status, status, "{raw:?}");
        }
        assert_eq!(
            upload_length(&HeaderMap::new(), 100).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any header value is read or refused, never a panic; what is read has keys tus allows.
        #[test]
        fn any_metadata_header_is_read_or_refused(raw in proptest::collection::vec(0u8..=255, 0..300)) {
            if let Ok(value) = HeaderValue::from_bytes(&raw) {
                let mut headers = HeaderMap::new();
                headers.insert(UPLOAD_METADATA, value);
                if let Ok(read) = metadata(&headers) {
                    for key in read.keys() {
                        proptest::prop_assert!(!key.is_empty() && !key.contains([' ', ',']));
                    }
                }
            }
        }

        /// What a tus client writes reads back as it was.
        #[test]
        fn metadata_a_client_writes_reads_back(
            pairs in proptest::collection::btree_map("[a-zA-Z0-9_.-]{1,12}", ".*", 1..6)
        ) {
            let raw = pairs
                .iter()
                .map(|(k, v)| format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v)))
                .collect::<Vec<_>>()
                .join(",");
            if raw.len() <= METADATA_MAX {
                proptest::prop_assert_eq!(metadata(&with(UPLOAD_METADATA, &raw)).unwrap(), pairs);
            }
        }

        /// Any `Upload-Length` is a size within the limit, exactly as written, or a refusal.
        #[test]
        fn any_upload_length_is_its_number_within_the_limit_or_refused(raw in ".{0,40}", max in 0u64..=u64::MAX) {
            if let Ok(value) = HeaderValue::from_str(&raw) {
                let mut headers = HeaderMap::new();
                headers.insert(UPLOAD_LENGTH, value);
                if let Ok(size) = upload_length(&headers, max) {
                    proptest::prop_assert!(size <= max);
                    proptest::prop_assert_eq!(raw.parse::<u64>().ok(), Some(size));
                }
            }
        }
    }
}
