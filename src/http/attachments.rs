//! `GET /api/attachments/{id}` and `…/thumbnail` (SPEC §12): a file for the members of its
//! conversation, streamed from storage, with `Range`, `ETag`, `nosniff` and a disposition that
//! shows only the four image types inline (SVG and HTML are always downloads).

use std::ops::Range;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path::AttachmentPath;
use crate::attachments::{self, Download, media};
use crate::auth::AuthUser;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(file))
        .routes(routes!(thumbnail))
}

/// An attachment's bytes.
#[utoipa::path(get, path = "/api/attachments/{id}", tag = "uploads", security(("bearer" = []), ("cookie" = [])),
    params(("id" = Uuid, Path), ("Range" = Option<String>, Header, description = "one `bytes=` range")),
    responses(
        (status = 200, description = "the file", content_type = "application/octet-stream"),
        (status = 206, description = "the range asked for", content_type = "application/octet-stream"),
        (status = 304, description = "If-None-Match matched the ETag"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "attachment_not_found: unknown, deleted, or not in a conversation of the caller's", body = ErrorBody),
        (status = 416, description = "the range is outside the file")))]
async fn file(
    State(state): State<AppState>,
    caller: AuthUser,
    AttachmentPath(id): AttachmentPath,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let download = attachments::download(&state, &caller.user, id, false).await?;
    serve(&state, download, &headers).await
}

/// An image attachment's thumbnail (at most 320 px on its long side).
#[utoipa::path(get, path = "/api/attachments/{id}/thumbnail", tag = "uploads", security(("bearer" = []), ("cookie" = [])),
    params(("id" = Uuid, Path), ("Range" = Option<String>, Header, description = "one `bytes=` range")),
    responses(
        (status = 200, description = "the thumbnail (JPEG or PNG)", content_type = "image/jpeg"),
        (status = 206, description = "the range asked for", content_type = "image/jpeg"),
        (status = 304, description = "If-None-Match matched the ETag"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "attachment_not_found, or it has no thumbnail", body = ErrorBody),
        (status = 416, description = "the range is outside the file")))]
async fn thumbnail(
    State(state): State<AppState>,
    caller: AuthUser,
    AttachmentPath(id): AttachmentPath,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let download = attachments::download(&state, &caller.user, id, true).await?;
    serve(&state, download, &headers).await
}

/// Answers a download: 304 for a fresh copy, 206 for one satisfiable range, 416 for one that
/// is not, else the whole file.
async fn serve(state: &AppState, download: Download, headers: &HeaderMap) -> ApiResult<Response> {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == download.etag || t.trim() == "*")
        });
    if fresh {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        common_headers(response.headers_mut(), &download);
        return Ok(response);
    }
    // A Range for another version of the file (If-Range) gets the whole file.
    let same_version = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == download.etag));
    let range = match headers.get(header::RANGE).filter(|_| same_version) {
        None => None,
        Some(raw) => match byte_range(raw.to_str().unwrap_or_default(), download.size) {
            RangeAsked::None => None,
            RangeAsked::One(range) => Some(range),
            RangeAsked::Unsatisfiable => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                let all = format!("bytes */{}", download.size);
                response
                    .headers_mut()
                    .insert(header::CONTENT_RANGE, value(&all));
                return Ok(response);
            }
        },
    };
    // The first bytes are read before answering, so a file that is gone is a 404 and a store
    // that does not answer a 503, not a 200 cut short.
    let mut stream = state.storage.read_parts(&download.parts, range.clone());
    let first = match stream.next().await {
        Some(Err(object_store::Error::NotFound { .. })) => {
            return Err(attachments::attachment_not_found());
        }
        Some(Err(e)) => return Err(attachments::storage_error(e)),
        first => first,
    };
    let body = Body::from_stream(futures_util::stream::iter(first).chain(stream));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    common_headers(headers, &download);
    headers.insert(header::CONTENT_TYPE, value(&download.content_type));
    match range {
        Some(r) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let headers = response.headers_mut();
            let span = format!("bytes {}-{}/{}", r.start, r.end - 1, download.size);
            headers.insert(header::CONTENT_RANGE, value(&span));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
        }
        None => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
        }
    }
    Ok(response)
}

/// What every answer about a file carries, whatever its status.
fn common_headers(headers: &mut HeaderMap, download: &Download) {
    headers.insert(header::ETAG, value(&download.etag));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Whoever opens it anyway gets a page that can run nothing.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    // Kept by the browser, but asked again (a 304) each time: a removed member stops seeing it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    let disposition = if media::is_image(&download.content_type) {
        "inline"
    } else {
        "attachment"
    };
    headers.insert(
        header::CONTENT_DISPOSITION,
        value(&content_disposition(disposition, &download.filename)),
    );
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `inline` or `attachment` with the filename twice: an ASCII fallback (RFC 6266) and the exact
/// UTF-8 name (RFC 5987).
pub fn content_disposition(kind: &str, filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in filename.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsked {
    /// No range we serve (several ranges, another unit, or garbage): the whole file.
    None,
    One(Range<u64>),
    Unsatisfiable,
}

/// One `bytes=` range of a file of `size` bytes (RFC 9110 §14.1.2).
fn byte_range(raw: &str, size: u64) -> RangeAsked {
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return RangeAsked::None;
    };
    if spec.contains(',') {
        return RangeAsked::None;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsked::None;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            None => RangeAsked::None,
            Some(0) => RangeAsked::Unsatisfiable,
            Some(_) if size == 0 => RangeAsked::Unsatisfiable,
            Some(n) => RangeAsked::One(size.saturating_sub(n)..size),
        },
        (start, end) => {
            let Some(start) = number(start) else {
                return RangeAsked::None;
            };
            let end = match end {
                "" => size.saturating_sub(1),
                end => match number(end) {
                    Some(end) if end >= start => end.min(size.saturating_sub(1)),
                    _ => return RangeAsked::None,
                },
            };
            if start >= size {
                RangeAsked::Unsatisfiable
            } else {
                RangeAsked::One(start..end + 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(byte_range("bytes=0-99", 1000), RangeAsked::One(0..100));
        assert_eq!(byte_range("bytes=900-", 1000), RangeAsked::One(900..1000));
        assert_eq!(byte_range("bytes=-100", 1000), RangeAsked::One(900..1000));
        assert_eq!(byte_range("bytes=-5000", 1000), RangeAsked::One(0..1000));
        assert_eq!(
            byte_range("bytes=990-5000", 1000),
            RangeAsked::One(990..1000)
        );
        assert_eq!(byte_range("bytes=1000-", 1000), RangeAsked::Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 1000), RangeAsked::Unsatisfiable);
        assert_eq!(byte_range("bytes=0-0", 0), RangeAsked::Unsatisfiable);
        for ignored in [
            "items=0-1",
            "bytes=5-1",
            "bytes=0-1,5-9",
            "bytes=a-b",
            "bytes=-",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(byte_range(ignored, 1000), RangeAsked::None, "{ignored}");
        }
    }

    #[test]
    fn filenames_cannot_break_out_of_the_header() {
        let header = content_disposition("attachment", "a\"b\\c résumé.pdf");
        assert_eq!(
            header,
            "attachment; filename=\"a_b_c r_sum_.pdf\"; filename*=UTF-8''a%22b%5Cc%20r%C3%A9sum%C3%A9.pdf"
        );
        assert!(HeaderValue::from_str(&header).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any `Range` header: one range inside the file, unsatisfiable, or ignored.
        #[test]
        fn any_range_is_inside_the_file_or_not_served(raw in "(bytes=)?[0-9,\\- a-z]{0,30}", size in 0u64..10_000_000) {
            if let RangeAsked::One(range) = byte_range(&raw, size) {
                proptest::prop_assert!(range.start < range.end && range.end <= size, "{:?} of {}", range, size);
            }
        }

        /// Any filename, once kept, makes a header value.
        #[test]
        fn any_kept_filename_makes_a_valid_disposition(name in ".*", inline in proptest::prelude::any::<bool>()) {
            let kept = crate::attachments::clean_filename(&name);
            let header = content_disposition(if inline { "inline" } else { "attachment" }, &kept);
            proptest::prop_assert!(HeaderValue::from_str(&header).is_ok(), "{}", header);
        }
    }
}
