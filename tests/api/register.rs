//! `POST /api/auth/register`: who becomes admin, emails, duplicates, closed signup, validation.

use serde_json::json;

use crate::helpers::*;
use crate::login::assert_login_response;

db_test!(registering_answers_201_with_a_login_response_that_works);
async fn registering_answers_201_with_a_login_response_that_works(db: Db) {
    let app = spawn_app(db).await;
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({ "email": "ada@example.com", "name": "Ada Lovelace", "password": PASSWORD }),
        )
        .await;
    let body = expect_json(response, 201).await;
    assert_login_response(&body, "ada@example.com", "Ada Lovelace");
    let me = expect_json(
        app.get_with_token("/api/auth/me", str_at(&body, "/token"))
            .await,
        200,
    )
    .await;
    assert_eq!(me["user"]["email"], "ada@example.com");
    app.login("ada@example.com", PASSWORD).await;
}

db_test!(the_first_account_is_the_admin_and_the_next_ones_are_not);
async fn the_first_account_is_the_admin_and_the_next_ones_are_not(db: Db) {
    let app = spawn_app(db).await;
    let first = app.create_user("First").await;
    let second = app.create_user("Second").await;
    assert_eq!(first.login["user"]["isAdmin"], true);
    assert_eq!(jwt_claims(&first.token)["isAdmin"], true);
    assert_eq!(second.login["user"]["isAdmin"], false);
    assert_eq!(jwt_claims(&second.token)["isAdmin"], false);
    let again = app.login(&first.email, &first.password).await;
    assert_eq!(again["user"]["isAdmin"], true);
}

db_test!(emails_are_stored_lowercased_and_sign_in_in_any_case);
async fn emails_are_stored_lowercased_and_sign_in_in_any_case(db: Db) {
    let app = spawn_app(db).await;
    let body = app
        .register("  Ada.Lovelace@Example.COM ", "Ada", PASSWORD)
        .await;
    assert_eq!(body["user"]["email"], "ada.lovelace@example.com");
    assert_eq!(
        jwt_claims(str_at(&body, "/token"))["email"],
        "ada.lovelace@example.com"
    );
    let again = app.login("ADA.LOVELACE@example.com", PASSWORD).await;
    assert_eq!(again["user"]["id"], body["user"]["id"]);
}

db_test!(an_email_taken_in_another_letter_case_is_409);
async fn an_email_taken_in_another_letter_case_is_409(db: Db) {
    let app = spawn_app(db).await;
    app.register("ada@example.com", "Ada", PASSWORD).await;
    for email in ["ada@example.com", "ADA@Example.com"] {
        let response = app
            .post_json(
                "/api/auth/register",
                &json!({ "email": email, "name": "Impostor", "password": "another password" }),
            )
            .await;
        expect_error(response, 409, "email_taken").await;
    }
    // The first account is untouched: its password still works, the impostor's does not.
    let login = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(login["user"]["name"], "Ada");
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": "ada@example.com", "password": "another password" }),
        )
        .await;
    expect_error(response, 401, "invalid_credentials").await;
}

db_test!(with_signup_closed_registering_is_403_but_existing_accounts_sign_in);
async fn with_signup_closed_registering_is_403_but_existing_accounts_sign_in(db: Db) {
    let app = spawn_app_with(db, &[("ALLOW_SIGNUP", "false")]).await;
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({ "email": "ada@example.com", "name": "Ada", "password": PASSWORD }),
        )
        .await;
    expect_error(response, 403, "signup_disabled").await;

    // An operator-made account (as `craftcode user create` makes it) still signs in.
    let hash = craftcode::auth::password::hash(PASSWORD.to_owned())
        .await
        .unwrap();
    app.state
        .store
        .insert_user(&craftcode::store::NewUser {
            email: "ops@example.com",
            name: "Ops",
            password_hash: Some(&hash),
            is_admin: false,
            is_active: true,
        })
        .await
        .unwrap()
        .expect("a new account");
    let login = app.login("ops@example.com", PASSWORD).await;
    assert_eq!(login["user"]["isAdmin"], true, "still the first account");
}

db_test!(registering_without_fields_names_each_missing_field);
async fn registering_without_fields_names_each_missing_field(db: Db) {
    let app = spawn_app(db).await;
    let error = expect_error(
        app.post_json("/api/auth/register", &json!({})).await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(
        error["fields"],
        json!({ "email": "is required", "name": "is required", "password": "is required" })
    );
    let error = expect_error(
        app.post_json(
            "/api/auth/register",
            &json!({ "email": "ada@example.com", "name": "Ada" }),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(error["fields"], json!({ "password": "is required" }));
}

db_test!(every_invalid_field_is_named_at_once);
async fn every_invalid_field_is_named_at_once(db: Db) {
    let app = spawn_app(db).await;
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({ "email": "not an email", "name": "   ", "password": "short" }),
        )
        .await;
    let error = expect_error(response, 400, "validation_failed").await;
    let fields = error["fields"].as_object().unwrap();
    assert_eq!(fields.len(), 3, "{error}");
    assert_eq!(error["fields"]["email"], "must be a valid address");
    assert_eq!(error["fields"]["password"], "must be at least 8 characters");
    assert!(error["fields"]["name"].is_string());
    // Nothing was created.
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": "not an email", "password": "short" }),
        )
        .await;
    expect_error(response, 401, "invalid_credentials").await;
}

db_test!(a_password_of_exactly_eight_characters_is_enough);
async fn a_password_of_exactly_eight_characters_is_enough(db: Db) {
    let app = spawn_app(db).await;
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({ "email": "ada@example.com", "name": "Ada", "password": "1234567" }),
        )
        .await;
    let error = expect_error(response, 400, "validation_failed").await;
    assert_eq!(error["fields"]["password"], "must be at least 8 characters");
    app.register("ada@example.com", "Ada", "12345678").await;
    app.login("ada@example.com", "12345678").await;
}

db_test!(malformed_emails_are_refused);
async fn malformed_emails_are_refused(db: Db) {
    let app = spawn_app(db).await;
    for email in [
        "ada",
        "@example.com",
        "ada@",
        "ada@example",
        "ada@@example.com",
        "a da@example.com",
        "",
    ] {
        let response = app
            .post_json(
                "/api/auth/register",
                &json!({ "email": email, "name": "Ada", "password": PASSWORD }),
            )
            .await;
        let error = expect_error(response, 400, "validation_failed").await;
        assert!(error["fields"]["email"].is_string(), "{email:?}: {error}");
    }
}
