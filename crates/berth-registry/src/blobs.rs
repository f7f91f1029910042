//! Reading, mounting and deleting blobs. Visibility comes from the metadata store's links;
//! the blob store is only asked for bytes.

use berth_core::{Digest, RepositoryName};
use berth_storage::{ByteStream, StorageError};

use crate::{Error, Registry, Result};

/// How many repositories holding a blob a mount without `from` considers. Past that the
/// client uploads the blob, which is always correct, only slower.
const MOUNT_CANDIDATES: usize = 100;

/// How long a redirect for a blob read stays valid: long enough for a slow client to start
/// (the download itself may take longer), short enough that a leaked URL soon expires.
pub const BLOB_REDIRECT_TTL: std::time::Duration = std::time::Duration::from_secs(20 * 60);

impl Registry {
    /// The blob's size, if the repository has it.
    pub async fn blob_size(&self, repository: &RepositoryName, digest: &Digest) -> Result<u64> {
        let ticket = match self.cache.blob_size(repository, digest) {
            Ok(size) => return Ok(size),
            Err(ticket) => ticket,
        };
        let size = self
            .meta
            .linked_blob_size(repository, digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
        self.cache.store_blob_size(ticket, repository, digest, size);
        Ok(size)
    }

    /// `len` bytes of a blob from `start`. The caller has checked visibility and range.
    pub async fn read_blob(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        self.blobs.open(digest, start, len).await.map_err(|e| match e {
            StorageError::BlobMissing(d) => {
                tracing::error!(digest = %d, "metadata links a blob that storage does not have");
                Error::Internal(format!("blob {d} is missing from storage"))
            }
            other => other.into(),
        })
    }

    /// Whether blob reads are answered with a redirect to [`Registry::blob_redirect_url`].
    pub fn redirects_blob_reads(&self) -> bool {
        self.blobs.redirects_reads()
    }

    /// A URL (presigned, valid for [`BLOB_REDIRECT_TTL`]) the client can fetch the blob's
    /// bytes from itself, or `None` to stream them. The caller has checked visibility.
    pub async fn blob_redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        Ok(self.blobs.redirect_url(digest, BLOB_REDIRECT_TTL).await?)
    }

    /// Link a blob that `from` has into `to`; its size, or `None` if `from` lacks it.
    pub async fn mount_blob(
        &self,
        from: &RepositoryName,
        to: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let mounted = self.meta.mount_blob(from, to, digest).await;
        // The mount may have created `to`.
        self.cache.repositories_changed();
        Ok(mounted?)
    }

    /// Link a blob into `to` from any repository that has it and that `may_pull` admits
    /// (a mount without `from`); its size, or `None` if no such repository has it. Whether
    /// the blob exists elsewhere is never revealed: `None` looks the same either way.
    pub async fn mount_blob_from_any(
        &self,
        to: &RepositoryName,
        digest: &Digest,
        may_pull: &(dyn Fn(&RepositoryName) -> bool + Sync),
    ) -> Result<Option<u64>> {
        let candidates = self
            .meta
            .repositories_linking(digest, MOUNT_CANDIDATES)
            .await?;
        for name in candidates {
            let Ok(from) = name.parse::<RepositoryName>() else {
                continue;
            };
            if may_pull(&from)
                && let Some(size) = self.mount_blob(&from, to, digest).await?
            {
                return Ok(Some(size));
            }
        }
        Ok(None)
    }

    /// Remove the blob from the repository. Its bytes stay while anything else links them;
    /// garbage collection reclaims unlinked bytes.
    pub async fn delete_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<()> {
        self.check_delete_enabled()?;
        let unlinked = self.meta.unlink_blob(repository, digest).await;
        // Even on an error: the unlink may have committed before its durability wait failed.
        self.cache.invalidate(repository);
        if unlinked? {
            Ok(())
        } else {
            Err(Error::BlobUnknown(digest.clone()))
        }
    }
}
