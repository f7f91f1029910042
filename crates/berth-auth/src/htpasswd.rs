//! Users and bcrypt hashes from an Apache htpasswd file, as registry:2's `htpasswd` auth.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use sha2::Digest as _;

/// Users and bcrypt hashes from an Apache htpasswd file.
pub struct Htpasswd {
    hashes: HashMap<String, String>,
    /// sha256(user, password) of credentials already verified: bcrypt is deliberately slow
    /// (milliseconds) and clients send credentials on every request.
    verified: Mutex<HashSet<[u8; 32]>>,
}

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("cannot read htpasswd file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("htpasswd line {line}: {reason}")]
    Line { line: usize, reason: &'static str },
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Htpasswd::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut hashes = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or(HtpasswdError::Line {
                line: index + 1,
                reason: "expected user:hash",
            })?;
            if !(hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")) {
                return Err(HtpasswdError::Line {
                    line: index + 1,
                    reason: "only bcrypt hashes are supported (create entries with htpasswd -B)",
                });
            }
            hashes.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd {
            hashes,
            verified: Mutex::new(HashSet::new()),
        })
    }

    fn cache_key(user: &str, password: &str) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// `Some(true)` if these credentials were verified before; `None` if bcrypt must run.
    pub fn verify_cached(&self, user: &str, password: &str) -> Option<bool> {
        if !self.hashes.contains_key(user) {
            return Some(false);
        }
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified
            .contains(&Self::cache_key(user, password))
            .then_some(true)
    }

    /// Check credentials with bcrypt (slow: call off the async threads).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.hashes.get(user) else {
            return false;
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            verified.insert(Self::cache_key(user, password));
        }
        ok
    }
}
