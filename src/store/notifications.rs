//! The `notifications` table: what admins send to users, and its read state.

use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::database::{Store, StoreError, on_pool};
use crate::timestamp::Timestamp;

/// Rows inserted per statement when notifying many users.
const BATCH: usize = 500;

/// The notification object of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// A JSON document, kept as text; shown as JSON.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<String>,
    pub created_at: Timestamp,
    pub read_at: Option<Timestamp>,
}

fn as_json<S: Serializer>(data: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    let value = data
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .unwrap_or(serde_json::Value::Null);
    value.serialize(serializer)
}

/// One notification's content, to be sent to one or many users.
pub struct NewNotification<'a> {
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub data: Option<&'a str>,
}

impl Store {
    /// Stores the same notification for each of `user_ids`, in batches, in one transaction.
    #[tracing::instrument(skip_all)]
    pub async fn insert_notifications(
        &self,
        user_ids: &[Uuid],
        new: &NewNotification<'_>,
    ) -> Result<Vec<Notification>, StoreError> {
        let now = Timestamp::now();
        let created = on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            let mut created = Vec::with_capacity(user_ids.len());
            for chunk in user_ids.chunks(BATCH) {
                let mut insert = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO notifications (id, user_id, kind, title, body, data, created_at) ",
                );
                insert.push_values(chunk, |mut row, user_id| {
                    row.push_bind(Uuid::now_v7())
                        .push_bind(*user_id)
                        .push_bind(new.kind.to_owned())
                        .push_bind(new.title.to_owned())
                        .push_bind(new.body.to_owned())
                        .push_bind(new.data.map(str::to_owned))
                        .push_bind(now);
                });
                insert.push(
                    " RETURNING id, user_id, kind, title, body, data, created_at, read_at",
                );
                created.extend(
                    insert
                        .build_query_as::<Notification>()
                        .fetch_all(&mut *tx)
                        .await?,
                );
            }
            tx.commit().await?;
            created
        });
        Ok(created)
    }

    /// Ids of every active account (for notifications to all).
    #[tracing::instrument(skip_all)]
    pub async fn active_user_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        let ids = on_pool!(self, pool => sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM users WHERE is_active ORDER BY id",
        )
        .fetch_all(pool)
        .await)?;
        Ok(ids)
    }

    /// A user's notifications, newest first, before the `before` cursor (exclusive).
    #[tracing::instrument(skip_all)]
    pub async fn list_notifications(
        &self,
        user_id: Uuid,
        unread_only: bool,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let list = on_pool!(self, pool => sqlx::query_as::<_, Notification>(
            "SELECT id, user_id, kind, title, body, data, created_at, read_at
             FROM notifications
             WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL) AND ($3 IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4",
        )
        .bind(user_id)
        .bind(unread_only)
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(list)
    }

    /// A user's notifications after `since` (exclusive), oldest first, for sync.
    #[tracing::instrument(skip_all)]
    pub async fn notifications_since(
        &self,
        user_id: Uuid,
        since: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let list = on_pool!(self, pool => sqlx::query_as::<_, Notification>(
            "SELECT id, user_id, kind, title, body, data, created_at, read_at
             FROM notifications
             WHERE user_id = $1 AND ($2 IS NULL OR id > $2)
             ORDER BY id ASC LIMIT $3",
        )
        .bind(user_id)
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(list)
    }

    #[tracing::instrument(skip_all)]
    pub async fn unread_notification_count(&self, user_id: Uuid) -> Result<i64, StoreError> {
        let count = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(pool)
        .await)?;
        Ok(count)
    }

    /// Marks one of the user's notifications read. `None` when it is not theirs (or does not
    /// exist); `Some(false)` when it already was read.
    #[tracing::instrument(skip_all)]
    pub async fn mark_notification_read(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<Option<bool>, StoreError> {
        let read_at = on_pool!(self, pool => sqlx::query_scalar::<_, Option<Timestamp>>(
            "SELECT read_at FROM notifications WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(pool)
        .await)?;
        match read_at {
            None => Ok(None),
            Some(Some(_)) => Ok(Some(false)),
            Some(None) => {
                let changed = on_pool!(self, pool => sqlx::query(
                    "UPDATE notifications SET read_at = $3
                     WHERE id = $1 AND user_id = $2 AND read_at IS NULL",
                )
                .bind(id)
                .bind(user_id)
                .bind(Timestamp::now())
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))?;
                Ok(Some(changed == 1))
            }
        }
    }

    /// Marks every unread notification of the user read; answers how many changed.
    #[tracing::instrument(skip_all)]
    pub async fn mark_all_notifications_read(&self, user_id: Uuid) -> Result<u64, StoreError> {
        let changed = on_pool!(self, pool => sqlx::query(
            "UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL",
        )
        .bind(user_id)
        .bind(Timestamp::now())
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(changed)
    }
}
