//! `/api/messages/*`, `/api/conversations` and `/api/sync`: the REST side of direct messages.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::json::Json as JsonBody;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::messaging;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/messages/send/{user_id}", post(send))
        .route("/api/messages/{user_id}", get(history))
        .route("/api/messages/{user_id}/read", post(mark_read))
        .route("/api/conversations", get(conversations))
        .route("/api/sync", get(sync))
}

/// A user id from the path; anything that is not an id names no user.
fn user_id(raw: &str) -> ApiResult<Uuid> {
    raw.parse()
        .map_err(|_| ApiError::not_found("user_not_found", "no such user"))
}

/// An optional message-id cursor from the query string.
fn cursor(fields: &mut BTreeMap<String, String>, name: &str, raw: Option<&str>) -> Option<Uuid> {
    let raw = raw.filter(|r| !r.is_empty())?;
    raw.parse()
        .map_err(|_| fields.insert(name.to_owned(), "must be a message id".to_owned()))
        .ok()
}

fn limit(fields: &mut BTreeMap<String, String>, raw: Option<&str>) -> Option<i64> {
    let raw = raw.filter(|r| !r.is_empty())?;
    raw.parse()
        .map_err(|_| fields.insert("limit".to_owned(), "must be a whole number".to_owned()))
        .ok()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    content: Option<String>,
    client_id: Option<String>,
}

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
#[derive(Deserialize)]
struct PageQuery {
    before: Option<String>,
    after: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

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
    let limit = limit(&mut fields, query.limit.as_deref());
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let page = messaging::history(&state, caller.user.id, other, before, after, limit).await?;
    Ok(Json(json!(page)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadBody {
    up_to: Option<String>,
}

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

async fn conversations(State(state): State<AppState>, caller: AuthUser) -> ApiResult<Json<Value>> {
    let conversations = messaging::conversations(&state, caller.user.id).await?;
    Ok(Json(json!({ "conversations": conversations })))
}

async fn sync(
    State(state): State<AppState>,
    caller: AuthUser,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let mut fields = BTreeMap::new();
    let since = cursor(&mut fields, "since", query.since.as_deref());
    let limit = limit(&mut fields, query.limit.as_deref());
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let page = messaging::sync(&state, caller.user.id, since, limit).await?;
    Ok(Json(json!(page)))
}
