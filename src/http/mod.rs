//! The REST API: one module per area, each with its `router()`, assembled here with the layers
//! every route shares (body limit, CORS, tracing, panic safety) and JSON 404/405 answers.

pub mod attachments;
pub mod auth;
pub mod calls;
pub mod conversations;
pub mod json;
pub mod messages;
pub mod notifications;
pub mod oauth;
pub mod openapi;
pub mod path;
pub mod push;
pub mod query;
pub mod sessions;
pub mod uploads;
pub mod users;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// HTTP bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The answer of a change that has nothing else to say: `{ok: true}`.
#[derive(Serialize, ToSchema)]
pub struct Done {
    pub ok: bool,
}

/// `{ok: true, count}`: how many things a change touched.
#[derive(Serialize, ToSchema)]
pub struct OkCount {
    pub ok: bool,
    pub count: u64,
}

impl OkCount {
    pub fn new(count: u64) -> Self {
        Self { ok: true, count }
    }
}

/// Every REST route with its layers. CORS is applied by the caller around this router and the
/// socket servers together, so polling transports get the same headers.
pub fn router(state: AppState) -> Router {
    let (documented, doc) = documented_routes().split_for_parts();
    openapi::publish(doc);
    documented
        .merge(crate::ops::monitor::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::ops::metrics::track_http,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The matched route, never the raw URI: query strings can carry OAuth codes.
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            tracing::debug_span!("http", method = %req.method(), route)
        }))
        .layer(CatchPanicLayer::custom(|_| internal_error()))
        .with_state(state)
}

/// The REST routes registered together with their OpenAPI description.
pub fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(attachments::router())
        .merge(auth::router())
        .merge(calls::router())
        .merge(conversations::router())
        .merge(messages::router())
        .merge(notifications::router())
        .merge(oauth::router())
        .merge(push::router())
        .merge(sessions::router())
        .merge(uploads::router())
        .merge(users::router())
        .merge(crate::ops::health::router())
        .merge(crate::ops::selftest::router())
        .merge(openapi::router())
}

/// CORS for the allowed origins, with credentials (cookies).
pub fn cors(config: &Config) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::RANGE,
            header::IF_NONE_MATCH,
            uploads::TUS_RESUMABLE,
            uploads::UPLOAD_LENGTH,
            uploads::UPLOAD_OFFSET,
            uploads::UPLOAD_METADATA,
            HeaderName::from_static("x-http-method-override"),
        ])
        // What a browser's tus client and downloads must be able to read.
        .expose_headers([
            header::LOCATION,
            header::CONTENT_RANGE,
            header::CONTENT_DISPOSITION,
            header::ETAG,
            uploads::TUS_RESUMABLE,
            uploads::TUS_VERSION_HEADER,
            uploads::TUS_EXTENSION,
            uploads::TUS_MAX_SIZE,
            uploads::UPLOAD_LENGTH,
            uploads::UPLOAD_OFFSET,
            uploads::UPLOAD_EXPIRES,
        ])
        .max_age(Duration::from_secs(600))
}

async fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}

fn internal_error() -> Response {
    ApiError::internal("a request handler panicked").into_response()
}
