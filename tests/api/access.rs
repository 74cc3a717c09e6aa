//! Access tokens on every request: missing, malformed, forged, expired, and tokens whose account
//! changed after they were minted.

use std::time::Duration;

use base64::Engine;
use craftcode::auth::TokenKeys;
use craftcode::store::UserFlags;
use craftcode::timestamp::Timestamp;
use serde_json::json;

use crate::helpers::*;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

db_test!(me_answers_the_callers_user_and_session);
async fn me_answers_the_callers_user_and_session(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let me = expect_json(app.get_with_token("/api/auth/me", &ada.token).await, 200).await;
    assert_eq!(me["user"], ada.login["user"]);
    assert_eq!(me["user"]["name"], ada.name);
    assert_eq!(me["session"]["id"], ada.login["session"]["id"]);
    assert_eq!(me["session"]["userId"], ada.login["user"]["id"]);
}

db_test!(a_request_without_a_token_is_401_unauthenticated);
async fn a_request_without_a_token_is_401_unauthenticated(db: Db) {
    let app = spawn_app(db).await;
    expect_error(app.get("/api/auth/me").await, 401, "unauthenticated").await;
    let response = app
        .client
        .post(app.url("/api/auth/logout"))
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "unauthenticated").await;
}

db_test!(garbage_and_forged_tokens_are_401_invalid_token);
async fn garbage_and_forged_tokens_are_401_invalid_token(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let user = app.stored_user(ada.id).await;

    let other_keys = TokenKeys::new(&[42; 32], Duration::from_secs(3600));
    let wrong_signature = other_keys.issue(&user, ada.session_id).token;

    let mut parts: Vec<String> = ada.token.split('.').map(str::to_owned).collect();
    let mut claims = jwt_claims(&ada.token);
    claims["isAdmin"] = json!(false);
    claims["name"] = json!("Mallory");
    parts[1] = b64(claims.to_string().as_bytes());
    let tampered = parts.join(".");
    let alg_none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);

    for token in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        wrong_signature.as_str(),
        tampered.as_str(),
        alg_none.as_str(),
    ] {
        let response = app.get_with_token("/api/auth/me", token).await;
        expect_error(response, 401, "invalid_token").await;
    }
    for header in ["Basic YWRhOnB3", "Bearer", "Bearer    ", ada.token.as_str()] {
        let response = app
            .client
            .get(app.url("/api/auth/me"))
            .header(reqwest::header::AUTHORIZATION, header)
            .send()
            .await
            .unwrap();
        expect_error(response, 401, "invalid_token").await;
    }
    // The genuine token is still fine.
    expect_json(app.get_with_token("/api/auth/me", &ada.token).await, 200).await;
}

db_test!(an_expired_token_is_401_token_expired);
async fn an_expired_token_is_401_token_expired(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let user = app.stored_user(ada.id).await;
    let now = Timestamp::now().as_unix_seconds();
    let expired = app.state.tokens.issue_at(
        &user,
        ada.session_id,
        Timestamp::from_unix_seconds(now - 7200),
        Timestamp::from_unix_seconds(now - 3600),
    );
    let response = app.get_with_token("/api/auth/me", &expired.token).await;
    expect_error(response, 401, "token_expired").await;
    let just_expired = app.state.tokens.issue_at(
        &user,
        ada.session_id,
        Timestamp::from_unix_seconds(now - 3600),
        Timestamp::from_unix_seconds(now - 1),
    );
    let response = app
        .get_with_token("/api/auth/me", &just_expired.token)
        .await;
    expect_error(response, 401, "token_expired").await;
}

db_test!(a_deactivated_users_token_is_401_account_disabled_and_cannot_refresh);
async fn a_deactivated_users_token_is_401_account_disabled_and_cannot_refresh(db: Db) {
    let app = spawn_app(db).await;
    let _admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    expect_json(app.get_with_token("/api/auth/me", &bob.token).await, 200).await;
    app.state
        .store
        .set_user_flags(
            bob.id,
            UserFlags {
                is_admin: None,
                is_active: Some(false),
            },
        )
        .await
        .unwrap()
        .expect("the user exists");

    expect_error(
        app.get_with_token("/api/auth/me", &bob.token).await,
        401,
        "account_disabled",
    )
    .await;
    let response = app
        .post_json(
            "/api/auth/refresh",
            &json!({ "refreshToken": bob.refresh_token }),
        )
        .await;
    expect_error(response, 401, "invalid_refresh_token").await;
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": bob.email, "password": bob.password }),
        )
        .await;
    expect_error(response, 403, "account_disabled").await;

    // Reactivated, the account signs in again.
    app.state
        .store
        .set_user_flags(
            bob.id,
            UserFlags {
                is_admin: None,
                is_active: Some(true),
            },
        )
        .await
        .unwrap();
    app.login(&bob.email, &bob.password).await;
}

db_test!(a_demoted_admins_old_token_is_refused_as_stale);
async fn a_demoted_admins_old_token_is_refused_as_stale(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    assert_eq!(jwt_claims(&ada.token)["isAdmin"], true);
    app.state
        .store
        .set_user_flags(
            ada.id,
            UserFlags {
                is_admin: Some(false),
                is_active: None,
            },
        )
        .await
        .unwrap();

    expect_error(
        app.get_with_token("/api/auth/me", &ada.token).await,
        401,
        "invalid_token",
    )
    .await;

    // A refresh mints a token with the current rights, which works.
    let refreshed = expect_json(
        app.post_json(
            "/api/auth/refresh",
            &json!({ "refreshToken": ada.refresh_token }),
        )
        .await,
        200,
    )
    .await;
    let token = str_at(&refreshed, "/token");
    assert_eq!(jwt_claims(token)["isAdmin"], false);
    let me = expect_json(app.get_with_token("/api/auth/me", token).await, 200).await;
    assert_eq!(me["user"]["isAdmin"], false);
}

db_test!(a_promoted_users_old_token_is_refused_as_stale_too);
async fn a_promoted_users_old_token_is_refused_as_stale_too(db: Db) {
    let app = spawn_app(db).await;
    let _admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    app.state
        .store
        .set_user_flags(
            bob.id,
            UserFlags {
                is_admin: Some(true),
                is_active: None,
            },
        )
        .await
        .unwrap();
    expect_error(
        app.get_with_token("/api/auth/me", &bob.token).await,
        401,
        "invalid_token",
    )
    .await;
    let login = app.login(&bob.email, &bob.password).await;
    assert_eq!(jwt_claims(str_at(&login, "/token"))["isAdmin"], true);
    expect_json(
        app.get_with_token("/api/auth/me", str_at(&login, "/token"))
            .await,
        200,
    )
    .await;
}

db_test!(a_token_naming_another_users_session_is_401_session_revoked);
async fn a_token_naming_another_users_session_is_401_session_revoked(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    // Signed with the server's key, so only the database can tell: Ada's account, Bob's session.
    let user = app.stored_user(ada.id).await;
    let crossed = app.state.tokens.issue(&user, bob.session_id);
    let response = app.get_with_token("/api/auth/me", &crossed.token).await;
    expect_error(response, 401, "session_revoked").await;
    let unknown = app.state.tokens.issue(&user, uuid::Uuid::now_v7());
    let response = app.get_with_token("/api/auth/me", &unknown.token).await;
    expect_error(response, 401, "session_revoked").await;
    // Both sessions still work for their own users.
    expect_json(app.get_with_token("/api/auth/me", &ada.token).await, 200).await;
    expect_json(app.get_with_token("/api/auth/me", &bob.token).await, 200).await;
}
