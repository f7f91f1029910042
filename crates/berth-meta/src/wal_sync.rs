//! Group commit for SQLite's write-ahead log: many durable commits share one `fdatasync`.
//!
//! SQLite's `synchronous=FULL` syncs the WAL inside every commit, while the one writer
//! connection is held, so every other write queues behind the disk. Instead the writer
//! commits with `synchronous=NORMAL` (the frames are written to the WAL, in order, but not
//! synced), lets go of the connection, and then waits here until an `fdatasync` of the WAL
//! that *began after its commit* has finished. That sync covers every commit before it, so
//! concurrent writers share one, and nobody is answered before the sync that covers them.
//!
//! Why syncing the WAL file from outside SQLite is enough: a commit's frames are either
//! still in the WAL (the sync makes them durable) or were checkpointed into the database
//! file, which SQLite syncs, under `NORMAL` too, before the WAL is reused.
//!
//! A commit becomes visible to readers a moment before it is durable. A power cut in that
//! moment loses only a write that no client was told had succeeded.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::{MetaError, Result};

#[derive(Clone)]
pub(crate) struct WalSync {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    state: Mutex<State>,
    /// Woken after every sync round.
    synced: Notify,
}

struct State {
    /// The WAL, opened once: an `fdatasync` reports write-back errors on this descriptor
    /// since it was opened, which a descriptor opened later would not see.
    file: Arc<File>,
    /// Tickets handed out: one per commit that asked to be made durable.
    tickets: u64,
    /// Every ticket up to this one is covered by a finished sync.
    durable: u64,
    /// A sync task is running.
    syncing: bool,
    /// Syncs done: how well commits are being grouped (tests read it).
    rounds: u64,
    /// A sync failed. The kernel may have dropped the unwritten pages, and a later sync
    /// would not say so, so no later write is acknowledged as durable (until a restart,
    /// when SQLite recovers from what is really on disk).
    failed: Option<String>,
}

impl WalSync {
    /// Sync the WAL at `path`, which the writer connection has open.
    pub(crate) fn open(path: PathBuf) -> Result<WalSync> {
        let file = File::open(&path).map_err(|e| wal_error(&path, &e))?;
        Ok(WalSync {
            inner: Arc::new(Inner {
                path,
                state: Mutex::new(State {
                    file: Arc::new(file),
                    tickets: 0,
                    durable: 0,
                    syncing: false,
                    rounds: 0,
                    failed: None,
                }),
                synced: Notify::new(),
            }),
        })
    }

    /// Wait until everything committed before this call is on disk. Call it after the commit
    /// returned and after the writer connection was released.
    pub(crate) async fn wait_durable(&self) -> Result<()> {
        let ticket = {
            let mut state = self.inner.lock();
            state.tickets += 1;
            state.tickets
        };
        loop {
            // Registered before the state is checked, so no wake-up falls in between.
            let woken = self.inner.synced.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            {
                let mut state = self.inner.lock();
                if let Some(reason) = &state.failed {
                    return Err(MetaError::Backend(reason.clone().into()));
                }
                if state.durable >= ticket {
                    return Ok(());
                }
                if !state.syncing {
                    state.syncing = true;
                    // A task of its own: a request cancelled while waiting (the client went
                    // away) must not strand the others waiting on this sync.
                    tokio::spawn(Arc::clone(&self.inner).sync_rounds());
                }
            }
            woken.await;
        }
    }
}

/// The group commit's state, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalSyncStats {
    /// Commits waiting for a sync now.
    pub waiting: u64,
    /// Syncs done since start.
    pub rounds: u64,
    /// A sync failed: durable writes are refused until a restart.
    pub failed: bool,
}

impl WalSync {
    pub(crate) fn stats(&self) -> WalSyncStats {
        let state = self.inner.lock();
        WalSyncStats {
            waiting: state.tickets.saturating_sub(state.durable),
            rounds: state.rounds,
            failed: state.failed.is_some(),
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent under every panic-free path; a poisoned lock only
        // means another thread panicked between two plain assignments.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sync until every ticket handed out is covered, then stop.
    async fn sync_rounds(self: Arc<Self>) {
        loop {
            let (covers, file) = {
                let state = self.lock();
                (state.tickets, Arc::clone(&state.file))
            };
            let path = self.path.clone();
            let outcome = tokio::task::spawn_blocking(move || sync_wal(&path, file))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            let more = {
                let mut state = self.lock();
                state.rounds += 1;
                match outcome {
                    Ok(reopened) => {
                        if let Some(file) = reopened {
                            state.file = file;
                        }
                        state.durable = state.durable.max(covers);
                    }
                    Err(reason) => {
                        tracing::error!(%reason, "syncing the metadata WAL failed; durable writes refused until restart");
                        state.failed = Some(reason);
                    }
                }
                let more = state.failed.is_none() && state.tickets > state.durable;
                state.syncing = more;
                more
            };
            self.synced.notify_waiters();
            if !more {
                return;
            }
        }
    }
}

/// `fdatasync` the WAL. SQLite removes the WAL only when its last connection closes; should
/// the writer connection ever be replaced and the WAL recreated, the descriptor held would
/// name a removed file, so the name is checked first and a new file is opened and synced.
fn sync_wal(
    path: &std::path::Path,
    file: Arc<File>,
) -> std::result::Result<Option<Arc<File>>, String> {
    let failed = |e: std::io::Error| wal_message(path, &e);
    let held = file.metadata().map_err(failed)?;
    let named = std::fs::metadata(path).map_err(failed)?;
    if (held.dev(), held.ino()) == (named.dev(), named.ino()) {
        file.sync_data().map_err(failed)?;
        return Ok(None);
    }
    let file = File::open(path).map_err(failed)?;
    file.sync_data().map_err(failed)?;
    Ok(Some(Arc::new(file)))
}

fn wal_message(path: &std::path::Path, e: &std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

fn wal_error(path: &std::path::Path, e: &std::io::Error) -> MetaError {
    MetaError::Backend(wal_message(path, e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db-wal");
        std::fs::write(&path, b"frames").expect("write");
        (dir, path)
    }

    fn rounds(wal: &WalSync) -> u64 {
        wal.inner.lock().rounds
    }

    #[tokio::test]
    async fn concurrent_commits_share_a_sync() {
        let (_dir, path) = wal_file();
        let wal = WalSync::open(path).expect("opens");
        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let wal = wal.clone();
                tokio::spawn(async move { wal.wait_durable().await })
            })
            .collect();
        for waiter in waiters {
            waiter.await.expect("joins").expect("durable");
        }
        // All 100 tickets are taken before the first sync finishes on this one-thread
        // runtime: one round covers them (a second at most, had one slipped past).
        let done = rounds(&wal);
        assert!((1..=2).contains(&done), "{done} rounds for 100 commits");
        // A later commit is not covered by the syncs before it.
        wal.wait_durable().await.expect("durable");
        assert_eq!(rounds(&wal), done + 1);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_strand_the_others() {
        let (_dir, path) = wal_file();
        let wal = WalSync::open(path).expect("opens");
        {
            let first = wal.wait_durable();
            tokio::pin!(first);
            // Poll once: it takes a ticket and starts the sync task, then is dropped.
            let polled = futures_poll_once(first.as_mut()).await;
            assert!(polled.is_none(), "a sync cannot finish without yielding");
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), wal.wait_durable())
            .await
            .expect("not stranded")
            .expect("durable");
    }

    #[tokio::test]
    async fn a_failed_sync_refuses_every_later_commit() {
        let (_dir, path) = wal_file();
        let wal = WalSync::open(path.clone()).expect("opens");
        std::fs::remove_file(&path).expect("remove");
        assert!(wal.wait_durable().await.is_err());
        std::fs::write(&path, b"frames").expect("recreate");
        assert!(
            wal.wait_durable().await.is_err(),
            "stays refused until restart"
        );
    }

    #[tokio::test]
    async fn a_recreated_wal_is_reopened_and_synced() {
        let (_dir, path) = wal_file();
        let wal = WalSync::open(path.clone()).expect("opens");
        std::fs::remove_file(&path).expect("remove");
        std::fs::write(&path, b"new frames").expect("recreate");
        wal.wait_durable().await.expect("durable");
        let (held, named) = {
            let state = wal.inner.lock();
            (
                state.file.metadata().expect("fstat"),
                std::fs::metadata(&path).expect("stat"),
            )
        };
        assert_eq!(
            held.ino(),
            named.ino(),
            "the descriptor follows the new file"
        );
    }

    /// Poll a future once; `Some` if it finished.
    async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
