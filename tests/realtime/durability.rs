//! §9: a message acknowledged to its sender is durably stored. The real `craftcode` binary is
//! killed with SIGKILL right after the last acknowledgement, restarted on the same database, and
//! every acknowledged message must still be there: after the last acknowledgement, and in the
//! middle of a stream of sends from many people (issue 22's crash under load), none twice.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use reqwest::StatusCode;
use uuid::Uuid;

use crate::support::*;

/// How many acknowledged messages must survive.
const MESSAGES: usize = 50;

/// How long the binary may take to migrate and bind.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One `craftcode serve` process; killed (SIGKILL) when dropped.
struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    /// Starts the binary on `database_url` with a free port, in `workdir`, and waits until it
    /// logs the address it serves on.
    async fn start(database_url: &str, jwt_secret: &str, workdir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_craftcode"))
            .arg("serve")
            .current_dir(workdir)
            .env("DATABASE_URL", database_url)
            .env("JWT_SECRET", jwt_secret)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sqlx=warn")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the craftcode binary starts");

        // The log goes to stdout, one JSON object a line; the `serving` line names the address.
        // Both pipes are drained for the life of the process so it never blocks on them.
        let stdout = child.stdout.take().expect("piped stdout");
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let echo = std::env::var_os("TEST_LOG").is_some();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[craftcode] {line}");
                }
                let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                let serving = entry["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("serving"));
                if let (true, Some(addr)) = (serving, entry["addr"].as_str()) {
                    let _ = addr_tx.send(addr.to_owned());
                }
            }
        });
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let sink = stderr_text.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..n]);
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&text);
            }
        });

        let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(START_TIMEOUT))
            .await
            .expect("the waiting thread");
        let addr = match addr {
            Ok(addr) => addr.parse().expect("a socket address in the log"),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let stderr = stderr_text
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                panic!(
                    "craftcode did not start within {START_TIMEOUT:?} ({status:?}); \
                     stderr:\n{stderr}"
                );
            }
        };
        Self { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL: no shutdown handler, no flush, no goodbye.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL delivered");
        self.child.wait().expect("the process is reaped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a durability test runs a node process on: its database, working folder and secret, kept
/// across the node's restarts, and a client.
struct Setup {
    database: TestDatabase,
    workdir: tempfile::TempDir,
    jwt_secret: String,
    http: reqwest::Client,
}

impl Setup {
    async fn new(db: Db) -> Self {
        Self {
            database: TestDatabase::create(db).await,
            workdir: tempfile::tempdir().expect("a working folder"),
            jwt_secret: format!("durability-test-secret-{}", Uuid::now_v7().simple()),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client"),
        }
    }
}

async fn register(http: &reqwest::Client, node: &Node, name: &str) -> (Uuid, String) {
    let body = json!({
        "email": format!("{}@example.com", name.to_lowercase()),
        "password": PASSWORD,
        "name": name,
    });
    let response = http
        .post(node.url("/api/auth/register"))
        .json(&body)
        .send()
        .await
        .expect("register sent");
    let login = expect_json(response, 201).await;
    (
        uuid_at(&login, "/user/id"),
        str_at(&login, "/token").to_owned(),
    )
}

/// Sends one message over REST, obeying `Retry-After` when the per-user rate limit answers 429,
/// and answers the stored message once the server has acknowledged it (201).
async fn send_acknowledged(
    http: &reqwest::Client,
    node: &Node,
    token: &str,
    to: Uuid,
    n: usize,
) -> Value {
    let path = node.url(&format!("/api/messages/send/{to}"));
    let body =
        json!({ "content": format!("durable message {n}"), "clientId": format!("durable-{n}") });
    for _ in 0..10 {
        let response = http
            .post(&path)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("sent");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("a 429 says when to retry");
            tokio::time::sleep(Duration::from_secs(retry_after)).await;
            continue;
        }
        return expect_json(response, 201).await["message"].clone();
    }
    panic!("message {n} was rate limited ten times in a row");
}

db_test! {
    async fn acknowledged_messages_survive_a_kill_9_of_the_node(db: Db) {
        let Setup { database, workdir, jwt_secret, http } = Setup::new(db).await;

        let node = Node::start(&database.url, &jwt_secret, workdir.path()).await;
        let (ada, ada_token) = register(&http, &node, "Ada").await;
        let (bob, bob_token) = register(&http, &node, "Bob").await;
        let mut acknowledged = Vec::new();
        for n in 0..MESSAGES {
            acknowledged.push(send_acknowledged(&http, &node, &ada_token, bob, n).await);
        }
        node.kill();

        let node = Node::start(&database.url, &jwt_secret, workdir.path()).await;
        let path = node.url(&format!("/api/messages/{ada}?limit=100"));
        let response = http
            .get(&path)
            .bearer_auth(&bob_token)
            .send()
            .await
            .expect("sent");
        let history = expect_json(response, 200).await;
        let mut stored = history["messages"].as_array().expect("messages").clone();
        stored.reverse(); // history is newest first
        let ids = |list: &[Value]| list.iter().map(|m| m["id"].clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(&stored),
            ids(&acknowledged),
            "acknowledged messages were lost"
        );
        for (stored, sent) in stored.iter().zip(&acknowledged) {
            assert_eq!(stored["content"], sent["content"]);
        }
        node.kill();
    }
}

db_test! {
    async fn sends_acknowledged_together_in_one_batch_survive_a_kill_9_right_after(db: Db) {
        let Setup { database, workdir, jwt_secret, http } = Setup::new(db).await;

        let node = Node::start(&database.url, &jwt_secret, workdir.path()).await;
        let (ada, ada_token) = register(&http, &node, "Ada").await;
        let (bob, bob_token) = register(&http, &node, "Bob").await;
        let mut socket = Handshake::new(node.addr)
            .token(&ada_token)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("the handshake was refused: {e}"));
        socket.next_event("authenticated").await;
        // All in flight at once (under the per-user limit of 20 a second), so the server
        // commits them together; the node dies the moment the last ack is in.
        let pending: Vec<_> = (0..15)
            .map(|n| {
                socket.emit_expecting_ack(
                    "sendMessage",
                    json!({ "to": bob, "content": format!("in flight {n}"), "clientId": format!("flight-{n}") }),
                )
            })
            .collect();
        let mut acknowledged = Vec::new();
        for ack in pending {
            let ack = tokio::time::timeout(WAIT, ack)
                .await
                .expect("an ack within the wait")
                .expect("the connection stays up");
            assert_eq!(ack["ok"], true, "{ack}");
            acknowledged.push(ack["message"]["id"].clone());
        }
        node.kill();

        let node = Node::start(&database.url, &jwt_secret, workdir.path()).await;
        let response = http
            .get(node.url(&format!("/api/messages/{ada}?limit=100")))
            .bearer_auth(&bob_token)
            .send()
            .await
            .expect("sent");
        let history = expect_json(response, 200).await;
        let mut stored: Vec<Value> = history["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["id"].clone())
            .collect();
        let sort = |ids: &mut Vec<Value>| ids.sort_by_key(|id| id.as_str().unwrap_or_default().to_owned());
        sort(&mut stored);
        sort(&mut acknowledged);
        assert_eq!(stored, acknowledged, "acknowledged messages were lost");
        node.kill();
    }
}

/// How many people send at once in the crash-under-load test, each to the next one.
const SENDERS: usize = 12;
/// The pause between one person's sends (about 15 a second each, under the limit of 20).
const SEND_PACE: Duration = Duration::from_millis(65);
/// Acknowledged sends after which the node is killed, mid-stream.
const KILL_AFTER: usize = 250;

/// One person sending over a socket until the connection dies: answers what was acknowledged
/// `ok:true` (message id and clientId), in order.
async fn send_until_the_node_dies(
    mut socket: SocketClient,
    me: usize,
    to: Uuid,
    acked: Arc<AtomicUsize>,
) -> Vec<(Value, String)> {
    let mut acknowledged = Vec::new();
    for n in 0.. {
        let client_id = format!("load-{me}-{n}");
        let ack = socket.emit_expecting_ack(
            "sendMessage",
            json!({ "to": to, "content": format!("under load {me}/{n}"), "clientId": client_id }),
        );
        match tokio::time::timeout(WAIT, ack).await {
            Ok(Ok(ack)) if ack["ok"] == true => {
                acknowledged.push((ack["message"]["id"].clone(), client_id));
                acked.fetch_add(1, Ordering::SeqCst);
            }
            // Refused (rate_limited) or the connection ended without an answer: not
            // acknowledged, so not promised.
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return acknowledged,
        }
        if !socket.is_connected() {
            return acknowledged;
        }
        tokio::time::sleep(SEND_PACE).await;
    }
    acknowledged
}

db_test! {
    async fn a_kill_9_mid_stream_loses_no_acknowledged_message_and_doubles_none(db: Db) {
        let Setup { database, workdir, jwt_secret, http } = Setup::new(db).await;
        let node = Node::start(&database.url, &jwt_secret, workdir.path()).await;
        let mut people = Vec::new();
        for i in 0..SENDERS {
            people.push(register(&http, &node, &format!("Sender{i}")).await);
        }
        let acked = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::new();
        for (i, (_, token)) in people.iter().enumerate() {
            let mut socket = Handshake::new(node.addr)
                .token(token)
                .connect()
                .await
                .unwrap_or_else(|e| panic!("the handshake was refused: {e}"));
            socket.next_event("authenticated").await;
            let to = people[(i + 1) % SENDERS].0;
            senders.push(tokio::spawn(send_until_the_node_dies(socket, i, to, acked.clone())));
        }
        // Mid-stream: every sender has sends in flight when the node dies.
        while acked.load(Ordering::SeqCst) < KILL_AFTER {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        node.kill();
        let mut acknowledged = Vec::new();
        for sender in senders {
            acknowledged.push(sender.await.expect("a sender task"));
        }
        assert!(acknowledged.iter().all(|a| !a.is_empty()), "every sender was acknowledged");

        let node = Node::start(&database.url, &jwt_secret, workdir.path()).await;
        for (i, sent) in acknowledged.iter().enumerate() {
            let (sender, _) = &people[i];
            let (_, recipient_token) = &people[(i + 1) % SENDERS];
            let get = |path: String| {
                let request = http.get(node.url(&path)).bearer_auth(recipient_token);
                async move { expect_json(request.send().await.expect("sent"), 200).await }
            };
            let history = get(format!("/api/messages/{sender}?limit=100")).await;
            assert_eq!(history["hasMore"], false);
            let sync = get("/api/sync?limit=100".to_owned()).await;
            assert_eq!(sync["hasMore"], false);
            for (list, name) in [(&history["messages"], "history"), (&sync["messages"], "sync")] {
                let list = list.as_array().expect("messages");
                // None twice: every clientId once.
                let mut client_ids: Vec<&str> = list.iter().filter_map(|m| m["clientId"].as_str()).collect();
                let count = client_ids.len();
                client_ids.sort_unstable();
                client_ids.dedup();
                assert_eq!(client_ids.len(), count, "a message stored twice in {name}");
                // Every acknowledged one there.
                for (id, client_id) in sent {
                    assert!(
                        list.iter().any(|m| m["id"] == *id && m["clientId"] == client_id.as_str()),
                        "{client_id} was acknowledged but is not in the recipient's {name}"
                    );
                }
            }
        }
        node.kill();
    }
}
