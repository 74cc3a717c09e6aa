//! Prometheus metrics (`GET /metrics`): connections by namespace, online users, events in and out
//! by name, messages stored, HTTP requests by route and status with latency histograms, and
//! authentication failures by reason. One registry per application, so tests stay independent.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::app::AppState;
use crate::error::ApiError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Every series the server exposes.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: LatencyFamily,
    events_in: Family<EventLabels, Counter>,
    events_out: Family<EventLabels, Counter>,
    messages_stored: Counter,
    auth_failures: Family<ReasonLabels, Counter>,
    connections: Family<NamespaceLabels, Gauge>,
    online_users: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("craftcode");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let events_in = Family::<EventLabels, Counter>::default();
        let events_out = Family::<EventLabels, Counter>::default();
        let messages_stored = Counter::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let connections = Family::<NamespaceLabels, Gauge>::default();
        let online_users = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_latency.clone(),
        );
        registry.register(
            "socket_events_in",
            "Socket events received, by name",
            events_in.clone(),
        );
        registry.register(
            "socket_events_out",
            "Socket events emitted, by name",
            events_out.clone(),
        );
        registry.register(
            "messages_stored",
            "Direct messages stored",
            messages_stored.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused authentications, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "socket_connections",
            "Open sockets on this node, by namespace",
            connections.clone(),
        );
        registry.register(
            "online_users",
            "Users with at least one open socket on this node",
            online_users.clone(),
        );
        Self {
            registry,
            http_requests,
            http_latency,
            events_in,
            events_out,
            messages_stored,
            auth_failures,
            connections,
            online_users,
        }
    }
}

impl Metrics {
    pub fn event_in(&self, event: &str) {
        self.events_in
            .get_or_create(&EventLabels {
                event: event.to_owned(),
            })
            .inc();
    }

    pub fn event_out(&self, event: &str) {
        self.events_out
            .get_or_create(&EventLabels {
                event: event.to_owned(),
            })
            .inc();
    }

    pub fn message_stored(&self) {
        self.messages_stored.inc();
    }

    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The text exposition, with the gauges read from the live state first.
    pub fn render(&self, state: &AppState) -> String {
        for (namespace, sockets) in state.realtime.sockets_by_namespace() {
            self.connections
                .get_or_create(&NamespaceLabels { namespace })
                .set(sockets as i64);
        }
        self.online_users
            .set(state.realtime.presence().online_users().len() as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Middleware counting every request by matched route and status, with its latency.
pub async fn track_http(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    let metrics = &state.metrics;
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .http_latency
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: public, or behind `Authorization: Bearer <METRICS_TOKEN>` when that is set.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "METRICS_TOKEN is set and was not sent", body = crate::http::openapi::ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(expected.expose()) {
            return ApiError::unauthorized(
                "unauthenticated",
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
        state.metrics.render(&state),
    )
        .into_response()
}
