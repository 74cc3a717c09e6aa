//! `POST /api/auth/refresh`: rotation on every use, and theft detection when a rotated refresh
//! token comes back.

use serde_json::{Value, json};

use crate::helpers::*;

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.post_json(
        "/api/auth/refresh",
        &json!({ "refreshToken": refresh_token }),
    )
    .await
}

db_test!(a_refresh_token_buys_a_new_token_pair_for_the_same_session);
async fn a_refresh_token_buys_a_new_token_pair_for_the_same_session(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let response = refresh(&app, &ada.refresh_token).await;
    let cookies = set_cookies(response.headers());
    let body = expect_json(response, 200).await;
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["expiresAt", "refreshToken", "token"]);
    assert_timestamp(&body["expiresAt"]);
    let token = str_at(&body, "/token");
    let new_refresh = str_at(&body, "/refreshToken");
    assert_ne!(new_refresh, ada.refresh_token);
    assert!(new_refresh.len() >= 43);
    assert_eq!(jwt_claims(token)["sid"], ada.session_id.to_string());
    assert_eq!(cookies["craftcode_token"].value, token);
    assert_eq!(cookies["craftcode_refresh"].value, new_refresh);

    let me = expect_json(app.get_with_token("/api/auth/me", token).await, 200).await;
    assert_eq!(me["session"]["id"], ada.session_id.to_string());
    // The new refresh token is good for one more turn.
    expect_json(refresh(&app, new_refresh).await, 200).await;
}

db_test!(a_rotated_refresh_token_presented_again_ends_the_session);
async fn a_rotated_refresh_token_presented_again_ends_the_session(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let other_device = app.login(&ada.email, &ada.password).await;

    let rotated = expect_json(refresh(&app, &ada.refresh_token).await, 200).await;
    let new_token = str_at(&rotated, "/token");
    let new_refresh = str_at(&rotated, "/refreshToken");

    // The thief (or the victim) presents the old one again.
    expect_error(
        refresh(&app, &ada.refresh_token).await,
        401,
        "invalid_refresh_token",
    )
    .await;

    for token in [ada.token.as_str(), new_token] {
        expect_error(
            app.get_with_token("/api/auth/me", token).await,
            401,
            "session_revoked",
        )
        .await;
    }
    expect_error(
        refresh(&app, new_refresh).await,
        401,
        "invalid_refresh_token",
    )
    .await;

    // Only that session ended: the other device carries on.
    expect_json(
        app.get_with_token("/api/auth/me", str_at(&other_device, "/token"))
            .await,
        200,
    )
    .await;
    expect_json(
        refresh(&app, str_at(&other_device, "/refreshToken")).await,
        200,
    )
    .await;
}

db_test!(the_same_refresh_token_presented_twice_at_once_wins_only_once);
async fn the_same_refresh_token_presented_twice_at_once_wins_only_once(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let (a, b) = tokio::join!(
        refresh(&app, &ada.refresh_token),
        refresh(&app, &ada.refresh_token)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);
}

db_test!(an_unknown_or_missing_refresh_token_is_401);
async fn an_unknown_or_missing_refresh_token_is_401(db: Db) {
    let app = spawn_app(db).await;
    let _ada = app.create_user("Ada").await;
    for body in [
        json!({ "refreshToken": "not-a-refresh-token" }),
        json!({ "refreshToken": "" }),
        json!({}),
    ] {
        let response = app.post_json("/api/auth/refresh", &body).await;
        expect_error(response, 401, "invalid_refresh_token").await;
    }
    let response = app
        .client
        .post(app.url("/api/auth/refresh"))
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "invalid_refresh_token").await;
}

db_test!(a_refresh_token_of_a_logged_out_session_is_refused);
async fn a_refresh_token_of_a_logged_out_session_is_refused(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let logout: Value = expect_json(
        app.post_json_with_token("/api/auth/logout", &ada.token, &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(logout["sessionsEnded"], 1);
    expect_error(
        refresh(&app, &ada.refresh_token).await,
        401,
        "invalid_refresh_token",
    )
    .await;
}
