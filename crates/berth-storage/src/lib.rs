//! Content-addressed blob storage. A [`BlobStore`] holds bytes by digest and upload areas
//! by id; it knows nothing of repositories, users or metadata — the metadata store decides
//! who sees which blob. One copy per digest for the whole registry.
//!
//! Every backend must pass the shared suite in [`suite`].

use std::io;

use async_trait::async_trait;
use berth_core::Digest;
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub mod fs;
mod group_commit;
pub mod local;
#[cfg(feature = "s3")]
pub mod s3;
pub mod space;
pub mod suite;

pub use fs::FsBlobStore;
pub use group_commit::FlushStats;
#[cfg(feature = "s3")]
pub use s3::{S3BlobStore, S3Settings};
pub use space::{DataDir, Space};

/// A stream of body bytes, in or out.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The request body failed while it was being read: the client went away or sent
    /// less than it said. The upload is back where it was before this append.
    #[error("request body failed: {0}")]
    Body(#[source] io::Error),
    #[error("upload area {0:?} does not exist")]
    UploadMissing(String),
    /// The upload area holds fewer bytes than the metadata says were written (the machine
    /// lost data it had not yet flushed); the upload cannot continue.
    #[error("upload area {id:?} is shorter ({actual} bytes) than its recorded offset {expected}")]
    UploadTruncated {
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in storage")]
    BlobMissing(Digest),
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    /// A remote store (S3) failed to answer: unreachable, timed out, refused our credentials
    /// or failed on its side, after the client's retries. Not the caller's fault and not a
    /// bug in berth: the operator must look at the store.
    #[error("blob storage unavailable: {0}")]
    Unavailable(String),
}

impl StorageError {
    /// Whether the store failed for want of space (a full disk or quota): the operator's
    /// problem to name, not a bug to hide behind a 500.
    pub fn is_full(&self) -> bool {
        matches!(self, StorageError::Io(e) if space::is_full(e))
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What an append did: how many bytes it added, and the backend's state for the upload
/// after it. The state is opaque to the caller, who stores it with the new offset (in the
/// upload session) and hands it back to the next append, read or commit — so an upload can
/// continue on any node. A backend that keeps all it needs in the area itself returns `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub len: u64,
    pub state: Option<Vec<u8>>,
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Create an empty upload area.
    async fn create_upload(&self, id: &str) -> Result<()>;

    /// Append `body` to the upload at `offset`, calling `observe` with every chunk in order
    /// (the caller hashes there, in the same pass that stores). `state` is what the append
    /// that reached `offset` returned (`None` for a new upload). Anything past `offset` left
    /// by an interrupted append is discarded or superseded; if this append fails, the upload
    /// is still at `offset` with `state`.
    async fn append(
        &self,
        id: &str,
        offset: u64,
        state: Option<&[u8]>,
        body: ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Appended>;

    /// The first `len` bytes of an upload area (to hash them again with another algorithm).
    async fn read_upload(&self, id: &str, len: u64, state: Option<&[u8]>) -> Result<ByteStream>;

    /// Create an empty upload area `id` as a local file, open for reading and writing, when
    /// this backend keeps upload areas as files on this machine: a caller that writes it
    /// itself, in order from its start, commits it with `state` `None` as if it had
    /// appended, and others may read it while it grows. `None`, creating nothing, when the
    /// areas are elsewhere (S3): use `create_upload` and `append` instead.
    async fn create_upload_file(&self, _id: &str) -> Result<Option<std::fs::File>> {
        Ok(None)
    }

    /// Durably turn the upload area (at the end described by `state`) into the blob `digest`.
    /// The caller has verified the digest. If the blob is already stored, the upload area is
    /// simply dropped.
    async fn commit(&self, id: &str, state: Option<&[u8]>, digest: &Digest) -> Result<()>;

    /// Remove an upload area; removing a missing one is not an error.
    async fn delete_upload(&self, id: &str) -> Result<()>;

    /// Every upload area and when it was last written, to find ones no session owns.
    async fn list_uploads(&self) -> Result<Vec<(String, std::time::SystemTime)>>;

    /// Size of a stored blob.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// The blob's bytes from `start`, `len` of them.
    async fn open(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream>;

    /// Remove a blob's bytes; removing a missing one is not an error.
    async fn delete(&self, digest: &Digest) -> Result<()>;

    /// Remove many blobs' bytes (garbage collection), batched or in parallel where the
    /// backend can; missing ones are not an error.
    async fn delete_many(&self, digests: &[Digest]) -> Result<()> {
        for digest in digests {
            self.delete(digest).await?;
        }
        Ok(())
    }

    /// Every stored blob and when it was written. Walks the whole store (minutes on a big
    /// bucket): only the orphan sweep calls it, never a request or a normal GC run.
    async fn list_blobs(&self) -> Result<Vec<(Digest, std::time::SystemTime)>>;

    /// How commits share their flushes, for a backend that groups them (the filesystem's).
    fn flush_stats(&self) -> Option<FlushStats> {
        None
    }

    /// Whether blob reads should be redirected to [`BlobStore::redirect_url`]. A plain
    /// function, so the filesystem's read path pays no extra await for the question.
    fn redirects_reads(&self) -> bool {
        false
    }

    /// A URL the client can fetch the blob's bytes from itself (a presigned S3 URL, valid
    /// for `ttl`; it honours `Range`), or `None` to stream them through berth.
    async fn redirect_url(
        &self,
        _digest: &Digest,
        _ttl: std::time::Duration,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}
