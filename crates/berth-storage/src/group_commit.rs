//! Group commit for the filesystem backend's blobs: every blob committed in the same moment
//! shares the same two filesystem flushes, one for the bytes and one for the names. It must
//! never make a name visible before the bytes under it are on stable storage, and never
//! answer a commit before its name is.
//!
//! One commit alone keeps the per-file path: `fdatasync` of the upload, `rename` into place,
//! `fsync` of the directory. When several are waiting, the flusher takes them all as one
//! batch:
//!
//! 1. `syncfs` of the store's filesystem: every batch file's data (and whatever else is
//!    dirty there) reaches stable storage, in one journal commit and one device flush.
//! 2. Each file is renamed to its blob path (fan-out directories created as needed). A name
//!    appears only now, so a name always means durable bytes: a concurrent commit of the
//!    same digest that finds it may drop its own copy.
//! 3. `syncfs` again: the renames and new directories are durable. Only then is anybody in
//!    the batch answered.
//!
//! Commits that arrive while a batch is being flushed form the next batch, so under load a
//! batch holds everything that came in during one flush, and the number of flushes per blob
//! falls as concurrency rises. Durability is what each commit had before: nothing is
//! acknowledged until the flush that covers it has returned.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The committer of one filesystem store's blobs.
pub(crate) struct GroupCommit {
    inner: Arc<Inner>,
}

struct Inner {
    /// Directories whose filesystems a batch flushes: the uploads' and the blobs' (one, when
    /// both are on the same filesystem, as they are under one root).
    filesystems: Vec<PathBuf>,
    queue: Mutex<Queue>,
    stats: Counters,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Pending>,
    /// A flusher thread is running; it takes whatever is queued when it is free.
    flushing: bool,
}

struct Pending {
    upload: PathBuf,
    blob: PathBuf,
    done: oneshot::Sender<io::Result<()>>,
}

#[derive(Default)]
struct Counters {
    rounds: AtomicU64,
    blobs: AtomicU64,
}

/// How well blob commits are being grouped, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Flush rounds since start (a lone commit's per-file flushes count as one).
    pub rounds: u64,
    /// Blobs committed by those rounds.
    pub blobs: u64,
}

impl GroupCommit {
    /// Commit into `blobs`, from upload files under `uploads`.
    pub(crate) fn new(uploads: &Path, blobs: &Path) -> io::Result<GroupCommit> {
        use std::os::unix::fs::MetadataExt;
        let mut filesystems = vec![uploads.to_owned()];
        if std::fs::metadata(uploads)?.dev() != std::fs::metadata(blobs)?.dev() {
            filesystems.push(blobs.to_owned());
        }
        Ok(GroupCommit {
            inner: Arc::new(Inner {
                filesystems,
                queue: Mutex::new(Queue::default()),
                stats: Counters::default(),
            }),
        })
    }

    /// Make the complete upload file `upload` the blob at `blob`, durably: on return, both
    /// its bytes and its name survive a power cut. When `blob` already exists (the same
    /// digest committed before), the upload is removed and the stored copy stands.
    pub(crate) async fn commit(&self, upload: PathBuf, blob: PathBuf) -> io::Result<()> {
        let (done, outcome) = oneshot::channel();
        let start_flusher = {
            let mut queue = self.inner.lock();
            queue.waiting.push(Pending { upload, blob, done });
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start_flusher {
            // A blocking thread of its own: a caller that goes away (its client hung up)
            // never strands the others waiting on the same flush.
            let inner = Arc::clone(&self.inner);
            tokio::task::spawn_blocking(move || inner.flush_until_empty());
        }
        outcome
            .await
            .map_err(|_| io::Error::other("the blob flusher stopped"))?
    }

    pub(crate) fn stats(&self) -> FlushStats {
        FlushStats {
            rounds: self.inner.stats.rounds.load(Ordering::Relaxed),
            blobs: self.inner.stats.blobs.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue stays consistent under every panic-free path.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flush batches until nobody waits, then stop.
    fn flush_until_empty(&self) {
        loop {
            let batch = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.flushing = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            self.stats.rounds.fetch_add(1, Ordering::Relaxed);
            self.stats
                .blobs
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            if batch.len() == 1 || !cfg!(target_os = "linux") {
                for pending in batch {
                    let outcome = commit_one(&pending.upload, &pending.blob);
                    let _ = pending.done.send(outcome);
                }
            } else {
                self.commit_batch(batch);
            }
        }
    }

    fn commit_batch(&self, batch: Vec<Pending>) {
        // 1. The bytes. A missing upload fails its own commit only.
        let (present, missing): (Vec<Pending>, Vec<Pending>) =
            batch.into_iter().partition(|p| p.upload.exists());
        for pending in missing {
            let _ = pending.done.send(Err(io::ErrorKind::NotFound.into()));
        }
        if let Err(e) = self.sync_filesystems() {
            return fail_all(present, &e);
        }
        // 2. The names, in order, so the second of two commits of one digest finds the first.
        let mut renamed = Vec::with_capacity(present.len());
        for pending in present {
            match place(&pending.upload, &pending.blob) {
                Ok(()) => renamed.push(pending),
                Err(e) => {
                    let _ = pending.done.send(Err(e));
                }
            }
        }
        // 3. The names made durable; only now is anybody answered.
        if let Err(e) = self.sync_filesystems() {
            return fail_all(renamed, &e);
        }
        for pending in renamed {
            let _ = pending.done.send(Ok(()));
        }
    }

    #[cfg(target_os = "linux")]
    fn sync_filesystems(&self) -> io::Result<()> {
        for dir in &self.filesystems {
            rustix::fs::syncfs(File::open(dir)?)?;
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn sync_filesystems(&self) -> io::Result<()> {
        Err(io::Error::other("syncfs is Linux only"))
    }
}

fn fail_all(batch: Vec<Pending>, e: &io::Error) {
    tracing::error!(error = %e, blobs = batch.len(), "flushing committed blobs failed");
    for pending in batch {
        let _ = pending
            .done
            .send(Err(io::Error::new(e.kind(), e.to_string())));
    }
}

/// Rename `upload` to `blob` (or drop it when `blob` exists), creating the fan-out
/// directory if needed. Durability is the caller's.
fn place(upload: &Path, blob: &Path) -> io::Result<()> {
    let dir = blob
        .parent()
        .ok_or_else(|| io::Error::other("blob path has no parent"))?;
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
    }
    if blob.exists() {
        // Same digest, same bytes: the stored copy stands.
        std::fs::remove_file(upload)
    } else {
        std::fs::rename(upload, blob)
    }
}

/// One commit with flushes of its own: the data, then the name.
fn commit_one(upload: &Path, blob: &Path) -> io::Result<()> {
    // fdatasync: the data and the size, which is all a reader needs. Before the rename, so
    // a blob's name always means complete, durable bytes.
    File::open(upload)?.sync_data()?;
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
    // When the name exists, its committer may still be syncing the directory entry; syncing
    // it here too means the caller never links a name that a power cut could take away.
    place(upload, blob)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(root: &Path) -> GroupCommit {
        std::fs::create_dir_all(root.join("uploads")).unwrap();
        std::fs::create_dir_all(root.join("blobs")).unwrap();
        GroupCommit::new(&root.join("uploads"), &root.join("blobs")).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_share_rounds_and_every_one_lands() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(store(dir.path()));
        let mut commits = Vec::new();
        for i in 0..64u32 {
            let upload = dir.path().join("uploads").join(format!("u{i}"));
            std::fs::write(&upload, format!("blob {i}")).unwrap();
            // Pairs of commits of one "digest": the second finds the first's name.
            let blob = dir
                .path()
                .join(format!("blobs/{:02x}/b{}", (i / 2) % 7, i / 2));
            let group = Arc::clone(&group);
            commits.push(tokio::spawn(
                async move { group.commit(upload, blob).await },
            ));
        }
        for commit in commits {
            commit.await.unwrap().unwrap();
        }
        for k in 0..32u32 {
            let held =
                std::fs::read_to_string(dir.path().join(format!("blobs/{:02x}/b{k}", k % 7)))
                    .unwrap();
            assert!(
                held == format!("blob {}", 2 * k) || held == format!("blob {}", 2 * k + 1),
                "{held}"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("uploads"))
                .unwrap()
                .count(),
            0,
            "every upload file was renamed or dropped"
        );
        let stats = group.stats();
        assert_eq!(stats.blobs, 64);
        // 64 commits at once cannot all have had a flush of their own.
        assert!(stats.rounds < 64, "{stats:?}");
    }

    #[tokio::test]
    async fn a_missing_upload_fails_its_own_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(store(dir.path()));
        let present = dir.path().join("uploads/here");
        std::fs::write(&present, b"x").unwrap();
        let (a, b) = tokio::join!(
            group.commit(present, dir.path().join("blobs/aa/one")),
            group.commit(
                dir.path().join("uploads/gone"),
                dir.path().join("blobs/aa/two")
            ),
        );
        a.unwrap();
        assert_eq!(b.unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(
            std::fs::read(dir.path().join("blobs/aa/one")).unwrap(),
            b"x"
        );
    }
}
