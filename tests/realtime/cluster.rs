//! Cluster mode in Rust: three nodes in this process on one PostgreSQL database and the machine's
//! Redis (under a key prefix of their own), each a full server on its own port. The cluster suite
//! in tests/js/cluster goes further (separate processes, nginx, a node killed, Redis restarted).

use redis::AsyncCommands;

use crate::support::*;

/// Three nodes of one cluster: the first owns the database, the others serve the same one.
struct Cluster {
    nodes: [TestApp; 3],
    prefix: String,
}

const REDIS_URL: &str = "redis://127.0.0.1:6379";

impl Cluster {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Three nodes with `extra` settings on each.
    async fn start_with(extra: &[(&str, &str)]) -> Self {
        let prefix = format!("craftcode_test_{}", uuid::Uuid::now_v7().simple());
        let secret = format!(
            "{}{}",
            uuid::Uuid::now_v7().simple(),
            uuid::Uuid::now_v7().simple()
        );
        let mut cluster = vec![
            ("REDIS_URL", REDIS_URL),
            ("REDIS_PREFIX", prefix.as_str()),
            ("JWT_SECRET", secret.as_str()),
        ];
        cluster.extend_from_slice(extra);
        let first = spawn_realtime_app(Db::Postgres, &cluster).await;
        let url = first.database.url.clone();
        let mut shared = cluster.to_vec();
        shared.push(("DATABASE_URL", url.as_str()));
        // Their own fresh databases go unused (small SQLite files): they serve the first's.
        let second = spawn_realtime_app(Db::Sqlite, &shared).await;
        let third = spawn_realtime_app(Db::Sqlite, &shared).await;
        Self {
            nodes: [first, second, third],
            prefix,
        }
    }

    /// Node 1, 2 or 3.
    fn node(&self, n: usize) -> &TestApp {
        &self.nodes[n - 1]
    }

    /// Stops the nodes and removes what they left in Redis.
    async fn stop(self) {
        let [first, second, third] = self.nodes;
        third.stop().await;
        second.stop().await;
        first.stop().await;
        let client = redis::Client::open(REDIS_URL).expect("a Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis answers");
        let keys: Vec<String> = conn
            .keys(format!("{}*", self.prefix))
            .await
            .expect("KEYS answers");
        if !keys.is_empty() {
            let _: () = conn.del(keys).await.expect("DEL answers");
        }
    }
}

/// The ids `getOnlineUsers` answers on this socket once it lists `want` users (other nodes'
/// counts come through Redis once per presence interval).
async fn online_ids(socket: &mut SocketClient, want: usize) -> Vec<Value> {
    let mut users = Vec::new();
    for _ in 0..100 {
        let online = socket.emit_with_ack("getOnlineUsers", json!(null)).await;
        users = online["users"].as_array().cloned().unwrap_or_default();
        if users.len() == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut ids: Vec<Value> = users.iter().map(|u| u["userId"].clone()).collect();
    ids.sort_by_key(|id| id.to_string());
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_devices_on_nodes_1_and_3_both_get_every_event_and_every_node_lists_the_same_users()
{
    let cluster = Cluster::start().await;
    let admin = cluster.node(1).create_user("Admin").await;
    let ada = cluster.node(1).create_user("Ada").await;
    let bob = cluster.node(1).create_user("Bob").await;
    let phone = cluster.node(3).login(&ada.email, &ada.password).await;
    let mut laptop = connect(cluster.node(1), &ada.token).await;
    let mut ada_phone = connect(cluster.node(3), str_at(&phone, "/token")).await;
    let mut bobs = connect(cluster.node(2), &bob.token).await;
    let mut admins = connect(cluster.node(2), &admin.token).await;

    // Bob (node 2) writes to Ada: both of her devices get it.
    let ack = send_message(&mut bobs, &ada, "from node 2").await;
    assert_eq!(ack["delivered"], json!(true), "{ack}");
    let id = ack["message"]["id"].clone();
    for device in [&mut laptop, &mut ada_phone] {
        let event = device
            .next_event_where("newMessage", |m| m["message"]["id"] == id)
            .await;
        assert_eq!(event["message"]["content"], "from node 2");
    }

    // Ada writes from her phone (node 3): the laptop (node 1) and the phone get messageSent.
    let reply = send_message(&mut ada_phone, &bob, "from node 3").await;
    let id = reply["message"]["id"].clone();
    for device in [&mut laptop, &mut ada_phone] {
        let event = device
            .next_event_where("messageSent", |m| m["message"]["id"] == id)
            .await;
        assert_eq!(event["message"]["to"], json!(bob.id), "{event}");
    }
    bobs.next_event_where("newMessage", |m| m["message"]["id"] == id)
        .await;

    // Every node lists the same three online users (Ada's two devices are one user).
    let mut expected = vec![json!(admin.id), json!(ada.id), json!(bob.id)];
    expected.sort_by_key(|id| id.to_string());
    assert_eq!(online_ids(&mut laptop, 3).await, expected);
    for socket in [&mut ada_phone, &mut bobs, &mut admins] {
        assert_eq!(online_ids(socket, 3).await, expected);
    }

    // An admin on node 2 promotes Ada: each device gets a token for its own session, and the
    // old token is refused by every node.
    let promoted = cluster
        .node(2)
        .patch_user(&admin.token, ada.id, &json!({"isAdmin": true}))
        .await;
    assert_eq!(promoted.status(), 200);
    let mut tokens = Vec::new();
    for device in [&mut laptop, &mut ada_phone] {
        let update = device.next_event("tokenUpdated").await;
        assert_eq!(update["user"]["isAdmin"], json!(true), "{update}");
        tokens.push(str_at(&update, "/token").to_owned());
    }
    assert_ne!(tokens[0], tokens[1], "one token per session");
    for node in &cluster.nodes {
        let stale = node.get_with_token("/api/auth/me", &ada.token).await;
        assert_eq!(stale.status(), 401);
        let fresh = node.get_with_token("/api/auth/me", &tokens[0]).await;
        assert_eq!(fresh.status(), 200);
    }

    // Ada signs out everywhere from node 2: both devices are logged out and disconnected.
    let out = cluster
        .node(2)
        .post_json_with_token("/api/auth/logout", &tokens[0], &json!({"all": true}))
        .await;
    let out = expect_json(out, 200).await;
    assert_eq!(out["socketsDisconnected"], json!(2), "{out}");
    for device in [&mut laptop, &mut ada_phone] {
        let notice = device.next_event("force_logout").await;
        assert_eq!(notice, json!({"reason": "logout"}));
        device.wait_disconnect().await;
    }
    assert!(bobs.is_connected(), "Bob is not affected");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_on_one_node_logs_out_its_socket_on_the_other() {
    let cluster = Cluster::start().await;
    let ada = cluster.node(1).create_user("Ada").await;
    let mut on_b = connect(cluster.node(2), &ada.token).await;

    let revoked = cluster
        .node(1)
        .delete_with_token(&format!("/api/sessions/{}", ada.session_id), &ada.token)
        .await;
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let notice = on_b.next_event("force_logout").await;
    assert_eq!(notice, json!({"reason": "session_revoked"}));
    on_b.wait_disconnect().await;
    // The token is refused by the other node too.
    let me = cluster
        .node(2)
        .get_with_token("/api/auth/me", &ada.token)
        .await;
    assert_eq!(me.status(), 401);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_on_three_nodes_reaches_its_members_once_and_a_removed_member_on_another_node_no_more()
 {
    let cluster = Cluster::start().await;
    let ada = cluster.node(1).create_user("Ada").await;
    let bob = cluster.node(1).create_user("Bob").await;
    let carol = cluster.node(1).create_user("Carol").await;
    let mut ada_socket = connect(cluster.node(1), &ada.token).await;
    let mut bob_socket = connect(cluster.node(2), &bob.token).await;
    let mut carol_socket = connect(cluster.node(3), &carol.token).await;

    // Made on node 2 while every member is connected elsewhere: each node puts its own sockets
    // in the group's room.
    let body = json!({ "title": "Across", "memberIds": [bob.id, carol.id] });
    let created = cluster
        .node(2)
        .post_json_with_token("/api/conversations", &ada.token, &body)
        .await;
    let group = expect_json(created, 201).await;
    let id = str_at(&group, "/conversation/id").to_owned();
    for socket in [&mut bob_socket, &mut carol_socket] {
        let updated = socket.next_event("conversationUpdated").await;
        assert_eq!(updated["conversation"]["id"], id);
    }

    let ack = ada_socket
        .emit_with_ack(
            "sendMessage",
            json!({ "conversationId": id, "content": "to every node" }),
        )
        .await;
    assert_ack_ok(&ack);
    let message = ack["message"]["id"].clone();
    for socket in [&mut bob_socket, &mut carol_socket] {
        socket
            .next_event_where("newMessage", |m| m["message"]["id"] == message)
            .await;
        socket.barrier().await;
        let again = socket.take_events("newMessage").await;
        assert!(
            again.iter().all(|m| m["message"]["id"] != message),
            "delivered twice: {again:?}"
        );
    }

    // Carol (node 3) is removed through node 1: from the answer on, her socket gets nothing.
    let path = format!("/api/conversations/{id}/members/{}", carol.id);
    let removed = cluster.node(1).delete_with_token(&path, &ada.token).await;
    assert_eq!(removed.status(), 204);
    let notice = carol_socket.next_event("conversationRemoved").await;
    assert_eq!(notice["reason"], "removed");
    let ack = bob_socket
        .emit_with_ack(
            "sendMessage",
            json!({ "conversationId": id, "content": "after carol" }),
        )
        .await;
    assert_ack_ok(&ack);
    ada_socket
        .next_event_where("newMessage", |m| m["message"]["content"] == "after carol")
        .await;
    carol_socket.barrier().await;
    assert!(
        carol_socket
            .take_events("newMessage")
            .await
            .iter()
            .all(|m| m["message"]["content"] != "after carol"),
        "a removed member got a message of the group"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reactions_and_deletions_made_on_one_node_reach_the_members_on_the_others() {
    let cluster = Cluster::start().await;
    let ada = cluster.node(1).create_user("Ada").await;
    let bob = cluster.node(1).create_user("Bob").await;
    let carol = cluster.node(1).create_user("Carol").await;
    let group = create_group(cluster.node(1), &ada, "Across", &[&bob]).await;
    let id = id_of(&group);
    let mut ada_socket = connect(cluster.node(1), &ada.token).await;
    let mut bob_socket = connect(cluster.node(3), &bob.token).await;
    let mut carol_socket = connect(cluster.node(3), &carol.token).await;
    let sent = send_to(&mut ada_socket, &id, "draft").await;
    let message = str_at(&sent, "/message/id").to_owned();
    let dm = send_message(&mut bob_socket, &ada, "direct").await;
    let dm = str_at(&dm, "/message/id").to_owned();

    // Edited through node 2, the group message; reacted to through node 1, the direct one.
    let path = format!("/api/messages/{message}");
    let edited = cluster
        .node(2)
        .patch_with_token(&path, &ada.token, &json!({ "content": "final" }))
        .await;
    expect_json(edited, 200).await;
    let updated = bob_socket.next_event("messageUpdated").await;
    assert_eq!(updated["message"]["content"], "final");
    let ack = ada_socket
        .emit_with_ack(
            "react",
            json!({ "messageId": dm, "emoji": "👋", "add": true }),
        )
        .await;
    assert_ack_ok(&ack);
    let changed = bob_socket.next_event("reactionsChanged").await;
    assert_eq!(changed["messageId"], dm);
    assert_eq!(changed["reactions"][0]["userIds"], json!([ada.id]));

    // Deleted by its author on node 3: Ada's socket on node 1 is told, once.
    let ack = bob_socket
        .emit_with_ack("deleteMessage", json!({ "messageId": dm }))
        .await;
    assert_ack_ok(&ack);
    let deleted = ada_socket.next_event("messageDeleted").await;
    assert_eq!(deleted["messageId"], dm);
    ada_socket.expect_no_event("messageDeleted").await;
    // Carol, on the members' node but in neither conversation, heard nothing.
    for event in ["messageUpdated", "reactionsChanged", "messageDeleted"] {
        carol_socket.expect_no_event(event).await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_node_1_hears_of_its_partners_on_node_3_and_of_nobody_else() {
    let cluster = Cluster::start_with(&[("PRESENCE_BROADCAST_MAX", "0")]).await;
    let ada = cluster.node(1).create_user("Ada").await;
    let bob = cluster.node(1).create_user("Bob").await;
    let carol = cluster.node(1).create_user("Carol").await;
    let dan = cluster.node(1).create_user("Dan").await;
    send_over_rest(cluster.node(2), &bob, &ada, "partners").await;
    let mut adas = connect(cluster.node(1), &ada.token).await;
    assert_eq!(adas.next_event("getOnlineUsers").await["scope"], "watched");

    // Carol (a stranger) then Bob (a partner) come online on node 3.
    let _carols = connect(cluster.node(3), &carol.token).await;
    let bobs = connect(cluster.node(3), &bob.token).await;
    let change = adas
        .next_event_where("presenceChanged", |c| {
            c["online"]
                .as_array()
                .is_some_and(|l| l.iter().any(|u| u["userId"] == json!(bob.id)))
        })
        .await;
    assert_eq!(
        change["online"],
        json!([{ "userId": bob.id, "name": "Bob" }])
    );

    // Dan, on node 2, starts a conversation with Ada: she watches him from then on.
    let mut dans = connect(cluster.node(2), &dan.token).await;
    send_message(&mut dans, &ada, "hello from node 2").await;
    adas.next_event_where("presenceChanged", |c| {
        c["online"]
            .as_array()
            .is_some_and(|l| l.iter().any(|u| u["userId"] == json!(dan.id)))
    })
    .await;

    bobs.disconnect().await;
    adas.next_event_where("presenceChanged", |c| c["offline"] == json!([bob.id]))
        .await;
    let changes = adas.take_events("presenceChanged").await;
    assert!(
        !changes
            .iter()
            .any(|c| c.to_string().contains(&carol.id.to_string())),
        "Ada does not watch Carol: {changes:?}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_refuses_the_next_handshake_on_every_node_at_once() {
    let cluster = Cluster::start_with(&[("MAX_CONNECTIONS_PER_USER", "3")]).await;
    let ada = cluster.node(1).create_user("Ada").await;
    // The allowed three, one on each node, each counted the moment its handshake passes.
    let mut held = Vec::new();
    for n in 1..=3 {
        held.push(connect(cluster.node(n), &ada.token).await);
    }
    // Then one more on every node at the same moment: none passes, whatever the rounds say.
    let attempts = tokio::join!(
        handshake(cluster.node(1)).token(&ada.token).connect(),
        handshake(cluster.node(2)).token(&ada.token).connect(),
        handshake(cluster.node(3)).token(&ada.token).connect(),
    );
    let attempts = [attempts.0, attempts.1, attempts.2];
    for (n, attempt) in attempts.into_iter().enumerate() {
        match attempt {
            Ok(socket) => panic!("node {} accepted a fourth socket ({})", n + 1, socket.sid),
            Err(message) => assert_eq!(message, "too_many_connections", "node {}", n + 1),
        }
    }

    // A socket that closes gives its place back: exactly one more passes, on any node.
    held.pop().expect("three sockets").disconnect().await;
    let mut again = None;
    for _ in 0..100 {
        match handshake(cluster.node(2)).token(&ada.token).connect().await {
            Ok(socket) => {
                again = Some(socket);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    assert!(again.is_some(), "the place closed on node 3 was given back");
    let refused = handshake(cluster.node(1)).token(&ada.token).connect().await;
    assert_eq!(refused.err().as_deref(), Some("too_many_connections"));
    cluster.stop().await;
}
