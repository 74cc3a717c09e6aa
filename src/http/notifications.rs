//! `/api/notifications/*`: admins send; every user lists and marks read.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json::Json as JsonBody;
use super::path::NotificationPath;
use super::query::{Query, optional_id, page_limit};
use super::{Done, OkCount};
use crate::auth::{AdminUser, AuthUser};
use crate::domain;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::notifications::{self, Audience, Content};
use crate::state::AppState;
use crate::store::Notification;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, send))
        .routes(routes!(read_all))
        .routes(routes!(read_one))
}

/// `userId` or `all: true`, not both.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NotificationSendBody)]
struct SendBody {
    /// The one user to notify (then `all` is absent or false).
    #[schema(value_type = Option<Uuid>)]
    user_id: Option<String>,
    /// `true` to notify every active user (then no `userId`).
    #[serde(default)]
    all: bool,
    /// 1 to 200 characters after trimming, no NUL.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    title: Option<String>,
    /// 1 to 4,000 characters after trimming, no NUL.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 4000, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    body: Option<String>,
    /// 1 to 50 letters, digits, `_`, `.` or `-` (default `info`).
    #[schema(value_type = Option<String>, pattern = r"^\s*[A-Za-z0-9_.-]{1,50}\s*$")]
    kind: Option<String>,
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// How many users a notification was stored for.
#[derive(Serialize, ToSchema)]
struct Stored {
    count: usize,
}

/// Stores a notification for one user or every active user and pushes it (admins only).
#[utoipa::path(post, path = "/api/notifications", tag = "notifications", request_body = SendBody, security(("bearer" = []), ("cookie" = [])),
    responses((status = 201, body = Stored), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "user_not_found", body = ErrorBody)))]
async fn send(
    State(state): State<AppState>,
    _admin: AdminUser,
    JsonBody(body): JsonBody<SendBody>,
) -> ApiResult<(StatusCode, Json<Stored>)> {
    let audience = match (body.all, body.user_id.as_deref()) {
        (true, None) => Audience::Everyone,
        (false, Some(id)) => Audience::User(domain::user_id(id)?),
        _ => {
            return Err(ApiError::invalid_field(
                "userId",
                "give either userId or all: true",
            ));
        }
    };
    let content = Content {
        title: body.title,
        body: body.body,
        kind: body.kind,
        data: body.data,
    };
    let count = notifications::send(&state, audience, content).await?;
    Ok((StatusCode::CREATED, Json(Stored { count })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `true` (or `1`) for unread ones only.
    #[param(value_type = Option<String>, pattern = r"^(|true|false|1|0)$")]
    unread: Option<String>,
    #[param(value_type = Option<String>, pattern = r"^(|\+?0*([1-9][0-9]?|100))$")]
    limit: Option<String>,
    #[param(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    before: Option<String>,
}

/// A page of the caller's notifications and how many of all of them are unread.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NotificationPage {
    notifications: Vec<Notification>,
    unread_count: i64,
}

/// The caller's notifications, newest first, and how many are unread.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", params(ListQuery), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = NotificationPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<NotificationPage>> {
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
    let (notifications, unread_count) =
        notifications::list(&state, caller.user.id, unread, before, limit).await?;
    Ok(Json(NotificationPage {
        notifications,
        unread_count,
    }))
}

/// Marks one notification read; the user's devices get `notificationsRead`.
#[utoipa::path(post, path = "/api/notifications/{id}/read", tag = "notifications", params(("id" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = Done), (status = 401, body = ErrorBody),
        (status = 404, description = "notification_not_found", body = ErrorBody)))]
async fn read_one(
    State(state): State<AppState>,
    caller: AuthUser,
    NotificationPath(id): NotificationPath,
) -> ApiResult<Json<Done>> {
    notifications::mark_read(&state, caller.user.id, id).await?;
    Ok(Json(Done { ok: true }))
}

/// Marks every notification read; the user's devices get `notificationsRead {all: true}`.
#[utoipa::path(post, path = "/api/notifications/read-all", tag = "notifications", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = OkCount), (status = 401, body = ErrorBody)))]
async fn read_all(State(state): State<AppState>, caller: AuthUser) -> ApiResult<Json<OkCount>> {
    let count = notifications::mark_all_read(&state, caller.user.id).await?;
    Ok(Json(OkCount::new(count)))
}
