//! The `sessions` and `refresh_tokens` tables: one login on one device, and the rotating secret
//! that keeps it alive.

use serde::Serialize;
use uuid::Uuid;

use super::database::{Store, StoreError, on_pool};
use super::users::User;
use crate::timestamp::Timestamp;

/// One login on one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl Session {
    /// Not revoked and not expired at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// A row of [`Store::find_user_and_session`]: the session's columns are NULL without a match.
#[derive(sqlx::FromRow)]
struct UserAndSession {
    #[sqlx(flatten)]
    user: User,
    session_id: Option<Uuid>,
    user_agent: Option<String>,
    ip: Option<String>,
    session_created_at: Option<Timestamp>,
    last_seen_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
}

impl UserAndSession {
    fn split(self) -> (User, Option<Session>) {
        let session = match (
            self.session_id,
            self.session_created_at,
            self.last_seen_at,
            self.expires_at,
        ) {
            (Some(id), Some(created_at), Some(last_seen_at), Some(expires_at)) => Some(Session {
                id,
                user_id: self.user.id,
                user_agent: self.user_agent,
                ip: self.ip,
                created_at,
                last_seen_at,
                expires_at,
                revoked_at: self.revoked_at,
            }),
            _ => None,
        };
        (self.user, session)
    }
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// The token was current: it is now replaced by the new one and the session extended.
    Rotated(Session),
    /// The token had already been rotated: this session is now ended (theft detection).
    Reused(Uuid),
    /// No such token, or its session has ended.
    Invalid,
}

/// A new session and the hash of its first refresh token.
pub struct NewSession<'a> {
    pub user_id: Uuid,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub expires_at: Timestamp,
    pub refresh_hash: &'a [u8],
}

impl Store {
    /// Creates a session with its first refresh token.
    #[tracing::instrument(skip_all)]
    pub async fn create_session(&self, new: &NewSession<'_>) -> Result<Session, StoreError> {
        let now = Timestamp::now();
        let session = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let session = sqlx::query_as::<_, Session>(
                "INSERT INTO sessions (id, user_id, user_agent, ip, created_at, last_seen_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $5, $6)
                 RETURNING id, user_id, user_agent, ip, created_at, last_seen_at, expires_at, revoked_at",
            )
            .bind(Uuid::now_v7())
            .bind(new.user_id)
            .bind(new.user_agent)
            .bind(new.ip)
            .bind(now)
            .bind(new.expires_at)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)")
                .bind(new.refresh_hash)
                .bind(session.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            session
        });
        Ok(session)
    }

    #[tracing::instrument(skip_all)]
    pub async fn find_session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        let session = on_pool!(self, pool => sqlx::query_as::<_, Session>(
            "SELECT id, user_id, user_agent, ip, created_at, last_seen_at, expires_at, revoked_at
             FROM sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        Ok(session)
    }

    /// An account and one of its sessions, in one query: what every authenticated request and
    /// socket checks. `None` when there is no such account; the session is `None` when it does
    /// not exist or belongs to someone else.
    #[tracing::instrument(skip_all)]
    pub async fn find_user_and_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
    ) -> Result<Option<(User, Option<Session>)>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserAndSession>(
            "SELECT u.id, u.email, u.name, u.avatar_url, u.is_admin, u.is_active, u.created_at,
                    u.updated_at, s.id AS session_id, s.user_agent, s.ip,
                    s.created_at AS session_created_at, s.last_seen_at, s.expires_at, s.revoked_at
             FROM users u LEFT JOIN sessions s ON s.id = $2 AND s.user_id = u.id
             WHERE u.id = $1",
        )
        .bind(user_id)
        .bind(session_id)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(UserAndSession::split))
    }

    /// A user's live sessions, newest first.
    #[tracing::instrument(skip_all)]
    pub async fn live_sessions(&self, user_id: Uuid) -> Result<Vec<Session>, StoreError> {
        let sessions = on_pool!(self, pool => sqlx::query_as::<_, Session>(
            "SELECT id, user_id, user_agent, ip, created_at, last_seen_at, expires_at, revoked_at
             FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
             ORDER BY id DESC",
        )
        .bind(user_id)
        .bind(Timestamp::now())
        .fetch_all(pool)
        .await)?;
        Ok(sessions)
    }

    /// Records use of a live session and slides its expiry.
    #[tracing::instrument(skip_all)]
    pub async fn touch_session(
        &self,
        id: Uuid,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE sessions SET last_seen_at = $2, expires_at = $3 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// Ends one session (and its push subscriptions); false when it had already ended or does
    /// not exist.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_session(&self, id: Uuid, reason: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query(
            "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(Timestamp::now())
        .bind(reason)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        self.delete_session_subscriptions(&[id]).await?;
        Ok(done == 1)
    }

    /// Ends every live session of a user; answers the ids of those it ended.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        reason: &str,
    ) -> Result<Vec<Uuid>, StoreError> {
        let ids = on_pool!(self, pool => sqlx::query_scalar::<_, Uuid>(
            "UPDATE sessions SET revoked_at = $2, revoked_reason = $3
             WHERE user_id = $1 AND revoked_at IS NULL
             RETURNING id",
        )
        .bind(user_id)
        .bind(Timestamp::now())
        .bind(reason)
        .fetch_all(pool)
        .await)?;
        self.delete_session_subscriptions(&ids).await?;
        Ok(ids)
    }

    /// Exchanges a refresh token for a new one, detecting reuse of an already-rotated token.
    ///
    /// The write comes first so that two concurrent presentations of one token cannot both win,
    /// and so that SQLite takes its write lock at the start of the transaction.
    #[tracing::instrument(skip_all)]
    pub async fn rotate_refresh_token(
        &self,
        presented_hash: &[u8],
        new_hash: &[u8],
        session_ttl: std::time::Duration,
    ) -> Result<RefreshOutcome, StoreError> {
        let now = Timestamp::now();
        let outcome = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rotated = sqlx::query_scalar::<_, Uuid>(
                "UPDATE refresh_tokens SET rotated_at = $2
                 WHERE token_hash = $1 AND rotated_at IS NULL
                 RETURNING session_id",
            )
            .bind(presented_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let outcome = match rotated {
                None => {
                    let reused = sqlx::query_scalar::<_, Uuid>(
                        "SELECT session_id FROM refresh_tokens WHERE token_hash = $1",
                    )
                    .bind(presented_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match reused {
                        Some(session_id) => {
                            sqlx::query(
                                "UPDATE sessions SET revoked_at = $2, revoked_reason = 'refresh_token_reused'
                                 WHERE id = $1 AND revoked_at IS NULL",
                            )
                            .bind(session_id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                            RefreshOutcome::Reused(session_id)
                        }
                        None => RefreshOutcome::Invalid,
                    }
                }
                Some(session_id) => {
                    let session = sqlx::query_as::<_, Session>(
                        "UPDATE sessions SET last_seen_at = $2, expires_at = $3
                         WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2
                           AND EXISTS (SELECT 1 FROM users WHERE users.id = sessions.user_id AND users.is_active)
                         RETURNING id, user_id, user_agent, ip, created_at, last_seen_at, expires_at, revoked_at",
                    )
                    .bind(session_id)
                    .bind(now)
                    .bind(now.plus(session_ttl))
                    .fetch_optional(&mut *tx)
                    .await?;
                    match session {
                        Some(session) => {
                            sqlx::query(
                                "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
                            )
                            .bind(new_hash)
                            .bind(session.id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                            RefreshOutcome::Rotated(session)
                        }
                        None => RefreshOutcome::Invalid,
                    }
                }
            };
            tx.commit().await?;
            outcome
        });
        Ok(outcome)
    }
}
