//! `GET /monitor`: the Socket Monitor page for admins, with its script and stylesheet. `build.rs`
//! builds them from `web/` (bundling the official `socket.io-client`) and they are embedded here,
//! so the binary serves them with nothing beside it. The page signs in through the REST API and
//! is refused to non-admins there; these routes only hand out static files.

use axum::Router;
use axum::http::{HeaderName, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/monitor/index.html"));
const SCRIPT: &str = include_str!(concat!(env!("OUT_DIR"), "/monitor/monitor.js"));
const STYLESHEET: &str = include_str!(concat!(env!("OUT_DIR"), "/monitor/monitor.css"));

/// Only this server's own files: no inline script or style, so an injected user name cannot run.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
     img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/monitor",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/monitor/monitor.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/monitor/monitor.css",
            get(|| async { asset("text/css; charset=utf-8", STYLESHEET) }),
        )
}

/// An embedded file with the headers every monitor response carries. `no-cache`: the browser
/// asks again each time, so an upgraded binary never runs with an old script.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    (headers, body)
}
