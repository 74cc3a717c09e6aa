//! Web Push (SPEC §13): the `push_subscriptions` of sessions, the `push_outbox` of pushes decided
//! and not yet sent, and the `server_settings` every node shares (the VAPID key, how far the
//! push decision has read the messages).

use uuid::Uuid;

use super::database::{Store, StoreError, on_pool};
use crate::timestamp::Timestamp;

/// One browser's push endpoint and the keys its payloads are encrypted for.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Subscription {
    pub id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub endpoint: String,
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The browser's 16-byte authentication secret, base64url.
    pub auth: String,
    pub created_at: Timestamp,
}

/// A push to store: what one subscription is sent about one event.
#[derive(Clone, Debug)]
pub struct NewPush {
    pub subscription_id: Uuid,
    pub event_id: Uuid,
    pub payload: String,
    pub topic: Option<String>,
    pub urgency: &'static str,
    pub ttl_secs: i64,
    pub due_at: Timestamp,
}

/// A push a sender claimed, with the subscription it goes to.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ClaimedPush {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub payload: String,
    pub topic: Option<String>,
    pub urgency: String,
    pub ttl_secs: i64,
    /// Counting this one.
    pub attempts: i32,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

/// A message old enough for the push decision, with one subscription of a member it may be
/// pushed to (not its sender, not muted, not read, not acknowledged as delivered).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PushCandidate {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub conversation_kind: String,
    pub title: Option<String>,
    pub sender_id: Uuid,
    /// "Someone" when the sender's account is gone.
    pub sender_name: String,
    pub content: String,
    pub mentions: String,
    pub user_id: Uuid,
    pub subscription_id: Uuid,
}

/// Pushes inserted per statement.
const BATCH: usize = 500;

/// Inserts pushes in batches within the transaction `tx` of database `Db`, leaving alone any
/// already stored for its event and subscription.
macro_rules! insert_pushes {
    ($tx:expr, $pushes:expr, $db:ty) => {
        for chunk in $pushes.chunks(BATCH) {
            let mut insert = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO push_outbox
                     (id, subscription_id, event_id, payload, topic, urgency, ttl_secs, due_at) ",
            );
            insert.push_values(chunk, |mut row, push| {
                row.push_bind(Uuid::now_v7())
                    .push_bind(push.subscription_id)
                    .push_bind(push.event_id)
                    .push_bind(push.payload.clone())
                    .push_bind(push.topic.clone())
                    .push_bind(push.urgency)
                    .push_bind(push.ttl_secs)
                    .push_bind(push.due_at);
            });
            insert.push(" ON CONFLICT (event_id, subscription_id) DO NOTHING");
            insert.build().execute(&mut *$tx).await?;
        }
    };
}

impl Store {
    /// A setting every node shares, or `None` when it was never set.
    #[tracing::instrument(skip_all)]
    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let value = on_pool!(self, pool => sqlx::query_scalar::<_, String>(
            "SELECT value FROM server_settings WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await)?;
        Ok(value)
    }

    /// Sets `name` to `value` unless it is set already, and answers the value it has now: of
    /// two nodes that start at once, both end up with the first one's.
    #[tracing::instrument(skip_all)]
    pub async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO server_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(self
            .setting(name)
            .await?
            .unwrap_or_else(|| value.to_owned()))
    }

    /// Stores a subscription for `session_id`. The endpoint is stored once: subscribing it again,
    /// from this session or another, replaces its keys and moves it to this session. Answers
    /// `None` when the session already has `limit` other subscriptions.
    #[tracing::instrument(skip_all)]
    pub async fn subscribe_push(
        &self,
        session_id: Uuid,
        user_id: Uuid,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        limit: i64,
    ) -> Result<Option<Subscription>, StoreError> {
        let stored = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Written first, so that SQLite takes its write lock at once and two subscriptions
            // of one session cannot both pass the limit.
            let moved = sqlx::query(
                "UPDATE push_subscriptions SET session_id = $2, user_id = $3, p256dh = $4, auth = $5
                 WHERE endpoint = $1",
            )
            .bind(endpoint)
            .bind(session_id)
            .bind(user_id)
            .bind(p256dh)
            .bind(auth)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                let held: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM push_subscriptions WHERE session_id = $1",
                )
                .bind(session_id)
                .fetch_one(&mut *tx)
                .await?;
                if held >= limit {
                    return Ok(None);
                }
                sqlx::query(
                    "INSERT INTO push_subscriptions
                         (id, session_id, user_id, endpoint, p256dh, auth, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (endpoint) DO UPDATE SET session_id = $2, user_id = $3,
                         p256dh = $5, auth = $6",
                )
                .bind(Uuid::now_v7())
                .bind(session_id)
                .bind(user_id)
                .bind(endpoint)
                .bind(p256dh)
                .bind(auth)
                .bind(Timestamp::now())
                .execute(&mut *tx)
                .await?;
            }
            let stored = sqlx::query_as::<_, Subscription>(
                "SELECT id, session_id, user_id, endpoint, p256dh, auth, created_at
                 FROM push_subscriptions WHERE endpoint = $1",
            )
            .bind(endpoint)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            stored
        });
        Ok(Some(stored))
    }

    /// Deletes `user_id`'s subscription of `endpoint`; false when they have none.
    #[tracing::instrument(skip_all)]
    pub async fn unsubscribe_push(
        &self,
        user_id: Uuid,
        endpoint: &str,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query(
            "DELETE FROM push_subscriptions WHERE endpoint = $1 AND user_id = $2",
        )
        .bind(endpoint)
        .bind(user_id)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(done == 1)
    }

    /// A user's subscriptions, oldest first.
    #[tracing::instrument(skip_all)]
    pub async fn push_subscriptions(&self, user_id: Uuid) -> Result<Vec<Subscription>, StoreError> {
        let list = on_pool!(self, pool => sqlx::query_as::<_, Subscription>(
            "SELECT id, session_id, user_id, endpoint, p256dh, auth, created_at
             FROM push_subscriptions WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await)?;
        Ok(list)
    }

    /// The subscriptions of live sessions of `user_ids` (all users' when `None`).
    #[tracing::instrument(skip_all)]
    pub async fn live_push_subscriptions(
        &self,
        user_ids: Option<&[Uuid]>,
    ) -> Result<Vec<Subscription>, StoreError> {
        let list = on_pool!(self, pool, Db => {
            let mut query = sqlx::QueryBuilder::<Db>::new(
                "SELECT s.id, s.session_id, s.user_id, s.endpoint, s.p256dh, s.auth, s.created_at
                 FROM push_subscriptions s JOIN sessions se ON se.id = s.session_id
                 WHERE se.revoked_at IS NULL AND se.expires_at > ",
            );
            query.push_bind(Timestamp::now());
            if let Some(ids) = user_ids {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                query.push(" AND s.user_id IN (");
                let mut list = query.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                query.push(")");
            }
            query.push(" ORDER BY s.id");
            query.build_query_as::<Subscription>().fetch_all(pool).await?
        });
        Ok(list)
    }

    /// Deletes a subscription the push service said is gone (404 or 410); its pushes go too.
    #[tracing::instrument(skip_all)]
    pub async fn delete_push_subscription(&self, id: Uuid) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// Stores pushes; one already stored for the same event and subscription is left alone.
    #[tracing::instrument(skip_all)]
    pub async fn queue_pushes(&self, pushes: &[NewPush]) -> Result<(), StoreError> {
        if pushes.is_empty() {
            return Ok(());
        }
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            insert_pushes!(tx, pushes, Db);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The push decision's step: when the mark `name` still reads `from`, moves it to `to` and
    /// stores `pushes` in the same transaction; false (and nothing stored) when another node
    /// moved it first.
    #[tracing::instrument(skip_all)]
    pub async fn advance_push_mark(
        &self,
        name: &str,
        from: &str,
        to: &str,
        pushes: &[NewPush],
    ) -> Result<bool, StoreError> {
        let moved = on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            let moved = sqlx::query(
                "UPDATE server_settings SET value = $3 WHERE name = $1 AND value = $2",
            )
            .bind(name)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if moved {
                insert_pushes!(tx, pushes, Db);
                tx.commit().await?;
            }
            moved
        });
        Ok(moved)
    }

    /// Ids of text messages after `after` and before `before`, oldest first, at most `limit`.
    #[tracing::instrument(skip_all)]
    pub async fn message_ids_between(
        &self,
        after: Uuid,
        before: Uuid,
        limit: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        let ids = on_pool!(self, pool => sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM messages WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(ids)
    }

    /// For the messages after `after` up to `up_to`: each subscription of a member who should
    /// hear of one by push (see [`PushCandidate`]), on a live session.
    #[tracing::instrument(skip_all)]
    pub async fn push_candidates(
        &self,
        after: Uuid,
        up_to: Uuid,
    ) -> Result<Vec<PushCandidate>, StoreError> {
        let list = on_pool!(self, pool => sqlx::query_as::<_, PushCandidate>(
            "SELECT m.id AS message_id, m.conversation_id, c.kind AS conversation_kind, c.title,
                    m.sender_id, COALESCE(u.name, 'Someone') AS sender_name, m.content,
                    m.mentions, cm.user_id, s.id AS subscription_id
             FROM messages m
             JOIN conversations c ON c.id = m.conversation_id
             LEFT JOIN users u ON u.id = m.sender_id
             JOIN conversation_members cm ON cm.conversation_id = m.conversation_id
             JOIN push_subscriptions s ON s.user_id = cm.user_id
             JOIN sessions se ON se.id = s.session_id
             WHERE m.id > $1 AND m.id <= $2 AND m.kind = 'text' AND m.deleted_at IS NULL
               AND cm.user_id <> m.sender_id AND NOT cm.muted AND cm.joined_at <= m.created_at
               AND (cm.last_read_message_id IS NULL OR cm.last_read_message_id < m.id)
               AND (c.kind <> 'direct' OR m.delivered_at IS NULL)
               AND se.revoked_at IS NULL AND se.expires_at > $3
             ORDER BY m.id, s.id",
        )
        .bind(after)
        .bind(up_to)
        .bind(Timestamp::now())
        .fetch_all(pool)
        .await)?;
        Ok(list)
    }

    /// Claims up to `limit` pushes that are due and not held by a sender, until `until`; each
    /// claim counts as an attempt. A push is claimed by one sender only, on any node: the claim
    /// is re-checked on the row itself. Pushes of ended sessions are dropped here.
    #[tracing::instrument(skip_all)]
    pub async fn claim_pushes(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: i64,
    ) -> Result<Vec<ClaimedPush>, StoreError> {
        // Read first: an idle outbox costs no write.
        let due: Option<Uuid> = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT id FROM push_outbox
             WHERE due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1) LIMIT 1",
        )
        .bind(now)
        .fetch_optional(pool)
        .await)?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let claimed = on_pool!(self, pool, Db => {
            sqlx::query(
                "DELETE FROM push_outbox WHERE subscription_id IN (
                     SELECT s.id FROM push_subscriptions s JOIN sessions se ON se.id = s.session_id
                     WHERE se.revoked_at IS NOT NULL OR se.expires_at <= $1)",
            )
            .bind(now)
            .execute(pool)
            .await?;
            let ids = sqlx::query_scalar::<_, Uuid>(
                "UPDATE push_outbox SET claimed_until = $2, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM push_outbox
                              WHERE due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1)
                              ORDER BY due_at LIMIT $3)
                   AND due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1)
                 RETURNING id",
            )
            .bind(now)
            .bind(until)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut query = sqlx::QueryBuilder::<Db>::new(
                "SELECT o.id, o.subscription_id, o.payload, o.topic, o.urgency, o.ttl_secs,
                        o.attempts, s.endpoint, s.p256dh, s.auth
                 FROM push_outbox o JOIN push_subscriptions s ON s.id = o.subscription_id
                 WHERE o.id IN (",
            );
            let mut list = query.separated(", ");
            for id in &ids {
                list.push_bind(*id);
            }
            query.push(") ORDER BY o.due_at");
            query.build_query_as::<ClaimedPush>().fetch_all(pool).await?
        });
        Ok(claimed)
    }

    /// A push was sent, or given up: it leaves the outbox.
    #[tracing::instrument(skip_all)]
    pub async fn finish_push(&self, id: Uuid) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("DELETE FROM push_outbox WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// A push to try again at `due_at`, released for any sender.
    #[tracing::instrument(skip_all)]
    pub async fn retry_push(&self, id: Uuid, due_at: Timestamp) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE push_outbox SET due_at = $2, claimed_until = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(due_at)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// How many pushes wait in the outbox.
    #[tracing::instrument(skip_all)]
    pub async fn push_outbox_depth(&self) -> Result<i64, StoreError> {
        let depth = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM push_outbox",
        )
        .fetch_one(pool)
        .await)?;
        Ok(depth)
    }

    /// Ends a session's subscriptions (logout, revoke, deactivation).
    #[tracing::instrument(skip_all)]
    pub async fn delete_session_subscriptions(
        &self,
        session_ids: &[Uuid],
    ) -> Result<(), StoreError> {
        if session_ids.is_empty() {
            return Ok(());
        }
        on_pool!(self, pool, Db => {
            let mut query =
                sqlx::QueryBuilder::<Db>::new("DELETE FROM push_subscriptions WHERE session_id IN (");
            let mut list = query.separated(", ");
            for id in session_ids {
                list.push_bind(*id);
            }
            query.push(")");
            query.build().execute(pool).await?;
        });
        Ok(())
    }
}
