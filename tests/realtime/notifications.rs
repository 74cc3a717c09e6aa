//! Notifications (§4 "Notifications", §5 `notification`, `notificationsRead`, `sync`): an admin
//! sends to one user or to everyone; they are stored, pushed to the sockets of those online,
//! listed with an unread count and paged; their read state follows the user to their other
//! devices; `sync` answers those created since a message; bad requests are refused with the
//! field at fault.

use std::collections::BTreeSet;

use craftcode::store::NewUser;
use uuid::Uuid;

use crate::namespaces::connect_to;
use crate::support::*;

/// `POST /api/notifications` as `admin`; must be a 201, whose body is answered.
pub async fn notify(app: &TestApp, admin: &TestUser, body: Value) -> Value {
    let response = app
        .post_json_with_token("/api/notifications", &admin.token, &body)
        .await;
    expect_json(response, 201).await
}

/// `GET /api/notifications<query>` as `user`; must be a 200.
async fn list(app: &TestApp, user: &TestUser, query: &str) -> Value {
    let path = format!("/api/notifications{query}");
    expect_json(app.get_with_token(&path, &user.token).await, 200).await
}

/// The titles of a list answer, in its order.
fn titles(list: &Value) -> Vec<&str> {
    list["notifications"]
        .as_array()
        .unwrap_or_else(|| panic!("no notifications in {list}"))
        .iter()
        .map(|n| str_at(n, "/title"))
        .collect()
}

/// `POST /api/notifications/{id}/read` as `token`.
async fn read_one(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    let path = format!("/api/notifications/{id}/read");
    app.post_json_with_token(&path, token, &json!({})).await
}

/// Sends a message over REST; answers the stored message.
fn keys(object: &Value) -> BTreeSet<&str> {
    object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect()
}

db_test!(a_notification_to_one_user_is_stored_pushed_and_listed_as_unread);
async fn a_notification_to_one_user_is_stored_pushed_and_listed_as_unread(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let mut bob_socket = connect(&app, &bob.token).await;
    let mut carol_socket = connect(&app, &carol.token).await;

    let data = json!({ "invoiceId": 42, "lines": [1, 2], "paid": false });
    let sent = notify(
        &app,
        &admin,
        json!({
            "userId": bob.id,
            "title": "Invoice ready",
            "body": "Your invoice for November is ready.",
            "kind": "billing.invoice_ready-2",
            "data": data,
        }),
    )
    .await;
    assert_eq!(sent, json!({ "count": 1 }));

    let pushed = bob_socket.next_event("notification").await;
    let notification = &pushed["notification"];
    assert_eq!(
        keys(notification),
        BTreeSet::from([
            "id",
            "userId",
            "kind",
            "title",
            "body",
            "data",
            "createdAt",
            "readAt"
        ]),
        "{notification}"
    );
    let id: Uuid = str_at(notification, "/id").parse().expect("a UUID");
    assert_eq!(id.get_version_num(), 7, "ids are UUIDv7");
    assert_eq!(notification["userId"], bob.id.to_string());
    assert_eq!(notification["kind"], "billing.invoice_ready-2");
    assert_eq!(notification["title"], "Invoice ready");
    assert_eq!(notification["body"], "Your invoice for November is ready.");
    assert_eq!(notification["data"], data);
    assert_timestamp(&notification["createdAt"]);
    assert_eq!(notification["readAt"], Value::Null);
    carol_socket.expect_no_event("notification").await;

    let listed = list(&app, &bob, "").await;
    assert_eq!(
        listed,
        json!({ "notifications": [notification], "unreadCount": 1 })
    );
    let others = list(&app, &carol, "").await;
    assert_eq!(others, json!({ "notifications": [], "unreadCount": 0 }));

    // Without kind and data: the default kind, and no data.
    notify(
        &app,
        &admin,
        json!({ "userId": bob.id, "title": "Plain", "body": "Nothing more" }),
    )
    .await;
    let plain = bob_socket.next_event("notification").await;
    assert_eq!(plain["notification"]["kind"], "general");
    assert_eq!(plain["notification"]["data"], Value::Null);
    let listed = list(&app, &bob, "").await;
    assert_eq!(titles(&listed), ["Plain", "Invoice ready"], "newest first");
    assert_eq!(listed["unreadCount"], 2);
}

db_test!(a_notification_to_everyone_is_stored_for_each_active_user_and_pushed_once_to_those_online);
async fn a_notification_to_everyone_is_stored_for_each_active_user_and_pushed_once_to_those_online(
    db: Db,
) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let store = &app.state.store;
    let mut direct = Vec::new();
    for n in 0..30 {
        let email = format!("direct-{n}@example.com");
        let name = format!("Direct {n}");
        let user = NewUser {
            email: &email,
            name: &name,
            password_hash: None,
            is_admin: false,
            is_active: true,
        };
        let user = store.insert_user(&user).await.expect("stored");
        direct.push(user.expect("a new email").id);
    }
    let dormant = NewUser {
        email: "dormant@example.com",
        name: "Dormant",
        password_hash: None,
        is_admin: false,
        is_active: false,
    };
    let dormant = store
        .insert_user(&dormant)
        .await
        .expect("stored")
        .expect("a new email");
    let mut carol_socket = connect(&app, &carol.token).await;
    let response = app
        .patch_user(&admin.token, carol.id, &json!({ "isActive": false }))
        .await;
    expect_json(response, 200).await;
    carol_socket.next_event("force_logout").await;
    carol_socket.wait_disconnect().await;

    let mut online = vec![
        ("admin", connect(&app, &admin.token).await),
        ("ada", connect(&app, &ada.token).await),
        (
            "ada /notifications",
            connect_to(&app, "/notifications", &ada.token).await,
        ),
        ("bob tab 1", connect(&app, &bob.token).await),
        ("bob tab 2", connect(&app, &bob.token).await),
    ];

    let sent = notify(
        &app,
        &admin,
        json!({ "all": true, "title": "Maintenance", "body": "Tonight at 22:00" }),
    )
    .await;
    // The admin, Ada, Bob and the 30; not Carol nor Dormant.
    assert_eq!(sent, json!({ "count": 33 }));

    for (name, socket) in &mut online {
        let pushed = socket.take_events("notification").await;
        assert_eq!(pushed.len(), 1, "{name} got {pushed:?}");
        assert_eq!(pushed[0]["notification"]["title"], "Maintenance");
    }
    let bob_list = list(&app, &bob, "").await;
    assert_eq!(titles(&bob_list), ["Maintenance"]);
    assert_eq!(bob_list["unreadCount"], 1);
    for id in direct {
        let stored = store
            .list_notifications(id, false, None, 10)
            .await
            .expect("listed");
        assert_eq!(stored.len(), 1, "a user created directly has {stored:?}");
        assert_eq!(stored[0].user_id, id);
    }
    for (name, id) in [("Carol", carol.id), ("Dormant", dormant.id)] {
        let stored = store
            .list_notifications(id, false, None, 10)
            .await
            .expect("listed");
        assert!(stored.is_empty(), "deactivated {name} got {stored:?}");
    }
}

db_test!(the_list_pages_with_unread_limit_and_before);
async fn the_list_pages_with_unread_limit_and_before(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    for n in 0..5 {
        let body = json!({ "userId": bob.id, "title": format!("n{n}"), "body": "b" });
        notify(&app, &admin, body).await;
    }
    let all = list(&app, &bob, "").await;
    assert_eq!(titles(&all), ["n4", "n3", "n2", "n1", "n0"]);
    assert_eq!(all["unreadCount"], 5);
    let id = |title: &str| {
        all["notifications"]
            .as_array()
            .expect("a list")
            .iter()
            .find(|n| n["title"] == title)
            .map(|n| str_at(n, "/id").to_owned())
            .expect("listed")
    };
    for title in ["n1", "n3"] {
        let response = read_one(&app, &bob.token, &id(title)).await;
        assert_eq!(expect_json(response, 200).await, json!({ "ok": true }));
    }

    let unread = list(&app, &bob, "?unread=true").await;
    assert_eq!(titles(&unread), ["n4", "n2", "n0"]);
    assert_eq!(unread["unreadCount"], 3);
    let all = list(&app, &bob, "").await;
    for n in all["notifications"].as_array().expect("a list") {
        match n["title"].as_str() {
            Some("n1" | "n3") => assert_timestamp(&n["readAt"]),
            _ => assert_eq!(n["readAt"], Value::Null, "{n}"),
        }
    }

    let pages = [
        ("?limit=2".to_owned(), vec!["n4", "n3"]),
        (format!("?limit=2&before={}", id("n3")), vec!["n2", "n1"]),
        (format!("?limit=2&before={}", id("n1")), vec!["n0"]),
        (format!("?before={}", id("n0")), vec![]),
        (
            format!("?unread=true&limit=1&before={}", id("n4")),
            vec!["n2"],
        ),
    ];
    for (query, expected) in pages {
        let page = list(&app, &bob, &query).await;
        assert_eq!(titles(&page), expected, "{query}");
        assert_eq!(page["unreadCount"], 3, "counts every unread one: {query}");
    }

    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=ten", "limit"),
        ("?before=not-an-id", "before"),
        ("?unread=maybe", "unread"),
    ] {
        let path = format!("/api/notifications{query}");
        let response = app.get_with_token(&path, &bob.token).await;
        let error = expect_error(response, 400, "validation_failed").await;
        assert!(error["fields"][field].is_string(), "{query}: {error}");
    }
}

db_test!(reading_one_tells_the_users_other_devices_which_one);
async fn reading_one_tells_the_users_other_devices_which_one(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let laptop = app.login(&bob.email, PASSWORD).await;
    let laptop_token = str_at(&laptop, "/token");
    let mut phone = connect(&app, &bob.token).await;
    let mut laptop_main = connect(&app, laptop_token).await;
    let mut laptop_notifications = connect_to(&app, "/notifications", laptop_token).await;
    let mut carol_socket = connect(&app, &carol.token).await;

    notify(
        &app,
        &admin,
        json!({ "userId": bob.id, "title": "t", "body": "b" }),
    )
    .await;
    let pushed = phone.next_event("notification").await;
    let id = str_at(&pushed, "/notification/id").to_owned();

    let response = read_one(&app, &bob.token, &id).await;
    assert_eq!(expect_json(response, 200).await, json!({ "ok": true }));
    for socket in [&mut laptop_main, &mut laptop_notifications] {
        let read = socket.next_event("notificationsRead").await;
        assert_eq!(read, json!({ "ids": [id] }));
    }
    carol_socket.expect_no_event("notificationsRead").await;
    let listed = list(&app, &bob, "").await;
    assert_eq!(listed["unreadCount"], 0);
    assert_timestamp(&listed["notifications"][0]["readAt"]);
}

db_test!(reading_all_tells_every_device_that_all_are_read);
async fn reading_all_tells_every_device_that_all_are_read(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let laptop = app.login(&bob.email, PASSWORD).await;
    let laptop_token = str_at(&laptop, "/token");
    let mut laptop_main = connect(&app, laptop_token).await;
    let mut laptop_notifications = connect_to(&app, "/notifications", laptop_token).await;
    for n in 0..3 {
        let body = json!({ "userId": bob.id, "title": format!("n{n}"), "body": "b" });
        notify(&app, &admin, body).await;
    }
    let listed = list(&app, &bob, "").await;
    let first = str_at(&listed, "/notifications/2/id");
    let response = read_one(&app, &bob.token, first).await;
    expect_json(response, 200).await;
    for socket in [&mut laptop_main, &mut laptop_notifications] {
        socket.next_event("notificationsRead").await;
    }

    let response = app
        .post_json_with_token("/api/notifications/read-all", &bob.token, &json!({}))
        .await;
    assert_eq!(
        expect_json(response, 200).await,
        json!({ "ok": true, "count": 2 })
    );
    for socket in [&mut laptop_main, &mut laptop_notifications] {
        let read = socket.next_event("notificationsRead").await;
        assert_eq!(read, json!({ "all": true }));
    }
    let listed = list(&app, &bob, "").await;
    assert_eq!(listed["unreadCount"], 0);
    for n in listed["notifications"].as_array().expect("a list") {
        assert_timestamp(&n["readAt"]);
    }
    assert_eq!(
        list(&app, &bob, "?unread=true").await["notifications"],
        json!([])
    );

    let response = app
        .post_json_with_token("/api/notifications/read-all", &bob.token, &json!({}))
        .await;
    assert_eq!(
        expect_json(response, 200).await,
        json!({ "ok": true, "count": 0 })
    );
}

db_test!(another_users_notification_is_not_found);
async fn another_users_notification_is_not_found(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let mut bob_socket = connect(&app, &bob.token).await;
    notify(
        &app,
        &admin,
        json!({ "userId": bob.id, "title": "t", "body": "b" }),
    )
    .await;
    let pushed = bob_socket.next_event("notification").await;
    let bobs = str_at(&pushed, "/notification/id").to_owned();

    for id in [bobs.as_str(), &Uuid::now_v7().to_string(), "not-an-id"] {
        let response = read_one(&app, &carol.token, id).await;
        expect_error(response, 404, "notification_not_found").await;
    }
    bob_socket.expect_no_event("notificationsRead").await;
    assert_eq!(list(&app, &bob, "?unread=true").await["unreadCount"], 1);
}

db_test!(sync_after_being_offline_answers_the_notifications_created_since);
async fn sync_after_being_offline_answers_the_notifications_created_since(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let note = |title: &str| json!({ "userId": bob.id, "title": title, "body": "b" });

    // Bob is offline throughout.
    notify(&app, &admin, note("before")).await;
    let seen = send_over_rest(&app, &ada, &bob, "seen").await;
    notify(&app, &admin, note("missed 1")).await;
    let missed = send_over_rest(&app, &ada, &bob, "missed").await;
    notify(&app, &admin, note("missed 2")).await;
    let listed = list(&app, &bob, "").await;
    assert_eq!(titles(&listed), ["missed 2", "missed 1", "before"]);
    let since_seen = json!([listed["notifications"][1], listed["notifications"][0]]);

    let mut socket = connect(&app, &bob.token).await;
    let ack = socket
        .emit_with_ack("sync", json!({ "since": seen["id"] }))
        .await;
    assert_eq!(
        keys(&ack),
        BTreeSet::from([
            "ok",
            "messages",
            "hasMore",
            "changed",
            "hasMoreChanged",
            "changedCursor",
            "notifications",
            "hasMoreNotifications"
        ]),
        "{ack}"
    );
    assert_ack_ok(&ack);
    assert_eq!(ack["messages"], json!([missed]));
    assert_eq!(ack["hasMore"], false);
    assert_eq!(ack["notifications"], since_seen, "oldest first");
    assert_eq!(ack["hasMoreNotifications"], false);

    let path = format!("/api/sync?since={}", str_at(&seen, "/id"));
    let rest = expect_json(app.get_with_token(&path, &bob.token).await, 200).await;
    let mut expected = ack.clone();
    expected.as_object_mut().expect("an object").remove("ok");
    assert_eq!(rest, expected);

    let ack = socket
        .emit_with_ack("sync", json!({ "since": seen["id"], "limit": 1 }))
        .await;
    assert_ack_ok(&ack);
    assert_eq!(ack["messages"], json!([missed]));
    assert_eq!(ack["hasMore"], false);
    assert_eq!(ack["notifications"], json!([since_seen[0]]));
    assert_eq!(ack["hasMoreNotifications"], true);
}

db_test!(malformed_notifications_are_refused_with_the_field_at_fault);
async fn malformed_notifications_are_refused_with_the_field_at_fault(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let with = |changes: Value| {
        let mut body = json!({ "userId": bob.id, "title": "t", "body": "b" });
        for (key, value) in changes.as_object().expect("an object") {
            match value {
                Value::Null => body.as_object_mut().expect("an object").remove(key),
                value => body
                    .as_object_mut()
                    .expect("an object")
                    .insert(key.clone(), value.clone()),
            };
        }
        body
    };
    // `{"blob": "…"}` serialized is 11 bytes plus the string.
    let data_of = |bytes: usize| json!({ "blob": "x".repeat(bytes - 11) });
    let refused = [
        (
            "a missing title",
            with(json!({ "title": null })),
            vec!["title"],
        ),
        (
            "an empty title",
            with(json!({ "title": "" })),
            vec!["title"],
        ),
        ("an empty body", with(json!({ "body": "" })), vec!["body"]),
        ("a blank body", with(json!({ "body": "   " })), vec!["body"]),
        (
            "a missing body",
            with(json!({ "body": null })),
            vec!["body"],
        ),
        (
            "a 201-character title",
            with(json!({ "title": "t".repeat(201) })),
            vec!["title"],
        ),
        (
            "a 4001-character body",
            with(json!({ "body": "b".repeat(4001) })),
            vec!["body"],
        ),
        (
            "data that is a list",
            with(json!({ "data": [1, 2] })),
            vec!["data"],
        ),
        (
            "data that is text",
            with(json!({ "data": "text" })),
            vec!["data"],
        ),
        (
            "data over 8 KiB",
            with(json!({ "data": data_of(8193) })),
            vec!["data"],
        ),
        (
            "a kind with spaces",
            with(json!({ "kind": "has spaces" })),
            vec!["kind"],
        ),
        (
            "a 51-character kind",
            with(json!({ "kind": "k".repeat(51) })),
            vec!["kind"],
        ),
        (
            "both userId and all",
            with(json!({ "all": true })),
            vec!["userId", "all"],
        ),
        (
            "neither userId nor all",
            with(json!({ "userId": null })),
            vec!["userId", "all"],
        ),
    ];
    for (what, body, fields) in refused {
        let response = app
            .post_json_with_token("/api/notifications", &admin.token, &body)
            .await;
        let error = expect_error(response, 400, "validation_failed").await;
        assert!(
            fields.iter().any(|f| error["fields"][f].is_string()),
            "{what}: expected an error on {fields:?}, got {error}"
        );
    }
    let wrong_types = [
        with(json!({ "title": 5 })),
        with(json!({ "body": ["b"] })),
        with(json!({ "userId": 42 })),
        with(json!({ "all": "yes" })),
        with(json!({ "kind": false })),
        json!(["not", "an", "object"]),
    ];
    for body in wrong_types {
        let response = app
            .post_json_with_token("/api/notifications", &admin.token, &body)
            .await;
        expect_error(response, 400, "invalid_json").await;
    }
    assert_eq!(list(&app, &bob, "").await["notifications"], json!([]));

    // The limits themselves are allowed, counted in characters.
    let accepted = [
        with(json!({ "title": "é".repeat(200), "body": "ü".repeat(4000) })),
        with(json!({ "data": data_of(8192), "kind": "k".repeat(50) })),
    ];
    for body in accepted {
        notify(&app, &admin, body).await;
    }
    assert_eq!(list(&app, &bob, "").await["unreadCount"], 2);
}

db_test!(only_an_admin_may_send_notifications_and_only_to_an_existing_user);
async fn only_an_admin_may_send_notifications_and_only_to_an_existing_user(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let admin = app.create_user("Admin").await;
    let bob = app.create_user("Bob").await;
    let body = json!({ "userId": admin.id, "title": "t", "body": "b" });

    let response = app
        .post_json_with_token("/api/notifications", &bob.token, &body)
        .await;
    expect_error(response, 403, "forbidden").await;
    let response = app.post_json("/api/notifications", &body).await;
    expect_json(response, 401).await;
    let everyone = json!({ "all": true, "title": "t", "body": "b" });
    let response = app
        .post_json_with_token("/api/notifications", &bob.token, &everyone)
        .await;
    expect_error(response, 403, "forbidden").await;
    assert_eq!(list(&app, &admin, "").await["notifications"], json!([]));
    assert_eq!(list(&app, &bob, "").await["notifications"], json!([]));

    let unknown = json!({ "userId": Uuid::now_v7(), "title": "t", "body": "b" });
    let response = app
        .post_json_with_token("/api/notifications", &admin.token, &unknown)
        .await;
    expect_error(response, 404, "user_not_found").await;
}
