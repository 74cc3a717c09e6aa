//! `/api/conversations/*`: direct and group conversations, their members, messages and read
//! pointers (SPEC §10). A conversation the caller is not a member of answers 404
//! `conversation_not_found`, as one that does not exist.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::json::{Json as JsonBody, JsonOrEmpty};
use super::messages::{SendFields, send_answer};
use super::query::{Query, optional_id, page_limit};
use crate::auth::AuthUser;
use crate::conversations::{
    self, Changes, Conversation, ConversationPage, ReadBy, ReadState, Role,
};
use crate::domain::{GroupTitle, attachment_ids, mention_ids};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::messaging::{self, Destination, Page, Sent};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update))
        .routes(routes!(add_members))
        .routes(routes!(remove_member, set_role))
        .routes(routes!(send, history))
        .routes(routes!(mark_read))
        .routes(routes!(reads))
}

/// `{id}` of a conversation, and `{userId}`/`{messageId}` after it: anything that is not an id
/// names nothing, so it answers the 404 an unknown one would.
struct Ids {
    conversation: Uuid,
    /// The second id of the path, when it has one.
    second: Option<Uuid>,
}

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::conversation_not_found())?;
        let mut ids = raw.iter().map(|(_, value)| value.parse::<Uuid>());
        let conversation = ids
            .next()
            .and_then(Result::ok)
            .ok_or_else(ApiError::conversation_not_found)?;
        let second = match ids.next() {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                let name = raw.get(1).map_or("", |(name, _)| name.as_str());
                return Err(if name == "userId" {
                    ApiError::user_not_found()
                } else {
                    ApiError::not_found(
                        crate::error::ErrorCode::NotFound,
                        "no such message in this conversation",
                    )
                });
            }
        };
        Ok(Self {
            conversation,
            second,
        })
    }
}

/// One conversation.
#[derive(Serialize, ToSchema)]
struct ConversationBody {
    conversation: Conversation,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// 1 to 100, default 50.
    #[param(value_type = Option<String>, pattern = r"^(|\+?0*([1-9][0-9]?|100))$")]
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    before: Option<String>,
}

/// The caller's direct and group conversations, most recently active first.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(ListQuery), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = ConversationPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<ConversationPage>> {
    let mut fields = BTreeMap::new();
    let limit = page_limit(&mut fields, query.limit.as_deref());
    let before = optional_id(&mut fields, "before", query.before.as_deref(), "message");
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let page = conversations::list(&state, caller.user.id, before, limit).await?;
    Ok(Json(page))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ConversationCreateBody)]
struct CreateBody {
    /// The group's title: 1 to 100 characters after trimming, no control characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    title: Option<String>,
    /// The other members.
    #[schema(value_type = Vec<Uuid>, required = true, min_items = 1, max_items = 100)]
    member_ids: Option<Vec<String>>,
}

/// Creates a group owned by the caller; every member's sockets get `conversationUpdated`.
#[utoipa::path(post, path = "/api/conversations", tag = "conversations", request_body = CreateBody, security(("bearer" = []), ("cookie" = [])),
    responses((status = 201, body = ConversationBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "recipient_disabled", body = ErrorBody), (status = 404, description = "user_not_found", body = ErrorBody),
        (status = 409, description = "group_full", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: AuthUser,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<(StatusCode, Json<ConversationBody>)> {
    let mut fields = BTreeMap::new();
    let title = crate::auth::accounts::required(
        &mut fields,
        "title",
        body.title.as_deref(),
        GroupTitle::parse,
    );
    if body.member_ids.is_none() {
        fields.insert("memberIds".to_owned(), "is required".to_owned());
    }
    let (Some(title), Some(member_ids)) = (title, body.member_ids) else {
        return Err(ApiError::validation(fields));
    };
    let conversation = conversations::create(&state, caller.user.id, title, &member_ids).await?;
    Ok((StatusCode::CREATED, Json(ConversationBody { conversation })))
}

/// A conversation of the caller's, with its members.
#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations", params(("id" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = ConversationBody), (status = 401, body = ErrorBody),
        (status = 404, description = "conversation_not_found", body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: AuthUser,
    ids: Ids,
) -> ApiResult<Json<ConversationBody>> {
    let conversation = conversations::show(&state, caller.user.id, ids.conversation).await?;
    Ok(Json(ConversationBody { conversation }))
}

#[derive(Deserialize, Default, ToSchema)]
#[schema(as = ConversationPatchBody)]
struct PatchBody {
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    title: Option<String>,
    muted: Option<bool>,
}

/// Renames a group (owner and admins: a system message) or mutes it for the caller.
#[utoipa::path(patch, path = "/api/conversations/{id}", tag = "conversations", request_body = PatchBody, params(("id" = Uuid, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = ConversationBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody), (status = 404, description = "conversation_not_found", body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: AuthUser,
    ids: Ids,
    JsonBody(body): JsonBody<PatchBody>,
) -> ApiResult<Json<ConversationBody>> {
    let title = match body.title.as_deref().map(GroupTitle::parse) {
        None => None,
        Some(Ok(title)) => Some(title),
        Some(Err(message)) => return Err(ApiError::invalid_field("title", message)),
    };
    let changes = Changes {
        title,
        muted: body.muted,
    };
    let conversation =
        conversations::update(&state, caller.user.id, ids.conversation, changes).await?;
    Ok(Json(ConversationBody { conversation }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct MembersBody {
    #[schema(value_type = Vec<Uuid>, required = true, min_items = 1, max_items = 100)]
    user_ids: Option<Vec<String>>,
}

/// Adds 1 to 100 users to a group (owner and admins); those already in are ignored.
#[utoipa::path(post, path = "/api/conversations/{id}/members", tag = "conversations", request_body = MembersBody, params(("id" = Uuid, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = ConversationBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden or recipient_disabled", body = ErrorBody),
        (status = 404, description = "conversation_not_found or user_not_found", body = ErrorBody),
        (status = 409, description = "group_full", body = ErrorBody)))]
async fn add_members(
    State(state): State<AppState>,
    caller: AuthUser,
    ids: Ids,
    JsonBody(body): JsonBody<MembersBody>,
) -> ApiResult<Json<ConversationBody>> {
    let user_ids = body
        .user_ids
        .ok_or_else(|| ApiError::invalid_field("userIds", "is required"))?;
    let conversation =
        conversations::add_members(&state, caller.user.id, ids.conversation, &user_ids).await?;
    Ok(Json(ConversationBody { conversation }))
}

/// Removes a member (owner and admins), or leaves (oneself); the one removed gets
/// `conversationRemoved`.
#[utoipa::path(delete, path = "/api/conversations/{id}/members/{userId}", tag = "conversations",
    params(("id" = Uuid, Path), ("userId" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 204, description = "removed"), (status = 401, body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody),
        (status = 404, description = "conversation_not_found or user_not_found", body = ErrorBody),
        (status = 409, description = "owner_must_transfer", body = ErrorBody)))]
async fn remove_member(
    State(state): State<AppState>,
    caller: AuthUser,
    ids: Ids,
) -> ApiResult<StatusCode> {
    let user = ids.second.ok_or_else(ApiError::user_not_found)?;
    conversations::remove_member(&state, caller.user.id, ids.conversation, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A member's role, as a body names it (documentation only: the handler reads text, to answer a
/// bad one with `validation_failed`).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum RoleName {
    Owner,
    Admin,
    Member,
}

#[derive(Deserialize, ToSchema)]
struct RoleBody {
    /// `owner` (passes ownership on), `admin` or `member`.
    #[schema(value_type = RoleName, required = true)]
    role: Option<String>,
}

/// Gives a member a role (the owner only).
#[utoipa::path(patch, path = "/api/conversations/{id}/members/{userId}", tag = "conversations", request_body = RoleBody,
    params(("id" = Uuid, Path), ("userId" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = ConversationBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody),
        (status = 404, description = "conversation_not_found or user_not_found", body = ErrorBody)))]
async fn set_role(
    State(state): State<AppState>,
    caller: AuthUser,
    ids: Ids,
    JsonBody(body): JsonBody<RoleBody>,
) -> ApiResult<Json<ConversationBody>> {
    let user = ids.second.ok_or_else(ApiError::user_not_found)?;
    let role = body
        .role
        .as_deref()
        .and_then(Role::parse)
        .ok_or_else(|| ApiError::invalid_field("role", "must be owner, admin or member"))?;
    let conversation =
        conversations::set_role(&state, caller.user.id, ids.conversation, user, role).await?;
    Ok(Json(ConversationBody { conversation }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ConversationSendBody)]
struct SendBody {
    /// 1 to 4,000 characters after trimming, no NUL (required unless `attachmentIds` names
    /// completed uploads).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 4000, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    content: Option<String>,
    /// Up to 128 characters; retrying with the same one returns the stored message.
    #[schema(value_type = Option<String>, max_length = 128)]
    client_id: Option<String>,
    /// A message of this conversation the new one replies to.
    #[schema(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    reply_to_id: Option<String>,
    /// Members to mention.
    #[schema(value_type = Option<Vec<Uuid>>)]
    mentions: Option<Vec<String>>,
    /// 1–10 completed uploads of the sender's for this conversation (§12); `content` may then
    /// be empty.
    #[schema(value_type = Option<Vec<Uuid>>, max_items = 10)]
    attachment_ids: Option<Vec<String>>,
}

/// Stores a message in the conversation, then pushes `newMessage` to the other members and
/// `messageSent` to the sender.
#[utoipa::path(post, path = "/api/conversations/{id}/messages", tag = "conversations", request_body = SendBody,
    params(("id" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, body = Sent),
        (status = 200, description = "this clientId was sent before: the same message", body = Sent),
        (status = 400, description = "validation_failed, invalid_mention, invalid_reply or invalid_attachment", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "recipient_disabled", body = ErrorBody),
        (status = 404, description = "conversation_not_found", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
async fn send(
    State(state): State<AppState>,
    caller: AuthUser,
    ids: Ids,
    JsonBody(body): JsonBody<SendBody>,
) -> ApiResult<(StatusCode, Json<Sent>)> {
    let fields = SendFields {
        mentions: mention_ids(body.mentions.as_deref())?,
        attachments: attachment_ids(body.attachment_ids.as_deref())?,
        content: body.content,
        client_id: body.client_id,
        reply_to_id: body.reply_to_id,
    };
    let to = Destination::Conversation(ids.conversation);
    send_answer(&state, &caller, to, fields).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
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

/// The conversation's messages, newest first.
#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "conversations",
    params(("id" = Uuid, Path), PageQuery), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = Page), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "conversation_not_found", body = ErrorBody)))]
async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    ids: Ids,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<Page>> {
    let mut fields = BTreeMap::new();
    let before = optional_id(&mut fields, "before", query.before.as_deref(), "message");
    let after = optional_id(&mut fields, "after", query.after.as_deref(), "message");
    let limit = page_limit(&mut fields, query.limit.as_deref());
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let page = messaging::conversation_history(
        &state,
        caller.user.id,
        ids.conversation,
        before,
        after,
        limit,
    )
    .await?;
    Ok(Json(page))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ConversationReadBody)]
struct ReadBody {
    /// The id of the last message read.
    #[schema(value_type = Uuid, required = true)]
    up_to: Option<String>,
}

/// Moves the caller's read pointer forward to `upTo`; every member's sockets get `messagesRead`.
#[utoipa::path(post, path = "/api/conversations/{id}/read", tag = "conversations", request_body = ReadBody,
    params(("id" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = ReadState), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "conversation_not_found", body = ErrorBody)))]
async fn mark_read(
    State(state): State<AppState>,
    caller: AuthUser,
    ids: Ids,
    JsonOrEmpty(body): JsonOrEmpty<ReadBody>,
) -> ApiResult<Json<ReadState>> {
    let mut fields = BTreeMap::new();
    let up_to = optional_id(&mut fields, "upTo", body.up_to.as_deref(), "message");
    let Some(up_to) = up_to else {
        fields
            .entry("upTo".to_owned())
            .or_insert_with(|| "is required".to_owned());
        return Err(ApiError::validation(fields));
    };
    let (_, read) =
        conversations::mark_read(&state, caller.user.id, ids.conversation, up_to).await?;
    Ok(Json(read))
}

/// Who has read up to a message.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Reads {
    read_by: Vec<ReadBy>,
}

/// The members whose read pointer is at or past that message.
#[utoipa::path(get, path = "/api/conversations/{id}/messages/{messageId}/reads", tag = "conversations",
    params(("id" = Uuid, Path), ("messageId" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = Reads), (status = 401, body = ErrorBody),
        (status = 404, description = "conversation_not_found, or not_found for a message of another conversation", body = ErrorBody)))]
async fn reads(
    State(state): State<AppState>,
    caller: AuthUser,
    ids: Ids,
) -> ApiResult<Json<Reads>> {
    let message = ids.second.ok_or_else(|| {
        ApiError::not_found(
            crate::error::ErrorCode::NotFound,
            "no such message in this conversation",
        )
    })?;
    let read_by = conversations::reads(&state, caller.user.id, ids.conversation, message).await?;
    Ok(Json(Reads { read_by }))
}
