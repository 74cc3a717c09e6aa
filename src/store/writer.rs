//! Group commit for SQLite. SQLite has one write lock per database file, so eight pooled
//! connections each running its own one-row transaction mostly wait for each other. Instead one
//! thread owns one write connection and commits every message insert and delivery mark that is
//! pending when it gets to them in one transaction (a batch); each caller gets its answer only
//! after that transaction has committed, so an acknowledged message is always stored.
//!
//! Batches form by themselves: while one commits, the next sends queue up behind it. Nothing
//! waits on a timer, so a lone message is committed as soon as the writer is free.
//!
//! The writer talks to SQLite through rusqlite on its own thread, not through sqlx: sqlx hands
//! every statement to a worker thread and back (BEGIN, each statement, COMMIT), and those
//! hand-offs cost more than the writes. Here a batch is one call into SQLite per operation, with
//! the two statements prepared once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, named_params};
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::database::StoreError;
use super::messages::Message;
use super::messages::{INSERT_MESSAGE, MARK_DELIVERED, MessageRow};
use crate::timestamp::Timestamp;

/// The most operations one transaction takes; more wait for the next one.
const MAX_BATCH: usize = 1024;
/// How many operations may wait for the writer before senders wait for room.
const QUEUE: usize = 16 * 1024;
/// How often another connection checkpoints the WAL while the writer has been writing.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// From how many frames (pages) in the WAL the writer finishes a checkpoint itself, so that its
/// next commit starts the WAL over (see [`checkpoint_while_writing`]).
const RESTART_FRAMES: i64 = 8 * 1024;
/// What a restarted WAL file is cut back to (SQLite's `journal_size_limit`).
const WAL_KEEP_BYTES: i64 = 64 * 1024 * 1024;
/// The write connection's page cache (SQLite's `cache_size`, in KiB).
const WRITER_CACHE_KIB: u32 = 64 * 1024;
/// How long the writer waits for the pool's occasional other writers to release the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A message to insert, with the id and time it will be stored under; `mentions` and `system`
/// as the JSON text the row keeps.
#[derive(Debug)]
pub(super) struct NewMessage {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub kind: &'static str,
    pub from: Uuid,
    pub to: Option<Uuid>,
    pub content: String,
    pub client_id: Option<String>,
    pub reply_to_id: Option<Uuid>,
    pub mentions: String,
    pub system: Option<String>,
    pub created_at: Timestamp,
}

type Reply = oneshot::Sender<Result<Option<Message>, StoreError>>;

enum Job {
    /// Answers the stored message, or `None` when it was not stored: this sender already used
    /// this `clientId`, or the recipient is gone or disabled.
    Insert(NewMessage, Reply),
    /// Answers the message now marked delivered, or `None` if it already was (or is not theirs).
    Deliver(Delivery, Reply),
    /// Copies what is left of the WAL into the database file, between two batches.
    Checkpoint,
    /// Closes the write connection, so that the last one to close checkpoints the WAL.
    Close(oneshot::Sender<()>),
}

#[derive(Clone, Copy, Debug)]
struct Delivery {
    id: Uuid,
    recipient: Uuid,
    at: Timestamp,
}

/// The handle to the writer thread; cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread for the database file at `path`. It opens its connection when
    /// the first operation arrives, so commands that never write messages (migrate, seed) never
    /// open it. Stops when every handle is gone.
    pub fn spawn(path: PathBuf, pool: SqlitePool) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || run(&path, queue, &counted))
            .map_err(sqlx::Error::Io)?;
        tokio::spawn(checkpoint_while_writing(pool, commits, jobs.downgrade()));
        Ok(Self { jobs })
    }

    pub async fn insert(&self, message: NewMessage) -> Result<Option<Message>, StoreError> {
        self.submit(|reply| Job::Insert(message, reply)).await
    }

    pub async fn deliver(
        &self,
        id: Uuid,
        recipient: Uuid,
        at: Timestamp,
    ) -> Result<Option<Message>, StoreError> {
        let delivery = Delivery { id, recipient, at };
        self.submit(|reply| Job::Deliver(delivery, reply)).await
    }

    /// Closes the write connection; later writes fail with `PoolClosed`.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.jobs.send(Job::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }

    async fn submit(&self, job: impl FnOnce(Reply) -> Job) -> Result<Option<Message>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(job(reply))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        // The writer drops a reply only when it stops: the operation's outcome is unknown, and it
        // must not be acknowledged.
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

/// Once a second, when the writer has committed since the last time, copies the WAL back into
/// the database file with a PASSIVE checkpoint from a pool connection: it never blocks the
/// writer, which goes on appending meanwhile. A WAL starts over from its beginning only once
/// every frame in it is copied, which under steady writing this checkpoint never achieves (new
/// frames arrive while it runs), so the file would grow without end: when the WAL holds
/// [`RESTART_FRAMES`] or more, the writer copies the few frames left itself, between two
/// batches, and its next commit starts the WAL over. Stops when the pool closes.
async fn checkpoint_while_writing(
    pool: SqlitePool,
    commits: Arc<AtomicU64>,
    writer: mpsc::WeakSender<Job>,
) {
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpointed = 0;
    loop {
        ticks.tick().await;
        if pool.is_closed() {
            return;
        }
        let committed = commits.load(Ordering::Relaxed);
        if committed == checkpointed {
            continue;
        }
        // (busy, frames in the WAL, frames copied)
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await
        {
            Ok((_, frames, _)) => {
                checkpointed = committed;
                if frames >= RESTART_FRAMES
                    && let Some(writer) = writer.upgrade()
                {
                    let _ = writer.send(Job::Checkpoint).await;
                }
            }
            Err(_) if pool.is_closed() => return,
            Err(e) => {
                tracing::warn!(category = "warn", error = %e, "⚠️ WAL checkpoint failed; trying again in a second")
            }
        }
    }
}

/// The writer thread: takes whatever is queued (up to [`MAX_BATCH`]) and commits it as one batch.
fn run(path: &Path, mut queue: mpsc::Receiver<Job>, commits: &AtomicU64) {
    let mut conn: Option<Connection> = None;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.blocking_recv_many(&mut jobs, MAX_BATCH) > 0 {
        let mut inserts = Vec::new();
        let mut delivers = Vec::new();
        let mut close = None;
        let mut checkpoint = false;
        for job in jobs.drain(..) {
            match job {
                Job::Insert(message, reply) => inserts.push((message, reply)),
                Job::Deliver(delivery, reply) => delivers.push((delivery, reply)),
                Job::Checkpoint => checkpoint = true,
                Job::Close(done) => close = Some(done),
            }
        }
        if !inserts.is_empty() || !delivers.is_empty() {
            let (messages, deliveries) = (inserts.len(), delivers.len());
            let started = std::time::Instant::now();
            commit_batch(path, &mut conn, inserts, delivers);
            commits.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(
                messages,
                deliveries,
                micros = started.elapsed().as_micros() as u64,
                "batch committed"
            );
        }
        if checkpoint && let Some(db) = &conn {
            let started = std::time::Instant::now();
            let copied = db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            tracing::trace!(
                micros = started.elapsed().as_micros() as u64,
                "writer checkpoint"
            );
            if let Err(e) = copied {
                tracing::warn!(category = "warn", error = %e, "⚠️ the writer's WAL checkpoint failed");
            }
        }
        if let Some(done) = close {
            drop(conn.take());
            queue.close();
            let _ = done.send(());
        }
    }
}

/// Commits one batch and answers every operation in it. When the batch fails as a whole (which
/// in practice means the database itself failed), each operation is retried in a transaction of
/// its own on a fresh connection, so one bad operation cannot fail the others.
fn commit_batch(
    path: &Path,
    conn: &mut Option<Connection>,
    inserts: Vec<(NewMessage, Reply)>,
    delivers: Vec<(Delivery, Reply)>,
) {
    let messages: Vec<&NewMessage> = inserts.iter().map(|(m, _)| m).collect();
    let deliveries: Vec<Delivery> = delivers.iter().map(|(d, _)| *d).collect();
    let e = match connection(path, conn).and_then(|db| in_transaction(db, &messages, &deliveries)) {
        Ok((inserted, delivered)) => {
            for ((_, reply), outcome) in inserts.into_iter().zip(inserted) {
                let _ = reply.send(Ok(outcome));
            }
            for ((_, reply), outcome) in delivers.into_iter().zip(delivered) {
                let _ = reply.send(Ok(outcome));
            }
            return;
        }
        Err(e) => e,
    };
    *conn = None;
    if messages.len() + deliveries.len() > 1 {
        tracing::warn!(category = "error", error = %e, "⚠️ a batch of writes failed; retrying them one by one");
    }
    drop(messages);
    for (message, reply) in inserts {
        let outcome = alone(path, conn, &[&message], &[]);
        let _ = reply.send(outcome.map(|(mut m, _)| m.pop().flatten()));
    }
    for (delivery, reply) in delivers {
        let outcome = alone(path, conn, &[], &[delivery]);
        let _ = reply.send(outcome.map(|(_, mut d)| d.pop().flatten()));
    }
}

/// One operation in a transaction of its own (after its batch failed).
fn alone(
    path: &Path,
    conn: &mut Option<Connection>,
    messages: &[&NewMessage],
    deliveries: &[Delivery],
) -> Result<Outcomes, StoreError> {
    let outcome = connection(path, conn).and_then(|db| in_transaction(db, messages, deliveries));
    if outcome.is_err() {
        *conn = None;
    }
    Ok(outcome?)
}

/// The write connection, opened (again) when there is none. The pool has created the file and
/// put it in WAL mode (which the file keeps); these settings are the connection's own.
fn connection<'c>(
    path: &Path,
    conn: &'c mut Option<Connection>,
) -> rusqlite::Result<&'c mut Connection> {
    if conn.is_none() {
        let db = Connection::open(path)?;
        db.busy_timeout(BUSY_TIMEOUT)?;
        // As the pool's connections: an acknowledged commit survives the process being killed.
        db.pragma_update(None, "synchronous", "NORMAL")?;
        // Every batch updates the messages table and its indexes at pages spread over the whole
        // file (one per sender and recipient); with SQLite's default 2 MiB page cache most of
        // them would be read back from the file in every batch.
        db.pragma_update(None, "cache_size", format!("-{WRITER_CACHE_KIB}"))?;
        // No automatic checkpoint inside a commit: it held up every send queued behind it (the
        // 100–400 ms tail of the first group-commit run). [`checkpoint_while_writing`] does the
        // bulk of it from another connection, and the writer only the rest, between batches.
        db.pragma_update(None, "wal_autocheckpoint", 0)?;
        db.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
        *conn = Some(db);
    }
    Ok(conn.as_mut().expect("just opened"))
}

type Outcomes = (Vec<Option<Message>>, Vec<Option<Message>>);

/// Runs the inserts and the delivery marks in one `BEGIN IMMEDIATE … COMMIT`; answers one outcome
/// per operation, in order. Nothing is answered unless the commit succeeded (a failed
/// transaction rolls back when it is dropped).
fn in_transaction(
    conn: &mut Connection,
    messages: &[&NewMessage],
    deliveries: &[Delivery],
) -> rusqlite::Result<Outcomes> {
    // IMMEDIATE takes the write lock up front (waiting up to the busy timeout for the pool's
    // other writers) instead of failing when a read transaction cannot be upgraded.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut inserted = Vec::with_capacity(messages.len());
    let mut delivered = Vec::with_capacity(deliveries.len());
    {
        let mut insert = tx.prepare_cached(INSERT_MESSAGE)?;
        for m in messages {
            // By name: SQLite numbers `$N` parameters in the order they first appear.
            let params = named_params! {
                "$1": m.id,
                "$2": m.conversation_id,
                "$3": m.kind,
                "$4": m.from,
                "$5": m.to,
                "$6": m.content,
                "$7": m.client_id,
                "$8": m.reply_to_id,
                "$9": m.mentions,
                "$10": m.system,
                "$11": m.created_at.as_millis(),
                // Messages with attachments are stored by `Store::insert_with_attachments`.
                "$12": None::<String>,
            };
            inserted.push(insert.query_row(params, message).optional()?);
        }
        let mut deliver = tx.prepare_cached(MARK_DELIVERED)?;
        for d in deliveries {
            let params = named_params! { "$1": d.id, "$2": d.recipient, "$3": d.at.as_millis() };
            delivered.push(deliver.query_row(params, message).optional()?);
        }
    }
    tx.commit()?;
    Ok((inserted, delivered))
}

/// A `messages` row, in the column order of `message_columns!` (which [`INSERT_MESSAGE`] and
/// [`MARK_DELIVERED`] answer).
fn message(row: &Row<'_>) -> rusqlite::Result<Message> {
    let at = |i: usize| -> rusqlite::Result<Option<Timestamp>> {
        Ok(row.get::<_, Option<i64>>(i)?.map(Timestamp::from_millis))
    };
    let stored = MessageRow {
        id: row.get(0)?,
        conversation_id: row.get(1)?,
        kind: row.get(2)?,
        sender_id: row.get(3)?,
        recipient_id: row.get(4)?,
        content: row.get(5)?,
        client_id: row.get(6)?,
        reply_to_id: row.get(7)?,
        mentions: row.get(8)?,
        system: row.get(9)?,
        created_at: Timestamp::from_millis(row.get(10)?),
        edited_at: at(11)?,
        deleted_at: at(12)?,
        delivered_at: at(13)?,
        read_at: at(14)?,
        reactions: row.get(15)?,
        attachments: row.get(16)?,
    };
    Ok(Message::from(stored))
}

#[cfg(test)]
mod tests {
    use futures_util::future::join_all;
    use uuid::Uuid;

    use crate::store::{NewUser, Store};

    /// A store on a fresh SQLite file, migrated, with two active users; the folder lives as long
    /// as the store is used.
    async fn sqlite_store() -> (Store, Uuid, Uuid, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}", dir.path().join("writer.db").display());
        let store = Store::connect(&url).await.expect("the database opens");
        store.migrate().await.expect("migrations run");
        let ada = user(&store, "ada", true).await;
        let bob = user(&store, "bob", true).await;
        (store, ada, bob, dir)
    }

    async fn user(store: &Store, name: &str, is_active: bool) -> Uuid {
        let email = format!("{name}@example.com");
        let new = NewUser {
            email: &email,
            name,
            password_hash: None,
            is_admin: false,
            is_active,
        };
        store
            .insert_user(&new)
            .await
            .expect("stored")
            .expect("a new user")
            .id
    }

    #[tokio::test]
    async fn what_the_writer_commits_is_checkpointed_into_the_database_file_while_it_runs() {
        let (store, ada, bob, dir) = sqlite_store().await;
        let file = dir.path().join("writer.db");
        let size = || std::fs::metadata(&file).expect("the database file").len();
        let before = size();
        let content = "x".repeat(500);
        let sends = (0..2000).map(|_| store.send_direct(ada, bob, &content, None));
        for stored in join_all(sends).await {
            stored.expect("stored").expect("a new message");
        }
        // The writer does not checkpoint inside its commits; until another connection does, the
        // rows live only in the WAL and the database file keeps its size. Polls for at most ten
        // seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint copied the WAL into the database file"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn concurrent_sends_are_each_answered_only_once_committed() {
        let (store, ada, bob, _dir) = sqlite_store().await;
        // More sends than one batch holds, all queued before the writer runs.
        let sends = (0..600).map(|n| {
            let store = store.clone();
            async move {
                let client_id = format!("c-{n}");
                let message = store
                    .send_direct(ada, bob, &format!("message {n}"), Some(&client_id))
                    .await
                    .expect("stored")
                    .expect("a new message");
                // Another connection sees it as soon as it is answered: it was committed first.
                let seen = store
                    .find_message_by_client_id(ada, &client_id)
                    .await
                    .expect("read");
                assert_eq!(seen.as_ref(), Some(&message), "answered before committed");
                message
            }
        });
        let messages = join_all(sends).await;
        let mut ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 600, "every send is its own message");
        let stored = store
            .messages_since(bob, None, 1000)
            .await
            .expect("history");
        assert_eq!(stored.len(), 600);
    }

    #[tokio::test]
    async fn the_same_client_id_twice_in_one_batch_stores_one_message() {
        let (store, ada, bob, _dir) = sqlite_store().await;
        let sends = (0..10).map(|n| {
            let store = store.clone();
            // Two sends per clientId, and a send without one that must not be held back by them.
            let client_id = (n < 8).then(|| format!("c-{}", n / 2));
            async move {
                store
                    .send_direct(ada, bob, "hello", client_id.as_deref())
                    .await
                    .expect("no database error")
            }
        });
        let outcomes = join_all(sends).await;
        for pair in outcomes[..8].chunks(2) {
            let created: Vec<_> = pair.iter().flatten().collect();
            assert_eq!(created.len(), 1, "one of the two is stored: {pair:?}");
        }
        assert!(outcomes[8..].iter().all(Option::is_some));
        let stored = store.messages_since(bob, None, 100).await.expect("history");
        assert_eq!(
            stored.len(),
            4 + 2,
            "one message per clientId, plus the two without"
        );
    }

    #[tokio::test]
    async fn a_message_is_marked_delivered_once_and_only_by_its_recipient() {
        let (store, ada, bob, _dir) = sqlite_store().await;
        let message = store
            .send_direct(ada, bob, "hello", None)
            .await
            .expect("stored")
            .expect("new");
        let other = store
            .send_direct(ada, bob, "again", None)
            .await
            .expect("stored")
            .expect("new");
        let (first, second, stranger, own) = tokio::join!(
            store.mark_delivered(message.id, bob),
            store.mark_delivered(message.id, bob),
            store.mark_delivered(other.id, ada),
            store.mark_delivered(other.id, bob),
        );
        let (first, second) = (first.expect("no error"), second.expect("no error"));
        let marked = first.or(second.clone()).expect("one of the two marks it");
        assert!(marked.delivered_at.is_some());
        assert!(
            second.is_none(),
            "the second ack of one message changes nothing"
        );
        assert!(stranger.expect("no error").is_none(), "not Ada's to mark");
        assert!(
            own.expect("no error")
                .is_some_and(|m| m.delivered_at.is_some())
        );
    }

    #[tokio::test]
    async fn messages_to_unknown_or_disabled_users_in_a_batch_are_not_stored_and_the_rest_are() {
        let (store, ada, bob, _dir) = sqlite_store().await;
        let carol = user(&store, "carol", false).await;
        let nobody = Uuid::now_v7();
        let (to_bob, to_carol, to_nobody, to_bob_again) = tokio::join!(
            store.send_direct(ada, bob, "hello", Some("a")),
            store.send_direct(ada, carol, "hello", Some("b")),
            store.send_direct(ada, nobody, "hello", None),
            store.send_direct(ada, bob, "again", Some("c")),
        );
        assert!(to_bob.expect("no error").is_some());
        assert!(to_carol.expect("no error").is_none(), "Carol is disabled");
        assert!(to_nobody.expect("no error").is_none(), "no such user");
        assert!(to_bob_again.expect("no error").is_some());
        let stored = store.messages_since(ada, None, 100).await.expect("history");
        assert_eq!(stored.len(), 2);
        assert!(stored.iter().all(|m| m.to == Some(bob)));
    }

    #[tokio::test]
    async fn an_in_memory_database_stores_messages_through_its_pool() {
        // The writer opens the database file by its name; an in-memory database has none.
        let store = Store::connect("sqlite::memory:").await.expect("opens");
        store.migrate().await.expect("migrations run");
        let (ada, bob) = (
            user(&store, "ada", true).await,
            user(&store, "bob", true).await,
        );
        let message = store
            .send_direct(ada, bob, "hello", Some("c-1"))
            .await
            .expect("no database error")
            .expect("stored");
        let again = store
            .find_message_by_client_id(ada, "c-1")
            .await
            .expect("read");
        assert_eq!(again, Some(message));
    }

    #[tokio::test]
    async fn writes_after_close_fail_instead_of_being_answered() {
        let (store, ada, bob, _dir) = sqlite_store().await;
        store.close().await;
        let outcome = store.send_direct(ada, bob, "too late", None).await;
        assert!(outcome.is_err(), "a closed store answered {outcome:?}");
    }
}
