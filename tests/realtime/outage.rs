//! The database going away and coming back (PostgreSQL): the server reaches it through a TCP
//! relay that the test cuts (every connection closed, the port refusing) and opens again.
//! Requests answer 503 `unavailable` with `Retry-After` instead of hanging or a 500, connected
//! sockets stay connected and get `unavailable` acks, `/readyz` names the database, and everything
//! works again once it is back, without a restart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::*;

const POSTGRES: &str = "127.0.0.1:5432";

/// A TCP relay to PostgreSQL.
struct Relay {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    /// Every relayed connection, to close them all at once.
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// Listens on `addr` (a free port when `None`) and relays every connection to PostgreSQL.
    async fn open(addr: Option<SocketAddr>) -> Self {
        let listener =
            TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().expect("an address")))
                .await
                .expect("the relay listens");
        let addr = listener.local_addr().expect("a bound address");
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(POSTGRES).await {
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
    let relay = Relay::open(None).await;
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
    let _relay = Relay::open(Some(port)).await;
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
