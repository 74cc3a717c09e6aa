//! `/api/auth/*`: register, login, refresh, logout and `me`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json::{Json as JsonBody, JsonOrEmpty};
use crate::auth::AuthUser;
use crate::auth::accounts::{self, Registration};
use crate::auth::cookies::{self, REFRESH_COOKIE};
use crate::auth::extract::{ClientInfo, TokenSource, check_csrf};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::store::{Session, User};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
struct RegisterBody {
    #[schema(value_type = String, required = true, format = Email, max_length = 254)]
    email: Option<String>,
    /// At least 8 characters.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 1024)]
    password: Option<String>,
    /// 1 to 100 characters after trimming, no control characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    name: Option<String>,
}

/// Creates an account (the first of an empty database is an admin) and signs it in.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterBody,
    responses(
        (status = 201, description = "signed in; cookies set", body = accounts::LoginResponse),
        (status = 400, body = ErrorBody), (status = 403, description = "signup_disabled", body = ErrorBody),
        (status = 409, description = "email_taken", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    client: ClientInfo,
    jar: CookieJar,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<impl IntoResponse> {
    let input = Registration {
        email: body.email,
        password: body.password,
        name: body.name,
    };
    let response = accounts::register(&state, input, &client).await?;
    let jar = cookies::set_login(jar, &state.config, &response.token, &response.refresh_token);
    Ok((StatusCode::CREATED, jar, Json(response)))
}

#[derive(Deserialize, ToSchema)]
struct LoginBody {
    #[schema(value_type = String, required = true, min_length = 1)]
    email: Option<String>,
    #[schema(value_type = String, required = true, min_length = 1)]
    password: Option<String>,
}

/// Signs in with email and password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginBody,
    responses(
        (status = 200, description = "signed in; cookies set", body = accounts::LoginResponse),
        (status = 400, body = ErrorBody), (status = 401, description = "invalid_credentials", body = ErrorBody),
        (status = 403, description = "account_disabled", body = ErrorBody),
        (status = 429, description = "too_many_attempts, with Retry-After", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    jar: CookieJar,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<impl IntoResponse> {
    let response = accounts::login(&state, body.email, body.password, &client).await?;
    let jar = cookies::set_login(jar, &state.config, &response.token, &response.refresh_token);
    Ok((jar, Json(response)))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RefreshBody {
    refresh_token: Option<String>,
}

/// Exchanges a refresh token (body or `craftcode_refresh` cookie) for new tokens.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body(content = RefreshBody, description = "optional: an empty body (with the cookie) is allowed"),
    responses(
        (status = 200, body = accounts::RefreshResponse),
        (status = 401, description = "invalid_refresh_token", body = ErrorBody),
        (status = 403, description = "csrf_rejected", body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    jar: CookieJar,
    JsonOrEmpty(body): JsonOrEmpty<RefreshBody>,
) -> ApiResult<impl IntoResponse> {
    let presented = match body.refresh_token.filter(|t| !t.is_empty()) {
        Some(token) => token,
        None => {
            let token = jar
                .get(REFRESH_COOKIE)
                .map(|c| c.value().to_owned())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::unauthorized(
                        ErrorCode::InvalidRefreshToken,
                        "send `refreshToken` in the body or the craftcode_refresh cookie",
                    )
                })?;
            check_csrf(&state.config, &method, &headers, TokenSource::Cookie)?;
            token
        }
    };
    let response = accounts::refresh(&state, &presented).await?;
    let jar = cookies::set_login(jar, &state.config, &response.token, &response.refresh_token);
    Ok((jar, Json(response)))
}

#[derive(Deserialize, Default, ToSchema)]
struct LogoutBody {
    #[serde(default)]
    all: bool,
}

/// Ends the current session, or every session with `all: true`; their sockets get `force_logout`.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body(content = LogoutBody, description = "optional: an empty body is allowed"),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = accounts::LogoutResponse),
        (status = 401, body = ErrorBody), (status = 403, description = "csrf_rejected", body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    caller: AuthUser,
    jar: CookieJar,
    JsonOrEmpty(body): JsonOrEmpty<LogoutBody>,
) -> ApiResult<impl IntoResponse> {
    let response = accounts::logout(&state, &caller, body.all).await?;
    Ok((cookies::clear(jar, &state.config), Json(response)))
}

/// Who is calling, on which session.
#[derive(Serialize, ToSchema)]
struct Me {
    user: User,
    session: Session,
}

/// The caller and their session.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(caller: AuthUser) -> Json<Me> {
    Json(Me {
        user: caller.user,
        session: caller.session,
    })
}
