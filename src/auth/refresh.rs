//! Refresh tokens: 256 random bits shown once to the client, kept only as a SHA-256 hash.

use base64::Engine;
use sha2::{Digest, Sha256};

/// A new refresh secret (43 URL-safe characters) and the hash to store.
pub fn generate() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&secret);
    (secret, hash)
}

/// The stored form of a presented secret.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_unique_and_only_their_hash_matches() {
        let (a, ha) = super::generate();
        let (b, hb) = super::generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(super::hash(&a), ha);
        assert_ne!(ha, hb);
    }
}
