//! The `Store`: the pool it runs on (SQLite or PostgreSQL), the SQLite message writer beside it,
//! connecting, migrating, and the `on_pool!` macro every table file runs its statements with.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{conversations, writer};

/// A failure of the database itself; callers turn it into a 500 or a start-up error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// From the SQLite message writer, which has a connection of its own.
    #[error("database error: {0}")]
    Writer(#[from] rusqlite::Error),
}

impl StoreError {
    /// The database cannot be reached right now (no connection in time, or the one in use
    /// broke), as opposed to a statement that failed: worth trying again shortly.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) => matches!(
                e,
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            ),
            Self::Writer(rusqlite::Error::SqliteFailure(e, _)) => {
                matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
            }
            _ => false,
        }
    }
}

/// Which database engine backs the store, as the self-test reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database, shared by every request and socket.
#[derive(Clone, Debug)]
pub struct Store {
    pub(super) pool: Pool,
    /// On SQLite, the one task that commits message inserts and delivery marks in batches.
    pub(super) writer: Option<writer::Writer>,
    /// Each pair's direct conversation, once looked up.
    pub(super) direct_ids: std::sync::Arc<conversations::DirectIds>,
}

/// Runs the same statement-building expression on whichever pool the store holds; the second
/// form also names the database type, for code that must spell it (query builders).
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::database::Pool::Sqlite($pool) => $body,
            $crate::store::database::Pool::Postgres($pool) => $body,
        }
    };
    ($store:expr, $pool:ident, $db:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::database::Pool::Sqlite($pool) => {
                type $db = sqlx::Sqlite;
                $body
            }
            $crate::store::database::Pool::Postgres($pool) => {
                type $db = sqlx::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// How long a request waits for a PostgreSQL connection before the database counts as down.
const DATABASE_WAIT: Duration = Duration::from_millis(1500);

/// The page size of a new SQLite database file.
const SQLITE_PAGE_SIZE: u32 = 1024;

impl Store {
    /// Connects to `sqlite://path` (the file and its folder are created) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if !url.starts_with("sqlite:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                // A database that does not answer is told to the client within two seconds
                // (503 `unavailable`), not after a hang.
                .acquire_timeout(DATABASE_WAIT)
                .connect_with(options)
                .await?;
            return Ok(Self {
                pool: Pool::Postgres(pool),
                writer: None,
                direct_ids: Default::default(),
            });
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // For a new file only (an existing one keeps its size): every commit writes each page
            // it changed to the WAL whole, and a message changes a page in each of the table's
            // indexes, so smaller pages mean 2.5 times less written per message (measured).
            .page_size(SQLITE_PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // A deleted message's old content is zeroed in the page it leaves, not left in free
            // space (FAST: only where that costs no extra write).
            .pragma("secure_delete", "fast")
            .busy_timeout(Duration::from_secs(5));
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await?;
        // The writer opens the file itself; an in-memory database (`sqlite::memory:`, for trying
        // things out) lives only in the pool's connections, so its sends go through the pool.
        let in_memory = url.contains(":memory:")
            || url
                .split_once('?')
                .is_some_and(|(_, query)| query.split('&').any(|pair| pair == "mode=memory"));
        let writer = if in_memory {
            None
        } else {
            let file = options.get_filename().to_owned();
            Some(writer::Writer::spawn(file, pool.clone())?)
        };
        Ok(Self {
            writer,
            pool: Pool::Sqlite(pool),
            direct_ids: Default::default(),
        })
    }

    pub fn kind(&self) -> DatabaseKind {
        match self.pool {
            Pool::Sqlite(_) => DatabaseKind::Sqlite,
            Pool::Postgres(_) => DatabaseKind::Postgres,
        }
    }

    /// Applies the migrations that have not run yet.
    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Pool::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// A round trip to the database; answers how long it took.
    #[tracing::instrument(skip_all)]
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(started.elapsed())
    }

    /// Whether [`Store::close`] was called.
    pub fn is_closed(&self) -> bool {
        on_pool!(self, pool => pool.is_closed())
    }

    /// Closes every connection; used at shutdown so SQLite checkpoints its WAL.
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        on_pool!(self, pool => pool.close().await)
    }
}
