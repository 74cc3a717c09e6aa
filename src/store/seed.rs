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
}
