//! The filesystem backend: `blobs/<algorithm>/<first two hex>/<hex>` and `uploads/<id>`
//! under one root.
//!
//! Appends are pipelined: the async side reads the body and calls the observer (hashing),
//! while a blocking thread writes the previous chunks, so hashing and disk writes overlap.
//! A blob becomes visible only by `rename` of a fully written, fsynced upload file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use berth_core::Digest;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use crate::{Appended, BlobStore, ByteStream, Result, StorageError};

/// Read and write buffer size: large enough that syscalls are not the cost.
const CHUNK: usize = 256 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Use `root` (created if missing) for blobs and uploads.
    pub fn open(root: &Path) -> io::Result<FsBlobStore> {
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(FsBlobStore {
            root: root.to_owned(),
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// Flush written data to disk while the upload is still arriving. Without it, the fsync
/// that must precede a blob's commit would write the whole blob out only after the last
/// byte came in, so network and disk would take turns instead of working at once. Each time
/// the upload's length crosses a multiple of [`EARLY_FLUSH_EVERY`] — counted in the file, so
/// it carries across PATCH requests — a helper thread calls `fdatasync`; the writer never
/// waits for it. Durability still rests on the final `sync_data` in `commit`.
struct EarlyFlush {
    file: File,
    runtime: tokio::runtime::Handle,
    /// The file's length at the last flush request, in units of `EARLY_FLUSH_EVERY`.
    flushed_units: u64,
    position: u64,
    /// Set while a flush is running; a flush requested meanwhile is folded into the next.
    busy: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

const EARLY_FLUSH_EVERY: u64 = 4 * 1024 * 1024;

impl EarlyFlush {
    fn new(file: &File, position: u64, runtime: tokio::runtime::Handle) -> io::Result<EarlyFlush> {
        Ok(EarlyFlush {
            file: file.try_clone()?,
            runtime,
            flushed_units: position / EARLY_FLUSH_EVERY,
            position,
            busy: Default::default(),
        })
    }

    fn wrote(&mut self, len: usize) {
        use std::sync::atomic::Ordering;
        self.position += len as u64;
        let units = self.position / EARLY_FLUSH_EVERY;
        if units == self.flushed_units || self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        self.flushed_units = units;
        let Ok(file) = self.file.try_clone() else {
            self.busy.store(false, Ordering::Release);
            return;
        };
        let busy = self.busy.clone();
        self.runtime.spawn_blocking(move || {
            // Best effort: an error here resurfaces at the commit's sync_data.
            let _ = file.sync_data();
            busy.store(false, Ordering::Release);
        });
    }
}

/// Bytes `start..start + len` of `file` as a stream of [`READ_CHUNK`]-sized pieces.
///
/// Each piece is read straight into the buffer that is sent, with the next piece read while
/// this one is sent. What the page cache holds is read right on the async task
/// (`preadv2(RWF_NOWAIT)` copies what is cached and never waits for the disk), which spares
/// a hand-off to the blocking pool and back for every piece; whatever would wait for the disk
/// is read on the blocking pool. No thread is held between pieces, so a slow client costs a
/// little memory, not a thread.
fn read_range(file: File, start: u64, len: u64) -> ByteStream {
    let file = std::sync::Arc::new(file);
    let end = start + len;
    let offsets = (start..end).step_by(READ_CHUNK);
    futures_util::stream::iter(offsets)
        .map(move |offset| {
            let file = file.clone();
            let n = (end - offset).min(READ_CHUNK as u64) as usize;
            async move {
                let mut buf = ReadBuffer::take(n);
                let cached = read_cached(&file, &mut buf, offset);
                if cached < n {
                    buf = blocking(move || {
                        read_rest(&file, &mut buf, offset, cached)?;
                        Ok(buf)
                    })
                    .await?;
                }
                Ok(Bytes::from_owner(ReadBuffer(buf)))
            }
        })
        .buffered(2)
        .boxed()
}

/// Fill `buf` from `offset` with what the page cache holds, without waiting for the disk;
/// how many bytes were read. Stops at the first byte that is not cached, at the end of the
/// file, or on any error (the blocking read that follows reports real ones).
fn read_cached(file: &File, buf: &mut [u8], offset: u64) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        let mut slices = [io::IoSliceMut::new(&mut buf[filled..])];
        match rustix::io::preadv2(
            file,
            &mut slices,
            offset + filled as u64,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) | Err(_) => break,
            Ok(read) => filled += read,
        }
    }
    filled
}

/// Fill `buf[filled..]` from `offset + filled`, waiting for the disk as needed.
fn read_rest(file: &File, buf: &mut [u8], offset: u64, mut filled: usize) -> io::Result<()> {
    while filled < buf.len() {
        let read = rustix::io::pread(file, &mut buf[filled..], offset + filled as u64)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob file is shorter than recorded",
            ));
        }
        filled += read;
    }
    Ok(())
}

/// A blob read piece that goes back to a small free list once sent. A fresh 512 KiB
/// allocation is new memory that the kernel must fault in and zero page by page on the
/// first read into it (3 % of the server's CPU in `perf` during a push+pull workload);
/// a recycled one is already mapped and initialised.
struct ReadBuffer(Vec<u8>);

/// Free read buffers kept for reuse, at most [`READ_BUFFERS_KEPT`].
static FREE_READ_BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Enough for 16 concurrent pulls (each reads one piece ahead); 8 MiB when all are idle.
const READ_BUFFERS_KEPT: usize = 16;

impl ReadBuffer {
    /// A buffer of exactly `n` bytes (stale contents, all overwritten by the read). Only
    /// whole pieces are recycled; the last, shorter piece of a range is allocated.
    fn take(n: usize) -> Vec<u8> {
        if n == READ_CHUNK
            && let Some(buf) = FREE_READ_BUFFERS
                .lock()
                .ok()
                .and_then(|mut free| free.pop())
        {
            return buf;
        }
        vec![0; n]
    }
}

impl AsRef<[u8]> for ReadBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.len() != READ_CHUNK {
            return;
        }
        if let Ok(mut free) = FREE_READ_BUFFERS.lock()
            && free.len() < READ_BUFFERS_KEPT
        {
            free.push(buf);
        }
    }
}

/// Piece size for blob reads.
const READ_CHUNK: usize = 512 * 1024;

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

    async fn commit(&self, id: &str, _state: Option<&[u8]>, digest: &Digest) -> Result<()> {
        let upload = self.upload_path(id);
        let blob = self.blob_path(digest);
        let result = blocking(move || -> io::Result<()> {
            // fdatasync: the data and the size, which is all a reader needs. Before the
            // rename, so a blob's name always means complete, durable bytes — a concurrent
            // commit of the same digest may rely on the name alone.
            File::open(&upload)?.sync_data()?;
            let dir = blob
                .parent()
                .ok_or_else(|| io::Error::other("blob path has no parent"))?;
            if !dir.exists() {
                std::fs::create_dir_all(dir)?;
                // A new fan-out directory's own entry must survive a power cut too.
                if let Some(parent) = dir.parent() {
                    File::open(parent)?.sync_all()?;
                }
            }
            if blob.exists() {
                // Same digest, same bytes: the stored copy stands. Its committer may still
                // be syncing the directory entry; syncing it here too means the caller never
                // links a name that a power cut could take away.
                std::fs::remove_file(&upload)?;
            } else {
                std::fs::rename(&upload, &blob)?;
            }
            // Make the name durable.
            File::open(dir)?.sync_all()
        })
        .await;
        result.map_err(missing_upload(id))
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
        Ok(read_range(file, start, len))
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

    /// 2.5 pieces of distinct bytes, written and synced.
    fn blob_file(dir: &std::path::Path) -> (std::fs::File, Vec<u8>) {
        let bytes: Vec<u8> = (0..super::READ_CHUNK * 5 / 2)
            .map(|i| (i % 251) as u8)
            .collect();
        let path = dir.join("blob");
        std::fs::write(&path, &bytes).expect("write");
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all().map(|()| f))
            .expect("sync");
        (std::fs::File::open(&path).expect("open"), bytes)
    }

    async fn collect(stream: crate::ByteStream) -> std::io::Result<Vec<u8>> {
        use futures_util::TryStreamExt;
        let pieces: Vec<bytes::Bytes> = stream.try_collect().await?;
        Ok(pieces.concat())
    }

    #[tokio::test]
    async fn ranges_read_the_same_from_the_page_cache_and_from_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, bytes) = blob_file(dir.path());
        for (start, len) in [
            (0, bytes.len()),
            (100, bytes.len() - 100),
            (super::READ_CHUNK + 7, 10),
        ] {
            let end = start + len;
            // Cached: the file was just written.
            let file = file.try_clone().expect("clone");
            let cached = collect(super::read_range(
                file.try_clone().expect("clone"),
                start as u64,
                len as u64,
            ))
            .await;
            assert_eq!(cached.expect("reads"), bytes[start..end]);
            // Evicted (clean pages are dropped): the reads fall back to the blocking pool.
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
            let evicted = collect(super::read_range(file, start as u64, len as u64)).await;
            assert_eq!(evicted.expect("reads"), bytes[start..end]);
        }
    }

    #[tokio::test]
    async fn a_range_past_the_end_of_the_file_is_an_error_not_short_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, bytes) = blob_file(dir.path());
        let read = collect(super::read_range(file, 0, bytes.len() as u64 + 1)).await;
        assert_eq!(
            read.expect_err("too long").kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }
}
