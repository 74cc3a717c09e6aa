//! Account administration over HTTP (`/api/users`): who may do what, the last admin, listing
//! and searching, creating accounts, the directory, self-service, hostile input, and the
//! command line changing an account under a running server. What an account change does to
//! live sockets is in `tests/realtime/admin.rs`.

use std::collections::HashSet;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

/// The fields of the contract's public user object, and nothing else.
const PUBLIC_USER_FIELDS: [&str; 8] = [
    "id",
    "email",
    "name",
    "avatarUrl",
    "isAdmin",
    "isActive",
    "createdAt",
    "updatedAt",
];

/// `POST /api/users` as `admin`, which must answer 201; answers the created user.
async fn create_account(app: &TestApp, admin: &TestUser, body: Value) -> Value {
    let response = app
        .post_json_with_token("/api/users", &admin.token, &body)
        .await;
    let created = expect_json(response, 201).await;
    created["user"].clone()
}

/// One page of `GET /api/users` as `token`, which must answer 200.
async fn list_users(app: &TestApp, token: &str, query: &str) -> Value {
    expect_json(
        app.get_with_token(&format!("/api/users{query}"), token)
            .await,
        200,
    )
    .await
}

/// The names a `GET /api/users?q=` search finds, sorted.
async fn search(app: &TestApp, token: &str, q: &str) -> Vec<String> {
    let query = format!("?limit=100&q={}", urlencode(q));
    let page = list_users(app, token, &query).await;
    names_in(&page)
}

fn names_in(page: &Value) -> Vec<String> {
    let mut names: Vec<String> = page["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users list in {page}"))
        .iter()
        .map(|u| str_at(u, "/name").to_owned())
        .collect();
    names.sort();
    names
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn assert_public_user(user: &Value) {
    let object = user
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {user}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = PUBLIC_USER_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "the public user object: {user}");
    assert_timestamp(&user["createdAt"]);
    assert_timestamp(&user["updatedAt"]);
}

/// A 404 in the error format (the code is the server's to choose).
async fn expect_not_found(response: reqwest::Response) {
    let body = expect_json(response, 404).await;
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
        "a 404 in the error format: {body}"
    );
}

db_test!(a_non_admin_gets_403_forbidden_on_every_admin_route);
async fn a_non_admin_gets_403_forbidden_on_every_admin_route(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let token = bob.token.as_str();

    let gets = ["/api/users", "/api/users?limit=1", "/api/socket-test"];
    for path in gets {
        let response = app.get_with_token(path, token).await;
        expect_error(response, 403, "forbidden").await;
    }
    let posts = [
        (
            "/api/users",
            json!({ "email": "new@example.com", "name": "New", "password": PASSWORD }),
        ),
        ("/api/socket-test", json!({ "action": "broadcast" })),
        (
            "/api/notifications",
            json!({ "all": true, "title": "Hi", "body": "from Bob" }),
        ),
    ];
    for (path, body) in posts {
        let response = app.post_json_with_token(path, token, &body).await;
        expect_error(response, 403, "forbidden").await;
    }
    let path = format!("/api/users/{}", admin.id);
    expect_error(app.delete_with_token(&path, token).await, 403, "forbidden").await;

    // Nothing happened: no account was created or deleted.
    let page = list_users(&app, &admin.token, "").await;
    assert_eq!(names_in(&page), ["Admin", "Bob"]);
}

db_test!(a_user_cannot_make_themselves_admin_nor_change_their_own_email_or_status);
async fn a_user_cannot_make_themselves_admin_nor_change_their_own_email_or_status(db: Db) {
    let app = spawn_app(db).await;
    let _admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    for body in [
        json!({ "isAdmin": true }),
        json!({ "isActive": false }),
        json!({ "email": "bob.new@example.com" }),
        // A forbidden field spoils the whole change: the name is not applied either.
        json!({ "name": "Bobby", "isAdmin": true }),
    ] {
        let response = app.patch_user(&bob.token, bob.id, &body).await;
        expect_error(response, 403, "forbidden").await;
    }
    let stored = app.stored_user(bob.id).await;
    assert!(!stored.is_admin && stored.is_active);
    assert_eq!(stored.email, bob.email);
    assert_eq!(stored.name, "Bob");
    // Bob's token is still the one of a plain, active user, and still works.
    let me = expect_json(app.get_with_token("/api/auth/me", &bob.token).await, 200).await;
    assert_eq!(me["user"]["isAdmin"], false);
}

db_test!(another_users_account_is_404_to_a_non_admin);
async fn another_users_account_is_404_to_a_non_admin(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    for other in [&admin, &carol] {
        let path = format!("/api/users/{}", other.id);
        expect_not_found(app.get_with_token(&path, &bob.token).await).await;
        let response = app
            .patch_user(&bob.token, other.id, &json!({ "name": "Hacked" }))
            .await;
        expect_not_found(response).await;
        assert_eq!(app.stored_user(other.id).await.name, other.name);
    }
    // The same answer as for an account that does not exist at all.
    let path = format!("/api/users/{}", Uuid::now_v7());
    expect_not_found(app.get_with_token(&path, &bob.token).await).await;

    // Oneself, and anyone for an admin, is readable.
    let path = format!("/api/users/{}", bob.id);
    let own = expect_json(app.get_with_token(&path, &bob.token).await, 200).await;
    assert_public_user(&own["user"]);
    assert_eq!(own["user"], bob.login["user"]);
    let seen_by_admin = expect_json(app.get_with_token(&path, &admin.token).await, 200).await;
    assert_eq!(seen_by_admin["user"], bob.login["user"]);
}

db_test!(a_user_can_rename_themselves);
async fn a_user_can_rename_themselves(db: Db) {
    let app = spawn_app(db).await;
    let _admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let response = app
        .patch_user(&bob.token, bob.id, &json!({ "name": "  Robert  " }))
        .await;
    let user = expect_json(response, 200).await["user"].clone();
    assert_public_user(&user);
    assert_eq!(user["name"], "Robert", "names are trimmed");
    assert_eq!(user["id"], bob.id.to_string());
    assert_eq!(user["email"], bob.email);
    // A new name is not a change of rights: the token stays good.
    let me = expect_json(app.get_with_token("/api/auth/me", &bob.token).await, 200).await;
    assert_eq!(me["user"]["name"], "Robert");
    let response = app
        .patch_user(&bob.token, bob.id, &json!({ "name": "   " }))
        .await;
    let error = expect_error(response, 400, "validation_failed").await;
    assert!(error["fields"]["name"].is_string(), "{error}");
}

db_test!(changing_ones_password_needs_the_current_one_and_signs_out_the_other_devices);
async fn changing_ones_password_needs_the_current_one_and_signs_out_the_other_devices(db: Db) {
    let app = spawn_app(db).await;
    let _admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let laptop = app.login(&bob.email, PASSWORD).await;
    let tablet = app.login(&bob.email, PASSWORD).await;
    let new_password = "a brand new passphrase";

    let refusals = [
        (
            json!({ "password": new_password, "currentPassword": "not my password" }),
            "currentPassword",
        ),
        (json!({ "password": new_password }), "currentPassword"),
        (
            json!({ "password": "short", "currentPassword": PASSWORD }),
            "password",
        ),
    ];
    for (body, field) in refusals {
        let response = app.patch_user(&bob.token, bob.id, &body).await;
        let error = expect_error(response, 400, "validation_failed").await;
        assert!(error["fields"][field].is_string(), "{body}: {error}");
    }
    // Nothing changed yet: every device is signed in, the old password works.
    for token in [str_at(&laptop, "/token"), str_at(&tablet, "/token")] {
        expect_json(app.get_with_token("/api/auth/me", token).await, 200).await;
    }
    app.login(&bob.email, PASSWORD).await;

    let body = json!({ "password": new_password, "currentPassword": PASSWORD });
    let response = app.patch_user(&bob.token, bob.id, &body).await;
    let user = expect_json(response, 200).await["user"].clone();
    assert_public_user(&user);

    // This device stays signed in; the others are signed out, refresh tokens included.
    expect_json(app.get_with_token("/api/auth/me", &bob.token).await, 200).await;
    for other in [&laptop, &tablet] {
        let response = app
            .get_with_token("/api/auth/me", str_at(other, "/token"))
            .await;
        assert_eq!(response.status(), 401, "another device stays signed in");
        let refresh = json!({ "refreshToken": str_at(other, "/refreshToken") });
        let response = app.post_json("/api/auth/refresh", &refresh).await;
        expect_error(response, 401, "invalid_refresh_token").await;
    }
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": bob.email, "password": PASSWORD }),
        )
        .await;
    expect_error(response, 401, "invalid_credentials").await;
    app.login(&bob.email, new_password).await;
}

db_test!(an_admin_cannot_set_another_users_password);
async fn an_admin_cannot_set_another_users_password(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let body = json!({ "password": "chosen by the admin", "currentPassword": admin.password });
    let response = app.patch_user(&admin.token, bob.id, &body).await;
    expect_error(response, 403, "forbidden").await;
    app.login(&bob.email, PASSWORD).await;
}

db_test!(the_last_active_admin_cannot_demote_deactivate_or_delete_themselves);
async fn the_last_active_admin_cannot_demote_deactivate_or_delete_themselves(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let _bob = app.create_user("Bob").await;
    for body in [
        json!({ "isAdmin": false }),
        json!({ "isActive": false }),
        json!({ "isAdmin": false, "isActive": false }),
    ] {
        let response = app.patch_user(&ada.token, ada.id, &body).await;
        expect_error(response, 409, "last_admin").await;
    }
    let path = format!("/api/users/{}", ada.id);
    expect_error(
        app.delete_with_token(&path, &ada.token).await,
        409,
        "last_admin",
    )
    .await;

    // Ada is still an active admin, with the same token.
    let stored = app.stored_user(ada.id).await;
    assert!(stored.is_admin && stored.is_active);
    list_users(&app, &ada.token, "").await;
    // A change that keeps her an admin is fine.
    let response = app
        .patch_user(&ada.token, ada.id, &json!({ "isAdmin": true }))
        .await;
    expect_json(response, 200).await;
}

db_test!(with_another_active_admin_an_admin_can_step_down);
async fn with_another_active_admin_an_admin_can_step_down(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    for user in [&bob, &carol] {
        let response = app
            .patch_user(&ada.token, user.id, &json!({ "isAdmin": true }))
            .await;
        assert_eq!(expect_json(response, 200).await["user"]["isAdmin"], true);
    }

    let response = app
        .patch_user(&ada.token, ada.id, &json!({ "isAdmin": false }))
        .await;
    assert_eq!(expect_json(response, 200).await["user"]["isAdmin"], false);
    let bob_token = str_at(&app.login(&bob.email, PASSWORD).await, "/token").to_owned();
    let response = app
        .patch_user(&bob_token, bob.id, &json!({ "isActive": false }))
        .await;
    assert_eq!(expect_json(response, 200).await["user"]["isActive"], false);

    // Carol is the last *active* admin: Bob, an admin but deactivated, does not count.
    let carol_token = str_at(&app.login(&carol.email, PASSWORD).await, "/token").to_owned();
    let response = app
        .patch_user(&carol_token, carol.id, &json!({ "isAdmin": false }))
        .await;
    expect_error(response, 409, "last_admin").await;
    let path = format!("/api/users/{}", carol.id);
    let response = app.delete_with_token(&path, &carol_token).await;
    expect_error(response, 409, "last_admin").await;

    // With Ada promoted again, Carol may leave.
    let response = app
        .patch_user(&carol_token, ada.id, &json!({ "isAdmin": true }))
        .await;
    expect_json(response, 200).await;
    let response = app.delete_with_token(&path, &carol_token).await;
    assert_eq!(response.status(), 204);
    let ada_token = str_at(&app.login(&ada.email, PASSWORD).await, "/token").to_owned();
    let page = list_users(&app, &ada_token, "").await;
    assert_eq!(names_in(&page), ["Ada", "Bob"]);
}

db_test!(listing_users_two_at_a_time_walks_every_user_exactly_once);
async fn listing_users_two_at_a_time_walks_every_user_exactly_once(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let mut expected = HashSet::from([admin.id.to_string()]);
    for n in 0..6 {
        let user = create_account(
            &app,
            &admin,
            json!({ "email": format!("user{n}@example.com"), "name": format!("User {n}") }),
        )
        .await;
        expected.insert(str_at(&user, "/id").to_owned());
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..=expected.len() {
        let query = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".to_owned(),
        };
        let page = list_users(&app, &admin.token, &query).await;
        let users = page["users"].as_array().expect("a users list");
        assert!(users.len() <= 2, "a page of at most 2: {page}");
        for user in users {
            let mut public = user.clone();
            for figure in ["online", "connections", "sessions"] {
                public
                    .as_object_mut()
                    .expect("an object")
                    .remove(figure)
                    .unwrap_or_else(|| panic!("no {figure} in {user}"));
            }
            assert_public_user(&public);
            seen.push(str_at(user, "/id").to_owned());
        }
        match &page["nextCursor"] {
            Value::Null => {
                cursor = None;
                break;
            }
            next => cursor = Some(next.as_str().expect("a cursor string").to_owned()),
        }
    }
    assert!(cursor.is_none(), "the walk never ended: {seen:?}");
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a user listed twice: {seen:?}");
    assert_eq!(unique, expected);

    // Without a limit, everyone fits on one page.
    let page = list_users(&app, &admin.token, "").await;
    assert_eq!(page["users"].as_array().expect("a users list").len(), 7);
    assert_eq!(page["nextCursor"], Value::Null);
}

db_test!(the_user_list_counts_each_users_live_sessions);
async fn the_user_list_counts_each_users_live_sessions(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    app.login(&bob.email, PASSWORD).await;
    let ended = app.login(&bob.email, PASSWORD).await;
    let response = app
        .post_json_with_token("/api/auth/logout", str_at(&ended, "/token"), &json!({}))
        .await;
    expect_json(response, 200).await;
    let created = create_account(
        &app,
        &admin,
        json!({ "email": "carol@example.com", "name": "Carol" }),
    )
    .await;

    let page = list_users(&app, &admin.token, "").await;
    let by_name = |name: &str| {
        page["users"]
            .as_array()
            .expect("a users list")
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {page}"))
            .clone()
    };
    let bob_row = by_name("Bob");
    assert_eq!(bob_row["sessions"], 2, "register and one login; one ended");
    assert_eq!(bob_row["online"], false);
    assert_eq!(bob_row["connections"], 0);
    assert_eq!(by_name("Admin")["sessions"], 1);
    assert_eq!(by_name("Carol")["sessions"], 0);
    assert_eq!(by_name("Carol")["id"], created["id"]);
}

db_test!(searching_users_matches_name_or_email_ignoring_case);
async fn searching_users_matches_name_or_email_ignoring_case(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    for (email, name) in [
        ("ada@example.com", "Ada Lovelace"),
        ("hopper@navy.example.com", "Grace"),
        ("alan@example.com", "Alan Turing"),
    ] {
        create_account(&app, &admin, json!({ "email": email, "name": name })).await;
    }
    let token = admin.token.as_str();
    assert_eq!(search(&app, token, "LOVELACE").await, ["Ada Lovelace"]);
    assert_eq!(search(&app, token, "aDa").await, ["Ada Lovelace"]);
    assert_eq!(search(&app, token, "HOPPER@NAVY").await, ["Grace"]);
    assert_eq!(search(&app, token, "navy.example").await, ["Grace"]);
    assert_eq!(
        search(&app, token, "a").await,
        ["Ada Lovelace", "Admin", "Alan Turing", "Grace"]
    );
    assert_eq!(search(&app, token, "  turing  ").await, ["Alan Turing"]);
    assert!(search(&app, token, "nobody").await.is_empty());
    // An empty search is no search.
    assert_eq!(search(&app, token, "").await.len(), 4);
}

db_test!(a_search_treats_percent_and_underscore_literally);
async fn a_search_treats_percent_and_underscore_literally(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    for (email, name) in [
        ("sure@example.com", "100% Sure"),
        ("thousand@example.com", "1000 Sure"),
        ("snake@example.com", "snake_case"),
        ("camel@example.com", "snakeXcase"),
        ("back@example.com", "back\\slash"),
    ] {
        create_account(&app, &admin, json!({ "email": email, "name": name })).await;
    }
    let token = admin.token.as_str();
    assert_eq!(search(&app, token, "0%").await, ["100% Sure"]);
    assert_eq!(search(&app, token, "%").await, ["100% Sure"]);
    assert_eq!(search(&app, token, "e_c").await, ["snake_case"]);
    assert_eq!(search(&app, token, "_").await, ["snake_case"]);
    assert_eq!(search(&app, token, "k\\s").await, ["back\\slash"]);
    assert!(
        search(&app, token, "\\")
            .await
            .contains(&"back\\slash".to_owned())
    );
}

db_test!(a_search_ignores_case_in_names_beyond_ascii_too);
async fn a_search_ignores_case_in_names_beyond_ascii_too(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    for (email, name) in [
        ("emile@example.com", "Émile Zola"),
        ("oeuvre@example.com", "ÅSA ÖBERG"),
    ] {
        create_account(&app, &admin, json!({ "email": email, "name": name })).await;
    }
    let token = admin.token.as_str();
    assert_eq!(search(&app, token, "Émile").await, ["Émile Zola"]);
    assert_eq!(search(&app, token, "émile").await, ["Émile Zola"]);
    assert_eq!(search(&app, token, "åsa öberg").await, ["ÅSA ÖBERG"]);
    let path = format!("/api/users/directory?q={}", urlencode("émile"));
    let found = expect_json(app.get_with_token(&path, token).await, 200).await;
    assert_eq!(names_in(&found), ["Émile Zola"]);
}

db_test!(a_bad_limit_or_cursor_is_400_validation_failed);
async fn a_bad_limit_or_cursor_is_400_validation_failed(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    for limit in ["0", "101", "x", "-1", "1.5", "99999999999999999999", "%00"] {
        let path = format!("/api/users?limit={limit}");
        let response = app.get_with_token(&path, &admin.token).await;
        let error = expect_error(response, 400, "validation_failed").await;
        assert!(
            error["fields"]["limit"].is_string(),
            "limit={limit}: {error}"
        );
    }
    for cursor in [
        "x",
        "123",
        "not-a-uuid",
        "%27%3B%20DROP%20TABLE%20users%3B--",
    ] {
        let path = format!("/api/users?cursor={cursor}");
        let response = app.get_with_token(&path, &admin.token).await;
        let error = expect_error(response, 400, "validation_failed").await;
        assert!(
            error["fields"]["cursor"].is_string(),
            "cursor={cursor}: {error}"
        );
    }
    // A very long search is refused or answered, never a failure of the server.
    let path = format!("/api/users?q={}", "a%25_".repeat(2000));
    let response = app.get_with_token(&path, &admin.token).await;
    if response.status() == 200 {
        expect_json(response, 200).await;
    } else {
        let error = expect_error(response, 400, "validation_failed").await;
        assert!(error["fields"]["q"].is_string(), "{error}");
    }
    // The bounds themselves are fine, and so is a well-formed cursor naming nobody.
    for query in [
        "?limit=1",
        "?limit=100",
        &format!("?cursor={}", Uuid::nil()),
    ] {
        list_users(&app, &admin.token, query).await;
    }
}

db_test!(an_admin_creates_an_account_that_signs_in_with_the_password_given);
async fn an_admin_creates_an_account_that_signs_in_with_the_password_given(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let user = create_account(
        &app,
        &admin,
        json!({ "email": "  New.Person@Example.COM ", "name": "New Person", "password": "a chosen password" }),
    )
    .await;
    assert_public_user(&user);
    assert_eq!(user["email"], "new.person@example.com");
    assert_eq!(user["name"], "New Person");
    assert_eq!(user["isAdmin"], false);
    assert_eq!(user["isActive"], true);
    let id = uuid_at(&user, "/id");
    assert_eq!(id.get_version_num(), 7, "ids are UUIDv7");
    let login = app
        .login("new.person@example.com", "a chosen password")
        .await;
    assert_eq!(login["user"], user);

    let admin_two = create_account(
        &app,
        &admin,
        json!({ "email": "second@example.com", "name": "Second", "password": PASSWORD, "isAdmin": true }),
    )
    .await;
    assert_eq!(admin_two["isAdmin"], true);
    let login = app.login("second@example.com", PASSWORD).await;
    assert_eq!(jwt_claims(str_at(&login, "/token"))["isAdmin"], true);

    // Created inactive: it exists, and cannot sign in.
    let inactive = create_account(
        &app,
        &admin,
        json!({ "email": "dormant@example.com", "name": "Dormant", "password": PASSWORD, "isActive": false }),
    )
    .await;
    assert_eq!(inactive["isActive"], false);
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": "dormant@example.com", "password": PASSWORD }),
        )
        .await;
    expect_error(response, 403, "account_disabled").await;

    // Without a password nothing signs the account in.
    create_account(
        &app,
        &admin,
        json!({ "email": "nopass@example.com", "name": "No Password" }),
    )
    .await;
    for password in [PASSWORD, "", "null"] {
        let response = app
            .post_json(
                "/api/auth/login",
                &json!({ "email": "nopass@example.com", "password": password }),
            )
            .await;
        assert_ne!(response.status(), 200, "signed in with {password:?}");
    }
}

db_test!(creating_an_account_with_a_taken_email_is_409_whatever_its_case);
async fn creating_an_account_with_a_taken_email_is_409_whatever_its_case(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    for email in [
        bob.email.clone(),
        bob.email.to_uppercase(),
        format!(" {} ", bob.email),
    ] {
        let response = app
            .post_json_with_token(
                "/api/users",
                &admin.token,
                &json!({ "email": email, "name": "Bob Again", "password": PASSWORD }),
            )
            .await;
        expect_error(response, 409, "email_taken").await;
    }
    // The same through PATCH: an admin cannot move someone onto a taken email.
    let carol = app.create_user("Carol").await;
    let response = app
        .patch_user(
            &admin.token,
            carol.id,
            &json!({ "email": bob.email.to_uppercase() }),
        )
        .await;
    expect_error(response, 409, "email_taken").await;
    assert_eq!(app.stored_user(carol.id).await.email, carol.email);
}

db_test!(creating_an_account_with_bad_fields_is_400_naming_each_of_them);
async fn creating_an_account_with_bad_fields_is_400_naming_each_of_them(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let cases: [(Value, &[&str]); 7] = [
        (
            json!({ "email": "not-an-email", "name": "X", "password": PASSWORD }),
            &["email"],
        ),
        (json!({ "name": "No Email" }), &["email"]),
        (json!({ "email": "noname@example.com" }), &["name"]),
        (
            json!({ "email": "blank@example.com", "name": "   " }),
            &["name"],
        ),
        (
            json!({ "email": "long@example.com", "name": "x".repeat(101) }),
            &["name"],
        ),
        (
            json!({ "email": "short@example.com", "name": "Short", "password": "1234567" }),
            &["password"],
        ),
        (
            json!({ "email": "bad", "name": "", "password": "short" }),
            &["email", "name", "password"],
        ),
    ];
    for (body, fields) in cases {
        let response = app
            .post_json_with_token("/api/users", &admin.token, &body)
            .await;
        let error = expect_error(response, 400, "validation_failed").await;
        for field in fields {
            assert!(error["fields"][field].is_string(), "{body}: {error}");
        }
    }
    let page = list_users(&app, &admin.token, "").await;
    assert_eq!(names_in(&page), ["Admin"], "nothing was created");
}

db_test!(the_directory_lists_active_users_without_their_email);
async fn the_directory_lists_active_users_without_their_email(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let dora = app.create_user("Dora").await;
    let response = app
        .patch_user(&admin.token, dora.id, &json!({ "isActive": false }))
        .await;
    expect_json(response, 200).await;

    let response = app.get_with_token("/api/users/directory", &bob.token).await;
    let directory = expect_json(response, 200).await;
    let text = directory.to_string();
    for user in [&admin, &bob, &carol, &dora] {
        assert!(!text.contains(&user.email), "an email is shown: {text}");
    }
    assert_eq!(names_in(&directory), ["Admin", "Bob", "Carol"]);
    for entry in directory["users"].as_array().expect("a users list") {
        let mut keys: Vec<&str> = entry
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["avatarUrl", "id", "name", "online"], "{entry}");
        assert_eq!(entry["online"], false);
    }
    let carol_entry = directory["users"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|e| e["name"] == "Carol")
        .expect("Carol listed");
    assert_eq!(carol_entry["id"], carol.id.to_string());

    for (q, names) in [
        ("CAR", vec!["Carol"]),
        ("dora", vec![]),
        ("ob", vec!["Bob"]),
    ] {
        let path = format!("/api/users/directory?q={q}");
        let found = expect_json(app.get_with_token(&path, &bob.token).await, 200).await;
        assert_eq!(names_in(&found), names, "q={q}");
    }
    let found = expect_json(
        app.get_with_token("/api/users/directory?limit=1", &bob.token)
            .await,
        200,
    )
    .await;
    assert_eq!(found["users"].as_array().expect("a list").len(), 1);
    expect_error(
        app.get("/api/users/directory").await,
        401,
        "unauthenticated",
    )
    .await;
}

db_test!(fields_of_the_wrong_json_type_are_400_invalid_json_naming_them);
async fn fields_of_the_wrong_json_type_are_400_invalid_json_naming_them(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let creates = [
        (json!({ "email": 5, "name": "X" }), "email"),
        (json!({ "email": "x@example.com", "name": ["X"] }), "name"),
        (
            json!({ "email": "x@example.com", "name": "X", "password": 12345678 }),
            "password",
        ),
        (
            json!({ "email": "x@example.com", "name": "X", "isAdmin": "true" }),
            "isAdmin",
        ),
        (
            json!({ "email": "x@example.com", "name": "X", "isActive": 1 }),
            "isActive",
        ),
    ];
    for (body, field) in creates {
        let response = app
            .post_json_with_token("/api/users", &admin.token, &body)
            .await;
        let error = expect_error(response, 400, "invalid_json").await;
        assert!(error["fields"][field].is_string(), "{body}: {error}");
    }
    let patches = [
        (json!({ "name": 7 }), "name"),
        (json!({ "email": { "$ne": null } }), "email"),
        (json!({ "isAdmin": "yes" }), "isAdmin"),
        (json!({ "isActive": 0 }), "isActive"),
        (
            json!({ "password": true, "currentPassword": PASSWORD }),
            "password",
        ),
        (
            json!({ "password": PASSWORD, "currentPassword": 1 }),
            "currentPassword",
        ),
    ];
    for (body, field) in patches {
        let response = app.patch_user(&admin.token, bob.id, &body).await;
        let error = expect_error(response, 400, "invalid_json").await;
        assert!(error["fields"][field].is_string(), "{body}: {error}");
    }
    for body in [json!([]), json!("Bob"), json!(null), json!(42)] {
        let response = app
            .post_json_with_token("/api/users", &admin.token, &body)
            .await;
        expect_error(response, 400, "invalid_json").await;
        let response = app.patch_user(&admin.token, bob.id, &body).await;
        expect_error(response, 400, "invalid_json").await;
    }
    // Broken JSON, and a raw NUL byte inside a JSON string (which JSON forbids).
    for raw in [&b"{\"name\":"[..], b"{\"name\": \"a\x00b\"}"] {
        let response = app
            .client
            .patch(app.url(&format!("/api/users/{}", bob.id)))
            .bearer_auth(&admin.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(raw.to_vec())
            .send()
            .await
            .expect("request sent");
        expect_error(response, 400, "invalid_json").await;
    }
    let response = app
        .client
        .patch(app.url(&format!("/api/users/{}", bob.id)))
        .bearer_auth(&admin.token)
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(r#"{"name":"Text"}"#)
        .send()
        .await
        .expect("request sent");
    expect_error(response, 415, "unsupported_media_type").await;
    let stored = app.stored_user(bob.id).await;
    assert_eq!(stored.name, "Bob");
    assert!(!stored.is_admin && stored.is_active);
}

db_test!(unicode_names_are_kept_up_to_100_characters);
async fn unicode_names_are_kept_up_to_100_characters(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let names = [
        "Zoë Saldaña",
        "李小龙",
        "مرحبا بالعالم",
        "👩‍👩‍👧 family",
        "e\u{301}le\u{300}ve",
        "\u{202e}reversed",
    ];
    for (n, name) in names.iter().enumerate() {
        let user = create_account(
            &app,
            &admin,
            json!({ "email": format!("u{n}@example.com"), "name": name }),
        )
        .await;
        assert_eq!(user["name"], *name);
        let path = format!("/api/users/{}", str_at(&user, "/id"));
        let read = expect_json(app.get_with_token(&path, &admin.token).await, 200).await;
        assert_eq!(read["user"]["name"], *name, "stored verbatim");
    }
    // 100 characters of two bytes each is fine, 101 is not; on create and on rename alike.
    let hundred = "é".repeat(100);
    let user = create_account(
        &app,
        &admin,
        json!({ "email": "hundred@example.com", "name": hundred }),
    )
    .await;
    assert_eq!(user["name"], hundred);
    let id = uuid_at(&user, "/id");
    let too_long = "é".repeat(101);
    let response = app
        .post_json_with_token(
            "/api/users",
            &admin.token,
            &json!({ "email": "long@example.com", "name": too_long }),
        )
        .await;
    let error = expect_error(response, 400, "validation_failed").await;
    assert!(error["fields"]["name"].is_string(), "{error}");
    let response = app
        .patch_user(&admin.token, id, &json!({ "name": "a".repeat(101) }))
        .await;
    let error = expect_error(response, 400, "validation_failed").await;
    assert!(error["fields"]["name"].is_string(), "{error}");
    assert_eq!(app.stored_user(id).await.name, hundred);
}

db_test!(sql_looking_input_is_stored_and_searched_verbatim);
async fn sql_looking_input_is_stored_and_searched_verbatim(db: Db) {
    // Keywords in lowercase where `assert_no_internals` looks for the uppercase ones.
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let names = [
        "Robert'); DROP TABLE users;--",
        "\" OR 1=1 --",
        "x' union select password_hash from users --",
    ];
    let mut ids = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let user = create_account(
            &app,
            &admin,
            json!({ "email": format!("o'brien{n}@example.com"), "name": name }),
        )
        .await;
        assert_eq!(user["name"], *name);
        assert_eq!(user["email"], format!("o'brien{n}@example.com"));
        ids.push(uuid_at(&user, "/id"));
    }
    assert_eq!(
        search(&app, &admin.token, "'); DROP").await,
        ["Robert'); DROP TABLE users;--"]
    );
    assert_eq!(search(&app, &admin.token, "1=1").await, ["\" OR 1=1 --"]);
    assert_eq!(search(&app, &admin.token, "O'BRIEN").await.len(), 3);
    let response = app
        .patch_user(
            &admin.token,
            ids[0],
            &json!({ "name": "'; update users set is_admin = true; --" }),
        )
        .await;
    expect_json(response, 200).await;
    let page = list_users(&app, &admin.token, "").await;
    assert_eq!(page["users"].as_array().expect("a list").len(), 4);
    for id in &ids {
        assert!(!app.stored_user(*id).await.is_admin);
    }
}

db_test!(nul_bytes_are_refused_with_400_never_500);
async fn nul_bytes_are_refused_with_400_never_500(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let cases: [(Value, &str); 3] = [
        (
            json!({ "email": "nul@example.com", "name": "a\u{0}b" }),
            "name",
        ),
        (
            json!({ "email": "n\u{0}ul@example.com", "name": "Nul" }),
            "email",
        ),
        (json!({ "email": "nul\u{0}", "name": "Nul" }), "email"),
    ];
    for (body, field) in cases {
        let response = app
            .post_json_with_token("/api/users", &admin.token, &body)
            .await;
        let error = expect_error(response, 400, "validation_failed").await;
        assert!(error["fields"][field].is_string(), "{body}: {error}");
    }
    for body in [
        json!({ "name": "\u{0}" }),
        json!({ "email": "b\u{0}b@example.com" }),
    ] {
        let response = app.patch_user(&admin.token, bob.id, &body).await;
        expect_error(response, 400, "validation_failed").await;
    }
    let body = json!({ "password": "new password", "currentPassword": "\u{0}" });
    let response = app.patch_user(&bob.token, bob.id, &body).await;
    let error = expect_error(response, 400, "validation_failed").await;
    assert!(error["fields"]["currentPassword"].is_string(), "{error}");
    for path in [
        "/api/users?q=a%00b",
        "/api/users/directory?q=%00",
        "/api/users?cursor=%00",
        "/api/users?limit=%00",
    ] {
        let response = app.get_with_token(path, &admin.token).await;
        expect_error(response, 400, "validation_failed").await;
    }

    // A NUL inside a password is only bytes to hash: either refused, or it really works.
    let password = "pass\u{0}word and more";
    let response = app
        .post_json_with_token(
            "/api/users",
            &admin.token,
            &json!({ "email": "nulpass@example.com", "name": "Nul Pass", "password": password }),
        )
        .await;
    match response.status().as_u16() {
        201 => {
            app.login("nulpass@example.com", password).await;
            let response = app
                .post_json(
                    "/api/auth/login",
                    &json!({ "email": "nulpass@example.com", "password": "pass" }),
                )
                .await;
            expect_error(response, 401, "invalid_credentials").await;
        }
        _ => {
            expect_error(response, 400, "validation_failed").await;
        }
    }
}

db_test!(a_path_id_that_is_not_a_uuid_is_404);
async fn a_path_id_that_is_not_a_uuid_is_404(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let unknown = Uuid::now_v7().to_string();
    for id in [
        "not-a-uuid",
        "123",
        "%27%3B%20DROP%20TABLE%20users%3B--",
        "00000000-0000-0000-0000-00000000000g",
        "%00",
        &"a".repeat(2000),
        unknown.as_str(),
    ] {
        let path = format!("/api/users/{id}");
        expect_not_found(app.get_with_token(&path, &admin.token).await).await;
        let response = app
            .client
            .patch(app.url(&path))
            .bearer_auth(&admin.token)
            .json(&json!({ "name": "X" }))
            .send()
            .await
            .expect("request sent");
        expect_not_found(response).await;
        expect_not_found(app.delete_with_token(&path, &admin.token).await).await;
        let path = format!("/api/sessions/{id}");
        expect_not_found(app.delete_with_token(&path, &admin.token).await).await;
    }
    assert_eq!(app.stored_user(admin.id).await.name, "Admin");
}

db_test!(promoting_a_user_from_the_command_line_makes_their_token_stale_at_once);
async fn promoting_a_user_from_the_command_line_makes_their_token_stale_at_once(db: Db) {
    let app = spawn_app(db).await;
    let _admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    expect_error(
        app.get_with_token("/api/users", &bob.token).await,
        403,
        "forbidden",
    )
    .await;

    let email = bob.email.to_uppercase();
    let args = [
        "user",
        "set",
        "--email",
        email.as_str(),
        "--admin",
        "true",
        "--database-url",
        app.database.url.as_str(),
    ];
    crate::cli::craftcode(&args, &[], None)
        .await
        .assert_success();

    expect_error(
        app.get_with_token("/api/auth/me", &bob.token).await,
        401,
        "invalid_token",
    )
    .await;
    let login = app.login(&bob.email, PASSWORD).await;
    assert_eq!(login["user"]["isAdmin"], true);
    list_users(&app, str_at(&login, "/token"), "").await;
}
