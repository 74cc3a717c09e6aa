//! The application server's identity towards push services (RFC 8292): one P-256 key pair for
//! the whole cluster, from `VAPID_PRIVATE_KEY` or made once and kept in the database, and the
//! signed token every push carries.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use web_push_native::jwt_simple::algorithms::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair,
};
use web_push_native::jwt_simple::claims::Claims;
use web_push_native::jwt_simple::prelude::Duration as JwtDuration;

use crate::store::{Store, StoreError};

/// Where the generated key is kept in `server_settings`.
const SETTING: &str = "vapid_private_key";
/// How long a push's token stays valid (RFC 8292 allows at most 24 h).
const TOKEN_HOURS: u64 = 12;

/// The key pair and the contact (`sub`) every token names.
pub struct Vapid {
    key: ES256KeyPair,
    /// The uncompressed public key, base64url: `GET /api/push/config` and each token's `k`.
    pub public_key: String,
    subject: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VapidError {
    #[error("VAPID_PRIVATE_KEY must be a P-256 private key: 32 bytes, base64url")]
    BadKey,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Vapid {
    /// The configured key, else the one every node shares from the database (made by the first
    /// node that needed it).
    pub async fn load(
        store: &Store,
        configured: Option<&str>,
        subject: String,
    ) -> Result<Self, VapidError> {
        let encoded = match configured {
            Some(key) => key.trim().to_owned(),
            None => {
                let fresh = URL_SAFE_NO_PAD.encode(ES256KeyPair::generate().to_bytes());
                store.setting_or_insert(SETTING, &fresh).await?
            }
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|_| VapidError::BadKey)?;
        if bytes.len() != 32 {
            return Err(VapidError::BadKey);
        }
        let key = ES256KeyPair::from_bytes(&bytes).map_err(|_| VapidError::BadKey)?;
        let public_key =
            URL_SAFE_NO_PAD.encode(key.public_key().public_key().to_bytes_uncompressed());
        Ok(Self {
            key,
            public_key,
            subject,
        })
    }

    /// The `Authorization` header of a push to a service at `origin` (`scheme://host[:port]`,
    /// the port only when it is not the scheme's default, as RFC 8292 wants the audience).
    pub fn authorization(
        &self,
        origin: &str,
    ) -> Result<String, web_push_native::jwt_simple::Error> {
        let claims = Claims::create(JwtDuration::from_hours(TOKEN_HOURS))
            .with_audience(origin)
            .with_subject(&self.subject);
        let token = self.key.sign(claims)?;
        Ok(format!("vapid t={token}, k={}", self.public_key))
    }
}
