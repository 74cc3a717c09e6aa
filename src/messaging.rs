//! Messages, one code path for REST and sockets and for direct and group conversations: store
//! first, then push `newMessage` to the other members and `messageSent` to the sender's devices;
//! delivery acks and read receipts of direct messages, read pointers, history and sync.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{
    ChangeCursor, ClientId, Outgoing, PageLimit, invalid_attachment, invalid_reply,
};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use crate::store::{
    DIRECT, Message, MessageKind, Notification, OutgoingMessage, User, WithAttachments,
};
use crate::timestamp::Timestamp;

/// How long a recipient's socket has to acknowledge `newMessage` for it to count as delivered.
const DELIVERY_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a message goes: to a user (their direct conversation, made on the first message) or to
/// a conversation by id.
#[derive(Clone, Copy, Debug)]
pub enum Destination {
    User(Uuid),
    Conversation(Uuid),
}

/// A conversation a message goes to, as the sender's membership resolved it.
#[derive(Clone, Copy, Debug)]
pub enum Place {
    /// A direct conversation, and the other side (the sender when they write to themselves).
    Direct {
        conversation_id: Uuid,
        to: Uuid,
    },
    Group {
        conversation_id: Uuid,
    },
}

impl Place {
    pub fn conversation_id(self) -> Uuid {
        match self {
            Self::Direct {
                conversation_id, ..
            }
            | Self::Group { conversation_id } => conversation_id,
        }
    }
}

/// The result of a send.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sent {
    pub message: Message,
    /// False when this `clientId` had been sent before and the stored message is returned.
    #[serde(skip)]
    pub created: bool,
    /// The recipient (in a group: at least one other member) had a live socket.
    pub delivered: bool,
    /// False when the real-time layer failed (the message is stored all the same).
    pub realtime: bool,
}

/// Sends a message from `sender`, mentioning `mentions` (members of the conversation).
pub async fn send(
    state: &AppState,
    sender: &User,
    to: Destination,
    outgoing: Outgoing,
    mentions: &[Uuid],
) -> ApiResult<Sent> {
    let content = outgoing.content.as_str();
    let client_id = outgoing.client_id.as_ref().map(ClientId::as_str);
    take_message_budget(state, sender.id).await?;
    let place = resolve(state, sender.id, to).await?;
    // Read once for both the mentions and `delivered`.
    let members = members_of(state, sender.id, place).await?;
    let mentions = check_mentions(&members, mentions)?;
    if let Some(reply_to) = outgoing.reply_to {
        check_reply(state, place.conversation_id(), reply_to).await?;
    }
    let recipient = match place {
        Place::Direct { to, .. } => Some(to),
        Place::Group { .. } => None,
    };
    let out = OutgoingMessage {
        conversation_id: place.conversation_id(),
        kind: MessageKind::Text,
        from: sender.id,
        to: recipient,
        content,
        client_id,
        reply_to_id: outgoing.reply_to,
        mentions: &mentions,
        system: None,
    };
    // The insert itself checks the clientId, the membership and a direct recipient, so a new
    // message costs one write (batched with others on SQLite) and no read.
    let mut attempts = 0;
    let message = loop {
        if let Some(message) = insert(state, &out, &outgoing.attachments).await? {
            break message;
        }
        if let Some(sent) = not_stored(state, sender, place, client_id).await? {
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
    let delivered = delivered(state, sender.id, place, &members).await;
    let realtime = push_new_message(state, place, &message).await;
    tracing::debug!(category = "message", message_id = %message.id, delivered, realtime, "📨 message sent");
    Ok(Sent {
        message,
        created: true,
        delivered,
        realtime,
    })
}

/// Stores a message, with its attachments claimed in the same transaction when it has any.
async fn insert(
    state: &AppState,
    out: &OutgoingMessage<'_>,
    attachments: &[Uuid],
) -> ApiResult<Option<Message>> {
    if attachments.is_empty() {
        return Ok(state.store.insert_message(out).await?);
    }
    match state
        .store
        .insert_with_attachments(out, attachments)
        .await?
    {
        WithAttachments::Stored(message) => Ok(Some(*message)),
        WithAttachments::NotStored => Ok(None),
        // A retry of a send that was stored finds its uploads attached already: the caller
        // answers the stored message.
        WithAttachments::InvalidAttachments
            if out.client_id.is_some()
                && state
                    .store
                    .find_message_by_client_id(out.from, out.client_id.unwrap_or_default())
                    .await?
                    .is_some() =>
        {
            Ok(None)
        }
        WithAttachments::InvalidAttachments => Err(invalid_attachment(
            "each attachment must be a completed upload of yours for this conversation, not attached before",
        )),
    }
}

/// Spends one of the user's message budget (sends, edits, reactions: 20 a second); 429
/// `rate_limited` when it is spent.
pub async fn take_message_budget(state: &AppState, user: Uuid) -> ApiResult<()> {
    state.message_limits.take(&user).await.map_err(|wait| {
        let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut err = ApiError::too_many(ErrorCode::RateLimited, retry_after);
        err.message = "you are sending messages too fast".to_owned();
        err
    })
}

/// A reply must answer a message of its own conversation that is not deleted: 400
/// `invalid_reply` otherwise (a message of a conversation the sender cannot see is as unknown).
async fn check_reply(state: &AppState, conversation_id: Uuid, reply_to: Uuid) -> ApiResult<()> {
    match state.store.find_message(reply_to).await? {
        Some(m) if m.conversation_id == conversation_id && m.deleted_at.is_none() => Ok(()),
        _ => Err(invalid_reply()),
    }
}

/// The conversation a message to `to` goes to: a user's direct conversation with `me` (made now
/// when it is the first message, once the recipient is known to exist and be active), or a
/// conversation `me` is a member of (anything else is not found).
pub async fn resolve(state: &AppState, me: Uuid, to: Destination) -> ApiResult<Place> {
    match to {
        Destination::User(user) => {
            let conversation_id = match state.store.find_direct_conversation(me, user).await? {
                Some(id) => id,
                None => {
                    let recipient = state
                        .store
                        .find_user(user)
                        .await?
                        .ok_or_else(ApiError::user_not_found)?;
                    if !recipient.is_active {
                        return Err(ApiError::recipient_disabled());
                    }
                    let id = state.store.direct_conversation(me, user).await?;
                    // A new conversation: each watches the other's presence from now on.
                    state.realtime.partners_met(&[me], &[user]).await;
                    id
                }
            };
            Ok(Place::Direct {
                conversation_id,
                to: user,
            })
        }
        Destination::Conversation(conversation_id) => {
            let membership = state
                .store
                .membership(conversation_id, me)
                .await?
                .ok_or_else(ApiError::conversation_not_found)?;
            if membership.kind != DIRECT {
                return Ok(Place::Group { conversation_id });
            }
            let members = state.store.member_ids(conversation_id).await?;
            let to = members.into_iter().find(|m| *m != me).unwrap_or(me);
            Ok(Place::Direct {
                conversation_id,
                to,
            })
        }
    }
}

/// The members of the conversation a message of `me` goes to (a direct one's two need no read).
async fn members_of(state: &AppState, me: Uuid, place: Place) -> ApiResult<Vec<Uuid>> {
    match place {
        Place::Direct { to, .. } => Ok(vec![me, to]),
        Place::Group { conversation_id } => Ok(state.store.member_ids(conversation_id).await?),
    }
}

/// The mentions of a send, once each; 400 `invalid_mention` for anyone who is not a member.
fn check_mentions(members: &[Uuid], mentions: &[Uuid]) -> ApiResult<Vec<Uuid>> {
    let mut unique = Vec::with_capacity(mentions.len());
    for id in mentions {
        if !members.contains(id) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidMention,
                "only members of the conversation can be mentioned",
            ));
        }
        if !unique.contains(id) {
            unique.push(*id);
        }
    }
    Ok(unique)
}

/// Why a send was not stored, in the order a client should hear it: a retry of an earlier send
/// (the same message again, not an error), then an unknown or disabled recipient, or a sender
/// who left the group meanwhile. `None` when none holds any more.
async fn not_stored(
    state: &AppState,
    sender: &User,
    place: Place,
    client_id: Option<&str>,
) -> ApiResult<Option<Sent>> {
    if let Some(id) = client_id
        && let Some(message) = state.store.find_message_by_client_id(sender.id, id).await?
    {
        return Ok(Some(already_sent(state, sender.id, message).await?));
    }
    match place {
        Place::Direct { to, .. } => {
            let recipient = state
                .store
                .find_user(to)
                .await?
                .ok_or_else(ApiError::user_not_found)?;
            if !recipient.is_active {
                return Err(ApiError::recipient_disabled());
            }
        }
        Place::Group { conversation_id } => {
            if state
                .store
                .membership(conversation_id, sender.id)
                .await?
                .is_none()
            {
                return Err(ApiError::conversation_not_found());
            }
        }
    }
    Ok(None)
}

async fn already_sent(state: &AppState, sender: Uuid, message: Message) -> ApiResult<Sent> {
    let delivered = message.delivered_at.is_some() || {
        let place = resolve(
            state,
            sender,
            Destination::Conversation(message.conversation_id),
        )
        .await
        .ok();
        match place {
            Some(place) => {
                let members = members_of(state, sender, place).await?;
                delivered(state, sender, place, &members).await
            }
            None => false,
        }
    };
    Ok(Sent {
        message,
        created: false,
        delivered,
        realtime: true,
    })
}

/// Whether a message to `place` reaches a live socket that gets `newMessage` (not one that only
/// listens to notifications): the recipient's, or in a group any other member's.
async fn delivered(state: &AppState, sender: Uuid, place: Place, members: &[Uuid]) -> bool {
    match place {
        Place::Direct { to, .. } => state.realtime.reaches(to, "newMessage").await,
        Place::Group { .. } => {
            let presence = state.realtime.presence();
            members
                .iter()
                .any(|m| *m != sender && presence.is_online(*m))
        }
    }
}

/// `newMessage` to the other members on both servers and every node (for a direct message,
/// watching for the recipient's acks), `messageSent` to the sender.
pub async fn push_new_message(state: &AppState, place: Place, message: &Message) -> bool {
    let payload = json!({ "message": message });
    let others_ok = match place {
        Place::Direct { to, .. } => {
            let (on_ack_state, id) = (state.clone(), message.id);
            let on_ack = move || {
                let state = on_ack_state.clone();
                async move { mark_delivered(&state, id, to).await }
            };
            state
                .realtime
                .emit_to_user_with_acks(to, "newMessage", &payload, DELIVERY_ACK_TIMEOUT, on_ack)
                .await
        }
        Place::Group { conversation_id } => {
            state
                .realtime
                .emit_to_group(conversation_id, Some(message.from), "newMessage", &payload)
                .await
        }
    };
    let sender_ok = state
        .realtime
        .emit_to_user(message.from, "messageSent", &payload)
        .await;
    others_ok && sender_ok
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

/// Marks read what `other` sent to `reader`, up to `up_to`, and moves the reader's pointer in
/// their direct conversation; tells `other` and the reader's other devices with `messagesRead`.
/// Answers how many messages became read.
pub async fn mark_read(state: &AppState, reader: Uuid, other: Uuid, up_to: Uuid) -> ApiResult<u64> {
    let now = Timestamp::now();
    let Some(conversation_id) = state.store.find_direct_conversation(reader, other).await? else {
        // Nothing was ever written between them: nothing to read.
        return Ok(0);
    };
    let count = state
        .store
        .mark_read(conversation_id, reader, up_to, now)
        .await?;
    state
        .store
        .move_read_pointer(conversation_id, reader, up_to, now)
        .await?;
    if count > 0 {
        let payload = json!({
            "conversationId": conversation_id,
            "by": reader,
            "upTo": up_to,
            "readAt": now,
        });
        state
            .realtime
            .emit_to_user(other, "messagesRead", &payload)
            .await;
        if other != reader {
            state
                .realtime
                .emit_to_user(reader, "messagesRead", &payload)
                .await;
        }
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

/// The direct conversation with `other`, newest first (empty before their first message).
pub async fn history(
    state: &AppState,
    me: Uuid,
    other: Uuid,
    before: Option<Uuid>,
    after: Option<Uuid>,
    limit: PageLimit,
) -> ApiResult<Page> {
    let Some(conversation_id) = state.store.find_direct_conversation(me, other).await? else {
        return Ok(Page {
            messages: Vec::new(),
            has_more: false,
        });
    };
    page_of(state, conversation_id, before, after, limit).await
}

async fn page_of(
    state: &AppState,
    conversation_id: Uuid,
    before: Option<Uuid>,
    after: Option<Uuid>,
    limit: PageLimit,
) -> ApiResult<Page> {
    let limit = limit.get();
    let mut messages = state
        .store
        .conversation_messages(conversation_id, before, after, limit + 1)
        .await?;
    let has_more = messages.len() as i64 > limit;
    messages.truncate(limit as usize);
    Ok(Page { messages, has_more })
}

/// A conversation of `me`'s, newest first.
pub async fn conversation_history(
    state: &AppState,
    me: Uuid,
    conversation_id: Uuid,
    before: Option<Uuid>,
    after: Option<Uuid>,
    limit: PageLimit,
) -> ApiResult<Page> {
    state
        .store
        .membership(conversation_id, me)
        .await?
        .ok_or_else(ApiError::conversation_not_found)?;
    page_of(state, conversation_id, before, after, limit).await
}

/// The most changed messages one `sync` answers.
const CHANGES_PAGE: i64 = 500;

/// What a device missed: messages and notifications after `since`, oldest first, and the
/// changes to older messages.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPage {
    pub messages: Vec<Message>,
    pub has_more: bool,
    /// Messages sent at or before `since` that were edited, deleted or reacted to after it was
    /// sent, as they are now, oldest change first (up to 500).
    pub changed: Vec<Message>,
    pub has_more_changed: bool,
    /// When `hasMoreChanged`: pass it back as `changedAfter` (with the same `since`) for the next
    /// changes.
    pub changed_cursor: Option<String>,
    /// Notifications created after the `since` message (ids of both are time-ordered).
    pub notifications: Vec<Notification>,
    pub has_more_notifications: bool,
}

/// Everything in `me`'s conversations after `since`, oldest first, and the changes to what
/// came before it (after the `changed_after` cursor when given).
pub async fn sync(
    state: &AppState,
    me: Uuid,
    since: Option<Uuid>,
    changed_after: Option<ChangeCursor>,
    limit: PageLimit,
) -> ApiResult<SyncPage> {
    let limit = limit.get();
    let mut messages = state.store.messages_since(me, since, limit + 1).await?;
    let has_more = messages.len() as i64 > limit;
    messages.truncate(limit as usize);
    // Without `since` every message comes as it is now: there is nothing older to change.
    let mut changes = match since {
        Some(since) => {
            let after = changed_after.unwrap_or_else(|| ChangeCursor::since_message(since));
            let after = (after.changed_at, after.message_id);
            state
                .store
                .changes_since(me, since, after, CHANGES_PAGE + 1)
                .await?
        }
        None => Vec::new(),
    };
    let has_more_changed = changes.len() as i64 > CHANGES_PAGE;
    changes.truncate(CHANGES_PAGE as usize);
    let changed_cursor =
        has_more_changed
            .then(|| changes.last())
            .flatten()
            .map(|(message, changed_at)| {
                ChangeCursor {
                    changed_at: *changed_at,
                    message_id: message.id,
                }
                .encode()
            });
    let changed = changes.into_iter().map(|(message, _)| message).collect();
    let mut notifications = state
        .store
        .notifications_since(me, since, limit + 1)
        .await?;
    let has_more_notifications = notifications.len() as i64 > limit;
    notifications.truncate(limit as usize);
    Ok(SyncPage {
        messages,
        has_more,
        changed,
        has_more_changed,
        changed_cursor,
        notifications,
        has_more_notifications,
    })
}
