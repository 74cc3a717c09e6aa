//! Editing, deleting, reacting and replying (§11): who may do each, what every member's sockets
//! are told, what a tombstone keeps, reactions under concurrency and bad emoji, replies, the 404
//! a non-member gets everywhere, and `sync`'s `changed` for a device that was offline.

use uuid::Uuid;

use crate::namespaces::connect_to;
use crate::support::*;

async fn put_with_token(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent")
}

/// Every byte of `text` percent-encoded, so the path carries it exactly.
fn encoded(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn reaction_path(message: &str, emoji: &str) -> String {
    format!("/api/messages/{message}/reactions/{}", encoded(emoji))
}

/// Sends `content` to a conversation over REST with extra body fields; answers the message.
async fn post_message(app: &TestApp, user: &TestUser, conversation: &str, body: Value) -> Value {
    let path = format!("/api/conversations/{conversation}/messages");
    let answer = app.post_json_with_token(&path, &user.token, &body).await;
    expect_json(answer, 201).await["message"].clone()
}

async fn edit(app: &TestApp, user: &TestUser, message: &str, content: &str) -> reqwest::Response {
    let path = format!("/api/messages/{message}");
    app.patch_with_token(&path, &user.token, &json!({ "content": content }))
        .await
}

async fn delete(app: &TestApp, user: &TestUser, message: &str) -> reqwest::Response {
    app.delete_with_token(&format!("/api/messages/{message}"), &user.token)
        .await
}

/// The conversation's history as `user` reads it, newest first.
async fn history(app: &TestApp, user: &TestUser, conversation: &str) -> Vec<Value> {
    let path = format!("/api/conversations/{conversation}/messages");
    let page = expect_json(app.get_with_token(&path, &user.token).await, 200).await;
    page["messages"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(messages: &'a [Value], id: &str) -> &'a Value {
    messages
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("message {id} is not in {messages:?}"))
}

db_test! {
    async fn an_edit_reaches_every_member_on_both_servers_and_only_its_author_may_make_it(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let dave = app.create_user("Dave").await;
        let group = create_group(&app, &ada, "Team", &[&bob]).await;
        let id = id_of(&group);
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let mut bob_messenger = connect_to(&app, "/messenger", &bob.token).await;
        let mut dave_socket = connect(&app, &dave.token).await;

        let sent = send_to(&mut ada_socket, &id, "helo").await;
        assert_ack_ok(&sent);
        let message = str_at(&sent, "/message/id").to_owned();

        let edited = expect_json(edit(&app, &ada, &message, "  hello  ").await, 200).await;
        assert_eq!(edited["message"]["content"], "hello");
        assert_timestamp(&edited["message"]["editedAt"]);
        assert_eq!(edited["message"]["createdAt"], sent["message"]["createdAt"]);
        for socket in [&mut ada_socket, &mut bob_socket, &mut bob_messenger] {
            let updated = socket.next_event("messageUpdated").await;
            assert_eq!(updated["message"], edited["message"]);
        }
        dave_socket.expect_no_event("messageUpdated").await;

        // Over the socket, the same.
        let ack = ada_socket
            .emit_with_ack("editMessage", json!({ "messageId": message, "content": "hello all" }))
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ack["message"]["content"], "hello all");
        let updated = bob_socket.next_event("messageUpdated").await;
        assert_eq!(updated["message"]["content"], "hello all");
        assert_eq!(find(&history(&app, &bob, &id).await, &message)["content"], "hello all");

        // Someone else's message, a system message, bad content: refused, nothing changes.
        expect_error(edit(&app, &bob, &message, "mine now").await, 403, "forbidden").await;
        let ack = bob_socket
            .emit_with_ack("editMessage", json!({ "messageId": message, "content": "mine" }))
            .await;
        assert_ack_error(&ack, "forbidden");
        let messages = history(&app, &ada, &id).await;
        let created = messages.iter().find(|m| m["kind"] == "system").expect("the created message");
        assert_eq!(created["from"], ada.id.to_string());
        expect_error(edit(&app, &ada, &id_of(created), "renamed").await, 403, "forbidden").await;
        expect_error(edit(&app, &ada, &message, " ").await, 400, "validation_failed").await;
        let long = "x".repeat(4001);
        expect_error(edit(&app, &ada, &message, &long).await, 400, "validation_failed").await;
        let no_content = app
            .patch_with_token(&format!("/api/messages/{message}"), &ada.token, &json!({}))
            .await;
        expect_error(no_content, 400, "validation_failed").await;
        for bad in [json!({ "messageId": message }), json!({ "content": "x" }), json!("x")] {
            let ack = ada_socket.emit_with_ack("editMessage", bad).await;
            assert_ack_error(&ack, "invalid_payload");
        }
        assert_eq!(find(&history(&app, &bob, &id).await, &message)["content"], "hello all");
        bob_socket.expect_no_event("messageUpdated").await;
        app.stop().await;
    }
}

db_test! {
    async fn a_message_can_be_edited_only_within_the_edit_window(db: Db) {
        let app = spawn_realtime_app(db, &[("MESSAGE_EDIT_WINDOW", "1s")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let message = id_of(&send_over_rest(&app, &ada, &bob, "soon fixed").await);
        expect_json(edit(&app, &ada, &message, "fixed").await, 200).await;
        // The window is measured from sending; a second and a bit later it has passed.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        expect_error(edit(&app, &ada, &message, "too late").await, 403, "edit_window_passed").await;
        let stored = app.state.store.find_message(message.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(stored.content, "fixed");
        app.stop().await;
    }
}

db_test! {
    async fn a_deleted_message_is_a_tombstone_for_everyone_and_its_content_is_gone_from_the_database(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let group = create_group(&app, &ada, "Team", &[&bob, &carol]).await;
        let id = id_of(&group);
        let mut bob_socket = connect(&app, &bob.token).await;
        let mut carol_socket = connect(&app, &carol.token).await;

        let secret = post_message(
            &app,
            &ada,
            &id,
            json!({ "content": "the secret is 42", "mentions": [bob.id] }),
        )
        .await;
        let secret_id = id_of(&secret);
        let reaction = put_with_token(&app, &reaction_path(&secret_id, "👍"), &carol.token).await;
        expect_json(reaction, 200).await;
        for socket in [&mut bob_socket, &mut carol_socket] {
            socket.next_event("reactionsChanged").await;
        }
        let reply = post_message(
            &app,
            &bob,
            &id,
            json!({ "content": "noted", "replyToId": secret_id }),
        )
        .await;
        let unread = |conversation: Value| conversation["conversation"]["unreadCount"].clone();
        let path = format!("/api/conversations/{id}");
        let before = unread(expect_json(app.get_with_token(&path, &carol.token).await, 200).await);

        let answer = delete(&app, &ada, &secret_id).await;
        assert_eq!(answer.status(), 204);
        for socket in [&mut bob_socket, &mut carol_socket] {
            let deleted = socket.next_event("messageDeleted").await;
            assert_eq!(deleted["messageId"], secret_id);
            assert_eq!(deleted["conversationId"], id);
            assert_timestamp(&deleted["deletedAt"]);
        }
        let messages = history(&app, &bob, &id).await;
        let tombstone = find(&messages, &secret_id);
        assert_eq!(tombstone["content"], "");
        assert_eq!(tombstone["mentions"], json!([]));
        assert_eq!(tombstone["reactions"], json!([]));
        assert_eq!(tombstone["attachments"], json!([]));
        assert_timestamp(&tombstone["deletedAt"]);
        // The reply keeps pointing at it.
        assert_eq!(find(&messages, &id_of(&reply))["replyToId"], secret_id);
        // The row itself holds nothing of it any more.
        let stored = app.state.store.find_message(secret_id.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!((stored.content.as_str(), stored.mentions.len(), stored.reactions.len()), ("", 0, 0));
        // A deleted message is not unread.
        let after = unread(expect_json(app.get_with_token(&path, &carol.token).await, 200).await);
        assert_eq!(after.as_i64(), before.as_i64().map(|n| n - 1));

        // Deleting it again changes nothing; it can be neither edited nor reacted to.
        assert_eq!(delete(&app, &ada, &secret_id).await.status(), 204);
        expect_error(edit(&app, &ada, &secret_id, "back").await, 403, "forbidden").await;
        let reaction = put_with_token(&app, &reaction_path(&secret_id, "🎉"), &bob.token).await;
        expect_error(reaction, 403, "forbidden").await;
        let ack = bob_socket
            .emit_with_ack("react", json!({ "messageId": secret_id, "emoji": "🎉", "add": true }))
            .await;
        assert_ack_error(&ack, "forbidden");
        // A new reply to it is refused.
        let path = format!("/api/conversations/{id}/messages");
        let body = json!({ "content": "what was it?", "replyToId": secret_id });
        let refused = app.post_json_with_token(&path, &carol.token, &body).await;
        expect_error(refused, 400, "invalid_reply").await;
        for socket in [&mut bob_socket, &mut carol_socket] {
            socket.expect_no_event("messageDeleted").await;
            socket.expect_no_event("reactionsChanged").await;
        }
        app.stop().await;
    }
}

db_test! {
    async fn authors_group_owners_and_admins_and_platform_admins_may_delete_and_nobody_else(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        // The first account is a platform admin.
        let admin = app.create_user("Admin").await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let erin = app.create_user("Erin").await;
        let dave = app.create_user("Dave").await;
        let group = create_group(&app, &ada, "Team", &[&bob, &carol, &erin]).await;
        let id = id_of(&group);
        let role = app
            .patch_with_token(
                &format!("/api/conversations/{id}/members/{}", bob.id),
                &ada.token,
                &json!({ "role": "admin" }),
            )
            .await;
        expect_json(role, 200).await;
        let mut erin_socket = connect(&app, &erin.token).await;
        let mut carol_socket = connect(&app, &carol.token).await;
        let mut dave_socket = connect(&app, &dave.token).await;
        let erin_says = id_of(&post_message(&app, &erin, &id, json!({ "content": "one" })).await);
        let carol_says = id_of(&post_message(&app, &carol, &id, json!({ "content": "two" })).await);
        let ada_says = id_of(&post_message(&app, &ada, &id, json!({ "content": "three" })).await);

        // A plain member may not delete another's message.
        expect_error(delete(&app, &carol, &erin_says).await, 403, "forbidden").await;
        let ack = carol_socket
            .emit_with_ack("deleteMessage", json!({ "messageId": erin_says }))
            .await;
        assert_ack_error(&ack, "forbidden");
        // An outsider does not learn that it exists.
        expect_error(delete(&app, &dave, &erin_says).await, 404, "message_not_found").await;
        let ack = dave_socket
            .emit_with_ack("deleteMessage", json!({ "messageId": erin_says }))
            .await;
        assert_ack_error(&ack, "message_not_found");
        // The group's admin may delete members' messages and the owner's, over either API.
        assert_eq!(delete(&app, &bob, &carol_says).await.status(), 204);
        let mut bob_socket = connect(&app, &bob.token).await;
        let ack = bob_socket
            .emit_with_ack("deleteMessage", json!({ "messageId": ada_says }))
            .await;
        assert_ack_ok(&ack);
        // A platform admin who is not a member may too (moderation); the members are told.
        assert_eq!(delete(&app, &admin, &erin_says).await.status(), 204);
        let deleted: Vec<Value> = [
            erin_socket.next_event_where("messageDeleted", |d| d["messageId"] == erin_says).await,
            carol_socket.next_event_where("messageDeleted", |d| d["messageId"] == erin_says).await,
        ]
        .into();
        assert!(deleted.iter().all(|d| d["conversationId"] == id));
        dave_socket.expect_no_event("messageDeleted").await;
        // But a platform admin does not edit or react as an outsider.
        expect_error(edit(&app, &admin, &ada_says, "x").await, 404, "message_not_found").await;

        // In a direct conversation only the author deletes.
        let dm = id_of(&send_over_rest(&app, &carol, &erin, "dm").await);
        expect_error(delete(&app, &erin, &dm).await, 403, "forbidden").await;
        assert_eq!(delete(&app, &carol, &dm).await.status(), 204);
        let deleted = erin_socket.next_event_where("messageDeleted", |d| d["messageId"] == dm).await;
        assert_timestamp(&deleted["deletedAt"]);
        app.stop().await;
    }
}

db_test! {
    async fn reactions_count_each_user_once_keep_their_order_and_reach_every_member(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let group = create_group(&app, &ada, "Team", &[&bob, &carol]).await;
        let id = id_of(&group);
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut carol_socket = connect(&app, &carol.token).await;
        let message = id_of(&post_message(&app, &ada, &id, json!({ "content": "ship it" })).await);

        let answer = put_with_token(&app, &reaction_path(&message, "👍"), &bob.token).await;
        let reactions = expect_json(answer, 200).await;
        assert_eq!(
            reactions["reactions"],
            json!([{ "emoji": "👍", "count": 1, "userIds": [bob.id] }])
        );
        let changed = ada_socket.next_event("reactionsChanged").await;
        assert_eq!(changed["messageId"], message);
        assert_eq!(changed["conversationId"], id);
        assert_eq!(changed["reactions"], reactions["reactions"]);

        let ack = carol_socket
            .emit_with_ack("react", json!({ "messageId": message, "emoji": "👍", "add": true }))
            .await;
        assert_ack_ok(&ack);
        let ack = carol_socket
            .emit_with_ack("react", json!({ "messageId": message, "emoji": ":tada:", "add": true }))
            .await;
        assert_eq!(
            ack["reactions"],
            json!([
                { "emoji": "👍", "count": 2, "userIds": [bob.id, carol.id] },
                { "emoji": ":tada:", "count": 1, "userIds": [carol.id] },
            ])
        );
        // Adding again, or taking back what is not there, changes nothing and tells nobody.
        ada_socket.take_events("reactionsChanged").await;
        let again = put_with_token(&app, &reaction_path(&message, "👍"), &bob.token).await;
        assert_eq!(expect_json(again, 200).await["reactions"], ack["reactions"]);
        let none = app
            .delete_with_token(&reaction_path(&message, "🔥"), &bob.token)
            .await;
        assert_eq!(expect_json(none, 200).await["reactions"], ack["reactions"]);
        ada_socket.expect_no_event("reactionsChanged").await;

        // Taken back: the count drops; the last user taking it back removes the emoji.
        let back = app.delete_with_token(&reaction_path(&message, "👍"), &bob.token).await;
        assert_eq!(expect_json(back, 200).await["reactions"][0]["userIds"], json!([carol.id]));
        let ack = carol_socket
            .emit_with_ack("react", json!({ "messageId": message, "emoji": "👍", "add": false }))
            .await;
        assert_eq!(ack["reactions"], json!([{ "emoji": ":tada:", "count": 1, "userIds": [carol.id] }]));
        let last = ada_socket
            .next_event_where("reactionsChanged", |c| c["reactions"].as_array().map(Vec::len) == Some(1))
            .await;
        assert_eq!(last["reactions"][0]["emoji"], ":tada:");
        // The message object carries them in history.
        let messages = history(&app, &bob, &id).await;
        assert_eq!(find(&messages, &message)["reactions"], ack["reactions"]);
        app.stop().await;
    }
}

db_test! {
    async fn the_same_reaction_from_two_devices_at_once_counts_once(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let group = create_group(&app, &ada, "Team", &[&bob, &carol]).await;
        let id = id_of(&group);
        let message = id_of(&post_message(&app, &ada, &id, json!({ "content": "race" })).await);
        // Bob's second device: a session of its own.
        let second = app.login(&bob.email, &bob.password).await;
        let second_token = str_at(&second, "/token").to_owned();
        let path = reaction_path(&message, "❤️");
        let mut adds = Vec::new();
        for i in 0..8 {
            let token = match i % 3 {
                0 => bob.token.clone(),
                1 => second_token.clone(),
                _ => carol.token.clone(),
            };
            let (app, path) = (&app, path.clone());
            adds.push(async move { put_with_token(app, &path, &token).await.status() });
        }
        let statuses = futures_util::future::join_all(adds).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        let stored = app.state.store.find_message(message.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(stored.reactions.len(), 1);
        let mut users = stored.reactions[0].user_ids.clone();
        users.sort();
        let mut want = vec![bob.id, carol.id];
        want.sort();
        assert_eq!((stored.reactions[0].count, users), (2, want));
        app.stop().await;
    }
}

db_test! {
    async fn a_message_takes_fifty_different_emoji_and_bad_emoji_are_refused(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let message = id_of(&send_over_rest(&app, &ada, &bob, "vote").await);
        let message_id: Uuid = message.parse().unwrap();
        // 49 stored directly (the API would spend the users' message budget), then two by the API.
        for n in 0..49 {
            let emoji = format!(":e{n}:");
            app.state.store.react(message_id, bob.id, &emoji, true, 50).await.unwrap();
        }
        let fiftieth = put_with_token(&app, &reaction_path(&message, "🦀"), &ada.token).await;
        assert_eq!(expect_json(fiftieth, 200).await["reactions"].as_array().map(Vec::len), Some(50));
        let more = put_with_token(&app, &reaction_path(&message, "🐙"), &ada.token).await;
        expect_error(more, 409, "too_many_reactions").await;
        // One more user on an emoji already there is fine.
        let same = put_with_token(&app, &reaction_path(&message, "🦀"), &bob.token).await;
        assert_eq!(expect_json(same, 200).await["reactions"][49]["count"], 2);

        let long = "x".repeat(40);
        for bad in [" ", " 👍", "👍👍", "👍 👍", long.as_str(), "\u{7}", "👍\u{0}", "a", "1", ":No:", "::"] {
            let answer = put_with_token(&app, &reaction_path(&message, bad), &ada.token).await;
            expect_error(answer, 400, "invalid_emoji").await;
        }
        // Not UTF-8 once decoded.
        let raw = format!("/api/messages/{message}/reactions/%FF%FE");
        expect_error(put_with_token(&app, &raw, &ada.token).await, 400, "invalid_emoji").await;
        // No emoji at all is no route.
        let empty = format!("/api/messages/{message}/reactions/");
        expect_error(put_with_token(&app, &empty, &ada.token).await, 404, "not_found").await;
        let mut socket = connect(&app, &ada.token).await;
        for (payload, code) in [
            (json!({ "messageId": message, "emoji": "", "add": true }), "invalid_emoji"),
            (json!({ "messageId": message, "emoji": "\u{200d}", "add": true }), "invalid_emoji"),
            (json!({ "messageId": message, "emoji": "👍" }), "invalid_payload"),
            (json!({ "messageId": message, "emoji": "👍", "add": "yes" }), "invalid_payload"),
            (json!({ "messageId": message, "emoji": 5, "add": true }), "invalid_payload"),
        ] {
            let ack = socket.emit_with_ack("react", payload).await;
            assert_ack_error(&ack, code);
        }
        let stored = app.state.store.find_message(message_id).await.unwrap().unwrap();
        assert_eq!(stored.reactions.len(), 50);
        app.stop().await;
    }
}

db_test! {
    async fn a_reply_names_a_message_of_its_own_conversation(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let first = send_message(&mut ada_socket, &bob, "lunch?").await;
        let first_id = str_at(&first, "/message/id").to_owned();
        let group = create_group(&app, &carol, "Elsewhere", &[&ada]).await;
        let elsewhere = id_of(&post_message(&app, &carol, &id_of(&group), json!({ "content": "hi" })).await);

        let path = format!("/api/messages/send/{}", ada.id);
        let body = json!({ "content": "yes", "replyToId": first_id });
        let reply = expect_json(app.post_json_with_token(&path, &bob.token, &body).await, 201).await;
        assert_eq!(reply["message"]["replyToId"], first_id);
        let pushed = ada_socket
            .next_event_where("newMessage", |m| m["message"]["content"] == "yes")
            .await;
        assert_eq!(pushed["message"]["replyToId"], first_id);

        let ack = ada_socket
            .emit_with_ack(
                "sendMessage",
                json!({ "to": bob.id, "content": "where?", "replyToId": reply["message"]["id"] }),
            )
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ack["message"]["replyToId"], reply["message"]["id"]);

        // Another conversation's message (even one Ada can read), an unknown id, not an id.
        for bad in [elsewhere.clone(), Uuid::now_v7().to_string(), "nope".to_owned()] {
            let body = json!({ "content": "x", "replyToId": bad });
            let refused = app.post_json_with_token(&path, &bob.token, &body).await;
            expect_error(refused, 400, "invalid_reply").await;
            let ack = ada_socket
                .emit_with_ack("sendMessage", json!({ "to": bob.id, "content": "x", "replyToId": bad }))
                .await;
            assert_ack_error(&ack, "invalid_reply");
        }
        bob_socket.barrier().await;
        let got = bob_socket.take_events("newMessage").await;
        assert_eq!(got.len(), 2, "only the two good sends arrived: {got:?}");
        app.stop().await;
    }
}

db_test! {
    async fn a_non_member_gets_404_from_every_route_and_event_as_for_no_message(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let dave = app.create_user("Dave").await;
        let message = id_of(&send_over_rest(&app, &ada, &bob, "private").await);
        let mut dave_socket = connect(&app, &dave.token).await;
        let mut answers = Vec::new();
        for id in [message.clone(), Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
            let mut bodies = Vec::new();
            bodies.push(expect_error(edit(&app, &dave, &id, "mine").await, 404, "message_not_found").await);
            bodies.push(expect_error(delete(&app, &dave, &id).await, 404, "message_not_found").await);
            let put = put_with_token(&app, &reaction_path(&id, "👍"), &dave.token).await;
            bodies.push(expect_error(put, 404, "message_not_found").await);
            let removed = app.delete_with_token(&reaction_path(&id, "👍"), &dave.token).await;
            bodies.push(expect_error(removed, 404, "message_not_found").await);
            for (event, payload) in [
                ("editMessage", json!({ "messageId": id, "content": "mine" })),
                ("deleteMessage", json!({ "messageId": id })),
                ("react", json!({ "messageId": id, "emoji": "👍", "add": true })),
            ] {
                let ack = dave_socket.emit_with_ack(event, payload).await;
                assert_ack_error(&ack, "message_not_found");
                bodies.push(ack["error"].clone());
            }
            answers.push(bodies);
        }
        // The answers about a real message are the answers about none.
        assert_eq!(answers[0], answers[1]);
        let stored = app.state.store.find_message(message.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!((stored.content.as_str(), stored.reactions.len()), ("private", 0));
        app.stop().await;
    }
}

db_test! {
    async fn sync_tells_an_offline_device_every_change_oldest_change_first_and_pages_them(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ids = Vec::new();
        for content in ["one", "two", "three"] {
            ids.push(id_of(&send_over_rest(&app, &ada, &bob, content).await));
        }
        // Bob's phone saw up to "three", then went offline.
        let since = ids[2].clone();
        expect_json(edit(&app, &ada, &ids[0], "one, edited").await, 200).await;
        let reacted = put_with_token(&app, &reaction_path(&ids[1], "👀"), &bob.token).await;
        expect_json(reacted, 200).await;
        assert_eq!(delete(&app, &ada, &ids[2]).await.status(), 204);
        // A change in the same millisecond as `since` is sent again (sync errs towards twice,
        // never towards lost), so "four" goes out in a later millisecond than the deletion.
        let deleted = app.state.store.find_message(ids[2].parse().unwrap()).await.unwrap().unwrap();
        let deleted_at = deleted.deleted_at.unwrap().as_millis();
        while craftcode::timestamp::Timestamp::now().as_millis() <= deleted_at {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let four = id_of(&send_over_rest(&app, &ada, &bob, "four").await);

        let sync = |since: String, after: Option<String>| {
            let app = &app;
            let token = bob.token.clone();
            async move {
                let mut path = format!("/api/sync?since={since}");
                if let Some(after) = after {
                    path.push_str(&format!("&changedAfter={after}"));
                }
                expect_json(app.get_with_token(&path, &token).await, 200).await
            }
        };
        let page = sync(since.clone(), None).await;
        let listed = |page: &Value, field: &str| -> Vec<String> {
            page[field].as_array().unwrap().iter().map(|m| str_at(m, "/id").to_owned()).collect()
        };
        assert_eq!(listed(&page, "messages"), [four.as_str()]);
        assert_eq!(listed(&page, "changed"), [ids[0].clone(), ids[1].clone(), ids[2].clone()]);
        assert_eq!(page["changed"][0]["content"], "one, edited");
        assert_eq!(page["changed"][1]["reactions"][0]["emoji"], "👀");
        assert_timestamp(&page["changed"][2]["deletedAt"]);
        assert_eq!(page["hasMoreChanged"], false);
        assert_eq!(page["changedCursor"], Value::Null);

        // A later change moves a message to the end; the socket answers the same.
        expect_json(edit(&app, &ada, &ids[1], "two, edited").await, 200).await;
        let mut socket = connect(&app, &bob.token).await;
        let ack = socket.emit_with_ack("sync", json!({ "since": since })).await;
        assert_ack_ok(&ack);
        assert_eq!(listed(&ack, "changed"), [ids[0].clone(), ids[2].clone(), ids[1].clone()]);
        // From a later `since`, only what changed after it was sent.
        let latest = sync(four.clone(), None).await;
        assert_eq!(listed(&latest, "changed"), [ids[1].clone()]);

        // Over 500 changes come in pages, each change once.
        let conversation: Uuid = str_at(&page, "/messages/0/conversationId").parse().unwrap();
        let mut older = Vec::new();
        for _ in 0..502 {
            let out = craftcode::store::OutgoingMessage {
                conversation_id: conversation,
                kind: craftcode::store::MessageKind::Text,
                from: ada.id,
                to: Some(bob.id),
                content: "bulk",
                client_id: None,
                reply_to_id: None,
                mentions: &[],
                system: None,
            };
            older.push(app.state.store.insert_message(&out).await.unwrap().unwrap().id);
        }
        let since = older[501].to_string();
        for id in &older {
            app.state.store.react(*id, bob.id, "👍", true, 50).await.unwrap();
        }
        let first = sync(since.clone(), None).await;
        assert_eq!(first["changed"].as_array().map(Vec::len), Some(500));
        assert_eq!(first["hasMoreChanged"], true);
        let cursor = str_at(&first, "/changedCursor").to_owned();
        let second = sync(since.clone(), Some(cursor.clone())).await;
        assert_eq!(second["hasMoreChanged"], false);
        let mut seen = listed(&first, "changed");
        seen.extend(listed(&second, "changed"));
        let mut want: Vec<String> = older.iter().map(Uuid::to_string).collect();
        want.sort();
        seen.sort();
        assert_eq!(seen, want);
        let ack = socket
            .emit_with_ack("sync", json!({ "since": since, "changedAfter": cursor }))
            .await;
        assert_eq!(listed(&ack, "changed"), listed(&second, "changed"));

        // A cursor that is not one.
        let bad = app.get_with_token(&format!("/api/sync?since={since}&changedAfter=x.y"), &bob.token).await;
        let body = expect_error(bad, 400, "validation_failed").await;
        assert!(body["fields"]["changedAfter"].is_string());
        let ack = socket.emit_with_ack("sync", json!({ "since": since, "changedAfter": "12" })).await;
        assert_ack_error(&ack, "validation_failed");
        app.stop().await;
    }
}
