//! The `calls` table and `call_parties` (SPEC §14): each call, its state and its two devices,
//! and who is in a call right now (one row per user, so two calls never take the same user).

use uuid::Uuid;

use super::database::{Store, StoreError, on_pool};
use crate::timestamp::Timestamp;

/// A call as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CallRow {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub caller_id: Uuid,
    pub callee_id: Uuid,
    pub media: String,
    pub state: String,
    pub created_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<String>,
    pub caller_session: Uuid,
    pub caller_socket: String,
    pub caller_node: String,
    pub caller_gone_at: Option<Timestamp>,
    pub callee_session: Option<Uuid>,
    pub callee_socket: Option<String>,
    pub callee_node: Option<String>,
    pub callee_gone_at: Option<Timestamp>,
    /// JSON: the caller's candidates trickled before the accept.
    pub early_candidates: String,
}

/// The device of a call: which session and socket, on which node.
#[derive(Clone, Debug)]
pub struct CallDevice {
    pub session_id: Uuid,
    pub socket: String,
    pub node: String,
}

/// A call to store.
pub struct NewCall<'a> {
    pub conversation_id: Uuid,
    pub caller_id: Uuid,
    pub callee_id: Uuid,
    pub media: &'a str,
    pub caller: &'a CallDevice,
}

/// What starting a call came to.
pub enum Started {
    Ringing(CallRow),
    /// One of the two is in another call.
    Busy,
    /// The callee is calling the caller already, and that call still rings: it is the one.
    Glare(CallRow),
}

/// `SELECT <every column> FROM calls` and the rest of the statement, as a literal.
macro_rules! select_calls {
    ($rest:literal) => {
        concat!(
            "SELECT id, conversation_id, caller_id, callee_id, media, state, created_at, answered_at, ended_at, end_reason, caller_session, caller_socket, caller_node, caller_gone_at, callee_session, callee_socket, callee_node, callee_gone_at, early_candidates FROM calls ",
            $rest
        )
    };
}

/// `… RETURNING <every column>`, as a literal.
macro_rules! returning_calls {
    ($statement:literal) => {
        concat!(
            $statement,
            " RETURNING id, conversation_id, caller_id, callee_id, media, state, created_at, answered_at, ended_at, end_reason, caller_session, caller_socket, caller_node, caller_gone_at, callee_session, callee_socket, callee_node, callee_gone_at, early_candidates"
        )
    };
}

impl Store {
    /// Stores a ringing call and takes both users for it, unless either is in a call already
    /// (then nothing is stored). Two starts at once on any nodes cannot both take one user.
    #[tracing::instrument(skip_all)]
    pub async fn start_call(&self, new: &NewCall<'_>) -> Result<Started, StoreError> {
        // Twice at most: a start that lost a race to the parties' key looks again at who won.
        for _ in 0..2 {
            let taken: Vec<(Uuid, Uuid)> = on_pool!(self, pool => sqlx::query_as(
                "SELECT user_id, call_id FROM call_parties WHERE user_id = $1 OR user_id = $2",
            )
            .bind(new.caller_id)
            .bind(new.callee_id)
            .fetch_all(pool)
            .await)?;
            if !taken.is_empty() {
                let calls: Vec<Uuid> = taken.iter().map(|(_, call)| *call).collect();
                if let [first, rest @ ..] = calls.as_slice()
                    && rest.iter().all(|c| c == first)
                    && taken.len() == 2
                    && let Some(existing) = self.find_call(*first).await?
                    && existing.state == "ringing"
                    && existing.caller_id == new.callee_id
                    && existing.callee_id == new.caller_id
                {
                    return Ok(Started::Glare(existing));
                }
                return Ok(Started::Busy);
            }
            let now = Timestamp::now();
            let id = Uuid::now_v7();
            let inserted = on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let parties = sqlx::query(
                    "INSERT INTO calls (id, conversation_id, caller_id, callee_id, media, state,
                         created_at, caller_session, caller_socket, caller_node)
                     VALUES ($1, $2, $3, $4, $5, 'ringing', $6, $7, $8, $9)",
                )
                .bind(id)
                .bind(new.conversation_id)
                .bind(new.caller_id)
                .bind(new.callee_id)
                .bind(new.media)
                .bind(now)
                .bind(new.caller.session_id)
                .bind(&new.caller.socket)
                .bind(&new.caller.node)
                .execute(&mut *tx)
                .await
                .map(drop);
                let parties = match parties {
                    Ok(()) => sqlx::query(
                        "INSERT INTO call_parties (user_id, call_id) VALUES ($1, $3), ($2, $3)",
                    )
                    .bind(new.caller_id)
                    .bind(new.callee_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map(drop),
                    Err(e) => Err(e),
                };
                match parties {
                    Ok(()) => {
                        tx.commit().await?;
                        true
                    }
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => false,
                    Err(e) => return Err(e.into()),
                }
            });
            if inserted {
                let call = self.find_call(id).await?.expect("the call was just stored");
                return Ok(Started::Ringing(call));
            }
        }
        Ok(Started::Busy)
    }

    #[tracing::instrument(skip_all)]
    pub async fn find_call(&self, id: Uuid) -> Result<Option<CallRow>, StoreError> {
        let call = on_pool!(self, pool => sqlx::query_as::<_, CallRow>(select_calls!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(call)
    }

    /// The first accept of a ringing call wins: the callee's device joins it. `None` when the
    /// call no longer rings (or never did).
    #[tracing::instrument(skip_all)]
    pub async fn accept_call(
        &self,
        id: Uuid,
        device: &CallDevice,
    ) -> Result<Option<CallRow>, StoreError> {
        let call = on_pool!(self, pool => sqlx::query_as::<_, CallRow>(returning_calls!(
            "UPDATE calls SET state = 'active', answered_at = $2, callee_session = $3,
                 callee_socket = $4, callee_node = $5
             WHERE id = $1 AND state = 'ringing'"
        ))
        .bind(id)
        .bind(Timestamp::now())
        .bind(device.session_id)
        .bind(&device.socket)
        .bind(&device.node)
        .fetch_optional(pool)
        .await)?;
        Ok(call)
    }

    /// Ends a call that has not ended, freeing both users; `None` when it had ended already.
    #[tracing::instrument(skip_all)]
    pub async fn end_call(&self, id: Uuid, reason: &str) -> Result<Option<CallRow>, StoreError> {
        let call = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let call = sqlx::query_as::<_, CallRow>(returning_calls!(
                "UPDATE calls SET state = 'ended', ended_at = $2, end_reason = $3
                 WHERE id = $1 AND state <> 'ended'"
            ))
            .bind(id)
            .bind(Timestamp::now())
            .bind(reason)
            .fetch_optional(&mut *tx)
            .await?;
            if call.is_some() {
                sqlx::query("DELETE FROM call_parties WHERE call_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            call
        });
        Ok(call)
    }

    /// Keeps the caller's candidates of a ringing call for the callee's device, up to `max` in
    /// all; false when that would pass `max` (nothing kept).
    #[tracing::instrument(skip_all)]
    pub async fn keep_early_candidates(
        &self,
        id: Uuid,
        candidates: &[serde_json::Value],
        max: usize,
    ) -> Result<bool, StoreError> {
        let kept = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Written first, so that SQLite takes its write lock before reading.
            sqlx::query("UPDATE calls SET early_candidates = early_candidates WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let held: Option<String> = sqlx::query_scalar(
                "SELECT early_candidates FROM calls WHERE id = $1 AND state = 'ringing'",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(held) = held else {
                return Ok(false);
            };
            let mut all: Vec<serde_json::Value> = serde_json::from_str(&held).unwrap_or_default();
            if all.len() + candidates.len() > max {
                return Ok(false);
            }
            all.extend_from_slice(candidates);
            sqlx::query("UPDATE calls SET early_candidates = $2 WHERE id = $1")
                .bind(id)
                .bind(serde_json::Value::Array(all).to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            true
        });
        Ok(kept)
    }

    /// Calls that have not ended, oldest first (the sweeper's view; there are few).
    #[tracing::instrument(skip_all)]
    pub async fn live_calls(&self) -> Result<Vec<CallRow>, StoreError> {
        let calls = on_pool!(self, pool => sqlx::query_as::<_, CallRow>(
            select_calls!("WHERE state <> 'ended' ORDER BY id")
        )
        .fetch_all(pool)
        .await)?;
        Ok(calls)
    }

    /// A call's device went (its socket disconnected, or its node is gone): when it went.
    /// Answers whether it was the live device of that side.
    #[tracing::instrument(skip_all)]
    pub async fn call_device_gone(
        &self,
        id: Uuid,
        socket: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let changed = on_pool!(self, pool => sqlx::query(
            "UPDATE calls SET
                 caller_gone_at = CASE WHEN caller_socket = $2 AND caller_gone_at IS NULL THEN $3 ELSE caller_gone_at END,
                 callee_gone_at = CASE WHEN callee_socket = $2 AND callee_gone_at IS NULL THEN $3 ELSE callee_gone_at END
             WHERE id = $1 AND state <> 'ended' AND (caller_socket = $2 OR callee_socket = $2)",
        )
        .bind(id)
        .bind(socket)
        .bind(at)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(changed == 1)
    }

    /// A device that went comes back as `device` (a new socket of the same session): the call
    /// goes on with it. Answers the calls it came back to.
    #[tracing::instrument(skip_all)]
    pub async fn call_device_back(&self, device: &CallDevice) -> Result<Vec<CallRow>, StoreError> {
        // Read first: every socket's authentication asks, and almost never is the answer yes.
        let waiting: i64 = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM calls WHERE state <> 'ended'
               AND ((caller_session = $1 AND caller_gone_at IS NOT NULL)
                 OR (callee_session = $1 AND callee_gone_at IS NOT NULL))",
        )
        .bind(device.session_id)
        .fetch_one(pool)
        .await)?;
        if waiting == 0 {
            return Ok(Vec::new());
        }
        let calls = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut calls = sqlx::query_as::<_, CallRow>(returning_calls!(
                "UPDATE calls SET caller_socket = $2, caller_node = $3, caller_gone_at = NULL
                 WHERE state <> 'ended' AND caller_session = $1 AND caller_gone_at IS NOT NULL"
            ))
            .bind(device.session_id)
            .bind(&device.socket)
            .bind(&device.node)
            .fetch_all(&mut *tx)
            .await?;
            calls.extend(
                sqlx::query_as::<_, CallRow>(returning_calls!(
                    "UPDATE calls SET callee_socket = $2, callee_node = $3, callee_gone_at = NULL
                     WHERE state <> 'ended' AND callee_session = $1 AND callee_gone_at IS NOT NULL"
                ))
                .bind(device.session_id)
                .bind(&device.socket)
                .bind(&device.node)
                .fetch_all(&mut *tx)
                .await?,
            );
            tx.commit().await?;
            calls
        });
        Ok(calls)
    }
}
