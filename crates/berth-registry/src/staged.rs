//! Blobs written by a caller that receives them piece by piece (the proxy's fetch of an
//! upstream blob) and wants others to read them while they arrive. The pieces go straight
//! into an upload area of the blob store — or, when the store's areas are not local files
//! (S3), into a local spool file that the commit sends to the store — hashed here as they
//! are written, once. Readers follow the file as it grows.
//!
//! Only a blob whose bytes hashed to its digest can be committed: [`StagedBlob::finish`] is
//! the one way to a [`VerifiedBlob`], and [`Registry::commit_staged`] then runs what a push's
//! completion runs (quota, the reservation that keeps GC away, the durable commit, the link).
//! A staged blob dropped on any other path takes its upload area with it.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use berth_core::{Digest, DigestHasher, RepositoryName};
use berth_storage::BlobStore;
use berth_storage::local::{FileWriter, read_range};
use bytes::Bytes;
use tokio::sync::watch;

use crate::uploads::new_upload_id;
use crate::{Error, Registry, Result};

/// A blob being written: the file, the thread that writes and hashes into it, and what it
/// will be committed as.
pub struct StagedBlob {
    repository: RepositoryName,
    digest: Digest,
    area: Area,
    file: Arc<File>,
    writer: FileWriter,
}

/// A staged blob whose length and hash were checked: ready for [`Registry::commit_staged`].
pub struct VerifiedBlob {
    repository: RepositoryName,
    digest: Digest,
    size: u64,
    area: Area,
    file: Arc<File>,
}

/// The upload area behind a staged blob, deleted when dropped unless committed.
struct Area {
    blobs: Arc<dyn BlobStore>,
    id: String,
    /// Whether the bytes are in a local spool, not in the area (which then exists only once
    /// the commit created it and sent them there).
    spooled: bool,
    /// Whether the area exists and is still this value's to delete.
    owned: bool,
}

impl Area {
    /// Delete the area now, if it is still this value's (a failure is logged: the upload
    /// purge reclaims what is left).
    async fn delete(&mut self) {
        if !std::mem::take(&mut self.owned) {
            return;
        }
        if let Err(e) = self.blobs.delete_upload(&self.id).await {
            tracing::warn!(upload = %self.id, error = %e, "could not delete a staged blob's upload area");
        }
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let (blobs, id) = (self.blobs.clone(), std::mem::take(&mut self.id));
        // Dropped outside a runtime only at shutdown: the hourly upload purge reclaims it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = blobs.delete_upload(&id).await {
                    tracing::warn!(upload = %id, error = %e, "could not delete a staged blob's upload area");
                }
            });
        }
    }
}

impl StagedBlob {
    /// The file the pieces go to, for readers: bytes up to [`StagedBlob::written`] are in it.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// How many bytes are in the file so far.
    pub fn written(&self) -> watch::Receiver<u64> {
        self.writer.written()
    }

    /// Append the next piece (written and hashed on a thread of its own; waits only when
    /// that thread is far behind).
    pub async fn write(&mut self, piece: Bytes) -> Result<()> {
        Ok(self
            .writer
            .write(piece)
            .await
            .map_err(berth_storage::StorageError::Io)?)
    }

    /// Give the blob up (its fetch failed): the area goes now.
    pub async fn abandon(mut self) {
        self.area.delete().await;
    }

    /// Wait for every piece to be written and check the bytes: exactly `size` of them,
    /// hashing to the digest. Anything else deletes the area and says what was found.
    pub async fn finish(self, size: u64) -> Result<VerifiedBlob> {
        let StagedBlob {
            repository,
            digest,
            mut area,
            file,
            writer,
        } = self;
        let checked = match writer.finish().await {
            Err(e) => Err(berth_storage::StorageError::Io(e).into()),
            Ok((written, _)) if written != size => Err(Error::SizeInvalid(format!(
                "{written} bytes staged for {digest}, which has {size}"
            ))),
            Ok((_, hasher)) => match hasher.finish() {
                actual if actual != digest => Err(Error::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                }),
                _ => Ok(()),
            },
        };
        if let Err(e) = checked {
            area.delete().await;
            return Err(e);
        }
        Ok(VerifiedBlob {
            repository,
            digest,
            size,
            area,
            file,
        })
    }
}

impl Registry {
    /// Start writing the blob `digest` of `repository` piece by piece: into an upload area of
    /// the blob store when its areas are local files, else into a spool file in `spool_dir`.
    pub async fn stage_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        spool_dir: &Path,
    ) -> Result<StagedBlob> {
        let id = new_upload_id();
        let (file, spooled) = match self.blobs.create_upload_file(&id).await? {
            Some(file) => (file, false),
            None => {
                let dir = spool_dir.to_owned();
                let spool = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?
                    .map_err(berth_storage::StorageError::Io)?;
                (spool, true)
            }
        };
        let area = Area {
            blobs: self.blobs.clone(),
            id,
            spooled,
            owned: !spooled,
        };
        let reader = file.try_clone().map_err(berth_storage::StorageError::Io)?;
        Ok(StagedBlob {
            repository: repository.clone(),
            digest: digest.clone(),
            area,
            file: Arc::new(reader),
            writer: FileWriter::start(file, DigestHasher::new(digest.algorithm())),
        })
    }

    /// Make a verified blob visible in its repository, as a push's completion does. Returns
    /// its size.
    pub async fn commit_staged(&self, blob: VerifiedBlob) -> Result<u64> {
        let VerifiedBlob {
            repository,
            digest,
            size,
            mut area,
            file,
        } = blob;
        let state = if !area.spooled {
            None
        } else {
            // The store's areas are remote: send it the verified bytes (hashed once already).
            self.blobs.create_upload(&area.id).await?;
            area.owned = true;
            let body = read_range(file, 0, size);
            match self
                .blobs
                .append(&area.id, 0, None, body, &mut |_| {})
                .await
            {
                Ok(appended) if appended.len == size => appended.state,
                failed => {
                    area.delete().await;
                    return Err(match failed {
                        Err(e) => e.into(),
                        Ok(appended) => Error::Internal(format!(
                            "the spool of {digest} gave {} bytes, not {size}",
                            appended.len
                        )),
                    });
                }
            }
        };
        self.commit_verified(&repository, &digest, size, &mut area, state.as_deref())
            .await?;
        Ok(size)
    }

    /// The end of a blob written without a session (`put_blob`, a staged blob): the quota,
    /// the reservation, the durable commit of upload area `area` and the link. A failure
    /// before the bytes are committed deletes the area.
    async fn commit_verified(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
        area: &mut Area,
        state: Option<&[u8]>,
    ) -> Result<()> {
        let committed = async {
            // Refused before its bytes are committed, when the quota already says no; the
            // link's transaction decides for races (its bytes are then garbage collection's).
            self.meta.check_quota(repository, digest, size).await?;
            // GC must leave the digest alone from before its bytes are committed until the
            // link (and must have finished deleting it, if it was).
            let reservation = self.reserve_blob(digest, size).await?;
            self.blobs.commit(&area.id, state, digest).await?;
            Ok::<_, Error>(reservation)
        }
        .await;
        let reservation = match committed {
            Ok(reservation) => reservation,
            Err(e) => {
                area.delete().await;
                return Err(e);
            }
        };
        area.owned = false;
        self.link_committed(digest, size, reservation, |epoch| {
            self.meta.link_reserved_blob(repository, digest, epoch)
        })
        .await
    }

    /// A whole blob in one request (`POST ...?digest=`). Returns its size.
    pub async fn put_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        body: berth_storage::ByteStream,
    ) -> Result<u64> {
        // A transient area with no session row: nothing to resume, nothing to leak in the DB.
        let id = new_upload_id();
        self.blobs.create_upload(&id).await?;
        let mut area = Area {
            blobs: self.blobs.clone(),
            id,
            spooled: false,
            owned: true,
        };
        let mut hasher = DigestHasher::new(digest.algorithm());
        let appended = match self
            .blobs
            .append(&area.id, 0, None, body, &mut |chunk| hasher.update(chunk))
            .await
        {
            Ok(appended) => appended,
            Err(e) => {
                area.delete().await;
                return Err(e.into());
            }
        };
        let actual = hasher.finish();
        if &actual != digest {
            area.delete().await;
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        self.commit_verified(
            repository,
            digest,
            appended.len,
            &mut area,
            appended.state.as_deref(),
        )
        .await?;
        Ok(appended.len)
    }
}
