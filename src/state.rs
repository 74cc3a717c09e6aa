//! What every request handler, socket handler and service can reach: handles to the
//! configuration, the database, the cluster link, the token keys, the rate limits, the sockets
//! (through the [`Realtime`] façade) and the metrics. Built once by `Application::build`; cheap to
//! clone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use crate::auth::token::TokenKeys;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::push::Push;
use crate::ratelimit::{LoginLimits, TokenBuckets};
use crate::realtime::Realtime;
use crate::store::Store;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    /// The link to the other nodes through Redis; `None` on a single node.
    pub cluster: Option<Cluster>,
    pub tokens: Arc<TokenKeys>,
    /// Failed-login buckets per (IP, email) and per IP.
    pub login_limits: Arc<LoginLimits>,
    /// Messages each user may send per second.
    pub message_limits: Arc<TokenBuckets<Uuid>>,
    /// Calls each user may start per minute.
    pub call_limits: Arc<TokenBuckets<Uuid>>,
    /// Which of this node's sockets are a call's device.
    pub calls: Arc<crate::calls::Local>,
    /// The sockets, as REST handlers reach them.
    pub realtime: Realtime,
    pub metrics: Arc<Metrics>,
    /// Where attachments live (SPEC §12).
    pub storage: crate::storage::Storage,
    /// The VAPID key and the client that sends Web Push.
    pub push: Arc<Push>,
    /// This node's unique id, as the self-test reports it.
    pub node_id: String,
    /// Where this node listens (loopback checks connect here).
    pub listen_addr: SocketAddr,
    pub started_at: Instant,
}

impl AppState {
    pub fn socket_ready(&self) -> bool {
        self.realtime.is_ready()
    }
}
