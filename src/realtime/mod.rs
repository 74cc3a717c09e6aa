//! The two Socket.IO servers on one port: the main server at `/api/socket` (namespace `/`, every
//! topic) and the namespace server at `/api/socket-namespaces` (`/auth`, `/messenger`,
//! `/notifications`, one topic each, for older clients). One set of handlers serves both:
//! connection and authentication (`connection`), the client events (`events`), presence, and the
//! small façade the REST side uses to reach sockets (`Realtime`: emit to a user or a session, end
//! a session's connections), which fans every event out to both servers.

pub mod connection;
pub mod events;
pub mod presence;

pub mod servers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::adapter::LocalAdapter;
use socketioxide::{SocketIo, SocketIoBuilder, TransportType};
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use uuid::Uuid;

use crate::app::AppState;
use crate::cluster::Cluster;
use crate::ops::metrics::Metrics;
use presence::Presence;
pub use servers::Layers;
use servers::{RedisAdapter, Servers, SocketServers};

/// Path of the main Socket.IO server.
pub const SOCKET_PATH: &str = "/api/socket";
/// Path of the namespace server, for older clients.
pub const NAMESPACES_PATH: &str = "/api/socket-namespaces";
/// The namespaces of the namespace server, one per topic.
pub const AUTH_NS: &str = "/auth";
pub const MESSENGER_NS: &str = "/messenger";
pub const NOTIFICATIONS_NS: &str = "/notifications";
const TOPIC_NAMESPACES: [&str; 3] = [AUTH_NS, MESSENGER_NS, NOTIFICATIONS_NS];
/// Socket.IO packets above this are refused.
pub const MAX_PACKET: usize = 64 * 1024;
/// How long a cluster request (an emit with acks, counting remote sockets) waits for other nodes.
const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Every authenticated socket is in this room (presence batches go there).
pub const AUTHENTICATED_ROOM: &str = "authenticated";
/// How long `server_shutdown` gets to reach the clients before their connections close.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(300);
/// A typing indicator the client stops refreshing ends after this.
pub const TYPING_TIMEOUT: Duration = Duration::from_secs(6);

/// The namespaces of the namespace server that carry a server → client event. Events of no one
/// topic (`force_logout`, `server_shutdown`, `testMessage`, `pong`) go to every namespace.
pub fn namespaces_of(event: &str) -> &'static [&'static str] {
    match event {
        "authenticated" | "authError" | "tokenUpdated" | "userStatusChanged" => &[AUTH_NS],
        "newMessage" | "messageSent" | "messageDelivered" | "messagesRead" | "userTyping"
        | "getOnlineUsers" | "presenceChanged" => &[MESSENGER_NS],
        "notification" | "notificationsRead" => &[NOTIFICATIONS_NS],
        _ => &TOPIC_NAMESPACES,
    }
}

/// Whether a socket of namespace `ns` gets `event` (the main server's `/` gets everything).
pub fn carries(ns: &str, event: &str) -> bool {
    ns == "/" || namespaces_of(event).contains(&ns)
}

pub fn user_room(user_id: Uuid) -> String {
    format!("user_{user_id}")
}

pub fn session_room(session_id: Uuid) -> String {
    format!("session_{session_id}")
}

/// Runs `$body` with `$pair` bound to the socket servers, whichever adapter they run on (one
/// body, compiled for both); `None` before [`mount`].
#[macro_export]
macro_rules! on_servers {
    ($realtime:expr, |$pair:ident| $body:expr) => {
        match $realtime.servers() {
            Some($crate::realtime::servers::Servers::Local($pair)) => Some($body),
            Some($crate::realtime::servers::Servers::Redis($pair)) => Some($body),
            None => None,
        }
    };
}

/// The real-time side as the rest of the application sees it. Cheap to clone.
#[derive(Clone, Default)]
pub struct Realtime {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Both socket servers; set once at start-up by [`mount`] (their handlers need the state
    /// that holds this).
    servers: OnceLock<Servers>,
    /// Where emitted events are counted.
    metrics: OnceLock<Arc<Metrics>>,
    presence: Presence,
    /// Sockets connected to this node, authenticated or not.
    connections: AtomicUsize,
    /// The latest typing "start" per (from, to), so a stale timer does not end a fresh one.
    typing: Mutex<HashMap<(Uuid, Uuid), u64>>,
    typing_generation: AtomicU64,
    /// Redis failed the last emit; the next one that works says the cluster is back.
    cluster_down: AtomicBool,
    /// The node is shutting down: presence rounds stop (a last heartbeat would count it live).
    stopping: AtomicBool,
}

impl Realtime {
    /// The socket servers (see [`on_servers!`]).
    pub fn servers(&self) -> Option<&Servers> {
        self.inner.servers.get()
    }

    /// `local` or `redis`, as the self-test reports it.
    pub fn adapter_kind(&self) -> &'static str {
        match self.servers() {
            Some(Servers::Redis(_)) => "redis",
            _ => "local",
        }
    }

    /// How many sockets each namespace has on this node (`/` is the main server).
    pub fn sockets_by_namespace(&self) -> Vec<(String, usize)> {
        on_servers!(self, |pair| pair.sockets_by_namespace()).unwrap_or_default()
    }

    /// How many of this node's sockets in a room would get `event` (on both servers, in the
    /// namespaces that carry it).
    pub fn receivers(&self, room: &str, event: &str) -> usize {
        on_servers!(self, |pair| pair.receivers(room, event)).unwrap_or(0)
    }

    /// The ids of this node's sockets in a room, on both servers.
    pub fn local_socket_ids(&self, room: &str) -> Vec<String> {
        on_servers!(self, |pair| {
            pair.local_sockets_in(room)
                .iter()
                .map(|s| s.id.to_string())
                .collect()
        })
        .unwrap_or_default()
    }

    /// Whether a user has a socket, on any node, that gets `event`. This node's sockets are
    /// looked up here; in a cluster the other nodes are asked (and when Redis does not answer,
    /// presence decides, which does not tell namespaces apart).
    pub async fn reaches(&self, user_id: Uuid, event: &str) -> bool {
        let room = user_room(user_id);
        if self.receivers(&room, event) > 0 {
            return true;
        }
        match self.servers() {
            Some(Servers::Redis(pair)) => match pair.remote_receivers(&room, event).await {
                Some(found) => found,
                None => {
                    self.presence().user_connections(user_id)
                        > self.presence().local_connections(user_id)
                }
            },
            _ => false,
        }
    }

    /// Whether the socket server accepts connections on this node.
    pub fn is_ready(&self) -> bool {
        self.servers().is_some()
    }

    pub fn presence(&self) -> &Presence {
        &self.inner.presence
    }

    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Counts one more connection unless there are `max` already.
    fn try_connect(&self, max: usize) -> bool {
        self.inner
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn disconnected(&self) {
        self.inner.connections.fetch_sub(1, Ordering::Relaxed);
    }

    fn count_out(&self, event: &str) {
        if let Some(metrics) = self.inner.metrics.get() {
            metrics.event_out(event);
        }
    }

    /// Logs the start and the end of a Redis outage once each, not per emit.
    fn cluster_reached(&self, ok: bool) {
        let was_down = self.inner.cluster_down.swap(!ok, Ordering::Relaxed);
        if ok && was_down {
            tracing::info!(
                category = "ok",
                "✅ Redis answers again: emits reach the whole cluster"
            );
        } else if !ok && !was_down {
            tracing::error!(
                category = "error",
                "❌ Redis does not answer: emits reach this node's sockets only"
            );
        }
    }

    /// Emits an event to every socket of a user; false when the real-time layer failed.
    pub async fn emit_to_user<T: Serialize + ?Sized>(
        &self,
        user_id: Uuid,
        event: &str,
        data: &T,
    ) -> bool {
        self.emit_to_room(user_room(user_id), event, data).await
    }

    /// Emits an event to every socket of one session (one device).
    pub async fn emit_to_session<T: Serialize + ?Sized>(
        &self,
        session_id: Uuid,
        event: &str,
        data: &T,
    ) -> bool {
        self.emit_to_room(session_room(session_id), event, data)
            .await
    }

    /// Emits an event to a room on both servers, on every node; false when any emit failed
    /// (when Redis does not answer, this node's sockets still get it).
    pub async fn emit_to_room<T: Serialize + ?Sized>(
        &self,
        room: String,
        event: &str,
        data: &T,
    ) -> bool {
        self.count_out(event);
        let outcome = on_servers!(self, |pair| pair.emit_to_room(&room, event, data).await);
        let Some(outcome) = outcome else {
            return false;
        };
        self.cluster_reached(!outcome.cluster_failed);
        outcome.ok()
    }

    /// Emits an event to a room, asking each socket for an ack; `on_ack` runs when the first
    /// socket (of each server) answers within `timeout`. False when any emit failed.
    pub async fn emit_with_acks<F, Fut>(
        &self,
        room: String,
        event: &str,
        data: &Value,
        timeout: Duration,
        on_ack: F,
    ) -> bool
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.count_out(event);
        let outcome = on_servers!(self, |pair| {
            pair.emit_with_acks(&room, event, data, timeout, on_ack)
                .await
        });
        let Some(outcome) = outcome else {
            return false;
        };
        self.cluster_reached(!outcome.cluster_failed);
        outcome.ok()
    }

    /// Sends `force_logout {reason}` to a session's sockets on every node and disconnects them;
    /// answers how many there were.
    pub async fn end_session(&self, session_id: Uuid, reason: &str) -> usize {
        let room = session_room(session_id);
        let notice = json!({ "reason": reason });
        let sockets =
            on_servers!(self, |pair| pair.log_out_room(&room, &notice).await).unwrap_or(0);
        if sockets > 0 {
            tracing::info!(category = "socket", %session_id, sockets, reason, "🔌 session's sockets logged out");
        }
        sockets
    }

    /// Records a typing "start" and answers its generation; see [`Realtime::typing_ended`].
    fn typing_started(&self, from: Uuid, to: Uuid) -> u64 {
        let generation = self.inner.typing_generation.fetch_add(1, Ordering::Relaxed);
        let mut typing = self.inner.typing.lock().unwrap_or_else(|e| e.into_inner());
        typing.insert((from, to), generation);
        generation
    }

    /// Forgets a typing indicator; with a generation, only if no newer "start" replaced it.
    /// Answers whether it was still on.
    fn typing_ended(&self, from: Uuid, to: Uuid, generation: Option<u64>) -> bool {
        let mut typing = self.inner.typing.lock().unwrap_or_else(|e| e.into_inner());
        match (typing.get(&(from, to)), generation) {
            (Some(current), Some(g)) if *current != g => false,
            (Some(_), _) => {
                typing.remove(&(from, to));
                true
            }
            (None, _) => false,
        }
    }

    /// Tells this node's sockets the node is stopping, then closes them all.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        let notice = json!({ "reason": "server_shutdown", "reconnectAfterMs": 1000 });
        on_servers!(self, |pair| pair
            .emit_local("server_shutdown", &notice)
            .await);
        // Let the notice leave the buffers (a polling socket mid-upgrade flushes on its next
        // poll) before the connections close.
        tokio::time::sleep(SHUTDOWN_FLUSH).await;
        on_servers!(self, |pair| pair.close().await);
    }
}

/// Builds both Socket.IO servers (on the Redis adapter when the node is in a cluster),
/// registers their handlers and starts presence. Answers the layers to put in front of the
/// router.
pub async fn mount(state: &AppState) -> anyhow::Result<Layers> {
    let inner = &state.realtime.inner;
    let _ = inner.metrics.set(state.metrics.clone());
    let (layers, servers) = match &state.cluster {
        None => {
            let (main_layer, main) = builder(state, SOCKET_PATH).build_layer();
            let (ns_layer, namespaces) = builder(state, NAMESPACES_PATH).build_layer();
            let pair = SocketServers { main, namespaces };
            // The local adapter starts at once; nothing to wait for.
            drop(pair.register());
            state.realtime.presence().lead();
            (Layers::Local([main_layer, ns_layer]), Servers::Local(pair))
        }
        Some(cluster) => {
            let redis = |channel: &str| {
                let config = RedisAdapterConfig::new()
                    .with_prefix(format!("{}:{channel}", cluster.prefix()))
                    .with_request_timeout(CLUSTER_REQUEST_TIMEOUT);
                RedisAdapterCtr::new_with_driver(cluster.driver(), config)
            };
            let (main_layer, main) = builder(state, SOCKET_PATH)
                .with_adapter::<RedisAdapter>(redis("socket"))
                .build_layer();
            let (ns_layer, namespaces) = builder(state, NAMESPACES_PATH)
                .with_adapter::<RedisAdapter>(redis("socket-namespaces"))
                .build_layer();
            let pair = SocketServers { main, namespaces };
            for init in pair.register() {
                init.await
                    .map_err(|e| anyhow::anyhow!("joining the cluster's channels: {e}"))?;
            }
            (Layers::Redis([main_layer, ns_layer]), Servers::Redis(pair))
        }
    };
    if inner.servers.set(servers).is_err() {
        anyhow::bail!("the socket servers are mounted once");
    }
    tokio::spawn(run_presence(state.clone()));
    Ok(layers)
}

fn builder(state: &AppState, path: &'static str) -> SocketIoBuilder<LocalAdapter> {
    /// The initial read buffer of each websocket, in bytes.
    const WS_READ_BUFFER: usize = 1024;
    SocketIo::builder()
        .req_path(path)
        .transports([TransportType::Polling, TransportType::Websocket])
        .max_payload(MAX_PACKET as u64)
        .ws_max_message_size(MAX_PACKET)
        .ws_max_frame_size(MAX_PACKET)
        .max_buffer_size(1024)
        // Every socket keeps its read buffer for life; clients' packets are small (a frame
        // larger than this still arrives whole, the buffer grows for it). Measured at 4,000
        // idle sockets: 3 KB less per socket than the default 4 KiB.
        .ws_read_buffer_size(WS_READ_BUFFER)
        .with_state(state.clone())
}

/// Once per `PRESENCE_INTERVAL`: in a cluster, the Redis round of [`Presence::sync`]; then, on
/// the node that computes batches, one `presenceChanged` when something changed.
async fn run_presence(state: AppState) {
    let interval = state.config.presence_interval;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut redis_ok = true;
    loop {
        ticks.tick().await;
        if state.realtime.inner.stopping.load(Ordering::Relaxed) {
            return;
        }
        let presence = state.realtime.presence();
        let change = match &state.cluster {
            None => presence.take_change(),
            Some(cluster) => match presence.sync(cluster, interval * 3).await {
                Ok(change) => {
                    if !redis_ok {
                        tracing::info!(category = "ok", "✅ cluster presence: Redis answers again");
                    }
                    redis_ok = true;
                    change
                }
                Err(e) => {
                    if redis_ok {
                        tracing::error!(category = "error", error = %e, "❌ cluster presence: Redis does not answer; this node's counts wait");
                    }
                    redis_ok = false;
                    None
                }
            },
        };
        if let Some(change) = change {
            state
                .realtime
                .emit_to_room(AUTHENTICATED_ROOM.to_owned(), "presenceChanged", &change)
                .await;
        }
    }
}

/// A clean shutdown takes this node out of the cluster: its users go offline at once.
pub async fn leave_cluster(state: &AppState, cluster: &Cluster) {
    state.realtime.presence().withdraw(cluster).await;
    cluster.leave().await;
}
