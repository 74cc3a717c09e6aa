//! `/api/messages/*` and `/api/sync`: direct messages by user id, and what a device missed.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::OkCount;
use super::json::Json as JsonBody;
use super::path::UserPath;
use super::query::{optional_id, page_limit};
use crate::auth::AuthUser;
use crate::domain::Outgoing;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::messaging::{self, Destination, Page, Sent, SyncPage};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(history))
        .routes(routes!(mark_read))
        .routes(routes!(sync))
}

/// An optional message-id cursor from the query string.
fn cursor(fields: &mut BTreeMap<String, String>, name: &str, raw: Option<&str>) -> Option<Uuid> {
    optional_id(fields, name, raw, "message")
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    content: Option<String>,
    client_id: Option<String>,
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
    send_answer(&state, &caller, to, body.content, body.client_id, &[]).await
}

/// A send over REST, by user id or conversation id: 201 with the message, or 200 with the one
/// stored before when its `clientId` was sent already.
pub(super) async fn send_answer(
    state: &AppState,
    caller: &AuthUser,
    to: Destination,
    content: Option<String>,
    client_id: Option<String>,
    mentions: &[Uuid],
) -> ApiResult<(StatusCode, Json<Sent>)> {
    let content = content.ok_or_else(|| ApiError::invalid_field("content", "is required"))?;
    let outgoing = Outgoing::parse(&content, client_id.as_deref())?;
    let sent = messaging::send(state, &caller.user, to, outgoing, mentions).await?;
    let status = if sent.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(sent)))
}

/// Query strings are read as text and checked here, so a bad value gets our error format.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// A message id: only older messages (history).
    before: Option<String>,
    /// A message id: only newer messages (history).
    after: Option<String>,
    /// A message id: what came after it (sync).
    since: Option<String>,
    /// 1 to 100, default 50.
    limit: Option<String>,
}

/// The conversation with a user, newest first.
#[utoipa::path(get, path = "/api/messages/{userId}", tag = "messages",
    params(("userId" = Uuid, Path, description = "the other user"), PageQuery), security(("bearer" = []), ("cookie" = [])),
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
struct ReadBody {
    up_to: Option<String>,
}

/// Marks read the messages from that user up to and including `upTo`; they get `messagesRead`.
#[utoipa::path(post, path = "/api/messages/{userId}/read", tag = "messages", request_body = ReadBody,
    params(("userId" = Uuid, Path, description = "the sender")), security(("bearer" = []), ("cookie" = [])),
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
#[utoipa::path(get, path = "/api/sync", tag = "messages", params(PageQuery), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = SyncPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn sync(
    State(state): State<AppState>,
    caller: AuthUser,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<SyncPage>> {
    let mut fields = BTreeMap::new();
    let since = cursor(&mut fields, "since", query.since.as_deref());
    let limit = page_limit(&mut fields, query.limit.as_deref());
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let page = messaging::sync(&state, caller.user.id, since, limit).await?;
    Ok(Json(page))
}
