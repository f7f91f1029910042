//! The data directory's health as an operator sees it: is it writable, how many bytes are
//! free. `/readyz` asks [`DataDir::probe`] (a small file written, synced and removed: the
//! only test that a read-only remount, a full disk or a dead device cannot pass), and
//! `/metrics` reads [`DataDir::space`] (a `statvfs`, no write) at every scrape.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes free and in total on the filesystem holding the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// What an unprivileged writer may still use (`f_bavail`).
    pub free: u64,
    pub total: u64,
}

/// The data directory (database, upload areas, blobs of the filesystem backend).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Below this many free bytes the node is not ready (pushes would fail).
    min_free_bytes: u64,
    /// The last probe's verdict, for `/metrics` (which never writes).
    last_probe_ok: AtomicBool,
}

/// The file the probe writes; a leftover one (a crash mid-probe) is overwritten next time.
const PROBE_FILE: &str = ".berth-ready-probe";

impl DataDir {
    pub fn new(path: impl Into<PathBuf>, min_free_bytes: u64) -> DataDir {
        DataDir {
            path: path.into(),
            min_free_bytes,
            last_probe_ok: AtomicBool::new(true),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_bytes
    }

    /// Whether the last [`DataDir::probe`] passed (true before the first one).
    pub fn last_probe_ok(&self) -> bool {
        self.last_probe_ok.load(Ordering::Relaxed)
    }

    pub fn space(&self) -> io::Result<Space> {
        let stat = rustix::fs::statvfs(&self.path)?;
        Ok(Space {
            free: stat.f_bavail.saturating_mul(stat.f_frsize),
            total: stat.f_blocks.saturating_mul(stat.f_frsize),
        })
    }

    /// Write, sync and remove a 4 KiB file, then check the free space. `Ok` carries the free
    /// bytes; `Err` says what is wrong in words an operator can act on.
    pub async fn probe(&self) -> Result<Space, String> {
        let path = self.path.clone();
        let min_free = self.min_free_bytes;
        let result = tokio::task::spawn_blocking(move || probe_blocking(&path, min_free))
            .await
            .unwrap_or_else(|e| Err(format!("the data directory probe failed: {e}")));
        self.last_probe_ok.store(result.is_ok(), Ordering::Relaxed);
        result
    }
}

fn probe_blocking(dir: &Path, min_free: u64) -> Result<Space, String> {
    let probe = dir.join(PROBE_FILE);
    let written = (|| -> io::Result<()> {
        let mut file = std::fs::File::create(&probe)?;
        file.write_all(&[0u8; 4096])?;
        file.sync_data()?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&probe);
    let space = rustix::fs::statvfs(dir).map(|stat| Space {
        free: stat.f_bavail.saturating_mul(stat.f_frsize),
        total: stat.f_blocks.saturating_mul(stat.f_frsize),
    });
    if let Err(e) = written {
        return Err(if is_full(&e) {
            format!(
                "storage is full: the data directory {} has no space left",
                dir.display()
            )
        } else {
            format!("the data directory {} is not writable: {e}", dir.display())
        });
    }
    let space = space.map_err(|e| format!("cannot read free space of {}: {e}", dir.display()))?;
    if space.free < min_free {
        return Err(format!(
            "storage is full: {} bytes free in {}, below the {} bytes needed ([storage] min_free_bytes)",
            space.free,
            dir.display(),
            min_free
        ));
    }
    Ok(space)
}

/// Whether an IO error means "no space" (a full disk, or the user's quota on it).
pub fn is_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_writable_directory_with_room_is_ready_and_reports_its_space() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::new(dir.path(), 0);
        let space = data.probe().await.expect("ready");
        assert!(space.total >= space.free && space.total > 0, "{space:?}");
        assert!(!dir.path().join(PROBE_FILE).exists(), "the probe cleans up");
        assert!(data.last_probe_ok());
    }

    #[tokio::test]
    async fn less_free_space_than_the_minimum_is_named_storage_full() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::new(dir.path(), u64::MAX);
        let reason = data.probe().await.expect_err("not enough room");
        assert!(reason.starts_with("storage is full"), "{reason}");
        assert!(!data.last_probe_ok());
    }

    #[tokio::test]
    async fn a_missing_directory_is_not_writable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::new(dir.path().join("gone"), 0);
        let reason = data.probe().await.expect_err("cannot write");
        assert!(reason.contains("is not writable"), "{reason}");
    }
}
