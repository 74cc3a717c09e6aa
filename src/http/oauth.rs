//! `GET /api/auth/{google,github}` and their callbacks: sign in with an OAuth provider. The
//! authorize endpoint redirects to the provider's consent page; the callback redirects into the
//! web app, signed in or with `?error=<code>` on its login page.

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use url::Url;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::cookies;
use crate::auth::extract::ClientInfo;
use crate::auth::oauth::{self, BROWSER_COOKIE, CallbackParams, Provider};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(authorize))
        .routes(routes!(callback))
}

/// `?returnTo=/path`: 302 to the provider's consent page, with the browser-binding cookie.
#[utoipa::path(get, path = "/api/auth/{provider}", tag = "auth",
    params(
        ("provider" = String, Path, description = "`google` or `github`"),
        ("returnTo" = Option<String>, Query, description = "a relative path of the web app; anything else becomes `/`")),
    responses(
        (status = 302, description = "to the provider's consent page (state and PKCE S256)"),
        (status = 404, description = "provider_not_configured, or unknown_provider", body = crate::error::ErrorBody)))]
async fn authorize(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
    jar: CookieJar,
) -> ApiResult<Response> {
    let provider = known_provider(&provider)?;
    let return_to = query_param(query.as_deref(), "returnTo");
    let browser = jar.get(BROWSER_COOKIE).map(|c| c.value().to_owned());
    let started =
        oauth::authorize(&state, provider, return_to.as_deref(), browser.as_deref()).await?;
    Ok((jar.add(started.cookie), found(&started.consent_url)).into_response())
}

/// `?code&state` (or `?error&state`): 302 into the web app, signed in (with the login
/// cookies) or on its login page with the failure's code.
#[utoipa::path(get, path = "/api/auth/{provider}/callback", tag = "auth",
    params(
        ("provider" = String, Path, description = "`google` or `github`"),
        ("code" = Option<String>, Query), ("state" = Option<String>, Query),
        ("error" = Option<String>, Query, description = "set by the provider when the user declined")),
    responses(
        (status = 302, description = "to `{APP_URL}{returnTo}?socket=connect` signed in (cookies set), or to `{APP_URL}/login?error=<code>`"),
        (status = 404, description = "unknown_provider", body = crate::error::ErrorBody)))]
async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
    jar: CookieJar,
    client: ClientInfo,
) -> ApiResult<Response> {
    let provider = known_provider(&provider)?;
    let query = query.as_deref();
    let params = CallbackParams {
        code: query_param(query, "code"),
        state: query_param(query, "state"),
        error: query_param(query, "error"),
    };
    let browser = jar.get(BROWSER_COOKIE).map(|c| c.value().to_owned());
    let response = match oauth::callback(&state, provider, &params, browser.as_deref(), &client)
        .await
    {
        Ok(signed_in) => {
            let login = &signed_in.login;
            let jar = cookies::set_login(jar, &state.config, &login.token, &login.refresh_token);
            (jar, found(&signed_in.redirect_to)).into_response()
        }
        Err(failure) => found(&oauth::failure_url(&state.config, failure)),
    };
    Ok(response)
}

fn known_provider(name: &str) -> ApiResult<Provider> {
    Provider::from_name(name).ok_or_else(|| {
        ApiError::not_found(
            ErrorCode::UnknownProvider,
            "there is no such sign-in provider; google and github are supported",
        )
    })
}

/// The first value of a query parameter, decoded; a malformed query string is read leniently
/// rather than refused, so every failure still ends on the web app's login page.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A 302 (the contract's status; axum's `Redirect` answers 303 or 307), never cached: these
/// answers set cookies and carry one-time URLs.
fn found(location: &Url) -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location.as_str()),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response()
}
