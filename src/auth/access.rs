//! The check every authenticated request and socket goes through: a verified token's session is
//! live, its account active, and its rights current.

use std::time::Duration;

use super::token::{Claims, TokenError};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Session, StoreError, User};
use crate::timestamp::Timestamp;

/// A session's `lastSeenAt` is written at most this often, not on every request.
const LAST_SEEN_GRANULARITY: Duration = Duration::from_secs(60);

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
