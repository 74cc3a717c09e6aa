//! Conversations (§10): groups made over REST and used over sockets, roles and membership
//! changes with their system messages, read pointers, and the 404 a non-member gets everywhere.

use uuid::Uuid;

use crate::support::*;

db_test! {
    async fn a_group_message_reaches_every_other_member_once_and_nobody_else(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let dave = app.create_user("Dave").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let mut dave_socket = connect(&app, &dave.token).await;

        let group = create_group(&app, &ada, "Team", &[&bob, &carol]).await;
        assert_eq!(group["kind"], "group");
        assert_eq!(group["title"], "Team");
        assert_eq!(group["memberCount"], 3);
        assert_eq!(group["members"].as_array().map(Vec::len), Some(3));
        assert_eq!(group["members"][0]["role"], "owner");
        let id = id_of(&group);
        // Bob, connected before the group existed, is told and gets its first (system) message.
        let updated = bob_socket.next_event("conversationUpdated").await;
        assert_eq!(updated["conversation"]["id"], id);
        assert_eq!(updated["change"]["type"], "created");
        // Up to 100 members, the conversation carries its members list.
        assert_eq!(updated["conversation"]["members"].as_array().map(Vec::len), Some(3));
        let created = bob_socket.next_event("newMessage").await;
        assert_eq!(created["message"]["kind"], "system");
        assert_eq!(created["message"]["system"]["type"], "created");
        assert_eq!(created["message"]["to"], Value::Null);

        // Carol connects afterwards: her socket is put in the group's room too.
        let mut carol_socket = connect(&app, &carol.token).await;
        carol_socket.barrier().await;

        let ack = send_to(&mut ada_socket, &id, "hello team").await;
        assert_ack_ok(&ack);
        assert_eq!(ack["delivered"], true);
        let message = &ack["message"];
        assert_eq!(message["conversationId"], id);
        assert_eq!(message["kind"], "text");
        assert_eq!(message["to"], Value::Null);
        assert_eq!(message["mentions"], json!([]));
        for socket in [&mut bob_socket, &mut carol_socket] {
            let got = socket.next_event_where("newMessage", |m| m["message"]["kind"] == "text").await;
            assert_eq!(got["message"]["id"], message["id"]);
            socket.barrier().await;
            assert!(socket.take_events("newMessage").await.iter().all(|m| m["message"]["kind"] != "text"));
        }
        let sent = ada_socket.next_event_where("messageSent", |m| m["message"]["kind"] == "text").await;
        assert_eq!(sent["message"]["id"], message["id"]);
        ada_socket.barrier().await;
        assert!(ada_socket.take_events("newMessage").await.iter().all(|m| m["message"]["kind"] != "text"));
        dave_socket.expect_no_event("newMessage").await;
        dave_socket.expect_no_event("conversationUpdated").await;

        // History and sync of a member hold both messages; the REST send answers as for DMs.
        let page = expect_json(
            app.get_with_token(&format!("/api/conversations/{id}/messages"), &carol.token).await,
            200,
        )
        .await;
        assert_eq!(page["messages"].as_array().map(Vec::len), Some(2));
        assert_eq!(page["messages"][0]["id"], message["id"]);
        let sync = expect_json(app.get_with_token("/api/sync", &carol.token).await, 200).await;
        assert!(sync["messages"].as_array().expect("messages").iter().any(|m| m["id"] == message["id"]));
        let body = json!({ "content": "over REST", "clientId": "r-1" });
        let path = format!("/api/conversations/{id}/messages");
        let first = expect_json(app.post_json_with_token(&path, &bob.token, &body).await, 201).await;
        let again = expect_json(app.post_json_with_token(&path, &bob.token, &body).await, 200).await;
        assert_eq!(first["message"]["id"], again["message"]["id"]);
    }
}

db_test! {
    async fn a_non_member_finds_no_conversation_anywhere(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let eve = app.create_user("Eve").await;
        let group = create_group(&app, &ada, "Private", &[&bob]).await;
        let id = id_of(&group);
        let message = str_at(&group, "/lastMessage/id").to_owned();
        let missing = Uuid::now_v7();

        for path in [
            format!("/api/conversations/{id}"),
            format!("/api/conversations/{id}/messages"),
            format!("/api/conversations/{id}/messages/{message}/reads"),
            format!("/api/conversations/{missing}"),
            "/api/conversations/not-an-id".to_owned(),
        ] {
            expect_error(app.get_with_token(&path, &eve.token).await, 404, "conversation_not_found").await;
        }
        let send = json!({ "content": "let me in" });
        for (path, body) in [
            (format!("/api/conversations/{id}/messages"), send.clone()),
            (format!("/api/conversations/{id}/members"), json!({ "userIds": [eve.id] })),
            (format!("/api/conversations/{id}/read"), json!({ "upTo": message })),
        ] {
            let answer = app.post_json_with_token(&path, &eve.token, &body).await;
            expect_error(answer, 404, "conversation_not_found").await;
        }
        let rename = app
            .patch_with_token(&format!("/api/conversations/{id}"), &eve.token, &json!({ "title": "Mine" }))
            .await;
        expect_error(rename, 404, "conversation_not_found").await;
        let leave = app
            .delete_with_token(&format!("/api/conversations/{id}/members/{}", bob.id), &eve.token)
            .await;
        expect_error(leave, 404, "conversation_not_found").await;

        let mut eve_socket = connect(&app, &eve.token).await;
        let ack = send_to(&mut eve_socket, &id, "hello?").await;
        assert_ack_error(&ack, "conversation_not_found");
        let ack = eve_socket
            .emit_with_ack("typing", json!({ "conversationId": id, "isTyping": true }))
            .await;
        assert_ack_error(&ack, "conversation_not_found");
        let ack = eve_socket
            .emit_with_ack("markRead", json!({ "conversationId": id, "upTo": message }))
            .await;
        assert_ack_error(&ack, "conversation_not_found");
        // Nor does it show in her list.
        let list = expect_json(app.get_with_token("/api/conversations", &eve.token).await, 200).await;
        assert_eq!(list["conversations"], json!([]));
    }
}

db_test! {
    async fn roles_decide_who_changes_a_group(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let dave = app.create_user("Dave").await;
        let group = create_group(&app, &ada, "Club", &[&bob, &carol]).await;
        let id = id_of(&group);
        let members = format!("/api/conversations/{id}/members");
        let member = |user: &TestUser| format!("/api/conversations/{id}/members/{}", user.id);

        // A plain member may neither add, rename, remove nor change roles.
        let add_dave = json!({ "userIds": [dave.id] });
        expect_error(app.post_json_with_token(&members, &bob.token, &add_dave).await, 403, "forbidden").await;
        let rename = json!({ "title": "Bob's" });
        let path = format!("/api/conversations/{id}");
        expect_error(app.patch_with_token(&path, &bob.token, &rename).await, 403, "forbidden").await;
        expect_error(app.delete_with_token(&member(&carol), &bob.token).await, 403, "forbidden").await;
        let promote = json!({ "role": "admin" });
        expect_error(app.patch_with_token(&member(&carol), &bob.token, &promote).await, 403, "forbidden").await;
        // But anyone may mute it for themselves.
        let muted = expect_json(app.patch_with_token(&path, &bob.token, &json!({ "muted": true })).await, 200).await;
        assert_eq!(muted["conversation"]["muted"], true);

        // The owner makes Bob an admin; an admin adds and renames, but cannot remove the owner.
        expect_json(app.patch_with_token(&member(&bob), &ada.token, &promote).await, 200).await;
        let added = expect_json(app.post_json_with_token(&members, &bob.token, &add_dave).await, 200).await;
        assert_eq!(added["conversation"]["memberCount"], 4);
        // Dave sees the history from before he joined.
        let his = expect_json(app.get_with_token(&format!("/api/conversations/{id}/messages"), &dave.token).await, 200).await;
        let first = his["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
        assert_eq!(first["system"]["type"], "created", "{his}");
        let renamed = expect_json(app.patch_with_token(&path, &bob.token, &rename).await, 200).await;
        assert_eq!(renamed["conversation"]["title"], "Bob's");
        expect_error(app.delete_with_token(&member(&ada), &bob.token).await, 403, "forbidden").await;

        // Every change is a system message, in order.
        let page = expect_json(app.get_with_token(&format!("{path}/messages"), &carol.token).await, 200).await;
        let types: Vec<&str> = page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .rev()
            .map(|m| m["system"]["type"].as_str().unwrap_or("text"))
            .collect();
        assert_eq!(types, ["created", "roleChanged", "membersAdded", "renamed"]);

        // The owner cannot leave before passing ownership on, nor pass it to a non-member.
        let eve = app.create_user("Eve").await;
        let to_eve = format!("/api/conversations/{id}/members/{}", eve.id);
        expect_error(app.patch_with_token(&to_eve, &ada.token, &json!({ "role": "owner" })).await, 404, "user_not_found").await;
        expect_error(app.delete_with_token(&member(&ada), &ada.token).await, 409, "owner_must_transfer").await;
        expect_json(app.patch_with_token(&member(&carol), &ada.token, &json!({ "role": "owner" })).await, 200).await;
        let shown = expect_json(app.get_with_token(&path, &ada.token).await, 200).await;
        let role_of = |user: &TestUser| {
            shown["conversation"]["members"]
                .as_array()
                .expect("members")
                .iter()
                .find(|m| m["userId"] == json!(user.id))
                .map(|m| m["role"].clone())
        };
        assert_eq!(role_of(&carol), Some(json!("owner")));
        assert_eq!(role_of(&ada), Some(json!("admin")));
        assert_eq!(app.delete_with_token(&member(&ada), &ada.token).await.status(), 204);
        expect_error(app.get_with_token(&path, &ada.token).await, 404, "conversation_not_found").await;
    }
}

db_test! {
    async fn a_removed_member_is_told_and_gets_nothing_more_of_the_group(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let group = create_group(&app, &ada, "Room", &[&bob, &carol]).await;
        let id = id_of(&group);
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let mut carol_socket = connect(&app, &carol.token).await;
        carol_socket.barrier().await;

        let path = format!("/api/conversations/{id}/members/{}", carol.id);
        assert_eq!(app.delete_with_token(&path, &ada.token).await.status(), 204);
        let removed = carol_socket.next_event("conversationRemoved").await;
        assert_eq!(removed, json!({ "conversationId": id, "reason": "removed" }));
        let notice = bob_socket.next_event("newMessage").await;
        assert_eq!(notice["message"]["system"]["type"], "memberRemoved");
        assert_eq!(notice["message"]["system"]["userIds"], json!([carol.id]));

        assert_ack_ok(&send_to(&mut ada_socket, &id, "after carol").await);
        bob_socket.next_event_where("newMessage", |m| m["message"]["content"] == "after carol").await;
        carol_socket.expect_no_event("newMessage").await;
        let ack = send_to(&mut carol_socket, &id, "still here?").await;
        assert_ack_error(&ack, "conversation_not_found");
        let history = app.get_with_token(&format!("/api/conversations/{id}/messages"), &carol.token).await;
        expect_error(history, 404, "conversation_not_found").await;

        // Bob leaves, then Ada, the last: the group is gone.
        let leave = |user: &TestUser| format!("/api/conversations/{id}/members/{}", user.id);
        assert_eq!(app.delete_with_token(&leave(&bob), &bob.token).await.status(), 204);
        assert_eq!(bob_socket.next_event("conversationRemoved").await["reason"], "left");
        assert_eq!(app.delete_with_token(&leave(&ada), &ada.token).await.status(), 204);
        assert_eq!(ada_socket.next_event("conversationRemoved").await["reason"], "deleted");
        let list = expect_json(app.get_with_token("/api/conversations", &ada.token).await, 200).await;
        assert_eq!(list["conversations"], json!([]));
    }
}

db_test! {
    async fn members_added_at_once_never_pass_the_limit(db: Db) {
        let app = spawn_realtime_app(db, &[("GROUP_MAX_MEMBERS", "4")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut others = Vec::new();
        for n in 0..6 {
            others.push(app.create_user(&format!("User {n}")).await);
        }
        let group = create_group(&app, &ada, "Small", &[&bob]).await;
        let id = id_of(&group);
        let promote = json!({ "role": "admin" });
        let bob_path = format!("/api/conversations/{id}/members/{}", bob.id);
        expect_json(app.patch_with_token(&bob_path, &ada.token, &promote).await, 200).await;

        // Two admins each add two different users at the same moment: only one can fit.
        let members = format!("/api/conversations/{id}/members");
        let by_ada = json!({ "userIds": [others[0].id, others[1].id] });
        let by_bob = json!({ "userIds": [others[2].id, others[3].id] });
        let (first, second) = tokio::join!(
            app.post_json_with_token(&members, &ada.token, &by_ada),
            app.post_json_with_token(&members, &bob.token, &by_bob),
        );
        let mut statuses = [first.status().as_u16(), second.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409]);
        let shown = expect_json(app.get_with_token(&format!("/api/conversations/{id}"), &ada.token).await, 200).await;
        assert_eq!(shown["conversation"]["memberCount"], 4);

        // A group cannot be created above the limit either, nor with bad member lists.
        let too_many: Vec<Uuid> = others.iter().take(4).map(|u| u.id).collect();
        let body = json!({ "title": "Big", "memberIds": too_many });
        expect_error(app.post_json_with_token("/api/conversations", &ada.token, &body).await, 409, "group_full").await;
        let cases = [
            (json!({ "title": "", "memberIds": [bob.id] }), 400, "validation_failed"),
            (json!({ "title": "x".repeat(101), "memberIds": [bob.id] }), 400, "validation_failed"),
            (json!({ "title": "Ok", "memberIds": [] }), 400, "validation_failed"),
            (json!({ "title": "Ok" }), 400, "validation_failed"),
            (json!({ "title": "Ok", "memberIds": [Uuid::now_v7()] }), 404, "user_not_found"),
            (json!({ "title": "Ok", "memberIds": ["nope"] }), 404, "user_not_found"),
            (json!({ "title": "Ok", "memberIds": "everyone" }), 400, "invalid_json"),
        ];
        for (body, status, code) in cases {
            let answer = app.post_json_with_token("/api/conversations", &ada.token, &body).await;
            expect_error(answer, status, code).await;
        }
        // Repeats are one member; a deactivated user cannot be added.
        let twice = json!({ "title": "Pair", "memberIds": [bob.id, bob.id, ada.id] });
        let pair = expect_json(app.post_json_with_token("/api/conversations", &ada.token, &twice).await, 201).await;
        assert_eq!(pair["conversation"]["memberCount"], 2);
        let off = &others[5];
        expect_json(app.patch_user(&ada.token, off.id, &json!({ "isActive": false })).await, 200).await;
        let body = json!({ "title": "Ok", "memberIds": [bob.id, off.id] });
        expect_error(app.post_json_with_token("/api/conversations", &ada.token, &body).await, 403, "recipient_disabled").await;
    }
}

db_test! {
    async fn read_pointers_move_forward_and_count_unread_and_mentions(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let group = create_group(&app, &ada, "Reads", &[&bob, &carol]).await;
        let id = id_of(&group);
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;

        let first = send_to(&mut ada_socket, &id, "one").await;
        let mention = ada_socket
            .emit_with_ack(
                "sendMessage",
                json!({ "conversationId": id, "content": "@bob two", "mentions": [bob.id] }),
            )
            .await;
        assert_ack_ok(&mention);
        assert_eq!(mention["message"]["mentions"], json!([bob.id]));
        // A non-member cannot be mentioned.
        let outsider = app.create_user("Outsider").await;
        let bad = ada_socket
            .emit_with_ack(
                "sendMessage",
                json!({ "conversationId": id, "content": "hi", "mentions": [outsider.id] }),
            )
            .await;
        assert_ack_error(&bad, "invalid_mention");

        let list = expect_json(app.get_with_token("/api/conversations", &bob.token).await, 200).await;
        let mine = &list["conversations"][0];
        assert_eq!(mine["id"], id);
        // The `created` notice and two messages from Ada; one mentions Bob.
        assert_eq!(mine["unreadCount"], 3);
        assert_eq!(mine["mentionCount"], 1);
        assert_eq!(mine["lastMessage"]["id"], mention["message"]["id"]);

        let up_to = str_at(&first, "/message/id").to_owned();
        let read = app
            .post_json_with_token(&format!("/api/conversations/{id}/read"), &bob.token, &json!({ "upTo": up_to }))
            .await;
        let read = expect_json(read, 200).await;
        assert_eq!(read, json!({ "ok": true, "unreadCount": 1, "mentionCount": 1 }));
        let told = ada_socket.next_event("messagesRead").await;
        assert_eq!(told["conversationId"], id);
        assert_eq!(told["by"], json!(bob.id));
        assert_eq!(told["upTo"], up_to);
        bob_socket.next_event("messagesRead").await;

        let last = str_at(&mention, "/message/id").to_owned();
        let ack = bob_socket.emit_with_ack("markRead", json!({ "conversationId": id, "upTo": last })).await;
        assert_ack_ok(&ack);
        // Moving back is ignored, not an error.
        let back = app
            .post_json_with_token(&format!("/api/conversations/{id}/read"), &bob.token, &json!({ "upTo": up_to }))
            .await;
        assert_eq!(expect_json(back, 200).await["unreadCount"], 0);
        let reads = app
            .get_with_token(&format!("/api/conversations/{id}/messages/{last}/reads"), &ada.token)
            .await;
        let reads = expect_json(reads, 200).await;
        let readers: Vec<Value> = reads["readBy"].as_array().expect("readBy").iter().map(|r| r["userId"].clone()).collect();
        assert_eq!(readers, [json!(bob.id)]);
        // A message of another conversation is no read pointer.
        let other = create_group(&app, &ada, "Other", &[&bob]).await;
        let foreign = str_at(&other, "/lastMessage/id").to_owned();
        let wrong = app
            .post_json_with_token(&format!("/api/conversations/{id}/read"), &bob.token, &json!({ "upTo": foreign }))
            .await;
        expect_error(wrong, 400, "validation_failed").await;
    }
}

db_test! {
    async fn a_direct_conversation_answers_by_id_as_by_user(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;

        let first = send_message(&mut ada_socket, &bob, "hi bob").await;
        let direct = str_at(&first, "/message/conversationId").to_owned();
        bob_socket.next_event("newMessage").await;
        let list = expect_json(app.get_with_token("/api/conversations", &ada.token).await, 200).await;
        let entry = &list["conversations"][0];
        assert_eq!(entry["id"], direct);
        assert_eq!(entry["kind"], "direct");
        assert_eq!(entry["user"]["id"], json!(bob.id));
        assert_eq!(entry["memberCount"], 2);

        // The same conversation by id: Bob gets it as a direct message, with `to` set.
        let ack = send_to(&mut ada_socket, &direct, "by id").await;
        assert_ack_ok(&ack);
        assert_eq!(ack["message"]["to"], json!(bob.id));
        assert_eq!(ack["message"]["conversationId"], direct);
        let got = bob_socket.next_event("newMessage").await;
        assert_eq!(got["message"]["id"], ack["message"]["id"]);

        // `to` and `conversationId` must agree.
        let both = json!({ "to": carol.id, "conversationId": direct, "content": "which?" });
        assert_ack_error(&ada_socket.emit_with_ack("sendMessage", both).await, "invalid_payload");
        let agreeing = json!({ "to": bob.id, "conversationId": direct, "content": "same" });
        assert_ack_ok(&ada_socket.emit_with_ack("sendMessage", agreeing).await);
        // The user-id routes keep answering as before.
        let history = expect_json(app.get_with_token(&format!("/api/messages/{}", bob.id), &ada.token).await, 200).await;
        assert_eq!(history["messages"].as_array().map(Vec::len), Some(3));
        // Typing by conversation id names it.
        let typing = json!({ "conversationId": direct, "isTyping": true });
        assert_ack_ok(&ada_socket.emit_with_ack("typing", typing).await);
        let typing = bob_socket.next_event("userTyping").await;
        assert_eq!(typing, json!({ "userId": ada.id, "isTyping": true, "conversationId": direct }));
        // A direct conversation has no members to change.
        let path = format!("/api/conversations/{direct}/members");
        let add = json!({ "userIds": [carol.id] });
        expect_error(app.post_json_with_token(&path, &ada.token, &add).await, 403, "forbidden").await;
    }
}

db_test! {
    async fn typing_in_a_group_reaches_the_other_members(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let group = create_group(&app, &ada, "Typing", &[&bob]).await;
        let id = id_of(&group);
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let mut carol_socket = connect(&app, &carol.token).await;
        bob_socket.barrier().await;

        let typing = json!({ "conversationId": id, "isTyping": true });
        assert_ack_ok(&ada_socket.emit_with_ack("typing", typing).await);
        let got = bob_socket.next_event("userTyping").await;
        assert_eq!(got, json!({ "userId": ada.id, "isTyping": true, "conversationId": id }));
        ada_socket.expect_no_event("userTyping").await;
        carol_socket.expect_no_event("userTyping").await;
    }
}

/// A database as the release before conversations left it (see `tests/fixtures/README.md`): the
/// fixture file itself on SQLite; on PostgreSQL, a database migrated to the same version holding
/// the fixture's rows.
async fn release_database(db: Db) -> TestDatabase {
    use sqlx::Connection;
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/release-5023f1d.db");
    let database = TestDatabase::create(db).await;
    if let Some(file) = &database.sqlite_file {
        std::fs::copy(&fixture, file).expect("the fixture is copied");
        return database;
    }
    let pg = sqlx::PgPool::connect(&database.url)
        .await
        .expect("the test database opens");
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    sqlx::migrate::Migrator::new(migrations)
        .await
        .expect("the migrations load")
        .run_to(5, &pg)
        .await
        .expect("the release's migrations run");
    // A copy: opening the fixture itself would leave SQLite's shared-memory file beside it.
    let copy = tempfile::tempdir().expect("a temporary folder");
    let file = copy.path().join("release.db");
    std::fs::copy(&fixture, &file).expect("the fixture is copied");
    let mut old = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("the fixture opens");
    type UserRow = (
        Uuid,
        String,
        String,
        Option<String>,
        Option<String>,
        bool,
        bool,
        i64,
        i64,
        String,
    );
    let users: Vec<UserRow> = sqlx::query_as(
        "SELECT id, email, name, avatar_url, password_hash, is_admin, is_active, created_at, updated_at, search_name FROM users",
    )
    .fetch_all(&mut old)
    .await
    .expect("the fixture's users");
    for u in users {
        sqlx::query(
            "INSERT INTO users (id, email, name, avatar_url, password_hash, is_admin, is_active, created_at, updated_at, search_name)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(u.0).bind(u.1).bind(u.2).bind(u.3).bind(u.4).bind(u.5).bind(u.6).bind(u.7).bind(u.8).bind(u.9)
        .execute(&pg)
        .await
        .expect("a user copied");
    }
    type MessageRow = (
        Uuid,
        Uuid,
        Uuid,
        String,
        Option<String>,
        i64,
        Option<i64>,
        Option<i64>,
    );
    let messages: Vec<MessageRow> = sqlx::query_as(
        "SELECT id, sender_id, recipient_id, content, client_id, created_at, delivered_at, read_at FROM messages",
    )
    .fetch_all(&mut old)
    .await
    .expect("the fixture's messages");
    for m in messages {
        sqlx::query(
            "INSERT INTO messages (id, sender_id, recipient_id, content, client_id, created_at, delivered_at, read_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(m.0).bind(m.1).bind(m.2).bind(m.3).bind(m.4).bind(m.5).bind(m.6).bind(m.7)
        .execute(&pg)
        .await
        .expect("a message copied");
    }
    pg.close().await;
    database
}

async fn log_in(app: &TestApp, name: &str) -> Value {
    app.login(&format!("{name}@example.com"), &format!("password-{name}"))
        .await
}

db_test! {
    async fn a_database_of_the_last_release_upgrades_with_every_message_in_its_conversation(db: Db) {
        let database = release_database(db).await;
        let app = spawn_app_with(db, &[("DATABASE_URL", &database.url)]).await;
        let ada = log_in(&app, "ada").await;
        let bob = log_in(&app, "bob").await;
        let (ada_token, bob_token) = (str_at(&ada, "/token"), str_at(&bob, "/token"));
        let bob_id = str_at(&bob, "/user/id");

        let list = expect_json(app.get_with_token("/api/conversations", ada_token).await, 200).await;
        let conversations = list["conversations"].as_array().expect("conversations");
        let lasts: Vec<&str> = conversations.iter().map(|c| str_at(c, "/lastMessage/content")).collect();
        assert_eq!(lasts, ["note to self", "hi carol", "bye"], "{list:#}");
        assert!(conversations.iter().all(|c| c["kind"] == "direct" && c["memberCount"].as_i64() <= Some(2)));
        let with_bob = &conversations[2];
        assert_eq!(with_bob["user"]["name"], "Bob");
        assert_eq!(with_bob["memberCount"], 2);
        let id = str_at(with_bob, "/id").to_owned();

        // Every message of the pair, as they were, now in that conversation.
        let history = expect_json(app.get_with_token(&format!("/api/messages/{bob_id}"), ada_token).await, 200).await;
        let client_ids: Vec<&str> = history["messages"].as_array().expect("messages").iter().rev().map(|m| str_at(m, "/clientId")).collect();
        assert_eq!(client_ids, ["a1", "a2", "b1", "a3", "b2"]);
        assert!(history["messages"].as_array().expect("messages").iter().all(|m| m["conversationId"] == id && m["kind"] == "text"));
        let by_id = expect_json(app.get_with_token(&format!("/api/conversations/{id}/messages"), bob_token).await, 200).await;
        assert_eq!(by_id["messages"], history["messages"]);
        let sync = expect_json(app.get_with_token("/api/sync", ada_token).await, 200).await;
        assert_eq!(sync["messages"].as_array().map(Vec::len), Some(7), "{sync:#}");

        // Bob had read Ada's first message: two of hers are unread, and his pointer is there.
        let bobs = expect_json(app.get_with_token("/api/conversations", bob_token).await, 200).await;
        assert_eq!(bobs["conversations"][0]["id"], id);
        assert_eq!(bobs["conversations"][0]["unreadCount"], 2);
        let shown = expect_json(app.get_with_token(&format!("/api/conversations/{id}"), bob_token).await, 200).await;
        let first = history["messages"].as_array().expect("messages").last().expect("a message")["id"].clone();
        let bob_member = shown["conversation"]["members"].as_array().expect("members").iter().find(|m| m["userId"] == bob_id).cloned().expect("Bob is a member");
        assert_eq!(bob_member["lastReadMessageId"], first);

        // A new message goes to the same conversation, and a retried clientId is still one message.
        let path = format!("/api/messages/send/{bob_id}");
        let sent = expect_json(app.post_json_with_token(&path, ada_token, &json!({ "content": "after the upgrade" })).await, 201).await;
        assert_eq!(sent["message"]["conversationId"], id);
        let again = app.post_json_with_token(&path, ada_token, &json!({ "content": "hello bob", "clientId": "a1" })).await;
        assert_eq!(expect_json(again, 200).await["message"]["id"], first);
        drop(database);
    }
}

db_test! {
    async fn hostile_conversation_payloads_get_clear_errors_and_change_nothing(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let group = create_group(&app, &ada, "Hostile", &[&bob]).await;
        let id = id_of(&group);
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;

        let cases = [
            (json!({ "conversationId": 42, "content": "x" }), "invalid_payload"),
            (json!({ "conversationId": [id], "content": "x" }), "invalid_payload"),
            (json!({ "conversationId": "not-an-id", "content": "x" }), "conversation_not_found"),
            (json!({ "content": "x" }), "invalid_payload"),
            (json!({ "conversationId": id, "content": "x", "mentions": "everyone" }), "invalid_payload"),
            (json!({ "conversationId": id, "content": "x", "mentions": ["nobody"] }), "invalid_mention"),
            (json!({ "conversationId": id, "content": "   " }), "validation_failed"),
            (json!({ "conversationId": id, "content": "x".repeat(4001) }), "validation_failed"),
        ];
        for (payload, code) in cases {
            let ack = ada_socket.emit_with_ack("sendMessage", payload.clone()).await;
            assert_ack_error(&ack, code);
        }
        bob_socket.barrier().await;
        assert!(
            bob_socket.take_events("newMessage").await.iter().all(|m| m["message"]["kind"] == "system"),
            "a refused send reached a member"
        );
        let typing = json!({ "conversationId": id });
        assert_ack_error(&ada_socket.emit_with_ack("typing", typing).await, "invalid_payload");
        let read = json!({ "conversationId": id, "upTo": "yesterday" });
        assert_ack_error(&ada_socket.emit_with_ack("markRead", read).await, "invalid_payload");

        // Removed while typing: the next typing and send are refused, and Ada hears nothing.
        let start = json!({ "conversationId": id, "isTyping": true });
        assert_ack_ok(&bob_socket.emit_with_ack("typing", start.clone()).await);
        ada_socket.next_event("userTyping").await;
        let path = format!("/api/conversations/{id}/members/{}", bob.id);
        assert_eq!(app.delete_with_token(&path, &ada.token).await.status(), 204);
        bob_socket.next_event("conversationRemoved").await;
        assert_ack_error(&bob_socket.emit_with_ack("typing", start).await, "conversation_not_found");
        assert_ack_error(&send_to(&mut bob_socket, &id, "still?").await, "conversation_not_found");
        ada_socket.barrier().await;
        assert!(ada_socket
            .take_events("newMessage")
            .await
            .iter()
            .all(|m| m["message"]["content"] != "still?"));
    }
}
