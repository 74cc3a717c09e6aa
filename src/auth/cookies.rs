//! The two auth cookies: `craftcode_token` (access token, `Path=/`) and `craftcode_refresh`
//! (refresh token, `Path=/api/auth`), both `HttpOnly`, `SameSite=Lax`, `Secure` on https.

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use crate::config::Config;

pub const ACCESS_COOKIE: &str = "craftcode_token";
pub const REFRESH_COOKIE: &str = "craftcode_refresh";
const REFRESH_PATH: &str = "/api/auth";

fn cookie(
    config: &Config,
    name: &'static str,
    value: String,
    path: &'static str,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(config.secure_cookies())
        .build()
}

/// Sets both cookies after register, login, refresh or an OAuth callback.
pub fn set_login(jar: CookieJar, config: &Config, access: &str, refresh: &str) -> CookieJar {
    let mut access = cookie(config, ACCESS_COOKIE, access.to_owned(), "/");
    access.set_max_age(time_duration(config.jwt_ttl));
    let mut refresh = cookie(config, REFRESH_COOKIE, refresh.to_owned(), REFRESH_PATH);
    refresh.set_max_age(time_duration(config.session_ttl));
    jar.add(access).add(refresh)
}

/// Clears both cookies at logout, whether or not the request carried them (a `remove` of the
/// jar would only expire the cookies it was sent).
pub fn clear(jar: CookieJar, config: &Config) -> CookieJar {
    let expired = |name, path| {
        let mut gone = cookie(config, name, String::new(), path);
        gone.set_max_age(time::Duration::ZERO);
        gone.set_expires(time::OffsetDateTime::UNIX_EPOCH);
        gone
    };
    jar.add(expired(ACCESS_COOKIE, "/"))
        .add(expired(REFRESH_COOKIE, REFRESH_PATH))
}

fn time_duration(d: std::time::Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
