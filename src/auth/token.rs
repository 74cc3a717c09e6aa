//! Access tokens: HS256 JWTs carrying the claims of the contract (`sub`, `sid`, `name`, `email`,
//! `isAdmin`, `isActive`, `iat`, `exp`).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorCode;
use crate::store::User;
use crate::timestamp::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The session id.
    pub sid: Uuid,
    pub name: String,
    pub email: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    /// Whether the rights and status in the token still match the account's.
    pub fn matches(&self, user: &User) -> bool {
        self.is_admin == user.is_admin && self.is_active == user.is_active
    }

    pub fn expires_at(&self) -> Timestamp {
        Timestamp::from_unix_seconds(self.exp)
    }
}

/// Why a token was refused; the `code` is what REST errors and `connect_error` carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed or its signature is wrong")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the session of this token has ended")]
    SessionRevoked,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("the account's rights or status changed since this token was issued")]
    Stale,
}

impl TokenError {
    pub fn code(self) -> ErrorCode {
        match self {
            Self::Invalid | Self::Stale => ErrorCode::InvalidToken,
            Self::Expired => ErrorCode::TokenExpired,
            Self::SessionRevoked => ErrorCode::SessionRevoked,
            Self::AccountDisabled => ErrorCode::AccountDisabled,
        }
    }
}

/// A freshly minted access token.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: Timestamp,
}

/// The signing keys and lifetime of access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: std::time::Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl: std::time::Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// Mints a token for this user's session, valid from now for the configured lifetime.
    pub fn issue(&self, user: &User, session_id: Uuid) -> IssuedToken {
        let now = Timestamp::now();
        self.issue_at(user, session_id, now, now.plus(self.ttl))
    }

    /// Mints a token with explicit times (tests use it for expired tokens).
    pub fn issue_at(
        &self,
        user: &User,
        session_id: Uuid,
        issued_at: Timestamp,
        expires_at: Timestamp,
    ) -> IssuedToken {
        let claims = Claims {
            sub: user.id,
            sid: session_id,
            name: user.name.clone(),
            email: user.email.clone(),
            is_admin: user.is_admin,
            is_active: user.is_active,
            iat: issued_at.as_unix_seconds(),
            exp: expires_at.as_unix_seconds(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        IssuedToken {
            token,
            expires_at: claims.expires_at(),
        }
    }

    /// Checks signature and expiry; says nothing yet about the session or the account.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: Uuid::now_v7(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            avatar_url: None,
            is_admin: true,
            is_active: true,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        }
    }

    #[test]
    fn a_minted_token_carries_the_contract_claims() {
        let keys = TokenKeys::new(&[7; 32], std::time::Duration::from_secs(3600));
        let user = user();
        let sid = Uuid::now_v7();
        let issued = keys.issue(&user, sid);
        let claims = keys.verify(&issued.token).unwrap();
        assert_eq!((claims.sub, claims.sid), (user.id, sid));
        assert!(claims.is_admin && claims.is_active);
        assert_eq!(claims.exp - claims.iat, 3600);
        let payload = issued.token.split('.').nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        for claim in [
            "sub", "sid", "name", "email", "isAdmin", "isActive", "iat", "exp",
        ] {
            assert!(json.get(claim).is_some(), "missing {claim}");
        }
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let keys = TokenKeys::new(&[7; 32], std::time::Duration::from_secs(3600));
        let past = Timestamp::from_unix_seconds(1_000);
        let expired = keys.issue_at(
            &user(),
            Uuid::now_v7(),
            past,
            past.plus(std::time::Duration::from_secs(60)),
        );
        assert_eq!(keys.verify(&expired.token), Err(TokenError::Expired));

        let other = TokenKeys::new(&[8; 32], std::time::Duration::from_secs(3600));
        let foreign = other.issue(&user(), Uuid::now_v7());
        assert_eq!(keys.verify(&foreign.token), Err(TokenError::Invalid));
        assert_eq!(keys.verify("not.a.jwt"), Err(TokenError::Invalid));
        assert_eq!(keys.verify(""), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_signed_with_none_is_refused() {
        let keys = TokenKeys::new(&[7; 32], std::time::Duration::from_secs(3600));
        let issued = keys.issue(&user(), Uuid::now_v7());
        let payload = issued.token.split('.').nth(1).unwrap();
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","typ":"JWT"}"#,
        );
        assert_eq!(
            keys.verify(&format!("{header}.{payload}.")),
            Err(TokenError::Invalid)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Anything that is not a token this server signed is refused, never a panic: garbage,
        /// and real tokens with any one character changed.
        #[test]
        fn only_tokens_signed_here_verify(garbage in ".{0,400}", at in 0usize..400, with in "[A-Za-z0-9_=.-]") {
            let keys = TokenKeys::new(&[7; 32], std::time::Duration::from_secs(3600));
            proptest::prop_assert!(keys.verify(&garbage).is_err());
            let token = keys.issue(&user(), Uuid::now_v7()).token;
            let at = at % token.len();
            let mut changed = token.clone();
            changed.replace_range(at..at + 1, &with);
            if changed != token {
                proptest::prop_assert!(keys.verify(&changed).is_err(), "{} verified", changed);
            }
        }
    }
}
