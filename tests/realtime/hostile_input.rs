//! Bad input on sockets (§2, §9): malformed payloads, garbage packets, unknown events, oversized
//! packets and floods get an error or cost the sender its connection, and never harm anyone else.

use uuid::Uuid;

use crate::support::*;

/// Two people in a conversation, to check that others keep working after an attack.
async fn bystanders(app: &TestApp) -> (TestUser, SocketClient, TestUser, SocketClient) {
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let bob_socket = connect(app, &bob.token).await;
    let carol_socket = connect(app, &carol.token).await;
    (bob, bob_socket, carol, carol_socket)
}

/// Bob can still message Carol, live.
async fn still_working(
    bob_socket: &mut SocketClient,
    carol: &TestUser,
    carol_socket: &mut SocketClient,
) {
    assert!(bob_socket.is_connected() && carol_socket.is_connected());
    let ack = send_message(bob_socket, carol, "still here?").await;
    let received = carol_socket.next_event("newMessage").await;
    assert_eq!(received["message"]["id"], ack["message"]["id"]);
}

db_test! {
    async fn malformed_payloads_get_an_error_ack_and_the_socket_stays(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let cases = [
            ("sendMessage", json!("just a string"), "invalid_payload"),
            ("sendMessage", json!(null), "invalid_payload"),
            ("sendMessage", json!([bob.id, "hi"]), "invalid_payload"),
            (
                "sendMessage",
                json!({ "content": "no recipient" }),
                "invalid_payload",
            ),
            ("sendMessage", json!({ "to": bob.id }), "invalid_payload"),
            (
                "sendMessage",
                json!({ "to": bob.id, "content": 42 }),
                "invalid_payload",
            ),
            (
                "sendMessage",
                json!({ "to": "not-a-uuid", "content": "hi" }),
                "user_not_found",
            ),
            (
                "sendMessage",
                json!({ "to": Uuid::now_v7(), "content": "hi" }),
                "user_not_found",
            ),
            (
                "sendMessage",
                json!({ "to": bob.id, "content": "" }),
                "validation_failed",
            ),
            (
                "sendMessage",
                json!({ "to": bob.id, "content": " \n\t " }),
                "validation_failed",
            ),
            (
                "sendMessage",
                json!({ "to": bob.id, "content": "x".repeat(4001) }),
                "validation_failed",
            ),
            ("typing", json!("yes"), "invalid_payload"),
            (
                "typing",
                json!({ "to": bob.id, "isTyping": "very" }),
                "invalid_payload",
            ),
            ("markRead", json!({}), "invalid_payload"),
            (
                "markRead",
                json!({ "userId": bob.id, "upTo": "latest" }),
                "invalid_payload",
            ),
            ("sync", json!("everything"), "invalid_payload"),
            ("sync", json!({ "since": 12 }), "invalid_payload"),
        ];
        for (event, data, code) in cases {
            let ack = ada_socket.emit_with_ack(event, data.clone()).await;
            assert_eq!(ack["error"]["code"], code, "{event} {data}: {ack}");
            assert_ack_error(&ack, code);
        }
        bob_socket.expect_no_event("newMessage").await;
        assert!(ada_socket.is_connected());
        // Exactly at the limit is fine.
        let ack = send_message(&mut ada_socket, &bob, &"x".repeat(4000)).await;
        assert_eq!(ack["message"]["content"].as_str().map(str::len), Some(4000));
    }

    async fn a_malformed_authenticate_payload_gets_invalid_payload_and_keeps_the_socket(db: Db) {
        // §2: a malformed payload never disconnects; only a bad *token* does (§5).
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = connect(&app, &ada.token).await;
        for data in [json!("a token?"), json!({}), json!({ "token": 42 })] {
            let ack = socket.emit_with_ack("authenticate", data.clone()).await;
            assert_ack_error(&ack, "invalid_payload");
            assert!(
                socket.is_connected(),
                "authenticate {data} cost the connection"
            );
        }
        socket.barrier().await;
    }

    async fn garbage_packets_never_harm_other_clients(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let (_bob, mut bob_socket, carol, mut carol_socket) = bystanders(&app).await;
        let garbage = [
            "42not json",
            "4",
            "42",
            "43",
            "4299999999999999999999[\"ping\"]",
            "42[\"sendMessage\"",
            "42[]",
            "42[42]",
            "42[null,{}]",
            "44{\"message\":\"x\"}",
            "49",
            "x",
            "",
            "0",
            "2probe",
            "\u{1}\u{7f}\u{fffd}\u{0}zz%%",
        ];
        for packet in garbage {
            // A fresh connection each time: the server may rightly drop one that sends garbage,
            // and the next packet must reach a live session.
            let socket = connect(&app, &ada.token).await;
            socket.send_raw(packet);
            drop(socket);
        }
        let socket = connect(&app, &ada.token).await;
        socket.send_binary(vec![0xff, 0x00, 0x42, 0x13, 0x37, 0xde, 0xad]);
        drop(socket);

        still_working(&mut bob_socket, &carol, &mut carol_socket).await;
        expect_json(app.get("/healthz").await, 200).await;
        // And the one who sent garbage may come back.
        connect(&app, &ada.token).await.barrier().await;
    }

    async fn an_unknown_event_gets_unknown_event(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = connect(&app, &ada.token).await;
        for event in ["joinRoom", "sendmessage", "", &"e".repeat(500)] {
            let ack = socket
                .emit_with_ack(event, json!({ "room": "user_someone" }))
                .await;
            assert_ack_error(&ack, "unknown_event");
        }
        assert!(socket.is_connected());
    }

    async fn a_packet_over_64_kib_is_refused_and_others_are_unaffected(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let (bob, mut bob_socket, carol, mut carol_socket) = bystanders(&app).await;

        // Just under the limit: an ordinary validation error.
        let mut ada_socket = connect(&app, &ada.token).await;
        let ack = ada_socket
            .emit_with_ack(
                "sendMessage",
                json!({ "to": bob.id, "content": "x".repeat(60_000) }),
            )
            .await;
        assert_ack_error(&ack, "validation_failed");

        let oversized = json!({ "to": bob.id, "content": "x".repeat(70 * 1024) });
        let ack = ada_socket.emit_expecting_ack("sendMessage", oversized);
        match tokio::time::timeout(crate::client::WAIT, ack).await {
            Ok(Ok(ack)) => assert_eq!(ack["ok"], false, "an oversized packet was accepted: {ack}"),
            Ok(Err(_)) => {} // the connection was closed instead, which is allowed
            Err(_) => panic!("an oversized packet got neither an answer nor a disconnect"),
        }
        bob_socket.expect_no_event("newMessage").await;
        still_working(&mut bob_socket, &carol, &mut carol_socket).await;
    }

    async fn a_flood_of_events_is_rate_limited(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let (_bob, mut bob_socket, carol, mut carol_socket) = bystanders(&app).await;
        let mut socket = connect(&app, &ada.token).await;
        let pending: Vec<_> = (0..200)
            .map(|ts| socket.emit_expecting_ack("ping", json!({ "ts": ts })))
            .collect();
        let (mut ok, mut limited) = (0, 0);
        for ack in pending {
            let ack = tokio::time::timeout(crate::client::WAIT, ack)
                .await
                .expect("every flooded event is answered")
                .expect("the connection stays open");
            match ack["ok"].as_bool() {
                Some(true) => ok += 1,
                _ => {
                    assert_ack_error(&ack, "rate_limited");
                    limited += 1;
                }
            }
        }
        // The budget is 50 a second: the first ones pass, a burst of 200 cannot.
        assert!(ok >= 40, "{ok} ok, {limited} limited");
        assert!(limited > 0, "{ok} ok, {limited} limited");
        still_working(&mut bob_socket, &carol, &mut carol_socket).await;
    }
}
