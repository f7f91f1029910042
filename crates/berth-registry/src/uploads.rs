//! The blob upload state machine (distribution spec, "Pushing blobs").
//!
//! An upload session is a row in the metadata store (repository, offset, hash state) plus
//! an upload area in the blob store. Each PATCH streams its chunk into the area while
//! hashing it, then advances the row — so a session survives a restart of the server, and
//! a chunk that fails half-way leaves the session exactly where it was. Completion checks
//! the digest before the blob becomes visible; a mismatch leaves nothing behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_core::{Algorithm, Digest, DigestHasher, RepositoryName};
use berth_meta::Upload;
use berth_storage::ByteStream;
use futures_util::StreamExt;

use crate::{Error, Registry, Result};

/// A chunk's position, from `Content-Range: <start>-<end>` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
}

impl ContentRange {
    /// Parse `start-end`, also accepting the `bytes start-end/total` form some clients send.
    pub fn parse(value: &str) -> Option<ContentRange> {
        let value = value.trim();
        let value = value
            .strip_prefix("bytes")
            .map(|v| v.trim_start_matches([' ', '=']))
            .unwrap_or(value);
        let value = value.split('/').next()?;
        let (start, end) = value.split_once('-')?;
        let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
        (start <= end).then_some(ContentRange { start, end })
    }

    /// Number of bytes the range covers (never zero: `start <= end`).
    pub fn byte_count(&self) -> u64 {
        // Saturating: `0-18446744073709551615` is a client's mistake, not an overflow.
        self.end.saturating_sub(self.start).saturating_add(1)
    }
}

/// One async lock per upload session, so two requests on the same session take turns.
#[derive(Default)]
pub(crate) struct UploadLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

struct UploadGuard<'a> {
    locks: &'a UploadLocks,
    id: String,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl UploadLocks {
    async fn lock(&self, id: &str) -> UploadGuard<'_> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id.to_owned()).or_default().clone()
        };
        UploadGuard {
            locks: self,
            id: id.to_owned(),
            _held: lock.lock_owned().await,
        }
    }
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this guard hold it: nobody is waiting, so forget the lock.
        if map.get(&self.id).is_some_and(|l| Arc::strong_count(l) <= 2) {
            map.remove(&self.id);
        }
    }
}

pub(crate) fn new_upload_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Registry {
    /// Open an upload session that hashes with `algorithm` as bytes arrive; returns its id.
    pub async fn start_upload(
        &self,
        repository: &RepositoryName,
        algorithm: Algorithm,
    ) -> Result<String> {
        let id = new_upload_id();
        self.blobs.create_upload(&id).await?;
        let upload = Upload {
            id: id.clone(),
            repository: repository.clone(),
            offset: 0,
            hash_state: DigestHasher::new(algorithm).save(),
            store_state: None,
            created_at: now(),
        };
        if let Err(e) = self.meta.create_upload(&upload).await {
            let _ = self.blobs.delete_upload(&id).await;
            return Err(e.into());
        }
        Ok(id)
    }

    async fn session(&self, repository: &RepositoryName, id: &str) -> Result<Upload> {
        self.meta
            .get_upload(id)
            .await?
            .filter(|u| &u.repository == repository)
            .ok_or(Error::UploadUnknown)
    }

    /// How many bytes the session holds.
    pub async fn upload_offset(&self, repository: &RepositoryName, id: &str) -> Result<u64> {
        Ok(self.session(repository, id).await?.offset)
    }

    /// Append a chunk; returns the new offset. `range`, when the client sent one, must
    /// start at the current offset (else 416) and match the body's length.
    pub async fn patch_upload(
        &self,
        repository: &RepositoryName,
        id: &str,
        range: Option<ContentRange>,
        body: ByteStream,
    ) -> Result<u64> {
        let _guard = self.upload_locks.lock(id).await;
        let upload = self.session(repository, id).await?;
        self.append(&upload, range, body).await
    }

    /// Stream a chunk into the session and record its progress. The caller holds the lock.
    async fn append(
        &self,
        upload: &Upload,
        range: Option<ContentRange>,
        body: ByteStream,
    ) -> Result<u64> {
        if let Some(range) = range
            && range.start != upload.offset
        {
            return Err(Error::RangeInvalid {
                offset: upload.offset,
            });
        }
        let mut hasher = DigestHasher::restore(&upload.hash_state)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let appended = self
            .blobs
            .append(
                &upload.id,
                upload.offset,
                upload.store_state.as_deref(),
                body,
                &mut |chunk| hasher.update(chunk),
            )
            .await?;
        let written = appended.len;
        if let Some(range) = range
            && range.byte_count() != written
        {
            // Leave the session as it was: the next append starts from the old offset.
            return Err(Error::SizeInvalid(format!(
                "Content-Range says {} bytes but the body had {written}",
                range.byte_count()
            )));
        }
        let offset = upload.offset + written;
        if !self
            .meta
            .advance_upload(
                &upload.id,
                upload.offset,
                offset,
                &hasher.save(),
                appended.state.as_deref(),
            )
            .await?
        {
            return Err(Error::RangeInvalid {
                offset: upload.offset,
            });
        }
        Ok(offset)
    }

    /// Finish a session: append the last chunk if there is one, check the digest, and make
    /// the blob visible in the repository. Returns the blob's size.
    pub async fn complete_upload(
        &self,
        repository: &RepositoryName,
        id: &str,
        digest: &Digest,
        range: Option<ContentRange>,
        body: Option<ByteStream>,
    ) -> Result<u64> {
        let _guard = self.upload_locks.lock(id).await;
        let mut upload = self.session(repository, id).await?;
        if let Some(body) = body {
            upload.offset = self.append(&upload, range, body).await?;
            upload = self.session(repository, id).await?;
        }
        let size = upload.offset;
        let hasher = DigestHasher::restore(&upload.hash_state)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let actual = if hasher.algorithm() == digest.algorithm() {
            hasher.finish()
        } else {
            // Sessions hash with the algorithm the POST named (sha256 by default); a
            // client that finishes with another pays for one more read of what it sent.
            self.rehash(&upload, digest.algorithm()).await?
        };
        if &actual != digest {
            self.discard(id).await;
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // Refused before its bytes are committed, when the quota already says no; the
        // link's transaction decides for races (its bytes are then garbage collection's).
        match self.meta.check_quota(repository, digest, size).await {
            Err(refused @ berth_meta::MetaError::QuotaExceeded { .. }) => {
                self.discard(id).await;
                return Err(refused.into());
            }
            checked => checked?,
        }
        // GC must leave the digest alone from before its bytes are committed until the
        // link below (and must have finished deleting it, if it was).
        let reservation = self.reserve_blob(digest, size).await?;
        self.blobs
            .commit(id, upload.store_state.as_deref(), digest)
            .await?;
        let linked = self
            .link_committed(digest, size, reservation, |epoch| {
                self.meta
                    .complete_upload(id, repository, digest, size, epoch)
            })
            .await;
        if let Err(Error::QuotaExceeded(_)) = linked {
            self.discard(id).await;
        }
        linked?;
        Ok(size)
    }

    async fn rehash(&self, upload: &Upload, algorithm: Algorithm) -> Result<Digest> {
        let mut hasher = DigestHasher::new(algorithm);
        let mut stream = self
            .blobs
            .read_upload(&upload.id, upload.offset, upload.store_state.as_deref())
            .await?;
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.map_err(|e| Error::Internal(e.to_string()))?);
        }
        Ok(hasher.finish())
    }

    /// Forget a session and its bytes. Failures are logged, not returned: the caller is
    /// already reporting the reason the session ends.
    async fn discard(&self, id: &str) {
        if let Err(e) = self.meta.delete_upload(id).await {
            tracing::error!(upload = id, error = %e, "could not delete upload session");
        }
        if let Err(e) = self.blobs.delete_upload(id).await {
            tracing::error!(upload = id, error = %e, "could not delete upload area");
        }
    }

    pub async fn cancel_upload(&self, repository: &RepositoryName, id: &str) -> Result<()> {
        let _guard = self.upload_locks.lock(id).await;
        self.session(repository, id).await?;
        self.discard(id).await;
        Ok(())
    }

    /// Reclaim abandoned uploads: sessions idle for longer than `session_max_idle`, and
    /// upload areas no session owns (left by a crash during a single-request upload or
    /// between creating an area and its session) untouched for `orphan_max_idle`.
    /// Returns how many sessions and areas were removed.
    pub async fn purge_uploads(
        &self,
        session_max_idle: std::time::Duration,
        orphan_max_idle: std::time::Duration,
    ) -> Result<(usize, usize)> {
        let sessions = self.purge_idle_sessions(session_max_idle).await?;
        let mut orphans = 0;
        let now = std::time::SystemTime::now();
        for (id, modified) in self.blobs.list_uploads().await? {
            let old = now
                .duration_since(modified)
                .is_ok_and(|age| age > orphan_max_idle);
            if old && self.meta.get_upload(&id).await?.is_none() {
                self.blobs.delete_upload(&id).await?;
                orphans += 1;
            }
        }
        Ok((sessions, orphans))
    }

    /// Reclaim sessions idle for longer than `max_idle`, from the database alone (no listing
    /// of upload areas: garbage collection runs this part). Returns how many.
    pub async fn purge_idle_sessions(&self, max_idle: std::time::Duration) -> Result<usize> {
        let cutoff = now() - max_idle.as_secs() as i64;
        let idle = self.meta.uploads_idle_since(cutoff).await?;
        for id in &idle {
            let _guard = self.upload_locks.lock(id).await;
            self.discard(id).await;
        }
        Ok(idle.len())
    }
}

#[cfg(test)]
mod tests {
    use super::ContentRange;

    #[test]
    fn huge_content_range_does_not_overflow() {
        let range = ContentRange::parse("0-18446744073709551615").expect("parses");
        assert_eq!(range.byte_count(), u64::MAX);
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(
            ContentRange::parse("0-99"),
            Some(ContentRange { start: 0, end: 99 })
        );
        assert_eq!(
            ContentRange::parse("bytes 10-19/100"),
            Some(ContentRange { start: 10, end: 19 })
        );
        assert_eq!(
            ContentRange::parse("bytes=10-19"),
            Some(ContentRange { start: 10, end: 19 })
        );
        assert_eq!(ContentRange::parse("9-1"), None);
        assert_eq!(ContentRange::parse("x"), None);
        assert_eq!(
            ContentRange::parse("0-99").map(|r| r.byte_count()),
            Some(100)
        );
    }
}
