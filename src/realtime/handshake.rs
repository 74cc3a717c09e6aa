//! Connecting and authenticating sockets: the handshake middleware (origin, limits, token from
//! `auth.token` or the cookie), the unauthenticated state with `authenticate` and its timeout,
//! rooms, the place under the per-user limit, presence (counting, scope, the welcome list), and
//! the token pushed before the old one expires.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum_extra::extract::cookie::CookieJar;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;

use super::connection::{Connection, Counted, Identity, Life, Reservation, connection};
use super::watch::Scope;
use super::{
    AUTHENTICATED_ROOM, PARTNERS_MAX, WATCH_ALL_ROOM, carries, events, group_room, session_room,
    user_room,
};
use crate::auth::TokenError;
use crate::auth::access::{AccessError, check_access};
use crate::auth::cookies::ACCESS_COOKIE;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::timestamp::Timestamp;

/// A refused handshake; its text is the `connect_error` message the client sees.
#[derive(Debug)]
pub struct Refusal(ErrorCode);

impl Refusal {
    /// The refusal as `authenticate` answers it, with a message.
    fn error(&self) -> ApiError {
        let message = match self.0 {
            ErrorCode::ServerError => "authentication failed on the server".to_owned(),
            ErrorCode::TooManyConnections => "this user has too many connections open".to_owned(),
            ErrorCode::TokenExpired => TokenError::Expired.to_string(),
            ErrorCode::SessionRevoked => TokenError::SessionRevoked.to_string(),
            ErrorCode::AccountDisabled => TokenError::AccountDisabled.to_string(),
            _ => TokenError::Invalid.to_string(),
        };
        ApiError::unauthorized(self.0, message)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl From<AccessError> for Refusal {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::Refused(e) => Self(e.code()),
            AccessError::Store(e) => {
                tracing::error!(category = "error", error = %e, "❌ socket authentication failed");
                Self(ErrorCode::ServerError)
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
            return Err(Refusal(ErrorCode::OriginNotAllowed));
        }
    }
    let counted = Counted::take(&state.realtime, state.config.max_connections)
        .ok_or(Refusal(ErrorCode::TooManyConnections))?;
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
        let reservation = reserve(&state, identity.user.id)
            .await
            .ok_or(Refusal(ErrorCode::TooManyConnections))?;
        connection.hold(reservation);
        prepare(&state, &s, &connection, identity.user.id).await?;
        connection.set_identity(identity);
    } else if s.ns() != "/" {
        // Only the main server has an unauthenticated state.
        return Err(Refusal(ErrorCode::InvalidToken));
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
                    let error = ApiError::unauthorized(
                        ErrorCode::AuthTimeout,
                        "no authenticate event in time",
                    );
                    let _ = socket.emit("authError", &error.detail());
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
    let mut groups = Vec::new();
    let mut watching = None;
    let established = {
        let mut life = connection.life();
        let pending = *life == Life::Pending;
        if pending {
            s.join([
                user_room(identity.user.id),
                session_room(identity.session_id),
                AUTHENTICATED_ROOM.to_owned(),
            ]);
            groups = connection.take_groups();
            s.join(groups.iter().map(|id| group_room(*id)).collect::<Vec<_>>());
            if let Some((scope, partners)) = connection.take_watch() {
                if scope == Scope::All {
                    s.join(WATCH_ALL_ROOM);
                }
                state
                    .realtime
                    .start_watching(s.id, identity.user.id, scope, partners);
                watching = Some(scope);
            }
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
    if !established {
        return;
    }
    tracing::debug!(category = "socket", user_id = %identity.user.id, socket = %s.id, "🔌 socket authenticated");
    if carries(s.ns(), "newMessage") {
        let (socket, state) = (s.clone(), state.clone());
        tokio::spawn(follow_groups(socket, state, identity.user.id, groups));
    }
    if carries(s.ns(), "incomingCall") {
        crate::calls::socket_back(state, identity.session_id, s.id);
    }
    emit_if_carried(s, "authenticated", &authenticated_payload(&identity));
    if let Some(scope) = watching {
        state.realtime.welcome(s.id, scope, |event, data| {
            let _ = s.emit(event, data);
        });
    }
    schedule_token_refresh(s, state, connection, identity.expires_at);
}

/// What an authenticating socket of `user_id` needs read before it is established: the groups
/// whose rooms it joins, and its presence scope with the user's partners when they must be read
/// for it (nothing on a namespace that carries neither messages nor presence).
async fn prepare<A: Adapter>(
    state: &AppState,
    s: &SocketRef<A>,
    connection: &Connection,
    user_id: uuid::Uuid,
) -> Result<(), Refusal> {
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(category = "error", error = %e, "❌ a socket's groups or partners could not be read");
        Refusal(ErrorCode::ServerError)
    };
    let messages = carries(s.ns(), "newMessage");
    let watch = carries(s.ns(), "presenceChanged").then(|| {
        state
            .realtime
            .scope_for(user_id, state.config.presence_broadcast_max)
    });
    let (groups, partners) = match watch {
        // One read for both when the partners must be read.
        Some((_, true)) => state
            .store
            .groups_and_partners(user_id, PARTNERS_MAX)
            .await
            .map_err(unavailable)?,
        _ if messages => (
            state
                .store
                .group_ids_of(user_id)
                .await
                .map_err(unavailable)?,
            Vec::new(),
        ),
        _ => (Vec::new(), Vec::new()),
    };
    if messages {
        connection.set_groups(groups);
    }
    if let Some((scope, _)) = watch {
        connection.set_watch(scope, partners);
    }
    Ok(())
}

/// Looks at the user's groups once more after the socket joined its rooms: a group the user
/// joined or left between the first look and the joins was told to the user's room, which the
/// socket may not have been in yet.
/// Only the groups of the first look are left here: a room the socket joined since was joined
/// by a later change, which this look may predate.
async fn follow_groups<A: Adapter>(
    s: SocketRef<A>,
    state: AppState,
    user_id: uuid::Uuid,
    first: Vec<uuid::Uuid>,
) {
    let Ok(now) = state.store.group_ids_of(user_id).await else {
        return;
    };
    let gone: Vec<String> = first
        .iter()
        .filter(|id| !now.contains(id))
        .map(|id| group_room(*id))
        .collect();
    let new: Vec<String> = now
        .iter()
        .filter(|id| !first.contains(id))
        .map(|id| group_room(*id))
        .collect();
    if !gone.is_empty() {
        s.leave(gone);
    }
    if !new.is_empty() {
        s.join(new);
    }
}

/// Emits to this socket if its namespace carries the event's topic.
fn emit_if_carried<A: Adapter>(s: &SocketRef<A>, event: &str, data: &Value) {
    if carries(s.ns(), event) {
        let _ = s.emit(event, data);
    }
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
        let error = ApiError::bad_request(
            ErrorCode::InvalidPayload,
            "send {token: \"<access token>\"}",
        );
        let _ = ack.send(&error.ack());
        return;
    };
    let identity = match identify(&state, &token).await {
        Ok(identity) => identity,
        Err(err) => return refuse_authentication(&s, ack, Refusal::from(err)),
    };
    match connection.identity() {
        None => {
            if let Err(refusal) = sign_in(&s, &state, &connection, identity.clone()).await {
                return refuse_authentication(&s, ack, refusal);
            }
        }
        Some(current) if current.user.id != identity.user.id => {
            let error = ApiError::forbidden(
                ErrorCode::Forbidden,
                "a socket cannot switch to another user; reconnect instead",
            );
            let _ = ack.send(&error.ack());
            return;
        }
        Some(current) => take_new_token(&s, &state, &connection, &current, identity.clone()),
    }
    let _ = ack.send(&json!({"ok": true, "user": identity.user, "sessionId": identity.session_id}));
}

/// An anonymous socket signs in: it takes a place under the per-user limit and reads what it
/// needs as a handshake does, then is established.
async fn sign_in<A: Adapter>(
    s: &SocketRef<A>,
    state: &AppState,
    connection: &Connection,
    identity: Identity,
) -> Result<(), Refusal> {
    let reservation = reserve(state, identity.user.id)
        .await
        .ok_or(Refusal(ErrorCode::TooManyConnections))?;
    connection.hold(reservation);
    prepare(state, s, connection, identity.user.id).await?;
    connection.set_identity(identity.clone());
    establish(s, state, connection, identity);
    Ok(())
}

/// A signed-in socket presents a fresh token of its user, possibly of another session: it moves
/// to that session's room and presence count, and its refresh clock follows the new token.
fn take_new_token<A: Adapter>(
    s: &SocketRef<A>,
    state: &AppState,
    connection: &Connection,
    current: &Identity,
    identity: Identity,
) {
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
    schedule_token_refresh(s, state, connection, identity.expires_at);
}

/// A failed `authenticate`: the error in the ack and in `authError`, then the disconnect.
fn refuse_authentication<A: Adapter>(s: &SocketRef<A>, ack: AckSender<A>, refusal: Refusal) {
    let error = refusal.error();
    let _ = ack.send(&error.ack());
    let _ = s.emit("authError", &error.detail());
    let _ = s.clone().disconnect();
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
        state.realtime.stop_watching(s.id);
        crate::calls::socket_gone(&state, s.id);
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
    refresh_token_in(s, state, connection, refresh_due(state, expires_at));
}

/// How long from now until a token that expires at `expires_at` is refreshed.
fn refresh_due(state: &AppState, expires_at: Timestamp) -> Duration {
    let lead = refresh_lead(state.config.jwt_ttl);
    let wait_ms = expires_at.as_millis() - Timestamp::now().as_millis() - lead.as_millis() as i64;
    Duration::from_millis(wait_ms.max(0) as u64)
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
    // A token pushed meanwhile (`Realtime::push_session_token`) moved the expiry: wait for it.
    let due = refresh_due(&state, identity.expires_at);
    if due > Duration::from_secs(1) {
        refresh_token_in(&s, &state, &connection, due);
        return;
    }
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

/// A place for one more socket of `user_id` under `MAX_CONNECTIONS_PER_USER`, across the cluster.
async fn reserve(state: &AppState, user_id: uuid::Uuid) -> Option<Reservation> {
    Reservation::take(
        &state.realtime,
        user_id,
        state.config.max_connections_per_user,
    )
    .await
}
