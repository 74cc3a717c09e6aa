//! The two Socket.IO servers on one port: the main server at `/api/socket` (namespace `/`, every
//! topic) and the namespace server at `/api/socket-namespaces` (`/auth`, `/messenger`,
//! `/notifications`, one topic each, for older clients). One set of handlers serves both:
//! connection and authentication (`connection`), the client events (`events`), presence, and the
//! small façade the REST side uses to reach sockets (`Realtime`: emit to a user or a session, end
//! a session's connections), which fans every event out to both servers.

pub mod connection;
pub mod events;
pub mod presence;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::operators::BroadcastOperators;
use socketioxide::{SocketIo, TransportType};
use uuid::Uuid;

use crate::app::AppState;
use crate::ops::metrics::Metrics;
use presence::Presence;

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

/// The real-time side as the rest of the application sees it. Cheap to clone.
#[derive(Clone, Default)]
pub struct Realtime {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The main server; set once at start-up by [`mount`] (its handlers need the state that
    /// holds this).
    io: OnceLock<SocketIo>,
    /// The namespace server, likewise.
    namespaces: OnceLock<SocketIo>,
    /// Where emitted events are counted.
    metrics: OnceLock<Arc<Metrics>>,
    presence: Presence,
    /// Sockets connected to this node, authenticated or not.
    connections: AtomicUsize,
    /// The latest typing "start" per (from, to), so a stale timer does not end a fresh one.
    typing: Mutex<HashMap<(Uuid, Uuid), u64>>,
    typing_generation: AtomicU64,
}

impl Realtime {
    /// Where an event goes: the main server's `/` and the namespaces of the namespace server
    /// that carry it.
    pub fn operators(&self, event: &str) -> Vec<BroadcastOperators> {
        let main = self.inner.io.get().and_then(|io| io.of("/"));
        let topics = self
            .inner
            .namespaces
            .get()
            .into_iter()
            .flat_map(|io| namespaces_of(event).iter().filter_map(|ns| io.of(ns)));
        main.into_iter().chain(topics).collect()
    }

    /// Every namespace of both servers.
    fn all_operators(&self) -> Vec<BroadcastOperators> {
        self.operators("force_logout")
    }

    /// How many sockets each namespace has on this node (`/` is the main server).
    pub fn sockets_by_namespace(&self) -> Vec<(String, usize)> {
        self.all_operators()
            .into_iter()
            .map(|operator| {
                let ns = match operator.ns_path() {
                    "/" => "/".to_owned(),
                    other => format!("{NAMESPACES_PATH}{other}"),
                };
                (ns, operator.sockets().len())
            })
            .collect()
    }

    /// How many of this node's sockets in a room would get `event` (on both servers, in the
    /// namespaces that carry it).
    pub fn receivers(&self, room: &str, event: &str) -> usize {
        self.operators(event)
            .into_iter()
            .map(|operator| operator.to(room.to_owned()).sockets().len())
            .sum()
    }

    /// This node's sockets in a room, on both servers.
    pub fn local_sockets_in(&self, room: &str) -> Vec<socketioxide::extract::SocketRef> {
        self.all_operators()
            .into_iter()
            .flat_map(|operator| operator.to(room.to_owned()).sockets())
            .collect()
    }

    /// Whether the socket server accepts connections on this node.
    pub fn is_ready(&self) -> bool {
        self.inner.io.get().is_some()
    }

    pub fn presence(&self) -> &Presence {
        &self.inner.presence
    }

    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    fn connected(&self) {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
    }

    fn disconnected(&self) {
        self.inner.connections.fetch_sub(1, Ordering::Relaxed);
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

    /// Emits an event to a room on both servers; false when any emit failed.
    pub async fn emit_to_room<T: Serialize + ?Sized>(
        &self,
        room: String,
        event: &str,
        data: &T,
    ) -> bool {
        let operators = self.operators(event);
        if operators.is_empty() {
            return false;
        }
        if let Some(metrics) = self.inner.metrics.get() {
            metrics.event_out(event);
        }
        let mut ok = true;
        for operator in operators {
            if let Err(e) = operator.to(room.clone()).emit(event, data).await {
                tracing::warn!(category = "error", event, error = %e, "❌ emit failed");
                ok = false;
            }
        }
        ok
    }

    /// Sends `force_logout {reason}` to a session's sockets and disconnects them; answers how
    /// many there were.
    pub async fn end_session(&self, session_id: Uuid, reason: &str) -> usize {
        let room = session_room(session_id);
        let notice = json!({ "reason": reason });
        let mut sockets = 0;
        for operator in self.all_operators() {
            sockets += operator.clone().to(room.clone()).sockets().len();
            let _ = operator
                .clone()
                .to(room.clone())
                .emit("force_logout", &notice)
                .await;
            let _ = operator.to(room.clone()).disconnect().await;
        }
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

    /// Tells every socket the node is stopping, then closes them all.
    pub async fn shutdown(&self) {
        let notice = json!({ "reason": "server_shutdown", "reconnectAfterMs": 1000 });
        for operator in self.all_operators() {
            let _ = operator.emit("server_shutdown", &notice).await;
        }
        // Let the notice leave the buffers (a polling socket mid-upgrade flushes on its next
        // poll) before the connections close.
        tokio::time::sleep(SHUTDOWN_FLUSH).await;
        for io in [self.inner.io.get(), self.inner.namespaces.get()]
            .into_iter()
            .flatten()
        {
            io.close().await;
        }
    }
}

/// Builds both Socket.IO servers, registers their handlers and starts the presence batches.
/// Answers the layers to put in front of the router.
pub fn mount(state: &AppState) -> [SocketIoLayer; 2] {
    let (main_layer, main) = builder(state, SOCKET_PATH);
    main.ns("/", connection::on_connect.with(connection::handshake));
    let (namespaces_layer, namespaces) = builder(state, NAMESPACES_PATH);
    for ns in TOPIC_NAMESPACES {
        namespaces.ns(ns, connection::on_connect.with(connection::handshake));
    }
    let inner = &state.realtime.inner;
    let _ = inner.metrics.set(state.metrics.clone());
    if inner.io.set(main).is_err() || inner.namespaces.set(namespaces).is_err() {
        panic!("the socket servers are mounted once");
    }
    tokio::spawn(announce_presence(state.clone()));
    [main_layer, namespaces_layer]
}

fn builder(state: &AppState, path: &'static str) -> (SocketIoLayer, SocketIo) {
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
        .build_layer()
}

/// Emits one `presenceChanged` per interval at most, and only when something changed.
async fn announce_presence(state: AppState) {
    let mut ticks = tokio::time::interval(state.config.presence_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(change) = state.realtime.presence().take_change() {
            state
                .realtime
                .emit_to_room(AUTHENTICATED_ROOM.to_owned(), "presenceChanged", &change)
                .await;
        }
    }
}
