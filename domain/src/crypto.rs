//! Secrets handling: AES-256-GCM sealing under the master key, random bearer tokens stored as
//! SHA-256, and argon2id password hashing kept off the async threads.

use crate::{Error, Result};
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of sealed values, naming the scheme so a later rotation can tell versions apart.
const SEALED_PREFIX: &str = "v1:";

/// The 32-byte key that encrypts secrets at rest.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses 32 bytes in standard base64.
    pub fn from_base64(s: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| Error::invalid("master key is not valid standard base64"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::invalid("master key must be exactly 32 bytes"))?;
        Ok(MasterKey(arr))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        MasterKey(k)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The cipher for this key.
    pub fn cipher(&self) -> Cipher {
        // The MAC key is derived, never the encryption key itself: one key, one purpose.
        let mac_key: [u8; 32] = Sha256::new()
            .chain_update(b"toolgate audit checkpoint mac v1\n")
            .chain_update(self.0)
            .finalize()
            .into();
        Cipher(
            Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0)),
            mac_key,
        )
    }
}

/// AES-256-GCM with a random 96-bit nonce per value; `aad` binds a value to its row so a
/// ciphertext copied onto another row does not decrypt.
/// It also holds a MAC key derived from the master key, for audit checkpoints.
#[derive(Clone)]
pub struct Cipher(Aes256Gcm, [u8; 32]);

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

impl Cipher {
    /// HMAC-SHA256 (hex) under the key derived from the master key.
    pub fn mac_hex(&self, data: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.1)
            .expect("HMAC accepts a key of any length");
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }

    /// A 256-bit key for one purpose, derived from the master key (HMAC as the PRF): signing
    /// keys that must be the same on every replica and change when the master key does.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.1)
            .expect("HMAC accepts a key of any length");
        mac.update(b"toolgate derived key v1\n");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<String> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Internal("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>> {
        let undecodable =
            || Error::Internal("sealed secret cannot be decrypted with this master key".into());
        let b64 = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(undecodable)?;
        let raw = STANDARD.decode(b64).map_err(|_| undecodable())?;
        if raw.len() < 12 {
            return Err(undecodable());
        }
        let (nonce, ct) = raw.split_at(12);
        self.0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| undecodable())
    }
}

/// A new random bearer token `"{prefix}_{43 chars}"` (256 bits) and the hash to store.
pub fn new_token(prefix: &str) -> (String, String) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_token(&token);
    (token, hash)
}

/// SHA-256 (hex) of a high-entropy token: enough for 256 random bits, and cheap per request.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// SHA-256 hex of arbitrary bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// At most this many argon2 computations at once (each takes ~19 MiB and a core for tens of
/// milliseconds): a burst of sign-ins or token requests queues instead of exhausting memory.
fn argon2_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.max(2))
    })
}

/// argon2id hash (PHC string) of a password, computed on the blocking pool.
pub async fn hash_password(password: String) -> Result<String> {
    let _permit = argon2_permits()
        .acquire()
        .await
        .map_err(|e| Error::Internal(format!("argon2 limiter closed: {e}")))?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))?
}

/// Checks a password against a stored PHC string on the blocking pool. A malformed stored hash
/// counts as a mismatch (fail closed).
pub async fn verify_password(password: String, phc: String) -> bool {
    let Ok(_permit) = argon2_permits().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_aad() {
        let c = MasterKey::generate().cipher();
        let s = c.seal(b"secret", b"row-1").unwrap();
        assert!(s.starts_with("v1:"));
        assert!(!s.contains("secret"));
        assert_eq!(c.open(&s, b"row-1").unwrap(), b"secret");
        assert!(c.open(&s, b"row-2").is_err());
        let other = MasterKey::generate().cipher();
        assert!(other.open(&s, b"row-1").is_err());
        assert!(c.open("garbage", b"row-1").is_err());
        assert!(c.open("v1:AAAA", b"row-1").is_err());
    }

    #[test]
    fn master_key_parsing() {
        let k = MasterKey::generate();
        let back = MasterKey::from_base64(&k.to_base64()).unwrap();
        assert_eq!(back.0, k.0);
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert!(MasterKey::from_base64(&STANDARD.encode([0u8; 16])).is_err());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (t1, h1) = new_token("tgp");
        let (t2, h2) = new_token("tgp");
        assert_ne!(t1, t2);
        assert_ne!(h1, h2);
        assert!(t1.starts_with("tgp_"));
        assert_eq!(h1, hash_token(&t1));
        assert_eq!(h1.len(), 64);
    }

    #[tokio::test]
    async fn password_hash_and_verify() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), h.clone()).await);
        assert!(!verify_password("wrong".into(), h).await);
        assert!(!verify_password("x".into(), "not a phc".into()).await);
    }
}
