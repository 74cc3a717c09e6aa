//! A user's devices over HTTP (`/api/sessions`): the list, and ending one device — one's own,
//! or anyone's for an admin. The sockets' side (`force_logout`, live connection counts) is in
//! `tests/realtime/admin.rs`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

/// The fields of one entry of `GET /api/sessions`, and nothing else.
const SESSION_FIELDS: [&str; 9] = [
    "connections",
    "createdAt",
    "current",
    "expiresAt",
    "id",
    "ip",
    "lastSeenAt",
    "online",
    "userAgent",
];

/// Signs in from a device that names itself with `user_agent`; answers the login response.
async fn login_from(app: &TestApp, user: &TestUser, user_agent: &str) -> Value {
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .header(reqwest::header::USER_AGENT, user_agent)
        .json(&json!({ "email": user.email, "password": user.password }))
        .send()
        .await
        .expect("request sent");
    expect_json(response, 200).await
}

/// `GET /api/sessions` as `token`: the list.
async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let body = expect_json(app.get_with_token("/api/sessions", token).await, 200).await;
    body["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions list in {body}"))
        .clone()
}

fn ids(list: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = list.iter().map(|s| str_at(s, "/id").to_owned()).collect();
    ids.sort();
    ids
}

fn time_at(value: &Value, field: &str) -> DateTime<Utc> {
    assert_timestamp(&value[field]);
    DateTime::parse_from_rfc3339(str_at(value, &format!("/{field}")))
        .expect("RFC 3339")
        .to_utc()
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

/// Ending a session answers a success; the body is the server's choice.
async fn expect_ended(response: reqwest::Response) {
    let status = response.status();
    let text = response.text().await.expect("a body");
    assert!(status.is_success(), "not ended: {status} {text}");
    assert_no_internals(&text);
}

db_test!(the_session_list_shows_each_device_and_marks_only_the_callers_as_current);
async fn the_session_list_shows_each_device_and_marks_only_the_callers_as_current(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let before = Utc::now();
    let phone = login_from(&app, &bob, "Phone/1.0 (craftcode tests)").await;
    let laptop = login_from(&app, &bob, "Laptop/2.0 (craftcode tests)").await;
    let ended = login_from(&app, &bob, "Old tablet").await;
    let response = app
        .post_json_with_token("/api/auth/logout", str_at(&ended, "/token"), &json!({}))
        .await;
    expect_json(response, 200).await;

    let list = sessions(&app, str_at(&phone, "/token")).await;
    let expected = {
        let mut ids = vec![
            bob.session_id.to_string(),
            str_at(&phone, "/session/id").to_owned(),
            str_at(&laptop, "/session/id").to_owned(),
        ];
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&list),
        expected,
        "Bob's live sessions, not Ada's nor the ended one: {list:?}"
    );
    for entry in &list {
        let mut keys: Vec<&str> = entry
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, SESSION_FIELDS, "{entry}");
        let is_phone = entry["id"] == phone["session"]["id"];
        assert_eq!(entry["current"], is_phone, "{entry}");
        assert_eq!(entry["online"], false, "no socket is connected: {entry}");
        assert_eq!(entry["connections"], 0, "{entry}");
        assert_eq!(entry["ip"], "127.0.0.1", "{entry}");
        let created = time_at(entry, "createdAt");
        let last_seen = time_at(entry, "lastSeenAt");
        let expires = time_at(entry, "expiresAt");
        assert!(last_seen >= created, "{entry}");
        assert!(
            expires > Utc::now() + chrono::Duration::days(29),
            "sessions live 30 days by default: {entry}"
        );
        let expected_agent = if is_phone {
            json!("Phone/1.0 (craftcode tests)")
        } else if entry["id"] == laptop["session"]["id"] {
            json!("Laptop/2.0 (craftcode tests)")
        } else {
            // Registered through a client that sends no User-Agent.
            Value::Null
        };
        assert_eq!(entry["userAgent"], expected_agent);
        if entry["id"] != bob.session_id.to_string() {
            assert!(created >= before - chrono::Duration::seconds(1), "{entry}");
        }
    }

    // From the laptop, the laptop is the current one.
    let list = sessions(&app, str_at(&laptop, "/token")).await;
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{list:?}");
    assert_eq!(current[0]["id"], laptop["session"]["id"]);

    // Ada sees only her own.
    let list = sessions(&app, &ada.token).await;
    assert_eq!(ids(&list), [ada.session_id.to_string()]);
    assert_eq!(list[0]["current"], true);

    expect_error(app.get("/api/sessions").await, 401, "unauthenticated").await;
}

db_test!(ending_one_of_ones_own_sessions_signs_out_only_that_device);
async fn ending_one_of_ones_own_sessions_signs_out_only_that_device(db: Db) {
    let app = spawn_app(db).await;
    let _admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let laptop = login_from(&app, &bob, "Laptop").await;
    let laptop_token = str_at(&laptop, "/token");
    let path = format!("/api/sessions/{}", str_at(&laptop, "/session/id"));

    expect_ended(app.delete_with_token(&path, &bob.token).await).await;
    expect_error(
        app.get_with_token("/api/auth/me", laptop_token).await,
        401,
        "session_revoked",
    )
    .await;
    let refresh = json!({ "refreshToken": str_at(&laptop, "/refreshToken") });
    let response = app.post_json("/api/auth/refresh", &refresh).await;
    expect_error(response, 401, "invalid_refresh_token").await;
    // The device that asked is still signed in, and the ended one is off its list.
    let list = sessions(&app, &bob.token).await;
    assert_eq!(ids(&list), [bob.session_id.to_string()]);

    // Once ended, the session is gone: ending it again is 404.
    expect_not_found(app.delete_with_token(&path, &bob.token).await).await;

    // Ending the current session signs the caller out.
    let path = format!("/api/sessions/{}", bob.session_id);
    expect_ended(app.delete_with_token(&path, &bob.token).await).await;
    let response = app.get_with_token("/api/auth/me", &bob.token).await;
    expect_error(response, 401, "session_revoked").await;
}

db_test!(another_users_session_is_404_and_stays_signed_in);
async fn another_users_session_is_404_and_stays_signed_in(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    for victim in [&admin, &carol] {
        let path = format!("/api/sessions/{}", victim.session_id);
        let response = app.delete_with_token(&path, &bob.token).await;
        expect_not_found(response).await;
        expect_json(app.get_with_token("/api/auth/me", &victim.token).await, 200).await;
    }
    // The same answer as for a session that never existed.
    let path = format!("/api/sessions/{}", Uuid::now_v7());
    let response = app.delete_with_token(&path, &bob.token).await;
    expect_not_found(response).await;
    let response = app
        .client
        .delete(app.url(&format!("/api/sessions/{}", carol.session_id)))
        .send()
        .await
        .expect("request sent");
    expect_error(response, 401, "unauthenticated").await;
    expect_json(app.get_with_token("/api/auth/me", &carol.token).await, 200).await;
}

db_test!(an_admin_can_end_anyones_session);
async fn an_admin_can_end_anyones_session(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let laptop = login_from(&app, &bob, "Laptop").await;
    let path = format!("/api/sessions/{}", bob.session_id);
    expect_ended(app.delete_with_token(&path, &admin.token).await).await;
    let response = app.get_with_token("/api/auth/me", &bob.token).await;
    expect_error(response, 401, "session_revoked").await;
    // Bob's other device is untouched, and the admin is still signed in.
    let list = sessions(&app, str_at(&laptop, "/token")).await;
    assert_eq!(ids(&list), [str_at(&laptop, "/session/id").to_owned()]);
    expect_json(app.get_with_token("/api/auth/me", &admin.token).await, 200).await;
}
