//! A dependency going away and coming back: the database (PostgreSQL) and the attachment
//! storage (the S3 server). The server reaches it through a TCP relay that the test cuts (every
//! connection closed, the port refusing) and opens again. Requests answer 503 `unavailable` with
//! `Retry-After` instead of hanging or a 500, connected sockets stay connected and get
//! `unavailable` acks, `/readyz` names what failed, and everything works again once it is back,
//! without a restart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::*;

const POSTGRES: &str = "127.0.0.1:5432";

/// A TCP relay to a dependency.
struct Relay {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    /// Every relayed connection, to close them all at once.
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// Listens on `addr` (a free port when `None`) and relays every connection to `to`.
    async fn open(addr: Option<SocketAddr>, to: &str) -> Self {
        let to = to.to_owned();
        let listener =
            TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().expect("an address")))
                .await
                .expect("the relay listens");
        let addr = listener.local_addr().expect("a bound address");
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = to.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().expect("the links").push(link);
            }
        });
        Self {
            addr,
            accept,
            links,
        }
    }

    /// Closes every relayed connection and the port; answers the port, to open it again.
    fn cut(self) -> SocketAddr {
        self.accept.abort();
        for link in self.links.lock().expect("the links").drain(..) {
            link.abort();
        }
        self.addr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_gone_requests_answer_503_and_everything_works_again_once_it_is_back() {
    let database = TestDatabase::create(Db::Postgres).await;
    let relay = Relay::open(None, POSTGRES).await;
    let url = database.url.replace(POSTGRES, &relay.addr.to_string());
    assert_ne!(url, database.url, "the test database is on {POSTGRES}");
    let app = spawn_realtime_app(Db::Sqlite, &[("DATABASE_URL", &url)]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let mut socket = connect(&app, &ada.token).await;
    assert_eq!(
        app.get_with_token("/api/auth/me", &ada.token)
            .await
            .status(),
        200
    );

    let port = relay.cut();
    // Well within the relay's and the client's timeouts: a hang would fail here.
    let started = Instant::now();
    let me = app.get_with_token("/api/auth/me", &ada.token).await;
    let waited = started.elapsed();
    let retry_after = me.headers().get("retry-after").cloned();
    expect_error(me, 503, "unavailable").await;
    assert!(retry_after.is_some(), "503 without Retry-After");
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    let send = app
        .post_json_with_token(
            &format!("/api/messages/send/{}", bob.id),
            &ada.token,
            &json!({ "content": "hi" }),
        )
        .await;
    expect_error(send, 503, "unavailable").await;
    let ready = expect_json(app.get("/readyz").await, 503).await;
    assert_eq!(ready["failed"], json!(["database"]), "{ready}");
    // The socket stays, and its events say why they fail.
    let ack = socket
        .emit_with_ack("sendMessage", json!({ "to": bob.id, "content": "hi" }))
        .await;
    assert_ack_error(&ack, "unavailable");
    assert_ack_ok(&socket.emit_with_ack("ping", json!({})).await);
    assert!(socket.is_connected());

    // Back: the next requests work, on the same server process.
    let _relay = Relay::open(Some(port), POSTGRES).await;
    let mut status = 0;
    for _ in 0..100 {
        status = app
            .get_with_token("/api/auth/me", &ada.token)
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the server did not recover");
    let ack = socket
        .emit_with_ack("sendMessage", json!({ "to": bob.id, "content": "after" }))
        .await;
    assert_ack_ok(&ack);
    expect_json(app.get("/readyz").await, 200).await;
}

/// Polls `path` until it answers `status` (the server finds its dependency back by itself).
async fn until_status(app: &TestApp, path: &str, status: u16) {
    for _ in 0..100 {
        if app.get(path).await.status().as_u16() == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never answered {status}");
}

async fn patch(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    offset: usize,
    bytes: Vec<u8>,
) -> reqwest::Response {
    app.client
        .patch(app.url(path))
        .bearer_auth(&user.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("sent")
}

db_test! {
    async fn with_the_storage_gone_uploads_answer_503_and_resume_once_it_is_back(db: Db) {
        let storage = s3_settings();
        let endpoint = storage.iter().find(|(k, _)| *k == "S3_ENDPOINT").expect("an endpoint").1.clone();
        let s3 = endpoint.trim_start_matches("http://").to_owned();
        let relay = Relay::open(None, &s3).await;
        let through = format!("http://{}", relay.addr);
        let mut vars: Vec<(&str, &str)> = storage.iter().map(|(k, v)| (*k, v.as_str())).collect();
        vars.retain(|(k, _)| *k != "S3_ENDPOINT");
        vars.push(("S3_ENDPOINT", &through));
        let app = spawn_realtime_app(db, &vars).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut socket = connect(&app, &ada.token).await;
        let message = send_over_rest(&app, &ada, &bob, "a file follows").await;
        let conversation = str_at(&message, "/conversationId").to_owned();
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
        let created = app
            .client
            .post(app.url("/api/uploads"))
            .bearer_auth(&ada.token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", (2 * 1024 * 1024).to_string())
            .header("Upload-Metadata", format!("filename {},conversationId {}", b64("f.bin"), b64(&conversation)))
            .send()
            .await
            .expect("sent");
        assert_eq!(created.status(), 201);
        let path = created.headers()["location"].to_str().expect("a location").to_owned();
        let bytes: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
        assert_eq!(patch(&app, &ada, &path, 0, bytes[..1024 * 1024].to_vec()).await.status(), 204);

        let port = relay.cut();
        let started = Instant::now();
        let refused = patch(&app, &ada, &path, 1024 * 1024, bytes[1024 * 1024..].to_vec()).await;
        let waited = started.elapsed();
        assert!(refused.headers().contains_key("retry-after"), "503 without Retry-After");
        expect_error(refused, 503, "unavailable").await;
        assert!(waited < Duration::from_secs(20), "answered after {waited:?}");
        let ready = expect_json(app.get("/readyz").await, 503).await;
        assert_eq!(ready["failed"], json!(["storage"]), "{ready}");
        // Messages and sockets go on meanwhile.
        assert_ack_ok(&socket.emit_with_ack("sendMessage", json!({"to": bob.id, "content": "no files now"})).await);

        // Back: the same upload resumes where it was, on the same server process.
        let _relay = Relay::open(Some(port), &s3).await;
        until_status(&app, "/readyz", 200).await;
        let head = app
            .client
            .head(app.url(&path))
            .bearer_auth(&ada.token)
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .expect("sent");
        assert_eq!(head.headers()["upload-offset"], "1048576");
        assert_eq!(patch(&app, &ada, &path, 1024 * 1024, bytes[1024 * 1024..].to_vec()).await.status(), 204);
        let id = path.rsplit('/').next().expect("an id");
        let ack = socket
            .emit_with_ack("sendMessage", json!({"conversationId": conversation, "attachmentIds": [id]}))
            .await;
        assert_ack_ok(&ack);
        let file = app.client.get(app.url(&format!("/api/attachments/{id}"))).bearer_auth(&bob.token).send().await.expect("sent");
        assert_eq!(file.status(), 200);
        assert!(file.bytes().await.expect("the bytes").as_ref() == &bytes[..]);
    }
}
