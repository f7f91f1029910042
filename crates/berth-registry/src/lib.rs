//! The registry's services: the rules of the OCI distribution spec, between the HTTP layer
//! (which only translates requests and responses) and the stores (which only keep data).
//!
//! - [`uploads`]: the blob upload state machine — sessions, chunk order, digest checks.
//! - [`staged`]: blobs written piece by piece by the caller (the proxy's fetches), read while
//!   they arrive, committed once their digest matched.
//! - [`blobs`]: reading, mounting and deleting blobs.
//! - [`manifests`]: manifest validation, reference checks, tags, deletes, referrers.
//! - [`listing`]: catalog and tag-list pagination.
//! - [`artifacts`]: Harbor's repositories, artifacts and tags (the management API).
//! - [`gc`]: online garbage collection from the metadata database.
//! - [`usage`]: storage usage and quotas.
//! - [`immutable`]: tag immutability rules and the refusals they cause.
//! - [`retention`]: retention runs (dry or real) over a project's artifacts.

use std::sync::Arc;

use berth_meta::MetaStore;
use berth_storage::BlobStore;

pub mod artifacts;
pub mod blobs;
mod cache;
mod copy;
mod error;
pub mod gc;
pub mod immutable;
pub mod listing;
pub mod manifests;
pub mod retention;
pub mod staged;
pub mod uploads;
pub mod usage;

pub use artifacts::{Artifact, ChildReference};
pub use cache::Manifest;
pub use error::Error;
pub use gc::{GcOptions, GcReport, OrphanReport, Yielding};
pub use listing::Listing;
pub use manifests::PushedManifest;
pub use staged::{StagedBlob, VerifiedBlob};
pub use uploads::ContentRange;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Behaviour an operator can switch.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Whether DELETE of manifests, tags and blobs is allowed (405 `UNSUPPORTED` if not).
    pub delete_enabled: bool,
    /// Cache manifest and blob-size lookups in memory. Exact when this process is the
    /// metadata store's sole writer (embedded SQLite); with a store other processes write,
    /// kept current by the store's invalidations (see `cache.rs`), and off while they are
    /// not coming.
    pub read_cache: bool,
    /// Accept an image index whose child manifests are not all in the repository (mirrors
    /// and partial copies of multi-platform images); a pull of a missing child is a 404.
    /// Image manifests still need every blob.
    pub sparse_index: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            delete_enabled: true,
            read_cache: true,
            sparse_index: false,
        }
    }
}

/// Told of every change clients make to what the registry holds (pushes and deletes, from
/// `/v2/`, the management API, the CLI or retention; not proxy-cache fills), after it
/// committed. Must return at once: whatever it starts runs elsewhere (event-based
/// replication queues a job).
pub trait RegistryEvents: Send + Sync {
    /// A manifest stored, with the tags the push pointed at it and the manifest it refers
    /// to (its `subject`), if any.
    fn pushed(
        &self,
        repository: &berth_core::RepositoryName,
        digest: &berth_core::Digest,
        tags: &[berth_core::Tag],
        subject: Option<&berth_core::Digest>,
    );
    /// A manifest deleted (by digest, with its tags), or only a tag removed.
    fn deleted(&self, repository: &berth_core::RepositoryName, reference: &berth_core::Reference);
}

/// The registry: its stores and options. Cheap to share behind an `Arc`.
pub struct Registry {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    options: RegistryOptions,
    upload_locks: uploads::UploadLocks,
    cache: Arc<cache::ReadCache>,
    /// Image attributes by config digest (exact: content-addressed).
    configs: artifacts::ConfigAttributes,
    /// Who hears of pushes and deletes (set once, at start-up).
    events: std::sync::OnceLock<Arc<dyn RegistryEvents>>,
}

impl Registry {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        options: RegistryOptions,
    ) -> Registry {
        let cache = Arc::new(cache::ReadCache::new(options.read_cache));
        if options.read_cache
            && let Some(feed) = meta.invalidations()
        {
            cache.follow(feed);
        }
        Registry {
            meta,
            blobs,
            options,
            upload_locks: Default::default(),
            cache,
            configs: Default::default(),
            events: Default::default(),
        }
    }

    /// Tell `events` of every push and delete from now on (once; a second call is ignored).
    pub fn observe(&self, events: Arc<dyn RegistryEvents>) {
        let _ = self.events.set(events);
    }

    fn pushed(&self, repository: &berth_core::RepositoryName, pushed: &PushedManifest) {
        if let Some(events) = self.events.get() {
            events.pushed(
                repository,
                &pushed.digest,
                &pushed.tags,
                pushed.subject.as_ref(),
            );
        }
    }

    fn deleted(&self, repository: &berth_core::RepositoryName, reference: &berth_core::Reference) {
        if let Some(events) = self.events.get() {
            events.deleted(repository, reference);
        }
    }

    /// Whether both stores answer: a metadata read and a blob lookup (what every pull
    /// needs). The error names the one that failed.
    pub async fn ready(&self) -> std::result::Result<(), String> {
        self.metadata_answers()
            .await
            .map_err(|e| format!("metadata database: {e}"))?;
        let probe = berth_core::Digest::of(berth_core::Algorithm::Sha256, b"");
        self.blobs
            .stat(&probe)
            .await
            .map_err(|e| format!("blob storage: {e}"))?;
        Ok(())
    }

    /// Whether the metadata database answers a read (never from the read cache).
    pub async fn metadata_answers(&self) -> Result<()> {
        self.meta.list_repositories(None, 1).await?;
        Ok(())
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    fn check_delete_enabled(&self) -> Result<()> {
        if self.options.delete_enabled {
            Ok(())
        } else {
            Err(Error::DeleteDisabled)
        }
    }
}
