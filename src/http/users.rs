//! `/api/users/*`: administration for admins, the directory for everyone, and self-service.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::json::Json as JsonBody;
use super::path::UserPath;
use super::query::{Query, optional_id, page_limit};
use crate::auth::{AdminUser, AuthUser};
use crate::domain::PageLimit;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::User;
use crate::users::{self, DirectoryEntry, NewAccount, Patch, UserPage};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(directory))
        .routes(routes!(show, update, remove))
}

/// One account.
#[derive(Serialize, ToSchema)]
struct UserBody {
    user: User,
}

/// Users found in the directory.
#[derive(Serialize, ToSchema)]
struct DirectoryPage {
    users: Vec<DirectoryEntry>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Text to find in the name or email.
    #[param(value_type = Option<String>, max_length = 100, pattern = r"^[^\u0000]*$")]
    q: Option<String>,
    /// 1 to 100, default 50.
    #[param(value_type = Option<String>, pattern = r"^(|\+?0*([1-9][0-9]?|100))$")]
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(value_type = Option<String>, pattern = r"^(|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    cursor: Option<String>,
}

/// `limit` between 1 and 100 (default 50), `cursor` an id, `q` up to 100 characters.
fn page(query: &ListQuery) -> ApiResult<(Option<String>, Option<Uuid>, PageLimit)> {
    let mut fields = BTreeMap::new();
    let limit = page_limit(&mut fields, query.limit.as_deref());
    let cursor = optional_id(&mut fields, "cursor", query.cursor.as_deref(), "user");
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 100 || q.contains('\0')) {
        fields.insert(
            "q".to_owned(),
            "must be at most 100 characters, without NUL".to_owned(),
        );
    }
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    Ok((q.map(str::to_owned), cursor, limit))
}

/// Every user, with live figures (admins only).
#[utoipa::path(get, path = "/api/users", tag = "users", params(ListQuery), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = UserPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden: admins only", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<UserPage>> {
    let (q, cursor, limit) = page(&query)?;
    let page = users::list(&state, q.as_deref(), cursor, limit).await?;
    Ok(Json(page))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UserCreateBody)]
struct CreateBody {
    #[schema(value_type = String, required = true, format = Email, max_length = 254)]
    email: Option<String>,
    /// 1 to 100 characters after trimming, no control characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    name: Option<String>,
    /// At least 8 characters; without one the account can sign in only through OAuth.
    #[schema(value_type = Option<String>, min_length = 8, max_length = 1024)]
    password: Option<String>,
    is_admin: Option<bool>,
    is_active: Option<bool>,
}

/// Creates an account (admins only).
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = CreateBody, security(("bearer" = []), ("cookie" = [])),
    responses((status = 201, body = UserBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "email_taken", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    _admin: AdminUser,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<(StatusCode, Json<UserBody>)> {
    let input = NewAccount {
        email: body.email,
        name: body.name,
        password: body.password,
        is_admin: body.is_admin.unwrap_or(false),
        is_active: body.is_active.unwrap_or(true),
    };
    let user = users::create(&state, input).await?;
    Ok((StatusCode::CREATED, Json(UserBody { user })))
}

/// Active users, to find people to message.
#[utoipa::path(get, path = "/api/users/directory", tag = "users", params(ListQuery), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = DirectoryPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn directory(
    State(state): State<AppState>,
    _caller: AuthUser,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<DirectoryPage>> {
    let (q, _, limit) = page(&query)?;
    let users = users::directory(&state, q.as_deref(), limit).await?;
    Ok(Json(DirectoryPage { users }))
}

/// A user: oneself, or anyone for an admin.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = UserBody), (status = 401, body = ErrorBody),
        (status = 404, description = "user_not_found (also for others' accounts)", body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: AuthUser,
    UserPath(id): UserPath,
) -> ApiResult<Json<UserBody>> {
    let user = users::visible(&state, &caller, id).await?;
    Ok(Json(UserBody { user }))
}

/// Admins may change `isActive`, `isAdmin`, `name`, `email`; users their own `name` and
/// `password` (with `currentPassword`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UserPatchBody)]
struct PatchBody {
    name: Option<String>,
    email: Option<String>,
    password: Option<String>,
    current_password: Option<String>,
    is_admin: Option<bool>,
    is_active: Option<bool>,
}

/// Changes an account; rights or status changes push new tokens to the user's live sessions.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", request_body = PatchBody,
    params(("id" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = UserBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "last_admin or email_taken", body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: AuthUser,
    UserPath(id): UserPath,
    JsonBody(body): JsonBody<PatchBody>,
) -> ApiResult<Json<UserBody>> {
    let patch = Patch {
        name: body.name,
        email: body.email,
        password: body.password,
        current_password: body.current_password,
        is_admin: body.is_admin,
        is_active: body.is_active,
    };
    let user = users::update(&state, &caller, id, patch).await?;
    Ok(Json(UserBody { user }))
}

/// Deletes an account after ending its sessions (admins only).
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = []), ("cookie" = [])),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "last_admin", body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    _admin: AdminUser,
    UserPath(id): UserPath,
) -> ApiResult<StatusCode> {
    users::delete(&state, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
