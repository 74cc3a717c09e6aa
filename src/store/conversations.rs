//! The `conversations` and `conversation_members` tables: direct conversations (made on a pair's
//! first message), groups with roles, membership changes and the system messages that record
//! them (written in the same transaction), read pointers, unread and mention counts.
//!
//! A change to a group's members starts by touching the group's row (`updated_at`): on
//! PostgreSQL that locks the row until the transaction ends, on SQLite it takes the write lock,
//! so two changes at once run one after the other and a member limit checked inside holds.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::database::{Store, StoreError, on_pool};
use super::messages::{
    INSERT_MESSAGE, Message, MessageKind, MessageRow, SystemEvent, message_columns,
};
use crate::timestamp::Timestamp;

/// The statement that locks a group for a membership change (see the module's opening comment).
/// A macro, as the statements here: it expands inside each arm of `on_pool!`, for both databases.
macro_rules! lock_group {
    ($conversation_id:expr, $now:expr) => {
        sqlx::query("UPDATE conversations SET updated_at = $2 WHERE id = $1 AND kind = 'group'")
            .bind($conversation_id)
            .bind($now)
    };
}

/// The id of a conversation's latest message, if any.
macro_rules! latest_message {
    ($conversation_id:expr) => {
        sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM messages WHERE conversation_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind($conversation_id)
    };
}

/// The insert of a system message, sent by the event's `by`.
macro_rules! system_message {
    ($conversation_id:expr, $event:expr, $content:expr, $now:expr) => {
        sqlx::query_as::<_, MessageRow>(INSERT_MESSAGE)
            .bind(Uuid::now_v7())
            .bind($conversation_id)
            .bind(MessageKind::System.as_str())
            .bind(($event).by)
            .bind(None::<Uuid>)
            .bind($content)
            .bind(None::<String>)
            .bind(None::<Uuid>)
            .bind("[]")
            .bind(serde_json::to_string($event).expect("a system event serializes"))
            .bind($now)
            .bind(None::<String>)
    };
}

/// Direct conversation ids kept in memory above this many are forgotten all at once.
const DIRECT_CACHE_MAX: usize = 100_000;

/// The `kind` of a direct conversation (a group's is `group`).
pub const DIRECT: &str = "direct";

/// The direct conversations already looked up: a pair's conversation never changes once made.
#[derive(Debug, Default)]
pub(super) struct DirectIds(Mutex<HashMap<(Uuid, Uuid), Uuid>>);

impl DirectIds {
    fn get(&self, pair: (Uuid, Uuid)) -> Option<Uuid> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pair)
            .copied()
    }

    fn put(&self, pair: (Uuid, Uuid), id: Uuid) {
        let mut ids = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ids.len() >= DIRECT_CACHE_MAX {
            ids.clear();
        }
        ids.insert(pair, id);
    }
}

/// A pair in the order the table keeps it.
fn pair(a: Uuid, b: Uuid) -> (Uuid, Uuid) {
    if a <= b { (a, b) } else { (b, a) }
}

/// One conversation as its member sees it in a list.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ConversationRow {
    pub id: Uuid,
    pub kind: String,
    pub title: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub muted: bool,
    pub member_count: i64,
    pub last_message_id: Option<Uuid>,
    pub unread_count: i64,
    pub mention_count: i64,
    /// The other side of a direct conversation (the caller themselves when they write to
    /// themselves).
    pub other_id: Option<Uuid>,
}

/// One member of a conversation, with what other members see of them.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: Uuid,
    pub role: String,
    pub joined_at: Timestamp,
    pub last_read_message_id: Option<Uuid>,
    pub last_read_at: Option<Timestamp>,
    pub muted: bool,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
}

/// A caller's place in a conversation.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Membership {
    pub kind: String,
    pub role: String,
    pub last_read_message_id: Option<Uuid>,
}

/// What adding members did.
pub enum Added {
    /// The users now in the group who were not before, and the `membersAdded` message (none
    /// when every one was a member already).
    Added(Vec<Uuid>, Option<Box<Message>>),
    /// The group would have more than its limit.
    Full,
}

/// The conversation list's query: every conversation of `$1` with its counts, `$2` being `$1`
/// as text (mentions are kept as JSON text).
const LIST: &str = "
    SELECT c.id, c.kind, c.title, c.created_at, c.updated_at, cm.muted,
           (SELECT COUNT(*) FROM conversation_members x WHERE x.conversation_id = c.id) AS member_count,
           (SELECT m.id FROM messages m WHERE m.conversation_id = c.id
            ORDER BY m.id DESC LIMIT 1) AS last_message_id,
           CASE WHEN c.kind = 'direct' THEN
               (SELECT COUNT(*) FROM messages m
                WHERE m.conversation_id = c.id AND m.recipient_id = $1 AND m.read_at IS NULL
                  AND m.deleted_at IS NULL)
           ELSE
               (SELECT COUNT(*) FROM messages m
                WHERE m.conversation_id = c.id AND m.sender_id <> $1 AND m.deleted_at IS NULL
                  AND (cm.last_read_message_id IS NULL OR m.id > cm.last_read_message_id))
           END AS unread_count,
           (SELECT COUNT(*) FROM messages m
            WHERE m.conversation_id = c.id AND m.sender_id <> $1
              AND (cm.last_read_message_id IS NULL OR m.id > cm.last_read_message_id)
              AND m.mentions LIKE '%' || $2 || '%') AS mention_count,
           CASE WHEN c.kind = 'direct' THEN
               CASE WHEN c.direct_low = $1 THEN c.direct_high ELSE c.direct_low END
           END AS other_id
    FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
    WHERE cm.user_id = $1";

impl Store {
    /// The direct conversation of two users, if they have one.
    #[tracing::instrument(skip_all)]
    pub async fn find_direct_conversation(
        &self,
        a: Uuid,
        b: Uuid,
    ) -> Result<Option<Uuid>, StoreError> {
        let pair = pair(a, b);
        if let Some(id) = self.direct_ids.get(pair) {
            return Ok(Some(id));
        }
        let id = on_pool!(self, pool => sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM conversations WHERE direct_low = $1 AND direct_high = $2",
        )
        .bind(pair.0)
        .bind(pair.1)
        .fetch_optional(pool)
        .await)?;
        if let Some(id) = id {
            self.direct_ids.put(pair, id);
        }
        Ok(id)
    }

    /// The direct conversation of two users, made with both as members when they have none
    /// (the caller has checked that both exist).
    #[tracing::instrument(skip_all)]
    pub async fn direct_conversation(&self, a: Uuid, b: Uuid) -> Result<Uuid, StoreError> {
        if let Some(id) = self.find_direct_conversation(a, b).await? {
            return Ok(id);
        }
        let (low, high) = pair(a, b);
        let now = Timestamp::now();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO conversations (id, kind, direct_low, direct_high, created_at, updated_at)
                 VALUES ($1, 'direct', $2, $3, $4, $4) ON CONFLICT DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(low)
            .bind(high)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at)
                 SELECT c.id, u.id, 'member', $3 FROM conversations c,
                        (SELECT $1 AS id UNION SELECT $2) u
                 WHERE c.direct_low = $1 AND c.direct_high = $2
                 ON CONFLICT DO NOTHING",
            )
            .bind(low)
            .bind(high)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.find_direct_conversation(a, b)
            .await?
            .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Makes a group owned by `owner` with `members`, and its `created` message.
    #[tracing::instrument(skip_all)]
    pub async fn create_group(
        &self,
        title: &str,
        owner: Uuid,
        members: &[Uuid],
        created: &SystemEvent,
    ) -> Result<(Uuid, Message), StoreError> {
        let (id, now) = (Uuid::now_v7(), Timestamp::now());
        let message = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO conversations (id, kind, title, created_at, updated_at)
                 VALUES ($1, 'group', $2, $3, $3)",
            )
            .bind(id)
            .bind(title)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for (user, role) in std::iter::once((owner, "owner"))
                .chain(members.iter().map(|m| (*m, "member")))
            {
                sqlx::query(
                    "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(user)
                .bind(role)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let message = system_message!(id, created, "created the group", now)
                .fetch_one(&mut *tx)
                .await?;
            // The owner has read their own notice.
            sqlx::query(
                "UPDATE conversation_members SET last_read_message_id = $3, last_read_at = $4
                 WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(id)
            .bind(owner)
            .bind(message.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            message
        });
        Ok((id, Message::from(message)))
    }

    /// `user`'s place in a conversation; `None` when they are not a member (or it does not
    /// exist).
    #[tracing::instrument(skip_all)]
    pub async fn membership(
        &self,
        conversation_id: Uuid,
        user: Uuid,
    ) -> Result<Option<Membership>, StoreError> {
        let found = on_pool!(self, pool => sqlx::query_as::<_, Membership>(
            "SELECT c.kind, cm.role, cm.last_read_message_id
             FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
             WHERE cm.conversation_id = $1 AND cm.user_id = $2",
        )
        .bind(conversation_id)
        .bind(user)
        .fetch_optional(pool)
        .await)?;
        Ok(found)
    }

    /// `me`'s conversations, most recently active first, before the `before` cursor (a last
    /// message id); at most `limit`.
    #[tracing::instrument(skip_all)]
    pub async fn list_conversations(
        &self,
        me: Uuid,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        let sql = format!(
            "SELECT * FROM ({LIST}) t WHERE ($3 IS NULL OR t.last_message_id < $3)
             ORDER BY t.last_message_id DESC LIMIT $4"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ConversationRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(me)
            .bind(me.to_string())
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// One conversation of `me`'s, as in the list.
    #[tracing::instrument(skip_all)]
    pub async fn conversation_of(
        &self,
        me: Uuid,
        conversation_id: Uuid,
    ) -> Result<Option<ConversationRow>, StoreError> {
        let sql = format!("SELECT * FROM ({LIST}) t WHERE t.id = $3");
        let row = on_pool!(self, pool => sqlx::query_as::<_, ConversationRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(me)
            .bind(me.to_string())
            .bind(conversation_id)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// Messages by id, in no particular order.
    #[tracing::instrument(skip_all)]
    pub async fn messages_by_id(&self, ids: &[Uuid]) -> Result<Vec<Message>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = on_pool!(self, pool, Db => {
            let mut query = sqlx::QueryBuilder::<Db>::new(concat!(
                "SELECT ", message_columns!(), " FROM messages WHERE id IN ("
            ));
            let mut list = query.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            query.push(")");
            query.build_query_as::<MessageRow>().fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(Message::from).collect())
    }

    /// The members of a conversation, owner first, then by when they joined.
    #[tracing::instrument(skip_all)]
    pub async fn members(&self, conversation_id: Uuid) -> Result<Vec<MemberRow>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, MemberRow>(
            "SELECT cm.user_id, cm.role, cm.joined_at, cm.last_read_message_id, cm.last_read_at,
                    cm.muted, u.name, u.avatar_url
             FROM conversation_members cm LEFT JOIN users u ON u.id = cm.user_id
             WHERE cm.conversation_id = $1
             ORDER BY CASE cm.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END,
                      cm.joined_at, cm.user_id",
        )
        .bind(conversation_id)
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }

    /// The ids of the members of a conversation.
    #[tracing::instrument(skip_all)]
    pub async fn member_ids(&self, conversation_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let ids = on_pool!(self, pool => sqlx::query_scalar::<_, Uuid>(
            "SELECT user_id FROM conversation_members WHERE conversation_id = $1",
        )
        .bind(conversation_id)
        .fetch_all(pool)
        .await)?;
        Ok(ids)
    }

    /// What a socket of `user` needs when it authenticates, in one read: the groups `user` is a
    /// member of, and the other members of their most recently active conversations, direct and
    /// group, most recent first (a conversation is as recent as its last message, or its
    /// creation: both ids are time-ordered), at most `limit` of them: whom the socket watches
    /// (SPEC §5).
    #[tracing::instrument(skip_all)]
    pub async fn groups_and_partners(
        &self,
        user: Uuid,
        limit: usize,
    ) -> Result<(Vec<Uuid>, Vec<Uuid>), StoreError> {
        // One row per (conversation, other member); a conversation with no other member (a
        // group left to one) still comes once, for the group list.
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (Uuid, String, Option<Uuid>)>(
            "WITH mine AS (
                 SELECT cm.conversation_id, c.kind,
                        COALESCE((SELECT m.id FROM messages m WHERE m.conversation_id = cm.conversation_id
                                  ORDER BY m.id DESC LIMIT 1), cm.conversation_id) AS active
                 FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
                 WHERE cm.user_id = $1
             )
             SELECT mine.conversation_id, mine.kind, other.user_id FROM mine
             LEFT JOIN conversation_members other
                    ON other.conversation_id = mine.conversation_id AND other.user_id <> $1
             ORDER BY mine.active DESC",
        )
        .bind(user)
        .fetch_all(pool)
        .await)?;
        let (mut groups, mut partners) = (Vec::new(), Vec::new());
        let mut seen = std::collections::HashSet::new();
        for (conversation, kind, other) in rows {
            // A conversation's rows come together: its `active` is its own.
            if kind == "group" && groups.last() != Some(&conversation) {
                groups.push(conversation);
            }
            if let Some(other) = other
                && partners.len() < limit
                && seen.insert(other)
            {
                partners.push(other);
            }
        }
        Ok((groups, partners))
    }

    /// The groups `user` is a member of.
    #[tracing::instrument(skip_all)]
    pub async fn group_ids_of(&self, user: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let ids = on_pool!(self, pool => sqlx::query_scalar::<_, Uuid>(
            "SELECT cm.conversation_id FROM conversation_members cm
             JOIN conversations c ON c.id = cm.conversation_id
             WHERE cm.user_id = $1 AND c.kind = 'group'",
        )
        .bind(user)
        .fetch_all(pool)
        .await)?;
        Ok(ids)
    }

    /// Adds `users` to a group (those already in are left as they are) with the
    /// `membersAdded` message, unless the group would have more than `max` members.
    #[tracing::instrument(skip_all)]
    pub async fn add_members(
        &self,
        conversation_id: Uuid,
        users: &[Uuid],
        max: usize,
        event: impl Fn(Vec<Uuid>) -> SystemEvent,
        content: &str,
    ) -> Result<Added, StoreError> {
        let now = Timestamp::now();
        let outcome = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_group!(conversation_id, now).execute(&mut *tx).await?;
            let current = sqlx::query_scalar::<_, Uuid>(
                "SELECT user_id FROM conversation_members WHERE conversation_id = $1",
            )
            .bind(conversation_id)
            .fetch_all(&mut *tx)
            .await?;
            let new: Vec<Uuid> = users.iter().copied().filter(|u| !current.contains(u)).collect();
            if current.len() + new.len() > max {
                return Ok(Added::Full);
            }
            if new.is_empty() {
                return Ok(Added::Added(new, None));
            }
            let latest = latest_message!(conversation_id).fetch_optional(&mut *tx).await?;
            for user in &new {
                sqlx::query(
                    "INSERT INTO conversation_members
                         (conversation_id, user_id, role, joined_at, last_read_message_id)
                     VALUES ($1, $2, 'member', $3, $4)",
                )
                .bind(conversation_id)
                .bind(user)
                .bind(now)
                .bind(latest)
                .execute(&mut *tx)
                .await?;
            }
            let added = event(new.clone());
            let message = system_message!(conversation_id, &added, content, now)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Added::Added(new, Some(Box::new(Message::from(message))))
        });
        Ok(outcome)
    }

    /// Takes `user` out of a group with its `memberRemoved` or `memberLeft` message (stored
    /// first, while its sender is still a member); a group left empty is deleted with its
    /// messages, and then there is no message. Answers `None` when `user` was not a member.
    #[tracing::instrument(skip_all)]
    pub async fn remove_member(
        &self,
        conversation_id: Uuid,
        user: Uuid,
        event: &SystemEvent,
        content: &str,
    ) -> Result<Option<Option<Message>>, StoreError> {
        let now = Timestamp::now();
        let outcome = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_group!(conversation_id, now).execute(&mut *tx).await?;
            let remaining = sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM conversation_members WHERE conversation_id = $1 AND user_id <> $2",
            )
            .bind(conversation_id)
            .bind(user)
            .fetch_one(&mut *tx)
            .await?;
            let message = if remaining == 0 {
                None
            } else {
                let row = system_message!(conversation_id, event, content, now)
                    .fetch_optional(&mut *tx)
                    .await?;
                row.map(Message::from)
            };
            let removed = sqlx::query(
                "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(conversation_id)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if removed == 0 {
                return Ok(None);
            }
            if remaining == 0 {
                sqlx::query("DELETE FROM messages WHERE conversation_id = $1")
                    .bind(conversation_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM conversations WHERE id = $1")
                    .bind(conversation_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Some(message)
        });
        Ok(outcome)
    }

    /// Gives `user` a role, with the `roleChanged` message; giving `owner` makes the current
    /// owner an admin. Answers `None` when `user` is not a member.
    #[tracing::instrument(skip_all)]
    pub async fn set_role(
        &self,
        conversation_id: Uuid,
        user: Uuid,
        role: &str,
        event: &SystemEvent,
        content: &str,
    ) -> Result<Option<Message>, StoreError> {
        let now = Timestamp::now();
        let message = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_group!(conversation_id, now).execute(&mut *tx).await?;
            if role == "owner" {
                sqlx::query(
                    "UPDATE conversation_members SET role = 'admin'
                     WHERE conversation_id = $1 AND role = 'owner' AND user_id <> $2
                       AND EXISTS (SELECT 1 FROM conversation_members
                                   WHERE conversation_id = $1 AND user_id = $2)",
                )
                .bind(conversation_id)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            }
            let changed = sqlx::query(
                "UPDATE conversation_members SET role = $3 WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(conversation_id)
            .bind(user)
            .bind(role)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                return Ok(None);
            }
            let message = system_message!(conversation_id, event, content, now)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            message
        });
        Ok(Some(Message::from(message)))
    }

    /// Renames a group, with the `renamed` message.
    #[tracing::instrument(skip_all)]
    pub async fn rename_group(
        &self,
        conversation_id: Uuid,
        title: &str,
        event: &SystemEvent,
        content: &str,
    ) -> Result<Message, StoreError> {
        let now = Timestamp::now();
        let message = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE conversations SET title = $2, updated_at = $3 WHERE id = $1")
                .bind(conversation_id)
                .bind(title)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let message = system_message!(conversation_id, event, content, now)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            message
        });
        Ok(Message::from(message))
    }

    /// Mutes or unmutes a conversation for one member.
    #[tracing::instrument(skip_all)]
    pub async fn set_muted(
        &self,
        conversation_id: Uuid,
        user: Uuid,
        muted: bool,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE conversation_members SET muted = $3 WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation_id)
        .bind(user)
        .bind(muted)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Moves `user`'s read pointer forward to `up_to`, a message of the conversation; answers
    /// false when it was there or further already (or `up_to` is not of this conversation).
    #[tracing::instrument(skip_all)]
    pub async fn move_read_pointer(
        &self,
        conversation_id: Uuid,
        user: Uuid,
        up_to: Uuid,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let moved = on_pool!(self, pool => sqlx::query(
            "UPDATE conversation_members SET last_read_message_id = $3, last_read_at = $4
             WHERE conversation_id = $1 AND user_id = $2
               AND (last_read_message_id IS NULL OR last_read_message_id < $3)
               AND EXISTS (SELECT 1 FROM messages WHERE id = $3 AND conversation_id = $1)",
        )
        .bind(conversation_id)
        .bind(user)
        .bind(up_to)
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(moved == 1)
    }

    /// A conversation's messages, newest first, between the `before` and `after` cursors
    /// (exclusive); at most `limit`.
    #[tracing::instrument(skip_all)]
    pub async fn conversation_messages(
        &self,
        conversation_id: Uuid,
        before: Option<Uuid>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT ", message_columns!(), " FROM messages
             WHERE conversation_id = $1 AND ($2 IS NULL OR id < $2) AND ($3 IS NULL OR id > $3)
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(conversation_id)
        .bind(before)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(Message::from).collect())
    }

    /// Whether a message belongs to a conversation.
    #[tracing::instrument(skip_all)]
    pub async fn message_in(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> Result<bool, StoreError> {
        let found = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM messages WHERE id = $1 AND conversation_id = $2",
        )
        .bind(message_id)
        .bind(conversation_id)
        .fetch_one(pool)
        .await)?;
        Ok(found > 0)
    }

    /// The members whose read pointer is at or past a message, with when it moved there.
    #[tracing::instrument(skip_all)]
    pub async fn reads(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> Result<Vec<(Uuid, Option<Timestamp>)>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (Uuid, Option<Timestamp>)>(
            "SELECT user_id, last_read_at FROM conversation_members
             WHERE conversation_id = $1 AND last_read_message_id >= $2
             ORDER BY last_read_at, user_id",
        )
        .bind(conversation_id)
        .bind(message_id)
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }
}
