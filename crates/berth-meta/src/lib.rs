//! The metadata store: the source of truth for repositories, blob links, manifests, tags and
//! upload sessions. Blob *bytes* live in `berth-storage`; everything a request needs to decide
//! lives here, so no API call ever walks the storage tree.
//!
//! The store is a handful of narrow traits ([`RepositoryStore`], [`BlobIndex`],
//! [`UploadStore`], [`ManifestStore`], [`ArtifactStore`], the identity traits, [`AuditStore`],
//! [`JobStore`], [`GcStore`], [`UsageStore`], [`UpstreamStore`])
//! combined into [`MetaStore`]. Each backend implements them all and must pass the one shared
//! test suite in [`suite`]. Two backends: embedded SQLite ([`SqliteStore`], one process) and
//! PostgreSQL ([`PgStore`], shared by several processes).

use async_trait::async_trait;
use berth_core::mgmt::{
    ArtifactFilter, ArtifactKey, ArtifactWith, Order, RepositoryKey, TagKey, TextFilter,
};
use berth_core::{Digest, RepositoryName, Tag};
use serde_json::{Map, Value};

pub mod audit;
pub mod gc;
pub mod identity;
pub mod immutable;
pub mod jobs;
mod migrations;
pub mod postgres;
pub mod replication;
pub mod retention;
mod rows;
pub mod sqlite;
pub mod suite;
pub mod transfer;
pub mod upstreams;
pub mod usage;
mod wal_sync;
pub use wal_sync::WalSyncStats;

pub use audit::{
    AuditBatch, AuditColumn, AuditEntry, AuditMatch, AuditQuery, AuditRecord, AuditStore,
    PullRecord, PullStats,
};
pub use gc::{GcRepository, GcStore, RepositorySweep, RepositorySwept, Tombstone};
pub use identity::{
    IdentityStore, KeyStore, Member, Membership, NewRobot, NewUser, Project, ProjectStore, Robot,
    RobotStore, SigningKey, User, UserStore,
};
pub use immutable::{ImmutableRuleRow, ImmutableRuleStore};
pub use jobs::{Job, JobOutcome, JobState, JobStore, NewJob, Schedule};
pub use postgres::{PgOptions, PgStore};
pub use replication::{
    ExecutionFilter, NewReplicationPolicy, NewReplicationTask, PolicyDeletion,
    ReplicationExecutionRow, ReplicationPolicyRow, ReplicationStore, ReplicationTaskRow,
    TaskCounts,
};
pub use retention::{RetentionPolicyRow, RetentionRunRow, RetentionStore};
pub use sqlite::SqliteStore;
pub use usage::{NamespaceUsage, Quota, RegistryUsage, Usage, UsageStore};

/// A connection pool's state, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    /// `writer`, `reader` (SQLite) or `main` (PostgreSQL).
    pub name: &'static str,
    /// Connections open.
    pub size: u32,
    /// Of those, not in use.
    pub idle: u32,
    pub max: u32,
}

/// What a metadata store can say about its connections and its write queue.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub pools: Vec<PoolStats>,
    /// SQLite's group commit; `None` for PostgreSQL (whose commits are durable when they
    /// return).
    pub wal_sync: Option<WalSyncStats>,
}

fn pool_stats<DB: sqlx::Database>(name: &'static str, pool: &sqlx::Pool<DB>) -> PoolStats {
    PoolStats {
        name,
        size: pool.size(),
        idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
        max: pool.options().get_max_connections(),
    }
}
pub use upstreams::{
    NewUpstream, ProxyTagCheck, SecretKey, StoredCredential, Upstream, UpstreamDeletion,
    UpstreamStore,
};

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A manifest names a blob or child manifest that is not in its repository.
    #[error("manifest references {digest}, which is not in the repository")]
    MissingReference { digest: Digest, is_manifest: bool },
    #[error("metadata database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("metadata row is corrupt: {0}")]
    Corrupt(String),
    /// A unique name is taken (a user, project or robot of that name exists).
    #[error("{0} already exists")]
    Conflict(String),
    /// An immutable tag would move to another manifest; nothing was stored.
    #[error("tag {0} is immutable: it cannot be overwritten or deleted")]
    TagImmutable(String),
    /// The write would take the project past its storage quota; nothing of it was kept.
    #[error(
        "quota exceeded: used {} of {} in project {project}, and this needs {} more",
        usage::human_bytes(*used), usage::human_bytes(*limit), usage::human_bytes(*needed)
    )]
    QuotaExceeded {
        project: String,
        used: u64,
        limit: u64,
        needed: u64,
    },
    /// Garbage collection is deleting this blob's bytes (see [`GcStore`]): it cannot be
    /// linked until that is over. Retriable.
    #[error("blob {0} is being deleted by garbage collection; try again")]
    BlobBeingDeleted(Digest),
}

impl MetaError {
    /// Whether the database failed for want of disk space: SQLite's `SQLITE_FULL` (13),
    /// PostgreSQL's `disk_full` (53100), or an IO error saying so.
    pub fn is_storage_full(&self) -> bool {
        let MetaError::Backend(error) = self else {
            return false;
        };
        match error.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("13") | Some("53100"))
            }
            Some(sqlx::Error::Io(io)) => matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ),
            _ => false,
        }
    }

    /// Whether the database could not serve the statement in time because something else
    /// held what it needed: SQLite's `SQLITE_BUSY` or `SQLITE_LOCKED` (any extended code of
    /// theirs), PostgreSQL's `serialization_failure` (40001), `deadlock_detected` (40P01) or
    /// `lock_not_available` (55P03), or no pooled connection free within the pool's timeout.
    /// Nothing of the statement was kept, so the request can be retried as it was.
    pub fn is_busy(&self) -> bool {
        let MetaError::Backend(error) = self else {
            return false;
        };
        match error.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(db)) => {
                let code = db.code().unwrap_or_default();
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // Extended codes: the low byte is the primary one.
                    const SQLITE_BUSY: i64 = 5;
                    const SQLITE_LOCKED: i64 = 6;
                    let primary = code.parse::<i64>().unwrap_or_default() & 0xff;
                    matches!(primary, SQLITE_BUSY | SQLITE_LOCKED)
                } else {
                    matches!(code.as_ref(), "40001" | "40P01" | "55P03")
                }
            }
            Some(sqlx::Error::PoolTimedOut) => true,
            _ => false,
        }
    }
}

/// An upload session: how far it has got and the hash state up to there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub repository: RepositoryName,
    pub offset: u64,
    pub hash_state: Vec<u8>,
    /// The blob store's opaque state for the upload at `offset` (see
    /// `berth_storage::Appended`); `None` for a backend that keeps none.
    pub store_state: Option<Vec<u8>>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A manifest as pushed, with what the registry derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
    pub artifact_type: Option<String>,
    /// An image manifest's config media type (an index has none).
    pub config_media_type: Option<String>,
    pub subject: Option<Digest>,
    pub annotations: Option<Map<String, Value>>,
    /// Blobs that must already be linked in the repository.
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index), recorded as references.
    pub manifests: Vec<Digest>,
    /// Whether every child manifest must already be in the repository. False only for a
    /// sparse index (an operator's option): its missing children answer 404 when pulled.
    pub require_manifests: bool,
    /// Other digests of the same bytes (under other algorithms). When the repository already
    /// holds the manifest under one of them — pushed by a sha512 digest, now pushed by tag —
    /// the push is that manifest, and the tag answers with the digest it was pushed under.
    pub aliases: Vec<Digest>,
    /// Tags that may not move: when one of them exists on another manifest, nothing is
    /// stored ([`MetaError::TagImmutable`]). Decided in the storing transaction.
    pub immutable_tags: Vec<Tag>,
}

/// A manifest as stored: exact bytes and how to serve them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
}

/// One entry of a referrers listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
}

/// A manifest reference resolved by the store: a tag or a digest.
pub use berth_core::Reference;

/// One page of a listing and how many items the whole listing has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub total: u64,
    pub items: Vec<T>,
}

/// A repository as the management API shows it.
///
/// Ids of repositories, artifacts (manifests) and tags are assigned once, from a sequence,
/// and never given to anything else, even after a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub id: i64,
    pub name: RepositoryName,
    /// The project its first path component names, when that project exists.
    pub project_id: Option<i64>,
    pub description: String,
    /// The artifacts a listing shows by default (see [`ArtifactStore::artifact_page`]).
    pub artifact_count: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// The last push into it or change of its description.
    pub updated_at: i64,
    /// What it holds (kept by the usage triggers, read with the row).
    pub usage: Usage,
    /// Pulls of its manifests counted from the audit log (0 while the audit log is off).
    pub pulls: u64,
}

/// Which repositories to list, in which order.
#[derive(Debug, Clone)]
pub struct RepositoryQuery<'a> {
    /// Only repositories of these projects (their first path component); `None`: all.
    pub projects: Option<&'a [String]>,
    pub name: Option<&'a TextFilter>,
    pub order: Order<RepositoryKey>,
    pub offset: u64,
    pub limit: u64,
}

/// An artifact: a manifest of a repository with what the management API shows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactInfo {
    pub id: i64,
    pub repository_id: i64,
    pub digest: Digest,
    pub manifest_media_type: String,
    pub config_media_type: Option<String>,
    pub artifact_type: Option<String>,
    /// The manifest's exact bytes (an index's platforms, an image's config are read from it).
    pub content: Vec<u8>,
    /// The manifest's bytes, its blobs' and its child manifests' (with their blobs): the
    /// size Harbor reports.
    pub size: u64,
    pub subject: Option<Digest>,
    pub annotations: Option<Map<String, Value>>,
    /// Unix seconds.
    pub pushed_at: i64,
    /// The latest recorded pull, Unix milliseconds (`None`: never pulled, or pulls are not
    /// recorded). Read with the row, so a page costs no query per artifact.
    pub pulled_at_ms: Option<i64>,
    /// Its tags, last pushed first; `None` unless asked for.
    pub tags: Option<Vec<TagInfo>>,
    /// The ids of its children (an index's manifests) stored in the repository.
    pub child_ids: Vec<(Digest, i64)>,
    /// Manifests whose subject it is, oldest first; `None` unless asked for.
    pub accessories: Option<Vec<AccessoryInfo>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    pub id: i64,
    pub name: String,
    /// When it was last pointed at its manifest (Unix seconds).
    pub pushed_at: i64,
}

/// A referrer of an artifact (Harbor's accessory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessoryInfo {
    pub id: i64,
    pub digest: Digest,
    pub artifact_type: Option<String>,
    /// Manifest and blob bytes.
    pub size: u64,
    pub created_at: i64,
}

/// A page of a repository's artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactQuery<'a> {
    pub filter: &'a ArtifactFilter,
    pub order: Order<ArtifactKey>,
    pub with: ArtifactWith,
    pub offset: u64,
    pub limit: u64,
}

/// A page of an artifact's tags.
#[derive(Debug, Clone)]
pub struct TagQuery<'a> {
    pub name: Option<&'a TextFilter>,
    pub order: Order<TagKey>,
    pub offset: u64,
    pub limit: u64,
}

/// What deleting an artifact did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactDeletion {
    /// These manifests are gone: the artifact, then the children no tag and no other index
    /// kept, and its accessories (with their own tags).
    Deleted(Vec<Digest>),
    NotFound,
    /// An index of the repository lists it (delete that index first).
    Referenced(Digest),
}

/// A change another process made to the store, for caches kept in memory (see
/// [`RepositoryStore::invalidations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// What lookups in this repository answer may have changed (a manifest, a tag, a blob
    /// link went or moved, or the repository was deleted).
    Repository(String),
    /// Changes may have gone unreported until now: forget everything. From here on every
    /// change is reported (sent when the feed has connected, and after each reconnection).
    All,
    /// The feed is down: changes go unreported until the next [`Invalidation::All`], so a
    /// cache must not answer from its entries meanwhile.
    Lost,
}

/// What adding a tag to an artifact did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagAddition {
    Added,
    /// The repository has a tag of that name already (on this or another artifact).
    Exists,
    NoArtifact,
}

#[async_trait]
pub trait RepositoryStore: Send + Sync {
    /// Repository names after `last`, in lexical order, at most `limit`.
    async fn list_repositories(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>>;
    /// The same, only of repositories in these projects (their first path component).
    async fn list_repositories_in(
        &self,
        projects: &[String],
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>>;
    /// A page of repositories with their artifact counts, in one read.
    async fn repository_page(&self, query: &RepositoryQuery<'_>) -> Result<Paged<RepositoryInfo>>;
    async fn repository_info(&self, name: &RepositoryName) -> Result<Option<RepositoryInfo>>;
    /// Whether the repository exists (and now has this description).
    async fn set_repository_description(
        &self,
        name: &RepositoryName,
        description: &str,
    ) -> Result<bool>;
    /// Delete a repository with every manifest, tag and blob link in it.
    async fn delete_repository(&self, name: &RepositoryName) -> Result<bool>;
    /// The changes other processes make to what lookups answer, for a cache in memory to
    /// drop what they made stale; `None` when no other process writes the store (the
    /// embedded SQLite). The feed starts with no knowledge: it sends [`Invalidation::All`]
    /// once connected. Each call starts a feed of its own; it stops when the receiver is
    /// dropped or the store closed.
    fn invalidations(&self) -> Option<tokio::sync::mpsc::Receiver<Invalidation>> {
        None
    }
}

#[async_trait]
pub trait BlobIndex: Send + Sync {
    /// The blob's size if it is linked into `repository`.
    async fn linked_blob_size(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>>;
    /// Record a blob (stored once registry-wide) and link it into `repository`.
    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()>;
    /// Link a blob that `from` has into `to` too; its size if it was there to mount.
    async fn mount_blob(
        &self,
        from: &RepositoryName,
        to: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>>;
    /// Repositories that link the blob, in name order, at most `limit`: where a mount
    /// without `from` may take it from (the caller filters by what it may pull).
    async fn repositories_linking(&self, digest: &Digest, limit: usize) -> Result<Vec<String>>;
    /// Remove the blob's link from `repository` (the bytes stay until garbage collection).
    async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool>;
}

#[async_trait]
pub trait UploadStore: Send + Sync {
    async fn create_upload(&self, upload: &Upload) -> Result<()>;
    async fn get_upload(&self, id: &str) -> Result<Option<Upload>>;
    /// Move an upload forward, with its hash and blob store states, in one statement and
    /// only if it is still at `from_offset` (so two writers cannot both advance it). Returns
    /// whether it moved.
    async fn advance_upload(
        &self,
        id: &str,
        from_offset: u64,
        to_offset: u64,
        hash_state: &[u8],
        store_state: Option<&[u8]>,
    ) -> Result<bool>;
    async fn delete_upload(&self, id: &str) -> Result<bool>;
    /// Ids of sessions not advanced since `cutoff` (Unix seconds): abandoned uploads.
    async fn uploads_idle_since(&self, cutoff: i64) -> Result<Vec<String>>;
    /// In one transaction: link the finished blob into the upload's repository and forget
    /// the session. `reservation` is the epoch [`GcStore::reserve_blob`] gave before the
    /// bytes were committed: the link is refused if the row is gone or another one.
    async fn complete_upload(
        &self,
        id: &str,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
        reservation: i64,
    ) -> Result<()>;
}

#[async_trait]
pub trait ManifestStore: Send + Sync {
    /// Store a manifest and point every one of `tags` at it, in one transaction that first
    /// checks that everything it references is in the repository. Returns the digest the
    /// manifest is stored under (its own, or an alias already stored).
    async fn put_manifest(
        &self,
        repository: &RepositoryName,
        manifest: &NewManifest,
        tags: &[Tag],
    ) -> Result<Digest>;
    async fn get_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>>;
    /// Delete a manifest and every tag pointing at it.
    async fn delete_manifest(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool>;
    async fn delete_tag(&self, repository: &RepositoryName, tag: &Tag) -> Result<bool>;
    /// Tags after `last` in lexical order, at most `limit`; `None` if the repository is unknown.
    async fn list_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<String>>>;
    /// Manifests in `repository` whose subject is `subject`, optionally of one artifact type.
    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>>;
}

/// Manifests as Harbor's artifacts: listed with their tags, accessories and children, tagged
/// and untagged one by one, deleted with what only they kept.
///
/// A listing shows, unless [`ArtifactFilter::all`] says otherwise, Harbor's base collection:
/// every manifest except an untagged child of an index of the repository and an accessory
/// (a manifest whose subject is in the repository), which appear under their parent and
/// subject instead.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// A page of the repository's artifacts, each with its tags (and accessories) when
    /// asked, in one read; `None` if the repository is unknown.
    async fn artifact_page(
        &self,
        repository: &RepositoryName,
        query: &ArtifactQuery<'_>,
    ) -> Result<Option<Paged<ArtifactInfo>>>;
    async fn artifact(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        with: ArtifactWith,
    ) -> Result<Option<ArtifactInfo>>;
    /// A page of the tags on the manifest `digest`.
    async fn artifact_tags(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        query: &TagQuery<'_>,
    ) -> Result<Paged<TagInfo>>;
    /// Tag the manifest `digest`, unless the repository has that tag already.
    async fn add_tag(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        tag: &Tag,
    ) -> Result<TagAddition>;
    /// Remove `tag` only if it is on the manifest `digest`.
    async fn remove_tag_from(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        tag: &Tag,
    ) -> Result<bool>;
    /// Delete an artifact as Harbor does, in one transaction: refused while an index lists
    /// it; its tags go, its children go unless tagged or listed by another index, and its
    /// accessories go with it.
    async fn delete_artifact(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<ArtifactDeletion>;
}

/// Everything the registry needs from its metadata database.
pub trait MetaStore:
    RepositoryStore
    + BlobIndex
    + UploadStore
    + ManifestStore
    + ArtifactStore
    + IdentityStore
    + AuditStore
    + JobStore
    + GcStore
    + UsageStore
    + ImmutableRuleStore
    + RetentionStore
    + ReplicationStore
    + UpstreamStore
{
}
impl<
    T: RepositoryStore
        + BlobIndex
        + UploadStore
        + ManifestStore
        + ArtifactStore
        + IdentityStore
        + AuditStore
        + JobStore
        + GcStore
        + UsageStore
        + ImmutableRuleStore
        + RetentionStore
        + ReplicationStore
        + UpstreamStore,
> MetaStore for T
{
}

/// Seconds since the Unix epoch, for row timestamps.
/// A catalog page of only the repositories in `projects`, after `last`: at most `limit`
/// names, in name order. A project's repositories are one contiguous range of the name index
/// — from `p/` up to, not including, `p0` (`0` is the character after `/`) — and ranges of
/// different projects never overlap, so the page is read as index range scans
/// (`between(after, before, limit)`: names strictly between), project by project in name
/// order, and no row outside the caller's projects is ever looked at.
pub(crate) async fn repositories_in_projects<F, Fut>(
    projects: &[String],
    last: Option<&str>,
    limit: usize,
    mut between: F,
) -> Result<Vec<String>>
where
    F: FnMut(String, String, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>>>,
{
    let mut ranges: Vec<(String, String)> = projects
        .iter()
        .map(|p| (format!("{p}/"), format!("{p}0")))
        .collect();
    ranges.sort_unstable();
    ranges.dedup();
    let last = last.unwrap_or("");
    let mut names = Vec::new();
    for (start, end) in ranges {
        if names.len() >= limit {
            break;
        }
        if last >= end.as_str() {
            continue;
        }
        let after = if last > start.as_str() {
            last.to_owned()
        } else {
            start
        };
        names.extend(between(after, end, limit - names.len()).await?);
    }
    Ok(names)
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
