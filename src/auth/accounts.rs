//! The account flows REST handlers call: register, login, refresh, logout, and the check every
//! authenticated request and socket goes through (`check_access`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use super::extract::{AuthUser, ClientInfo};
use super::token::{Claims, TokenError};
use super::{password, refresh};
use crate::app::AppState;
use crate::cluster::Cluster;
use crate::domain::{Email, Name, Password};
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::TokenBuckets;
use crate::store::{NewSession, NewUser, RefreshOutcome, Session, StoreError, User};
use crate::timestamp::Timestamp;

/// A session's `lastSeenAt` is written at most this often, not on every request.
const LAST_SEEN_GRANULARITY: Duration = Duration::from_secs(60);

/// Failed logins allowed per minute: 5 per (IP, email) pair, 50 per IP.
pub struct LoginLimits {
    per_pair: TokenBuckets<(IpAddr, String)>,
    per_ip: TokenBuckets<IpAddr>,
}

impl LoginLimits {
    /// The contract's limits; shared by every node in a cluster.
    pub fn new(cluster: Option<&Cluster>) -> Self {
        Self {
            per_pair: TokenBuckets::new(5, Duration::from_secs(60)).shared(cluster, "login-pair"),
            per_ip: TokenBuckets::new(50, Duration::from_secs(60)).shared(cluster, "login-ip"),
        }
    }

    async fn wait_time(&self, ip: IpAddr, email: &str) -> Option<Duration> {
        let pair = self.per_pair.wait_time(&(ip, email.to_owned())).await;
        let ip = self.per_ip.wait_time(&ip).await;
        pair.max(ip)
    }

    async fn record_failure(&self, ip: IpAddr, email: &str) {
        let _ = self.per_pair.take(&(ip, email.to_owned())).await;
        let _ = self.per_ip.take(&ip).await;
    }
}

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

/// Why an access check failed: the token was refused, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Refused(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AccessError> for ApiError {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::Refused(e) => ApiError::unauthorized(e.code(), e.to_string()),
            AccessError::Store(e) => e.into(),
        }
    }
}

/// Checks a verified token against the database: the session is live, the account active, and
/// the token's rights current. This is what makes revocation and admin changes take effect on
/// the next request. Slides the session's expiry, at most once a minute.
pub async fn check_access(
    state: &AppState,
    claims: &Claims,
) -> Result<(User, Session), AccessError> {
    let now = Timestamp::now();
    // The account first: a deactivated user's sessions are ended too, and the reason that
    // matters to the client is the account.
    let (user, session) = state
        .store
        .find_user_and_session(claims.sub, claims.sid)
        .await?
        .ok_or(TokenError::SessionRevoked)?;
    if !user.is_active {
        return Err(TokenError::AccountDisabled.into());
    }
    let session = session
        .filter(|s| s.is_live(now))
        .ok_or(TokenError::SessionRevoked)?;
    if !claims.matches(&user) {
        return Err(TokenError::Stale.into());
    }
    let mut session = session;
    if session.last_seen_at.plus(LAST_SEEN_GRANULARITY) <= now {
        let expires_at = now.plus(state.config.session_ttl);
        state
            .store
            .touch_session(session.id, now, expires_at)
            .await?;
        session.last_seen_at = now;
        session.expires_at = expires_at;
    }
    Ok((user, session))
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
            "signup_disabled",
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
        .ok_or_else(|| ApiError::conflict("email_taken", "an account with this email exists"))?;
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
        state.metrics.auth_failure("too_many_attempts");
        return Err(ApiError::too_many(
            "too_many_attempts",
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
        state.metrics.auth_failure("invalid_credentials");
        tracing::info!(category = "warn", "⚠️ login refused: invalid credentials");
        return Err(ApiError::unauthorized(
            "invalid_credentials",
            "the email or the password is wrong",
        ));
    };
    if !user.is_active {
        return Err(ApiError::forbidden(
            "account_disabled",
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
            "invalid_refresh_token",
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
        crate::users::end_all_sessions(state, caller.user.id, "logout").await?
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
