//! The `uploads` table: tus uploads from creation to the removal of their files, and messages
//! sent with attachments (the claim of the uploads and the insert in one transaction).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::database::{Store, StoreError, on_pool};
use super::messages::{Attachment, INSERT_MESSAGE, Message, MessageRow, Outgoing};
use crate::timestamp::Timestamp;

/// One object holding the bytes `offset..offset + size` of an unfinished upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub offset: u64,
    pub size: u64,
    pub key: String,
}

/// An `uploads` row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Upload {
    pub id: Uuid,
    pub user_id: Uuid,
    pub conversation_id: Uuid,
    pub filename: String,
    pub claimed_type: String,
    pub size: i64,
    pub received: i64,
    parts: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub content_type: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub thumbnail_type: Option<String>,
    pub message_id: Option<Uuid>,
}

impl Upload {
    /// The objects its received bytes are in, in order (kept once it completed: they are its
    /// file).
    pub fn parts(&self) -> Vec<Part> {
        // Only this module writes the column, from the same type.
        serde_json::from_str(&self.parts).unwrap_or_default()
    }

    pub fn size(&self) -> u64 {
        self.size.max(0) as u64
    }

    pub fn received(&self) -> u64 {
        self.received.max(0) as u64
    }

    /// As a message carries it; `None` before it completed.
    pub fn attachment(&self) -> Option<Attachment> {
        self.completed_at?;
        let url = format!("/api/attachments/{}", self.id);
        Some(Attachment {
            id: self.id,
            filename: self.filename.clone(),
            size: self.size(),
            content_type: self.content_type.clone()?,
            width: self.width.map(|w| w.max(0) as u32),
            height: self.height.map(|h| h.max(0) as u32),
            thumbnail_url: self
                .thumbnail_type
                .as_ref()
                .map(|_| format!("{url}/thumbnail")),
            url,
        })
    }
}

/// The columns of an [`Upload`].
macro_rules! upload_columns {
    () => {
        "id, user_id, conversation_id, filename, claimed_type, size, received, parts, created_at, \
         expires_at, completed_at, content_type, width, height, thumbnail_type, message_id"
    };
}

/// A new upload.
pub struct NewUpload<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub conversation_id: Uuid,
    pub filename: &'a str,
    pub claimed_type: &'a str,
    pub size: u64,
    pub expires_at: Timestamp,
}

/// What a completed upload turned out to be.
pub struct Measured<'a> {
    pub content_type: &'a str,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub thumbnail_type: Option<&'a str>,
}

/// The outcome of a send with attachments.
pub enum WithAttachments {
    Stored(Box<Message>),
    /// Not stored, as [`Store::insert_message`]'s `None`: a clientId used before, a sender who is
    /// not a member, or a direct recipient gone.
    NotStored,
    /// An upload is not the sender's, not complete, of another conversation or attached already.
    InvalidAttachments,
}

impl Store {
    #[tracing::instrument(skip_all)]
    pub async fn create_upload(&self, new: &NewUpload<'_>) -> Result<Upload, StoreError> {
        let now = Timestamp::now();
        const SQL: &str = concat!(
            "INSERT INTO uploads (id, user_id, conversation_id, filename, claimed_type, size,
                                  created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
            upload_columns!()
        );
        let row = on_pool!(self, pool => sqlx::query_as::<_, Upload>(SQL)
            .bind(new.id)
            .bind(new.user_id)
            .bind(new.conversation_id)
            .bind(new.filename)
            .bind(new.claimed_type)
            .bind(new.size as i64)
            .bind(now)
            .bind(new.expires_at)
            .fetch_one(pool)
            .await)?;
        Ok(row)
    }

    #[tracing::instrument(skip_all)]
    pub async fn find_upload(&self, id: Uuid) -> Result<Option<Upload>, StoreError> {
        const SQL: &str = concat!("SELECT ", upload_columns!(), " FROM uploads WHERE id = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, Upload>(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// Records a part that took an unfinished upload from `from` to `from + part.size`, unless
    /// another request moved it meanwhile (false: the part is not the upload's).
    #[tracing::instrument(skip_all)]
    pub async fn add_upload_part(
        &self,
        upload: &Upload,
        from: u64,
        part: Part,
    ) -> Result<bool, StoreError> {
        let mut parts = upload.parts();
        let to = from + part.size;
        parts.push(part);
        let parts = serde_json::to_string(&parts).expect("parts serialize");
        let done = on_pool!(self, pool => sqlx::query(
            "UPDATE uploads SET received = $3, parts = $4
             WHERE id = $1 AND received = $2 AND completed_at IS NULL",
        )
        .bind(upload.id)
        .bind(from as i64)
        .bind(to as i64)
        .bind(&parts)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(done == 1)
    }

    /// Marks a fully received upload complete, with what its bytes are; false when it already was.
    #[tracing::instrument(skip_all)]
    pub async fn complete_upload(
        &self,
        id: Uuid,
        measured: &Measured<'_>,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query(
            "UPDATE uploads SET completed_at = $2, content_type = $3, width = $4, height = $5,
                                thumbnail_type = $6
             WHERE id = $1 AND completed_at IS NULL AND received = size",
        )
        .bind(id)
        .bind(Timestamp::now())
        .bind(measured.content_type)
        .bind(measured.width.map(|w| w as i32))
        .bind(measured.height.map(|h| h as i32))
        .bind(measured.thumbnail_type)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(done == 1)
    }

    /// Takes the upload's progress slot: true (and the slot is taken) when no `uploadProgress`
    /// went out for it since `not_since`, on any node.
    #[tracing::instrument(skip_all)]
    pub async fn take_progress_slot(
        &self,
        id: Uuid,
        now: Timestamp,
        not_since: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query(
            "UPDATE uploads SET progress_at = $2
             WHERE id = $1 AND (progress_at IS NULL OR progress_at <= $3)",
        )
        .bind(id)
        .bind(now)
        .bind(not_since)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(done == 1)
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_upload(&self, id: Uuid) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Uploads whose files should go, up to `limit`: unattached ones past their expiry, those
    /// of deleted messages, and those of deleted users.
    #[tracing::instrument(skip_all)]
    pub async fn uploads_to_remove(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<Upload>, StoreError> {
        const SQL: &str = concat!("SELECT ", upload_columns!(), " FROM uploads u
             WHERE (u.message_id IS NULL AND u.expires_at < $1)
                OR (u.message_id IS NOT NULL AND EXISTS
                      (SELECT 1 FROM messages m WHERE m.id = u.message_id AND m.deleted_at IS NOT NULL))
                OR NOT EXISTS (SELECT 1 FROM users WHERE users.id = u.user_id)
             LIMIT $2");
        let rows = on_pool!(self, pool => sqlx::query_as::<_, Upload>(SQL)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The uploads attached to a message.
    #[tracing::instrument(skip_all)]
    pub async fn uploads_of_message(&self, message_id: Uuid) -> Result<Vec<Upload>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE message_id = $1"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, Upload>(SQL)
            .bind(message_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The uploads of a user, attached or not.
    #[tracing::instrument(skip_all)]
    pub async fn uploads_of_user(&self, user: Uuid) -> Result<Vec<Upload>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE user_id = $1"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, Upload>(SQL)
            .bind(user)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// Stores a message with the completed uploads `attachment_ids` of its sender for its
    /// conversation, none attached before: the uploads are claimed and the message inserted in
    /// one transaction, so an upload is on one message at most and a message has all of its
    /// attachments or is not stored.
    #[tracing::instrument(skip_all)]
    pub async fn insert_with_attachments(
        &self,
        out: &Outgoing<'_>,
        attachment_ids: &[Uuid],
    ) -> Result<WithAttachments, StoreError> {
        let id = Uuid::now_v7();
        let now = Timestamp::now();
        const CLAIM: &str = concat!(
            "UPDATE uploads SET message_id = $2, position = $3
             WHERE id = $1 AND user_id = $4 AND conversation_id = $5
               AND completed_at IS NOT NULL AND message_id IS NULL
             RETURNING ",
            upload_columns!()
        );
        let mentions = serde_json::to_string(out.mentions).expect("ids serialize");
        let system = out
            .system
            .map(|s| serde_json::to_string(s).expect("a system event serializes"));
        let outcome = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut attachments = Vec::with_capacity(attachment_ids.len());
            for (position, upload_id) in attachment_ids.iter().enumerate() {
                let claimed = sqlx::query_as::<_, Upload>(CLAIM)
                    .bind(upload_id)
                    .bind(id)
                    .bind(position as i32)
                    .bind(out.from)
                    .bind(out.conversation_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                match claimed.as_ref().and_then(Upload::attachment) {
                    Some(attachment) => attachments.push(attachment),
                    // Dropping the transaction rolls the claims back.
                    None => return Ok(WithAttachments::InvalidAttachments),
                }
            }
            let attachments = serde_json::to_string(&attachments).expect("attachments serialize");
            let row = sqlx::query_as::<_, MessageRow>(INSERT_MESSAGE)
                .bind(id)
                .bind(out.conversation_id)
                .bind(out.kind.as_str())
                .bind(out.from)
                .bind(out.to)
                .bind(out.content)
                .bind(out.client_id)
                .bind(out.reply_to_id)
                .bind(&mentions)
                .bind(&system)
                .bind(now)
                .bind(&attachments)
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                Some(row) => {
                    tx.commit().await?;
                    WithAttachments::Stored(Box::new(Message::from(row)))
                }
                None => WithAttachments::NotStored,
            }
        });
        Ok(outcome)
    }

    /// Takes the attachments off every message a user sent (their account is being deleted;
    /// the sweep then removes the files).
    #[tracing::instrument(skip_all)]
    pub async fn drop_user_attachments(&self, user: Uuid) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE messages SET attachments = NULL, changed_at = $2
             WHERE sender_id = $1 AND attachments IS NOT NULL",
        )
        .bind(user)
        .bind(Timestamp::now())
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}
