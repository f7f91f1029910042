//! Token mode: berth's own accounts (users and robots in the metadata store), Harbor's
//! project roles, and Docker token auth. Knows who a caller is ([`TokenAuth::authenticate_basic`],
//! [`TokenAuth::authenticate_bearer`]), what an account may do ([`Grants`]), and issues
//! tokens whose `access` is the intersection of what was asked and what is allowed.
//!
//! Nothing here runs a password hash per request: verified credentials, verified tokens,
//! accounts' grants and projects' visibility are cached. The caches are invalidated by every
//! identity write through this process ([`TokenAuth::invalidate`]) and expire after a few
//! seconds, which bounds how long a change made by another process (the `berth` CLI, another
//! node) takes to apply.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use berth_core::access::{RobotName, project_of};
use berth_core::{Access, Action, RepositoryName, RobotPermission, Role};
use berth_meta::IdentityStore;

use crate::password::{Verifications, VerifiedCache};
use crate::throttle::Throttle;
use crate::token::{Audience, Claims, KeyRing, ResourceActions, TokenError, random_id};

/// How often the signing keys are re-read, so a rotation reaches every node.
const KEY_REFRESH: Duration = Duration::from_secs(60);

/// Settings of token mode.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The `service` of challenges and the tokens' audience.
    pub service: String,
    /// The tokens' issuer.
    pub issuer: String,
    /// How long an access token lives.
    pub token_lifetime: Duration,
    /// How long a refresh token (`offline_token=true`) lives.
    pub refresh_lifetime: Duration,
    /// How long cached grants and project visibility are trusted without re-reading them.
    pub cache_ttl: Duration,
    /// Who may create a project by pushing into it (else a push into a missing project is
    /// refused, saying so).
    pub create_project_on_push: ProjectCreation,
    /// Who may create projects through the API (Harbor's `project_creation_restriction`:
    /// `Users` is its `everyone`, `Administrators` its `adminonly`).
    pub project_creation: ProjectCreation,
}

/// Who may create a missing project by pushing into it; the pusher becomes its project admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProjectCreation {
    #[default]
    Nobody,
    /// System administrators.
    Administrators,
    /// Any user (not robots), as Harbor's `project_creation_restriction: everyone`.
    Users,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            service: "berth".into(),
            issuer: "berth".into(),
            token_lifetime: Duration::from_secs(30 * 60),
            refresh_lifetime: Duration::from_secs(30 * 24 * 3600),
            cache_ttl: Duration::from_secs(5),
            create_project_on_push: ProjectCreation::Nobody,
            project_creation: ProjectCreation::Users,
        }
    }
}

/// An authenticated account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    User { name: String, sysadmin: bool },
    Robot { name: String },
}

impl Account {
    pub fn name(&self) -> &str {
        match self {
            Account::User { name, .. } | Account::Robot { name } => name,
        }
    }
}

/// What an account may do: system administrator, roles per project, or a robot's
/// permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The account's name.
    pub account: String,
    /// The user's id; `None` for robots.
    pub user_id: Option<i64>,
    pub sysadmin: bool,
    pub roles: HashMap<String, Role>,
    pub robot: Vec<RobotPermission>,
}

impl Grants {
    /// Whether these grants allow `action` in `project` (public projects add pulls).
    fn allows(&self, project: &str, public: bool, action: Action) -> bool {
        self.sysadmin
            || (action == Action::Pull && public)
            || self.roles.get(project).is_some_and(|r| r.allows(action))
            || self.robot.iter().any(|p| p.allows(project, action))
    }
}

/// What a caller may see in listings (`_catalog`) and mount from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Everything (system administrators; modes without projects).
    All,
    /// Repositories of these projects.
    Projects(HashSet<String>),
}

impl Visibility {
    pub fn may_pull(&self, repository: &RepositoryName) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Projects(projects) => {
                project_of(repository).is_some_and(|p| projects.contains(p))
            }
        }
    }
}

/// Why a request cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No (usable) credentials: challenge for a token covering `scope`.
    Challenge {
        scope: Vec<ResourceActions>,
        error: Option<&'static str>,
    },
    /// Known caller without the permission: 403 with this reason.
    Deny(String),
}

/// Failure to authenticate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// Wrong user, password, secret, or a disabled or expired robot: all look the same.
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("too many failed logins; retry in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("{0}")]
    InvalidToken(TokenError),
    #[error("the identity store failed: {0}")]
    Store(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProjectInfo {
    public: bool,
}

/// A cache whose entries expire.
struct TtlCache<V> {
    entries: RwLock<foldhash::HashMap<String, (Instant, V)>>,
    ttl: Duration,
}

impl<V: Clone> TtlCache<V> {
    fn new(ttl: Duration) -> Self {
        TtlCache {
            entries: RwLock::new(foldhash::HashMap::default()),
            ttl,
        }
    }

    fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: &str, value: V) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 10_000 {
            entries.clear();
        }
        entries.insert(key.to_owned(), (Instant::now(), value));
    }

    fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Tokens as the registry received them, each verified once, found by the first bytes of
/// their signature (a JWT's last segment) with the whole token kept and compared on a hit.
/// The signatures of the tokens berth issued are unpredictable, so 24 base64 characters
/// (144 bits) tell them apart; a forged token that shares them finds an entry whose token
/// is not its own, is verified in full and fails. Looking at a few bytes, not hashing the
/// token, keeps a cached check cheaper than the rest of the request.
///
/// In front of it, each thread keeps its own copies of the last few tokens it saw
/// ([`LOCAL_TOKENS`]): a hit there writes no memory another thread touches. The shared map
/// alone made every request of every core write its lock word and the claims' reference
/// count, and those cache lines bouncing between cores were most of what token mode added
/// to a cached `GET` (it cost nothing when the server ran on one core).
struct VerifiedTokens {
    /// Which cache this is, in the threads' copies (a process may hold several).
    id: u64,
    entries: RwLock<foldhash::HashMap<SignaturePrefix, VerifiedToken>>,
}

/// How many tokens each thread keeps copies of.
const LOCAL_TOKENS_PER_THREAD: usize = 8;

/// A thread's copy of a verified token: (cache id, token, claims of its own).
type LocalToken = (u64, Box<str>, Arc<Claims>);

thread_local! {
    /// This thread's copies, the newest last.
    static LOCAL_TOKENS: std::cell::RefCell<Vec<LocalToken>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The first [`SIGNATURE_PREFIX`] bytes of a token's signature segment (zero-padded).
type SignaturePrefix = [u8; SIGNATURE_PREFIX];
const SIGNATURE_PREFIX: usize = 24;

/// A verified token as presented, and what it says.
type VerifiedToken = (Box<str>, Arc<Claims>);

impl VerifiedTokens {
    fn new() -> VerifiedTokens {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        VerifiedTokens {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            entries: RwLock::new(foldhash::HashMap::default()),
        }
    }

    /// This thread's copy of `token`'s claims, if it has one that has not expired.
    fn local(&self, token: &str, now: i64) -> Option<Arc<Claims>> {
        LOCAL_TOKENS.with_borrow(|local| {
            local
                .iter()
                .rev()
                .find(|(id, known, claims)| *id == self.id && **known == *token && claims.exp > now)
                .map(|(_, _, claims)| claims.clone())
        })
    }

    /// Keep a copy of `claims` for this thread, with a reference count of its own.
    fn keep_local(&self, token: &str, claims: &Claims) -> Arc<Claims> {
        let copy = Arc::new(claims.clone());
        LOCAL_TOKENS.with_borrow_mut(|local| {
            if local.len() >= LOCAL_TOKENS_PER_THREAD {
                local.remove(0);
            }
            local.push((self.id, token.into(), copy.clone()));
        });
        copy
    }

    fn key(token: &str) -> SignaturePrefix {
        let signature = token.rsplit_once('.').map_or(token, |(_, s)| s).as_bytes();
        let mut key = [0u8; SIGNATURE_PREFIX];
        let n = signature.len().min(SIGNATURE_PREFIX);
        key[..n].copy_from_slice(&signature[..n]);
        key
    }
}

/// What `/service/token` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    /// RFC 3339.
    pub issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The scopes granted, space-separated (the OAuth2 POST answer carries it).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// Token mode's state.
pub struct TokenAuth {
    store: Arc<dyn IdentityStore>,
    settings: TokenSettings,
    /// The signing keys and when they were read: re-read every [`KEY_REFRESH`] (a rotation
    /// by the CLI or another node) and at once for a token signed by an unknown key.
    keys: RwLock<(Arc<KeyRing>, Instant)>,
    verified_credentials: VerifiedCache,
    /// argon2id checks running: shared per credential, one per core.
    verifications: Verifications,
    verified_tokens: VerifiedTokens,
    grants: TtlCache<Option<Arc<Grants>>>,
    accounts: TtlCache<Option<(String, Account)>>,
    projects: TtlCache<Option<ProjectInfo>>,
    public_projects: TtlCache<Arc<HashSet<String>>>,
    throttle: Throttle,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TokenAuth {
    /// Token mode over `store`; makes a signing key on first start.
    pub async fn open(
        store: Arc<dyn IdentityStore>,
        settings: TokenSettings,
    ) -> Result<TokenAuth, String> {
        let keys = load_or_create_keys(store.as_ref()).await?;
        Ok(TokenAuth {
            store,
            keys: RwLock::new((Arc::new(keys), Instant::now())),
            verified_credentials: VerifiedCache::new(Duration::from_secs(300), 10_000),
            verifications: Verifications::default(),
            verified_tokens: VerifiedTokens::new(),
            grants: TtlCache::new(settings.cache_ttl),
            accounts: TtlCache::new(settings.cache_ttl),
            projects: TtlCache::new(settings.cache_ttl),
            public_projects: TtlCache::new(settings.cache_ttl),
            throttle: Throttle::default(),
            settings,
        })
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// The identity tables (for the management decision).
    pub(crate) fn store(&self) -> &dyn IdentityStore {
        self.store.as_ref()
    }

    /// Forget cached grants and projects (after an identity change through this process).
    pub fn invalidate(&self) {
        self.grants.clear();
        self.accounts.clear();
        self.projects.clear();
        self.public_projects.clear();
    }

    /// Re-read the signing keys (after a rotation).
    pub async fn reload_keys(&self) -> Result<Arc<KeyRing>, String> {
        let stored = self.store.signing_keys().await.map_err(|e| e.to_string())?;
        let keys = Arc::new(KeyRing::from_keys(&stored));
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = (keys.clone(), Instant::now());
        Ok(keys)
    }

    /// The keys, re-read when they are older than [`KEY_REFRESH`] (or, with `unknown_kid`,
    /// older than a few seconds: a token names a key another node has just made).
    async fn keys(&self, unknown_kid: bool) -> Arc<KeyRing> {
        let (keys, loaded) = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        let age = loaded.elapsed();
        if age <= KEY_REFRESH && !(unknown_kid && age > Duration::from_secs(2)) {
            return keys;
        }
        match self.reload_keys().await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the token signing keys");
                keys
            }
        }
    }

    /// Verify a token with the current keys, re-reading them once if it names an unknown key.
    async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let (issuer, audience) = (&self.settings.issuer, &self.settings.service);
        match self
            .keys(false)
            .await
            .verify(token, issuer, audience, now_secs())
        {
            Err(TokenError::UnknownKey) => {
                self.keys(true)
                    .await
                    .verify(token, issuer, audience, now_secs())
            }
            other => other,
        }
    }

    /// Check a user name (or robot name) and password (or secret). Slow only the first time
    /// a credential is seen; refused while the account or address is throttled.
    pub async fn authenticate_basic(
        &self,
        name: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Account, AuthFailure> {
        if let Some(wait) = self.throttle.wait(name, client) {
            return Err(AuthFailure::Throttled {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        let found = self.credentials(name).await?;
        let cached = found
            .as_ref()
            .is_some_and(|(hash, _)| self.verified_credentials.contains(name, password, hash));
        if cached && let Some((_, account)) = found {
            return Ok(account);
        }
        let ok = match &found {
            Some((hash, _)) => self.verifications.verify(name, password, hash).await,
            None => {
                self.verifications.verify_nothing(password).await;
                false
            }
        };
        match found {
            Some((hash, account)) if ok => {
                self.verified_credentials.insert(name, password, &hash);
                self.throttle.succeeded(name, client);
                Ok(account)
            }
            _ => {
                self.throttle.failed(name, client);
                tracing::info!(account = name, client = ?client, "failed login");
                Err(AuthFailure::InvalidCredentials)
            }
        }
    }

    /// An account's stored secret hash and identity (cached like grants), if it exists and
    /// may log in (a robot neither disabled nor expired).
    async fn credentials(&self, name: &str) -> Result<Option<(String, Account)>, AuthFailure> {
        if let Some(cached) = self.accounts.get(name) {
            return Ok(cached);
        }
        let store_err = |e: berth_meta::MetaError| AuthFailure::Store(e.to_string());
        let found = if RobotName::parse(name).is_some() {
            self.store
                .robot_by_name(name)
                .await
                .map_err(store_err)?
                .filter(|r| !r.disabled && r.expires_at.is_none_or(|at| at > now_secs()))
                .map(|r| (r.secret_hash, Account::Robot { name: r.name }))
        } else {
            self.store
                .user_by_name(name)
                .await
                .map_err(store_err)?
                .map(|u| {
                    (
                        u.password_hash,
                        Account::User {
                            name: u.name,
                            sysadmin: u.sysadmin,
                        },
                    )
                })
        };
        self.accounts.put(name, found.clone());
        Ok(found)
    }

    /// Verify a bearer token presented to the registry (verified once, then cached).
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Arc<Claims>, AuthFailure> {
        let now = now_secs();
        if let Some(claims) = self.verified_tokens.local(token, now) {
            return Ok(claims);
        }
        let key = VerifiedTokens::key(token);
        let shared = {
            let entries = self
                .verified_tokens
                .entries
                .read()
                .unwrap_or_else(|p| p.into_inner());
            entries
                .get(&key)
                .filter(|(verified, claims)| **verified == *token && claims.exp > now)
                .map(|(_, claims)| claims.clone())
        };
        if let Some(claims) = shared {
            return Ok(self.verified_tokens.keep_local(token, &claims));
        }
        let claims = self
            .verify(token)
            .await
            .map_err(AuthFailure::InvalidToken)?;
        if claims.refresh {
            return Err(AuthFailure::InvalidToken(TokenError::WrongKind));
        }
        let claims = Arc::new(claims);
        let mut entries = self
            .verified_tokens
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if entries.len() >= 10_000 {
            entries.retain(|_, (_, c)| c.exp > now);
            if entries.len() >= 10_000 {
                entries.clear();
            }
        }
        entries.insert(key, (token.into(), claims.clone()));
        drop(entries);
        Ok(self.verified_tokens.keep_local(token, &claims))
    }

    /// The grants of an account by name; `None` if it no longer exists (or is disabled).
    pub async fn grants(&self, account: &str) -> Result<Option<Arc<Grants>>, AuthFailure> {
        if account.is_empty() {
            return Ok(None);
        }
        if let Some(cached) = self.grants.get(account) {
            return Ok(cached);
        }
        let store_err = |e: berth_meta::MetaError| AuthFailure::Store(e.to_string());
        let grants = if RobotName::parse(account).is_some() {
            self.store
                .robot_by_name(account)
                .await
                .map_err(store_err)?
                .filter(|r| !r.disabled && r.expires_at.is_none_or(|at| at > now_secs()))
                .map(|r| Grants {
                    account: r.name,
                    robot: r.permissions,
                    ..Grants::default()
                })
        } else {
            match self.store.user_by_name(account).await.map_err(store_err)? {
                Some(user) => {
                    let roles = self
                        .store
                        .memberships(user.id)
                        .await
                        .map_err(store_err)?
                        .into_iter()
                        .map(|m| (m.project.name, m.role))
                        .collect();
                    Some(Grants {
                        account: user.name,
                        user_id: Some(user.id),
                        sysadmin: user.sysadmin,
                        roles,
                        robot: Vec::new(),
                    })
                }
                None => None,
            }
        }
        .map(Arc::new);
        self.grants.put(account, grants.clone());
        Ok(grants)
    }

    async fn project(&self, name: &str) -> Result<Option<ProjectInfo>, AuthFailure> {
        if let Some(cached) = self.projects.get(name) {
            return Ok(cached);
        }
        let info = self
            .store
            .project_by_name(name)
            .await
            .map_err(|e| AuthFailure::Store(e.to_string()))?
            .map(|p| ProjectInfo { public: p.public });
        self.projects.put(name, info.clone());
        Ok(info)
    }

    /// Whether `grants` (none: anonymous) allow `action` on `repository`, or why not.
    async fn check(
        &self,
        grants: Option<&Grants>,
        repository: &RepositoryName,
        action: Action,
    ) -> Result<Result<(), String>, AuthFailure> {
        let sysadmin = grants.is_some_and(|g| g.sysadmin);
        let denied = || {
            Err(format!(
                "{} on {repository} is not allowed for this account",
                action.as_str()
            ))
        };
        let Some(project) = project_of(repository) else {
            return Ok(if sysadmin {
                Ok(())
            } else {
                Err(format!(
                    "{repository} belongs to no project: name repositories <project>/<name>"
                ))
            });
        };
        if action == Action::Push
            && let Some(g) = grants
            && self.create_missing_project(g, project).await?
        {
            return Ok(Ok(()));
        }
        let Some(info) = self.project(project).await? else {
            return Ok(if sysadmin && action != Action::Push {
                Ok(())
            } else if action == Action::Push {
                Err(format!(
                    "project {project} does not exist: create it first (berth project create {project})"
                ))
            } else {
                denied()
            });
        };
        let allowed = match grants {
            Some(g) => g.allows(project, info.public, action),
            None => action == Action::Pull && info.public,
        };
        Ok(if allowed { Ok(()) } else { denied() })
    }

    /// With `create_project_on_push`, create `project` for a pusher allowed to, making it
    /// the project's admin. Whether the pusher now holds the project (created here, or by a
    /// racing push of its own).
    async fn create_missing_project(
        &self,
        grants: &Grants,
        project: &str,
    ) -> Result<bool, AuthFailure> {
        let allowed = match self.settings.create_project_on_push {
            ProjectCreation::Nobody => false,
            ProjectCreation::Administrators => grants.sysadmin,
            ProjectCreation::Users => grants.user_id.is_some(),
        };
        let Some(user_id) = grants.user_id.filter(|_| allowed) else {
            return Ok(false);
        };
        if self.project(project).await?.is_some()
            || !berth_core::access::valid_project_name(project)
        {
            return Ok(false);
        }
        let store_err = |e: berth_meta::MetaError| AuthFailure::Store(e.to_string());
        let id = match self
            .store
            .create_project(project, false, Some(user_id))
            .await
        {
            Ok(id) => id,
            // Another push created it first: decide as for any existing project.
            Err(berth_meta::MetaError::Conflict(_)) => {
                self.invalidate();
                return Ok(false);
            }
            Err(e) => return Err(store_err(e)),
        };
        self.store
            .set_member(id, user_id, Role::ProjectAdmin)
            .await
            .map_err(store_err)?;
        self.invalidate();
        tracing::info!(project, user_id, "created a project on push");
        Ok(true)
    }

    /// The one decision in token mode: may this caller (`None`: anonymous; else its grants)
    /// perform every access in `required`?
    pub async fn decide(
        &self,
        caller: Caller<'_>,
        required: &[Access],
    ) -> Result<Result<(), Refusal>, AuthFailure> {
        let challenge = |error| Refusal::Challenge {
            scope: scope_of(required),
            error,
        };
        let grants = match caller {
            // `GET /v2/` (and any path that names nothing) asks anonymous callers to log in,
            // which is how `docker login` and every client learn where tokens come from.
            Caller::Anonymous if required.is_empty() => return Ok(Err(challenge(None))),
            // `_catalog` too, as registry:2 and Harbor with token auth: the client fetches a
            // token (anonymous or its own) and gets the listing that caller may see.
            Caller::Anonymous if required.iter().any(|a| a.repository.is_none()) => {
                return Ok(Err(challenge(None)));
            }
            Caller::Anonymous => None,
            Caller::Account(account) => {
                let Some(grants) = self.grants(account.name()).await? else {
                    return Ok(Err(challenge(None)));
                };
                Some(grants)
            }
            Caller::Token(claims) => {
                // The token is the authority; what it lacks is the account's to ask for.
                let missing: Vec<&Access> = required
                    .iter()
                    .filter(|a| !token_covers(claims, a))
                    .collect();
                if missing.is_empty() {
                    return Ok(Ok(()));
                }
                let Some(grants) = self.grants(&claims.sub).await? else {
                    return Ok(Err(challenge(Some("insufficient_scope"))));
                };
                for access in missing {
                    if let Some(repository) = &access.repository
                        && let Err(reason) =
                            self.check(Some(&grants), repository, access.action).await?
                    {
                        return Ok(Err(Refusal::Deny(reason)));
                    }
                }
                // Allowed, but not by this token: the client fetches one that says so.
                return Ok(Err(challenge(Some("insufficient_scope"))));
            }
        };
        for access in required {
            let Some(repository) = &access.repository else {
                // `_catalog`: everyone may list; the listing shows only what they may see.
                continue;
            };
            if let Err(reason) = self
                .check(grants.as_deref(), repository, access.action)
                .await?
            {
                return Ok(Err(match grants {
                    None => challenge(None),
                    Some(_) => Refusal::Deny(reason),
                }));
            }
        }
        Ok(Ok(()))
    }

    /// What the caller may see in listings and mount from.
    pub async fn visibility(&self, caller: Caller<'_>) -> Result<Visibility, AuthFailure> {
        let name = match caller {
            Caller::Anonymous => "",
            Caller::Account(account) => account.name(),
            Caller::Token(claims) => claims.sub.as_str(),
        };
        let grants = self.grants(name).await?;
        if grants.as_ref().is_some_and(|g| g.sysadmin) {
            return Ok(Visibility::All);
        }
        let mut projects: HashSet<String> = (*self.public_projects().await?).clone();
        if let Some(grants) = grants {
            projects.extend(grants.roles.keys().cloned());
            let every_project = grants
                .robot
                .iter()
                .any(|p| p.namespace == "*" && p.allows("*", Action::Pull));
            if every_project {
                return Ok(Visibility::All);
            }
            projects.extend(
                grants
                    .robot
                    .iter()
                    .filter(|p| p.allows(&p.namespace, Action::Pull))
                    .map(|p| p.namespace.clone()),
            );
        }
        Ok(Visibility::Projects(projects))
    }

    async fn public_projects(&self) -> Result<Arc<HashSet<String>>, AuthFailure> {
        if let Some(cached) = self.public_projects.get("") {
            return Ok(cached);
        }
        let public: HashSet<String> = self
            .store
            .list_projects()
            .await
            .map_err(|e| AuthFailure::Store(e.to_string()))?
            .into_iter()
            .filter(|p| p.public)
            .map(|p| p.name)
            .collect();
        let public = Arc::new(public);
        self.public_projects.put("", public.clone());
        Ok(public)
    }

    /// Issue an access token for `account` (`None`: anonymous) covering the intersection of
    /// `requested` scopes with what the account may do; with `offline`, a refresh token too.
    pub async fn issue(
        &self,
        account: Option<&str>,
        requested: &[ResourceActions],
        offline: bool,
    ) -> Result<IssuedToken, AuthFailure> {
        let grants = match account {
            Some(name) => Some(
                self.grants(name)
                    .await?
                    .ok_or(AuthFailure::InvalidCredentials)?,
            ),
            None => None,
        };
        let mut access: Vec<ResourceActions> = Vec::new();
        for scope in requested {
            let granted = self.granted_actions(grants.as_deref(), scope).await?;
            if granted.is_empty() {
                continue;
            }
            // Several scopes for one resource merge into one entry.
            match access
                .iter_mut()
                .find(|a| a.kind == scope.kind && a.name == scope.name)
            {
                Some(entry) => {
                    for action in granted {
                        if !entry.actions.contains(&action) {
                            entry.actions.push(action);
                        }
                    }
                }
                None => access.push(ResourceActions {
                    kind: scope.kind.clone(),
                    name: scope.name.clone(),
                    actions: granted,
                }),
            }
        }
        let now = now_secs();
        let subject = account.unwrap_or("").to_owned();
        let lifetime = self.settings.token_lifetime.as_secs() as i64;
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            sub: subject.clone(),
            aud: Audience::One(self.settings.service.clone()),
            exp: now + lifetime,
            nbf: now,
            iat: now,
            jti: random_id(),
            access: access.clone(),
            refresh: false,
        };
        let keys = self.keys(false).await;
        let token = keys
            .sign(&claims)
            .map_err(|e| AuthFailure::Store(e.to_string()))?;
        let refresh_token = if offline && account.is_some() {
            let refresh = Claims {
                exp: now + self.settings.refresh_lifetime.as_secs() as i64,
                jti: random_id(),
                access: Vec::new(),
                refresh: true,
                ..claims.clone()
            };
            Some(
                keys.sign(&refresh)
                    .map_err(|e| AuthFailure::Store(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(IssuedToken {
            access_token: token.clone(),
            token,
            expires_in: lifetime as u64,
            issued_at: rfc3339(now),
            refresh_token,
            scope: access
                .iter()
                .map(ResourceActions::scope)
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// The account a refresh token was issued to, if it is valid and the account still is.
    pub async fn redeem_refresh_token(&self, token: &str) -> Result<String, AuthFailure> {
        let claims = self
            .verify(token)
            .await
            .map_err(AuthFailure::InvalidToken)?;
        if !claims.refresh || claims.sub.is_empty() {
            return Err(AuthFailure::InvalidToken(TokenError::WrongKind));
        }
        if self.grants(&claims.sub).await?.is_none() {
            return Err(AuthFailure::InvalidCredentials);
        }
        Ok(claims.sub)
    }

    async fn granted_actions(
        &self,
        grants: Option<&Grants>,
        scope: &ResourceActions,
    ) -> Result<Vec<String>, AuthFailure> {
        let mut granted = Vec::new();
        match scope.kind.as_str() {
            "repository" => {
                let Ok(repository) = scope.name.parse::<RepositoryName>() else {
                    return Ok(granted);
                };
                let mut wanted: Vec<Action> = Vec::new();
                for action in &scope.actions {
                    let actions: &[Action] = match action.as_str() {
                        "pull" => &[Action::Pull],
                        "push" => &[Action::Push],
                        "delete" => &[Action::Delete],
                        "*" => &[Action::Pull, Action::Push, Action::Delete],
                        _ => &[],
                    };
                    for &a in actions {
                        if !wanted.contains(&a) {
                            wanted.push(a);
                        }
                    }
                }
                // Push first: it is the check that may create a missing project, after
                // which pull is allowed too.
                let mut allowed = Vec::new();
                let mut grants = grants.map(|g| Arc::new(g.clone()));
                if wanted.contains(&Action::Push)
                    && self
                        .check(grants.as_deref(), &repository, Action::Push)
                        .await?
                        .is_ok()
                {
                    allowed.push(Action::Push);
                    // The push may have created the project: read the account's roles again.
                    if let Some(g) = &grants {
                        grants = self.grants(&g.account).await?.or(grants);
                    }
                }
                for &a in wanted.iter().filter(|a| **a != Action::Push) {
                    if self.check(grants.as_deref(), &repository, a).await?.is_ok() {
                        allowed.push(a);
                    }
                }
                granted = wanted
                    .into_iter()
                    .filter(|a| allowed.contains(a))
                    .map(|a| a.as_str().to_owned())
                    .collect();
            }
            // The catalog is listed filtered for everyone; only administrators get the scope
            // that means "everything".
            "registry"
                if scope.name == "catalog"
                    && grants.is_some_and(|g| g.sysadmin)
                    && !scope.actions.is_empty() =>
            {
                granted.push("*".to_owned());
            }
            _ => {}
        }
        Ok(granted)
    }
}

/// Who is asking, in token mode.
#[derive(Clone, Copy)]
pub enum Caller<'a> {
    Anonymous,
    Account(&'a Account),
    Token(&'a Claims),
}

fn token_covers(claims: &Claims, access: &Access) -> bool {
    match &access.repository {
        Some(repository) => {
            claims.grants("repository", repository.as_str(), access.action.as_str())
        }
        // `_catalog` is listed filtered by what the token's subject may see.
        None => true,
    }
}

/// The scopes a challenge names for these accesses: one per repository, its actions joined
/// (a push also asks for pull, as Docker clients expect).
pub fn scope_of(required: &[Access]) -> Vec<ResourceActions> {
    let mut scopes: Vec<ResourceActions> = Vec::new();
    for access in required {
        let (kind, name, action) = match &access.repository {
            Some(repository) => ("repository", repository.as_str(), access.action.as_str()),
            None => ("registry", "catalog", "*"),
        };
        let entry = match scopes.iter_mut().position(|s| s.name == name) {
            Some(i) => &mut scopes[i],
            None => {
                scopes.push(ResourceActions {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    actions: Vec::new(),
                });
                scopes.last_mut().expect("just pushed")
            }
        };
        let mut add = |a: &str| {
            if !entry.actions.iter().any(|x| x == a) {
                entry.actions.push(a.to_owned());
            }
        };
        if access.action == Action::Push {
            add("pull");
        }
        add(action);
    }
    scopes
}

async fn load_or_create_keys(store: &dyn IdentityStore) -> Result<KeyRing, String> {
    let keys = store.signing_keys().await.map_err(|e| e.to_string())?;
    if keys.iter().any(|k| k.retired_at.is_none()) {
        return Ok(KeyRing::from_keys(&keys));
    }
    let key = KeyRing::generate_key(now_secs()).map_err(|e| e.to_string())?;
    store
        .add_signing_key(&key)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(kid = %key.kid, "created a token signing key");
    // Another node may have added one at the same moment: read back what the store holds.
    Ok(KeyRing::from_keys(
        &store.signing_keys().await.map_err(|e| e.to_string())?,
    ))
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn challenge_scopes_group_by_repository() {
        let access = |name: &str, action| Access {
            repository: Some(name.parse().expect("name")),
            action,
        };
        let scopes = scope_of(&[access("a/b", Action::Push), access("c/d", Action::Pull)]);
        let strings: Vec<String> = scopes.iter().map(ResourceActions::scope).collect();
        assert_eq!(strings, ["repository:a/b:pull,push", "repository:c/d:pull"]);
    }
}
