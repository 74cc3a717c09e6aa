//! `GET /metrics`, the Prometheus text of [`Metrics`], and the middleware that counts every HTTP
//! request into it.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::state::AppState;

/// Middleware counting every request by matched route and status, with its latency.
pub async fn track_http(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .http_request(route, response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics`: public, or behind `Authorization: Bearer <METRICS_TOKEN>` when that is set.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "METRICS_TOKEN is set and was not sent", body = crate::error::ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(expected.expose()) {
            return ApiError::unauthorized(
                ErrorCode::Unauthenticated,
                "send `Authorization: Bearer <METRICS_TOKEN>`",
            )
            .into_response();
        }
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state.metrics, &state).await,
    )
        .into_response()
}

async fn render(metrics: &Metrics, state: &AppState) -> String {
    let online_users = state.realtime.presence().online_count();
    // A database that does not answer leaves the gauge at its last reading.
    let outbox = state.store.push_outbox_depth().await.ok();
    metrics.render(state.realtime.sockets_by_namespace(), online_users, outbox)
}
