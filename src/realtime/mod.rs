//! The Socket.IO server at `/api/socket`: connection and authentication (`connection`), the
//! client events (`events`), presence, and the small façade the REST side uses to reach sockets
//! (`Realtime`: emit to a user or a session, end a session's connections).

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
use socketioxide::{SocketIo, TransportType};
use uuid::Uuid;

use crate::app::AppState;
use presence::Presence;

/// Path of the main Socket.IO server.
pub const SOCKET_PATH: &str = "/api/socket";
/// Socket.IO packets above this are refused.
pub const MAX_PACKET: usize = 64 * 1024;
/// Every authenticated socket is in this room (presence batches go there).
pub const AUTHENTICATED_ROOM: &str = "authenticated";
/// A typing indicator the client stops refreshing ends after this.
pub const TYPING_TIMEOUT: Duration = Duration::from_secs(6);

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
    /// Set once at start-up by [`mount`]; the socket handlers need the state that holds this.
    io: OnceLock<SocketIo>,
    presence: Presence,
    /// Sockets connected to this node, authenticated or not.
    connections: AtomicUsize,
    /// The latest typing "start" per (from, to), so a stale timer does not end a fresh one.
    typing: Mutex<HashMap<(Uuid, Uuid), u64>>,
    typing_generation: AtomicU64,
}

impl Realtime {
    /// The socket server; `None` until it is mounted.
    pub fn io(&self) -> Option<&SocketIo> {
        self.inner.io.get()
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

    async fn emit_to_room<T: Serialize + ?Sized>(
        &self,
        room: String,
        event: &str,
        data: &T,
    ) -> bool {
        let Some(io) = self.io() else { return false };
        match io.to(room).emit(event, data).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(event, error = %e, "❌ emit failed");
                false
            }
        }
    }

    /// Sends `force_logout {reason}` to a session's sockets and disconnects them; answers how
    /// many there were.
    pub async fn end_session(&self, session_id: Uuid, reason: &str) -> usize {
        let Some(io) = self.io() else { return 0 };
        let room = session_room(session_id);
        let sockets = io.to(room.clone()).sockets();
        let _ = io
            .to(room.clone())
            .emit("force_logout", &json!({ "reason": reason }))
            .await;
        let _ = io.to(room).disconnect().await;
        if !sockets.is_empty() {
            tracing::info!(%session_id, sockets = sockets.len(), reason, "🔌 session's sockets logged out");
        }
        sockets.len()
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
        let Some(io) = self.io() else { return };
        let notice = json!({ "reason": "server_shutdown", "reconnectAfterMs": 1000 });
        let _ = io.emit("server_shutdown", &notice).await;
        io.close().await;
    }
}

/// Builds the Socket.IO server on `/api/socket`, registers its handlers and starts the presence
/// batches. Answers the layer to put in front of the router.
pub fn mount(state: &AppState) -> SocketIoLayer {
    let (layer, io) = SocketIo::builder()
        .req_path(SOCKET_PATH)
        .transports([TransportType::Polling, TransportType::Websocket])
        .max_payload(MAX_PACKET as u64)
        .ws_max_message_size(MAX_PACKET)
        .ws_max_frame_size(MAX_PACKET)
        .max_buffer_size(1024)
        .with_state(state.clone())
        .build_layer();
    io.ns("/", connection::on_connect.with(connection::handshake));
    if state.realtime.inner.io.set(io).is_err() {
        panic!("the socket server is mounted once");
    }
    tokio::spawn(announce_presence(state.clone()));
    layer
}

/// Emits one `presenceChanged` per interval at most, and only when something changed.
async fn announce_presence(state: AppState) {
    let mut ticks = tokio::time::interval(state.config.presence_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(change) = state.realtime.presence().take_change() {
            let Some(io) = state.realtime.io() else {
                continue;
            };
            let _ = io
                .to(AUTHENTICATED_ROOM)
                .emit("presenceChanged", &change)
                .await;
        }
    }
}
