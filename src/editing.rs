//! What happens to a message after it is sent (SPEC §11), one code path for REST and sockets:
//! its author edits it within `MESSAGE_EDIT_WINDOW`, it is deleted as a tombstone (its content,
//! mentions and reactions overwritten, not hidden), members react to it. Each change is stored,
//! then told to every member's sockets on every node: `messageUpdated`, `messageDeleted`,
//! `reactionsChanged`. A device that was offline learns of them from `sync`'s `changed`.
//!
//! A message of a conversation the caller is not a member of answers 404 `message_not_found`,
//! as an unknown one does; only a platform admin may delete a message without being a member.

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Content, Emoji, MAX_EMOJI_PER_MESSAGE};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::messaging::take_message_budget;
use crate::state::AppState;
use crate::store::{DIRECT, Message, MessageKind, Reacted, Reaction, User};
use crate::timestamp::Timestamp;

/// A message's reactions after a change: `{reactions}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reactions {
    pub reactions: Vec<Reaction>,
}

/// Gives `me`'s message new content; every member's sockets get `messageUpdated`.
pub async fn edit(
    state: &AppState,
    me: &User,
    message_id: Uuid,
    content: &Content,
) -> ApiResult<Message> {
    let message = visible(state, me.id, message_id).await?;
    if message.from != me.id {
        return Err(forbidden("only its author can edit a message"));
    }
    if message.kind == MessageKind::System {
        return Err(forbidden("a system message cannot be edited"));
    }
    if message.deleted_at.is_some() {
        return Err(forbidden("a deleted message cannot be edited"));
    }
    let now = Timestamp::now();
    if now > message.created_at.plus(state.config.message_edit_window) {
        return Err(ApiError::forbidden(
            ErrorCode::EditWindowPassed,
            "this message can no longer be edited",
        ));
    }
    take_message_budget(state, me.id).await?;
    let edited = state
        .store
        .edit_message(message_id, content.as_str(), now)
        .await?
        // Deleted since it was read.
        .ok_or_else(|| forbidden("a deleted message cannot be edited"))?;
    let payload = json!({ "message": edited });
    tell_members(state, &edited, "messageUpdated", &payload).await;
    Ok(edited)
}

/// Deletes a message: by its author, by a group's owner or admin, or by a platform admin (who
/// need not be a member). Every member's sockets get `messageDeleted`; deleting it again changes
/// nothing and is not an error.
pub async fn delete(state: &AppState, me: &User, message_id: Uuid) -> ApiResult<()> {
    let message = state
        .store
        .find_message(message_id)
        .await?
        .ok_or_else(ApiError::message_not_found)?;
    let membership = state
        .store
        .membership(message.conversation_id, me.id)
        .await?;
    let may = match &membership {
        _ if me.is_admin => true,
        None => return Err(ApiError::message_not_found()),
        Some(_) if message.from == me.id => true,
        Some(m) => m.kind != DIRECT && matches!(m.role.as_str(), "owner" | "admin"),
    };
    if !may {
        return Err(forbidden(
            "only its author or the group's owner and admins can delete a message",
        ));
    }
    let Some(deleted) = state
        .store
        .delete_message(message_id, Timestamp::now())
        .await?
    else {
        return Ok(());
    };
    let payload = json!({
        "messageId": deleted.id,
        "conversationId": deleted.conversation_id,
        "deletedAt": deleted.deleted_at,
    });
    tell_members(state, &deleted, "messageDeleted", &payload).await;
    if !message.attachments.is_empty() {
        crate::attachments::message_deleted(state, deleted.id).await;
    }
    tracing::info!(category = "message", message_id = %deleted.id, by = %me.id, "📨 message deleted");
    Ok(())
}

/// Adds (`add`) or takes back `me`'s reaction with `emoji`; doing either twice is the same as
/// once. Every member's sockets get `reactionsChanged` when something changed.
pub async fn react(
    state: &AppState,
    me: &User,
    message_id: Uuid,
    emoji: &Emoji,
    add: bool,
) -> ApiResult<Reactions> {
    let message = visible(state, me.id, message_id).await?;
    if message.deleted_at.is_some() {
        return Err(forbidden("a deleted message takes no reactions"));
    }
    take_message_budget(state, me.id).await?;
    let reacted = state
        .store
        .react(
            message_id,
            me.id,
            emoji.as_str(),
            add,
            MAX_EMOJI_PER_MESSAGE,
        )
        .await?;
    let message = match reacted {
        Reacted::Changed(message) => {
            let payload = json!({
                "messageId": message.id,
                "conversationId": message.conversation_id,
                "reactions": message.reactions,
            });
            tell_members(state, &message, "reactionsChanged", &payload).await;
            message
        }
        Reacted::Unchanged(message) => message,
        Reacted::TooMany => {
            return Err(ApiError::conflict(
                ErrorCode::TooManyReactions,
                "a message takes at most 50 different emoji",
            ));
        }
        Reacted::Gone => return Err(forbidden("a deleted message takes no reactions")),
    };
    Ok(Reactions {
        reactions: message.reactions,
    })
}

/// A message of a conversation `me` is a member of; 404 otherwise.
async fn visible(state: &AppState, me: Uuid, message_id: Uuid) -> ApiResult<Message> {
    let message = state
        .store
        .find_message(message_id)
        .await?
        .ok_or_else(ApiError::message_not_found)?;
    state
        .store
        .membership(message.conversation_id, me)
        .await?
        .ok_or_else(ApiError::message_not_found)?;
    Ok(message)
}

fn forbidden(message: &str) -> ApiError {
    ApiError::forbidden(ErrorCode::Forbidden, message)
}

/// An event about `message` to every member's sockets on every node: in a direct conversation
/// its two users (the sender's other devices too), in a group its room.
async fn tell_members<T: Serialize + ?Sized>(
    state: &AppState,
    message: &Message,
    event: &str,
    payload: &T,
) {
    match message.to {
        Some(to) => {
            state
                .realtime
                .emit_to_user(message.from, event, payload)
                .await;
            if to != message.from {
                state.realtime.emit_to_user(to, event, payload).await;
            }
        }
        None => {
            state
                .realtime
                .emit_to_group(message.conversation_id, None, event, payload)
                .await;
        }
    }
}
