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
            json!({ "users": [{ "userId": ada.id, "name": "Ada" }], "total": 1, "nextCursor": null })
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

/// Every user id any of `changes` names, online or offline.
fn named(changes: &[Value]) -> Vec<Value> {
    changes
        .iter()
        .flat_map(|c| {
            let online = c["online"].as_array().cloned().unwrap_or_default();
            let offline = c["offline"].as_array().cloned().unwrap_or_default();
            online
                .into_iter()
                .map(|u| u["userId"].clone())
                .chain(offline)
        })
        .collect()
}

/// The ids of a `{users: [{userId, name}]}` list.
fn user_ids(list: &Value) -> Vec<Value> {
    let mut ids: Vec<Value> = list
        .as_array()
        .expect("a list of users")
        .iter()
        .map(|u| u["userId"].clone())
        .collect();
    ids.sort_by_key(Value::to_string);
    ids
}

fn sorted(mut ids: Vec<Value>) -> Vec<Value> {
    ids.sort_by_key(Value::to_string);
    ids
}

db_test! {
    async fn sockets_watch_everyone_while_few_are_online_and_their_partners_after(db: Db) {
        // Two users online at most for scope `all`, the one authenticating included.
        let app = spawn_realtime_app(db, &[("PRESENCE_BROADCAST_MAX", "2")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let dan = app.create_user("Dan").await;
        send_over_rest(&app, &carol, &dan, "hello").await;

        let mut adas = connect(&app, &ada.token).await;
        let welcome = adas.next_event("getOnlineUsers").await;
        assert_eq!(welcome["scope"], "all", "{welcome}");
        let mut bobs = connect(&app, &bob.token).await;
        assert_eq!(bobs.next_event("getOnlineUsers").await["scope"], "all");

        // A third user makes three online: Carol watches her partner Dan only.
        let mut carols = connect(&app, &carol.token).await;
        let welcome = carols.next_event("getOnlineUsers").await;
        assert_eq!(welcome["scope"], "watched", "{welcome}");
        assert_eq!(welcome["users"], json!([]), "Dan is not online: {welcome}");
        assert_eq!(welcome["total"], 3, "{welcome}");

        let _dans = connect(&app, &dan.token).await;
        let change = carols
            .next_event_where("presenceChanged", |c| lists(c, "online", dan.id))
            .await;
        assert_eq!(change["online"], json!([{ "userId": dan.id, "name": "Dan" }]));
        // Ada and Bob came online before Dan; Carol watches neither.
        let changes = carols.take_events("presenceChanged").await;
        assert!(!named(&changes).contains(&json!(ada.id)), "{changes:?}");
        assert!(!named(&changes).contains(&json!(bob.id)), "{changes:?}");

        // Ada, in scope `all` for her whole life, hears of everyone but herself (Dan came last,
        // so every batch with the others has arrived with his).
        let with_dan = adas
            .next_event_where("presenceChanged", |c| lists(c, "online", dan.id))
            .await;
        let mut changes = adas.take_events("presenceChanged").await;
        changes.push(with_dan);
        let told = named(&changes);
        for user in [&bob, &carol, &dan] {
            assert!(told.contains(&json!(user.id)), "{changes:?}");
        }
        assert!(!told.contains(&json!(ada.id)), "{changes:?}");
    }

    async fn a_conversation_started_while_connected_makes_a_partner_at_once(db: Db) {
        let app = spawn_realtime_app(db, &[("PRESENCE_BROADCAST_MAX", "0")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let mut adas = connect(&app, &ada.token).await;
        assert_eq!(adas.next_event("getOnlineUsers").await["users"], json!([]));
        let mut bobs = connect(&app, &bob.token).await;
        let carols = connect(&app, &carol.token).await;

        // Bob writes to Ada for the first time: each is told the other is online.
        send_message(&mut bobs, &ada, "hi Ada").await;
        let change = adas
            .next_event_where("presenceChanged", |c| lists(c, "online", bob.id))
            .await;
        assert_eq!(change["online"], json!([{ "userId": bob.id, "name": "Bob" }]));
        bobs.next_event_where("presenceChanged", |c| lists(c, "online", ada.id))
            .await;

        // A group with Carol makes her Ada's partner too; her going offline reaches Ada.
        create_group(&app, &carol, "Three", &[&ada, &bob]).await;
        adas.next_event_where("presenceChanged", |c| lists(c, "online", carol.id))
            .await;
        carols.disconnect().await;
        adas.next_event_where("presenceChanged", |c| lists(c, "offline", carol.id))
            .await;
    }

    async fn watch_presence_replaces_the_list_and_answers_the_state_of_known_users(db: Db) {
        let app = spawn_realtime_app(
            db,
            &[("PRESENCE_BROADCAST_MAX", "0"), ("PRESENCE_WATCH_MAX", "3")],
        )
        .await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let dan = app.create_user("Dan").await;
        let mut adas = connect(&app, &ada.token).await;
        let _bobs = connect(&app, &bob.token).await;

        let unknown = uuid::Uuid::now_v7();
        let ack = adas
            .emit_with_ack(
                "watchPresence",
                json!({ "userIds": [bob.id, carol.id, unknown] }),
            )
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ack["online"], json!([{ "userId": bob.id, "name": "Bob" }]), "{ack}");
        assert_eq!(ack["offline"], json!([carol.id]), "unknown ids are left out: {ack}");

        let carols = connect(&app, &carol.token).await;
        adas.next_event_where("presenceChanged", |c| lists(c, "online", carol.id))
            .await;

        // The next call replaces the list: Carol is no longer watched, Dan is.
        let ack = adas
            .emit_with_ack("watchPresence", json!({ "userIds": [dan.id, ada.id] }))
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ack["online"], json!([]), "{ack}");
        assert_eq!(ack["offline"], json!([dan.id]), "never about herself: {ack}");
        carols.disconnect().await;
        wait_for_server_count(&app, carol.id, 0).await;
        let _dans = connect(&app, &dan.token).await;
        adas.next_event_where("presenceChanged", |c| lists(c, "online", dan.id))
            .await;
        let changes = adas.take_events("presenceChanged").await;
        assert!(!named(&changes).contains(&json!(carol.id)), "{changes:?}");

        // Over PRESENCE_WATCH_MAX, or not a list of ids: refused, the list unchanged.
        let four: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::now_v7()).collect();
        for payload in [
            json!({ "userIds": four }),
            json!({ "userIds": ["not-an-id"] }),
            json!({ "userIds": bob.id }),
            json!({}),
            json!("bob"),
        ] {
            let ack = adas.emit_with_ack("watchPresence", payload.clone()).await;
            assert_ack_error(&ack, "invalid_payload");
        }
        let ack = adas
            .emit_with_ack("watchPresence", json!({ "userIds": [] }))
            .await;
        assert_eq!(ack, json!({ "ok": true, "online": [], "offline": [] }));
    }

    async fn the_welcome_lists_the_watched_users_online_and_never_the_user(db: Db) {
        let app = spawn_realtime_app(db, &[("PRESENCE_BROADCAST_MAX", "0")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        send_over_rest(&app, &bob, &ada, "hello").await;
        let _bobs = connect(&app, &bob.token).await;
        let _carols = connect(&app, &carol.token).await;
        let _first = connect(&app, &ada.token).await;
        let mut second = connect(&app, &ada.token).await;
        let welcome = second.next_event("getOnlineUsers").await;
        assert_eq!(
            welcome,
            json!({ "users": [{ "userId": bob.id, "name": "Bob" }], "total": 3, "scope": "watched" })
        );
    }

    async fn pages_of_online_users_name_everyone_once_while_others_come_and_go(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let mut users = Vec::new();
        for n in 0..7 {
            users.push(app.create_user(&format!("User {n}")).await);
        }
        let mut sockets = Vec::new();
        for user in &users {
            sockets.push(connect(&app, &user.token).await);
        }
        let stayed: Vec<Value> = sorted(users.iter().map(|u| json!(u.id)).collect());
        let mut pager = sockets.remove(0);
        let comer = app.create_user("Comer").await;

        let mut seen = Vec::new();
        let mut cursor = Value::Null;
        let mut pages = 0;
        loop {
            let ack = pager
                .emit_with_ack("getOnlineUsers", json!({ "cursor": cursor, "limit": 2 }))
                .await;
            assert_ack_ok(&ack);
            let page = user_ids(&ack["users"]);
            assert!(page.len() <= 2, "{ack}");
            seen.extend(page);
            pages += 1;
            // Someone comes and goes between pages.
            let visitor = connect(&app, &comer.token).await;
            visitor.disconnect().await;
            if ack["nextCursor"].is_null() {
                break;
            }
            cursor = ack["nextCursor"].clone();
        }
        assert_eq!(pages, 4, "seven users, two a page");
        seen.retain(|id| *id != json!(comer.id));
        assert_eq!(seen, stayed, "every user once, in id order");

        for payload in [
            json!({ "limit": 0 }),
            json!({ "limit": 501 }),
            json!({ "limit": "2" }),
            json!({ "limit": 2.5 }),
            json!({ "cursor": "nope" }),
            json!({ "cursor": 7 }),
        ] {
            let ack = pager.emit_with_ack("getOnlineUsers", payload.clone()).await;
            assert_ack_error(&ack, "invalid_payload");
        }
        let ack = pager.emit_with_ack("getOnlineUsers", json!({})).await;
        assert_eq!(ack["total"], 7, "{ack}");
        assert_eq!(ack["nextCursor"], Value::Null, "{ack}");
    }

    async fn a_batch_too_large_for_one_frame_comes_in_frames_under_64_kib(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let mut adas = connect(&app, &ada.token).await;
        adas.next_event("getOnlineUsers").await;
        // Users coming online on this node at once, with long names, as sockets would count
        // them: about 160 bytes each in a batch.
        let presence = app.state.realtime.presence();
        let session = uuid::Uuid::now_v7();
        let arrived: Vec<uuid::Uuid> = (0..600).map(|_| uuid::Uuid::now_v7()).collect();
        for id in &arrived {
            presence.connect(*id, session, &"N".repeat(100));
        }
        let mut told = Vec::new();
        while told.len() < arrived.len() {
            let change = adas.next_event("presenceChanged").await;
            let bytes = change.to_string().len();
            assert!(bytes < 64 * 1024, "a frame of {bytes} bytes");
            told.extend(user_ids(&change["online"]));
        }
        assert!(adas.take_events("presenceChanged").await.is_empty());
        assert_eq!(sorted(told), sorted(arrived.iter().map(|id| json!(id)).collect()));
    }
}

db_test! {
    async fn a_partner_who_leaves_and_returns_while_a_watcher_arrives_is_shown_online(db: Db) {
        // The presence benchmark found it: a welcome says who is online now, and a batch says
        // what changed since the last one; a partner who flickers around the watcher's arrival
        // must still end up right.
        let app = spawn_realtime_app(
            db,
            &[("PRESENCE_BROADCAST_MAX", "0"), ("PRESENCE_INTERVAL", "1s")],
        )
        .await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        send_over_rest(&app, &bob, &ada, "partners").await;
        send_over_rest(&app, &carol, &ada, "partners too").await;
        let bobs = connect(&app, &bob.token).await;
        let presence = app.state.realtime.presence();
        wait_until("Bob's arrival is announced", || presence.told(bob.id).is_some()).await;

        // Within one interval: Bob leaves, Ada arrives, Bob is back.
        bobs.disconnect().await;
        wait_for_server_count(&app, bob.id, 0).await;
        let mut adas = connect(&app, &ada.token).await;
        let welcome = adas.next_event("getOnlineUsers").await;
        let _bob_again = connect(&app, &bob.token).await;

        // Carol comes after: once Ada hears of her, every batch about Bob has reached Ada.
        let _carols = connect(&app, &carol.token).await;
        let with_carol = adas
            .next_event_where("presenceChanged", |c| lists(c, "online", carol.id))
            .await;
        let mut changes = adas.take_events("presenceChanged").await;
        changes.push(with_carol);
        let mut online = lists(&json!({ "online": welcome["users"] }), "online", bob.id);
        for change in &changes {
            if lists(change, "online", bob.id) {
                online = true;
            }
            if lists(change, "offline", bob.id) {
                online = false;
            }
        }
        assert!(online, "Ada shows Bob offline while he is connected: {welcome} {changes:?}");
    }
}

db_test! {
    async fn a_watched_socket_is_in_its_groups_and_watches_their_members(db: Db) {
        let app = spawn_realtime_app(db, &[("PRESENCE_BROADCAST_MAX", "0")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let group = create_group(&app, &bob, "Three", &[&ada, &carol]).await;
        let mut bobs = connect(&app, &bob.token).await;
        let mut adas = connect(&app, &ada.token).await;
        // One read gave Ada's socket both its group and its partners.
        let welcome = adas.next_event("getOnlineUsers").await;
        assert_eq!(welcome["scope"], "watched", "{welcome}");
        assert_eq!(
            welcome["users"],
            json!([{ "userId": bob.id, "name": "Bob" }]),
            "{welcome}"
        );
        let sent = send_to(&mut bobs, &id_of(&group), "to the group").await;
        assert_ack_ok(&sent);
        let message = adas.next_event("newMessage").await;
        assert_eq!(message["message"]["content"], "to the group");
        let _carols = connect(&app, &carol.token).await;
        adas.next_event_where("presenceChanged", |c| lists(c, "online", carol.id))
            .await;
    }
}
