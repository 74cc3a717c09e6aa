//! `/api/notifications/*`: admins send; every user lists and marks read.

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
use crate::auth::{AdminUser, AuthUser};
use crate::error::{ApiError, ApiResult};
use crate::notifications::{self, Audience, Content};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, send))
        .routes(routes!(read_all))
        .routes(routes!(read_one))
}

/// `userId` or `all: true`, not both.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    user_id: Option<String>,
    #[serde(default)]
    all: bool,
    title: Option<String>,
    body: Option<String>,
    kind: Option<String>,
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// Stores a notification for one user or every active user and pushes it (admins only).
#[utoipa::path(post, path = "/api/notifications", tag = "notifications", request_body = SendBody, security(("bearer" = []), ("cookie" = [])),
    responses((status = 201, body = crate::http::openapi::Count), (status = 400, body = crate::http::openapi::ErrorBody), (status = 401, body = crate::http::openapi::ErrorBody),
        (status = 403, body = crate::http::openapi::ErrorBody), (status = 404, description = "user_not_found", body = crate::http::openapi::ErrorBody)))]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `true` for unread ones only.
    unread: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// The caller's notifications, newest first, and how many are unread.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", params(ListQuery), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = crate::http::openapi::NotificationsResponse), (status = 400, body = crate::http::openapi::ErrorBody), (status = 401, body = crate::http::openapi::ErrorBody)))]
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
    let limit = page_limit(&mut fields, query.limit.as_deref());
    let before = optional_id(
        &mut fields,
        "before",
        query.before.as_deref(),
        "notification",
    );
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let (list, unread_count) =
        notifications::list(&state, caller.user.id, unread, before, limit).await?;
    Ok(Json(
        json!({ "notifications": list, "unreadCount": unread_count }),
    ))
}

/// Marks one notification read; the user's devices get `notificationsRead`.
#[utoipa::path(post, path = "/api/notifications/{id}/read", tag = "notifications", params(("id" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = crate::http::openapi::Ok), (status = 401, body = crate::http::openapi::ErrorBody),
        (status = 404, description = "notification_not_found", body = crate::http::openapi::ErrorBody)))]
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

/// Marks every notification read; the user's devices get `notificationsRead {all: true}`.
#[utoipa::path(post, path = "/api/notifications/read-all", tag = "notifications", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = crate::http::openapi::OkCount), (status = 401, body = crate::http::openapi::ErrorBody)))]
async fn read_all(State(state): State<AppState>, caller: AuthUser) -> ApiResult<Json<Value>> {
    let count = notifications::mark_all_read(&state, caller.user.id).await?;
    Ok(Json(json!({ "ok": true, "count": count })))
}
