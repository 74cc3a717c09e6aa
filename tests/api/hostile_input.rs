//! Bad and hostile input: broken JSON, wrong types, wrong content types, oversized bodies,
//! unusual Unicode, SQL-looking text and NUL bytes. Every answer is a clean 4xx in the error
//! format, never a 500, and never shows internals (checked by `expect_json` on every answer).

use serde_json::{Value, json};

use crate::helpers::*;

const AUTH_POSTS: [&str; 4] = [
    "/api/auth/register",
    "/api/auth/login",
    "/api/auth/refresh",
    "/api/auth/logout",
];

db_test!(malformed_json_is_400_invalid_json_on_every_auth_endpoint);
async fn malformed_json_is_400_invalid_json_on_every_auth_endpoint(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let broken: [&[u8]; 6] = [
        b"{\"email\":",
        b"not json at all",
        b"{\"email\": \"ada@example.com\"} trailing",
        b"{'email': 'single quotes'}",
        b"\"",
        b"{\"email\": \xff\xfe}",
    ];
    for path in AUTH_POSTS {
        for body in broken {
            let response = app
                .client
                .post(app.url(path))
                .bearer_auth(&ada.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            let error = expect_error(response, 400, "invalid_json").await;
            assert!(error.get("fields").is_none(), "{path} {body:?}: {error}");
        }
    }
    // None of that ended Ada's session.
    expect_json(app.get_with_token("/api/auth/me", &ada.token).await, 200).await;
}

db_test!(a_field_of_the_wrong_type_is_400_invalid_json_naming_it);
async fn a_field_of_the_wrong_type_is_400_invalid_json_naming_it(db: Db) {
    let app = spawn_app(db).await;
    let cases: [(&str, Value, &str); 6] = [
        (
            "/api/auth/register",
            json!({ "email": 42, "name": "Ada", "password": PASSWORD }),
            "email",
        ),
        (
            "/api/auth/register",
            json!({ "email": "ada@example.com", "name": true, "password": PASSWORD }),
            "name",
        ),
        (
            "/api/auth/register",
            json!({ "email": "ada@example.com", "name": "Ada", "password": ["x"] }),
            "password",
        ),
        (
            "/api/auth/login",
            json!({ "email": 42, "password": PASSWORD }),
            "email",
        ),
        (
            "/api/auth/login",
            json!({ "email": "ada@example.com", "password": { "$ne": null } }),
            "password",
        ),
        (
            "/api/auth/refresh",
            json!({ "refreshToken": 7 }),
            "refreshToken",
        ),
    ];
    for (path, body, field) in cases {
        let error = expect_error(app.post_json(path, &body).await, 400, "invalid_json").await;
        let fields = error["fields"]
            .as_object()
            .unwrap_or_else(|| panic!("no fields: {error}"));
        assert!(fields.contains_key(field), "{path} {body}: {error}");
    }
    for body in [json!([]), json!("ada"), json!(null), json!(3)] {
        let response = app.post_json("/api/auth/login", &body).await;
        expect_error(response, 400, "invalid_json").await;
    }
}

db_test!(a_body_that_is_not_json_is_415);
async fn a_body_that_is_not_json_is_415(db: Db) {
    let app = spawn_app(db).await;
    let body =
        r#"{"email":"ada@example.com","name":"Ada","password":"correct horse battery staple"}"#;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
    ] {
        let response = app.post_raw("/api/auth/register", content_type, body).await;
        expect_error(response, 415, "unsupported_media_type").await;
    }
    let response = app
        .client
        .post(app.url("/api/auth/register"))
        .body(body)
        .send()
        .await
        .unwrap();
    expect_error(response, 415, "unsupported_media_type").await;
    // JSON with a charset, or a +json type, is JSON.
    let response = app
        .post_raw(
            "/api/auth/register",
            "application/json; charset=utf-8",
            body,
        )
        .await;
    expect_json(response, 201).await;
    let response = app
        .post_raw("/api/auth/login", "application/vnd.craftcode+json", body)
        .await;
    expect_json(response, 200).await;
}

db_test!(a_body_over_64_kib_is_413);
async fn a_body_over_64_kib_is_413(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let huge =
        json!({ "email": "ada@example.com", "name": "x".repeat(100 * 1024), "password": PASSWORD });
    for path in AUTH_POSTS {
        let response = app.post_json_with_token(path, &ada.token, &huge).await;
        expect_error(response, 413, "payload_too_large").await;
    }
    // Just under the limit is read, and refused for what it says.
    let large = json!({
        "email": "large@example.com",
        "name": "x".repeat(60 * 1024),
        "password": PASSWORD,
    });
    let error = expect_error(
        app.post_json("/api/auth/register", &large).await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(error["fields"]["name"], "must be at most 100 characters");
    // The server is still fine, and so is Ada's session.
    app.login(&ada.email, &ada.password).await;
    expect_json(app.get_with_token("/api/auth/me", &ada.token).await, 200).await;
}

db_test!(deeply_nested_json_is_refused_without_harm);
async fn deeply_nested_json_is_refused_without_harm(db: Db) {
    let app = spawn_app(db).await;
    let nested = format!("{{\"email\":{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let response = app
        .post_raw("/api/auth/login", "application/json", nested)
        .await;
    expect_error(response, 400, "invalid_json").await;
    expect_json(app.get("/healthz").await, 200).await;
}

db_test!(unicode_names_are_kept_exactly_as_written);
async fn unicode_names_are_kept_exactly_as_written(db: Db) {
    let app = spawn_app(db).await;
    let names = [
        "👩🏽‍💻 Ada",
        "Zoe\u{308} Dupont",
        "مريم الأحمد",
        "שרה כהן",
        "李小龍",
        "Ελένη",
        "Ǹ̶̡a̷m̸e̵ with combining marks",
    ];
    for (i, name) in names.iter().enumerate() {
        let email = format!("person{i}@example.com");
        let body = app.register(&email, name, PASSWORD).await;
        assert_eq!(body["user"]["name"], *name);
        assert_eq!(jwt_claims(str_at(&body, "/token"))["name"], *name);
        let login = app.login(&email, PASSWORD).await;
        let me = expect_json(
            app.get_with_token("/api/auth/me", str_at(&login, "/token"))
                .await,
            200,
        )
        .await;
        assert_eq!(me["user"]["name"], *name);
    }
}

db_test!(names_are_trimmed_and_limited_to_100_characters_not_bytes);
async fn names_are_trimmed_and_limited_to_100_characters_not_bytes(db: Db) {
    let app = spawn_app(db).await;
    let body = app
        .register("trim@example.com", "  Ada Lovelace \t ", PASSWORD)
        .await;
    assert_eq!(body["user"]["name"], "Ada Lovelace");

    for (i, name) in [
        "é".repeat(100),
        "😀".repeat(100),
        format!("  {}  ", "a".repeat(100)),
    ]
    .iter()
    .enumerate()
    {
        let body = app
            .register(&format!("long{i}@example.com"), name, PASSWORD)
            .await;
        assert_eq!(body["user"]["name"], name.trim());
    }
    for (i, name) in ["é".repeat(101), "😀".repeat(101), "a".repeat(101)]
        .iter()
        .enumerate()
    {
        let response = app
            .post_json(
                "/api/auth/register",
                &json!({
                    "email": format!("toolong{i}@example.com"),
                    "name": name,
                    "password": PASSWORD,
                }),
            )
            .await;
        let error = expect_error(response, 400, "validation_failed").await;
        assert_eq!(error["fields"]["name"], "must be at most 100 characters");
    }
    for name in ["", "   ", "\t\n"] {
        let response = app
            .post_json(
                "/api/auth/register",
                &json!({ "email": "empty@example.com", "name": name, "password": PASSWORD }),
            )
            .await;
        let error = expect_error(response, 400, "validation_failed").await;
        assert!(error["fields"]["name"].is_string());
    }
}

db_test!(nul_bytes_and_control_characters_in_names_and_emails_are_refused);
async fn nul_bytes_and_control_characters_in_names_and_emails_are_refused(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    for name in ["Ada\u{0}", "Ada\nLovelace", "Ada\u{7}", "Ada\u{1b}[31m"] {
        let response = app
            .post_json(
                "/api/auth/register",
                &json!({ "email": "ctl@example.com", "name": name, "password": PASSWORD }),
            )
            .await;
        let error = expect_error(response, 400, "validation_failed").await;
        assert_eq!(
            error["fields"]["name"], "must not contain control characters",
            "{name:?}"
        );
    }
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({ "email": "nul\u{0}@example.com", "name": "Nul", "password": PASSWORD }),
        )
        .await;
    let error = expect_error(response, 400, "validation_failed").await;
    assert!(error["fields"]["email"].is_string());

    // NUL bytes in secrets never reach the database: they are only wrong.
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": ada.email, "password": "\u{0}".repeat(8) }),
        )
        .await;
    expect_error(response, 401, "invalid_credentials").await;
    let response = app
        .post_json("/api/auth/refresh", &json!({ "refreshToken": "\u{0}" }))
        .await;
    expect_error(response, 401, "invalid_refresh_token").await;
    expect_json(app.get_with_token("/api/auth/me", &ada.token).await, 200).await;
}

db_test!(a_nul_byte_in_a_login_email_is_only_a_wrong_email);
async fn a_nul_byte_in_a_login_email_is_only_a_wrong_email(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    for email in [format!("{}\u{0}", ada.email), "\u{0}".to_owned()] {
        let response = app
            .post_json(
                "/api/auth/login",
                &json!({ "email": email, "password": ada.password }),
            )
            .await;
        expect_error(response, 401, "invalid_credentials").await;
    }
}

db_test!(sql_looking_input_is_stored_verbatim_or_refused_safely);
async fn sql_looking_input_is_stored_verbatim_or_refused_safely(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let name = "Robert'); DROP TABLE users;--";
    let email = "x'or'1'='1@example.com";
    let body = app.register(email, name, PASSWORD).await;
    assert_eq!(body["user"]["name"], name);
    assert_eq!(body["user"]["email"], email);
    let login = app.login(email, PASSWORD).await;
    assert_eq!(login["user"]["name"], name);

    for (email, password) in [
        ("' OR '1'='1", "' OR '1'='1"),
        ("ada-0@example.com' --", "anything"),
        ("\" OR \"\"=\"", "x\" OR 1=1; --"),
        ("ada-0@example.com", "' OR 1=1 --"),
    ] {
        let response = app
            .post_json(
                "/api/auth/login",
                &json!({ "email": email, "password": password }),
            )
            .await;
        expect_error(response, 401, "invalid_credentials").await;
    }
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({ "email": "'; DROP TABLE users; --@x.com", "name": "x", "password": PASSWORD }),
        )
        .await;
    expect_error(response, 400, "validation_failed").await;
    // Every table is still there.
    app.login(&ada.email, &ada.password).await;
    expect_json(app.get_with_token("/api/auth/me", &ada.token).await, 200).await;
}

db_test!(overlong_passwords_and_emails_are_validation_errors);
async fn overlong_passwords_and_emails_are_validation_errors(db: Db) {
    let app = spawn_app(db).await;
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({ "email": "ada@example.com", "name": "Ada", "password": "p".repeat(2000) }),
        )
        .await;
    let error = expect_error(response, 400, "validation_failed").await;
    assert_eq!(
        error["fields"]["password"],
        "must be at most 1024 characters"
    );
    let long_email = format!("{}@{}.com", "a".repeat(64), "b".repeat(250));
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({ "email": long_email, "name": "Ada", "password": PASSWORD }),
        )
        .await;
    let error = expect_error(response, 400, "validation_failed").await;
    assert!(error["fields"]["email"].is_string());
    // A 2,000-character password at login is only a wrong password.
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": "ada@example.com", "password": "p".repeat(2000) }),
        )
        .await;
    expect_error(response, 401, "invalid_credentials").await;
}

db_test!(extra_fields_cannot_make_a_new_account_an_admin);
async fn extra_fields_cannot_make_a_new_account_an_admin(db: Db) {
    let app = spawn_app(db).await;
    let _admin = app.create_user("Admin").await;
    let body = app
        .post_json(
            "/api/auth/register",
            &json!({
                "email": "mallory@example.com", "name": "Mallory", "password": PASSWORD,
                "isAdmin": true,
                "is_admin": true,
                "isActive": true,
                "id": "00000000-0000-7000-8000-000000000000",
            }),
        )
        .await;
    let body = expect_json(body, 201).await;
    assert_eq!(body["user"]["isAdmin"], false);
    assert_ne!(body["user"]["id"], "00000000-0000-7000-8000-000000000000");
    assert_eq!(jwt_claims(str_at(&body, "/token"))["isAdmin"], false);
}
