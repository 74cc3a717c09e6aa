//! Attachments (SPEC §12): tus uploads into the object store, live `uploadProgress`, the
//! completed file sniffed, measured and thumbnailed, downloads for the conversation's members,
//! and the sweep that removes the files of expired uploads, deleted messages and deleted users.
//!
//! Any node takes any request of an upload: the offset and the list of parts are in the
//! database, the bytes in the store. A PATCH writes its bytes to a part of its own and commits
//! it only if the offset is still the one it started from, so two requests racing at the same
//! offset cannot both count. The PATCH runs in a task of its own: when the client drops the
//! connection, the bytes that arrived are still committed, and the upload resumes from there.

pub mod media;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use futures_util::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use crate::storage;
use crate::store::{DIRECT, Measured, NewUpload, Part, Upload, User};
use crate::timestamp::Timestamp;

/// At most one `uploadProgress` per upload in this interval.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// The longest filename kept (in characters).
const FILENAME_MAX: usize = 255;
/// How many uploads one sweep removes at most.
const SWEEP_BATCH: i64 = 100;

static DECODING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// What a client asks to upload (tus `Upload-Length` and `Upload-Metadata`).
pub struct NewUploadRequest {
    pub size: u64,
    pub filename: String,
    pub filetype: Option<String>,
    pub conversation_id: Uuid,
}

/// `uploadProgress`: how far an upload is.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub upload_id: Uuid,
    pub conversation_id: Uuid,
    pub from: Uuid,
    pub filename: String,
    pub size: u64,
    pub offset: u64,
}

/// Starts an upload of `me`'s to a conversation they are a member of.
pub async fn create(state: &AppState, me: &User, request: NewUploadRequest) -> ApiResult<Upload> {
    if request.size > state.config.upload_max_size {
        return Err(too_large(state.config.upload_max_size));
    }
    crate::messaging::take_message_budget(state, me.id).await?;
    state
        .store
        .membership(request.conversation_id, me.id)
        .await?
        .ok_or_else(ApiError::conversation_not_found)?;
    let filename = clean_filename(&request.filename);
    let claimed_type = request
        .filetype
        .as_deref()
        .and_then(clean_content_type)
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let new = NewUpload {
        id: Uuid::now_v7(),
        user_id: me.id,
        conversation_id: request.conversation_id,
        filename: &filename,
        claimed_type: &claimed_type,
        size: request.size,
        expires_at: Timestamp::now().plus(state.config.upload_ttl),
    };
    let upload = state.store.create_upload(&new).await?;
    tracing::debug!(category = "message", upload_id = %upload.id, size = request.size, "📨 upload started");
    if upload.size == 0 {
        return complete(state, &upload).await;
    }
    Ok(upload)
}

/// 413 `payload_too_large` for an upload over `UPLOAD_MAX_SIZE`.
pub fn too_large(max: u64) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("an upload may be at most {max} bytes"),
    )
}

/// 404 `upload_not_found`: no such upload, or not the caller's, or expired.
pub fn upload_not_found() -> ApiError {
    ApiError::not_found(ErrorCode::UploadNotFound, "no such upload")
}

/// 404 `attachment_not_found`: no such attachment, or one the caller may not see.
pub fn attachment_not_found() -> ApiError {
    ApiError::not_found(ErrorCode::AttachmentNotFound, "no such attachment")
}

/// An upload of `me`'s that has not expired. One whose last byte arrived but that a crash left
/// unjoined is completed now.
pub async fn own(state: &AppState, me: &User, id: Uuid) -> ApiResult<Upload> {
    let upload = state
        .store
        .find_upload(id)
        .await?
        .filter(|u| u.user_id == me.id)
        .filter(|u| u.message_id.is_some() || u.expires_at > Timestamp::now())
        .ok_or_else(upload_not_found)?;
    if upload.completed_at.is_none() && upload.received() == upload.size() {
        return complete(state, &upload).await;
    }
    Ok(upload)
}

/// A PATCH: appends `body` at `offset` of `me`'s upload `id`; answers the new offset.
/// `declared` is the request's `Content-Length`, when it has one.
pub async fn append(
    state: &AppState,
    me: &User,
    id: Uuid,
    offset: u64,
    declared: Option<u64>,
    body: Body,
) -> ApiResult<u64> {
    let upload = own(state, me, id).await?;
    if offset != upload.received() {
        return Err(ApiError::conflict(
            ErrorCode::OffsetMismatch,
            format!(
                "Upload-Offset is {offset} but the upload is at {}",
                upload.received()
            ),
        ));
    }
    let remaining = upload.size() - offset;
    if declared.is_some_and(|len| len > remaining) {
        return Err(past_the_end(remaining));
    }
    if upload.completed_at.is_some() {
        return Ok(offset);
    }
    let audience = Audience::of(state, &upload).await?;
    // In a task of its own: a dropped connection drops this request's future, not the write of
    // what already arrived.
    let task = tokio::spawn(receive(state.clone(), upload, audience, body));
    task.await
        .map_err(|e| ApiError::internal(format!("an upload task failed: {e}")))?
}

fn past_the_end(remaining: u64) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("the body goes past Upload-Length: {remaining} bytes remain"),
    )
}

/// Who hears of an upload's progress: the uploader's sockets and the other members'.
struct Audience {
    uploader: Uuid,
    /// The other side of a direct conversation; `None` for a group (its room).
    direct_other: Option<Uuid>,
    is_group: bool,
}

impl Audience {
    async fn of(state: &AppState, upload: &Upload) -> ApiResult<Self> {
        let membership = state
            .store
            .membership(upload.conversation_id, upload.user_id)
            .await?
            .ok_or_else(upload_not_found)?;
        if membership.kind != DIRECT {
            return Ok(Self {
                uploader: upload.user_id,
                direct_other: None,
                is_group: true,
            });
        }
        let members = state.store.member_ids(upload.conversation_id).await?;
        Ok(Self {
            uploader: upload.user_id,
            direct_other: members.into_iter().find(|m| *m != upload.user_id),
            is_group: false,
        })
    }

    async fn tell(&self, state: &AppState, upload: &Upload, offset: u64) {
        let progress = Progress {
            upload_id: upload.id,
            conversation_id: upload.conversation_id,
            from: upload.user_id,
            filename: upload.filename.clone(),
            size: upload.size(),
            offset,
        };
        if self.is_group {
            state
                .realtime
                .emit_to_group(upload.conversation_id, None, "uploadProgress", &progress)
                .await;
            return;
        }
        state
            .realtime
            .emit_to_user(self.uploader, "uploadProgress", &progress)
            .await;
        if let Some(other) = self.direct_other {
            state
                .realtime
                .emit_to_user(other, "uploadProgress", &progress)
                .await;
        }
    }
}

/// Streams a PATCH body into a new part and commits it; completes the upload on its last byte.
async fn receive(
    state: AppState,
    upload: Upload,
    audience: Audience,
    body: Body,
) -> ApiResult<u64> {
    let from = upload.received();
    let remaining = upload.size() - from;
    let key = storage::part_key(upload.id, from);
    let mut writer = state.storage.writer(&key).await.map_err(storage_error)?;
    let mut stream = body.into_data_stream();
    let mut too_long = false;
    while let Some(chunk) = stream.next().await {
        // A body that breaks off (the client went away) ends the part where it broke.
        let Ok(chunk) = chunk else { break };
        if writer.written() + chunk.len() as u64 > remaining {
            too_long = true;
            break;
        }
        if let Err(e) = writer.write(&chunk).await {
            writer.abort().await;
            return Err(storage_error(e));
        }
        progress(&state, &audience, &upload, from + writer.written()).await;
    }
    let size = writer.written();
    if too_long {
        writer.abort().await;
        return Err(past_the_end(remaining));
    }
    if size == 0 {
        writer.abort().await;
        return Ok(from);
    }
    writer.finish().await.map_err(storage_error)?;
    let part = Part {
        offset: from,
        size,
        key: key.clone(),
    };
    if !state.store.add_upload_part(&upload, from, part).await? {
        // Another request moved the upload meanwhile: this part is not its.
        let _ = state.storage.remove(&[key]).await;
        return Err(ApiError::conflict(
            ErrorCode::OffsetMismatch,
            "the upload moved on while this request was sending; HEAD it for its offset",
        ));
    }
    state.metrics.upload_received(size);
    let offset = from + size;
    if offset < upload.size() {
        progress(&state, &audience, &upload, offset).await;
    } else {
        forget_progress(upload.id);
        let upload = state
            .store
            .find_upload(upload.id)
            .await?
            .ok_or_else(upload_not_found)?;
        let upload = complete(&state, &upload).await?;
        audience.tell(&state, &upload, offset).await;
    }
    Ok(offset)
}

/// When this node last tried to tell each unfinished upload's progress. It tries at most once a
/// second per upload (at any chunk of any PATCH, and at the end of each PATCH), and the
/// database's slot makes it once a second across nodes.
static PROGRESS_TRIES: LazyLock<Mutex<HashMap<Uuid, Instant>>> = LazyLock::new(Mutex::default);
/// Entries older than this are dropped when the map grows past [`PROGRESS_TRIES_MAX`].
const PROGRESS_TRIES_KEPT: Duration = Duration::from_secs(60);
const PROGRESS_TRIES_MAX: usize = 10_000;

/// Tells how far an upload is, unless its progress was told less than a second ago.
async fn progress(state: &AppState, audience: &Audience, upload: &Upload, offset: u64) {
    let now = Instant::now();
    {
        let mut tries = PROGRESS_TRIES.lock().unwrap_or_else(|e| e.into_inner());
        if tries
            .get(&upload.id)
            .is_some_and(|tried| now.duration_since(*tried) < PROGRESS_EVERY)
        {
            return;
        }
        if tries.len() >= PROGRESS_TRIES_MAX {
            tries.retain(|_, tried| now.duration_since(*tried) < PROGRESS_TRIES_KEPT);
        }
        tries.insert(upload.id, now);
    }
    let at = Timestamp::now();
    let not_since = Timestamp::from_millis(at.as_millis() - PROGRESS_EVERY.as_millis() as i64);
    // A progress that cannot be told is skipped, never a reason to drop the bytes.
    match state
        .store
        .take_progress_slot(upload.id, at, not_since)
        .await
    {
        Ok(true) => audience.tell(state, upload, offset).await,
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(category = "warn", error = %e, "⚠️ could not take an upload's progress slot");
        }
    }
}

fn forget_progress(id: Uuid) {
    PROGRESS_TRIES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

/// Finds out what a fully received upload's bytes are (and an image's size and thumbnail) and
/// marks it complete. Its parts stay as they are: a download reads them one after the other, so
/// completing copies nothing. Safe to run again after a crash halfway.
async fn complete(state: &AppState, upload: &Upload) -> ApiResult<Upload> {
    let parts = upload.parts();
    let head = state
        .storage
        .head_bytes(&parts, media::SNIFF_BYTES)
        .await
        .map_err(storage_error)?;
    let content_type = media::sniff(&head, &upload.claimed_type);
    let inspected = if media::is_image(&content_type) {
        inspect_image(state, &parts, &content_type).await?
    } else {
        None
    };
    let thumbnail_type = match inspected.as_ref().and_then(|i| i.thumbnail.as_ref()) {
        Some((bytes, kind)) => {
            state
                .storage
                .put(&storage::thumbnail_key(upload.id), bytes.clone())
                .await
                .map_err(storage_error)?;
            Some(*kind)
        }
        None => None,
    };
    let measured = Measured {
        content_type: &content_type,
        width: inspected.as_ref().map(|i| i.width),
        height: inspected.as_ref().map(|i| i.height),
        thumbnail_type,
    };
    if state.store.complete_upload(upload.id, &measured).await? {
        state.metrics.upload_completed();
    }
    let upload = state
        .store
        .find_upload(upload.id)
        .await?
        .ok_or_else(upload_not_found)?;
    tracing::info!(category = "message", upload_id = %upload.id, content_type, "📨 upload complete");
    Ok(upload)
}

/// Copies an image to a temporary file (decoders need to seek) and inspects it off the async
/// threads.
async fn inspect_image(
    state: &AppState,
    parts: &[Part],
    content_type: &str,
) -> ApiResult<Option<media::Inspected>> {
    let temp = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::internal(format!("a temporary file: {e}")))?;
    let mut out = tokio::fs::File::from_std(
        temp.reopen()
            .map_err(|e| ApiError::internal(format!("a temporary file: {e}")))?,
    );
    let mut bytes = state.storage.read_parts(parts, None);
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.map_err(storage_error)?;
        tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
            .await
            .map_err(|e| ApiError::internal(format!("a temporary file: {e}")))?;
    }
    tokio::io::AsyncWriteExt::flush(&mut out)
        .await
        .map_err(|e| ApiError::internal(format!("a temporary file: {e}")))?;
    drop(out);
    let content_type = content_type.to_owned();
    // One image decodes at a time on a node: each may take up to 8 bytes a pixel of memory.
    let _decoding = DECODING.acquire().await;
    let inspected = tokio::task::spawn_blocking(move || media::inspect(temp.path(), &content_type))
        .await
        .map_err(|e| ApiError::internal(format!("an image decode failed: {e}")))?;
    Ok(inspected)
}

/// A DELETE (tus termination): an upload not attached to a message is abandoned, its bytes
/// removed.
pub async fn abandon(state: &AppState, me: &User, id: Uuid) -> ApiResult<()> {
    let upload = state
        .store
        .find_upload(id)
        .await?
        .filter(|u| u.user_id == me.id)
        .ok_or_else(upload_not_found)?;
    if upload.message_id.is_some() {
        return Err(ApiError::forbidden(
            ErrorCode::Forbidden,
            "this upload is attached to a message: delete the message instead",
        ));
    }
    remove(state, &upload).await
}

/// Removes an upload's files, then its row.
async fn remove(state: &AppState, upload: &Upload) -> ApiResult<()> {
    let thumbnail = [storage::thumbnail_key(upload.id)];
    state
        .storage
        .remove(&thumbnail)
        .await
        .map_err(storage_error)?;
    state
        .storage
        .remove_under(&format!("uploads/{}", upload.id))
        .await
        .map_err(storage_error)?;
    state.store.delete_upload(upload.id).await?;
    state.metrics.upload_removed();
    Ok(())
}

/// A deleted message's files go now (the sweep catches what this misses).
pub async fn message_deleted(state: &AppState, message_id: Uuid) {
    let uploads = state.store.uploads_of_message(message_id).await;
    remove_all(state, uploads).await;
}

/// A deleted user's files go now (the sweep catches what this misses).
pub async fn user_deleted(state: &AppState, user: Uuid) {
    let uploads = state.store.uploads_of_user(user).await;
    remove_all(state, uploads).await;
}

async fn remove_all(state: &AppState, uploads: Result<Vec<Upload>, crate::store::StoreError>) {
    let uploads = match uploads {
        Ok(uploads) => uploads,
        Err(e) => {
            tracing::warn!(category = "warn", error = %e, "⚠️ could not list files to remove; the sweep will remove them");
            return;
        }
    };
    for upload in uploads {
        if let Err(e) = remove(state, &upload).await {
            tracing::warn!(category = "warn", error = %e.message, "⚠️ could not remove a file; the sweep will");
        }
    }
}

/// What a download serves: the bytes of `parts`, one after the other.
pub struct Download {
    pub parts: Vec<Part>,
    pub size: u64,
    pub content_type: String,
    pub filename: String,
    pub etag: String,
}

/// The file (or thumbnail) of attachment `id` for `me`: a member of its conversation when it is
/// on a message that is not deleted, its uploader before it is attached.
pub async fn download(
    state: &AppState,
    me: &User,
    id: Uuid,
    thumbnail: bool,
) -> ApiResult<Download> {
    let upload = state
        .store
        .find_upload(id)
        .await?
        .filter(|u| u.completed_at.is_some())
        .ok_or_else(attachment_not_found)?;
    let visible = match upload.message_id {
        Some(message_id) => {
            let live = state
                .store
                .find_message(message_id)
                .await?
                .is_some_and(|m| m.deleted_at.is_none());
            live && state
                .store
                .membership(upload.conversation_id, me.id)
                .await?
                .is_some()
        }
        None => upload.user_id == me.id,
    };
    if !visible {
        return Err(attachment_not_found());
    }
    let content_type = upload.content_type.clone().unwrap_or_default();
    if thumbnail {
        let kind = upload
            .thumbnail_type
            .clone()
            .ok_or_else(attachment_not_found)?;
        let key = storage::thumbnail_key(id);
        let size = match state.storage.size(&key).await {
            Ok(size) => size,
            Err(object_store::Error::NotFound { .. }) => return Err(attachment_not_found()),
            Err(e) => return Err(storage_error(e)),
        };
        return Ok(Download {
            parts: vec![Part {
                offset: 0,
                size,
                key,
            }],
            size,
            content_type: kind,
            filename: format!("thumbnail-{}", upload.filename),
            etag: format!("\"{id}-thumbnail\""),
        });
    }
    Ok(Download {
        parts: upload.parts(),
        size: upload.size(),
        content_type,
        filename: upload.filename.clone(),
        etag: format!("\"{id}\""),
    })
}

/// Every so often, removes the files (then the rows) of unattached uploads past their expiry,
/// of deleted messages and of deleted users. Every node runs it; removals are idempotent.
pub fn start_sweeper(state: &AppState) {
    let state = state.clone();
    let every =
        (state.config.upload_ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            sweep(&state).await;
        }
    });
}

/// One round of the sweep; answers how many uploads it removed.
pub async fn sweep(state: &AppState) -> usize {
    let uploads = match state
        .store
        .uploads_to_remove(Timestamp::now(), SWEEP_BATCH)
        .await
    {
        Ok(uploads) => uploads,
        Err(e) => {
            tracing::warn!(category = "warn", error = %e, "⚠️ the upload sweep could not read the database");
            return 0;
        }
    };
    let mut removed = 0;
    for upload in &uploads {
        match remove(state, upload).await {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(category = "warn", error = %e.message, "⚠️ the upload sweep could not remove a file");
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            category = "ok",
            removed,
            "✅ swept expired and deleted uploads"
        );
    }
    removed
}

/// A filename as it is kept: its last path segment, without control characters (NUL
/// included), at most 255 characters; `file` when nothing is left.
pub fn clean_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(FILENAME_MAX)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// A claimed content type kept only when it is one (`type/subtype`, lowercased, parameters
/// dropped).
pub fn clean_content_type(raw: &str) -> Option<String> {
    let essence = raw.split(';').next()?.trim().to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let (kind, sub) = essence.split_once('/')?;
    (token(kind) && token(sub)).then_some(essence)
}

/// 503 `unavailable` with `Retry-After`: the file storage failed or does not answer (logged
/// with its cause; `/readyz` names it).
pub fn storage_error(e: object_store::Error) -> ApiError {
    tracing::warn!(category = "error", error = %e, "⚠️ the attachment storage failed");
    let mut err = ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "the service cannot reach its file storage; try again shortly",
    );
    err.retry_after = Some(2);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_lose_paths_and_control_characters() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\Users\\me\\cat.png"), "cat.png");
        assert_eq!(clean_filename("a\0b\nc.txt"), "abc.txt");
        assert_eq!(clean_filename(".."), "file");
        assert_eq!(clean_filename("dir/"), "file");
        assert_eq!(clean_filename(&"x".repeat(1000)).chars().count(), 255);
        assert_eq!(clean_filename("résumé 2026.pdf"), "résumé 2026.pdf");
    }

    #[test]
    fn claimed_types_are_kept_only_when_they_are_types() {
        assert_eq!(
            clean_content_type("Image/PNG").as_deref(),
            Some("image/png")
        );
        assert_eq!(
            clean_content_type("text/plain; charset=utf-8").as_deref(),
            Some("text/plain")
        );
        assert_eq!(clean_content_type("nonsense"), None);
        assert_eq!(clean_content_type("text/html\r\nX-Evil: 1"), None);
        assert_eq!(clean_content_type("a/b/c"), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever a client names its file, what is kept is one harmless name.
        #[test]
        fn any_filename_is_kept_as_one_harmless_name(name in ".*") {
            let kept = clean_filename(&name);
            proptest::prop_assert!(!kept.is_empty() && kept.chars().count() <= FILENAME_MAX);
            proptest::prop_assert!(!kept.contains(['/', '\\']) && !kept.chars().any(char::is_control));
            proptest::prop_assert!(kept != "." && kept != "..");
        }

        /// A claimed type is kept only as a `type/subtype` that makes a header value.
        #[test]
        fn any_claimed_type_is_kept_only_as_a_type(raw in ".*") {
            if let Some(kind) = clean_content_type(&raw) {
                proptest::prop_assert_eq!(kind.matches('/').count(), 1);
                proptest::prop_assert!(axum::http::HeaderValue::from_str(&kind).is_ok());
            }
        }

        /// Any bytes under any claim get a type, never a panic; a claimed image is never
        /// believed without the bytes.
        #[test]
        fn any_bytes_get_a_type(head in proptest::collection::vec(0u8..=255, 0..600), claimed in "(image|text|application)/[a-z+.-]{1,12}") {
            let kind = media::sniff(&head, &claimed);
            proptest::prop_assert!(!kind.is_empty());
            if media::is_image(&kind) {
                proptest::prop_assert!(infer::get(&head).is_some_and(|k| k.mime_type() == kind));
            }
        }
    }
}
