//! The command line: `serve` (the default), `migrate` and `user create|list|set`.

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::app::{Application, shutdown_signal};
use crate::auth::password;
use crate::config::{Config, LogFormat};
use crate::domain::{Email, Name, Password};
use crate::store::{NewUser, Store, UserFlags};

#[derive(Parser, Debug)]
#[command(name = "craftcode", version, about = "CraftCode Realtime server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: Box<ServeArgs>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage accounts from the command line (e.g. to recover a lost admin).
    #[command(subcommand)]
    User(UserCommand),
    /// Create throw-away users with one session each and write their access tokens (valid 24 h)
    /// and ids, one per line, for load tests.
    Seed {
        /// How many users.
        #[arg(long)]
        users: usize,
        /// Give every user this many conversation partners (an even number): user n gets a
        /// direct conversation with the n+1 … n+K/2 next ones in the ids file, cyclically, so
        /// each has the K/2 before and the K/2 after it (for the `presence` benchmark).
        #[arg(long, default_value_t = 0)]
        partners: usize,
        /// Where to write one access token per line.
        #[arg(long)]
        tokens_out: std::path::PathBuf,
        /// Where to write one user id per line (same order).
        #[arg(long)]
        ids_out: std::path::PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Make the account an admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (otherwise the account has no password).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Change an account's rights or status.
    Set {
        #[arg(long)]
        email: String,
        #[arg(long)]
        admin: Option<bool>,
        #[arg(long)]
        active: Option<bool>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// sqlite://path or postgres://…
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/craftcode.db",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// Every setting of the contract's §7 as a flag; each also reads its environment variable.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    #[arg(long, env = "HOST")]
    host: Option<String>,
    #[arg(long, env = "PORT")]
    port: Option<String>,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    #[arg(long, env = "REDIS_PREFIX")]
    redis_prefix: Option<String>,
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    #[arg(long, env = "JWT_TTL")]
    jwt_ttl: Option<String>,
    #[arg(long, env = "SESSION_TTL")]
    session_ttl: Option<String>,
    #[arg(long, env = "AUTH_TIMEOUT")]
    auth_timeout: Option<String>,
    #[arg(long, env = "BASE_URL")]
    base_url: Option<String>,
    #[arg(long, env = "APP_URL")]
    app_url: Option<String>,
    #[arg(long, env = "CORS_ORIGINS")]
    cors_origins: Option<String>,
    #[arg(long, env = "ALLOW_SIGNUP")]
    allow_signup: Option<String>,
    #[arg(long, env = "GOOGLE_CLIENT_ID")]
    google_client_id: Option<String>,
    #[arg(long, env = "GOOGLE_CLIENT_SECRET", hide_env_values = true)]
    google_client_secret: Option<String>,
    #[arg(long, env = "GOOGLE_AUTH_URL")]
    google_auth_url: Option<String>,
    #[arg(long, env = "GOOGLE_TOKEN_URL")]
    google_token_url: Option<String>,
    #[arg(long, env = "GOOGLE_USERINFO_URL")]
    google_userinfo_url: Option<String>,
    #[arg(long, env = "GITHUB_CLIENT_ID")]
    github_client_id: Option<String>,
    #[arg(long, env = "GITHUB_CLIENT_SECRET", hide_env_values = true)]
    github_client_secret: Option<String>,
    #[arg(long, env = "GITHUB_AUTH_URL")]
    github_auth_url: Option<String>,
    #[arg(long, env = "GITHUB_TOKEN_URL")]
    github_token_url: Option<String>,
    #[arg(long, env = "GITHUB_API_URL")]
    github_api_url: Option<String>,
    #[arg(long, env = "MAX_CONNECTIONS")]
    max_connections: Option<String>,
    #[arg(long, env = "MAX_CONNECTIONS_PER_USER")]
    max_connections_per_user: Option<String>,
    #[arg(long, env = "GROUP_MAX_MEMBERS")]
    group_max_members: Option<String>,
    #[arg(long, env = "MESSAGE_EDIT_WINDOW")]
    message_edit_window: Option<String>,
    #[arg(long, env = "PRESENCE_INTERVAL")]
    presence_interval: Option<String>,
    #[arg(long, env = "PRESENCE_TTL")]
    presence_ttl: Option<String>,
    #[arg(long, env = "PRESENCE_BROADCAST_MAX")]
    presence_broadcast_max: Option<String>,
    #[arg(long, env = "PRESENCE_WATCH_MAX")]
    presence_watch_max: Option<String>,
    #[arg(long, env = "STORAGE_URL")]
    storage_url: Option<String>,
    #[arg(long, env = "S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    #[arg(long, env = "S3_REGION")]
    s3_region: Option<String>,
    #[arg(long, env = "UPLOAD_MAX_SIZE")]
    upload_max_size: Option<String>,
    #[arg(long, env = "UPLOAD_TTL")]
    upload_ttl: Option<String>,
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    #[arg(long, env = "LOG_FORMAT")]
    log_format: Option<String>,
}

impl ServeArgs {
    /// The value of a §7 variable: the flag (which clap already fills from the environment),
    /// else the environment itself for variables without a flag (aliases, `APP_ENV`).
    fn lookup(&self, var: &str) -> Option<String> {
        let flag = match var {
            "HOST" => &self.host,
            "PORT" => &self.port,
            "DATABASE_URL" => &self.database_url,
            "REDIS_URL" => &self.redis_url,
            "REDIS_PREFIX" => &self.redis_prefix,
            "JWT_SECRET" => &self.jwt_secret,
            "JWT_TTL" => &self.jwt_ttl,
            "SESSION_TTL" => &self.session_ttl,
            "AUTH_TIMEOUT" => &self.auth_timeout,
            "BASE_URL" => &self.base_url,
            "APP_URL" => &self.app_url,
            "CORS_ORIGINS" => &self.cors_origins,
            "ALLOW_SIGNUP" => &self.allow_signup,
            "GOOGLE_CLIENT_ID" => &self.google_client_id,
            "GOOGLE_CLIENT_SECRET" => &self.google_client_secret,
            "GOOGLE_AUTH_URL" => &self.google_auth_url,
            "GOOGLE_TOKEN_URL" => &self.google_token_url,
            "GOOGLE_USERINFO_URL" => &self.google_userinfo_url,
            "GITHUB_CLIENT_ID" => &self.github_client_id,
            "GITHUB_CLIENT_SECRET" => &self.github_client_secret,
            "GITHUB_AUTH_URL" => &self.github_auth_url,
            "GITHUB_TOKEN_URL" => &self.github_token_url,
            "GITHUB_API_URL" => &self.github_api_url,
            "MAX_CONNECTIONS" => &self.max_connections,
            "MAX_CONNECTIONS_PER_USER" => &self.max_connections_per_user,
            "GROUP_MAX_MEMBERS" => &self.group_max_members,
            "MESSAGE_EDIT_WINDOW" => &self.message_edit_window,
            "PRESENCE_INTERVAL" => &self.presence_interval,
            "PRESENCE_TTL" => &self.presence_ttl,
            "PRESENCE_BROADCAST_MAX" => &self.presence_broadcast_max,
            "PRESENCE_WATCH_MAX" => &self.presence_watch_max,
            "STORAGE_URL" => &self.storage_url,
            "S3_ENDPOINT" => &self.s3_endpoint,
            "S3_REGION" => &self.s3_region,
            "UPLOAD_MAX_SIZE" => &self.upload_max_size,
            "UPLOAD_TTL" => &self.upload_ttl,
            "METRICS_TOKEN" => &self.metrics_token,
            "LOG_FORMAT" => &self.log_format,
            _ => return std::env::var(var).ok(),
        };
        flag.clone()
    }

    pub fn log_format(&self) -> LogFormat {
        match self.log_format.as_deref() {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Pretty,
        }
    }
}

impl Cli {
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            Some(Command::Serve(args)) => args.log_format(),
            _ => self.serve.log_format(),
        }
    }
}

/// Runs the chosen command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve(*cli.serve).await,
        Some(Command::Serve(args)) => serve(*args).await,
        Some(Command::Migrate(db)) => {
            open_store(&db).await?;
            println!("migrations applied");
            Ok(())
        }
        Some(Command::User(command)) => user(command).await,
        Some(Command::Seed {
            users,
            partners,
            tokens_out,
            ids_out,
            db,
        }) => seed(users, partners, &tokens_out, &ids_out, db).await,
    }
}

/// Seeded tokens live this long, whatever `JWT_TTL` says.
const SEED_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

async fn seed(
    count: usize,
    partners: usize,
    tokens_out: &std::path::Path,
    ids_out: &std::path::Path,
    db: DatabaseArgs,
) -> anyhow::Result<()> {
    use std::io::Write;
    if count == 0 || count > 1_000_000 {
        bail!("--users must be between 1 and 1000000");
    }
    if partners % 2 == 1 || partners >= count.max(1) || partners > 1_000 {
        bail!("--partners must be an even number below --users and at most 1000");
    }
    // The server's own settings (JWT_SECRET, or the one kept in data/), so its tokens verify.
    let config = Config::load(|var| match var {
        "DATABASE_URL" => Some(db.database_url.clone()),
        _ => std::env::var(var).ok(),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = open_store(&db).await?;
    let started = std::time::Instant::now();
    let now = crate::timestamp::Timestamp::now();
    let expires_at = now.plus(SEED_TOKEN_TTL.max(config.session_ttl));
    let seeded = store.seed_users(count, expires_at).await?;
    if partners > 0 {
        let ids: Vec<uuid::Uuid> = seeded.iter().map(|s| s.user.id).collect();
        store.seed_partners(&ids, partners / 2).await?;
    }
    let keys = crate::auth::TokenKeys::new(config.jwt_secret.expose().as_bytes(), SEED_TOKEN_TTL);
    let mut tokens = std::io::BufWriter::new(
        std::fs::File::create(tokens_out)
            .with_context(|| format!("cannot write {}", tokens_out.display()))?,
    );
    let mut ids = std::io::BufWriter::new(
        std::fs::File::create(ids_out)
            .with_context(|| format!("cannot write {}", ids_out.display()))?,
    );
    for s in &seeded {
        let token = keys.issue_at(&s.user, s.session_id, now, now.plus(SEED_TOKEN_TTL));
        writeln!(tokens, "{}", token.token)?;
        writeln!(ids, "{}", s.user.id)?;
    }
    tokens.flush()?;
    ids.flush()?;
    eprintln!(
        "seeded {count} users with one session each and {partners} partners each in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(|var| args.lookup(var)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await
}

async fn open_store(db: &DatabaseArgs) -> anyhow::Result<Store> {
    let store = Store::connect(&db.database_url)
        .await
        .context("DATABASE_URL: cannot open the database")?;
    store.migrate().await?;
    Ok(store)
}

async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            email,
            name,
            admin,
            password_stdin,
            db,
        } => {
            let email = Email::parse(&email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
            let name = Name::parse(&name).map_err(|m| anyhow::anyhow!("--name {m}"))?;
            let hash = if password_stdin {
                let mut raw = String::new();
                std::io::stdin().read_to_string(&mut raw)?;
                let raw = raw.trim_end_matches(['\r', '\n']);
                let password =
                    Password::parse(raw).map_err(|m| anyhow::anyhow!("the password {m}"))?;
                Some(password::hash(password.expose().to_owned()).await?)
            } else {
                None
            };
            let store = open_store(&db).await?;
            let user = store
                .insert_user(&NewUser {
                    email: email.as_str(),
                    name: name.as_str(),
                    password_hash: hash.as_deref(),
                    is_admin: admin,
                    is_active: true,
                })
                .await?
                .with_context(|| format!("an account with email {} exists", email.as_str()))?;
            println!("{}", serde_json::to_string(&user)?);
            Ok(())
        }
        UserCommand::List { db } => {
            let store = open_store(&db).await?;
            for user in store.list_all_users().await? {
                println!("{}", serde_json::to_string(&user)?);
            }
            Ok(())
        }
        UserCommand::Set {
            email,
            admin,
            active,
            db,
        } => {
            if admin.is_none() && active.is_none() {
                bail!("nothing to change: pass --admin true|false and/or --active true|false");
            }
            let store = open_store(&db).await?;
            let email = Email::parse(&email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
            let user = store
                .find_user_by_email(email.as_str())
                .await?
                .with_context(|| format!("no account with email {}", email.as_str()))?;
            let loses_admin =
                user.is_admin && user.is_active && (admin == Some(false) || active == Some(false));
            if loses_admin && store.count_other_active_admins(user.id).await? == 0 {
                bail!(
                    "{} is the last active admin; promote another account first",
                    user.email
                );
            }
            let flags = UserFlags {
                is_admin: admin,
                is_active: active,
            };
            let user = store
                .set_user_flags(user.id, flags)
                .await?
                .context("the account disappeared")?;
            if active == Some(false) {
                store
                    .revoke_user_sessions(user.id, "account_disabled")
                    .await?;
            }
            println!("{}", serde_json::to_string(&user)?);
            Ok(())
        }
    }
}
