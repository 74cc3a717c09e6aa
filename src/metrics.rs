//! The Prometheus series the server keeps: connections by namespace, online users, events in and
//! out by name, messages stored, HTTP requests by route and status with latency histograms, and
//! authentication failures by reason. One registry per application, so tests stay independent.
//! `GET /metrics` (in `ops::metrics`) renders them.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::ErrorCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
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
    pushes: Family<OutcomeLabels, Counter>,
    push_outbox: Gauge,
    upload_bytes: Counter,
    uploads_completed: Counter,
    uploads_removed: Counter,
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
        let pushes = Family::<OutcomeLabels, Counter>::default();
        let push_outbox = Gauge::default();
        let upload_bytes = Counter::default();
        let uploads_completed = Counter::default();
        let uploads_removed = Counter::default();
        registry.register(
            "upload_bytes",
            "Bytes of uploads received and kept by this node",
            upload_bytes.clone(),
        );
        registry.register(
            "uploads_completed",
            "Uploads completed (joined, sniffed, measured) by this node",
            uploads_completed.clone(),
        );
        registry.register(
            "uploads_removed",
            "Uploads whose files this node removed (abandoned, expired, deleted)",
            uploads_removed.clone(),
        );
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
        registry.register(
            "pushes",
            "Web Push sends settled by this node, by outcome (sent, retried, gone, failed, refused)",
            pushes.clone(),
        );
        registry.register(
            "push_outbox",
            "Pushes waiting in the outbox (every node's)",
            push_outbox.clone(),
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
            pushes,
            push_outbox,
            upload_bytes,
            uploads_completed,
            uploads_removed,
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

    /// One push settled: `sent`, `retried`, `gone`, `failed` or `refused`.
    pub fn push(&self, outcome: &str) {
        self.pushes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A PATCH's part was kept: `bytes` more of an upload.
    pub fn upload_received(&self, bytes: u64) {
        self.upload_bytes.inc_by(bytes);
    }

    pub fn upload_completed(&self) {
        self.uploads_completed.inc();
    }

    pub fn upload_removed(&self) {
        self.uploads_removed.inc();
    }

    pub fn message_stored(&self) {
        self.messages_stored.inc();
    }

    pub fn auth_failure(&self, reason: ErrorCode) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    /// One answered HTTP request, by its matched route.
    pub fn http_request(&self, route: String, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.clone(),
                status,
            })
            .inc();
        self.http_latency
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    /// The text exposition, with the gauges set first from the live figures given.
    pub fn render(
        &self,
        sockets_by_namespace: Vec<(String, usize)>,
        online_users: usize,
        push_outbox: Option<i64>,
    ) -> String {
        if let Some(depth) = push_outbox {
            self.push_outbox.set(depth);
        }
        for (namespace, sockets) in sockets_by_namespace {
            self.connections
                .get_or_create(&NamespaceLabels { namespace })
                .set(sockets as i64);
        }
        self.online_users.set(online_users as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
