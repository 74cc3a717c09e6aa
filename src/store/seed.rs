//! Throw-away accounts for load tests: many users with one session each, inserted in batches
//! without password hashing.

use uuid::Uuid;

use super::database::{Store, StoreError, on_pool};
use super::users::User;
use crate::timestamp::Timestamp;

/// Rows per INSERT statement.
const BATCH: usize = 500;

/// One seeded account: its user and the id of its session.
pub struct Seeded {
    pub user: User,
    pub session_id: Uuid,
}

impl Store {
    /// Creates `count` active users named `Load <n>` with emails `load-<run>-<n>@seed.invalid`, each
    /// with one session expiring at `session_expires_at`.
    #[tracing::instrument(skip_all)]
    pub async fn seed_users(
        &self,
        count: usize,
        session_expires_at: Timestamp,
    ) -> Result<Vec<Seeded>, StoreError> {
        let now = Timestamp::now();
        let run = Uuid::now_v7().simple().to_string();
        let run = &run[run.len() - 8..];
        let seeded: Vec<Seeded> = (0..count)
            .map(|n| Seeded {
                user: User {
                    id: Uuid::now_v7(),
                    email: format!("load-{run}-{n}@seed.invalid"),
                    name: format!("Load {n}"),
                    avatar_url: None,
                    is_admin: false,
                    is_active: true,
                    created_at: now,
                    updated_at: now,
                },
                session_id: Uuid::now_v7(),
            })
            .collect();
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            for chunk in seeded.chunks(BATCH) {
                let mut users = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO users (id, email, name, is_admin, is_active, created_at, updated_at, search_name) ",
                );
                users.push_values(chunk, |mut row, s| {
                    row.push_bind(s.user.id)
                        .push_bind(s.user.email.clone())
                        .push_bind(s.user.name.clone())
                        .push_bind(false)
                        .push_bind(true)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(s.user.name.to_lowercase());
                });
                users.build().execute(&mut *tx).await?;
                let mut sessions = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO sessions (id, user_id, user_agent, created_at, last_seen_at, expires_at) ",
                );
                sessions.push_values(chunk, |mut row, s| {
                    row.push_bind(s.session_id)
                        .push_bind(s.user.id)
                        .push_bind("craftcode seed")
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(session_expires_at);
                });
                sessions.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(seeded)
    }

    /// Gives each user of `ids` a direct conversation with the `ahead` users after it
    /// (cyclically), so every user has `2 * ahead` partners. No messages: the conversations are
    /// as new as their ids.
    #[tracing::instrument(skip_all)]
    pub async fn seed_partners(&self, ids: &[Uuid], ahead: usize) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let pairs: Vec<(Uuid, Uuid, Uuid)> = (0..ids.len())
            .flat_map(|n| (1..=ahead).map(move |k| (n, (n + k) % ids.len())))
            .map(|(a, b)| {
                let (low, high) = if ids[a] < ids[b] {
                    (ids[a], ids[b])
                } else {
                    (ids[b], ids[a])
                };
                (Uuid::now_v7(), low, high)
            })
            .collect();
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            for chunk in pairs.chunks(BATCH) {
                let mut conversations = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO conversations (id, kind, direct_low, direct_high, created_at, updated_at) ",
                );
                conversations.push_values(chunk, |mut row, (id, low, high)| {
                    row.push_bind(*id)
                        .push_bind("direct")
                        .push_bind(*low)
                        .push_bind(*high)
                        .push_bind(now)
                        .push_bind(now);
                });
                conversations.build().execute(&mut *tx).await?;
                let mut members = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at) ",
                );
                let rows = chunk
                    .iter()
                    .flat_map(|(id, low, high)| [(*id, *low), (*id, *high)]);
                members.push_values(rows, |mut row, (id, user)| {
                    row.push_bind(id)
                        .push_bind(user)
                        .push_bind("member")
                        .push_bind(now);
                });
                members.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
