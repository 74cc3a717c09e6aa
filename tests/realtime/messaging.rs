//! Direct messages over sockets: `sendMessage` and its fan-out, delivery acks, `clientId`
//! retries, read receipts, `sync`, offline recipients, and who never hears about a conversation.

use uuid::Uuid;

use crate::support::*;

/// The conversation with `other` as `me` reads it over REST, newest first.
async fn history(app: &TestApp, me: &TestUser, other: &TestUser) -> Vec<Value> {
    let path = format!("/api/messages/{}?limit=100", other.id);
    let body = expect_json(app.get_with_token(&path, &me.token).await, 200).await;
    body["messages"]
        .as_array()
        .expect("a list of messages")
        .clone()
}

db_test! {
    async fn send_message_is_acked_with_the_stored_message(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let _bob_socket = connect(&app, &bob.token).await;

        let ack = ada_socket
            .emit_with_ack(
                "sendMessage",
                json!({ "to": bob.id, "content": "  hello Bob  ", "clientId": "c-1" }),
            )
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ack["delivered"], true, "Bob has a live socket: {ack}");
        let message = &ack["message"];
        let id: Uuid = message["id"]
            .as_str()
            .expect("an id")
            .parse()
            .expect("a UUID");
        assert_eq!(id.get_version_num(), 7, "ids are UUIDv7");
        assert_eq!(message["from"], ada.id.to_string());
        assert_eq!(message["to"], bob.id.to_string());
        assert_eq!(message["content"], "hello Bob", "content is trimmed");
        assert_eq!(message["clientId"], "c-1");
        assert_timestamp(&message["createdAt"]);
        assert_eq!(message["deliveredAt"], Value::Null);
        assert_eq!(message["readAt"], Value::Null);
        let stored = history(&app, &ada, &bob).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0]["id"], message["id"]);
    }

    async fn all_recipient_sockets_get_new_message_and_all_sender_sockets_get_message_sent(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_phone = connect(&app, &ada.token).await;
        let mut ada_laptop = connect(&app, &ada.token).await;
        let mut bob_phone = connect(&app, &bob.token).await;
        let mut bob_laptop = connect(&app, &bob.token).await;

        let ack = send_message(&mut ada_phone, &bob, "to all your devices").await;
        let id = &ack["message"]["id"];
        for bob_socket in [&mut bob_phone, &mut bob_laptop] {
            let new_message = bob_socket.next_event("newMessage").await;
            assert_eq!(&new_message["message"]["id"], id);
            assert_eq!(new_message["message"]["content"], "to all your devices");
            assert_eq!(new_message["message"]["from"], ada.id.to_string());
            bob_socket.expect_no_event("messageSent").await;
        }
        for ada_socket in [&mut ada_phone, &mut ada_laptop] {
            let sent = ada_socket.next_event("messageSent").await;
            assert_eq!(&sent["message"]["id"], id);
            ada_socket.expect_no_event("newMessage").await;
        }
    }

    async fn a_recipient_acking_new_message_marks_it_delivered_and_tells_the_sender(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        bob_socket.ack_server_events();

        let ack = send_message(&mut ada_socket, &bob, "did you get this?").await;
        let id = ack["message"]["id"].clone();
        bob_socket.next_event("newMessage").await;
        let delivered = ada_socket.next_event("messageDelivered").await;
        assert_eq!(delivered["messageId"], id);
        assert_eq!(delivered["to"], bob.id.to_string());
        assert_timestamp(&delivered["deliveredAt"]);

        let stored = history(&app, &ada, &bob).await;
        assert_eq!(stored[0]["id"], id);
        assert_eq!(stored[0]["deliveredAt"], delivered["deliveredAt"]);
    }

    async fn sending_again_with_the_same_client_id_returns_the_same_message_once(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let payload = json!({ "to": bob.id, "content": "only once", "clientId": "retry-me" });

        let first = ada_socket
            .emit_with_ack("sendMessage", payload.clone())
            .await;
        assert_ack_ok(&first);
        bob_socket.next_event("newMessage").await;
        let second = ada_socket.emit_with_ack("sendMessage", payload).await;
        assert_ack_ok(&second);
        assert_eq!(second["message"]["id"], first["message"]["id"]);
        bob_socket.expect_no_event("newMessage").await;
        assert_eq!(history(&app, &bob, &ada).await.len(), 1);
    }

    async fn mark_read_answers_the_count_and_tells_the_sender(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        send_message(&mut ada_socket, &bob, "one").await;
        let last = send_message(&mut ada_socket, &bob, "two").await;
        let up_to = last["message"]["id"].clone();

        let ack = bob_socket
            .emit_with_ack("markRead", json!({ "userId": ada.id, "upTo": up_to }))
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ack["count"], 2);
        let read = ada_socket.next_event("messagesRead").await;
        assert_eq!(read["by"], bob.id.to_string());
        assert_eq!(read["upTo"], up_to);
        assert_timestamp(&read["readAt"]);
        let stored = history(&app, &ada, &bob).await;
        assert!(
            stored.iter().all(|m| m["readAt"] == read["readAt"]),
            "{stored:?}"
        );
    }

    async fn sync_answers_what_came_after_a_message_oldest_first(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let mut ids = Vec::new();
        for content in ["first", "second", "third"] {
            let ack = send_message(&mut ada_socket, &bob, content).await;
            ids.push(ack["message"]["id"].clone());
        }

        let ack = bob_socket
            .emit_with_ack("sync", json!({ "since": ids[0] }))
            .await;
        assert_ack_ok(&ack);
        let contents: Vec<&Value> = ack["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| &m["content"])
            .collect();
        assert_eq!(contents, [&json!("second"), &json!("third")]);
        assert_eq!(ack["hasMore"], false);

        let ack = bob_socket
            .emit_with_ack("sync", json!({ "since": ids[0], "limit": 1 }))
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ack["messages"].as_array().expect("messages").len(), 1);
        assert_eq!(ack["messages"][0]["id"], ids[1]);
        assert_eq!(ack["hasMore"], true);
    }

    async fn a_message_to_an_offline_user_is_not_delivered_and_arrives_through_sync(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        // Presence is batched: Ada's client must have seen Bob arrive to see him leave.
        ada_socket
            .next_event_where("presenceChanged", |p| {
                p["online"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|u| u["userId"] == json!(bob.id)))
            })
            .await;
        let seen = send_message(&mut ada_socket, &bob, "while you were here").await;
        assert_eq!(seen["delivered"], true);
        bob_socket.next_event("newMessage").await;

        bob_socket.disconnect().await;
        // Ada's client learns that Bob left; from then on he counts as offline.
        ada_socket
            .next_event_where("presenceChanged", |p| {
                p["offline"]
                    .as_array()
                    .is_some_and(|o| o.contains(&json!(bob.id)))
            })
            .await;
        let missed = send_message(&mut ada_socket, &bob, "while you were away").await;
        assert_eq!(missed["delivered"], false, "{missed}");

        let mut bob_socket = connect(&app, &bob.token).await;
        let ack = bob_socket
            .emit_with_ack("sync", json!({ "since": seen["message"]["id"] }))
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ack["messages"], json!([missed["message"]]));
        assert_eq!(ack["hasMore"], false);
    }

    async fn a_third_user_never_hears_about_a_conversation(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let mut carol_socket = connect(&app, &carol.token).await;
        bob_socket.ack_server_events();

        let ack = send_message(&mut ada_socket, &bob, "just between us").await;
        bob_socket.next_event("newMessage").await;
        ada_socket.next_event("messageDelivered").await;
        let typing = json!({ "to": ada.id, "isTyping": true });
        assert_ack_ok(&bob_socket.emit_with_ack("typing", typing).await);
        ada_socket.next_event("userTyping").await;
        let read = json!({ "userId": ada.id, "upTo": ack["message"]["id"] });
        assert_ack_ok(&bob_socket.emit_with_ack("markRead", read).await);
        ada_socket.next_event("messagesRead").await;

        for event in [
            "newMessage",
            "messageSent",
            "messageDelivered",
            "userTyping",
            "messagesRead",
        ] {
            carol_socket.expect_no_event(event).await;
        }
    }
}

/// Waits for every ack in `acks`, in order.
async fn all_acks(acks: Vec<tokio::sync::oneshot::Receiver<Value>>) -> Vec<Value> {
    let mut answered = Vec::with_capacity(acks.len());
    for ack in acks {
        let ack = tokio::time::timeout(WAIT, ack)
            .await
            .expect("an ack within the wait")
            .expect("the connection stays up");
        answered.push(ack);
    }
    answered
}

db_test! {
    async fn many_sends_in_flight_at_once_are_each_acked_stored_and_delivered_once(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut bob_socket = connect(&app, &bob.token).await;
        bob_socket.ack_server_events();
        let mut devices = Vec::new();
        for _ in 0..3 {
            devices.push(connect(&app, &ada.token).await);
        }
        // 18 sends before any answer (under the 20 per second per user limit), from three
        // devices: on SQLite they are committed together, in as few transactions as it takes.
        let mut acks = Vec::new();
        for n in 0..18 {
            let device = &mut devices[n % 3];
            acks.push(device.emit_expecting_ack(
                "sendMessage",
                json!({ "to": bob.id, "content": format!("burst {n}"), "clientId": format!("burst-{n}") }),
            ));
        }
        let acks = all_acks(acks).await;
        let mut ids = Vec::new();
        for (n, ack) in acks.iter().enumerate() {
            assert_ack_ok(ack);
            assert_eq!(ack["message"]["content"], format!("burst {n}"));
            ids.push(ack["message"]["id"].as_str().expect("an id").to_owned());
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 18, "one message per send: {ids:?}");

        let stored = history(&app, &bob, &ada).await;
        let mut stored_ids: Vec<String> = stored
            .iter()
            .map(|m| m["id"].as_str().expect("an id").to_owned())
            .collect();
        stored_ids.sort();
        assert_eq!(stored_ids, unique, "every acked message is stored, once");

        let mut delivered = Vec::new();
        for _ in 0..18 {
            let event = bob_socket.next_event("newMessage").await;
            delivered.push(event["message"]["id"].as_str().expect("an id").to_owned());
        }
        delivered.sort();
        assert_eq!(delivered, unique, "Bob gets each message once");
        bob_socket.expect_no_event("newMessage").await;
    }

    async fn the_same_client_id_sent_twice_at_once_is_stored_once(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut phone = connect(&app, &ada.token).await;
        let mut laptop = connect(&app, &ada.token).await;
        let payload = json!({ "to": bob.id, "content": "only once", "clientId": "twice-at-once" });
        // Both in flight before either is answered, plus the same send over REST meanwhile.
        let acks = vec![
            phone.emit_expecting_ack("sendMessage", payload.clone()),
            laptop.emit_expecting_ack("sendMessage", payload.clone()),
            phone.emit_expecting_ack("sendMessage", payload.clone()),
        ];
        let rest = app
            .post_json_with_token(
                &format!("/api/messages/send/{}", bob.id),
                &ada.token,
                &json!({ "content": "only once", "clientId": "twice-at-once" }),
            )
            .await;
        let status = rest.status().as_u16();
        assert!(status == 200 || status == 201, "answered {status}");
        let rest = rest.json::<Value>().await.expect("a JSON body");
        let acks = all_acks(acks).await;
        for ack in &acks {
            assert_ack_ok(ack);
            assert_eq!(ack["message"]["id"], rest["message"]["id"], "{ack} vs {rest}");
        }
        let stored = history(&app, &ada, &bob).await;
        assert_eq!(stored.len(), 1, "one message for one clientId: {stored:?}");
        assert_eq!(stored[0]["id"], rest["message"]["id"]);
    }
}
