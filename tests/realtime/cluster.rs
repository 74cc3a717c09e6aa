//! Cluster mode in Rust: two nodes in this process on one PostgreSQL database and the machine's
//! Redis (under a key prefix of their own), each a full server on its own port. The cluster suite
//! in tests/js/cluster goes further (three nodes, nginx, a node killed, Redis restarted).

use redis::AsyncCommands;

use crate::support::*;

/// Two nodes of one cluster: `a` owns the database, `b` serves the same one.
struct TwoNodes {
    a: TestApp,
    b: TestApp,
    prefix: String,
}

const REDIS_URL: &str = "redis://127.0.0.1:6379";

impl TwoNodes {
    async fn start() -> Self {
        let prefix = format!("craftcode_test_{}", uuid::Uuid::now_v7().simple());
        let secret = format!(
            "{}{}",
            uuid::Uuid::now_v7().simple(),
            uuid::Uuid::now_v7().simple()
        );
        let cluster = [
            ("REDIS_URL", REDIS_URL),
            ("REDIS_PREFIX", prefix.as_str()),
            ("JWT_SECRET", secret.as_str()),
        ];
        let a = spawn_realtime_app(Db::Postgres, &cluster).await;
        let url = a.database.url.clone();
        let mut shared = cluster.to_vec();
        shared.push(("DATABASE_URL", url.as_str()));
        // Its own fresh database goes unused (a small SQLite file): it serves `a`'s.
        let b = spawn_realtime_app(Db::Sqlite, &shared).await;
        Self { a, b, prefix }
    }

    /// Stops both nodes and removes what they left in Redis.
    async fn stop(self) {
        self.b.stop().await;
        self.a.stop().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_devices_on_two_nodes_both_get_a_message_and_both_see_who_is_online() {
    let nodes = TwoNodes::start().await;
    let ada = nodes.a.create_user("Ada").await;
    let bob = nodes.a.create_user("Bob").await;
    let phone = nodes.b.login(&ada.email, &ada.password).await;
    let mut laptop = connect(&nodes.a, &ada.token).await;
    let mut ada_phone = connect(&nodes.b, str_at(&phone, "/token")).await;
    let mut bobs = connect(&nodes.b, &bob.token).await;

    let ack = bobs
        .emit_with_ack(
            "sendMessage",
            json!({"to": ada.id, "content": "from node b"}),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let id = ack["message"]["id"].clone();
    for device in [&mut laptop, &mut ada_phone] {
        let event = device
            .next_event_where("newMessage", |m| m["message"]["id"] == id)
            .await;
        assert_eq!(event["message"]["content"], "from node b");
    }

    // Each node lists both users once the other node's counts have come through Redis.
    for socket in [&mut laptop, &mut bobs] {
        let mut users = Vec::new();
        for _ in 0..100 {
            let online = socket.emit_with_ack("getOnlineUsers", json!(null)).await;
            users = online["users"].as_array().cloned().unwrap_or_default();
            if users.len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let ids: Vec<&Value> = users.iter().map(|u| &u["userId"]).collect();
        assert!(
            ids.contains(&&json!(ada.id)) && ids.contains(&&json!(bob.id)),
            "{users:?}"
        );
        assert_eq!(users.len(), 2, "Ada's two devices are one online user");
    }
    nodes.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_on_one_node_logs_out_its_socket_on_the_other() {
    let nodes = TwoNodes::start().await;
    let ada = nodes.a.create_user("Ada").await;
    let mut on_b = connect(&nodes.b, &ada.token).await;

    let revoked = nodes
        .a
        .delete_with_token(&format!("/api/sessions/{}", ada.session_id), &ada.token)
        .await;
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let notice = on_b.next_event("force_logout").await;
    assert_eq!(notice, json!({"reason": "session_revoked"}));
    on_b.wait_disconnect().await;
    // The token is refused by the other node too.
    let me = nodes.b.get_with_token("/api/auth/me", &ada.token).await;
    assert_eq!(me.status(), 401);
    nodes.stop().await;
}
