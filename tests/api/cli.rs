//! The `craftcode` binary itself, as an operator runs it: `migrate`, `user create|list|set`, and
//! start-up refusing bad configuration. Each run gets an empty environment and a temporary
//! current folder, so nothing it might write lands in the repository.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

/// How long one command may take before the test kills it and fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// Whatever the run left in its current folder.
    files_left: Vec<String>,
}

impl Run {
    #[track_caller]
    pub(crate) fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "the command failed: {self:#?}");
        self
    }

    /// Checks the run failed with exactly one line of explanation that mentions `needle`.
    #[track_caller]
    fn assert_refused_with_one_line(&self, needle: &str) {
        assert!(!self.status.success(), "the command succeeded: {self:#?}");
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "one line of explanation: {self:#?}");
        assert!(
            lines[0].contains(needle),
            "{needle:?} not in {:?}",
            lines[0]
        );
        assert_no_internals(&self.stderr);
    }

    /// One JSON object per line of standard output.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

/// Runs `craftcode args…` with only `env` set, feeding `stdin` if given, in a fresh folder.
pub(crate) async fn craftcode(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || run_blocking(&args, &env, stdin.as_deref()))
        .await
        .expect("the command runner did not panic")
}

fn run_blocking(args: &[String], env: &[(String, String)], stdin: Option<&str>) -> Run {
    let dir = tempfile::Builder::new()
        .prefix("craftcode-cli-")
        .tempdir()
        .expect("a temporary folder");
    let mut child = Command::new(env!("CARGO_BIN_EXE_craftcode"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir.path())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the craftcode binary starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("a stdin pipe");
        pipe.write_all(input.as_bytes()).expect("writing stdin");
    }
    let mut stdout = child.stdout.take().expect("a stdout pipe");
    let mut stderr = child.stderr.take().expect("a stderr pipe");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for craftcode") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`craftcode {}` still running after {COMMAND_TIMEOUT:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let files_left = std::fs::read_dir(dir.path())
        .expect("the folder is readable")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    Run {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
        files_left,
    }
}

/// A JWT secret long enough for the server.
const SECRET: &str = "an-operator-secret-that-is-long-enough-for-hs256";

db_test!(migrate_prepares_an_empty_database_and_can_run_again);
async fn migrate_prepares_an_empty_database_and_can_run_again(db: Db) {
    let database = TestDatabase::create(db).await;
    let run = craftcode(&["migrate"], &[("DATABASE_URL", &database.url)], None).await;
    assert!(
        run.assert_success().stdout.contains("migrations applied"),
        "{run:#?}"
    );
    if let Some(file) = &database.sqlite_file {
        assert!(file.exists(), "the SQLite file is created");
    }
    let url_flag = ["migrate", "--database-url", database.url.as_str()];
    craftcode(&url_flag, &[], None).await.assert_success();
    let list = craftcode(
        &["user", "list", "--database-url", &database.url],
        &[],
        None,
    )
    .await;
    assert_eq!(list.assert_success().stdout, "", "no accounts yet");
}

db_test!(a_user_created_with_password_stdin_signs_in_over_http);
async fn a_user_created_with_password_stdin_signs_in_over_http(db: Db) {
    let app = spawn_app(db).await;
    let run = craftcode(
        &[
            "user",
            "create",
            "--email",
            "Ops@Example.COM",
            "--name",
            "Ops Person",
            "--admin",
            "--password-stdin",
        ],
        &[("DATABASE_URL", &app.database.url)],
        Some("an operator password\n"),
    )
    .await;
    let created = &run.assert_success().json_lines()[0];
    assert_eq!(created["email"], "ops@example.com");
    assert_eq!(created["isAdmin"], true);
    assert!(!run.stdout.contains("argon2"), "{run:#?}");

    let login = app.login("ops@example.com", "an operator password").await;
    assert_eq!(login["user"]["id"], created["id"]);
    assert_eq!(login["user"]["name"], "Ops Person");
    assert_eq!(login["user"]["isAdmin"], true);
    // The trailing newline was not part of the password.
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": "ops@example.com", "password": "an operator password\n" }),
        )
        .await;
    expect_error(response, 401, "invalid_credentials").await;
}

db_test!(user_create_refuses_bad_input_and_taken_emails);
async fn user_create_refuses_bad_input_and_taken_emails(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let env = [("DATABASE_URL", app.database.url.as_str())];
    let taken = craftcode(
        &[
            "user",
            "create",
            "--email",
            &ada.email.to_uppercase(),
            "--name",
            "Again",
        ],
        &env,
        None,
    )
    .await;
    taken.assert_refused_with_one_line("exists");
    let short = craftcode(
        &[
            "user",
            "create",
            "--email",
            "short@example.com",
            "--name",
            "Short",
            "--password-stdin",
        ],
        &env,
        Some("short\n"),
    )
    .await;
    short.assert_refused_with_one_line("at least 8 characters");
    let bad_email = craftcode(
        &["user", "create", "--email", "not-an-email", "--name", "X"],
        &env,
        None,
    )
    .await;
    bad_email.assert_refused_with_one_line("--email");

    // Without --password-stdin the account has no password: nothing signs it in.
    craftcode(
        &[
            "user",
            "create",
            "--email",
            "nopass@example.com",
            "--name",
            "No Password",
        ],
        &env,
        None,
    )
    .await
    .assert_success();
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": "nopass@example.com", "password": PASSWORD }),
        )
        .await;
    expect_error(response, 401, "invalid_credentials").await;
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": "short@example.com", "password": "short" }),
        )
        .await;
    expect_error(response, 401, "invalid_credentials").await;
}

db_test!(user_list_prints_every_account_oldest_first);
async fn user_list_prints_every_account_oldest_first(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let run = craftcode(
        &["user", "list"],
        &[("DATABASE_URL", &app.database.url)],
        None,
    )
    .await;
    let users = run.assert_success().json_lines();
    let emails: Vec<&str> = users.iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, [ada.email.as_str(), bob.email.as_str()]);
    assert_eq!(users[0]["isAdmin"], true);
    assert_eq!(users[1]["isAdmin"], false);
    assert!(!run.stdout.to_lowercase().contains("password"), "{run:#?}");
}

db_test!(the_last_active_admin_cannot_be_deactivated_or_demoted);
async fn the_last_active_admin_cannot_be_deactivated_or_demoted(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let env = [("DATABASE_URL", app.database.url.as_str())];
    for flag in ["--active", "--admin"] {
        let run = craftcode(
            &["user", "set", "--email", &ada.email, flag, "false"],
            &env,
            None,
        )
        .await;
        run.assert_refused_with_one_line("last active admin");
    }
    let me = expect_json(app.get_with_token("/api/auth/me", &ada.token).await, 200).await;
    assert_eq!(me["user"]["isAdmin"], true);
    assert_eq!(me["user"]["isActive"], true);

    let nothing = craftcode(&["user", "set", "--email", &ada.email], &env, None).await;
    nothing.assert_refused_with_one_line("nothing to change");
    let unknown = craftcode(
        &[
            "user",
            "set",
            "--email",
            "ghost@example.com",
            "--active",
            "false",
        ],
        &env,
        None,
    )
    .await;
    unknown.assert_refused_with_one_line("no account");
}

db_test!(deactivating_a_user_from_the_command_line_ends_their_sessions);
async fn deactivating_a_user_from_the_command_line_ends_their_sessions(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let env = [("DATABASE_URL", app.database.url.as_str())];
    craftcode(
        &[
            "user",
            "create",
            "--email",
            "second@example.com",
            "--name",
            "Second",
            "--admin",
        ],
        &env,
        None,
    )
    .await
    .assert_success();
    let run = craftcode(
        &["user", "set", "--email", &ada.email, "--active", "false"],
        &env,
        None,
    )
    .await;
    let changed = &run.assert_success().json_lines()[0];
    assert_eq!(changed["isActive"], false);

    let response = app.get_with_token("/api/auth/me", &ada.token).await;
    assert_eq!(response.status(), 401);
    let response = app
        .post_json(
            "/api/auth/refresh",
            &json!({ "refreshToken": ada.refresh_token }),
        )
        .await;
    expect_error(response, 401, "invalid_refresh_token").await;
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({ "email": ada.email, "password": ada.password }),
        )
        .await;
    expect_error(response, 403, "account_disabled").await;

    craftcode(
        &["user", "set", "--email", &ada.email, "--active", "true"],
        &env,
        None,
    )
    .await
    .assert_success();
    app.login(&ada.email, &ada.password).await;
}

#[tokio::test]
async fn serve_refuses_a_bad_setting_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("craftcode.db").display());
    for (var, value) in [
        ("PORT", "eighty"),
        ("HOST", "example.com"),
        ("DATABASE_URL", "mysql://localhost/craftcode"),
        ("JWT_TTL", "soon"),
        ("ALLOW_SIGNUP", "maybe"),
        ("BASE_URL", "ftp://example.com"),
        ("CORS_ORIGINS", "not an origin"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("PRESENCE_TTL", "2s"),
        ("PUSH_DELAY", "soon"),
        ("PUSH_PREVIEW", "maybe"),
        ("PUSH_TIMEOUT", "0s"),
        ("VAPID_PRIVATE_KEY", "c2hvcnQ"),
        ("CALL_RING_TIMEOUT", "2s"),
        ("STUN_URLS", "https://stun.example.com"),
        ("TURN_URLS", "turn:turn.example.com:3478"),
        ("TURN_TTL", "10s"),
    ] {
        let mut env = vec![
            ("PORT", "0"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", database_url.as_str()),
        ];
        env.retain(|(k, _)| *k != var);
        env.push((var, value));
        for args in [&["serve"][..], &[][..]] {
            let run = craftcode(args, &env, None).await;
            run.assert_refused_with_one_line(var);
        }
    }
    let run = craftcode(
        &["serve", "--port", "eighty"],
        &[("JWT_SECRET", SECRET)],
        None,
    )
    .await;
    run.assert_refused_with_one_line("PORT");
    assert!(run.files_left.is_empty(), "nothing is written: {run:#?}");
}

#[tokio::test]
async fn serve_refuses_to_start_when_redis_does_not_answer_and_keeps_its_password_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("craftcode.db").display());
    // Port 1 on loopback: nothing listens there.
    let run = craftcode(
        &["serve"],
        &[
            ("PORT", "0"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", &database_url),
            ("REDIS_URL", "redis://:hunter2-redis-password@127.0.0.1:1"),
        ],
        None,
    )
    .await;
    run.assert_refused_with_one_line("REDIS_URL");
    assert!(
        !run.stderr.contains("hunter2"),
        "the password is not echoed: {run:#?}"
    );
}

#[tokio::test]
async fn serve_refuses_a_jwt_secret_shorter_than_32_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("craftcode.db").display());
    let short = "x".repeat(31);
    let run = craftcode(
        &["serve"],
        &[
            ("PORT", "0"),
            ("JWT_SECRET", &short),
            ("DATABASE_URL", &database_url),
        ],
        None,
    )
    .await;
    run.assert_refused_with_one_line("JWT_SECRET");
    assert!(run.stderr.contains("32"), "{run:#?}");
    assert!(
        run.files_left.is_empty(),
        "no secret or data folder is written: {run:#?}"
    );
    assert!(
        !run.stderr.contains(&short),
        "the secret is not echoed: {run:#?}"
    );
}

db_test!(seed_writes_one_working_token_and_one_id_per_user);
async fn seed_writes_one_working_token_and_one_id_per_user(db: Db) {
    let app = spawn_app(db).await;
    let out = tempfile::tempdir().expect("a temporary folder");
    let tokens_path = out.path().join("tokens.txt");
    let ids_path = out.path().join("ids.txt");
    let secret = app.state.config.jwt_secret.expose().to_owned();
    let run = craftcode(
        &[
            "seed",
            "--users",
            "50",
            "--tokens-out",
            tokens_path.to_str().unwrap(),
            "--ids-out",
            ids_path.to_str().unwrap(),
        ],
        &[("DATABASE_URL", &app.database.url), ("JWT_SECRET", &secret)],
        None,
    )
    .await;
    run.assert_success();
    let tokens: Vec<String> = std::fs::read_to_string(&tokens_path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let ids: Vec<String> = std::fs::read_to_string(&ids_path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!((tokens.len(), ids.len()), (50, 50));
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 50, "every id is a different user");

    for (token, id) in [(&tokens[0], &ids[0]), (&tokens[49], &ids[49])] {
        let me = expect_json(app.get_with_token("/api/auth/me", token).await, 200).await;
        assert_eq!(me["user"]["id"], json!(id));
        assert_eq!(me["user"]["isAdmin"], false);
        let claims = jwt_claims(token);
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            24 * 3600,
            "seeded tokens are valid for 24 h"
        );
    }
}

#[tokio::test]
async fn seed_refuses_zero_users() {
    let out = tempfile::tempdir().expect("a temporary folder");
    let path = out.path().join("x.txt");
    let path = path.to_str().unwrap();
    let run = craftcode(
        &[
            "seed",
            "--users",
            "0",
            "--tokens-out",
            path,
            "--ids-out",
            path,
        ],
        &[
            ("DATABASE_URL", "sqlite://seed.db"),
            ("JWT_SECRET", &"s".repeat(32)),
        ],
        None,
    )
    .await;
    run.assert_refused_with_one_line("--users");
}
