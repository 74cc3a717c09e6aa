//! The `messages` table: direct messages, their delivery and read state, history and sync.

use serde::Serialize;
use uuid::Uuid;

use super::writer::NewMessage;
use super::{Store, StoreError, on_pool};
use crate::timestamp::Timestamp;

/// Stores a message unless the recipient is gone or disabled, or this sender already used this
/// `clientId` (the unique index); answers the row only when it was stored. Binds: id, sender,
/// recipient, content, clientId, createdAt. Both pools and the SQLite writer run it (SQLite reads
/// `$N` as the N-th parameter too).
pub(super) const INSERT_MESSAGE: &str =
    "INSERT INTO messages (id, sender_id, recipient_id, content, client_id, created_at)
     SELECT $1, $2, $3, $4, $5, $6
     WHERE EXISTS (SELECT 1 FROM users WHERE id = $3 AND is_active)
     ON CONFLICT DO NOTHING
     RETURNING id, sender_id, recipient_id, content, client_id, created_at, delivered_at, read_at";

/// Marks a message delivered once, and only by its recipient. Binds: id, recipient, time.
pub(super) const MARK_DELIVERED: &str = "UPDATE messages SET delivered_at = $3
     WHERE id = $1 AND recipient_id = $2 AND delivered_at IS NULL
     RETURNING id, sender_id, recipient_id, content, client_id, created_at, delivered_at, read_at";

/// The message object of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: Uuid,
    #[sqlx(rename = "sender_id")]
    pub from: Uuid,
    #[sqlx(rename = "recipient_id")]
    pub to: Uuid,
    pub content: String,
    pub client_id: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub read_at: Option<Timestamp>,
}

/// The latest message of one conversation, with who the other side is.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ConversationRow {
    #[sqlx(flatten)]
    pub last_message: Message,
    pub other_id: Uuid,
    pub other_name: Option<String>,
    pub other_avatar_url: Option<String>,
}

impl Store {
    /// Stores a message to an active user; `None` when it is not stored: this sender already
    /// sent one with this `clientId`, or the recipient is gone or disabled (the caller finds out
    /// which). On SQLite it is committed with the other sends pending at that moment (group
    /// commit); it answers only once the message is committed.
    #[tracing::instrument(skip_all)]
    pub async fn insert_message(
        &self,
        from: Uuid,
        to: Uuid,
        content: &str,
        client_id: Option<&str>,
    ) -> Result<Option<Message>, StoreError> {
        let (id, created_at) = (Uuid::now_v7(), Timestamp::now());
        if let Some(writer) = &self.writer {
            return writer
                .insert(NewMessage {
                    id,
                    from,
                    to,
                    content: content.to_owned(),
                    client_id: client_id.map(str::to_owned),
                    created_at,
                })
                .await;
        }
        let message = on_pool!(self, pool => sqlx::query_as::<_, Message>(
            INSERT_MESSAGE,
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .bind(content)
        .bind(client_id)
        .bind(created_at)
        .fetch_optional(pool)
        .await)?;
        Ok(message)
    }

    #[tracing::instrument(skip_all)]
    pub async fn find_message_by_client_id(
        &self,
        from: Uuid,
        client_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        let message = on_pool!(self, pool => sqlx::query_as::<_, Message>(
            "SELECT id, sender_id, recipient_id, content, client_id, created_at, delivered_at, read_at
             FROM messages WHERE sender_id = $1 AND client_id = $2",
        )
        .bind(from)
        .bind(client_id)
        .fetch_optional(pool)
        .await)?;
        Ok(message)
    }

    /// Marks a message delivered to `recipient`, once; `None` if it already was (or is not theirs).
    #[tracing::instrument(skip_all)]
    pub async fn mark_delivered(
        &self,
        id: Uuid,
        recipient: Uuid,
    ) -> Result<Option<Message>, StoreError> {
        let now = Timestamp::now();
        if let Some(writer) = &self.writer {
            return writer.deliver(id, recipient, now).await;
        }
        let message = on_pool!(self, pool => sqlx::query_as::<_, Message>(
            MARK_DELIVERED,
        )
        .bind(id)
        .bind(recipient)
        .bind(now)
        .fetch_optional(pool)
        .await)?;
        Ok(message)
    }

    /// Marks read every unread message from `sender` to `reader` up to and including `up_to`.
    #[tracing::instrument(skip_all)]
    pub async fn mark_read(
        &self,
        reader: Uuid,
        sender: Uuid,
        up_to: Uuid,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let count = on_pool!(self, pool => sqlx::query(
            "UPDATE messages SET read_at = $4, delivered_at = COALESCE(delivered_at, $4)
             WHERE recipient_id = $1 AND sender_id = $2 AND id <= $3 AND read_at IS NULL",
        )
        .bind(reader)
        .bind(sender)
        .bind(up_to)
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(count)
    }

    /// One conversation, newest first, between the `before` and `after` cursors (exclusive).
    /// Fetches up to `limit` messages.
    #[tracing::instrument(skip_all)]
    pub async fn conversation(
        &self,
        me: Uuid,
        other: Uuid,
        before: Option<Uuid>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError> {
        let messages = on_pool!(self, pool => sqlx::query_as::<_, Message>(
            "SELECT id, sender_id, recipient_id, content, client_id, created_at, delivered_at, read_at
             FROM messages
             WHERE ((sender_id = $1 AND recipient_id = $2) OR (sender_id = $2 AND recipient_id = $1))
               AND ($3 IS NULL OR id < $3) AND ($4 IS NULL OR id > $4)
             ORDER BY id DESC LIMIT $5",
        )
        .bind(me)
        .bind(other)
        .bind(before)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(messages)
    }

    /// Messages to or from `me` after `since` (exclusive), oldest first.
    #[tracing::instrument(skip_all)]
    pub async fn messages_since(
        &self,
        me: Uuid,
        since: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError> {
        let messages = on_pool!(self, pool => sqlx::query_as::<_, Message>(
            "SELECT id, sender_id, recipient_id, content, client_id, created_at, delivered_at, read_at
             FROM messages
             WHERE (sender_id = $1 OR recipient_id = $1) AND ($2 IS NULL OR id > $2)
             ORDER BY id ASC LIMIT $3",
        )
        .bind(me)
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(messages)
    }

    /// The latest message of each of `me`'s conversations, most recent first.
    #[tracing::instrument(skip_all)]
    pub async fn conversations(
        &self,
        me: Uuid,
        limit: i64,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ConversationRow>(
            "SELECT t.id, t.sender_id, t.recipient_id, t.content, t.client_id, t.created_at,
                    t.delivered_at, t.read_at, t.other_id,
                    u.name AS other_name, u.avatar_url AS other_avatar_url
             FROM (
                 SELECT m.*,
                        CASE WHEN m.sender_id = $1 THEN m.recipient_id ELSE m.sender_id END AS other_id,
                        ROW_NUMBER() OVER (
                            PARTITION BY CASE WHEN m.sender_id = $1 THEN m.recipient_id ELSE m.sender_id END
                            ORDER BY m.id DESC
                        ) AS rn
                 FROM messages m
                 WHERE m.sender_id = $1 OR m.recipient_id = $1
             ) t
             LEFT JOIN users u ON u.id = t.other_id
             WHERE t.rn = 1
             ORDER BY t.id DESC LIMIT $2",
        )
        .bind(me)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }

    /// How many unread messages `me` has from each sender.
    #[tracing::instrument(skip_all)]
    pub async fn unread_counts(&self, me: Uuid) -> Result<Vec<(Uuid, i64)>, StoreError> {
        let counts = on_pool!(self, pool => sqlx::query_as::<_, (Uuid, i64)>(
            "SELECT sender_id, COUNT(*) FROM messages
             WHERE recipient_id = $1 AND read_at IS NULL GROUP BY sender_id",
        )
        .bind(me)
        .fetch_all(pool)
        .await)?;
        Ok(counts)
    }
}
