//! Upstream registries (Harbor's "registry endpoints") and the projects that proxy one: rows
//! only. Sealing and opening the stored secret, talking to an upstream and deciding who may
//! change them live elsewhere (`berth-proxy`, `berth-auth`).

use async_trait::async_trait;

use crate::Result;

/// How berth authenticates to an upstream, as stored. The secret is sealed (AEAD) by the
/// caller before it gets here and is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// Harbor's credential type: `basic`, `oauth` or `secret`.
    pub kind: String,
    pub access_key: String,
    /// The sealed secret (`berth_proxy::secrets`): key id, nonce and ciphertext.
    pub sealed_secret: Vec<u8>,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("kind", &self.kind)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// An upstream registry to create, or the changeable part of a stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpstream {
    pub name: String,
    /// Harbor's registry type: `docker-hub`, `docker-registry`, `harbor`, …
    pub kind: String,
    pub url: String,
    pub description: String,
    /// Skip TLS certificate verification (Harbor's `insecure`).
    pub insecure: bool,
    /// PEM certificates to trust for this upstream besides the system's.
    pub ca_cert: Option<String>,
    pub credential: Option<StoredCredential>,
}

/// An upstream registry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub id: i64,
    pub fields: NewUpstream,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// What deleting an upstream did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamDeletion {
    Deleted,
    Missing,
    /// A proxy-cache project or a replication policy uses it: it stays.
    InUse,
}

/// A key that seals stored secrets, generated once when none is configured. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    pub kid: String,
    pub key: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What the proxy cache knows about a tag it holds: the digest the upstream last named for
/// it and when, and when the tag was last pulled here. Shared by every node, so that one
/// node's answer from the upstream spares the others the question, and kept fresh ahead of
/// pulls by the `proxy_revalidate` job. A hint, never the truth about content: a lost row
/// only costs one more question to the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTagCheck {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// Unix milliseconds.
    pub checked_at_ms: i64,
    pub pulled_at_ms: i64,
}

#[async_trait]
pub trait UpstreamStore: Send + Sync {
    /// Create an upstream; [`crate::MetaError::Conflict`] if the name is taken. Its id.
    async fn create_upstream(&self, upstream: &NewUpstream) -> Result<i64>;
    async fn upstream_by_id(&self, id: i64) -> Result<Option<Upstream>>;
    /// Every upstream, by id (there are few: filtering and pages are the caller's).
    async fn list_upstreams(&self) -> Result<Vec<Upstream>>;
    /// Store an upstream's fields; false if it does not exist. A name taken by another is
    /// [`crate::MetaError::Conflict`].
    async fn update_upstream(&self, id: i64, upstream: &NewUpstream) -> Result<bool>;
    /// Delete an upstream unless a proxy-cache project or a replication policy uses it.
    async fn delete_upstream(&self, id: i64) -> Result<UpstreamDeletion>;
    /// Make `project_id` a proxy cache of `upstream_id` (a project proxies at most one).
    async fn set_project_upstream(&self, project_id: i64, upstream_id: i64) -> Result<()>;
    /// The upstream the project named `project` proxies, if it is a proxy-cache project.
    async fn project_upstream(&self, project: &str) -> Result<Option<i64>>;
    /// Every stored secret-sealing key, oldest first.
    async fn secret_keys(&self) -> Result<Vec<SecretKey>>;
    /// Add a key unless one with its kid exists; whether it was added.
    async fn add_secret_key(&self, key: &SecretKey) -> Result<bool>;

    /// The proxy cache's record of `repository:tag`.
    async fn proxy_tag_check(&self, repository: &str, tag: &str) -> Result<Option<ProxyTagCheck>>;
    /// The upstream named `digest` for the tag at `checked_at_ms`; an earlier answer than
    /// the one recorded changes nothing. A new record counts as pulled then too (tags are
    /// checked because they are pulled).
    async fn record_proxy_check(
        &self,
        repository: &str,
        tag: &str,
        digest: &str,
        checked_at_ms: i64,
    ) -> Result<()>;
    /// The tag was pulled at `pulled_at_ms` (no record is created: only checked tags have one).
    async fn record_proxy_pull(&self, repository: &str, tag: &str, pulled_at_ms: i64)
    -> Result<()>;
    /// Tags pulled at or after `pulled_since_ms` and last checked before `checked_before_ms`,
    /// longest unchecked first, at most `limit`.
    async fn proxy_tags_to_check(
        &self,
        pulled_since_ms: i64,
        checked_before_ms: i64,
        limit: u64,
    ) -> Result<Vec<ProxyTagCheck>>;
    /// Drop the record of a tag the cache no longer holds.
    async fn forget_proxy_tag(&self, repository: &str, tag: &str) -> Result<()>;
}
