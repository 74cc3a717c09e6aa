//! Direct messages, one code path for REST and sockets: store first, then push `newMessage` to
//! the recipient and `messageSent` to the sender's devices; delivery acks, read receipts,
//! history, conversations and sync.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{ClientId, MAX_PAGE, Outgoing, PageLimit};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use crate::store::{Message, Notification, User};
use crate::timestamp::Timestamp;
use crate::users::DirectoryEntry;
use utoipa::ToSchema;

/// How long a recipient's socket has to acknowledge `newMessage` for it to count as delivered.
const DELIVERY_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// The result of a send.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sent {
    pub message: Message,
    /// False when this `clientId` had been sent before and the stored message is returned.
    #[serde(skip)]
    pub created: bool,
    /// The recipient had a live socket.
    pub delivered: bool,
    /// False when the real-time layer failed (the message is stored all the same).
    pub realtime: bool,
}

/// Sends a direct message from `sender` to `to`.
pub async fn send(
    state: &AppState,
    sender: &User,
    to: Uuid,
    outgoing: Outgoing,
) -> ApiResult<Sent> {
    let content = outgoing.content.as_str();
    let client_id = outgoing.client_id.as_ref().map(ClientId::as_str);
    if let Err(wait) = state.message_limits.take(&sender.id).await {
        let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut err = ApiError::too_many(ErrorCode::RateLimited, retry_after);
        err.message = "you are sending messages too fast".to_owned();
        return Err(err);
    }
    // The insert itself checks the clientId and the recipient, so a new message to an active
    // user costs one write (batched with others on SQLite) and no read.
    let mut attempts = 0;
    let message = loop {
        if let Some(message) = state
            .store
            .insert_message(sender.id, to, content, client_id)
            .await?
        {
            break message;
        }
        if let Some(sent) = not_stored(state, sender, to, client_id).await? {
            return Ok(sent);
        }
        // The recipient was (re)activated between the insert and the look-up: once more.
        attempts += 1;
        if attempts == 2 {
            return Err(ApiError::internal(
                "a message to an active user was not stored",
            ));
        }
    };
    state.metrics.message_stored();
    // Delivered means a socket that gets `newMessage` (not one that only listens to notifications).
    let delivered = state.realtime.reaches(to, "newMessage").await;
    let realtime = push_new_message(state, &message).await;
    tracing::debug!(category = "message", message_id = %message.id, delivered, realtime, "📨 message sent");
    Ok(Sent {
        message,
        created: true,
        delivered,
        realtime,
    })
}

/// Why a send was not stored, in the order a client should hear it: a retry of an earlier send
/// (the same message again, not an error), then an unknown or disabled recipient. `None` when
/// neither holds any more.
async fn not_stored(
    state: &AppState,
    sender: &User,
    to: Uuid,
    client_id: Option<&str>,
) -> ApiResult<Option<Sent>> {
    if let Some(id) = client_id
        && let Some(message) = state.store.find_message_by_client_id(sender.id, id).await?
    {
        return Ok(Some(already_sent(state, message).await));
    }
    let recipient = state
        .store
        .find_user(to)
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    if !recipient.is_active {
        return Err(ApiError::recipient_disabled());
    }
    Ok(None)
}

async fn already_sent(state: &AppState, message: Message) -> Sent {
    let delivered =
        message.delivered_at.is_some() || state.realtime.reaches(message.to, "newMessage").await;
    Sent {
        message,
        created: false,
        delivered,
        realtime: true,
    }
}

/// `newMessage` to the recipient on both servers and every node (watching for their acks),
/// `messageSent` to the sender.
async fn push_new_message(state: &AppState, message: &Message) -> bool {
    let payload = json!({ "message": message });
    let (on_ack_state, id, to) = (state.clone(), message.id, message.to);
    let on_ack = move || {
        let state = on_ack_state.clone();
        async move { mark_delivered(&state, id, to).await }
    };
    let recipient_ok = state
        .realtime
        .emit_to_user_with_acks(
            message.to,
            "newMessage",
            &payload,
            DELIVERY_ACK_TIMEOUT,
            on_ack,
        )
        .await;
    let sender_ok = state
        .realtime
        .emit_to_user(message.from, "messageSent", &payload)
        .await;
    recipient_ok && sender_ok
}

/// A recipient's socket acknowledged `newMessage`: record it and tell the sender.
async fn mark_delivered(state: &AppState, id: Uuid, recipient: Uuid) {
    match state.store.mark_delivered(id, recipient).await {
        Ok(Some(message)) => {
            let payload = json!({
                "messageId": message.id,
                "to": message.to,
                "deliveredAt": message.delivered_at,
            });
            state
                .realtime
                .emit_to_user(message.from, "messageDelivered", &payload)
                .await;
        }
        Ok(None) => {}
        Err(e) => tracing::error!(category = "error", error = %e, "❌ recording a delivery failed"),
    }
}

/// Marks read what `other` sent to `reader`, up to `up_to`; tells `other` with `messagesRead`.
pub async fn mark_read(state: &AppState, reader: Uuid, other: Uuid, up_to: Uuid) -> ApiResult<u64> {
    let now = Timestamp::now();
    let count = state.store.mark_read(reader, other, up_to, now).await?;
    if count > 0 {
        let payload = json!({ "by": reader, "upTo": up_to, "readAt": now });
        state
            .realtime
            .emit_to_user(other, "messagesRead", &payload)
            .await;
    }
    Ok(count)
}

/// A page of messages and whether there are more.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// The conversation with `other`, newest first.
pub async fn history(
    state: &AppState,
    me: Uuid,
    other: Uuid,
    before: Option<Uuid>,
    after: Option<Uuid>,
    limit: PageLimit,
) -> ApiResult<Page> {
    let limit = limit.get();
    let mut messages = state
        .store
        .conversation(me, other, before, after, limit + 1)
        .await?;
    let has_more = messages.len() as i64 > limit;
    messages.truncate(limit as usize);
    Ok(Page { messages, has_more })
}

/// What a device missed: messages and notifications after `since`, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPage {
    pub messages: Vec<Message>,
    pub has_more: bool,
    /// Notifications created after the `since` message (ids of both are time-ordered).
    pub notifications: Vec<Notification>,
    pub has_more_notifications: bool,
}

/// Everything to or from `me` after `since`, oldest first.
pub async fn sync(
    state: &AppState,
    me: Uuid,
    since: Option<Uuid>,
    limit: PageLimit,
) -> ApiResult<SyncPage> {
    let limit = limit.get();
    let mut messages = state.store.messages_since(me, since, limit + 1).await?;
    let has_more = messages.len() as i64 > limit;
    messages.truncate(limit as usize);
    let mut notifications = state
        .store
        .notifications_since(me, since, limit + 1)
        .await?;
    let has_more_notifications = notifications.len() as i64 > limit;
    notifications.truncate(limit as usize);
    Ok(SyncPage {
        messages,
        has_more,
        notifications,
        has_more_notifications,
    })
}

/// One entry of the conversation list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub user: DirectoryEntry,
    pub last_message: Message,
    pub unread_count: i64,
}

/// The caller's conversations, most recent first.
pub async fn conversations(state: &AppState, me: Uuid) -> ApiResult<Vec<Conversation>> {
    let rows = state.store.conversations(me, MAX_PAGE).await?;
    let unread: HashMap<Uuid, i64> = state.store.unread_counts(me).await?.into_iter().collect();
    let presence = state.realtime.presence();
    Ok(rows
        .into_iter()
        .map(|row| Conversation {
            user: DirectoryEntry {
                id: row.other_id,
                name: row.other_name.unwrap_or_else(|| "Deleted user".to_owned()),
                avatar_url: row.other_avatar_url,
                online: presence.is_online(row.other_id),
            },
            unread_count: unread.get(&row.other_id).copied().unwrap_or(0),
            last_message: row.last_message,
        })
        .collect())
}
