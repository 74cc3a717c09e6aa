//! `/api/notifications/*`: admins send; every user lists and marks read.

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
use crate::auth::{AdminUser, AuthUser};
use crate::error::{ApiError, ApiResult};
use crate::notifications::{self, Audience, Content};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/notifications", get(list).post(send))
        .route("/api/notifications/read-all", post(read_all))
        .route("/api/notifications/{id}/read", post(read_one))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    user_id: Option<String>,
    #[serde(default)]
    all: bool,
    title: Option<String>,
    body: Option<String>,
    kind: Option<String>,
    data: Option<Value>,
}

async fn send(
    State(state): State<AppState>,
    _admin: AdminUser,
    JsonBody(body): JsonBody<SendBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let audience = match (body.all, body.user_id.as_deref()) {
        (true, None) => Audience::Everyone,
        (false, Some(id)) => Audience::User(
            id.parse()
                .map_err(|_| ApiError::not_found("user_not_found", "no such user"))?,
        ),
        _ => {
            return Err(ApiError::validation(BTreeMap::from([(
                "userId".to_owned(),
                "give either userId or all: true".to_owned(),
            )])));
        }
    };
    let content = Content {
        title: body.title,
        body: body.body,
        kind: body.kind,
        data: body.data,
    };
    let count = notifications::send(&state, audience, content).await?;
    Ok((StatusCode::CREATED, Json(json!({ "count": count }))))
}

#[derive(Deserialize)]
struct ListQuery {
    unread: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let mut fields = BTreeMap::new();
    let unread = match query.unread.as_deref() {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => {
            fields.insert("unread".to_owned(), "must be true or false".to_owned());
            false
        }
    };
    let limit = match query.limit.as_deref().filter(|l| !l.is_empty()) {
        None => 50,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                fields.insert("limit".to_owned(), "must be between 1 and 100".to_owned());
                0
            }
        },
    };
    let before = match query.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(raw) => raw
            .parse::<Uuid>()
            .map_err(|_| fields.insert("before".to_owned(), "must be a notification id".to_owned()))
            .ok(),
    };
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let (list, unread_count) =
        notifications::list(&state, caller.user.id, unread, before, limit).await?;
    Ok(Json(
        json!({ "notifications": list, "unreadCount": unread_count }),
    ))
}

async fn read_one(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found("notification_not_found", "no such notification"))?;
    notifications::mark_read(&state, caller.user.id, id).await?;
    Ok(Json(json!({ "ok": true })))
}

async fn read_all(State(state): State<AppState>, caller: AuthUser) -> ApiResult<Json<Value>> {
    let count = notifications::mark_all_read(&state, caller.user.id).await?;
    Ok(Json(json!({ "ok": true, "count": count })))
}
