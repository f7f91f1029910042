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
pub mod suite;

pub use fs::FsBlobStore;

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
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Create an empty upload area.
    async fn create_upload(&self, id: &str) -> Result<()>;

    /// Append `body` to the upload at `offset`, calling `observe` with every chunk in order
    /// (the caller hashes there, in the same pass that stores). Anything past `offset` left
    /// by an interrupted append is discarded first; if this append fails, the area is cut
    /// back to `offset`. Returns how many bytes were appended.
    async fn append(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<u64>;

    /// The first `len` bytes of an upload area (to hash them again with another algorithm).
    async fn read_upload(&self, id: &str, len: u64) -> Result<ByteStream>;

    /// Durably turn the upload area into the blob `digest`. The caller has verified the
    /// digest. If the blob is already stored, the upload area is simply dropped.
    async fn commit(&self, id: &str, digest: &Digest) -> Result<()>;

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
}
