//! Authentication and authorization.
//!
//! Authorization has one entry, [`Authorizer::decide`]: the principal, where the request
//! came from, and the accesses the endpoint requires (from `berth_core::Endpoint`) decide.
//! Listings and mounts ask [`Authorizer::visibility`], which answers from the same rules.
//! Handlers never check permissions themselves.
//!
//! - [`AuthMode::Open`]: anonymous; writes only from loopback unless configured otherwise.
//! - [`AuthMode::Htpasswd`]: registry:2's basic auth; any valid user may do anything.
//! - [`AuthMode::Token`]: berth's own users and robots, Harbor's projects and roles, and
//!   Docker token auth ([`access`]).

use std::sync::Arc;

use berth_core::Access;

pub mod access;
mod htpasswd;
pub mod identity;
pub mod mgmt;
pub mod password;
mod throttle;
pub mod token;

pub use access::{
    Account, AuthFailure, ProjectCreation, Refusal, TokenAuth, TokenSettings, Visibility,
};
pub use htpasswd::{Htpasswd, HtpasswdError};
pub use identity::{IdentityError, IdentityService};
pub use token::{Claims, ResourceActions};

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    /// An htpasswd user.
    User(String),
    /// Token mode: a user or robot that sent its password or secret (Basic).
    Account(Account),
    /// Token mode: a bearer token this registry issued.
    Bearer(Arc<Claims>),
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
    /// berth's accounts, projects and roles, with Docker token auth.
    Token(Arc<TokenAuth>),
}

/// The outcome of an access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Credentials are missing, wrong or insufficient: 401 with a challenge.
    Challenge(Challenge),
    /// The principal is known but may not do this: 403 with the reason.
    Deny(String),
}

/// What a 401 asks the client for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: String,
    },
    /// A token covering these scopes from `/service/token`; `error` as RFC 6750 says
    /// (`insufficient_scope`, `invalid_token`).
    Bearer {
        scope: Vec<ResourceActions>,
        error: Option<&'static str>,
    },
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

    /// The token service, in token mode.
    pub fn token_auth(&self) -> Option<&Arc<TokenAuth>> {
        match &self.mode {
            AuthMode::Token(auth) => Some(auth),
            _ => None,
        }
    }

    /// Decide whether `principal`, connecting from a loopback address or not, may perform
    /// every access in `required`.
    pub async fn decide(
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
                         (htpasswd or token) or set BERTH_ANONYMOUS_WRITE=true"
                            .into(),
                    )
                } else {
                    Decision::Allow
                }
            }
            AuthMode::Htpasswd { realm, .. } => match principal {
                Principal::User(_) => Decision::Allow,
                _ => Decision::Challenge(Challenge::Basic {
                    realm: realm.clone(),
                }),
            },
            AuthMode::Token(auth) => {
                let caller = match principal {
                    Principal::Account(account) => access::Caller::Account(account),
                    Principal::Bearer(claims) => access::Caller::Token(claims),
                    _ => access::Caller::Anonymous,
                };
                match auth.decide(caller, required).await {
                    Ok(Ok(())) => Decision::Allow,
                    Ok(Err(Refusal::Deny(reason))) => Decision::Deny(reason),
                    Ok(Err(Refusal::Challenge { scope, error })) => {
                        Decision::Challenge(Challenge::Bearer { scope, error })
                    }
                    Err(e) => {
                        // Never allow on a failure to decide.
                        tracing::error!(error = %e, "authorization failed");
                        Decision::Deny("authorization is unavailable; try again".into())
                    }
                }
            }
        }
    }

    /// What the principal may see in listings (`_catalog`, `/api/v2.0`'s repositories and
    /// search) and mount blobs from. With htpasswd, only its users see anything.
    pub async fn visibility(&self, principal: &Principal) -> Visibility {
        let auth = match &self.mode {
            AuthMode::Open { .. } => return Visibility::All,
            AuthMode::Htpasswd { .. } if matches!(principal, Principal::User(_)) => {
                return Visibility::All;
            }
            AuthMode::Htpasswd { .. } => return Visibility::Projects(Default::default()),
            AuthMode::Token(auth) => auth,
        };
        let caller = match principal {
            Principal::Account(account) => access::Caller::Account(account),
            Principal::Bearer(claims) => access::Caller::Token(claims),
            _ => access::Caller::Anonymous,
        };
        match auth.visibility(caller).await {
            Ok(visibility) => visibility,
            Err(e) => {
                tracing::error!(error = %e, "cannot compute what the caller may see");
                Visibility::Projects(Default::default())
            }
        }
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

    #[tokio::test]
    async fn open_mode_keeps_writes_to_loopback() {
        let open = Authorizer::new(AuthMode::Open {
            anonymous_write: false,
        });
        assert_eq!(
            open.decide(&Principal::Anonymous, true, &push()).await,
            Decision::Allow
        );
        assert!(matches!(
            open.decide(&Principal::Anonymous, false, &push()).await,
            Decision::Deny(_)
        ));
        assert_eq!(
            open.decide(&Principal::Anonymous, false, &pull()).await,
            Decision::Allow
        );
        let public = Authorizer::new(AuthMode::Open {
            anonymous_write: true,
        });
        assert_eq!(
            public.decide(&Principal::Anonymous, false, &push()).await,
            Decision::Allow
        );
    }

    #[tokio::test]
    async fn htpasswd_requires_valid_users() {
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
            auth.decide(&Principal::Anonymous, true, &pull()).await,
            Decision::Challenge(Challenge::Basic { .. })
        ));
        assert_eq!(
            auth.decide(&Principal::User("alice".into()), false, &push())
                .await,
            Decision::Allow
        );
        // Listings that anyone may ask for (`/api/v2.0/repositories`, search) show an
        // anonymous caller nothing.
        assert!(matches!(
            auth.visibility(&Principal::Anonymous).await,
            Visibility::Projects(p) if p.is_empty()
        ));
        assert!(matches!(
            auth.visibility(&Principal::User("alice".into())).await,
            Visibility::All
        ));
    }
}
