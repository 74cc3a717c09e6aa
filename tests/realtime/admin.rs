//! What administration and diagnostics do to live sockets: promotion pushing each device its
//! own fresh token, deactivation and deletion logging every device out, one device revoked,
//! live connection figures in the session and user lists and the self-test, the admin's test
//! actions (`testMessage`, `getOnlineUsers`), and `/metrics` after real traffic.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::support::*;

/// Another device of `user`: a new session from a login; answers (token, session id).
async fn another_device(app: &TestApp, user: &TestUser) -> (String, Uuid) {
    let login = app.login(&user.email, &user.password).await;
    (
        str_at(&login, "/token").to_owned(),
        uuid_at(&login, "/session/id"),
    )
}

/// The `connect_error` message of a handshake that must be refused.
async fn refusal(app: &TestApp, token: &str) -> String {
    match handshake(app).token(token).connect().await {
        Ok(socket) => panic!("the handshake was accepted (socket {})", socket.sid),
        Err(message) => message,
    }
}

/// Reads events until `force_logout`, failing on a `tokenUpdated` before it; answers its data.
async fn force_logout_without_new_token(socket: &mut SocketClient) -> Value {
    loop {
        let (name, data) = socket.next_any().await;
        match name.as_str() {
            "force_logout" => return data,
            "tokenUpdated" => panic!("a token was pushed to a device being logged out: {data}"),
            _ => {}
        }
    }
}

/// `POST /api/socket-test` as `admin`, which must answer 200.
async fn test_action(app: &TestApp, admin: &TestUser, body: Value) -> Value {
    let response = app
        .post_json_with_token("/api/socket-test", &admin.token, &body)
        .await;
    expect_json(response, 200).await
}

/// The entry for `id` in a list of users or sessions.
fn entry_for(list: &Value, id: Uuid) -> Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|e| e["id"] == id.to_string())
        .unwrap_or_else(|| panic!("{id} is not in {list}"))
        .clone()
}

async fn sessions(app: &TestApp, token: &str) -> Value {
    let body = expect_json(app.get_with_token("/api/sessions", token).await, 200).await;
    body["sessions"].clone()
}

/// The value of one Prometheus series, e.g. `craftcode_online_users` or
/// `craftcode_auth_failures_total{reason="invalid_credentials"}`; `None` when absent.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .map(|(_, value)| {
            value
                .parse()
                .unwrap_or_else(|e| panic!("{series} has value {value:?}: {e}"))
        })
}

#[track_caller]
fn assert_sample(metrics: &str, series: &str, expected: f64) {
    assert_eq!(
        sample(metrics, series),
        Some(expected),
        "{series} in:\n{metrics}"
    );
}

async fn metrics(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .expect("a readable header")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.expect("a body")
}

db_test!(promoting_a_user_pushes_each_device_its_own_fresh_token);
async fn promoting_a_user_pushes_each_device_its_own_fresh_token(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let (laptop_token, laptop_session) = another_device(&app, &bob).await;
    let mut phone = connect(&app, &bob.token).await;
    let mut laptop = connect(&app, &laptop_token).await;
    let mut carol_socket = connect(&app, &carol.token).await;

    let response = app
        .patch_user(&admin.token, bob.id, &json!({ "isAdmin": true }))
        .await;
    assert_eq!(expect_json(response, 200).await["user"]["isAdmin"], true);

    let mut new_tokens = Vec::new();
    for (socket, session) in [(&mut phone, bob.session_id), (&mut laptop, laptop_session)] {
        let updated = socket.next_event("tokenUpdated").await;
        let token = str_at(&updated, "/token").to_owned();
        let claims = jwt_claims(&token);
        assert_eq!(
            claims["sid"],
            session.to_string(),
            "this device's own session"
        );
        assert_eq!(claims["sub"], bob.id.to_string());
        assert_eq!(claims["isAdmin"], true, "{claims}");
        assert_eq!(claims["isActive"], true, "{claims}");
        assert_timestamp(&updated["expiresAt"]);
        assert_eq!(updated["user"]["id"], bob.id.to_string());
        assert_eq!(updated["user"]["isAdmin"], true, "{updated}");
        let status = socket.next_event("userStatusChanged").await;
        assert_eq!(
            status,
            json!({ "userId": bob.id, "isActive": true, "isAdmin": true })
        );
        // One token per device: the other device's token did not come here too.
        let more = socket.take_events("tokenUpdated").await;
        assert!(more.is_empty(), "more than one token pushed: {more:?}");
        socket.expect_no_event("userStatusChanged").await;
        assert!(socket.is_connected(), "the device stays connected");
        new_tokens.push((token, session));
    }
    carol_socket.expect_no_event("tokenUpdated").await;
    carol_socket.expect_no_event("userStatusChanged").await;

    // The tokens minted before the change are refused, over REST and in a new handshake.
    for old in [bob.token.as_str(), laptop_token.as_str()] {
        let response = app.get_with_token("/api/auth/me", old).await;
        expect_error(response, 401, "invalid_token").await;
        assert_eq!(refusal(&app, old).await, "invalid_token");
    }
    // The pushed ones work, with admin rights, and connect new sockets.
    for (token, session) in &new_tokens {
        let me = expect_json(app.get_with_token("/api/auth/me", token).await, 200).await;
        assert_eq!(me["user"]["isAdmin"], true);
        assert_eq!(me["session"]["id"], session.to_string());
        expect_json(app.get_with_token("/api/users", token).await, 200).await;
        connect(&app, token).await;
    }
}

db_test!(demoting_an_admin_pushes_a_token_without_admin_rights);
async fn demoting_an_admin_pushes_a_token_without_admin_rights(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let response = app
        .patch_user(&ada.token, bob.id, &json!({ "isAdmin": true }))
        .await;
    expect_json(response, 200).await;
    let (bob_token, bob_session) = another_device(&app, &bob).await;
    expect_json(app.get_with_token("/api/users", &bob_token).await, 200).await;
    let mut socket = connect(&app, &bob_token).await;

    let response = app
        .patch_user(&ada.token, bob.id, &json!({ "isAdmin": false }))
        .await;
    assert_eq!(expect_json(response, 200).await["user"]["isAdmin"], false);
    let updated = socket.next_event("tokenUpdated").await;
    let token = str_at(&updated, "/token").to_owned();
    let claims = jwt_claims(&token);
    assert_eq!(claims["sid"], bob_session.to_string());
    assert_eq!(claims["isAdmin"], false, "{claims}");
    assert_eq!(updated["user"]["isAdmin"], false, "{updated}");
    let status = socket.next_event("userStatusChanged").await;
    assert_eq!(
        status,
        json!({ "userId": bob.id, "isActive": true, "isAdmin": false })
    );

    // The admin token is refused; the pushed one signs Bob in without the admin's rights.
    let response = app.get_with_token("/api/users", &bob_token).await;
    expect_error(response, 401, "invalid_token").await;
    let response = app.get_with_token("/api/users", &token).await;
    expect_error(response, 403, "forbidden").await;
    let me = expect_json(app.get_with_token("/api/auth/me", &token).await, 200).await;
    assert_eq!(me["user"]["isAdmin"], false);
}

db_test!(deactivating_a_user_logs_out_every_device_until_reactivated);
async fn deactivating_a_user_logs_out_every_device_until_reactivated(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let (laptop_token, _) = another_device(&app, &bob).await;
    let mut devices = vec![
        connect(&app, &bob.token).await,
        connect(&app, &bob.token).await,
        connect(&app, &laptop_token).await,
    ];
    let mut carol_socket = connect(&app, &carol.token).await;

    let response = app
        .patch_user(&admin.token, bob.id, &json!({ "isActive": false }))
        .await;
    assert_eq!(expect_json(response, 200).await["user"]["isActive"], false);
    for socket in &mut devices {
        let notice = force_logout_without_new_token(socket).await;
        assert_eq!(notice, json!({ "reason": "account_disabled" }));
        socket.wait_disconnect().await;
    }
    carol_socket.expect_no_event("force_logout").await;
    assert!(carol_socket.is_connected());

    for token in [bob.token.as_str(), laptop_token.as_str()] {
        let response = app.get_with_token("/api/auth/me", token).await;
        expect_error(response, 401, "account_disabled").await;
        assert_eq!(refusal(&app, token).await, "account_disabled");
    }
    let credentials = json!({ "email": bob.email, "password": PASSWORD });
    let response = app.post_json("/api/auth/login", &credentials).await;
    expect_error(response, 403, "account_disabled").await;

    let response = app
        .patch_user(&admin.token, bob.id, &json!({ "isActive": true }))
        .await;
    assert_eq!(expect_json(response, 200).await["user"]["isActive"], true);
    let login = app.login(&bob.email, PASSWORD).await;
    let token = str_at(&login, "/token");
    connect(&app, token).await;
    // The sessions that deactivation ended stay ended.
    let response = app.get_with_token("/api/auth/me", &bob.token).await;
    assert_eq!(response.status(), 401);
}

db_test!(deleting_a_user_logs_out_their_devices_and_leaves_their_messages_with_the_other_side);
async fn deleting_a_user_logs_out_their_devices_and_leaves_their_messages_with_the_other_side(
    db: Db,
) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    for (from, to, content) in [(&bob, &carol, "hi Carol"), (&carol, &bob, "hi Bob")] {
        let path = format!("/api/messages/send/{}", to.id);
        let response = app
            .post_json_with_token(&path, &from.token, &json!({ "content": content }))
            .await;
        expect_json(response, 201).await;
    }
    let mut bob_socket = connect(&app, &bob.token).await;
    let mut carol_socket = connect(&app, &carol.token).await;

    let path = format!("/api/users/{}", bob.id);
    let response = app.delete_with_token(&path, &admin.token).await;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.expect("a body").is_empty());
    let notice = force_logout_without_new_token(&mut bob_socket).await;
    assert_eq!(notice, json!({ "reason": "account_deleted" }));
    bob_socket.wait_disconnect().await;
    carol_socket.expect_no_event("force_logout").await;

    let response = app.get_with_token(&path, &admin.token).await;
    expect_json(response, 404).await;
    let response = app.delete_with_token(&path, &admin.token).await;
    expect_json(response, 404).await;
    assert_eq!(
        app.get_with_token("/api/auth/me", &bob.token)
            .await
            .status(),
        401
    );
    let credentials = json!({ "email": bob.email, "password": PASSWORD });
    let response = app.post_json("/api/auth/login", &credentials).await;
    expect_error(response, 401, "invalid_credentials").await;

    // Carol still has the conversation, with Bob shown as a deleted user.
    let history_path = format!("/api/messages/{}", bob.id);
    let history = expect_json(app.get_with_token(&history_path, &carol.token).await, 200).await;
    let contents: Vec<&str> = history["messages"]
        .as_array()
        .expect("a list of messages")
        .iter()
        .map(|m| str_at(m, "/content"))
        .collect();
    assert_eq!(contents, ["hi Bob", "hi Carol"], "newest first: {history}");
    assert_eq!(history["messages"][1]["from"], bob.id.to_string());
    let conversations = expect_json(
        app.get_with_token("/api/conversations", &carol.token).await,
        200,
    )
    .await;
    let list = conversations["conversations"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "{conversations}");
    assert_eq!(list[0]["user"]["id"], bob.id.to_string());
    assert_eq!(list[0]["user"]["name"], "Deleted user");
    assert_eq!(list[0]["user"]["online"], false);
    assert_eq!(list[0]["lastMessage"]["content"], "hi Bob");
    assert!(
        !conversations.to_string().contains(&bob.email),
        "{conversations}"
    );
    let directory = expect_json(
        app.get_with_token("/api/users/directory", &carol.token)
            .await,
        200,
    )
    .await;
    assert!(!directory.to_string().contains(&bob.id.to_string()));

    // Someone who signs up later with Bob's email is someone else, and inherits nothing.
    let newcomer = app.register(&bob.email, "New Bob", PASSWORD).await;
    assert_ne!(newcomer["user"]["id"], bob.id.to_string());
    let token = str_at(&newcomer, "/token");
    let conversations =
        expect_json(app.get_with_token("/api/conversations", token).await, 200).await;
    assert_eq!(conversations["conversations"], json!([]));
    let path = format!("/api/messages/{}", carol.id);
    let history = expect_json(app.get_with_token(&path, token).await, 200).await;
    assert_eq!(history["messages"], json!([]));
}

db_test!(revoking_one_session_disconnects_only_that_device);
async fn revoking_one_session_disconnects_only_that_device(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let (laptop_token, laptop_session) = another_device(&app, &bob).await;
    let mut phone = connect(&app, &bob.token).await;
    let mut laptop = connect(&app, &laptop_token).await;

    let path = format!("/api/sessions/{laptop_session}");
    let response = app.delete_with_token(&path, &bob.token).await;
    assert!(response.status().is_success(), "{}", response.status());
    let notice = laptop.next_event("force_logout").await;
    assert_eq!(notice, json!({ "reason": "session_revoked" }));
    laptop.wait_disconnect().await;
    phone.barrier().await;
    phone.expect_no_event("force_logout").await;
    assert!(phone.is_connected());
    let pong = phone.emit_with_ack("ping", json!({ "ts": 7 })).await;
    assert_ack_ok(&pong);

    let response = app.get_with_token("/api/auth/me", &laptop_token).await;
    expect_error(response, 401, "session_revoked").await;
    assert_eq!(refusal(&app, &laptop_token).await, "session_revoked");

    // Carol cannot end Bob's phone session: it does not exist for her.
    let phone_path = format!("/api/sessions/{}", bob.session_id);
    let response = app.delete_with_token(&phone_path, &carol.token).await;
    expect_json(response, 404).await;
    phone.expect_no_event("force_logout").await;
    expect_json(app.get_with_token("/api/auth/me", &bob.token).await, 200).await;

    // An admin can.
    let response = app.delete_with_token(&phone_path, &admin.token).await;
    assert!(response.status().is_success(), "{}", response.status());
    let notice = phone.next_event("force_logout").await;
    assert_eq!(notice, json!({ "reason": "session_revoked" }));
    phone.wait_disconnect().await;
}

db_test!(the_session_list_shows_which_devices_have_live_sockets);
async fn the_session_list_shows_which_devices_have_live_sockets(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let _admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let (laptop_token, laptop_session) = another_device(&app, &bob).await;
    let (tablet_token, tablet_session) = another_device(&app, &bob).await;
    let phone_tab = connect(&app, &bob.token).await;
    let phone_other_tab = connect(&app, &bob.token).await;
    let _tablet = connect(&app, &tablet_token).await;

    let list = sessions(&app, &laptop_token).await;
    let phone = entry_for(&list, bob.session_id);
    assert_eq!(
        (&phone["current"], &phone["online"], &phone["connections"]),
        (&json!(false), &json!(true), &json!(2)),
        "{phone}"
    );
    let laptop = entry_for(&list, laptop_session);
    assert_eq!(
        (
            &laptop["current"],
            &laptop["online"],
            &laptop["connections"]
        ),
        (&json!(true), &json!(false), &json!(0)),
        "{laptop}"
    );
    let tablet = entry_for(&list, tablet_session);
    assert_eq!(
        (
            &tablet["current"],
            &tablet["online"],
            &tablet["connections"]
        ),
        (&json!(false), &json!(true), &json!(1)),
        "{tablet}"
    );

    let presence = app.state.realtime.presence();
    phone_tab.disconnect().await;
    wait_until("the server counts one phone socket", || {
        presence.session_connections(bob.id, bob.session_id) == 1
    })
    .await;
    let phone = entry_for(&sessions(&app, &laptop_token).await, bob.session_id);
    assert_eq!(
        (&phone["online"], &phone["connections"]),
        (&json!(true), &json!(1))
    );
    phone_other_tab.disconnect().await;
    wait_until("the server counts no phone socket", || {
        presence.session_connections(bob.id, bob.session_id) == 0
    })
    .await;
    let phone = entry_for(&sessions(&app, &laptop_token).await, bob.session_id);
    assert_eq!(
        (&phone["online"], &phone["connections"]),
        (&json!(false), &json!(0))
    );
}

db_test!(the_user_list_and_the_directory_show_who_is_online);
async fn the_user_list_and_the_directory_show_who_is_online(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let (laptop_token, _) = another_device(&app, &bob).await;
    let _sockets = [
        connect(&app, &bob.token).await,
        connect(&app, &bob.token).await,
        connect(&app, &laptop_token).await,
    ];

    let page = expect_json(app.get_with_token("/api/users", &admin.token).await, 200).await;
    let bob_row = entry_for(&page["users"], bob.id);
    assert_eq!(
        (
            &bob_row["online"],
            &bob_row["connections"],
            &bob_row["sessions"]
        ),
        (&json!(true), &json!(3), &json!(2)),
        "{bob_row}"
    );
    let carol_row = entry_for(&page["users"], carol.id);
    assert_eq!(
        (
            &carol_row["online"],
            &carol_row["connections"],
            &carol_row["sessions"]
        ),
        (&json!(false), &json!(0), &json!(1)),
        "{carol_row}"
    );

    let directory = expect_json(
        app.get_with_token("/api/users/directory", &carol.token)
            .await,
        200,
    )
    .await;
    assert_eq!(entry_for(&directory["users"], bob.id)["online"], true);
    assert_eq!(entry_for(&directory["users"], carol.id)["online"], false);
    assert_eq!(entry_for(&directory["users"], admin.id)["online"], false);
}

db_test!(the_self_test_counts_the_connected_sockets);
async fn the_self_test_counts_the_connected_sockets(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let _sockets = [
        connect(&app, &admin.token).await,
        connect(&app, &bob.token).await,
        connect(&app, &bob.token).await,
    ];
    let response = app.get_with_token("/api/socket-test", &admin.token).await;
    let report = expect_json(response, 200).await;
    let connections = &report["connections"];
    assert_eq!(connections["sockets"], 3, "{report:#}");
    assert_eq!(connections["users"], 2, "{report:#}");
    let by_namespace = connections["byNamespace"]
        .as_object()
        .unwrap_or_else(|| panic!("no byNamespace: {report}"));
    assert_eq!(by_namespace["/"], 3, "{report:#}");
    let total: u64 = by_namespace
        .values()
        .map(|n| n.as_u64().expect("a count"))
        .sum();
    assert_eq!(total, 3, "{report:#}");
    let tracking = report["checks"]
        .as_array()
        .expect("a checks list")
        .iter()
        .find(|c| c["name"] == "connectionTracking")
        .unwrap_or_else(|| panic!("no connectionTracking check: {report}"));
    assert_eq!(tracking["ok"], true, "{tracking}");
}

db_test!(send_to_user_reaches_every_socket_of_that_user_and_nobody_else);
async fn send_to_user_reaches_every_socket_of_that_user_and_nobody_else(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let mut bob_sockets = [
        connect(&app, &bob.token).await,
        connect(&app, &bob.token).await,
    ];
    let mut carol_socket = connect(&app, &carol.token).await;
    let mut admin_socket = connect(&app, &admin.token).await;

    let body = json!({ "action": "sendToUser", "targetUserId": bob.id, "message": "hello Bob" });
    let answer = test_action(&app, &admin, body).await;
    assert_eq!(
        answer,
        json!({ "ok": true, "action": "sendToUser", "recipients": 2 })
    );
    for socket in &mut bob_sockets {
        let event = socket.next_event("testMessage").await;
        assert_eq!(event["message"], "hello Bob", "{event}");
        assert_eq!(event["action"], "sendToUser", "{event}");
        assert_timestamp(&event["sentAt"]);
        socket.expect_no_event("testMessage").await;
    }
    carol_socket.expect_no_event("testMessage").await;
    admin_socket.expect_no_event("testMessage").await;

    // Without a message, a default one.
    let body = json!({ "action": "sendToUser", "targetUserId": carol.id });
    assert_eq!(test_action(&app, &admin, body).await["recipients"], 1);
    let event = carol_socket.next_event("testMessage").await;
    assert!(
        event["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{event}"
    );
}

db_test!(a_test_broadcast_reaches_every_authenticated_socket_only);
async fn a_test_broadcast_reaches_every_authenticated_socket_only(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let mut sockets = vec![
        connect(&app, &bob.token).await,
        connect(&app, &bob.token).await,
        connect(&app, &carol.token).await,
    ];
    let mut anonymous = connect_anonymous(handshake(&app)).await;

    let body = json!({ "action": "broadcast", "message": "all hands" });
    let answer = test_action(&app, &admin, body).await;
    assert_eq!(
        answer,
        json!({ "ok": true, "action": "broadcast", "recipients": 3 })
    );
    for socket in &mut sockets {
        let event = socket.next_event("testMessage").await;
        assert_eq!(event["message"], "all hands", "{event}");
        assert_eq!(event["action"], "broadcast", "{event}");
        assert_timestamp(&event["sentAt"]);
    }
    // The socket that had not signed in got nothing: once it has, nothing is waiting for it.
    let ack = anonymous
        .emit_with_ack("authenticate", json!({ "token": carol.token }))
        .await;
    assert_ack_ok(&ack);
    anonymous.expect_no_event("testMessage").await;
}

db_test!(emit_online_users_pushes_the_online_list_to_every_socket);
async fn emit_online_users_pushes_the_online_list_to_every_socket(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let mut sockets = vec![
        connect(&app, &bob.token).await,
        connect(&app, &carol.token).await,
    ];
    // The lists sent on connecting are not the ones under test.
    for socket in &mut sockets {
        socket.take_events("getOnlineUsers").await;
    }

    let answer = test_action(&app, &admin, json!({ "action": "emitOnlineUsers" })).await;
    assert_eq!(
        answer,
        json!({ "ok": true, "action": "emitOnlineUsers", "recipients": 2 })
    );
    for socket in &mut sockets {
        let online = socket.next_event("getOnlineUsers").await;
        assert_eq!(online["total"], 2, "{online}");
        let users: BTreeSet<String> = online["users"]
            .as_array()
            .unwrap_or_else(|| panic!("no users list: {online}"))
            .iter()
            .map(|u| u.to_string())
            .collect();
        let expected: BTreeSet<String> = [
            json!({ "userId": bob.id, "name": "Bob" }),
            json!({ "userId": carol.id, "name": "Carol" }),
        ]
        .iter()
        .map(Value::to_string)
        .collect();
        assert_eq!(users, expected);
        socket.expect_no_event("getOnlineUsers").await;
    }
}

db_test!(metrics_count_real_traffic);
async fn metrics_count_real_traffic(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let wrong = json!({ "email": ada.email, "password": "not the password" });
    let response = app.post_json("/api/auth/login", &wrong).await;
    expect_error(response, 401, "invalid_credentials").await;
    let mut ada_socket = connect(&app, &ada.token).await;
    let second_socket = connect(&app, &ada.token).await;
    send_message(&mut ada_socket, &bob, "counted").await;
    let pong = ada_socket.emit_with_ack("ping", json!({ "ts": 1 })).await;
    assert_ack_ok(&pong);

    let text = metrics(&app).await;
    assert_sample(
        &text,
        r#"craftcode_http_requests_total{route="/api/auth/register",status="201"}"#,
        2.0,
    );
    assert_sample(
        &text,
        r#"craftcode_http_requests_total{route="/api/auth/login",status="401"}"#,
        1.0,
    );
    assert_sample(
        &text,
        r#"craftcode_auth_failures_total{reason="invalid_credentials"}"#,
        1.0,
    );
    assert_sample(
        &text,
        r#"craftcode_socket_events_in_total{event="sendMessage"}"#,
        1.0,
    );
    assert_sample(
        &text,
        r#"craftcode_socket_events_in_total{event="ping"}"#,
        1.0,
    );
    assert_sample(&text, "craftcode_messages_stored_total", 1.0);
    assert_sample(&text, r#"craftcode_socket_connections{namespace="/"}"#, 2.0);
    assert_sample(&text, "craftcode_online_users", 1.0);
    assert!(
        text.lines().any(
            |l| l.starts_with("craftcode_http_request_duration_seconds_bucket{")
                && l.contains(r#"route="/api/auth/register""#)
        ),
        "no latency histogram buckets:\n{text}"
    );
    assert_sample(
        &text,
        r#"craftcode_http_request_duration_seconds_count{route="/api/auth/register"}"#,
        2.0,
    );

    // The gauges follow the sockets.
    second_socket.disconnect().await;
    let realtime = &app.state.realtime;
    wait_until("the server counts one socket", || {
        realtime.connections() == 1
    })
    .await;
    let text = metrics(&app).await;
    assert_sample(&text, r#"craftcode_socket_connections{namespace="/"}"#, 1.0);
    ada_socket.disconnect().await;
    wait_until("the server counts no socket", || {
        !realtime.presence().is_online(ada.id)
    })
    .await;
    let text = metrics(&app).await;
    assert_sample(&text, r#"craftcode_socket_connections{namespace="/"}"#, 0.0);
    assert_sample(&text, "craftcode_online_users", 0.0);
}
