//! What garbage collection asks of the metadata store: each step a short transaction that
//! re-checks, under the locks a push takes, that what it removes is still garbage.
//!
//! The protocol (which step may follow which, and why no acknowledged image loses a blob)
//! is in berth-registry's `gc.rs` and docs/ARCHITECTURE.md ("A GC run").

use async_trait::async_trait;
use berth_core::{Digest, RepositoryName};

use crate::Result;

/// A repository as GC walks them: by id, so a walk survives renames and deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcRepository {
    pub id: i64,
    pub name: RepositoryName,
}

/// What one repository step removes (or, in a dry run, would remove).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepositorySweep {
    /// Delete untagged manifests created before this time (Unix seconds) that nothing kept
    /// needs; `None`: keep every manifest.
    pub untagged_before: Option<i64>,
    /// Remove links no manifest of the repository references, created before this time.
    pub links_before: i64,
    /// At most this many manifests and this many links per transaction.
    pub limit: usize,
    /// Roll the transaction back instead of committing it.
    pub dry_run: bool,
}

/// What a repository step removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositorySwept {
    pub manifests: Vec<Digest>,
    pub links: Vec<Digest>,
}

/// A blob whose row is deleted and whose bytes are to be deleted, by `owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub digest: Digest,
    pub size: u64,
}

/// Garbage collection's view of the store. Implemented by every backend and covered by the
/// shared suite.
#[async_trait]
pub trait GcStore: Send + Sync {
    /// Bring the query planner's statistics of the tables a run reads up to date where
    /// many rows changed since they were taken; returns the tables refreshed. A run right
    /// after a bulk import, before the database's own background analysis caught up, was
    /// planned for a fraction of the rows (PostgreSQL: 77 s instead of 0.6 s to mark
    /// 10 000 manifests). SQLite plans without statistics (berth never gathers them there):
    /// nothing to do.
    async fn gc_refresh_statistics(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Repositories with an id above `after`, in id order, at most `limit`.
    async fn gc_repositories(&self, after: i64, limit: usize) -> Result<Vec<GcRepository>>;

    /// One transaction in one repository (locked as a push locks it): first the untagged
    /// manifests that no tag, no kept index and no kept subject needs (transitively), then
    /// the links that no remaining manifest references. A full batch (`limit` of either)
    /// means the caller should call again.
    async fn gc_sweep_repository(
        &self,
        repository: &GcRepository,
        sweep: &RepositorySweep,
    ) -> Result<RepositorySwept>;

    /// Blobs linked nowhere, created before `before` (Unix seconds), with a digest after
    /// `after` in digest order, at most `limit`: candidates for [`GcStore::gc_condemn_blobs`]
    /// (read only; the condemnation checks again).
    async fn gc_unlinked_blobs(
        &self,
        before: i64,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Tombstone>>;

    /// Of `digests`, the blobs created before `before` (Unix seconds), each with how many
    /// repositories link it: what a dry run, which removes no link, would condemn.
    async fn gc_link_counts(
        &self,
        digests: &[Digest],
        before: i64,
    ) -> Result<Vec<(Tombstone, u64)>>;

    /// In one transaction: of `candidates`, delete the rows of the blobs that are still
    /// linked nowhere and were created before `before`, and write their tombstones, owned
    /// by `owner` until `claimed_until`. Returns the blobs condemned; their bytes may go.
    async fn gc_condemn_blobs(
        &self,
        candidates: &[Digest],
        before: i64,
        owner: &str,
        claimed_until: i64,
    ) -> Result<Vec<Tombstone>>;

    /// Take over tombstones whose claim has lapsed (a run that crashed between deleting a
    /// blob's row and its bytes), at most `limit`: `owner` deletes their bytes now.
    async fn gc_claim_tombstones(
        &self,
        owner: &str,
        claimed_until: i64,
        limit: usize,
    ) -> Result<Vec<Tombstone>>;

    /// The bytes of these blobs are gone: remove `owner`'s tombstones, so the digests may be
    /// pushed again.
    async fn gc_forget_tombstones(&self, owner: &str, digests: &[Digest]) -> Result<()>;

    /// Before an upload commits a blob's bytes: make sure GC leaves the blob's row alone for
    /// its grace window (its creation time moves to now; a missing row is created, unlinked).
    /// Returns the row's epoch, which the upload's link must find unchanged
    /// ([`GcStore::link_reserved_blob`], [`crate::UploadStore::complete_upload`]); `None`
    /// if the digest is being deleted (a tombstone): its bytes may vanish, so they must not
    /// be committed until the deletion is over.
    async fn reserve_blob(&self, digest: &Digest, size: u64) -> Result<Option<i64>>;

    /// Link a blob an upload reserved (epoch `epoch`) and has committed the bytes of. Refused
    /// with [`crate::MetaError::BlobBeingDeleted`] when the row is gone or is another one:
    /// GC deleted it since, and maybe the bytes with it.
    async fn link_reserved_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        epoch: i64,
    ) -> Result<()>;

    /// The orphan sweep: of `digests` (bytes found in the blob store), write tombstones
    /// owned by `owner` for those with neither a row nor a tombstone, so that no upload
    /// links them while their bytes are deleted. Returns the digests condemned.
    async fn gc_condemn_orphans(
        &self,
        digests: &[Digest],
        owner: &str,
        claimed_until: i64,
    ) -> Result<Vec<Digest>>;
}
