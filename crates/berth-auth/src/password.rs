//! berth's own passwords and robot secrets: argon2id (PHC strings), Harbor's password
//! policy, generated secrets, and a cache so a credential is hashed once, not per request.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Digest as _;

/// Hash a password (or robot secret) with argon2id and a fresh salt.
pub fn hash(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Check a password against a stored PHC hash. Slow by design (~20 ms): call it off the async
/// threads, and only when [`VerifiedCache`] has not seen the credential.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spend the time a real verification takes, so an unknown user answers no faster than a
/// wrong password does.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("berth-timing-equalizer").unwrap_or_default());
    let _ = verify(password, dummy);
}

/// Harbor's rule for passwords: 8–128 characters with at least one uppercase letter, one
/// lowercase letter and one digit.
pub fn check_policy(password: &str) -> Result<(), String> {
    let len = password.chars().count();
    let ok = (8..=128).contains(&len)
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err("a password needs 8-128 characters with at least one uppercase letter, one lowercase letter and one digit".into())
    }
}

/// A random secret that passes [`check_policy`]: 32 characters of `[A-Za-z0-9]`.
pub fn generate_secret() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rng = SystemRandom::new();
    loop {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes)
            .map_err(|_| "the system random generator failed".to_string())?;
        // 62 does not divide 256: the slight bias over 32 characters costs well under a bit.
        let secret: String = bytes
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        if check_policy(&secret).is_ok() {
            return Ok(secret);
        }
    }
}

/// Credentials already verified, keyed by a SHA-256 of (account, password, stored hash), so
/// a changed password or a new hash never matches an old entry. Entries expire, which bounds
/// how long a deleted account's cached credential could matter to a process that did not see
/// the deletion (the caller also checks the account still exists).
pub struct VerifiedCache {
    entries: RwLock<HashMap<[u8; 32], Instant>>,
    ttl: Duration,
    capacity: usize,
}

impl VerifiedCache {
    pub fn new(ttl: Duration, capacity: usize) -> VerifiedCache {
        VerifiedCache {
            entries: RwLock::new(HashMap::new()),
            ttl,
            capacity,
        }
    }

    fn key(account: &str, password: &str, stored_hash: &str) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        for part in [account, password, stored_hash] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    pub fn contains(&self, account: &str, password: &str, stored_hash: &str) -> bool {
        let key = Self::key(account, password, stored_hash);
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(&key).is_some_and(|at| at.elapsed() < self.ttl)
    }

    pub fn insert(&self, account: &str, password: &str, stored_hash: &str) {
        let key = Self::key(account, password, stored_hash);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, at| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let stored = hash("Secret123").expect("hash");
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("Secret123", &stored));
        assert!(!verify("secret123", &stored));
        assert!(!verify("Secret123", "not a phc string"));
        assert_ne!(hash("Secret123").expect("hash"), stored, "salted");
    }

    #[test]
    fn policy_is_harbors() {
        assert!(check_policy("Harbor12345").is_ok());
        for weak in ["short1A", "alllowercase1", "ALLUPPERCASE1", "NoDigitsHere"] {
            assert!(check_policy(weak).is_err(), "{weak}");
        }
        let secret = generate_secret().expect("secret");
        assert_eq!(secret.len(), 32);
        assert!(check_policy(&secret).is_ok());
        assert_ne!(generate_secret().expect("secret"), secret);
    }

    #[test]
    fn cache_is_keyed_by_the_stored_hash_too() {
        let cache = VerifiedCache::new(Duration::from_secs(60), 2);
        cache.insert("alice", "pw", "h1");
        assert!(cache.contains("alice", "pw", "h1"));
        assert!(!cache.contains("alice", "pw", "h2"), "password changed");
        assert!(!cache.contains("alice", "other", "h1"));
        cache.insert("bob", "pw", "h1");
        cache.insert("carol", "pw", "h1");
        assert!(cache.contains("carol", "pw", "h1"), "full cache makes room");
    }
}
