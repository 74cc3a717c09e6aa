//! The auth cookies: their attributes, signing in with them, clearing them at logout, and the
//! CSRF rule for cookie-authenticated writes.

use reqwest::Method;
use reqwest::header::{ORIGIN, REFERER};
use serde_json::json;

use crate::helpers::*;

/// Checks both auth cookies of a register, login or refresh answer carry `access` and `refresh`
/// with the contract's attributes.
fn assert_login_cookies(
    headers: &reqwest::header::HeaderMap,
    access: &str,
    refresh: &str,
    secure: bool,
) {
    let cookies = set_cookies(headers);
    let token = &cookies["craftcode_token"];
    assert_eq!(token.value, access);
    assert_eq!(token.attribute("Path"), Some("/"));
    let refresh_cookie = &cookies["craftcode_refresh"];
    assert_eq!(refresh_cookie.value, refresh);
    assert_eq!(refresh_cookie.attribute("Path"), Some("/api/auth"));
    for cookie in [token, refresh_cookie] {
        assert!(cookie.has("HttpOnly"), "{cookie:?}");
        assert_eq!(cookie.attribute("SameSite"), Some("Lax"), "{cookie:?}");
        assert_eq!(cookie.has("Secure"), secure, "{cookie:?}");
        assert!(cookie.attribute("Domain").is_none(), "{cookie:?}");
    }
}

/// Checks a logout answer expires both auth cookies on the paths they were set with (a cookie is
/// only cleared on its own path).
fn assert_cookies_cleared(cookies: &std::collections::HashMap<String, SetCookie>) {
    for (name, path) in [("craftcode_token", "/"), ("craftcode_refresh", "/api/auth")] {
        let cookie = cookies
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not cleared: {cookies:?}"));
        assert_eq!(cookie.value, "", "{cookie:?}");
        assert_eq!(cookie.attribute("Max-Age"), Some("0"), "{cookie:?}");
        assert_eq!(cookie.attribute("Path"), Some(path), "{cookie:?}");
        assert!(cookie.has("HttpOnly"), "{cookie:?}");
    }
}

db_test!(register_login_and_refresh_set_both_cookies);
async fn register_login_and_refresh_set_both_cookies(db: Db) {
    let app = spawn_app(db).await;
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({ "email": "ada@example.com", "name": "Ada", "password": PASSWORD }),
        )
        .await;
    let headers = response.headers().clone();
    let body = expect_json(response, 201).await;
    assert_login_cookies(
        &headers,
        str_at(&body, "/token"),
        str_at(&body, "/refreshToken"),
        false,
    );

    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": "ada@example.com", "password": PASSWORD }),
        )
        .await;
    let headers = response.headers().clone();
    let body = expect_json(response, 200).await;
    assert_login_cookies(
        &headers,
        str_at(&body, "/token"),
        str_at(&body, "/refreshToken"),
        false,
    );
    let cookies = set_cookies(&headers);
    let max_age = |name: &str| cookies[name].attribute("Max-Age").map(str::to_owned);
    assert_eq!(
        max_age("craftcode_token").as_deref(),
        Some("3600"),
        "the access cookie lives as long as the token (JWT_TTL)"
    );
    assert_eq!(
        max_age("craftcode_refresh").as_deref(),
        Some("2592000"),
        "the refresh cookie lives as long as the session (SESSION_TTL, 30 days)"
    );

    let response = app
        .post_json(
            "/api/auth/refresh",
            &json!({ "refreshToken": str_at(&body, "/refreshToken") }),
        )
        .await;
    let headers = response.headers().clone();
    let body = expect_json(response, 200).await;
    assert_login_cookies(
        &headers,
        str_at(&body, "/token"),
        str_at(&body, "/refreshToken"),
        false,
    );
}

db_test!(cookies_are_secure_when_the_base_url_is_https);
async fn cookies_are_secure_when_the_base_url_is_https(db: Db) {
    let app = spawn_app_with(db, &[("BASE_URL", "https://chat.example.com")]).await;
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({ "email": "ada@example.com", "name": "Ada", "password": PASSWORD }),
        )
        .await;
    let headers = response.headers().clone();
    let body = expect_json(response, 201).await;
    assert_login_cookies(
        &headers,
        str_at(&body, "/token"),
        str_at(&body, "/refreshToken"),
        true,
    );
    assert_eq!(body["socket"]["url"], "https://chat.example.com");

    let cookie = format!(
        "craftcode_token={}; craftcode_refresh={}",
        str_at(&body, "/token"),
        str_at(&body, "/refreshToken")
    );
    let response = app
        .with_cookie(Method::POST, "/api/auth/logout", &cookie)
        .header(ORIGIN, "https://chat.example.com")
        .send()
        .await
        .unwrap();
    let cleared = set_cookies(response.headers());
    expect_json(response, 200).await;
    assert!(cleared["craftcode_token"].has("Secure"));
    assert!(cleared["craftcode_refresh"].has("Secure"));
}

db_test!(a_browser_logout_clears_both_cookies_on_the_paths_they_were_set);
async fn a_browser_logout_clears_both_cookies_on_the_paths_they_were_set(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    // What a browser sends to /api/auth/logout: both cookies (their paths match) and its origin.
    let response = app
        .with_cookie(
            Method::POST,
            "/api/auth/logout",
            &format!(
                "craftcode_token={}; craftcode_refresh={}",
                ada.token, ada.refresh_token
            ),
        )
        .header(ORIGIN, ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_cookies_cleared(&set_cookies(response.headers()));
    expect_json(response, 200).await;
}

db_test!(logout_clears_the_cookies_even_when_the_request_carried_none);
async fn logout_clears_the_cookies_even_when_the_request_carried_none(db: Db) {
    // A client that signs in with the bearer token (a SPA that omits credentials, a webview)
    // may still hold the cookies set at login: the contract says logout clears them.
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let response = app
        .post_json_with_token("/api/auth/logout", &ada.token, &json!({}))
        .await;
    assert_cookies_cleared(&set_cookies(response.headers()));
    expect_json(response, 200).await;
}

db_test!(the_access_cookie_alone_signs_in_a_get);
async fn the_access_cookie_alone_signs_in_a_get(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let response = app
        .with_cookie(
            Method::GET,
            "/api/auth/me",
            &format!("craftcode_token={}", ada.token),
        )
        .send()
        .await
        .unwrap();
    let me = expect_json(response, 200).await;
    assert_eq!(me["user"]["id"], ada.id.to_string());
    let response = app
        .with_cookie(Method::GET, "/api/auth/me", "craftcode_token=garbage")
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "invalid_token").await;
}

db_test!(a_cookie_authenticated_logout_needs_an_allowed_origin);
async fn a_cookie_authenticated_logout_needs_an_allowed_origin(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let cookie = format!("craftcode_token={}", ada.token);
    let logout = || app.with_cookie(Method::POST, "/api/auth/logout", &cookie);

    let refused = [
        logout(),
        logout().header(ORIGIN, "https://evil.example"),
        logout().header(ORIGIN, "null"),
        logout().header(ORIGIN, "http://localhost:3001"),
        logout().header(REFERER, "https://evil.example/page"),
    ];
    for request in refused {
        let response = request.send().await.unwrap();
        expect_error(response, 403, "csrf_rejected").await;
    }
    // None of them did anything.
    expect_json(app.get_with_token("/api/auth/me", &ada.token).await, 200).await;

    let response = logout()
        .header(ORIGIN, ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    assert!(set_cookies(response.headers()).contains_key("craftcode_token"));
    assert_eq!(expect_json(response, 200).await["sessionsEnded"], 1);
    expect_error(
        app.get_with_token("/api/auth/me", &ada.token).await,
        401,
        "session_revoked",
    )
    .await;
}

db_test!(an_allowed_referer_stands_in_for_a_missing_origin);
async fn an_allowed_referer_stands_in_for_a_missing_origin(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let response = app
        .with_cookie(
            Method::POST,
            "/api/auth/logout",
            &format!("craftcode_token={}", ada.token),
        )
        .header(REFERER, "http://localhost:3000/settings/security?tab=1")
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(response, 200).await["sessionsEnded"], 1);
}

db_test!(a_bearer_token_needs_no_origin_even_on_writes);
async fn a_bearer_token_needs_no_origin_even_on_writes(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let response = app
        .client
        .post(app.url("/api/auth/logout"))
        .bearer_auth(&ada.token)
        .header(ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(response, 200).await["sessionsEnded"], 1);
}

db_test!(refreshing_with_the_refresh_cookie_needs_an_allowed_origin);
async fn refreshing_with_the_refresh_cookie_needs_an_allowed_origin(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let cookie = format!("craftcode_refresh={}", ada.refresh_token);
    let refresh = || app.with_cookie(Method::POST, "/api/auth/refresh", &cookie);

    for request in [refresh(), refresh().header(ORIGIN, "https://evil.example")] {
        expect_error(request.send().await.unwrap(), 403, "csrf_rejected").await;
    }
    // The refused attempts did not spend the refresh token.
    let response = refresh()
        .header(ORIGIN, ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(response.headers());
    let body = expect_json(response, 200).await;
    assert_eq!(
        cookies["craftcode_refresh"].value,
        str_at(&body, "/refreshToken")
    );
    assert_eq!(cookies["craftcode_token"].value, str_at(&body, "/token"));
    expect_json(
        app.get_with_token("/api/auth/me", str_at(&body, "/token"))
            .await,
        200,
    )
    .await;
}

db_test!(configured_cors_origins_replace_the_default_ones);
async fn configured_cors_origins_replace_the_default_ones(db: Db) {
    let app = spawn_app_with(db, &[("CORS_ORIGINS", "https://app.example.com/any/path")]).await;
    let ada = app.create_user("Ada").await;
    let cookie = format!("craftcode_token={}", ada.token);
    let response = app
        .with_cookie(Method::POST, "/api/auth/logout", &cookie)
        .header(ORIGIN, ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    expect_error(response, 403, "csrf_rejected").await;
    let response = app
        .with_cookie(Method::POST, "/api/auth/logout", &cookie)
        .header(ORIGIN, "https://app.example.com")
        .send()
        .await
        .unwrap();
    expect_json(response, 200).await;
}

db_test!(a_cors_preflight_is_granted_to_allowed_origins_only);
async fn a_cors_preflight_is_granted_to_allowed_origins_only(db: Db) {
    let app = spawn_app(db).await;
    let preflight = |origin: &str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/auth/login"))
            .header(ORIGIN, origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };
    let allowed = preflight(ALLOWED_ORIGIN).await.unwrap();
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], ALLOWED_ORIGIN);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    let foreign = preflight("https://evil.example").await.unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
