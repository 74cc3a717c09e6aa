//! `/api/messages/*`, `/api/conversations` and `/api/sync`: the REST side of direct messages.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::json::Json as JsonBody;
use super::query::{optional_id, page_limit};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::messaging;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(history))
        .routes(routes!(mark_read))
        .routes(routes!(conversations))
        .routes(routes!(sync))
}

/// A user id from the path; anything that is not an id names no user.
fn user_id(raw: &str) -> ApiResult<Uuid> {
    raw.parse()
        .map_err(|_| ApiError::not_found("user_not_found", "no such user"))
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
#[utoipa::path(post, path = "/api/messages/send/{user_id}", tag = "messages", request_body = SendBody,
    params(("user_id" = Uuid, Path, description = "the recipient")), security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, body = messaging::Sent),
        (status = 200, description = "this clientId was sent before: the same message", body = messaging::Sent),
        (status = 400, body = crate::http::openapi::ErrorBody), (status = 401, body = crate::http::openapi::ErrorBody),
        (status = 403, description = "recipient_disabled", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "user_not_found", body = crate::http::openapi::ErrorBody),
        (status = 429, description = "rate_limited", body = crate::http::openapi::ErrorBody)))]
async fn send(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(to): Path<String>,
    JsonBody(body): JsonBody<SendBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let to = user_id(&to)?;
    let content = body.content.ok_or_else(|| {
        ApiError::validation(BTreeMap::from([(
            "content".to_owned(),
            "is required".to_owned(),
        )]))
    })?;
    let sent = messaging::send(
        &state,
        &caller.user,
        to,
        &content,
        body.client_id.as_deref(),
    )
    .await?;
    let status = if sent.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(sent))))
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
#[utoipa::path(get, path = "/api/messages/{user_id}", tag = "messages",
    params(("user_id" = Uuid, Path, description = "the other user"), PageQuery), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = messaging::Page), (status = 400, body = crate::http::openapi::ErrorBody), (status = 401, body = crate::http::openapi::ErrorBody)))]
async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(other): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let other = user_id(&other)?;
    let mut fields = BTreeMap::new();
    let before = cursor(&mut fields, "before", query.before.as_deref());
    let after = cursor(&mut fields, "after", query.after.as_deref());
    let limit = Some(page_limit(&mut fields, query.limit.as_deref()));
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let page = messaging::history(&state, caller.user.id, other, before, after, limit).await?;
    Ok(Json(json!(page)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ReadBody {
    up_to: Option<String>,
}

/// Marks read the messages from that user up to and including `upTo`; they get `messagesRead`.
#[utoipa::path(post, path = "/api/messages/{user_id}/read", tag = "messages", request_body = ReadBody,
    params(("user_id" = Uuid, Path, description = "the sender")), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = crate::http::openapi::OkCount), (status = 400, body = crate::http::openapi::ErrorBody), (status = 401, body = crate::http::openapi::ErrorBody)))]
async fn mark_read(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(other): Path<String>,
    JsonBody(body): JsonBody<ReadBody>,
) -> ApiResult<Json<Value>> {
    let other = user_id(&other)?;
    let mut fields = BTreeMap::new();
    let up_to = cursor(&mut fields, "upTo", body.up_to.as_deref());
    let Some(up_to) = up_to else {
        fields
            .entry("upTo".to_owned())
            .or_insert_with(|| "is required".to_owned());
        return Err(ApiError::validation(fields));
    };
    let count = messaging::mark_read(&state, caller.user.id, other, up_to).await?;
    Ok(Json(json!({"ok": true, "count": count})))
}

/// The caller's conversations, most recent first, with unread counts.
#[utoipa::path(get, path = "/api/conversations", tag = "messages", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = crate::http::openapi::ConversationsResponse), (status = 401, body = crate::http::openapi::ErrorBody)))]
async fn conversations(State(state): State<AppState>, caller: AuthUser) -> ApiResult<Json<Value>> {
    let conversations = messaging::conversations(&state, caller.user.id).await?;
    Ok(Json(json!({ "conversations": conversations })))
}

/// Everything the caller missed since a message: messages and notifications, oldest first.
#[utoipa::path(get, path = "/api/sync", tag = "messages", params(PageQuery), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = messaging::SyncPage), (status = 400, body = crate::http::openapi::ErrorBody), (status = 401, body = crate::http::openapi::ErrorBody)))]
async fn sync(
    State(state): State<AppState>,
    caller: AuthUser,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let mut fields = BTreeMap::new();
    let since = cursor(&mut fields, "since", query.since.as_deref());
    let limit = Some(page_limit(&mut fields, query.limit.as_deref()));
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let page = messaging::sync(&state, caller.user.id, since, limit).await?;
    Ok(Json(json!(page)))
}
