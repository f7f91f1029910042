//! Authentication and authorization.
//!
//! Authorization has one entry, [`Authorizer::decide`]: the principal, where the request
//! came from, and the accesses the endpoint requires (from `berth_core::Endpoint`) decide.
//! Handlers never check permissions themselves.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use berth_core::Access;
use sha2::Digest as _;

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User(String),
}

/// How clients authenticate.
pub enum AuthMode {
    /// No credentials. Reads are open; writes are open only to loopback clients unless
    /// `anonymous_write` says otherwise, so a registry bound to a public interface is never
    /// writable by the world by accident.
    Open { anonymous_write: bool },
    /// HTTP basic auth against an htpasswd file (bcrypt), as registry:2's `htpasswd` auth:
    /// every request needs valid credentials; any valid user may pull and push.
    Htpasswd { realm: String, passwords: Htpasswd },
}

/// The outcome of an access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Credentials are missing or wrong: 401 with a challenge.
    Challenge {
        realm: String,
    },
    /// The principal is known but may not do this: 403 with the reason.
    Deny(String),
}

pub struct Authorizer {
    mode: AuthMode,
}

impl Authorizer {
    pub fn new(mode: AuthMode) -> Authorizer {
        Authorizer { mode }
    }

    pub fn mode(&self) -> &AuthMode {
        &self.mode
    }

    /// Decide whether `principal`, connecting from a loopback address or not, may perform
    /// every access in `required`.
    pub fn decide(
        &self,
        principal: &Principal,
        peer_is_loopback: bool,
        required: &[Access],
    ) -> Decision {
        match &self.mode {
            AuthMode::Open { anonymous_write } => {
                let writes = required.iter().any(|a| a.action.writes());
                if writes && !anonymous_write && !peer_is_loopback {
                    Decision::Deny(
                        "anonymous writes are only accepted from this machine; configure authentication \
                         (htpasswd) or set BERTH_ANONYMOUS_WRITE=true"
                            .into(),
                    )
                } else {
                    Decision::Allow
                }
            }
            AuthMode::Htpasswd { realm, .. } => match principal {
                Principal::Anonymous => Decision::Challenge {
                    realm: realm.clone(),
                },
                Principal::User(_) => Decision::Allow,
            },
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::Action;

    fn push() -> Vec<Access> {
        vec![Access {
            repository: Some("a/b".parse().expect("name")),
            action: Action::Push,
        }]
    }

    fn pull() -> Vec<Access> {
        vec![Access {
            repository: Some("a/b".parse().expect("name")),
            action: Action::Pull,
        }]
    }

    #[test]
    fn open_mode_keeps_writes_to_loopback() {
        let open = Authorizer::new(AuthMode::Open {
            anonymous_write: false,
        });
        assert_eq!(
            open.decide(&Principal::Anonymous, true, &push()),
            Decision::Allow
        );
        assert!(matches!(
            open.decide(&Principal::Anonymous, false, &push()),
            Decision::Deny(_)
        ));
        assert_eq!(
            open.decide(&Principal::Anonymous, false, &pull()),
            Decision::Allow
        );
        let public = Authorizer::new(AuthMode::Open {
            anonymous_write: true,
        });
        assert_eq!(
            public.decide(&Principal::Anonymous, false, &push()),
            Decision::Allow
        );
    }

    #[test]
    fn htpasswd_requires_valid_users() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let passwords = Htpasswd::parse(&format!("# users\nalice:{hash}\n")).expect("parses");
        assert_eq!(passwords.verify_cached("alice", "s3cret"), None);
        assert!(passwords.verify("alice", "s3cret"));
        assert_eq!(passwords.verify_cached("alice", "s3cret"), Some(true));
        assert!(!passwords.verify("alice", "wrong"));
        assert_eq!(passwords.verify_cached("bob", "s3cret"), Some(false));
        assert!(Htpasswd::parse("carol:{SHA}abc").is_err());

        let auth = Authorizer::new(AuthMode::Htpasswd {
            realm: "berth".into(),
            passwords,
        });
        assert!(matches!(
            auth.decide(&Principal::Anonymous, true, &pull()),
            Decision::Challenge { .. }
        ));
        assert_eq!(
            auth.decide(&Principal::User("alice".into()), false, &push()),
            Decision::Allow
        );
    }
}
