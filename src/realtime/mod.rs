//! The two Socket.IO servers on one port: the main server at `/api/socket` (namespace `/`, every
//! topic) and the namespace server at `/api/socket-namespaces` (`/auth`, `/messenger`,
//! `/notifications`, one topic each, for older clients).
//!
//! [`Realtime`] is the one way in from REST handlers and services, in the product's words: emit to
//! a user, to a session or to everyone, end a session, push a session's new token, presence,
//! typing, readiness. Room names, the pair of servers and the adapter they run on stay inside this
//! module. Inside it: `mount` builds the servers and registers the handlers, `handshake` connects
//! and authenticates sockets, `connection` is each socket's own state, `events` the client events,
//! `servers` the emits over either adapter, `presence` (who is online), `watch` (who watches whom
//! here), `places` (the per-user connection limit) and `typing` their trackers.

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
mod places;
pub mod presence;
mod servers;
mod typing;
mod watch;

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
use places::Places;
use presence::{
    OFFLINE_ENTRY_BYTES, OnlinePage, OnlineUser, Presence, PresenceChange, entry_bytes,
};
use servers::Servers;
use socketioxide::socket::Sid;
use typing::Typing;
use watch::{Scope, Watching};

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
/// Every authenticated socket is in this room (broadcasts go there).
const AUTHENTICATED_ROOM: &str = "authenticated";
/// The sockets of this node that watch everyone (scope `all`), a room of this node only.
const WATCH_ALL_ROOM: &str = "presence_all";
/// The most JSON one presence frame carries (SPEC §5: none above 64 KiB, with room for the
/// packet's own bytes around the payload).
const PRESENCE_FRAME_BYTES: usize = MAX_PACKET - 1024;
/// The most partners a socket watches from its user's conversations (SPEC §5).
const PARTNERS_MAX: usize = 1_000;
/// How long `server_shutdown` gets to reach the clients before their connections close.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(300);

/// The namespaces of the namespace server that carry a server → client event. Events of no one
/// topic (`force_logout`, `server_shutdown`, `testMessage`, `pong`) go to every namespace.
fn namespaces_of(event: &str) -> &'static [&'static str] {
    match event {
        "authenticated" | "authError" | "tokenUpdated" | "userStatusChanged" => &[AUTH_NS],
        "newMessage" | "messageSent" | "messageDelivered" | "messagesRead" | "messageUpdated"
        | "messageDeleted" | "reactionsChanged" | "userTyping" | "getOnlineUsers"
        | "presenceChanged" | "uploadProgress" => &[MESSENGER_NS],
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
    /// The cluster this node is in, if any; set once at start-up by [`mount`].
    cluster: OnceLock<Cluster>,
    presence: Presence,
    watching: Watching,
    places: Places,
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

    fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.get()
    }

    /// One page of everyone online, ordered by id (the `getOnlineUsers` event).
    pub fn online_page(&self, after: Option<Uuid>, limit: usize) -> OnlinePage {
        self.presence().page(after, limit, PRESENCE_FRAME_BYTES)
    }

    /// Replaces the `watchPresence` list of socket `sid` of `user_id` with those of `users`
    /// that exist (its own user left out); answers their state.
    pub fn watch(&self, sid: Sid, user_id: Uuid, users: Vec<Uuid>) -> (Vec<OnlineUser>, Vec<Uuid>) {
        let users: Vec<Uuid> = users.into_iter().filter(|id| *id != user_id).collect();
        self.inner.watching.set_list(sid, users.clone());
        let view = self.presence().view(users);
        self.inner.watching.recheck(sid, view.unsettled);
        (view.online, view.offline)
    }

    /// The users of `a` and of `b` have a conversation now: each watches the other from now on,
    /// on every node.
    pub async fn partners_met(&self, a: &[Uuid], b: &[Uuid]) {
        self.inner.watching.partners_met(a, b);
        if let Some(cluster) = self.cluster() {
            watch::publish_partners(cluster, a, b).await;
        }
    }

    /// Sends every socket of this node that gets presence its welcome list again (the
    /// `emitOnlineUsers` action); other nodes do the same at their next round. Answers how many
    /// sockets here got it.
    pub async fn resend_online_users(&self) -> usize {
        if let Some(cluster) = self.cluster() {
            self.inner.watching.ask_resend(cluster).await;
        }
        self.welcome_everyone()
    }

    /// The welcome list to every socket here that gets presence.
    fn welcome_everyone(&self) -> usize {
        let sockets = self.inner.watching.sockets();
        for (sid, scope) in &sockets {
            self.welcome(*sid, *scope, |event, data| {
                on_servers!(self, |pair| pair.emit_to_local_socket(*sid, event, data));
            });
        }
        sockets.len()
    }

    /// Socket `sid` of `user_id` gets presence from now on: it watches everyone, or its user's
    /// `partners` (as read for it) and its list.
    fn start_watching(&self, sid: Sid, user_id: Uuid, scope: Scope, partners: Vec<Uuid>) {
        self.inner.watching.add(sid, user_id, scope, partners);
    }

    fn stop_watching(&self, sid: Sid) {
        self.inner.watching.remove(sid);
    }

    /// The scope a socket of `user_id` authenticating now gets, with the user's partners when
    /// they must be read for it (scope `watched`, and no socket here knows them yet).
    pub fn scope_for(&self, user_id: Uuid, broadcast_max: usize) -> (Scope, bool) {
        if self.presence().online_count_with(user_id) <= broadcast_max {
            (Scope::All, false)
        } else {
            (
                Scope::Watched,
                !self.inner.watching.knows_partners_of(user_id),
            )
        }
    }

    /// The welcome of socket `sid` in `scope`, through `emit`: `getOnlineUsers {users, total,
    /// scope}` with everyone online (scope `all`) or the online users it watches (never its own
    /// user: partners and lists leave it out); a list too long for one frame goes on in
    /// `presenceChanged` frames.
    fn welcome(&self, sid: Sid, scope: Scope, emit: impl Fn(&'static str, &Value)) {
        let presence = self.presence();
        let view = match self.inner.watching.watched_by(sid) {
            None => presence.view_everyone(),
            Some(watched) => presence.view(watched),
        };
        self.inner.watching.recheck(sid, view.unsettled);
        let mut frames = frames(PresenceChange {
            online: view.online,
            offline: Vec::new(),
        })
        .into_iter();
        let first = frames.next().unwrap_or_default();
        let total = presence.online_count();
        self.count_out("getOnlineUsers");
        emit(
            "getOnlineUsers",
            &json!({"users": first.online, "total": total, "scope": scope.as_str()}),
        );
        for frame in frames {
            self.count_out("presenceChanged");
            emit("presenceChanged", &json!(frame));
        }
    }

    /// Tells this node's sockets what changed among the users each watches (and new partners'
    /// state), in frames of at most 64 KiB.
    async fn tell_presence(&self, change: PresenceChange) {
        let deliveries = self
            .inner
            .watching
            .deliveries(&change, |id| self.presence().told(id));
        if !change.is_empty() {
            let except: Vec<String> = deliveries
                .all_except
                .iter()
                .map(|id| user_room(*id))
                .collect();
            for frame in frames(change) {
                self.count_out("presenceChanged");
                on_servers!(self, |pair| pair
                    .emit_local_room(WATCH_ALL_ROOM, &except, "presenceChanged", &frame)
                    .await);
            }
        }
        for (sid, change) in deliveries.sockets {
            for frame in frames(change) {
                self.emit_to_local_socket(sid, "presenceChanged", &frame);
            }
        }
    }

    /// Emits to one socket of this node, whichever server it is on.
    fn emit_to_local_socket<T: Serialize + ?Sized>(&self, sid: Sid, event: &str, data: &T) {
        self.count_out(event);
        on_servers!(self, |pair| pair.emit_to_local_socket(sid, event, data));
    }

    /// One presence round: in a cluster, the Redis part (counts, places, new partners, asks to
    /// resend); then the batch to this node's sockets.
    async fn presence_round(&self, redis_ok: &mut bool) {
        if let Some(cluster) = self.cluster() {
            let synced = async {
                self.presence().sync(cluster).await?;
                self.inner.places.sync(cluster).await?;
                self.inner.watching.follow(cluster).await
            }
            .await;
            match synced {
                Ok(resend) => {
                    if !*redis_ok {
                        tracing::info!(category = "ok", "✅ cluster presence: Redis answers again");
                    }
                    *redis_ok = true;
                    if resend {
                        self.welcome_everyone();
                    }
                }
                Err(e) => {
                    if *redis_ok {
                        tracing::error!(category = "error", error = %e, "❌ cluster presence: Redis does not answer; this node's counts wait");
                    }
                    *redis_ok = false;
                }
            }
        }
        match self.presence().take_change() {
            Some(change) => self.tell_presence(change).await,
            None if self.inner.watching.has_untold() => {
                self.tell_presence(PresenceChange::default()).await;
            }
            None => {}
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
        self.inner.places.withdraw(cluster).await;
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

/// `change` in frames of at most [`PRESENCE_FRAME_BYTES`] of JSON each (one when it fits).
fn frames(change: PresenceChange) -> Vec<PresenceChange> {
    // `{"online":[],"offline":[]}` around the entries.
    const ENVELOPE: usize = 32;
    let budget = PRESENCE_FRAME_BYTES - ENVELOPE;
    let bytes: usize = change.online.iter().map(entry_bytes).sum::<usize>()
        + change.offline.len() * OFFLINE_ENTRY_BYTES;
    if bytes <= budget {
        return vec![change];
    }
    let mut frames = vec![PresenceChange::default()];
    let mut used = 0;
    let mut room_for = |size: usize, frames: &mut Vec<PresenceChange>| {
        if used + size > budget && !frames.last().is_some_and(|f| f.is_empty()) {
            frames.push(PresenceChange::default());
            used = 0;
        }
        used += size;
    };
    for user in change.online {
        room_for(entry_bytes(&user), &mut frames);
        frames
            .last_mut()
            .expect("one frame at least")
            .online
            .push(user);
    }
    for id in change.offline {
        room_for(OFFLINE_ENTRY_BYTES, &mut frames);
        frames
            .last_mut()
            .expect("one frame at least")
            .offline
            .push(id);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_over_64_kib_is_split_into_frames_that_fit() {
        let change = PresenceChange {
            online: (0..2_000)
                .map(|n| OnlineUser {
                    user_id: Uuid::now_v7(),
                    name: format!("User number {n} with a name of some length"),
                })
                .collect(),
            offline: (0..3_000).map(|_| Uuid::now_v7()).collect(),
        };
        let frames = frames(change.clone());
        assert!(frames.len() > 2, "{} frames", frames.len());
        for frame in &frames {
            let json = serde_json::to_string(frame).unwrap();
            assert!(json.len() <= PRESENCE_FRAME_BYTES, "{} bytes", json.len());
        }
        let online: Vec<OnlineUser> = frames.iter().flat_map(|f| f.online.clone()).collect();
        let offline: Vec<Uuid> = frames.iter().flat_map(|f| f.offline.clone()).collect();
        assert_eq!(
            (online, offline),
            (change.online, change.offline),
            "nothing lost, in order"
        );
        let small = PresenceChange {
            online: Vec::new(),
            offline: vec![Uuid::now_v7()],
        };
        assert_eq!(super::frames(small.clone()), vec![small]);
    }
}
