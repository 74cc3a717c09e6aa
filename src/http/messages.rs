//! `/api/messages/*` and `/api/sync`: direct messages by user id, editing, deleting and reacting
//! to any message by its id, and what a device missed.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::OkCount;
use super::json::Json as JsonBody;
use super::path::{MessagePath, ReactionPath, UserPath};
use super::query::{Query, optional_id, page_limit};
use crate::auth::AuthUser;
use crate::domain::{ChangeCursor, Content, Outgoing, attachment_ids};
use crate::editing::{self, Reactions};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::messaging::{self, Destination, Page, Sent, SyncPage};
use crate::state::AppState;
use crate::store::Message;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(history))
        .routes(routes!(mark_read))
        .routes(routes!(sync))
        .routes(routes!(edit, delete))
        .routes(routes!(add_reaction, remove_reaction))
}

/// An optional message-id cursor from the query string.
fn cursor(fields: &mut BTreeMap<String, String>, name: &str, raw: Option<&str>) -> Option<Uuid> {
    optional_id(fields, name, raw, "message")
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MessageSendBody)]
struct SendBody {
    /// 1 to 4,000 characters after trimming, no NUL (required unless `attachmentIds` names
    /// completed uploads).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 4000, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    content: Option<String>,
    /// Up to 128 characters; retrying with the same one returns the stored message.
    #[schema(value_type = Option<String>, max_length = 128)]
    client_id: Option<String>,
    /// A message of the same conversation this one replies to.
    #[schema(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    reply_to_id: Option<String>,
    /// 1–10 completed uploads of the sender's for this conversation (§12); `content` may then
    /// be empty.
    #[schema(value_type = Option<Vec<Uuid>>, max_items = 10)]
    attachment_ids: Option<Vec<String>>,
}

/// Stores a message, then pushes `newMessage` to the recipient and `messageSent` to the sender.
#[utoipa::path(post, path = "/api/messages/send/{userId}", tag = "messages", request_body = SendBody,
    params(("userId" = Uuid, Path, description = "the recipient")), security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, body = Sent),
        (status = 200, description = "this clientId was sent before: the same message", body = Sent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "recipient_disabled", body = ErrorBody),
        (status = 404, description = "user_not_found", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
async fn send(
    State(state): State<AppState>,
    caller: AuthUser,
    UserPath(to): UserPath,
    JsonBody(body): JsonBody<SendBody>,
) -> ApiResult<(StatusCode, Json<Sent>)> {
    let to = Destination::User(to);
    let fields = SendFields {
        content: body.content,
        client_id: body.client_id,
        reply_to_id: body.reply_to_id,
        mentions: Vec::new(),
        attachments: attachment_ids(body.attachment_ids.as_deref())?,
    };
    send_answer(&state, &caller, to, fields).await
}

/// What a REST send carries, as read from its body (mentions already as ids).
pub(super) struct SendFields {
    pub content: Option<String>,
    pub client_id: Option<String>,
    pub reply_to_id: Option<String>,
    pub mentions: Vec<Uuid>,
    pub attachments: Vec<Uuid>,
}

/// A send over REST, by user id or conversation id: 201 with the message, or 200 with the one
/// stored before when its `clientId` was sent already.
pub(super) async fn send_answer(
    state: &AppState,
    caller: &AuthUser,
    to: Destination,
    fields: SendFields,
) -> ApiResult<(StatusCode, Json<Sent>)> {
    let outgoing = Outgoing::parse(
        fields.content.as_deref(),
        fields.client_id.as_deref(),
        fields.attachments,
    )?
    .replying_to(fields.reply_to_id.as_deref())?;
    let sent = messaging::send(state, &caller.user, to, outgoing, &fields.mentions).await?;
    let status = if sent.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(sent)))
}

/// Query strings are read as text and checked here, so a bad value gets our error format.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
struct PageQuery {
    /// A message id: only older messages (history).
    #[param(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    before: Option<String>,
    /// A message id: only newer messages (history).
    #[param(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    after: Option<String>,
    /// A message id: what came after it (sync).
    #[param(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    since: Option<String>,
    /// The `changedCursor` of the last sync with this `since`: the changes after it (sync).
    #[param(value_type = Option<String>, pattern = r"^(|[+-]?[0-9]{1,18}\.([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}))$")]
    changed_after: Option<String>,
    /// 1 to 100, default 50.
    #[param(value_type = Option<String>, pattern = r"^(|\+?0*([1-9][0-9]?|100))$")]
    limit: Option<String>,
}

/// The query of a conversation's history (documentation of [`PageQuery`] as `history` reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct HistoryParams {
    /// A message id: only older messages.
    #[param(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    before: Option<String>,
    /// A message id: only newer messages.
    #[param(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    after: Option<String>,
    /// 1 to 100, default 50.
    #[param(value_type = Option<String>, pattern = r"^(|\+?0*([1-9][0-9]?|100))$")]
    limit: Option<String>,
}

/// The query of `sync` (documentation of [`PageQuery`] as `sync` reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[allow(dead_code)]
struct SyncParams {
    /// A message id: what came after it.
    #[param(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    since: Option<String>,
    /// The `changedCursor` of the last sync with this `since`: the changes after it.
    #[param(value_type = Option<String>, pattern = r"^(|[+-]?[0-9]{1,18}\.([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}))$")]
    changed_after: Option<String>,
    /// 1 to 100, default 50.
    #[param(value_type = Option<String>, pattern = r"^(|\+?0*([1-9][0-9]?|100))$")]
    limit: Option<String>,
}

/// The conversation with a user, newest first.
#[utoipa::path(get, path = "/api/messages/{id}", tag = "messages",
    params(("id" = Uuid, Path, description = "the other user's id"), HistoryParams), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = Page), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "user_not_found: the path is not a user id", body = ErrorBody)))]
async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    UserPath(other): UserPath,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<Page>> {
    let mut fields = BTreeMap::new();
    let before = cursor(&mut fields, "before", query.before.as_deref());
    let after = cursor(&mut fields, "after", query.after.as_deref());
    let limit = page_limit(&mut fields, query.limit.as_deref());
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let page = messaging::history(&state, caller.user.id, other, before, after, limit).await?;
    Ok(Json(page))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MessagesReadBody)]
struct ReadBody {
    /// The id of the last message read.
    #[schema(value_type = Uuid, required = true)]
    up_to: Option<String>,
}

/// Marks read the messages from that user up to and including `upTo`; they get `messagesRead`.
#[utoipa::path(post, path = "/api/messages/{id}/read", tag = "messages", request_body = ReadBody,
    params(("id" = Uuid, Path, description = "the sender's id")), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = OkCount), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "user_not_found: the path is not a user id", body = ErrorBody)))]
async fn mark_read(
    State(state): State<AppState>,
    caller: AuthUser,
    UserPath(other): UserPath,
    JsonBody(body): JsonBody<ReadBody>,
) -> ApiResult<Json<OkCount>> {
    let mut fields = BTreeMap::new();
    let up_to = cursor(&mut fields, "upTo", body.up_to.as_deref());
    let Some(up_to) = up_to else {
        fields
            .entry("upTo".to_owned())
            .or_insert_with(|| "is required".to_owned());
        return Err(ApiError::validation(fields));
    };
    let count = messaging::mark_read(&state, caller.user.id, other, up_to).await?;
    Ok(Json(OkCount::new(count)))
}

/// Everything the caller missed since a message: messages and notifications, oldest first.
#[utoipa::path(get, path = "/api/sync", tag = "messages", params(SyncParams), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = SyncPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn sync(
    State(state): State<AppState>,
    caller: AuthUser,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<SyncPage>> {
    let mut fields = BTreeMap::new();
    let since = cursor(&mut fields, "since", query.since.as_deref());
    let changed_after = query
        .changed_after
        .as_deref()
        .filter(|c| !c.is_empty())
        .and_then(|raw| {
            ChangeCursor::parse(raw)
                .map_err(|m| fields.insert("changedAfter".to_owned(), m.to_owned()))
                .ok()
        });
    let limit = page_limit(&mut fields, query.limit.as_deref());
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let page = messaging::sync(&state, caller.user.id, since, changed_after, limit).await?;
    Ok(Json(page))
}

#[derive(Deserialize, ToSchema)]
struct EditBody {
    /// 1 to 4,000 characters after trimming, no NUL.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 4000, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    content: Option<String>,
}

/// The message with new content; every member's sockets get `messageUpdated`.
#[derive(Serialize, ToSchema)]
struct Edited {
    message: Message,
}

/// Edits one of the caller's messages within `MESSAGE_EDIT_WINDOW` of sending it.
#[utoipa::path(patch, path = "/api/messages/{id}", tag = "messages", request_body = EditBody,
    params(("id" = Uuid, Path, description = "the message")), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = Edited), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden (not the author, a system or deleted message) or edit_window_passed", body = ErrorBody),
        (status = 404, description = "message_not_found", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
async fn edit(
    State(state): State<AppState>,
    caller: AuthUser,
    MessagePath(id): MessagePath,
    JsonBody(body): JsonBody<EditBody>,
) -> ApiResult<Json<Edited>> {
    let content = body
        .content
        .ok_or_else(|| ApiError::invalid_field("content", "is required"))?;
    let content = Content::parse(&content).map_err(|m| ApiError::invalid_field("content", m))?;
    let message = editing::edit(&state, &caller.user, id, &content).await?;
    Ok(Json(Edited { message }))
}

/// Deletes a message, leaving a tombstone; every member's sockets get `messageDeleted`.
#[utoipa::path(delete, path = "/api/messages/{id}", tag = "messages",
    params(("id" = Uuid, Path, description = "the message")), security(("bearer" = []), ("cookie" = [])),
    responses((status = 204, description = "deleted (or deleted already)"), (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden: neither the author nor the group's owner or admin", body = ErrorBody),
        (status = 404, description = "message_not_found", body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    caller: AuthUser,
    MessagePath(id): MessagePath,
) -> ApiResult<StatusCode> {
    editing::delete(&state, &caller.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds the caller's reaction (again: no change); every member's sockets get `reactionsChanged`.
#[utoipa::path(put, path = "/api/messages/{id}/reactions/{emoji}", tag = "messages",
    params(("id" = Uuid, Path, description = "the message"),
        ("emoji" = String, Path, description = "one emoji, or a shortcode `:name:`")),
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = Reactions),
        (status = 400, description = "invalid_emoji", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden: the message is deleted", body = ErrorBody),
        (status = 404, description = "message_not_found", body = ErrorBody),
        (status = 409, description = "too_many_reactions", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
async fn add_reaction(
    State(state): State<AppState>,
    caller: AuthUser,
    path: ReactionPath,
) -> ApiResult<Json<Reactions>> {
    let reactions =
        editing::react(&state, &caller.user, path.message_id, &path.emoji, true).await?;
    Ok(Json(reactions))
}

/// Takes the caller's reaction back (when there is none: no change).
#[utoipa::path(delete, path = "/api/messages/{id}/reactions/{emoji}", tag = "messages",
    params(("id" = Uuid, Path, description = "the message"),
        ("emoji" = String, Path, description = "one emoji, or a shortcode `:name:`")),
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = Reactions),
        (status = 400, description = "invalid_emoji", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden: the message is deleted", body = ErrorBody),
        (status = 404, description = "message_not_found", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
async fn remove_reaction(
    State(state): State<AppState>,
    caller: AuthUser,
    path: ReactionPath,
) -> ApiResult<Json<Reactions>> {
    let reactions =
        editing::react(&state, &caller.user, path.message_id, &path.emoji, false).await?;
    Ok(Json(reactions))
}
