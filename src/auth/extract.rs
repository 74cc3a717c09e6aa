//! Request extractors: `AuthUser` (a signed-in caller, checked against the session and the
//! account on every request) and `ClientInfo` (user agent and IP for new sessions).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum_extra::extract::cookie::CookieJar;

use super::access;
use super::cookies::ACCESS_COOKIE;
use super::token::Claims;
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::store::{Session, User};

/// A caller whose token is valid, whose session is live and whose account is active with the
/// rights the token claims.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user: User,
    pub session: Session,
    pub claims: Claims,
}

/// Where a request's token came from; cookie-authenticated writes need an allowed Origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Cookie,
}

/// The access token of a request: the `Authorization: Bearer` header, else the cookie.
pub fn request_token(headers: &HeaderMap) -> Result<Option<(String, TokenSource)>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
            })
            .map(|(_, token)| token.trim().to_owned());
        return match bearer {
            Some(token) => Ok(Some((token, TokenSource::Header))),
            None => Err(ApiError::unauthorized(
                ErrorCode::InvalidToken,
                "the Authorization header must be `Bearer <token>`",
            )),
        };
    }
    Ok(CookieJar::from_headers(headers)
        .get(ACCESS_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
        .map(|v| (v, TokenSource::Cookie)))
}

/// Whether a request carries an `Origin` (or, lacking one, a `Referer`) that is allowed.
pub fn has_allowed_origin(config: &Config, headers: &HeaderMap) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    origin.is_some_and(|o| config.is_allowed_origin(o))
}

/// Cookie-authenticated writes must come from an allowed origin (CSRF protection).
pub fn check_csrf(
    config: &Config,
    method: &Method,
    headers: &HeaderMap,
    source: TokenSource,
) -> Result<(), ApiError> {
    let writes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if writes && source == TokenSource::Cookie && !has_allowed_origin(config, headers) {
        return Err(ApiError::forbidden(
            ErrorCode::CsrfRejected,
            "a cookie-authenticated change must come from an allowed origin",
        ));
    }
    Ok(())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = async {
            let Some((token, source)) = request_token(&parts.headers)? else {
                return Err(ApiError::unauthorized(
                    ErrorCode::Unauthenticated,
                    "sign in first: send `Authorization: Bearer <token>`",
                ));
            };
            check_csrf(&state.config, &parts.method, &parts.headers, source)?;
            let claims = state
                .tokens
                .verify(&token)
                .map_err(|e| ApiError::unauthorized(e.code(), e.to_string()))?;
            let (user, session) = access::check_access(state, &claims).await?;
            Ok(Self {
                user,
                session,
                claims,
            })
        }
        .await;
        if let Err(e) = &caller {
            state.metrics.auth_failure(e.code);
        }
        caller
    }
}

/// The device a login comes from, as recorded on its session.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub user_agent: Option<String>,
    pub ip: Option<IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect());
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self { user_agent, ip })
    }
}

/// A signed-in admin; anyone else gets 403 `forbidden`.
#[derive(Clone, Debug)]
pub struct AdminUser(pub AuthUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        if !caller.user.is_admin {
            return Err(ApiError::forbidden(
                ErrorCode::Forbidden,
                "this needs an admin",
            ));
        }
        Ok(Self(caller))
    }
}
