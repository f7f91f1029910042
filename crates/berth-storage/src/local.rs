//! Local files written in order while others read them: the writer thread that hashes and
//! writes the pieces of a blob as they arrive (the filesystem backend's appends and callers
//! that write an upload area themselves, such as the proxy's fetch), early write-back, and
//! positioned reads in large pieces that copy cached pages without a thread hand-off.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;

use berth_core::DigestHasher;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::ByteStream;

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// Pieces queued for a [`FileWriter`]'s thread before `write` waits: how far the caller may
/// run ahead of the disk and the hash (with pieces of a few hundred KiB, a few MiB).
const QUEUED: usize = 16;

/// A local file written from its start, in order, by a blocking thread that also hashes each
/// piece. The caller (a fetch receiving from the network) goes on receiving while the thread
/// writes and hashes, so the two overlap on different cores; readers may read as far as
/// [`FileWriter::written`] says. Write-back starts as the file grows ([`EarlyFlush`]), so a
/// later fsync has little left to do.
pub struct FileWriter {
    pieces: mpsc::Sender<Bytes>,
    /// `None` once awaited (after the thread stopped early).
    thread: Option<tokio::task::JoinHandle<io::Result<(u64, DigestHasher)>>>,
    written: watch::Receiver<u64>,
}

impl FileWriter {
    /// Write `file` (empty, open for writing) from its start, hashing with `hasher`.
    pub fn start(file: File, hasher: DigestHasher) -> FileWriter {
        let (pieces, mut incoming) = mpsc::channel::<Bytes>(QUEUED);
        let (progress, written) = watch::channel(0u64);
        let runtime = tokio::runtime::Handle::current();
        let thread = tokio::task::spawn_blocking(move || -> io::Result<(u64, DigestHasher)> {
            let mut hasher = hasher;
            let mut early_flush = EarlyFlush::new(&file, 0, runtime)?;
            let mut file = file;
            let mut len = 0u64;
            while let Some(piece) = incoming.blocking_recv() {
                // Written before it is hashed: readers get the bytes a hash earlier.
                file.write_all(&piece)?;
                len += piece.len() as u64;
                progress.send_replace(len);
                early_flush.wrote(piece.len());
                hasher.update(&piece);
            }
            Ok((len, hasher))
        });
        FileWriter {
            pieces,
            thread: Some(thread),
            written,
        }
    }

    /// How many bytes are in the file (readable by others) so far.
    pub fn written(&self) -> watch::Receiver<u64> {
        self.written.clone()
    }

    /// Queue `piece` after those before it; waits while the thread is [`QUEUED`] pieces
    /// behind. An error is the thread's: it stopped, and the file is incomplete.
    pub async fn write(&mut self, piece: Bytes) -> io::Result<()> {
        if self.pieces.send(piece).await.is_ok() {
            return Ok(());
        }
        Err(match self.thread.take() {
            Some(thread) => match thread.await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => io::Error::other("the file writer stopped"),
                Err(e) => io::Error::other(e),
            },
            None => io::Error::other("the file writer stopped"),
        })
    }

    /// Wait until every queued piece is written: the file's length and the hash of it.
    pub async fn finish(self) -> io::Result<(u64, DigestHasher)> {
        drop(self.pieces);
        match self.thread {
            Some(thread) => thread.await.map_err(io::Error::other)?,
            None => Err(io::Error::other("the file writer stopped")),
        }
    }
}

/// Flush written data to disk while the upload is still arriving. Without it, the fsync
/// that must precede a blob's commit would write the whole blob out only after the last
/// byte came in, so network and disk would take turns instead of working at once. Each time
/// the upload's length crosses a multiple of [`EARLY_FLUSH_EVERY`] — counted in the file, so
/// it carries across PATCH requests — a helper thread calls `fdatasync`; the writer never
/// waits for it. Durability still rests on the final `sync_data` in `commit`.
pub(crate) struct EarlyFlush {
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
    pub(crate) fn new(
        file: &File,
        position: u64,
        runtime: tokio::runtime::Handle,
    ) -> io::Result<EarlyFlush> {
        Ok(EarlyFlush {
            file: file.try_clone()?,
            runtime,
            flushed_units: position / EARLY_FLUSH_EVERY,
            position,
            busy: Default::default(),
        })
    }

    pub(crate) fn wrote(&mut self, len: usize) {
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
pub fn read_range(file: Arc<File>, start: u64, len: u64) -> ByteStream {
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
pub const READ_CHUNK: usize = 512 * 1024;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_core::{Algorithm, Digest, DigestHasher};

    #[tokio::test]
    async fn a_file_writer_writes_and_hashes_every_piece_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("staged");
        let file = std::fs::File::create(&path).expect("create");
        let mut writer = super::FileWriter::start(file, DigestHasher::new(Algorithm::Sha256));
        let written = writer.written();
        let pieces: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 100_000 + i as usize]).collect();
        for piece in &pieces {
            writer
                .write(bytes::Bytes::from(piece.clone()))
                .await
                .expect("write");
        }
        let (len, hasher) = writer.finish().await.expect("finish");
        let whole = pieces.concat();
        assert_eq!(len, whole.len() as u64);
        assert_eq!(*written.borrow(), len);
        assert_eq!(hasher.finish(), Digest::of(Algorithm::Sha256, &whole));
        assert!(std::fs::read(&path).expect("read") == whole);
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
                Arc::new(file.try_clone().expect("clone")),
                start as u64,
                len as u64,
            ))
            .await;
            assert_eq!(cached.expect("reads"), bytes[start..end]);
            // Evicted (clean pages are dropped): the reads fall back to the blocking pool.
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
            let evicted =
                collect(super::read_range(Arc::new(file), start as u64, len as u64)).await;
            assert_eq!(evicted.expect("reads"), bytes[start..end]);
        }
    }

    #[tokio::test]
    async fn a_range_past_the_end_of_the_file_is_an_error_not_short_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, bytes) = blob_file(dir.path());
        let read = collect(super::read_range(Arc::new(file), 0, bytes.len() as u64 + 1)).await;
        assert_eq!(
            read.expect_err("too long").kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }
}
