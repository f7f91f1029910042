//! berth's own passwords and robot secrets: argon2id (PHC strings), Harbor's password
//! policy, generated secrets, and a cache so a credential is hashed once, not per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Digest as _;

/// The memory one argon2id computation works in (19 MiB with the default parameters),
/// allocated here instead of by the argon2 crate, with room for more than 32 MiB. glibc
/// serves an allocation that large with `mmap`, and when one of up to 32 MiB is freed it
/// raises its mmap threshold to that size (and its trim threshold to twice that) for the
/// rest of the process. After the crate's own 19 MiB buffer was freed once, every buffer
/// below 19 MiB came from the arenas, which kept up to 38 MiB of freed memory each: peak
/// RSS during bench (f) in token mode was 139–154 MiB, and is 79–97 MiB with this. Freeing
/// more than 32 MiB leaves the threshold alone; the capacity beyond what is used is never
/// touched, so it costs address space, not memory.
fn argon2_memory(blocks: usize) -> Vec<Block> {
    const ABOVE_GLIBC_LARGEST_DYNAMIC_THRESHOLD: usize = (32 << 20) / Block::SIZE + 1;
    let mut memory = Vec::with_capacity(blocks.max(ABOVE_GLIBC_LARGEST_DYNAMIC_THRESHOLD));
    memory.resize(blocks, Block::new());
    memory
}

/// One argon2 computation of `password` with `salt` into `output`, in [`argon2_memory`].
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &str,
    salt: &[u8],
    output: &mut [u8],
) -> argon2::Result<()> {
    let memory = argon2_memory(params.block_count());
    Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        output,
        memory,
    )
}

/// Hash a password (or robot secret) with argon2id (the crate's default parameters) and a
/// fresh 16-byte salt, as a PHC string.
pub fn hash(password: &str) -> Result<String, String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot hash password: {e}");
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "the system random generator failed".to_string())?;
    let params = Params::default();
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(
        Algorithm::Argon2id,
        Version::V0x13,
        params.clone(),
        password,
        &salt,
        &mut output,
    )
    .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| fail(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| fail(&e))?),
        hash: Some(Output::new(&output).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Check a password against a stored PHC hash (any argon2 variant and parameters). Slow by
/// design (~20 ms): call it off the async threads, and only when [`VerifiedCache`] has not
/// seen the credential.
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut output = vec![0u8; expected.len()];
    let computed = argon2_into(algorithm, version, params, password, salt, &mut output);
    // `Output`'s equality is constant-time.
    computed.is_ok() && Output::new(&output).is_ok_and(|output| &output == expected)
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

    pub(crate) fn key(account: &str, password: &str, stored_hash: &str) -> [u8; 32] {
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

/// The argon2id checks in progress. Each takes about 19 MiB and a core for tens of
/// milliseconds, so a burst of requests — 32 CI jobs starting at once with the same robot's
/// secret, or someone guessing passwords — must not run one per request: a credential
/// presented by many requests at once is checked once and all of them get that answer, and
/// at most one check per core runs at a time (the rest queue), which bounds the memory.
pub struct Verifications {
    in_flight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>>,
    cores: tokio::sync::Semaphore,
}

impl Default for Verifications {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Verifications {
            in_flight: Mutex::new(HashMap::new()),
            cores: tokio::sync::Semaphore::new(cores),
        }
    }
}

impl Verifications {
    /// Whether `password` matches `stored_hash` (of `account`), sharing a check already
    /// running for the same three.
    pub async fn verify(&self, account: &str, password: &str, stored_hash: &str) -> bool {
        let key = VerifiedCache::key(account, password, stored_hash);
        let check = Arc::clone(
            self.lock()
                .entry(key)
                .or_insert_with(|| Arc::new(tokio::sync::OnceCell::new())),
        );
        // If the request running the check goes away, a waiting one takes it over.
        let ok = *check
            .get_or_init(|| async {
                let (password, stored) = (password.to_owned(), stored_hash.to_owned());
                self.on_a_core(move || verify(&password, &stored)).await
            })
            .await;
        let mut in_flight = self.lock();
        if in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &check)) {
            in_flight.remove(&key);
        }
        ok
    }

    /// The same work as a check, for an account that does not exist (no timing oracle).
    pub async fn verify_nothing(&self, password: &str) {
        let password = password.to_owned();
        self.on_a_core(move || {
            verify_nothing(&password);
            false
        })
        .await;
    }

    async fn on_a_core(&self, check: impl FnOnce() -> bool + Send + 'static) -> bool {
        let Ok(_core) = self.cores.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(check).await.unwrap_or(false)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_requests_with_one_credential_share_one_check() {
        let stored = Arc::new(hash("Secret123").expect("hash"));
        let checks = Arc::new(Verifications::default());
        let began = Instant::now();
        let one = checks.verify("alice", "Secret123", &stored).await;
        let alone = began.elapsed();
        assert!(one);
        let began = Instant::now();
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..32 {
            let (checks, stored) = (Arc::clone(&checks), Arc::clone(&stored));
            requests.spawn(async move {
                let password = if i == 7 { "wrong" } else { "Secret123" };
                (i, checks.verify("alice", password, &stored).await)
            });
        }
        while let Some(answer) = requests.join_next().await {
            let (i, ok) = answer.expect("request");
            assert_eq!(ok, i != 7, "request {i}");
        }
        // Two distinct credentials: about two checks' time, not 32 (generous for a busy box).
        assert!(
            began.elapsed() < alone * 12,
            "32 requests took {:?}, one check {alone:?}",
            began.elapsed()
        );
        assert!(checks.lock().is_empty(), "nothing left in flight");
    }

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
    fn hashes_made_elsewhere_verify() {
        // Made with the reference implementation (Debian's `argon2` command):
        // `echo -n Secret123 | argon2 berthsaltberthsalt -id -t 2 -m 12 -p 1 -l 32 -e`, and
        // the same with `-i -t 3 -m 10 -p 2 -l 24`.
        let reference_id = "$argon2id$v=19$m=4096,t=2,p=1$YmVydGhzYWx0YmVydGhzYWx0$RVARCd46FZQm5acHdgejskKLrF+dvpdJDP69JX0gPI8";
        let reference_i = "$argon2i$v=19$m=1024,t=3,p=2$YmVydGhzYWx0YmVydGhzYWx0$yBhdZ/fMqwiGipvW0EtDVUoHlvYo8Yl7";
        for stored in [reference_id, reference_i] {
            assert!(verify("Secret123", stored), "{stored}");
            assert!(!verify("Secret124", stored), "{stored}");
        }
        // The argon2 crate's own hashing, and its own check of ours.
        use argon2::{PasswordHasher, PasswordVerifier};
        let crates = Argon2::default()
            .hash_password(b"Secret123")
            .expect("hash")
            .to_string();
        assert!(verify("Secret123", &crates));
        let ours = PasswordHash::new(&hash("Secret123").expect("hash")).expect("phc");
        assert!(
            Argon2::default()
                .verify_password(b"Secret123", &ours)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"Secret124", &ours)
                .is_err()
        );
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
