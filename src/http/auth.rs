//! `/api/auth/*`: register, login, refresh, logout and `me`.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use serde_json::json;

use super::json::{Json as JsonBody, JsonOrEmpty};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::auth::accounts::{self, Registration};
use crate::auth::cookies::{self, REFRESH_COOKIE};
use crate::auth::extract::{ClientInfo, TokenSource, check_csrf};
use crate::error::{ApiError, ApiResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
}

#[derive(Deserialize)]
struct RegisterBody {
    email: Option<String>,
    password: Option<String>,
    name: Option<String>,
}

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

#[derive(Deserialize)]
struct LoginBody {
    email: Option<String>,
    password: Option<String>,
}

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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RefreshBody {
    refresh_token: Option<String>,
}

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
                        "invalid_refresh_token",
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

#[derive(Deserialize, Default)]
struct LogoutBody {
    #[serde(default)]
    all: bool,
}

async fn logout(
    State(state): State<AppState>,
    caller: AuthUser,
    jar: CookieJar,
    JsonOrEmpty(body): JsonOrEmpty<LogoutBody>,
) -> ApiResult<impl IntoResponse> {
    let response = accounts::logout(&state, &caller, body.all).await?;
    Ok((cookies::clear(jar, &state.config), Json(response)))
}

async fn me(caller: AuthUser) -> Json<serde_json::Value> {
    Json(json!({ "user": caller.user, "session": caller.session }))
}
