//! `POST /api/auth/login`: the login response, the JWT claims, refusals and the rate limit.

use serde_json::{Value, json};

use crate::helpers::*;

/// Checks everything the contract promises about a login response (register and login answer the
/// same shape) for the account `email` named `name`.
pub(crate) fn assert_login_response(body: &Value, email: &str, name: &str) {
    let keys: Vec<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "token",
        "expiresAt",
        "refreshToken",
        "user",
        "session",
        "socketReady",
        "socket",
    ] {
        assert!(keys.contains(&key), "no {key} in {body}");
    }
    // The tokens are random text that may spell anything once lowercased ("…HAsH_9…"): the
    // check is about the rest of the answer.
    let mut rest = body.clone();
    rest["token"] = Value::Null;
    rest["refreshToken"] = Value::Null;
    let text = rest.to_string().to_lowercase();
    assert!(
        !text.contains("password") && !text.contains("argon2") && !text.contains("hash"),
        "a login response must not carry password material: {body}"
    );

    let user = &body["user"];
    let mut user_keys: Vec<&str> = user
        .as_object()
        .expect("user is an object")
        .keys()
        .map(String::as_str)
        .collect();
    user_keys.sort_unstable();
    assert_eq!(
        user_keys,
        [
            "avatarUrl",
            "createdAt",
            "email",
            "id",
            "isActive",
            "isAdmin",
            "name",
            "updatedAt"
        ],
        "the public user object"
    );
    assert_eq!(uuid_at(body, "/user/id").get_version_num(), 7);
    assert_eq!(user["email"], email);
    assert_eq!(user["name"], name);
    assert_eq!(user["isActive"], true);
    assert!(user["isAdmin"].is_boolean());
    assert!(user["avatarUrl"].is_null());
    assert_timestamp(&user["createdAt"]);
    assert_timestamp(&user["updatedAt"]);

    let session = &body["session"];
    assert_eq!(uuid_at(body, "/session/id").get_version_num(), 7);
    assert_eq!(session["userId"], user["id"]);
    assert_eq!(session["ip"], "127.0.0.1");
    assert!(session["revokedAt"].is_null());
    for field in ["createdAt", "lastSeenAt", "expiresAt"] {
        assert_timestamp(&session[field]);
    }
    let session_expiry = chrono::DateTime::parse_from_rfc3339(str_at(body, "/session/expiresAt"))
        .unwrap()
        .timestamp();
    let in_30_days = chrono::Utc::now().timestamp() + 30 * 86400;
    assert!(
        (session_expiry - in_30_days).abs() < 120,
        "a session lives 30 days by default: {session}"
    );

    assert!(body["socketReady"].is_boolean());
    assert_eq!(
        body["socket"],
        json!({
            "url": "http://localhost:3000",
            "path": "/api/socket",
            "namespacesPath": "/api/socket-namespaces",
        })
    );

    let refresh = str_at(body, "/refreshToken");
    assert!(refresh.len() >= 43, "a refresh token carries 256 bits");
    assert_ne!(refresh, str_at(body, "/token"));

    assert_timestamp(&body["expiresAt"]);
    let claims = jwt_claims(str_at(body, "/token"));
    let mut claim_names: Vec<&str> = claims
        .as_object()
        .expect("claims are an object")
        .keys()
        .map(String::as_str)
        .collect();
    claim_names.sort_unstable();
    assert_eq!(
        claim_names,
        [
            "email", "exp", "iat", "isActive", "isAdmin", "name", "sid", "sub"
        ]
    );
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["sid"], session["id"]);
    assert_eq!(claims["email"], email);
    assert_eq!(claims["name"], name);
    assert_eq!(claims["isAdmin"], user["isAdmin"]);
    assert_eq!(claims["isActive"], true);
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 3600, "JWT_TTL defaults to one hour");
    assert!((iat - chrono::Utc::now().timestamp()).abs() < 60);
    let expires_at = chrono::DateTime::parse_from_rfc3339(str_at(body, "/expiresAt")).unwrap();
    assert_eq!(expires_at.timestamp(), exp, "expiresAt is the token's exp");
}

db_test!(a_registered_user_signs_in_and_gets_the_full_login_response);
async fn a_registered_user_signs_in_and_gets_the_full_login_response(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .header(reqwest::header::USER_AGENT, "CraftCode-Test/1.0")
        .json(&json!({ "email": ada.email, "password": ada.password }))
        .send()
        .await
        .unwrap();
    let body = expect_json(response, 200).await;
    assert_login_response(&body, &ada.email, "Ada");
    assert_eq!(body["session"]["userAgent"], "CraftCode-Test/1.0");
    assert_eq!(uuid_at(&body, "/user/id"), ada.id);
    assert_ne!(
        uuid_at(&body, "/session/id"),
        ada.session_id,
        "each login is a new session"
    );

    let me = expect_json(
        app.get_with_token("/api/auth/me", str_at(&body, "/token"))
            .await,
        200,
    )
    .await;
    assert_eq!(me["user"], body["user"]);
    assert_eq!(me["session"]["id"], body["session"]["id"]);
}

db_test!(a_wrong_password_and_an_unknown_email_get_the_same_answer);
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let wrong_password = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": ada.email, "password": "not the password" }),
        )
        .await;
    let wrong = expect_error(wrong_password, 401, "invalid_credentials").await;
    let unknown_email = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": "nobody@example.com", "password": PASSWORD }),
        )
        .await;
    let unknown = expect_error(unknown_email, 401, "invalid_credentials").await;
    assert_eq!(
        wrong, unknown,
        "the answer must not reveal which accounts exist"
    );
}

db_test!(login_without_fields_names_each_missing_field);
async fn login_without_fields_names_each_missing_field(db: Db) {
    let app = spawn_app(db).await;
    let error = expect_error(
        app.post_json("/api/auth/login", &json!({})).await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(error["fields"]["email"], "is required");
    assert_eq!(error["fields"]["password"], "is required");
    let error = expect_error(
        app.post_json("/api/auth/login", &json!({ "email": "ada@example.com" }))
            .await,
        400,
        "validation_failed",
    )
    .await;
    assert!(error["fields"].get("email").is_none());
    assert_eq!(error["fields"]["password"], "is required");
}

db_test!(a_deactivated_account_cannot_sign_in);
async fn a_deactivated_account_cannot_sign_in(db: Db) {
    let app = spawn_app(db).await;
    let _admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    app.state
        .store
        .set_user_flags(
            bob.id,
            craftcode::store::UserFlags {
                is_active: Some(false),
                is_admin: None,
            },
        )
        .await
        .unwrap();
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": bob.email, "password": bob.password }),
        )
        .await;
    expect_error(response, 403, "account_disabled").await;
    // A wrong password still says only that the credentials are wrong.
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": bob.email, "password": "wrong password" }),
        )
        .await;
    expect_error(response, 401, "invalid_credentials").await;
}

db_test!(five_failed_logins_for_one_email_are_answered_429_with_retry_after);
async fn five_failed_logins_for_one_email_are_answered_429_with_retry_after(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let wrong = json!({ "email": ada.email, "password": "wrong password" });
    for attempt in 1..=5 {
        let response = app.post_json("/api/auth/login", &wrong).await;
        assert_eq!(response.status(), 401, "attempt {attempt} is only refused");
    }
    let response = app.post_json("/api/auth/login", &wrong).await;
    let retry_after: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .expect("a 429 says when to retry")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    expect_error(response, 429, "too_many_attempts").await;

    // The right password does not get through while the pair is limited, in any letter case.
    let right = json!({ "email": ada.email.to_uppercase(), "password": ada.password });
    expect_error(
        app.post_json("/api/auth/login", &right).await,
        429,
        "too_many_attempts",
    )
    .await;

    // Another email from the same IP is not limited yet.
    app.login(&bob.email, &bob.password).await;
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": bob.email, "password": "wrong password" }),
        )
        .await;
    expect_error(response, 401, "invalid_credentials").await;
}

db_test!(failed_logins_for_unknown_emails_are_limited_too);
async fn failed_logins_for_unknown_emails_are_limited_too(db: Db) {
    let app = spawn_app(db).await;
    let wrong = json!({ "email": "ghost@example.com", "password": "wrong password" });
    for _ in 1..=5 {
        expect_error(
            app.post_json("/api/auth/login", &wrong).await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    expect_error(
        app.post_json("/api/auth/login", &wrong).await,
        429,
        "too_many_attempts",
    )
    .await;
}

db_test!(about_fifty_failed_logins_from_one_ip_limit_every_email_from_it);
async fn about_fifty_failed_logins_from_one_ip_limit_every_email_from_it(db: Db) {
    let app = spawn_app(db).await;
    let started = std::time::Instant::now();
    let mut failures = 0usize;
    // One failure per email, so only the per-IP limit (50 a minute) can apply.
    let limited = loop {
        let guess = json!({
            "email": format!("guess{failures}@example.com"),
            "password": "wrong password",
        });
        let response = app.post_json("/api/auth/login", &guess).await;
        if response.status() == 429 {
            break response;
        }
        expect_error(response, 401, "invalid_credentials").await;
        failures += 1;
        // The bucket refills one attempt every 1.2 s while the test runs.
        let allowance = 50 + (started.elapsed().as_secs_f64() / 1.2).ceil() as usize;
        assert!(
            failures <= allowance,
            "still not limited after {failures} failures"
        );
    };
    assert!(failures >= 50, "limited after only {failures} failures");
    assert!(limited.headers().contains_key(reqwest::header::RETRY_AFTER));
    expect_error(limited, 429, "too_many_attempts").await;
}
