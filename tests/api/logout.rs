//! `POST /api/auth/logout`: the current session, or every session of the caller.

use serde_json::json;

use crate::helpers::*;

db_test!(logging_out_ends_only_the_current_session);
async fn logging_out_ends_only_the_current_session(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let phone = app.login(&ada.email, &ada.password).await;
    let phone_token = str_at(&phone, "/token");

    let response = app
        .post_json_with_token("/api/auth/logout", &ada.token, &json!({}))
        .await;
    let body = expect_json(response, 200).await;
    assert_eq!(
        body,
        json!({ "ok": true, "sessionsEnded": 1, "socketsDisconnected": 0 })
    );

    expect_error(
        app.get_with_token("/api/auth/me", &ada.token).await,
        401,
        "session_revoked",
    )
    .await;
    expect_json(app.get_with_token("/api/auth/me", phone_token).await, 200).await;
    // The ended session cannot log out twice.
    let again = app
        .post_json_with_token("/api/auth/logout", &ada.token, &json!({}))
        .await;
    expect_error(again, 401, "session_revoked").await;
}

db_test!(logging_out_with_no_body_ends_the_current_session);
async fn logging_out_with_no_body_ends_the_current_session(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let response = app
        .client
        .post(app.url("/api/auth/logout"))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(response, 200).await["sessionsEnded"], 1);
    expect_error(
        app.get_with_token("/api/auth/me", &ada.token).await,
        401,
        "session_revoked",
    )
    .await;
}

db_test!(logging_out_everywhere_ends_every_session_of_the_caller_only);
async fn logging_out_everywhere_ends_every_session_of_the_caller_only(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let phone = app.login(&ada.email, &ada.password).await;

    let response = app
        .post_json_with_token(
            "/api/auth/logout",
            str_at(&phone, "/token"),
            &json!({ "all": true }),
        )
        .await;
    let body = expect_json(response, 200).await;
    assert_eq!(body["ok"], true);
    assert_eq!(body["sessionsEnded"], 2);

    for token in [ada.token.as_str(), str_at(&phone, "/token")] {
        expect_error(
            app.get_with_token("/api/auth/me", token).await,
            401,
            "session_revoked",
        )
        .await;
    }
    let response = app
        .post_json(
            "/api/auth/refresh",
            &json!({ "refreshToken": ada.refresh_token }),
        )
        .await;
    expect_error(response, 401, "invalid_refresh_token").await;
    // Someone else's session is untouched, and Ada can sign in again.
    expect_json(app.get_with_token("/api/auth/me", &bob.token).await, 200).await;
    app.login(&ada.email, &ada.password).await;
}

db_test!(a_logout_body_of_the_wrong_type_is_400);
async fn a_logout_body_of_the_wrong_type_is_400(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let response = app
        .post_json_with_token("/api/auth/logout", &ada.token, &json!({ "all": "yes" }))
        .await;
    let error = expect_error(response, 400, "invalid_json").await;
    assert!(error["fields"]["all"].is_string(), "{error}");
    // Nothing was ended.
    expect_json(app.get_with_token("/api/auth/me", &ada.token).await, 200).await;
}
