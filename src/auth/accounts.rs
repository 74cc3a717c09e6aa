//! The account flows REST handlers call: register, login, refresh, logout, and ending a user's
//! sessions.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use uuid::Uuid;

use super::extract::{AuthUser, ClientInfo};
use super::{password, refresh};
use crate::domain::{Email, Name, Password};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use crate::store::{NewSession, NewUser, RefreshOutcome, Session, User};
use crate::timestamp::Timestamp;

/// Where the socket servers are, as login responses tell clients.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SocketInfo {
    pub url: String,
    pub path: &'static str,
    pub namespaces_path: &'static str,
}

/// The answer to register, login and (via `GET /api/auth/me`) OAuth sign-in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    pub token: String,
    pub expires_at: Timestamp,
    pub refresh_token: String,
    pub user: User,
    pub session: Session,
    pub socket_ready: bool,
    pub socket: SocketInfo,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshResponse {
    pub token: String,
    pub expires_at: Timestamp,
    pub refresh_token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogoutResponse {
    pub ok: bool,
    pub sessions_ended: usize,
    pub sockets_disconnected: usize,
}

/// Raw register input; every field is checked here so each error can name its field.
pub struct Registration {
    pub email: Option<String>,
    pub password: Option<String>,
    pub name: Option<String>,
}

pub async fn register(
    state: &AppState,
    input: Registration,
    client: &ClientInfo,
) -> ApiResult<LoginResponse> {
    if !state.config.allow_signup {
        return Err(ApiError::forbidden(
            ErrorCode::SignupDisabled,
            "public registration is closed on this server",
        ));
    }
    let mut fields = BTreeMap::new();
    let email = required(&mut fields, "email", input.email.as_deref(), Email::parse);
    let password = required(
        &mut fields,
        "password",
        input.password.as_deref(),
        Password::parse,
    );
    let name = required(&mut fields, "name", input.name.as_deref(), Name::parse);
    let (Some(email), Some(password), Some(name)) = (email, password, name) else {
        return Err(ApiError::validation(fields));
    };
    let hash = password::hash(password.expose().to_owned()).await?;
    let user = state
        .store
        .insert_user(&NewUser {
            email: email.as_str(),
            name: name.as_str(),
            password_hash: Some(&hash),
            is_admin: false,
            is_active: true,
        })
        .await?
        .ok_or_else(ApiError::email_taken)?;
    tracing::info!(category = "ok", user_id = %user.id, admin = user.is_admin, "✅ account registered");
    start_session(state, user, client).await
}

/// Parses a required field, recording what is wrong with it.
pub fn required<T>(
    fields: &mut BTreeMap<String, String>,
    name: &str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, &'static str>,
) -> Option<T> {
    let Some(value) = value else {
        fields.insert(name.to_owned(), "is required".to_owned());
        return None;
    };
    parse(value)
        .map_err(|message| fields.insert(name.to_owned(), message.to_owned()))
        .ok()
}

pub async fn login(
    state: &AppState,
    email: Option<String>,
    password: Option<String>,
    client: &ClientInfo,
) -> ApiResult<LoginResponse> {
    let mut fields = BTreeMap::new();
    let email = required(&mut fields, "email", email.as_deref(), |e| {
        Ok(e.trim().to_lowercase())
    });
    let password = required(&mut fields, "password", password.as_deref(), |p| {
        Ok(p.to_owned())
    });
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::validation(fields));
    };
    let ip = client.ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if let Some(wait) = state.login_limits.wait_time(ip, &email).await {
        state.metrics.auth_failure(ErrorCode::TooManyAttempts);
        return Err(ApiError::too_many(
            ErrorCode::TooManyAttempts,
            wait.as_secs_f64().ceil().max(1.0) as u64,
        ));
    }
    // An email that cannot exist is an unknown account (and must not reach the database as is).
    let found = match Email::parse(&email) {
        Ok(valid) => state.store.find_credentials(valid.as_str()).await?,
        Err(_) => None,
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, None),
    };
    let matches = password::verify(password, hash).await?;
    let Some(user) = user.filter(|_| matches) else {
        state.login_limits.record_failure(ip, &email).await;
        state.metrics.auth_failure(ErrorCode::InvalidCredentials);
        tracing::info!(category = "warn", "⚠️ login refused: invalid credentials");
        return Err(ApiError::unauthorized(
            ErrorCode::InvalidCredentials,
            "the email or the password is wrong",
        ));
    };
    if !user.is_active {
        return Err(ApiError::forbidden(
            ErrorCode::AccountDisabled,
            "this account has been disabled",
        ));
    }
    start_session(state, user, client).await
}

/// Opens a session for a signed-in user: its first refresh token and an access token.
pub async fn start_session(
    state: &AppState,
    user: User,
    client: &ClientInfo,
) -> ApiResult<LoginResponse> {
    let (refresh_token, refresh_hash) = refresh::generate();
    let ip = client.ip.map(|ip| ip.to_string());
    let session = state
        .store
        .create_session(&NewSession {
            user_id: user.id,
            user_agent: client.user_agent.as_deref(),
            ip: ip.as_deref(),
            expires_at: Timestamp::now().plus(state.config.session_ttl),
            refresh_hash: &refresh_hash,
        })
        .await?;
    let issued = state.tokens.issue(&user, session.id);
    tracing::info!(category = "ok", user_id = %user.id, session_id = %session.id, "✅ session started");
    Ok(LoginResponse {
        token: issued.token,
        expires_at: issued.expires_at,
        refresh_token,
        user,
        session,
        socket_ready: state.socket_ready(),
        socket: SocketInfo {
            url: state
                .config
                .base_url
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            path: "/api/socket",
            namespaces_path: "/api/socket-namespaces",
        },
    })
}

/// Exchanges a refresh token for a new access token and a new refresh token.
pub async fn refresh(state: &AppState, presented: &str) -> ApiResult<RefreshResponse> {
    let invalid = || {
        ApiError::unauthorized(
            ErrorCode::InvalidRefreshToken,
            "the refresh token is unknown, used or expired; sign in again",
        )
    };
    let (new_token, new_hash) = refresh::generate();
    let outcome = state
        .store
        .rotate_refresh_token(
            &refresh::hash(presented),
            &new_hash,
            state.config.session_ttl,
        )
        .await?;
    let session = match outcome {
        RefreshOutcome::Rotated(session) => session,
        RefreshOutcome::Reused(session_id) => {
            tracing::warn!(category = "warn", %session_id, "⚠️ a rotated refresh token was presented again: session ended");
            state
                .realtime
                .end_session(session_id, "session_revoked")
                .await;
            return Err(invalid());
        }
        RefreshOutcome::Invalid => return Err(invalid()),
    };
    let user = state
        .store
        .find_user(session.user_id)
        .await?
        .ok_or_else(invalid)?;
    let issued = state.tokens.issue(&user, session.id);
    Ok(RefreshResponse {
        token: issued.token,
        expires_at: issued.expires_at,
        refresh_token: new_token,
    })
}

/// Ends the caller's session, or every session of theirs with `all`.
pub async fn logout(state: &AppState, caller: &AuthUser, all: bool) -> ApiResult<LogoutResponse> {
    let (sessions, sockets) = if all {
        end_all_sessions(state, caller.user.id, "logout").await?
    } else if state
        .store
        .revoke_session(caller.session.id, "logout")
        .await?
    {
        (
            1,
            state
                .realtime
                .end_session(caller.session.id, "logout")
                .await,
        )
    } else {
        (0, 0)
    };
    tracing::info!(category = "socket", user_id = %caller.user.id, sessions, sockets, "🔌 logged out");
    Ok(LogoutResponse {
        ok: true,
        sessions_ended: sessions,
        sockets_disconnected: sockets,
    })
}

/// Ends every session of a user and disconnects their sockets with `force_logout {reason}`.
/// Answers how many sessions and sockets were ended.
pub async fn end_all_sessions(
    state: &AppState,
    user_id: Uuid,
    reason: &str,
) -> ApiResult<(usize, usize)> {
    let ended = state.store.revoke_user_sessions(user_id, reason).await?;
    let mut sockets = 0;
    for session_id in &ended {
        sockets += state.realtime.end_session(*session_id, reason).await;
    }
    Ok((ended.len(), sockets))
}
