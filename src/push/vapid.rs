//! The application server's identity towards push services (RFC 8292): one P-256 key pair for
//! the whole cluster, from `VAPID_PRIVATE_KEY` or made once and kept in the database, and the
//! ES256 token every push carries (signed with `jsonwebtoken`, as the access tokens are).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use web_push_native::p256::SecretKey;
use web_push_native::p256::elliptic_curve::sec1::ToEncodedPoint;
use web_push_native::p256::pkcs8::EncodePrivateKey;

use crate::store::{Store, StoreError};
use crate::timestamp::Timestamp;

/// Where the generated key is kept in `server_settings`.
const SETTING: &str = "vapid_private_key";
/// How long a push's token stays valid (RFC 8292 allows at most 24 h).
const TOKEN_SECS: i64 = 12 * 3600;

/// The signing key and the contact (`sub`) every token names.
pub struct Vapid {
    key: EncodingKey,
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

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: i64,
    sub: &'a str,
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
                let fresh = URL_SAFE_NO_PAD.encode(fresh_key().to_bytes());
                store.setting_or_insert(SETTING, &fresh).await?
            }
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|_| VapidError::BadKey)?;
        if bytes.len() != 32 {
            return Err(VapidError::BadKey);
        }
        let secret = SecretKey::from_slice(&bytes).map_err(|_| VapidError::BadKey)?;
        let der = secret.to_pkcs8_der().map_err(|_| VapidError::BadKey)?;
        let public = secret.public_key().to_encoded_point(false);
        Ok(Self {
            key: EncodingKey::from_ec_der(der.as_bytes()),
            public_key: URL_SAFE_NO_PAD.encode(public.as_bytes()),
            subject,
        })
    }

    /// The `Authorization` header of a push to a service at `origin` (`scheme://host[:port]`,
    /// the port only when it is not the scheme's default, as RFC 8292 wants the audience).
    pub fn authorization(&self, origin: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            aud: origin,
            exp: Timestamp::now().as_millis() / 1000 + TOKEN_SECS,
            sub: &self.subject,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key)?;
        Ok(format!("vapid t={token}, k={}", self.public_key))
    }
}

/// A new private key: 32 random bytes that are a valid P-256 scalar (all but a negligible few).
fn fresh_key() -> SecretKey {
    loop {
        if let Ok(key) = SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
            return key;
        }
    }
}
