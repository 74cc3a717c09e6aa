//! Who is online (`presenceChanged`, `getOnlineUsers`), typing indicators, and `ping`.

use uuid::Uuid;

use crate::support::*;

fn lists(change: &Value, field: &str, user: Uuid) -> bool {
    change[field].as_array().is_some_and(|list| {
        list.iter()
            .any(|entry| entry == &json!(user) || entry["userId"] == json!(user))
    })
}

/// Waits until the server counts `sockets` connections for `user`: closing a WebSocket is
/// noticed by the server on its own time.
async fn wait_for_server_count(app: &TestApp, user: Uuid, sockets: usize) {
    let presence = app.state.realtime.presence();
    wait_until(
        &format!("the server counts {sockets} sockets for {user}"),
        || presence.user_connections(user) == sockets,
    )
    .await;
}

db_test! {
    async fn a_user_coming_online_and_leaving_shows_in_presence_changed(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;

        let bob_socket = connect(&app, &bob.token).await;
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
        assert_eq!(change["offline"], json!([]), "{change}");

        bob_socket.disconnect().await;
        let change = ada_socket
            .next_event_where("presenceChanged", |c| lists(c, "offline", bob.id))
            .await;
        assert_eq!(change, json!({ "online": [], "offline": [bob.id] }));
    }

    async fn two_tabs_of_one_user_count_as_one_online_user(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let bob_tab = connect(&app, &bob.token).await;
        let bob_other_tab = connect(&app, &bob.token).await;

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

        bob_tab.disconnect().await;
        wait_for_server_count(&app, bob.id, 1).await;
        // Carol's arrival is announced in a batch taken after Bob closed a tab: if that tab had
        // made him offline, this batch or an earlier one would say so.
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
        let online = ada_socket
            .emit_with_ack("getOnlineUsers", Value::Null)
            .await;
        assert_eq!(online["total"], 3, "{online}");

        bob_other_tab.disconnect().await;
        ada_socket
            .next_event_where("presenceChanged", |c| lists(c, "offline", bob.id))
            .await;
    }

    async fn get_online_users_without_an_ack_answers_with_an_event(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = connect(&app, &ada.token).await;
        socket.next_event("getOnlineUsers").await; // the one after `authenticated`
        socket.emit("getOnlineUsers", Value::Null);
        let online = socket.next_event("getOnlineUsers").await;
        assert_eq!(
            online,
            json!({ "users": [{ "userId": ada.id, "name": "Ada" }], "total": 1 })
        );
    }

    async fn typing_reaches_the_recipient_and_nobody_else(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let mut carol_socket = connect(&app, &carol.token).await;

        let ack = ada_socket
            .emit_with_ack("typing", json!({ "to": bob.id, "isTyping": true }))
            .await;
        assert_ack_ok(&ack);
        let typing = bob_socket.next_event("userTyping").await;
        // They have no conversation yet: nothing was sent.
        assert_eq!(
            typing,
            json!({ "userId": ada.id, "isTyping": true, "conversationId": null })
        );
        carol_socket.expect_no_event("userTyping").await;
        ada_socket.expect_no_event("userTyping").await;

        let ack = ada_socket
            .emit_with_ack("typing", json!({ "to": bob.id, "isTyping": false }))
            .await;
        assert_ack_ok(&ack);
        let typing = bob_socket.next_event("userTyping").await;
        assert_eq!(
            typing,
            json!({ "userId": ada.id, "isTyping": false, "conversationId": null })
        );
    }

    async fn ping_is_answered_with_pong_and_an_ack(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = connect(&app, &ada.token).await;
        let ack = socket.emit_with_ack("ping", json!({ "ts": 1 })).await;
        assert_ack_ok(&ack);
        assert_eq!(ack["ts"], 1);
        assert_timestamp(&ack["serverTime"]);
        let pong = socket.next_event("pong").await;
        assert_eq!(pong["ts"], 1);
        assert_timestamp(&pong["serverTime"]);
    }
}
