//! The namespace server for older clients (`/api/socket-namespaces`: `/auth`, `/messenger`,
//! `/notifications`): who may connect, which events reach which namespace, that a user on both
//! servers gets every event once per socket, the client events of each topic, the events of no
//! topic (`force_logout`, `server_shutdown`, `testMessage`), and presence across both servers.

use craftcode::timestamp::Timestamp;
use uuid::Uuid;

use crate::notifications::notify;
use crate::support::*;

/// Where the namespace server listens (§5 "Two servers on one port").
pub const NAMESPACES_PATH: &str = "/api/socket-namespaces";
/// Its namespaces, one per topic.
pub const NAMESPACES: [&str; 3] = ["/auth", "/messenger", "/notifications"];

/// A handshake to one namespace of the namespace server.
pub fn namespace_handshake(app: &TestApp, namespace: &str) -> Handshake {
    handshake(app).at(NAMESPACES_PATH, namespace)
}

/// A socket of the namespace server signed in with `token`. Returns once the server has put it
/// in its user's room (so events to the user reach it and it counts online): `/notifications`
/// emits nothing on connection that a test could wait for. Nothing received is consumed.
pub async fn connect_to(app: &TestApp, namespace: &str, token: &str) -> SocketClient {
    let socket = namespace_handshake(app, namespace)
        .token(token)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{namespace} refused the handshake: {e}"));
    let user: Uuid = str_at(&jwt_claims(token), "/sub")
        .parse()
        .expect("`sub` is a user id");
    let sid = socket.sid.clone();
    wait_until(
        &format!("the {namespace} socket joins its user's room"),
        || app.state.realtime.user_socket_ids(user).contains(&sid),
    )
    .await;
    socket
}

/// One device of a user connected everywhere: the main server and each namespace.
pub struct Everywhere {
    pub main: SocketClient,
    pub auth: SocketClient,
    pub messenger: SocketClient,
    pub notifications: SocketClient,
}

impl Everywhere {
    pub async fn connect(app: &TestApp, token: &str) -> Self {
        Self {
            main: connect(app, token).await,
            auth: connect_to(app, "/auth", token).await,
            messenger: connect_to(app, "/messenger", token).await,
            notifications: connect_to(app, "/notifications", token).await,
        }
    }

    /// Each socket with the name of its server and namespace, for assertions.
    pub fn sockets(&mut self) -> [(&'static str, &mut SocketClient); 4] {
        [
            ("main /", &mut self.main),
            ("/auth", &mut self.auth),
            ("/messenger", &mut self.messenger),
            ("/notifications", &mut self.notifications),
        ]
    }

    /// How many `event`s each socket got so far (after a barrier on each), in the order of
    /// [`Everywhere::sockets`].
    pub async fn counts(&mut self, event: &str) -> [usize; 4] {
        let mut counts = [0; 4];
        for (count, (_, socket)) in counts.iter_mut().zip(self.sockets()) {
            *count = socket.take_events(event).await.len();
        }
        counts
    }
}

fn lists(change: &Value, field: &str, user: Uuid) -> bool {
    change[field].as_array().is_some_and(|list| {
        list.iter()
            .any(|entry| entry == &json!(user) || entry["userId"] == json!(user))
    })
}

/// The `connect_error` message of a handshake that must be refused.
async fn refusal(handshake: Handshake) -> String {
    match handshake.connect().await {
        Ok(_) => panic!("the handshake was accepted, expected a connect_error"),
        Err(message) => message,
    }
}

db_test!(each_namespace_refuses_a_missing_bad_expired_or_revoked_token);
async fn each_namespace_refuses_a_missing_bad_expired_or_revoked_token(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let laptop = app.login(&ada.email, PASSWORD).await;
    let ended = str_at(&laptop, "/token").to_owned();
    let response = app
        .post_json_with_token("/api/auth/logout", &ended, &json!({}))
        .await;
    expect_json(response, 200).await;
    let hour = 3_600_000;
    let now = Timestamp::now().as_millis();
    let expired = app.state.tokens.issue_at(
        &app.stored_user(ada.id).await,
        ada.session_id,
        Timestamp::from_millis(now - 2 * hour),
        Timestamp::from_millis(now - hour),
    );
    let in_query = format!("token={}", ada.token);

    for namespace in NAMESPACES {
        let ns = || namespace_handshake(&app, namespace);
        let refusals = [
            ("no token", ns(), "invalid_token"),
            ("a bad token", ns().token("not-a-token"), "invalid_token"),
            (
                "an expired token",
                ns().token(&expired.token),
                "token_expired",
            ),
            ("an ended session", ns().token(&ended), "session_revoked"),
            (
                "a token in the query",
                ns().query(&in_query),
                "invalid_token",
            ),
            (
                "a foreign origin",
                ns().token(&ada.token)
                    .header("origin", "http://evil.example"),
                "origin_not_allowed",
            ),
        ];
        for (what, handshake, code) in refusals {
            assert_eq!(refusal(handshake).await, code, "{namespace} with {what}");
        }
    }
    assert_eq!(app.state.realtime.presence().user_connections(ada.id), 0);
}

db_test!(each_namespace_accepts_the_token_cookie_from_an_allowed_origin);
async fn each_namespace_accepts_the_token_cookie_from_an_allowed_origin(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    for namespace in NAMESPACES {
        let mut socket = namespace_handshake(&app, namespace)
            .header("cookie", &format!("craftcode_token={}", ada.token))
            .header("origin", ALLOWED_ORIGIN)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{namespace} refused the cookie: {e}"));
        let ack = socket.emit_with_ack("ping", json!({ "ts": 1 })).await;
        assert_ack_ok(&ack);
    }
    let mut auth = namespace_handshake(&app, "/auth")
        .header("cookie", &format!("craftcode_token={}", ada.token))
        .connect()
        .await
        .expect("accepted");
    let welcome = auth.next_event("authenticated").await;
    assert_eq!(welcome["sessionId"], ada.session_id.to_string());
}

db_test!(each_namespace_accepts_a_valid_token_and_greets_only_on_its_topic);
async fn each_namespace_accepts_a_valid_token_and_greets_only_on_its_topic(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;

    let mut auth = connect_to(&app, "/auth", &ada.token).await;
    let welcome = auth.next_event("authenticated").await;
    assert_eq!(welcome["user"]["id"], ada.id.to_string(), "{welcome}");
    assert_eq!(
        welcome["sessionId"],
        ada.session_id.to_string(),
        "{welcome}"
    );
    assert_timestamp(&welcome["expiresAt"]);
    auth.expect_no_event("getOnlineUsers").await;

    let mut messenger = connect_to(&app, "/messenger", &ada.token).await;
    let online = messenger.next_event("getOnlineUsers").await;
    assert_eq!(
        online,
        json!({ "users": [{ "userId": ada.id, "name": "Ada" }], "total": 1, "scope": "all" })
    );
    messenger.expect_no_event("authenticated").await;

    let mut notifications = connect_to(&app, "/notifications", &ada.token).await;
    notifications.expect_no_event("authenticated").await;
    notifications.expect_no_event("getOnlineUsers").await;
    assert!(auth.is_connected() && messenger.is_connected() && notifications.is_connected());
}

db_test!(a_message_reaches_the_main_socket_and_messenger_but_not_auth_or_notifications);
async fn a_message_reaches_the_main_socket_and_messenger_but_not_auth_or_notifications(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let mut ada_sockets = Everywhere::connect(&app, &ada.token).await;
    let mut bob_sockets = Everywhere::connect(&app, &bob.token).await;

    let ack = send_message(&mut ada_sockets.main, &bob, "one place per topic").await;
    let id = &ack["message"]["id"];
    for socket in [&mut bob_sockets.main, &mut bob_sockets.messenger] {
        let new_message = socket.next_event("newMessage").await;
        assert_eq!(&new_message["message"]["id"], id);
        assert_eq!(new_message["message"]["content"], "one place per topic");
    }
    bob_sockets.auth.expect_no_event("newMessage").await;
    bob_sockets
        .notifications
        .expect_no_event("newMessage")
        .await;
    for socket in [&mut ada_sockets.main, &mut ada_sockets.messenger] {
        let sent = socket.next_event("messageSent").await;
        assert_eq!(&sent["message"]["id"], id);
    }
    ada_sockets.auth.expect_no_event("messageSent").await;
    ada_sockets
        .notifications
        .expect_no_event("messageSent")
        .await;
}

db_test!(a_notification_reaches_the_main_socket_and_notifications_only);
async fn a_notification_reaches_the_main_socket_and_notifications_only(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let mut bob_sockets = Everywhere::connect(&app, &bob.token).await;

    notify(
        &app,
        &admin,
        json!({ "userId": bob.id, "title": "Hi", "body": "for Bob" }),
    )
    .await;
    let on_main = bob_sockets.main.next_event("notification").await;
    let on_namespace = bob_sockets.notifications.next_event("notification").await;
    assert_eq!(on_main, on_namespace);
    assert_eq!(on_main["notification"]["userId"], bob.id.to_string());
    assert_eq!(on_main["notification"]["title"], "Hi");
    bob_sockets.auth.expect_no_event("notification").await;
    bob_sockets.messenger.expect_no_event("notification").await;
}

db_test!(an_admin_promoting_a_user_reaches_auth_and_the_main_socket_only);
async fn an_admin_promoting_a_user_reaches_auth_and_the_main_socket_only(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let mut bob_sockets = Everywhere::connect(&app, &bob.token).await;

    let response = app
        .patch_user(&admin.token, bob.id, &json!({ "isAdmin": true }))
        .await;
    expect_json(response, 200).await;
    for socket in [&mut bob_sockets.main, &mut bob_sockets.auth] {
        let updated = socket.next_event("tokenUpdated").await;
        assert_eq!(updated["user"]["isAdmin"], true, "{updated}");
        assert_eq!(jwt_claims(str_at(&updated, "/token"))["isAdmin"], true);
        let status = socket.next_event("userStatusChanged").await;
        assert_eq!(
            status,
            json!({ "userId": bob.id, "isActive": true, "isAdmin": true })
        );
    }
    for socket in [&mut bob_sockets.messenger, &mut bob_sockets.notifications] {
        socket.expect_no_event("tokenUpdated").await;
        socket.expect_no_event("userStatusChanged").await;
    }
}

db_test!(a_user_on_both_servers_gets_each_event_once_per_socket);
async fn a_user_on_both_servers_gets_each_event_once_per_socket(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let mut ada_sockets = Everywhere::connect(&app, &ada.token).await;
    let mut bob_sockets = Everywhere::connect(&app, &bob.token).await;

    for n in 0..3 {
        send_message(&mut ada_sockets.main, &bob, &format!("message {n}")).await;
    }
    for n in 0..2 {
        let body = format!("notification {n}");
        notify(
            &app,
            &admin,
            json!({ "userId": bob.id, "title": "t", "body": body }),
        )
        .await;
    }
    let typing = json!({ "to": bob.id, "isTyping": true });
    assert_ack_ok(&ada_sockets.messenger.emit_with_ack("typing", typing).await);
    let test_message = json!({ "action": "sendToUser", "targetUserId": bob.id });
    let response = app
        .post_json_with_token("/api/socket-test", &admin.token, &test_message)
        .await;
    expect_json(response, 200).await;

    // In the order main, /auth, /messenger, /notifications.
    assert_eq!(bob_sockets.counts("newMessage").await, [3, 0, 3, 0]);
    assert_eq!(bob_sockets.counts("notification").await, [2, 0, 0, 2]);
    assert_eq!(bob_sockets.counts("userTyping").await, [1, 0, 1, 0]);
    assert_eq!(bob_sockets.counts("testMessage").await, [1, 1, 1, 1]);
    assert_eq!(ada_sockets.counts("messageSent").await, [3, 0, 3, 0]);
    assert_eq!(ada_sockets.counts("newMessage").await, [0, 0, 0, 0]);
}

db_test!(messenger_sends_types_reads_and_lists_who_is_online_with_acks);
async fn messenger_sends_types_reads_and_lists_who_is_online_with_acks(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let mut ada_messenger = connect_to(&app, "/messenger", &ada.token).await;
    let mut bob_main = connect(&app, &bob.token).await;
    let mut bob_messenger = connect_to(&app, "/messenger", &bob.token).await;

    let ack = ada_messenger
        .emit_with_ack(
            "sendMessage",
            json!({ "to": bob.id, "content": "from an older client", "clientId": "old-1" }),
        )
        .await;
    assert_ack_ok(&ack);
    assert_eq!(ack["delivered"], true, "{ack}");
    assert_eq!(ack["message"]["from"], ada.id.to_string());
    assert_eq!(ack["message"]["clientId"], "old-1");
    let id = ack["message"]["id"].clone();
    assert_eq!(bob_main.next_event("newMessage").await["message"]["id"], id);
    assert_eq!(
        ada_messenger.next_event("messageSent").await["message"]["id"],
        id
    );

    let typing = json!({ "to": bob.id, "isTyping": true });
    assert_ack_ok(&ada_messenger.emit_with_ack("typing", typing).await);
    let typing = bob_main.next_event("userTyping").await;
    let conversation_id = ack["message"]["conversationId"].clone();
    assert!(conversation_id.is_string(), "{ack}");
    assert_eq!(
        typing,
        json!({ "userId": ada.id, "isTyping": true, "conversationId": conversation_id })
    );

    let read = json!({ "userId": ada.id, "upTo": id });
    let ack = bob_messenger.emit_with_ack("markRead", read).await;
    assert_ack_ok(&ack);
    assert_eq!(ack["count"], 1, "{ack}");
    let read = ada_messenger.next_event("messagesRead").await;
    assert_eq!(read["by"], bob.id.to_string());
    assert_eq!(read["upTo"], id);

    let online = ada_messenger
        .emit_with_ack("getOnlineUsers", Value::Null)
        .await;
    assert_ack_ok(&online);
    assert_eq!(online["total"], 2, "{online}");
}

db_test!(ping_and_sync_work_on_every_namespace);
async fn ping_and_sync_work_on_every_namespace(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let mut ada_socket = connect(&app, &ada.token).await;
    let first = send_message(&mut ada_socket, &bob, "first").await;
    let second = send_message(&mut ada_socket, &bob, "second").await;

    for namespace in NAMESPACES {
        let mut socket = connect_to(&app, namespace, &bob.token).await;
        let ack = socket
            .emit_with_ack("ping", json!({ "ts": namespace }))
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ack["ts"], namespace);
        assert_timestamp(&ack["serverTime"]);
        let pong = socket.next_event("pong").await;
        assert_eq!(pong["ts"], namespace);

        let since = json!({ "since": first["message"]["id"] });
        let ack = socket.emit_with_ack("sync", since).await;
        assert_ack_ok(&ack);
        assert_eq!(
            ack["messages"],
            json!([second["message"]]),
            "on {namespace}"
        );
        assert_eq!(ack["hasMore"], false, "on {namespace}");
        assert_eq!(ack["notifications"], json!([]), "on {namespace}");
        assert_eq!(ack["hasMoreNotifications"], false, "on {namespace}");
    }
}

db_test!(an_event_of_another_topic_is_answered_unknown_event_and_does_nothing);
async fn an_event_of_another_topic_is_answered_unknown_event_and_does_nothing(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let mut bob_socket = connect(&app, &bob.token).await;
    let message = json!({ "to": bob.id, "content": "through the wrong door" });
    let attempts = [
        ("/notifications", "sendMessage", message.clone()),
        ("/auth", "sendMessage", message),
        ("/auth", "typing", json!({ "to": bob.id, "isTyping": true })),
        ("/notifications", "getOnlineUsers", Value::Null),
        (
            "/notifications",
            "markRead",
            json!({ "userId": bob.id, "upTo": Uuid::now_v7() }),
        ),
        ("/messenger", "authenticate", json!({ "token": ada.token })),
        (
            "/notifications",
            "authenticate",
            json!({ "token": ada.token }),
        ),
    ];
    for (namespace, event, data) in attempts {
        let mut socket = connect_to(&app, namespace, &ada.token).await;
        let ack = socket.emit_with_ack(event, data).await;
        assert_ack_error(&ack, "unknown_event");
        socket.barrier().await;
        assert!(socket.is_connected(), "{event} on {namespace} disconnected");
    }
    bob_socket.expect_no_event("newMessage").await;
    bob_socket.expect_no_event("userTyping").await;
    let path = format!("/api/messages/{}", ada.id);
    let history = expect_json(app.get_with_token(&path, &bob.token).await, 200).await;
    assert_eq!(history["messages"], json!([]));
}

db_test!(logging_out_sends_force_logout_to_every_namespace_and_disconnects_it);
async fn logging_out_sends_force_logout_to_every_namespace_and_disconnects_it(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let mut sockets = Everywhere::connect(&app, &ada.token).await;

    let response = app
        .post_json_with_token("/api/auth/logout", &ada.token, &json!({}))
        .await;
    let body = expect_json(response, 200).await;
    assert_eq!(body["socketsDisconnected"], 4, "{body}");
    for (name, socket) in sockets.sockets() {
        let notice = socket.next_event("force_logout").await;
        assert_eq!(notice, json!({ "reason": "logout" }), "on {name}");
        socket.wait_disconnect().await;
    }
}

db_test!(revoking_a_session_sends_force_logout_to_its_sockets_in_every_namespace);
async fn revoking_a_session_sends_force_logout_to_its_sockets_in_every_namespace(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let laptop = app.login(&ada.email, PASSWORD).await;
    let laptop_token = str_at(&laptop, "/token").to_owned();
    let mut phone = Everywhere::connect(&app, &ada.token).await;
    let mut laptop_messenger = connect_to(&app, "/messenger", &laptop_token).await;

    let response = app
        .client
        .delete(app.url(&format!("/api/sessions/{}", ada.session_id)))
        .bearer_auth(&laptop_token)
        .send()
        .await
        .expect("request sent");
    let body = expect_json(response, 200).await;
    assert_eq!(body["socketsDisconnected"], 4, "{body}");
    for (name, socket) in phone.sockets() {
        let notice = socket.next_event("force_logout").await;
        assert_eq!(notice, json!({ "reason": "session_revoked" }), "on {name}");
        socket.wait_disconnect().await;
    }
    laptop_messenger.expect_no_event("force_logout").await;
    assert!(laptop_messenger.is_connected());
}

db_test!(a_deactivated_users_sockets_are_logged_out_in_every_namespace);
async fn a_deactivated_users_sockets_are_logged_out_in_every_namespace(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let mut sockets = Everywhere::connect(&app, &bob.token).await;

    let response = app
        .patch_user(&admin.token, bob.id, &json!({ "isActive": false }))
        .await;
    expect_json(response, 200).await;
    for (name, socket) in sockets.sockets() {
        let notice = socket.next_event("force_logout").await;
        assert_eq!(notice, json!({ "reason": "account_disabled" }), "on {name}");
        socket.wait_disconnect().await;
    }
    for namespace in NAMESPACES {
        let refused = namespace_handshake(&app, namespace)
            .token(&bob.token)
            .connect()
            .await
            .err();
        assert_eq!(refused.as_deref(), Some("account_disabled"), "{namespace}");
    }
}

db_test!(a_deleted_users_sockets_are_logged_out_in_every_namespace);
async fn a_deleted_users_sockets_are_logged_out_in_every_namespace(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let mut sockets = Everywhere::connect(&app, &bob.token).await;

    let response = app
        .client
        .delete(app.url(&format!("/api/users/{}", bob.id)))
        .bearer_auth(&admin.token)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status().as_u16(), 204);
    for (name, socket) in sockets.sockets() {
        let notice = socket.next_event("force_logout").await;
        assert_eq!(notice, json!({ "reason": "account_deleted" }), "on {name}");
        socket.wait_disconnect().await;
    }
}

db_test!(a_graceful_shutdown_tells_the_sockets_of_every_namespace);
async fn a_graceful_shutdown_tells_the_sockets_of_every_namespace(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let mut sockets = Everywhere::connect(&app, &ada.token).await;

    let stopping = tokio::spawn(app.stop());
    for (name, socket) in sockets.sockets() {
        let notice = socket.next_event("server_shutdown").await;
        assert!(
            notice["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "on {name}: {notice}"
        );
        assert!(
            notice["reconnectAfterMs"].as_u64().is_some(),
            "on {name}: {notice}"
        );
        socket.wait_disconnect().await;
    }
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the server stops once its sockets are closed")
        .expect("the server stopped cleanly");
}

db_test!(a_user_connected_only_to_the_namespace_server_is_online);
async fn a_user_connected_only_to_the_namespace_server_is_online(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let mut ada_socket = connect(&app, &ada.token).await;

    // `/notifications` carries no presence at all; being there is still being online.
    let bob_socket = connect_to(&app, "/notifications", &bob.token).await;
    let change = ada_socket
        .next_event_where("presenceChanged", |c| lists(c, "online", bob.id))
        .await;
    assert!(
        change["online"]
            .as_array()
            .expect("a list")
            .contains(&json!({ "userId": bob.id, "name": "Bob" })),
        "{change}"
    );
    let online = ada_socket
        .emit_with_ack("getOnlineUsers", Value::Null)
        .await;
    assert_ack_ok(&online);
    assert_eq!(online["total"], 2, "{online}");
    assert!(lists(&online, "users", bob.id), "{online}");

    bob_socket.disconnect().await;
    ada_socket
        .next_event_where("presenceChanged", |c| lists(c, "offline", bob.id))
        .await;
}

db_test!(a_user_connected_to_both_servers_is_one_online_user);
async fn a_user_connected_to_both_servers_is_one_online_user(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let mut ada_socket = connect(&app, &ada.token).await;
    let bob_main = connect(&app, &bob.token).await;
    let bob_messenger = connect_to(&app, "/messenger", &bob.token).await;
    let bob_auth = connect_to(&app, "/auth", &bob.token).await;

    let online = ada_socket
        .emit_with_ack("getOnlineUsers", Value::Null)
        .await;
    assert_ack_ok(&online);
    assert_eq!(online["total"], 2, "{online}");
    let bobs = online["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter(|u| u["userId"] == json!(bob.id))
        .count();
    assert_eq!(bobs, 1, "{online}");

    // Bob leaves the main server but stays on the namespace server: still online. Carol's
    // arrival is announced in a batch taken after Bob left; had he gone offline, this batch or
    // an earlier one would say so.
    bob_main.disconnect().await;
    let presence = app.state.realtime.presence();
    wait_until("the server counts Bob's 2 namespace sockets", || {
        presence.user_connections(bob.id) == 2
    })
    .await;
    let _carol_socket = connect(&app, &carol.token).await;
    let with_carol = ada_socket
        .next_event_where("presenceChanged", |c| lists(c, "online", carol.id))
        .await;
    let mut changes = ada_socket.take_events("presenceChanged").await;
    changes.push(with_carol);
    assert!(
        !changes.iter().any(|c| lists(c, "offline", bob.id)),
        "{changes:?}"
    );

    bob_messenger.disconnect().await;
    bob_auth.disconnect().await;
    ada_socket
        .next_event_where("presenceChanged", |c| lists(c, "offline", bob.id))
        .await;
}
