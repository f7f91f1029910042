//! The filesystem backend: `blobs/<algorithm>/<first two hex>/<hex>` and `uploads/<id>`
//! under one root.
//!
//! Appends are pipelined: the async side reads the body and calls the observer (hashing),
//! while a blocking thread writes the previous chunks, so hashing and disk writes overlap.
//! A blob becomes visible only by `rename` of a fully written, fsynced upload file; commits
//! made at the same moment share their flushes (`group_commit.rs`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use berth_core::Digest;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use crate::group_commit::{FlushStats, GroupCommit};
use crate::local::{EarlyFlush, blocking, read_range};
use crate::{Appended, BlobStore, ByteStream, Result, StorageError};

/// Read and write buffer size: large enough that syscalls are not the cost.
const CHUNK: usize = 256 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
    /// Commits share flushes (see `group_commit.rs`).
    group_commit: GroupCommit,
}

impl FsBlobStore {
    /// Use `root` (created if missing) for blobs and uploads.
    pub fn open(root: &Path) -> io::Result<FsBlobStore> {
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(FsBlobStore {
            root: root.to_owned(),
            group_commit: GroupCommit::new(&root.join("uploads"), &root.join("blobs"))?,
        })
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        // Ids are checked by the endpoint parser; this is a second guard on file names.
        debug_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        self.root.join("uploads").join(id)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }
}

fn missing_upload(id: &str) -> impl Fn(io::Error) -> StorageError + '_ {
    move |e| {
        if e.kind() == io::ErrorKind::NotFound {
            StorageError::UploadMissing(id.to_owned())
        } else {
            e.into()
        }
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn create_upload(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id);
        blocking(move || File::create_new(path).map(drop)).await?;
        Ok(())
    }

    async fn append(
        &self,
        id: &str,
        offset: u64,
        _state: Option<&[u8]>,
        mut body: ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Appended> {
        let path = self.upload_path(id);
        let (mut file, actual) = tokio::task::spawn_blocking({
            let path = path.clone();
            move || -> io::Result<(File, u64)> {
                let file = OpenOptions::new().write(true).open(path)?;
                let len = file.metadata()?.len();
                Ok((file, len))
            }
        })
        .await
        .map_err(io::Error::other)?
        .map_err(missing_upload(id))?;
        if actual < offset {
            return Err(StorageError::UploadTruncated {
                id: id.to_owned(),
                expected: offset,
                actual,
            });
        }

        // The writer thread drains chunks while this task reads and hashes the next ones.
        let (chunks, mut incoming) = tokio::sync::mpsc::channel::<Bytes>(16);
        let runtime = tokio::runtime::Handle::current();
        let writer = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            file.set_len(offset)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut early_flush = EarlyFlush::new(&file, offset, runtime)?;
            let mut out = BufWriter::with_capacity(CHUNK, file);
            let mut written = 0u64;
            while let Some(chunk) = incoming.blocking_recv() {
                out.write_all(&chunk)?;
                written += chunk.len() as u64;
                early_flush.wrote(chunk.len());
            }
            out.flush()?;
            Ok(written)
        });

        let mut body_error = None;
        while let Some(next) = body.next().await {
            match next {
                Ok(chunk) => {
                    observe(&chunk);
                    if chunks.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        drop(chunks);
        let written = writer.await.map_err(io::Error::other)?;

        let failure = match (written, body_error) {
            (Ok(len), None) => return Ok(Appended { len, state: None }),
            (Ok(_), Some(e)) => StorageError::Body(e),
            (Err(e), _) => StorageError::Io(e),
        };
        // Leave the upload exactly as it was before this append.
        blocking(move || OpenOptions::new().write(true).open(path)?.set_len(offset)).await?;
        Err(failure)
    }

    async fn read_upload(&self, id: &str, len: u64, _state: Option<&[u8]>) -> Result<ByteStream> {
        let file = tokio::fs::File::open(self.upload_path(id))
            .await
            .map_err(missing_upload(id))?;
        Ok(ReaderStream::with_capacity(file.take(len), CHUNK).boxed())
    }

    async fn create_upload_file(&self, id: &str) -> Result<Option<File>> {
        let path = self.upload_path(id);
        let file = blocking(move || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
        })
        .await?;
        Ok(Some(file))
    }

    fn flush_stats(&self) -> Option<FlushStats> {
        Some(self.group_commit.stats())
    }

    async fn commit(&self, id: &str, _state: Option<&[u8]>, digest: &Digest) -> Result<()> {
        self.group_commit
            .commit(self.upload_path(id), self.blob_path(digest))
            .await
            .map_err(missing_upload(id))
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        match tokio::fs::remove_file(self.upload_path(id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn list_uploads(&self) -> Result<Vec<(String, std::time::SystemTime)>> {
        let dir = self.root.join("uploads");
        let areas = blocking(
            move || -> io::Result<Vec<(String, std::time::SystemTime)>> {
                let mut areas = Vec::new();
                for entry in std::fs::read_dir(dir)? {
                    let entry = entry?;
                    if let Some(id) = entry.file_name().to_str() {
                        areas.push((id.to_owned(), entry.metadata()?.modified()?));
                    }
                }
                Ok(areas)
            },
        )
        .await?;
        Ok(areas)
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn open(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        let path = self.blob_path(digest);
        let file = match blocking(move || File::open(path)).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::BlobMissing(digest.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(read_range(std::sync::Arc::new(file), start, len))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn delete_many(&self, digests: &[Digest]) -> Result<()> {
        // Unlinks are independent: a few at once keep the disk's queue full.
        let paths: Vec<PathBuf> = digests.iter().map(|d| self.blob_path(d)).collect();
        let mut deletes = futures_util::stream::iter(paths)
            .map(tokio::fs::remove_file)
            .buffer_unordered(16);
        while let Some(deleted) = deletes.next().await {
            match deleted {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    async fn list_blobs(&self) -> Result<Vec<(Digest, std::time::SystemTime)>> {
        let dir = self.root.join("blobs");
        let blobs = blocking(
            move || -> io::Result<Vec<(Digest, std::time::SystemTime)>> {
                let mut blobs = Vec::new();
                let algorithms = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(blobs),
                    Err(e) => return Err(e),
                };
                for algorithm in algorithms {
                    let algorithm = algorithm?;
                    for prefix in std::fs::read_dir(algorithm.path())? {
                        for file in std::fs::read_dir(prefix?.path())? {
                            let file = file?;
                            let name = format!(
                                "{}:{}",
                                algorithm.file_name().to_string_lossy(),
                                file.file_name().to_string_lossy()
                            );
                            // Anything else in the tree (a stray temp file) is not a blob.
                            if let Ok(digest) = name.parse::<Digest>() {
                                blobs.push((digest, file.metadata()?.modified()?));
                            }
                        }
                    }
                }
                Ok(blobs)
            },
        )
        .await?;
        Ok(blobs)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn filesystem_passes_the_storage_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::FsBlobStore::open(dir.path()).expect("opens");
        let other_node = super::FsBlobStore::open(dir.path()).expect("opens");
        crate::suite::run(&store, &other_node).await;
    }
}
