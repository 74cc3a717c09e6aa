//! The `users` table: accounts, their credentials and their rights.

use serde::Serialize;
use uuid::Uuid;

use super::database::{Store, StoreError, on_pool};
use crate::timestamp::Timestamp;

/// The public user object of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub avatar_url: Option<String>,
    pub is_admin: bool,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A user with the hash that login checks; never serialized.
#[derive(sqlx::FromRow)]
struct Credentials {
    #[sqlx(flatten)]
    user: User,
    password_hash: Option<String>,
}

/// What creating an account needs; values are validated before they get here.
pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: Option<&'a str>,
    pub is_admin: bool,
    pub is_active: bool,
}

/// A change of rights or status; `None` leaves a flag as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserFlags {
    pub is_admin: Option<bool>,
    pub is_active: Option<bool>,
}

impl Store {
    /// Creates an account; the first account of an empty database is an admin. `None` when the
    /// email is taken.
    #[tracing::instrument(skip_all)]
    pub async fn insert_user(&self, new: &NewUser<'_>) -> Result<Option<User>, StoreError> {
        let now = Timestamp::now();
        let user = on_pool!(self, pool => sqlx::query_as::<_, User>(
            "INSERT INTO users (id, email, name, password_hash, is_admin, is_active, created_at, updated_at, search_name)
             VALUES ($1, $2, $3, $4, ($5 OR NOT EXISTS (SELECT 1 FROM users)), $6, $7, $7, $8)
             ON CONFLICT (email) DO NOTHING
             RETURNING id, email, name, avatar_url, is_admin, is_active, created_at, updated_at",
        )
        .bind(Uuid::now_v7())
        .bind(new.email)
        .bind(new.name)
        .bind(new.password_hash)
        .bind(new.is_admin)
        .bind(new.is_active)
        .bind(now)
        .bind(new.name.to_lowercase())
        .fetch_optional(pool)
        .await)?;
        Ok(user)
    }

    #[tracing::instrument(skip_all)]
    pub async fn find_user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let user = on_pool!(self, pool => sqlx::query_as::<_, User>(
            "SELECT id, email, name, avatar_url, is_admin, is_active, created_at, updated_at
             FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        Ok(user)
    }

    /// The users among `ids` that exist, in no particular order.
    #[tracing::instrument(skip_all)]
    pub async fn users_by_id(&self, ids: &[Uuid]) -> Result<Vec<User>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = on_pool!(self, pool, Db => {
            let mut query = sqlx::QueryBuilder::<Db>::new(
                "SELECT id, email, name, avatar_url, is_admin, is_active, created_at, updated_at
                 FROM users WHERE id IN (",
            );
            let mut list = query.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            query.push(")");
            query.build_query_as::<User>().fetch_all(pool).await
        })?;
        Ok(users)
    }

    #[tracing::instrument(skip_all)]
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        Ok(self.find_credentials(email).await?.map(|(user, _)| user))
    }

    /// The account with this (lowercased) email and its password hash, if it has one.
    #[tracing::instrument(skip_all)]
    pub async fn find_credentials(
        &self,
        email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let found = on_pool!(self, pool => sqlx::query_as::<_, Credentials>(
            "SELECT id, email, name, avatar_url, is_admin, is_active, created_at, updated_at, password_hash
             FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(pool)
        .await)?;
        Ok(found.map(|c| (c.user, c.password_hash)))
    }

    /// Every account, oldest first (for the operator's `user list`).
    #[tracing::instrument(skip_all)]
    pub async fn list_all_users(&self) -> Result<Vec<User>, StoreError> {
        let users = on_pool!(self, pool => sqlx::query_as::<_, User>(
            "SELECT id, email, name, avatar_url, is_admin, is_active, created_at, updated_at
             FROM users ORDER BY id",
        )
        .fetch_all(pool)
        .await)?;
        Ok(users)
    }

    /// Changes rights or status; `None` when there is no such user.
    #[tracing::instrument(skip_all)]
    pub async fn set_user_flags(
        &self,
        id: Uuid,
        flags: UserFlags,
    ) -> Result<Option<User>, StoreError> {
        let user = on_pool!(self, pool => sqlx::query_as::<_, User>(
            "UPDATE users
             SET is_admin = COALESCE($2, is_admin), is_active = COALESCE($3, is_active), updated_at = $4
             WHERE id = $1
             RETURNING id, email, name, avatar_url, is_admin, is_active, created_at, updated_at",
        )
        .bind(id)
        .bind(flags.is_admin)
        .bind(flags.is_active)
        .bind(Timestamp::now())
        .fetch_optional(pool)
        .await)?;
        Ok(user)
    }

    /// How many active admins there are, other than `except`.
    #[tracing::instrument(skip_all)]
    pub async fn count_other_active_admins(&self, except: Uuid) -> Result<i64, StoreError> {
        let count = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM users WHERE is_admin AND is_active AND id <> $1",
        )
        .bind(except)
        .fetch_one(pool)
        .await)?;
        Ok(count)
    }
}

/// A user as admins list them: the account plus how many live sessions it has.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserWithSessions {
    #[sqlx(flatten)]
    pub user: User,
    pub sessions: i64,
}

/// A change to an account; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub is_admin: Option<bool>,
    pub is_active: Option<bool>,
}

/// What updating an account led to.
#[derive(Debug)]
pub enum UserUpdate {
    Updated(User),
    NotFound,
    EmailTaken,
}

impl Store {
    /// A page of accounts ordered by id, after `cursor`, whose name or email contains `query`.
    #[tracing::instrument(skip_all)]
    pub async fn list_users(
        &self,
        query: Option<&str>,
        cursor: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<UserWithSessions>, StoreError> {
        let pattern = query.map(like_pattern);
        let users = on_pool!(self, pool => sqlx::query_as::<_, UserWithSessions>(
            "SELECT id, email, name, avatar_url, is_admin, is_active, created_at, updated_at,
                    (SELECT COUNT(*) FROM sessions s
                     WHERE s.user_id = users.id AND s.revoked_at IS NULL AND s.expires_at > $4) AS sessions
             FROM users
             WHERE ($1 IS NULL OR search_name LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\')
               AND ($2 IS NULL OR id > $2)
             ORDER BY id LIMIT $3",
        )
        .bind(pattern)
        .bind(cursor)
        .bind(limit)
        .bind(Timestamp::now())
        .fetch_all(pool)
        .await)?;
        Ok(users)
    }

    /// Active accounts whose name or email contains `query`, by name, for finding people.
    #[tracing::instrument(skip_all)]
    pub async fn directory(
        &self,
        query: Option<&str>,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        let pattern = query.map(like_pattern);
        let users = on_pool!(self, pool => sqlx::query_as::<_, User>(
            "SELECT id, email, name, avatar_url, is_admin, is_active, created_at, updated_at
             FROM users
             WHERE is_active AND ($1 IS NULL OR search_name LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\')
             ORDER BY search_name, id LIMIT $2",
        )
        .bind(pattern)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(users)
    }

    /// Applies a change to an account.
    #[tracing::instrument(skip_all)]
    pub async fn update_user(
        &self,
        id: Uuid,
        changes: &UserChanges,
    ) -> Result<UserUpdate, StoreError> {
        let result = on_pool!(self, pool => sqlx::query_as::<_, User>(
            "UPDATE users SET
                 name = COALESCE($2, name),
                 search_name = COALESCE($8, search_name),
                 email = COALESCE($3, email),
                 password_hash = COALESCE($4, password_hash),
                 is_admin = COALESCE($5, is_admin),
                 is_active = COALESCE($6, is_active),
                 updated_at = $7
             WHERE id = $1
             RETURNING id, email, name, avatar_url, is_admin, is_active, created_at, updated_at",
        )
        .bind(id)
        .bind(changes.name.as_deref())
        .bind(changes.email.as_deref())
        .bind(changes.password_hash.as_deref())
        .bind(changes.is_admin)
        .bind(changes.is_active)
        .bind(Timestamp::now())
        .bind(changes.name.as_deref().map(str::to_lowercase))
        .fetch_optional(pool)
        .await);
        match result {
            Ok(Some(user)) => Ok(UserUpdate::Updated(user)),
            Ok(None) => Ok(UserUpdate::NotFound),
            Err(e) if is_unique_violation(&e) => Ok(UserUpdate::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an account (its sessions go with it; its messages stay). False if there was none.
    #[tracing::instrument(skip_all)]
    pub async fn delete_user(&self, id: Uuid) -> Result<bool, StoreError> {
        let deleted = on_pool!(self, pool => sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(deleted == 1)
    }

    /// The password hash of an account, if it has one.
    #[tracing::instrument(skip_all)]
    pub async fn password_hash(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        let hash = on_pool!(self, pool => sqlx::query_scalar::<_, Option<String>>(
            "SELECT password_hash FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        Ok(hash.flatten())
    }
}

/// `%query%` for a case-insensitive LIKE, with the wildcards of the query escaped.
fn like_pattern(query: &str) -> String {
    let escaped = query
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}
