//! What every API test stands on: a real server on its own port and its own database, a plain
//! HTTP client, and small helpers to sign people up and read the answers.
//!
//! Each test gets a fresh database: a SQLite file in a temporary folder, or a PostgreSQL database
//! `craftcode_test_<uuid>` created on `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped again when the test ends.
//! Declare a test with [`db_test!`] and it runs on both databases.
//!
//! Tests are quiet; set `TEST_LOG=1` (and optionally `RUST_LOG`) to see the server's log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use craftcode::store::User;
use craftcode::{AppState, Application, Config};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs a test on both databases: write the test once as `async fn name(db: Db)` and declare it
/// with `db_test!(name)` just above.
///
/// ```ignore
/// db_test!(a_sentence_saying_what_a_user_sees);
/// async fn a_sentence_saying_what_a_user_sees(db: Db) {
///     let app = spawn_app(db).await;
///     …
/// }
/// ```
/// gives the two tests `a_sentence_saying_what_a_user_sees::sqlite` and `…::postgres` (a module
/// and a function may share a name). Attributes go inside:
/// `db_test!(#[ignore = "bug: …"] a_sentence)` applies to both tests.
///
/// The functions may also be written inside the macro, `db_test! { async fn a(db: Db) {…} … }`,
/// with the same result; rustfmt does not format code inside such a block, so the first form is
/// the one to prefer. Each test runs on a two-worker multi-threaded runtime, so the server and the
/// test's requests run side by side.
macro_rules! db_test {
    ($(
        $(#[$meta:meta])*
        async fn $name:ident($db:ident: Db) $body:block
    )+) => {$(
        $crate::helpers::db_test!($(#[$meta])* $name);
        async fn $name($db: $crate::helpers::Db) $body
    )+};
    ($(#[$meta:meta])* $name:ident) => {
        mod $name {
            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Db::Sqlite).await
            }

            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Db::Postgres).await
            }
        }
    };
}
pub(crate) use db_test;

/// `STORAGE_URL` and the S3 settings of a fresh prefix in the test S3 server's bucket (SeaweedFS,
/// which the test command starts: `source scripts/test-env.sh && ensure_seaweedfs`).
pub fn s3_settings() -> Vec<(&'static str, String)> {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let bucket = var("TEST_S3_BUCKET", "craftcode-test");
    vec![
        (
            "STORAGE_URL",
            format!("s3://{bucket}/test-{}", Uuid::now_v7().simple()),
        ),
        (
            "S3_ENDPOINT",
            var("TEST_S3_ENDPOINT", "http://127.0.0.1:8333"),
        ),
        ("S3_REGION", var("TEST_S3_REGION", "us-east-1")),
        (
            "AWS_ACCESS_KEY_ID",
            var("TEST_S3_ACCESS_KEY", "craftcode-test"),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            var(
                "TEST_S3_SECRET_KEY",
                "9eb57d6ada2e4f84e429999f86b15d607ae56e6d",
            ),
        ),
    ]
}

/// The PostgreSQL server test databases are created on.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The origin every test app allows by default (it is in the contract's default `CORS_ORIGINS`).
pub const ALLOWED_ORIGIN: &str = "http://localhost:3000";

/// A password good enough for the server; tests that care about passwords use their own.
pub const PASSWORD: &str = "correct horse battery staple";

/// A fresh, empty database that disappears when dropped.
pub struct TestDatabase {
    /// What `DATABASE_URL` should be to use it.
    pub url: String,
    /// The SQLite file, inside a folder removed on drop.
    pub sqlite_file: Option<PathBuf>,
    /// The PostgreSQL database name, dropped on drop.
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// Creates an empty database (the server migrates it when it starts).
    pub async fn create(kind: Db) -> Self {
        match kind {
            Db::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("craftcode-test-")
                    .tempdir()
                    .expect("a temporary folder");
                let file = dir.path().join("craftcode.db");
                Self {
                    url: format!("sqlite://{}", file.display()),
                    sqlite_file: Some(file),
                    postgres_name: None,
                    _dir: Some(dir),
                }
            }
            Db::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("craftcode_test_{}", Uuid::now_v7().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "PostgreSQL does not answer at TEST_POSTGRES_URL={admin}: {e} \
                         (start it, or run scripts/test-all which does)"
                        )
                    });
                // The name is ours (a uuid), never input, so formatting it in is safe.
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .expect("creating a test database");
                let _ = conn.close().await;
                let mut url = url::Url::parse(&admin).expect("TEST_POSTGRES_URL is a URL");
                url.set_path(&name);
                Self {
                    url: url.to_string(),
                    sqlite_file: None,
                    postgres_name: Some(name),
                    _dir: None,
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on async work; a thread with
        // its own small runtime can. FORCE ends the connections the server may still hold.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: a test database was left behind (scripts/test-all drops it)");
        }
    }
}

/// A running server with its own database, and a client to talk to it.
pub struct TestApp {
    /// Where the server listens (127.0.0.1 and a free port).
    pub addr: SocketAddr,
    /// A plain client: no cookie store, so every cookie a test sends is one it chose to send.
    pub client: reqwest::Client,
    /// The server's own state, for what an operator would do out of band (the CLI's store calls)
    /// or what a test cannot get over HTTP (minting tokens with chosen times).
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    users_created: AtomicUsize,
    /// Declared last so it is dropped after the server has been told to stop.
    pub database: TestDatabase,
    /// The folder attachments are stored in (`STORAGE_URL`, unless a test chose another).
    pub storage: tempfile::TempDir,
}

/// Starts a server with the default test settings on a fresh database.
pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, &[]).await
}

/// Starts a server with some settings (the contract's §7 names, e.g. `("ALLOW_SIGNUP", "false")`)
/// on top of the test defaults. `DATABASE_URL` may be given too, to serve a database the test
/// prepared itself; the fresh one is then unused.
pub async fn spawn_app_with(db: Db, extra_vars: &[(&str, &str)]) -> TestApp {
    init_test_log();
    let database = TestDatabase::create(db).await;
    let jwt_secret =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    // Attachments go to a folder of the test's own (never the working folder's data/).
    let storage = tempfile::tempdir().expect("a temporary folder for attachments");
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("DATABASE_URL", database.url.clone()),
        ("JWT_SECRET", jwt_secret),
        (
            "STORAGE_URL",
            format!("file://{}", storage.path().display()),
        ),
    ]);
    for (name, value) in extra_vars {
        vars.insert(name, (*value).to_owned());
    }
    let config = Config::from_map(&vars).expect("the test configuration is valid");
    let app = Application::build(config)
        .await
        .expect("the application builds");
    let addr = app.local_addr();
    let state = app.state().clone();
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = shutdown_rx.await;
    }));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    TestApp {
        addr,
        client,
        state,
        shutdown: Some(shutdown_tx),
        server: Some(server),
        users_created: AtomicUsize::new(0),
        database,
        storage,
    }
}

/// Someone who signed up through the API, with what the register answer gave them.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password: String,
    /// The access token of the session register opened.
    pub token: String,
    pub refresh_token: String,
    pub session_id: Uuid,
    /// The whole register answer.
    pub login: Value,
}

impl TestApp {
    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// `PATCH /api/users/{id}` with a JSON body.
    pub async fn patch_user(
        &self,
        token: &str,
        id: impl std::fmt::Display,
        body: &Value,
    ) -> reqwest::Response {
        self.patch_with_token(&format!("/api/users/{id}"), token, body)
            .await
    }

    pub async fn patch_with_token(
        &self,
        path: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn delete_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// A request carrying only the given `Cookie` header value (e.g. `craftcode_token=…`).
    pub fn with_cookie(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header(reqwest::header::COOKIE, cookie)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json_with_token(
        &self,
        path: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A raw body with a chosen content type, for hostile-input tests.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Registers through the API and answers the login response; panics unless it is a 201.
    pub async fn register(&self, email: &str, name: &str, password: &str) -> Value {
        let response = self
            .post_json(
                "/api/auth/register",
                &json!({ "email": email, "name": name, "password": password }),
            )
            .await;
        expect_json(response, 201).await
    }

    /// Signs in through the API and answers the login response; panics unless it is a 200.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        let response = self
            .post_json(
                "/api/auth/login",
                &json!({ "email": email, "password": password }),
            )
            .await;
        expect_json(response, 200).await
    }

    /// Registers a new person named `name` with a unique email and [`PASSWORD`]. The first one
    /// registered on an app is its admin.
    pub async fn create_user(&self, name: &str) -> TestUser {
        let n = self.users_created.fetch_add(1, Ordering::Relaxed);
        let email = format!("{}-{n}@example.com", name.to_lowercase().replace(' ', "."));
        let login = self.register(&email, name, PASSWORD).await;
        TestUser {
            id: uuid_at(&login, "/user/id"),
            email,
            name: name.to_owned(),
            password: PASSWORD.to_owned(),
            token: str_at(&login, "/token").to_owned(),
            refresh_token: str_at(&login, "/refreshToken").to_owned(),
            session_id: uuid_at(&login, "/session/id"),
            login,
        }
    }

    /// The account as the database holds it now.
    pub async fn stored_user(&self, id: Uuid) -> User {
        self.state
            .store
            .find_user(id)
            .await
            .expect("the database answers")
            .expect("the user exists")
    }

    /// Stops the server gracefully and waits until it has finished; panics if it failed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("the server task did not panic")
                .expect("the server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Checks the status (printing the body when it differs) and answers the JSON body.
pub async fn expect_json(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    assert_no_internals(&text);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Checks an error answer: its status, `{"error": {"code", "message"}}` with this code and a
/// human message, JSON content type, nothing internal. Answers the `error` object.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = expect_json(response, status).await;
    assert!(
        content_type.starts_with("application/json"),
        "error answered as {content_type:?}"
    );
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no `error` object in {body}"));
    assert_eq!(error["code"], code, "unexpected error: {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error needs a human message: {body}"
    );
    error.clone()
}

/// Nothing a client receives may show SQL, internal names, panics or stack traces.
pub fn assert_no_internals(text: &str) {
    for leak in [
        "sqlx",
        "SELECT",
        "INSERT",
        "UPDATE ",
        "panicked",
        "stack backtrace",
        "src/",
        ".rs:",
        "RUST_BACKTRACE",
    ] {
        assert!(!text.contains(leak), "a response leaks {leak:?}: {text}");
    }
}

/// The string at a JSON pointer; panics with the document when it is missing.
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

/// The UUID at a JSON pointer.
pub fn uuid_at(value: &Value, pointer: &str) -> Uuid {
    str_at(value, pointer)
        .parse()
        .unwrap_or_else(|e| panic!("{pointer} is not a UUID ({e}) in {value}"))
}

/// The payload of a JWT, without checking its signature.
pub fn jwt_claims(token: &str) -> Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {token}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("the JWT payload is base64url");
    serde_json::from_slice(&bytes).expect("the JWT payload is JSON")
}

/// Checks the contract's time format: RFC 3339, UTC, milliseconds (`2026-11-25T18:30:53.123Z`).
pub fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a time string"));
    assert!(
        text.len() == 24 && text.ends_with('Z') && text.as_bytes()[19] == b'.',
        "{text} is not RFC 3339 UTC with milliseconds"
    );
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text} is not RFC 3339: {e}"));
}

/// One `Set-Cookie` header, split into its parts.
#[derive(Debug, Clone)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// Attribute names in lowercase, with their value (empty for flags like `HttpOnly`).
    pub attributes: HashMap<String, String>,
}

impl SetCookie {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn has(&self, flag: &str) -> bool {
        self.attributes.contains_key(&flag.to_ascii_lowercase())
    }
}

/// Every `Set-Cookie` of a response, by cookie name.
pub fn set_cookies(headers: &HeaderMap) -> HashMap<String, SetCookie> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|header| {
            let text = header.to_str().expect("a readable Set-Cookie");
            let mut parts = text.split(';').map(str::trim);
            let (name, value) = parts
                .next()
                .and_then(|pair| pair.split_once('='))
                .unwrap_or_else(|| panic!("malformed Set-Cookie: {text}"));
            let attributes = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_owned()),
                    None => (p.to_ascii_lowercase(), String::new()),
                })
                .collect();
            let cookie = SetCookie {
                name: name.to_owned(),
                value: value.to_owned(),
                attributes,
            };
            (cookie.name.clone(), cookie)
        })
        .collect()
}

/// Sends the server's log to the test output when `TEST_LOG` is set; otherwise tests are quiet.
fn init_test_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}
