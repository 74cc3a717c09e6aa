//! The two Socket.IO servers on one port: the main server at `/api/socket` (namespace `/`, every
//! topic) and the namespace server at `/api/socket-namespaces` (`/auth`, `/messenger`,
//! `/notifications`, one topic each, for older clients).
//!
//! [`Realtime`] is the one way in from REST handlers and services, in the product's words: emit to
//! a user, to a session or to everyone, end a session, push a session's new token, presence,
//! typing, readiness. Room names, the pair of servers and the adapter they run on stay inside this
//! module. Inside it: `mount` builds the servers and registers the handlers, `handshake` connects
//! and authenticates sockets, `connection` is each socket's own state, `events` the client events,
//! `servers` the emits over either adapter, `presence` and `typing` their trackers.

/// Runs `$body` with `$pair` bound to the socket servers, whichever adapter they run on (one
/// body, compiled for both); `None` before [`mount::mount`].
macro_rules! on_servers {
    ($realtime:expr, |$pair:ident| $body:expr) => {
        match $realtime.servers() {
            Some($crate::realtime::servers::Servers::Local($pair)) => Some($body),
            Some($crate::realtime::servers::Servers::Redis($pair)) => Some($body),
            None => None,
        }
    };
}

mod connection;
mod events;
mod handshake;
pub mod mount;
pub mod presence;
mod servers;
mod typing;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::token::TokenKeys;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::store::User;
use connection::{Identity, connection};
use presence::{OnlineUser, Presence};
use servers::Servers;
use typing::Typing;

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
const MAX_PACKET: usize = 64 * 1024;
/// Every authenticated socket is in this room (presence batches go there).
const AUTHENTICATED_ROOM: &str = "authenticated";
/// How long `server_shutdown` gets to reach the clients before their connections close.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(300);

/// The namespaces of the namespace server that carry a server → client event. Events of no one
/// topic (`force_logout`, `server_shutdown`, `testMessage`, `pong`) go to every namespace.
fn namespaces_of(event: &str) -> &'static [&'static str] {
    match event {
        "authenticated" | "authError" | "tokenUpdated" | "userStatusChanged" => &[AUTH_NS],
        "newMessage" | "messageSent" | "messageDelivered" | "messagesRead" | "messageUpdated"
        | "messageDeleted" | "reactionsChanged" | "userTyping" | "getOnlineUsers"
        | "presenceChanged" => &[MESSENGER_NS],
        "notification" | "notificationsRead" => &[NOTIFICATIONS_NS],
        "incomingCall" | "callAccepted" | "callEnded" | "iceCandidate" => &[MESSENGER_NS],
        _ => &TOPIC_NAMESPACES,
    }
}

/// Whether a socket of namespace `ns` gets `event` (the main server's `/` gets everything).
fn carries(ns: &str, event: &str) -> bool {
    ns == "/" || namespaces_of(event).contains(&ns)
}

fn user_room(user_id: Uuid) -> String {
    format!("user_{user_id}")
}

fn session_room(session_id: Uuid) -> String {
    format!("session_{session_id}")
}

/// The room of one side's device of a call: the caller's calling socket, or the callee's
/// answering one.
fn call_room(call_id: Uuid, side: CallSide) -> String {
    match side {
        CallSide::Caller => format!("call_{call_id}_caller"),
        CallSide::Callee => format!("call_{call_id}_callee"),
    }
}

/// One of the two devices of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallSide {
    Caller,
    Callee,
}

impl CallSide {
    pub fn other(self) -> Self {
        match self {
            Self::Caller => Self::Callee,
            Self::Callee => Self::Caller,
        }
    }
}

/// The room of a group conversation's members' sockets.
fn group_room(conversation_id: Uuid) -> String {
    format!("group_{conversation_id}")
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
    typing: Typing,
    /// Redis failed the last emit; the next one that works says the cluster is back.
    cluster_down: AtomicBool,
    /// The node is shutting down: presence rounds stop (a last heartbeat would count it live).
    stopping: AtomicBool,
}

impl Realtime {
    /// The socket servers (see `on_servers!`).
    fn servers(&self) -> Option<&Servers> {
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
    fn receivers(&self, room: &str, event: &str) -> usize {
        on_servers!(self, |pair| pair.receivers(room, event)).unwrap_or(0)
    }

    /// How many of this node's sockets of a user would get `event`.
    pub fn user_receivers(&self, user_id: Uuid, event: &str) -> usize {
        self.receivers(&user_room(user_id), event)
    }

    /// How many of this node's authenticated sockets would get `event`.
    pub fn everyone_receivers(&self, event: &str) -> usize {
        self.receivers(AUTHENTICATED_ROOM, event)
    }

    /// The ids of this node's sockets of a user, on both servers (in the user's room: events to
    /// the user reach them).
    pub fn user_socket_ids(&self, user_id: Uuid) -> Vec<String> {
        on_servers!(self, |pair| {
            pair.local_sockets_in(&user_room(user_id))
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

    /// Whether this node is shutting down (background loops end).
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// Whether the socket server accepts connections on this node.
    pub fn is_ready(&self) -> bool {
        self.servers().is_some()
    }

    pub fn presence(&self) -> &Presence {
        &self.inner.presence
    }

    /// Who is online, as `getOnlineUsers` answers it.
    pub fn online_users(&self) -> OnlineUsers {
        let users = self.presence().online_users();
        OnlineUsers {
            total: users.len(),
            users,
        }
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
        self.emit_to_room(user_room(user_id), None, event, data)
            .await
    }

    /// Emits an event to every socket of one session (one device).
    pub async fn emit_to_session<T: Serialize + ?Sized>(
        &self,
        session_id: Uuid,
        event: &str,
        data: &T,
    ) -> bool {
        self.emit_to_room(session_room(session_id), None, event, data)
            .await
    }

    /// Emits an event to the sockets of every member of a group, on every node, in one adapter
    /// operation (the group's room), but not to `except`'s sockets.
    pub async fn emit_to_group<T: Serialize + ?Sized>(
        &self,
        conversation_id: Uuid,
        except: Option<Uuid>,
        event: &str,
        data: &T,
    ) -> bool {
        let except = except.map(user_room);
        self.emit_to_room(group_room(conversation_id), except, event, data)
            .await
    }

    /// Puts a user's sockets, on every node, in a group's room: they get its events from now on.
    pub async fn join_group(&self, user_id: Uuid, conversation_id: Uuid) {
        let (of, room) = (user_room(user_id), group_room(conversation_id));
        let joined = on_servers!(self, |pair| pair.join_room(&of, &room, "newMessage").await);
        self.cluster_reached(joined.unwrap_or(true));
    }

    /// Takes a user's sockets, on every node, out of a group's room: they get nothing more of it
    /// once this answers.
    pub async fn leave_group(&self, user_id: Uuid, conversation_id: Uuid) {
        let (of, room) = (user_room(user_id), group_room(conversation_id));
        let left = on_servers!(self, |pair| pair.leave_room(&of, &room).await);
        self.cluster_reached(left.unwrap_or(true));
    }

    /// Makes the socket `sid` of this node a call's device on `side`: it gets that side's events.
    pub fn join_call(&self, sid: &str, call_id: Uuid, side: CallSide) -> bool {
        let room = call_room(call_id, side);
        on_servers!(self, |pair| pair.join_local_socket(sid, &room, "callEnded")).unwrap_or(false)
    }

    /// A call ended: its devices, on every node, leave its rooms.
    pub async fn leave_call(&self, call_id: Uuid) {
        for side in [CallSide::Caller, CallSide::Callee] {
            let room = call_room(call_id, side);
            let left = on_servers!(self, |pair| pair.leave_room(&room, &room).await);
            self.cluster_reached(left.unwrap_or(true));
        }
    }

    /// Emits an event to one side's device of a call, on whichever node it is.
    pub async fn emit_to_call<T: Serialize + ?Sized>(
        &self,
        call_id: Uuid,
        side: CallSide,
        event: &str,
        data: &T,
    ) -> bool {
        self.emit_to_room(call_room(call_id, side), None, event, data)
            .await
    }

    /// Emits an event to every socket of a user but the device of a call's `side`.
    pub async fn emit_to_user_but_call<T: Serialize + ?Sized>(
        &self,
        user_id: Uuid,
        call_id: Uuid,
        side: CallSide,
        event: &str,
        data: &T,
    ) -> bool {
        let except = Some(call_room(call_id, side));
        self.emit_to_room(user_room(user_id), except, event, data)
            .await
    }

    /// Emits an event to every authenticated socket, on every node.
    pub async fn emit_to_everyone<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> bool {
        self.emit_to_room(AUTHENTICATED_ROOM.to_owned(), None, event, data)
            .await
    }

    /// Emits an event to a room on both servers, on every node; false when any emit failed
    /// (when Redis does not answer, this node's sockets still get it).
    async fn emit_to_room<T: Serialize + ?Sized>(
        &self,
        room: String,
        except: Option<String>,
        event: &str,
        data: &T,
    ) -> bool {
        self.count_out(event);
        let outcome = on_servers!(self, |pair| pair
            .emit_to_room(&room, except.as_deref(), event, data)
            .await);
        let Some(outcome) = outcome else {
            return false;
        };
        self.cluster_reached(!outcome.cluster_failed);
        outcome.ok()
    }

    /// Emits an event to every socket of a user, asking each for an ack; `on_ack` runs when the
    /// first socket (of each server) answers within `timeout`. False when any emit failed.
    pub async fn emit_to_user_with_acks<F, Fut>(
        &self,
        user_id: Uuid,
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
        let room = user_room(user_id);
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

    /// A session got a new token (an admin changed the user): pushes `tokenUpdated` to the
    /// session's sockets. This node's sockets of the session take it as their identity at once
    /// (their refresh clock follows it); other nodes' sockets read the account again at their own
    /// refresh.
    pub async fn push_session_token(&self, tokens: &TokenKeys, user: &User, session_id: Uuid) {
        let issued = tokens.issue(user, session_id);
        let payload = json!({"token": issued.token, "expiresAt": issued.expires_at, "user": user});
        self.emit_to_session(session_id, "tokenUpdated", &payload)
            .await;
        on_servers!(self, |pair| {
            for socket in pair.local_sockets_in(&session_room(session_id)) {
                connection(&socket).set_identity(Identity {
                    user: user.clone(),
                    session_id,
                    expires_at: issued.expires_at,
                });
            }
        });
    }

    /// `userTyping` to the others of a conversation: started, or stopped. A start the client
    /// does not refresh ends by itself after the typing timeout.
    pub async fn typing(&self, from: Uuid, place: TypingIn, is_typing: bool) {
        let key = match place {
            TypingIn::Direct { to, .. } => to,
            TypingIn::Group(id) => id,
        };
        if is_typing {
            let generation = self.inner.typing.started(from, key);
            let realtime = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(typing::TIMEOUT).await;
                if realtime.inner.typing.ended(from, key, Some(generation)) {
                    realtime.tell_typing(from, place, false).await;
                }
            });
        } else {
            self.inner.typing.ended(from, key, None);
        }
        self.tell_typing(from, place, is_typing).await;
    }

    async fn tell_typing(&self, from: Uuid, place: TypingIn, is_typing: bool) {
        match place {
            TypingIn::Direct {
                to,
                conversation_id,
            } => {
                let payload = json!({"userId": from, "isTyping": is_typing, "conversationId": conversation_id});
                self.emit_to_user(to, "userTyping", &payload).await;
            }
            TypingIn::Group(id) => {
                let payload = json!({"userId": from, "isTyping": is_typing, "conversationId": id});
                self.emit_to_group(id, Some(from), "userTyping", &payload)
                    .await;
            }
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

    /// A clean shutdown takes this node out of the cluster: its users go offline at once.
    pub async fn leave_cluster(&self, cluster: &Cluster) {
        self.presence().withdraw(cluster).await;
        cluster.leave().await;
    }
}

/// Where someone types.
#[derive(Clone, Copy, Debug)]
pub enum TypingIn {
    /// To one user, in their direct conversation (its id once it has one).
    Direct {
        to: Uuid,
        conversation_id: Option<Uuid>,
    },
    /// In a group.
    Group(Uuid),
}

/// Who is online: the `getOnlineUsers` payload.
#[derive(Debug, Serialize)]
pub struct OnlineUsers {
    pub total: usize,
    pub users: Vec<OnlineUser>,
}
