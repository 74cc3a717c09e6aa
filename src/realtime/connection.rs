//! Connecting and authenticating sockets: the handshake middleware (origin, limits, token from
//! `auth.token` or the cookie), the unauthenticated state with `authenticate` and its timeout,
//! rooms, presence counting, and the token pushed before the old one expires.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use axum::http::header;
use axum_extra::extract::cookie::CookieJar;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;
use tokio::sync::SetOnce;
use tokio::task::AbortHandle;

use super::{AUTHENTICATED_ROOM, Realtime, carries, events, session_room, user_room};
use crate::app::AppState;
use crate::auth::TokenError;
use crate::auth::accounts::{AccessError, check_access};
use crate::auth::cookies::ACCESS_COOKIE;
use crate::on_servers;
use crate::ratelimit::EventBudget;
use crate::store::User;
use crate::timestamp::Timestamp;

/// Who an authenticated socket belongs to.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user: User,
    pub session_id: uuid::Uuid,
    /// When the socket's current access token expires.
    pub expires_at: Timestamp,
}

/// Per-socket state, kept in the socket's extensions.
#[derive(Default)]
pub struct Connection {
    identity: RwLock<Option<Identity>>,
    /// Events per second this socket may send.
    pub budget: Mutex<EventBudget>,
    /// The pending auth timeout or token refresh; aborted when replaced or at disconnect.
    timer: Mutex<Option<AbortHandle>>,
    /// Whether the socket is counted online, and as which session.
    life: Mutex<Life>,
    /// The socket's place in the node's connection count.
    counted: Mutex<Option<Counted>>,
    /// The place held under the per-user limit until presence counts the socket.
    reservation: Mutex<Option<Reservation>>,
    /// Set once the socket is connected, or gone (see [`Connection::connected`]).
    connected: SetOnce<()>,
}

/// Where a socket is in its life. socketioxide runs the connect and the disconnect handler in
/// tasks of their own, so a socket whose client left at once can see its disconnect handler
/// run first: it then stays `Closed`, and a late [`establish`] counts nothing.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Life {
    /// Connected or connecting, not counted online.
    #[default]
    Pending,
    /// In its rooms and counted online by presence under this session (see [`establish`]).
    Established {
        user_id: uuid::Uuid,
        session_id: uuid::Uuid,
    },
    /// Disconnected: nothing counts it, no timer may start.
    Closed,
}

/// A socket's place in the node's connection count (`MAX_CONNECTIONS`): taken first in the
/// handshake, given back when it is refused, at disconnect, or when the socket is dropped
/// without a disconnect (socketioxide drops a socket whose connection closed while the
/// handshake middleware ran, and calls neither handler).
struct Counted(Realtime);

impl Counted {
    /// `None` when the node has `MAX_CONNECTIONS` sockets already.
    fn take(state: &AppState) -> Option<Self> {
        let realtime = &state.realtime;
        realtime
            .try_connect(state.config.max_connections)
            .then(|| Self(realtime.clone()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.disconnected();
    }
}

/// A place under `MAX_CONNECTIONS_PER_USER` ([`Presence::reserve`]), held from the limit check
/// until [`establish`] counts the socket, and given back then or when the socket goes.
///
/// [`Presence::reserve`]: super::presence::Presence::reserve
struct Reservation {
    realtime: Realtime,
    user_id: uuid::Uuid,
}

impl Reservation {
    /// `None` when the user has `MAX_CONNECTIONS_PER_USER` sockets already.
    fn take(state: &AppState, user_id: uuid::Uuid) -> Option<Self> {
        let limit = state.config.max_connections_per_user;
        state
            .realtime
            .presence()
            .reserve(user_id, limit)
            .then(|| Self {
                realtime: state.realtime.clone(),
                user_id,
            })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.realtime.presence().release(self.user_id);
    }
}

impl Connection {
    pub fn identity(&self) -> Option<Identity> {
        self.identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_identity(&self, identity: Identity) {
        *self.identity.write().unwrap_or_else(|e| e.into_inner()) = Some(identity);
    }

    fn life(&self) -> MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the socket's place in the node's connections until [`Connection::uncount`] or
    /// its drop.
    fn count(&self, counted: Counted) {
        put(&self.counted, Some(counted));
    }

    fn uncount(&self) {
        put(&self.counted, None);
    }

    /// Keeps the place held under the per-user limit until [`Connection::release`] or its drop.
    fn hold(&self, reservation: Reservation) {
        put(&self.reservation, Some(reservation));
    }

    fn release(&self) {
        put(&self.reservation, None);
    }

    /// Keeps `handle` as the socket's timer, aborting the one before; aborts `handle` itself
    /// once the socket is closed (a refresh that was running at the disconnect ends there).
    fn set_timer(&self, handle: AbortHandle) {
        let mut timer = self.timer.lock().unwrap_or_else(|e| e.into_inner());
        if *self.life() == Life::Closed {
            handle.abort();
        } else if let Some(old) = timer.replace(handle) {
            old.abort();
        }
    }

    /// Waits until socketioxide counts the socket as connected. It answers the connect packet
    /// before it marks the socket connected, and an emit to an unmarked socket fails; an event the
    /// client sends the moment it is answered can be handled in between. Returns at once but in a
    /// socket's first instants; gives up after a second for a socket whose connect failed.
    pub async fn connected(&self) {
        if !self.connected.initialized() {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.connected.wait()).await;
        }
    }

    fn mark_connected(&self) {
        let _ = self.connected.set(());
    }

    fn cancel_timer(&self) {
        if let Some(old) = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            old.abort();
        }
    }
}

/// Replaces what a slot holds; the old value (a guard) is dropped, giving its place back.
fn put<T>(slot: &Mutex<Option<T>>, value: Option<T>) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = value;
}

/// The connection state of a socket (set by the handshake before anything else runs).
pub fn connection<A: Adapter>(s: &SocketRef<A>) -> Arc<Connection> {
    s.extensions.get::<Arc<Connection>>().unwrap_or_default()
}

/// A refused handshake; its text is the `connect_error` message the client sees.
#[derive(Debug)]
pub struct Refusal(&'static str);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl From<AccessError> for Refusal {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::Refused(e) => Self(e.code()),
            AccessError::Store(e) => {
                tracing::error!(category = "error", error = %e, "❌ socket authentication failed");
                Self("server_error")
            }
        }
    }
}

/// Checks an access token as REST does and answers who it belongs to.
pub async fn identify(state: &AppState, token: &str) -> Result<Identity, AccessError> {
    let claims = state.tokens.verify(token).map_err(AccessError::Refused)?;
    let (user, _session) = check_access(state, &claims).await?;
    Ok(Identity {
        user,
        session_id: claims.sid,
        expires_at: claims.expires_at(),
    })
}

/// Connect middleware: runs before the socket joins the namespace.
pub async fn handshake<A: Adapter>(
    s: SocketRef<A>,
    TryData(auth): TryData<Value>,
    State(state): State<AppState>,
) -> Result<(), Refusal> {
    let headers = &s.req_parts().headers;
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| state.config.is_allowed_origin(o));
        if !allowed {
            return Err(Refusal("origin_not_allowed"));
        }
    }
    let counted = Counted::take(&state).ok_or(Refusal("too_many_connections"))?;
    let token = auth
        .ok()
        .and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| {
            CookieJar::from_headers(headers)
                .get(ACCESS_COOKIE)
                .map(|c| c.value().to_owned())
        })
        .filter(|t| !t.is_empty());
    let connection = Connection::default();
    connection.count(counted);
    if let Some(token) = token {
        let identity = identify(&state, &token).await.map_err(|e| {
            let refusal = Refusal::from(e);
            state.metrics.auth_failure(refusal.0);
            refusal
        })?;
        // Counted across the cluster (other nodes' sockets as of their last presence round).
        let reservation =
            Reservation::take(&state, identity.user.id).ok_or(Refusal("too_many_connections"))?;
        connection.hold(reservation);
        connection.set_identity(identity);
    } else if s.ns() != "/" {
        // Only the main server has an unauthenticated state.
        return Err(Refusal("invalid_token"));
    }
    s.extensions.insert(Arc::new(connection));
    // Handlers are registered here, before the server answers the connect packet: an event the
    // client sends the moment it is connected must find them.
    events::register(&s);
    if carries(s.ns(), "authenticated") {
        s.on("authenticate", on_authenticate::<A>);
    }
    s.on_disconnect(on_disconnect::<A>);
    Ok(())
}

/// Runs once the socket is connected: completes the authentication, or starts the clock for
/// `authenticate`.
pub async fn on_connect<A: Adapter>(s: SocketRef<A>, State(state): State<AppState>) {
    let connection = connection(&s);
    match connection.identity() {
        Some(identity) => establish(&s, &state, &connection, identity),
        None => {
            let socket = s.clone();
            let timeout = state.config.auth_timeout;
            let timer = tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if self::connection(&socket).identity().is_none() {
                    let _ = socket.emit(
                        "authError",
                        &json!({"code": "auth_timeout", "message": "no authenticate event in time"}),
                    );
                    let _ = socket.disconnect();
                }
            });
            connection.set_timer(timer.abort_handle());
        }
    }
    // Events wait for this, so they find the socket in its rooms and counted.
    connection.mark_connected();
}

/// An authenticated socket: rooms, presence, the welcome events and the token refresh clock.
/// Runs once per socket, whichever comes first of the connect handler and `authenticate`, and
/// not at all once the socket has disconnected.
fn establish<A: Adapter>(
    s: &SocketRef<A>,
    state: &AppState,
    connection: &Connection,
    identity: Identity,
) {
    let established = {
        let mut life = connection.life();
        let pending = *life == Life::Pending;
        if pending {
            s.join([
                user_room(identity.user.id),
                session_room(identity.session_id),
                AUTHENTICATED_ROOM.to_owned(),
            ]);
            state.realtime.presence().connect(
                identity.user.id,
                identity.session_id,
                &identity.user.name,
            );
            *life = Life::Established {
                user_id: identity.user.id,
                session_id: identity.session_id,
            };
        }
        pending
    };
    // Presence counts the socket now (or it is gone): the place held for it is not needed.
    connection.release();
    if !established {
        return;
    }
    tracing::debug!(category = "socket", user_id = %identity.user.id, socket = %s.id, "🔌 socket authenticated");
    emit_if_carried(s, "authenticated", &authenticated_payload(&identity));
    emit_if_carried(s, "getOnlineUsers", &events::online_users_payload(state));
    schedule_token_refresh(s, state, connection, identity.expires_at);
}

/// Emits to this socket if its namespace carries the event's topic.
fn emit_if_carried<A: Adapter>(s: &SocketRef<A>, event: &str, data: &Value) {
    if carries(s.ns(), event) {
        let _ = s.emit(event, data);
    }
}

/// A session got a new token (an admin changed the user): pushes `tokenUpdated` to the session's
/// sockets and makes their identity and refresh clock follow it.
pub async fn push_session_token(state: &AppState, user: &User, session_id: uuid::Uuid) {
    let issued = state.tokens.issue(user, session_id);
    let payload = json!({"token": issued.token, "expiresAt": issued.expires_at, "user": user});
    state
        .realtime
        .emit_to_session(session_id, "tokenUpdated", &payload)
        .await;
    // This node's sockets of the session follow the new token at once; other nodes' sockets
    // read the account again when their own refresh comes.
    on_servers!(state.realtime, |servers| {
        for socket in servers.local_sockets_in(&session_room(session_id)) {
            follow_token(&socket, state, user, session_id, issued.expires_at);
        }
    });
}

fn follow_token<A: Adapter>(
    socket: &SocketRef<A>,
    state: &AppState,
    user: &User,
    session_id: uuid::Uuid,
    expires_at: Timestamp,
) {
    let connection = connection(socket);
    connection.set_identity(Identity {
        user: user.clone(),
        session_id,
        expires_at,
    });
    schedule_token_refresh(socket, state, &connection, expires_at);
}

fn authenticated_payload(identity: &Identity) -> Value {
    json!({
        "user": identity.user,
        "sessionId": identity.session_id,
        "expiresAt": identity.expires_at,
    })
}

async fn on_authenticate<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    state.metrics.event_in("authenticate");
    let connection = connection(&s);
    connection.connected().await;
    let token = data
        .ok()
        .and_then(|d| d.get("token").and_then(Value::as_str).map(str::to_owned));
    let Some(token) = token else {
        let error =
            json!({"code": "invalid_payload", "message": "send {token: \"<access token>\"}"});
        let _ = ack.send(&json!({"ok": false, "error": error}));
        return;
    };
    let identity = match identify(&state, &token).await {
        Ok(identity) => identity,
        Err(err) => return refuse_authentication(&s, ack, Refusal::from(err)),
    };
    match connection.identity() {
        None => {
            // A socket signing in here counts against the per-user limit as a handshake does.
            let Some(reservation) = Reservation::take(&state, identity.user.id) else {
                return refuse_authentication(&s, ack, Refusal("too_many_connections"));
            };
            connection.hold(reservation);
            connection.set_identity(identity.clone());
            establish(&s, &state, &connection, identity.clone());
        }
        Some(current) if current.user.id != identity.user.id => {
            let _ = ack.send(&json!({"ok": false, "error": {
                "code": "forbidden",
                "message": "a socket cannot switch to another user; reconnect instead",
            }}));
            return;
        }
        Some(current) => {
            // The same user with a fresh token, possibly of another session.
            if current.session_id != identity.session_id {
                s.leave(session_room(current.session_id));
                s.join(session_room(identity.session_id));
                let mut life = connection.life();
                if let Life::Established {
                    user_id,
                    session_id,
                } = *life
                {
                    let presence = state.realtime.presence();
                    presence.disconnect(user_id, session_id);
                    presence.connect(user_id, identity.session_id, &identity.user.name);
                    *life = Life::Established {
                        user_id,
                        session_id: identity.session_id,
                    };
                }
            }
            connection.set_identity(identity.clone());
            let _ = s.emit("authenticated", &authenticated_payload(&identity));
            schedule_token_refresh(&s, &state, &connection, identity.expires_at);
        }
    }
    let _ = ack.send(&json!({"ok": true, "user": identity.user, "sessionId": identity.session_id}));
}

/// A failed `authenticate`: the error in the ack and in `authError`, then the disconnect.
fn refuse_authentication<A: Adapter>(s: &SocketRef<A>, ack: AckSender<A>, refusal: Refusal) {
    let code = refusal.0;
    let message = match code {
        "server_error" => "authentication failed on the server".to_owned(),
        "too_many_connections" => "this user has too many connections open".to_owned(),
        _ => refusal_message(code),
    };
    let error = json!({"code": code, "message": message});
    let _ = ack.send(&json!({"ok": false, "error": error}));
    let _ = s.emit("authError", &error);
    let _ = s.clone().disconnect();
}

fn refusal_message(code: &str) -> String {
    let error = match code {
        "token_expired" => TokenError::Expired,
        "session_revoked" => TokenError::SessionRevoked,
        "account_disabled" => TokenError::AccountDisabled,
        _ => TokenError::Invalid,
    };
    error.to_string()
}

async fn on_disconnect<A: Adapter>(
    s: SocketRef<A>,
    State(state): State<AppState>,
    reason: DisconnectReason,
) {
    let connection = connection(&s);
    connection.mark_connected();
    let life = std::mem::replace(&mut *connection.life(), Life::Closed);
    connection.cancel_timer();
    connection.uncount();
    connection.release();
    if let Life::Established {
        user_id,
        session_id,
    } = life
    {
        state.realtime.presence().disconnect(user_id, session_id);
        tracing::debug!(category = "socket", %user_id, socket = %s.id, ?reason, "🔌 socket disconnected");
    }
}

/// How long before expiry a socket gets its new token: a fifth of the lifetime, at most a minute.
fn refresh_lead(ttl: Duration) -> Duration {
    (ttl / 5).min(Duration::from_secs(60))
}

/// Before the socket's token expires, mints a new one for its session and pushes `tokenUpdated`;
/// if the session has ended meanwhile, sends `force_logout` and disconnects.
fn schedule_token_refresh<A: Adapter>(
    s: &SocketRef<A>,
    state: &AppState,
    connection: &Connection,
    expires_at: Timestamp,
) {
    let lead = refresh_lead(state.config.jwt_ttl);
    let wait_ms = expires_at.as_millis() - Timestamp::now().as_millis() - lead.as_millis() as i64;
    refresh_token_in(
        s,
        state,
        connection,
        Duration::from_millis(wait_ms.max(0) as u64),
    );
}

fn refresh_token_in<A: Adapter>(
    s: &SocketRef<A>,
    state: &AppState,
    connection: &Connection,
    wait: Duration,
) {
    let (socket, state) = (s.clone(), state.clone());
    let timer = tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        refresh_socket_token(socket, state).await;
    });
    connection.set_timer(timer.abort_handle());
}

async fn refresh_socket_token<A: Adapter>(s: SocketRef<A>, state: AppState) {
    let connection = connection(&s);
    let Some(identity) = connection.identity() else {
        return;
    };
    let found = state
        .store
        .find_user_and_session(identity.user.id, identity.session_id)
        .await;
    let (user, session) = match found {
        Ok(found) => found.map_or((None, None), |(user, session)| (Some(user), session)),
        Err(e) => {
            tracing::error!(category = "error", error = %e, "❌ token refresh: database unavailable; retrying");
            refresh_token_in(&s, &state, &connection, Duration::from_secs(5));
            return;
        }
    };
    let now = Timestamp::now();
    let live = session.is_some_and(|s| s.is_live(now));
    match user.filter(|u| live && u.is_active) {
        Some(user) => {
            let issued = state.tokens.issue(&user, identity.session_id);
            emit_if_carried(
                &s,
                "tokenUpdated",
                &json!({"token": issued.token, "expiresAt": issued.expires_at, "user": user}),
            );
            connection.set_identity(Identity {
                user,
                session_id: identity.session_id,
                expires_at: issued.expires_at,
            });
            schedule_token_refresh(&s, &state, &connection, issued.expires_at);
        }
        None => {
            let _ = s.emit("force_logout", &json!({"reason": "session_revoked"}));
            let _ = s.disconnect();
        }
    }
}
