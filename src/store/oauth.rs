//! The `oauth_identities` and `oauth_states` tables: which account a Google or GitHub identity
//! signs in as, and the authorizations in flight between a consent page and its callback.

use uuid::Uuid;

use super::database::{Store, StoreError, on_pool};
use super::users::{NewUser, User};
use crate::timestamp::Timestamp;

/// One trip to a provider's consent page, stored until its callback comes back.
pub struct NewOAuthState<'a> {
    /// SHA-256 of the `state` sent to the provider; the value itself is only in URLs.
    pub state_hash: &'a [u8],
    pub provider: &'a str,
    /// SHA-256 of the nonce in the browser's cookie: the callback must come from that browser.
    pub browser_hash: &'a [u8],
    /// The PKCE secret whose challenge went to the provider; sent with the code exchange.
    pub pkce_verifier: &'a str,
    /// The same-app path to land on after signing in.
    pub return_to: &'a str,
    pub expires_at: Timestamp,
}

/// A pending authorization, as the callback gets it back (once).
#[derive(Debug, sqlx::FromRow)]
pub struct OAuthState {
    pub provider: String,
    pub browser_hash: Vec<u8>,
    pub pkce_verifier: String,
    pub return_to: String,
    pub expires_at: Timestamp,
}

/// An account at a provider: its stable subject (Google's `sub`, GitHub's numeric id) and the
/// verified email it has there now.
pub struct OAuthIdentity<'a> {
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
}

impl Store {
    /// Stores a pending authorization, and forgets the ones that have expired unused.
    #[tracing::instrument(skip_all)]
    pub async fn insert_oauth_state(&self, new: &NewOAuthState<'_>) -> Result<(), StoreError> {
        let now = Timestamp::now();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO oauth_states
                     (state_hash, provider, browser_hash, pkce_verifier, return_to, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(new.state_hash)
            .bind(new.provider)
            .bind(new.browser_hash)
            .bind(new.pkce_verifier)
            .bind(new.return_to)
            .bind(now)
            .bind(new.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Removes and answers the pending authorization with this state hash, expired or not: a
    /// state can be presented only once, whatever comes of it.
    #[tracing::instrument(skip_all)]
    pub async fn take_oauth_state(
        &self,
        state_hash: &[u8],
    ) -> Result<Option<OAuthState>, StoreError> {
        let state = on_pool!(self, pool => sqlx::query_as::<_, OAuthState>(
            "DELETE FROM oauth_states WHERE state_hash = $1
             RETURNING provider, browser_hash, pkce_verifier, return_to, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(pool)
        .await)?;
        Ok(state)
    }

    /// The account a provider identity signs in as, if it has signed in before.
    #[tracing::instrument(skip_all)]
    pub async fn find_user_by_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        let user = on_pool!(self, pool => sqlx::query_as::<_, User>(
            "SELECT u.id, u.email, u.name, u.avatar_url, u.is_admin, u.is_active, u.created_at, u.updated_at
             FROM oauth_identities i JOIN users u ON u.id = i.user_id
             WHERE i.provider = $1 AND i.subject = $2",
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(pool)
        .await)?;
        Ok(user)
    }

    /// Records that a provider identity signs in as `user_id` (or, when it already does, the
    /// email it has at the provider now and the time of this sign-in).
    #[tracing::instrument(skip_all)]
    pub async fn link_identity(
        &self,
        user_id: Uuid,
        identity: &OAuthIdentity<'_>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO oauth_identities (provider, subject, user_id, email, created_at, last_login_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (provider, subject) DO UPDATE SET email = $4, last_login_at = $5",
        )
        .bind(identity.provider)
        .bind(identity.subject)
        .bind(user_id)
        .bind(identity.email)
        .bind(Timestamp::now())
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Creates an account for a provider identity, linked to it, in one transaction; the first
    /// account of an empty database is an admin, as with registration. `None` when the email is
    /// taken (another sign-in got there first).
    #[tracing::instrument(skip_all)]
    pub async fn create_user_with_identity(
        &self,
        new: &NewUser<'_>,
        avatar_url: Option<&str>,
        identity: &OAuthIdentity<'_>,
    ) -> Result<Option<User>, StoreError> {
        let now = Timestamp::now();
        let user = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let user = sqlx::query_as::<_, User>(
                "INSERT INTO users (id, email, name, avatar_url, password_hash, is_admin, is_active, created_at, updated_at, search_name)
                 VALUES ($1, $2, $3, $4, $5, ($6 OR NOT EXISTS (SELECT 1 FROM users)), $7, $8, $8, $9)
                 ON CONFLICT (email) DO NOTHING
                 RETURNING id, email, name, avatar_url, is_admin, is_active, created_at, updated_at",
            )
            .bind(Uuid::now_v7())
            .bind(new.email)
            .bind(new.name)
            .bind(avatar_url)
            .bind(new.password_hash)
            .bind(new.is_admin)
            .bind(new.is_active)
            .bind(now)
            .bind(new.name.to_lowercase())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(user) = &user {
                sqlx::query(
                    "INSERT INTO oauth_identities (provider, subject, user_id, email, created_at, last_login_at)
                     VALUES ($1, $2, $3, $4, $5, $5)",
                )
                .bind(identity.provider)
                .bind(identity.subject)
                .bind(user.id)
                .bind(identity.email)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            user
        });
        Ok(user)
    }
}
