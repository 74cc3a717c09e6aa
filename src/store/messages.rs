//! The `messages` table: the messages of every conversation, direct messages' delivery and read
//! state, history and sync.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::database::{Store, StoreError, on_pool};
use super::writer::NewMessage;
use crate::timestamp::Timestamp;

/// The columns of a message row, in the order [`MessageRow`] and the SQLite writer read them.
macro_rules! message_columns {
    () => {
        "id, conversation_id, kind, sender_id, recipient_id, content, client_id, reply_to_id, \
         mentions, system, created_at, edited_at, deleted_at, delivered_at, read_at, reactions, \
         attachments"
    };
}
pub(super) use message_columns;

/// Stores a message of a conversation its sender is a member of, unless (in a direct
/// conversation) the recipient is gone or disabled, or this sender already used this `clientId`
/// (the unique index); answers the row only when it was stored. A direct message names its
/// recipient and goes to the pair's conversation, whose two members never change: only the
/// recipient is looked up then, which keeps a DM to one index look-up as before conversations.
/// Binds: id, conversation, kind, sender, recipient, content, clientId, replyToId, mentions,
/// system, createdAt, attachments. Both pools and the SQLite writer run it (SQLite reads `$N` as
/// the N-th parameter too).
pub(super) const INSERT_MESSAGE: &str = concat!(
    "INSERT INTO messages (id, conversation_id, kind, sender_id, recipient_id, content, client_id,
                           reply_to_id, mentions, system, created_at, attachments)
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
     WHERE CASE WHEN $5 IS NULL
               THEN EXISTS (SELECT 1 FROM conversation_members WHERE conversation_id = $2 AND user_id = $4)
               ELSE EXISTS (SELECT 1 FROM users WHERE id = $5 AND is_active)
           END
     ON CONFLICT DO NOTHING
     RETURNING ",
    message_columns!()
);

/// Marks a message delivered once, and only by its recipient. Binds: id, recipient, time.
pub(super) const MARK_DELIVERED: &str = concat!(
    "UPDATE messages SET delivered_at = $3
     WHERE id = $1 AND recipient_id = $2 AND delivered_at IS NULL
     RETURNING ",
    message_columns!()
);

/// `text`, or `system` for a notice of a change to the conversation (§10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    System,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::System => "system",
        }
    }
}

/// What a system message records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum SystemType {
    Created,
    Renamed,
    MembersAdded,
    MemberRemoved,
    MemberLeft,
    RoleChanged,
    MissedCall,
    Call,
}

/// The `system` object of a system message: what changed, who did it, whom it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemEvent {
    #[serde(rename = "type")]
    pub kind: SystemType,
    pub by: Uuid,
    pub user_ids: Vec<Uuid>,
    pub title: Option<String>,
    /// The call a `missedCall` or `call` message records (SPEC §14); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallRecord>,
}

/// A call as its system message keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub id: Uuid,
    /// `audio` or `video`.
    pub media: String,
    /// From the answer to the end, in whole seconds; absent for a call never answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<i64>,
}

/// The message object of the contract (§2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub kind: MessageKind,
    pub from: Uuid,
    /// The recipient in a direct conversation; null in a group.
    pub to: Option<Uuid>,
    pub content: String,
    pub client_id: Option<String>,
    pub reply_to_id: Option<Uuid>,
    /// Members this message mentions.
    pub mentions: Vec<Uuid>,
    /// Files on this message (§12), in the order they were sent.
    pub attachments: Vec<Attachment>,
    /// Each emoji once, in order of first use (§11).
    pub reactions: Vec<Reaction>,
    pub system: Option<SystemEvent>,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub read_at: Option<Timestamp>,
}

/// An attachment as a message carries it (SPEC §12). `url` and `thumbnailUrl` are paths on this
/// server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: Uuid,
    pub filename: String,
    pub size: u64,
    /// What the bytes are (sniffed), not what the uploader claimed.
    pub content_type: String,
    /// Of an image; null for anything else.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub url: String,
    /// Of an image that could be decoded; null otherwise.
    pub thumbnail_url: Option<String>,
}

/// One emoji's reactions to a message: who reacted with it, in the order they did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    pub emoji: String,
    pub count: usize,
    pub user_ids: Vec<Uuid>,
}

/// What a reaction did to a message's reactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReactionChange {
    Changed,
    /// Added again or removed again: nothing to store or tell.
    Unchanged,
    /// A new emoji beyond the most a message may have.
    TooMany,
}

/// Adds or removes `user`'s `emoji` in `reactions`: an emoji keeps its place from its first use
/// and goes when its last user takes it back.
fn apply_reaction(
    reactions: &mut Vec<Reaction>,
    emoji: &str,
    user: Uuid,
    add: bool,
    max_emoji: usize,
) -> ReactionChange {
    let at = reactions.iter().position(|r| r.emoji == emoji);
    match (at, add) {
        (Some(i), true) if reactions[i].user_ids.contains(&user) => ReactionChange::Unchanged,
        (Some(i), true) => {
            reactions[i].user_ids.push(user);
            reactions[i].count = reactions[i].user_ids.len();
            ReactionChange::Changed
        }
        (None, true) if reactions.len() >= max_emoji => ReactionChange::TooMany,
        (None, true) => {
            reactions.push(Reaction {
                emoji: emoji.to_owned(),
                count: 1,
                user_ids: vec![user],
            });
            ReactionChange::Changed
        }
        (Some(i), false) if reactions[i].user_ids.contains(&user) => {
            reactions[i].user_ids.retain(|u| *u != user);
            reactions[i].count = reactions[i].user_ids.len();
            if reactions[i].user_ids.is_empty() {
                reactions.remove(i);
            }
            ReactionChange::Changed
        }
        (_, false) => ReactionChange::Unchanged,
    }
}

/// What a reaction did.
pub enum Reacted {
    /// The message with its reactions changed.
    Changed(Message),
    /// Nothing changed (added or removed again); the message as it is.
    Unchanged(Message),
    /// The message has the most emoji it may have already.
    TooMany,
    /// The message does not exist or is deleted.
    Gone,
}

/// A `messages` row as stored: `mentions`, `system` and `reactions` are JSON text.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(super) struct MessageRow {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub kind: String,
    pub sender_id: Uuid,
    pub recipient_id: Option<Uuid>,
    pub content: String,
    pub client_id: Option<String>,
    pub reply_to_id: Option<Uuid>,
    pub mentions: String,
    pub system: Option<String>,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub read_at: Option<Timestamp>,
    pub reactions: Option<String>,
    pub attachments: Option<String>,
}

/// A changed message and when it last changed (the `sync` cursor of changes).
#[derive(Debug, sqlx::FromRow)]
struct ChangedRow {
    #[sqlx(flatten)]
    message: MessageRow,
    changed_at: Timestamp,
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Self {
            id: row.id,
            conversation_id: row.conversation_id,
            kind: if row.kind == "system" {
                MessageKind::System
            } else {
                MessageKind::Text
            },
            from: row.sender_id,
            to: row.recipient_id,
            content: row.content,
            client_id: row.client_id,
            reply_to_id: row.reply_to_id,
            // Only this module writes these columns, from the same types.
            mentions: serde_json::from_str(&row.mentions).unwrap_or_default(),
            attachments: row
                .attachments
                .and_then(|a| serde_json::from_str(&a).ok())
                .unwrap_or_default(),
            reactions: row
                .reactions
                .and_then(|r| serde_json::from_str(&r).ok())
                .unwrap_or_default(),
            system: row.system.and_then(|s| serde_json::from_str(&s).ok()),
            created_at: row.created_at,
            edited_at: row.edited_at,
            deleted_at: row.deleted_at,
            delivered_at: row.delivered_at,
            read_at: row.read_at,
        }
    }
}

/// A message to store in a conversation.
pub struct Outgoing<'a> {
    pub conversation_id: Uuid,
    pub kind: MessageKind,
    pub from: Uuid,
    /// The recipient of a direct message (who must be active); `None` in a group.
    pub to: Option<Uuid>,
    pub content: &'a str,
    pub client_id: Option<&'a str>,
    /// A message of the same conversation this one answers.
    pub reply_to_id: Option<Uuid>,
    pub mentions: &'a [Uuid],
    pub system: Option<&'a SystemEvent>,
}

impl Store {
    /// Stores a message; `None` when it is not stored: this sender already sent one with this
    /// `clientId`, the sender is not a member, or a direct recipient is gone or disabled (the
    /// caller finds out which). On SQLite it is committed with the other sends pending at that
    /// moment (group commit); it answers only once the message is committed.
    #[tracing::instrument(skip_all)]
    pub async fn insert_message(&self, out: &Outgoing<'_>) -> Result<Option<Message>, StoreError> {
        let message = NewMessage {
            id: Uuid::now_v7(),
            conversation_id: out.conversation_id,
            kind: out.kind.as_str(),
            from: out.from,
            to: out.to,
            content: out.content.to_owned(),
            client_id: out.client_id.map(str::to_owned),
            reply_to_id: out.reply_to_id,
            mentions: serde_json::to_string(out.mentions).expect("ids serialize"),
            system: out
                .system
                .map(|s| serde_json::to_string(s).expect("a system event serializes")),
            created_at: Timestamp::now(),
        };
        if let Some(writer) = &self.writer {
            return writer.insert(message).await;
        }
        let row = on_pool!(self, pool => sqlx::query_as::<_, MessageRow>(INSERT_MESSAGE)
            .bind(message.id)
            .bind(message.conversation_id)
            .bind(message.kind)
            .bind(message.from)
            .bind(message.to)
            .bind(&message.content)
            .bind(&message.client_id)
            .bind(message.reply_to_id)
            .bind(&message.mentions)
            .bind(&message.system)
            .bind(message.created_at)
            .bind(None::<String>)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(Message::from))
    }

    #[tracing::instrument(skip_all)]
    pub async fn find_message_by_client_id(
        &self,
        from: Uuid,
        client_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT ", message_columns!(), " FROM messages WHERE sender_id = $1 AND client_id = $2"
        ))
        .bind(from)
        .bind(client_id)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(Message::from))
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
        let row = on_pool!(self, pool => sqlx::query_as::<_, MessageRow>(MARK_DELIVERED)
            .bind(id)
            .bind(recipient)
            .bind(now)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(Message::from))
    }

    /// Marks read every unread message to `reader` in a direct conversation up to and including
    /// `up_to`.
    #[tracing::instrument(skip_all)]
    pub async fn mark_read(
        &self,
        conversation_id: Uuid,
        reader: Uuid,
        up_to: Uuid,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let count = on_pool!(self, pool => sqlx::query(
            "UPDATE messages SET read_at = $4, delivered_at = COALESCE(delivered_at, $4)
             WHERE conversation_id = $1 AND recipient_id = $2 AND id <= $3 AND read_at IS NULL",
        )
        .bind(conversation_id)
        .bind(reader)
        .bind(up_to)
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(count)
    }

    /// Messages of every conversation `me` is a member of after `since` (exclusive), oldest
    /// first.
    #[tracing::instrument(skip_all)]
    pub async fn messages_since(
        &self,
        me: Uuid,
        since: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT ", message_columns!(), " FROM messages
             WHERE conversation_id IN (SELECT conversation_id FROM conversation_members WHERE user_id = $1)
               AND ($2 IS NULL OR id > $2)
             ORDER BY id ASC LIMIT $3"
        ))
        .bind(me)
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(Message::from).collect())
    }

    /// A message by id, in whichever conversation.
    #[tracing::instrument(skip_all)]
    pub async fn find_message(&self, id: Uuid) -> Result<Option<Message>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT ", message_columns!(), " FROM messages WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(Message::from))
    }

    /// Gives a message new content, unless it is deleted; answers it edited.
    #[tracing::instrument(skip_all)]
    pub async fn edit_message(
        &self,
        id: Uuid,
        content: &str,
        now: Timestamp,
    ) -> Result<Option<Message>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, MessageRow>(concat!(
            "UPDATE messages SET content = $2, edited_at = $3, changed_at = $3
             WHERE id = $1 AND deleted_at IS NULL
             RETURNING ", message_columns!()
        ))
        .bind(id)
        .bind(content)
        .bind(now)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(Message::from))
    }

    /// Makes a message a tombstone: its content, mentions and reactions are overwritten, not
    /// hidden. Answers it deleted, or `None` when it was deleted already (or never existed).
    #[tracing::instrument(skip_all)]
    pub async fn delete_message(
        &self,
        id: Uuid,
        now: Timestamp,
    ) -> Result<Option<Message>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, MessageRow>(concat!(
            "UPDATE messages SET content = '', mentions = '[]', reactions = NULL, attachments = NULL,
                                 deleted_at = $2, changed_at = $2
             WHERE id = $1 AND deleted_at IS NULL
             RETURNING ", message_columns!()
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(Message::from))
    }

    /// Adds or removes `user`'s `emoji` on a message that is not deleted, with at most
    /// `max_emoji` different emoji on it. The row is locked first (an update that changes
    /// nothing, which on SQLite takes the write lock), so reactions at once apply one after the
    /// other: two devices adding the same emoji count once.
    #[tracing::instrument(skip_all)]
    pub async fn react(
        &self,
        id: Uuid,
        user: Uuid,
        emoji: &str,
        add: bool,
        max_emoji: usize,
    ) -> Result<Reacted, StoreError> {
        let now = Timestamp::now();
        let outcome = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let locked = sqlx::query_as::<_, MessageRow>(concat!(
                "UPDATE messages SET changed_at = changed_at WHERE id = $1 AND deleted_at IS NULL
                 RETURNING ", message_columns!()
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = locked else {
                return Ok(Reacted::Gone);
            };
            let mut message = Message::from(row);
            match apply_reaction(&mut message.reactions, emoji, user, add, max_emoji) {
                ReactionChange::TooMany => return Ok(Reacted::TooMany),
                ReactionChange::Unchanged => return Ok(Reacted::Unchanged(message)),
                ReactionChange::Changed => {}
            }
            let reactions = (!message.reactions.is_empty())
                .then(|| serde_json::to_string(&message.reactions).expect("reactions serialize"));
            sqlx::query("UPDATE messages SET reactions = $2, changed_at = $3 WHERE id = $1")
                .bind(id)
                .bind(reactions)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Reacted::Changed(message)
        });
        Ok(outcome)
    }

    /// Messages of `me`'s conversations sent at or before `since` that changed (edited, deleted,
    /// reacted to) after the `after` cursor, oldest change first; each with when it changed.
    #[tracing::instrument(skip_all)]
    pub async fn changes_since(
        &self,
        me: Uuid,
        since: Uuid,
        after: (Timestamp, Uuid),
        limit: i64,
    ) -> Result<Vec<(Message, Timestamp)>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ChangedRow>(concat!(
            "SELECT ", message_columns!(), ", changed_at FROM messages
             WHERE conversation_id IN (SELECT conversation_id FROM conversation_members WHERE user_id = $1)
               AND changed_at IS NOT NULL AND id <= $2
               AND (changed_at > $3 OR (changed_at = $3 AND id > $4))
             ORDER BY changed_at ASC, id ASC LIMIT $5"
        ))
        .bind(me)
        .bind(since)
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|row| (Message::from(row.message), row.changed_at))
            .collect())
    }

    /// A direct message from `from` to `to`, their conversation made on first use (the
    /// writer's tests).
    #[cfg(test)]
    pub(super) async fn send_direct(
        &self,
        from: Uuid,
        to: Uuid,
        content: &str,
        client_id: Option<&str>,
    ) -> Result<Option<Message>, StoreError> {
        let conversation_id = self.direct_conversation(from, to).await?;
        let out = Outgoing {
            conversation_id,
            kind: MessageKind::Text,
            from,
            to: Some(to),
            content,
            client_id,
            reply_to_id: None,
            mentions: &[],
            system: None,
        };
        self.insert_message(&out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emoji_keeps_its_place_and_counts_each_user_once() {
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let mut reactions = Vec::new();
        let react =
            |r: &mut Vec<Reaction>, emoji, user, add| apply_reaction(r, emoji, user, add, 2);
        assert_eq!(
            react(&mut reactions, "👍", ada, true),
            ReactionChange::Changed
        );
        assert_eq!(
            react(&mut reactions, "🎉", bob, true),
            ReactionChange::Changed
        );
        assert_eq!(
            react(&mut reactions, "👍", bob, true),
            ReactionChange::Changed
        );
        assert_eq!(
            react(&mut reactions, "👍", bob, true),
            ReactionChange::Unchanged
        );
        assert_eq!(
            react(&mut reactions, "❤️", ada, true),
            ReactionChange::TooMany
        );
        assert_eq!(reactions[0].emoji, "👍");
        assert_eq!(
            (reactions[0].count, reactions[0].user_ids.clone()),
            (2, vec![ada, bob])
        );
        assert_eq!(
            react(&mut reactions, "👍", ada, false),
            ReactionChange::Changed
        );
        assert_eq!(
            react(&mut reactions, "👍", ada, false),
            ReactionChange::Unchanged
        );
        assert_eq!(
            react(&mut reactions, "👍", bob, false),
            ReactionChange::Changed
        );
        // The last user took it back: the emoji is gone, and room is made for another.
        assert_eq!(
            reactions
                .iter()
                .map(|r| r.emoji.as_str())
                .collect::<Vec<_>>(),
            ["🎉"]
        );
        assert_eq!(
            react(&mut reactions, "❤️", ada, true),
            ReactionChange::Changed
        );
    }
}
