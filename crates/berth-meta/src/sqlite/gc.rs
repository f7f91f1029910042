//! The SQLite backend's garbage-collection steps. The one writer connection applies every
//! write in turn, so each step's re-check and removal see exactly what every push before
//! them committed, and no push lands in between. Each step is one short transaction (a
//! batch), so pushes wait for GC at most one batch.

use async_trait::async_trait;
use berth_core::{Digest, RepositoryName};
use sqlx::Row;

use super::SqliteStore;
use crate::gc::{GcRepository, GcStore, RepositorySweep, RepositorySwept, Tombstone};
use crate::rows::digest_column;
use crate::{MetaError, Result, now};

/// A list of digests as the JSON array `json_each` walks.
pub(super) fn digest_array(digests: &[Digest]) -> Result<String> {
    let texts: Vec<String> = digests.iter().map(Digest::to_string).collect();
    serde_json::to_string(&texts).map_err(|e| MetaError::Corrupt(format!("digest list: {e}")))
}

/// A row count or limit as SQLite binds it.
fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn tombstones(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<Tombstone>> {
    rows.iter()
        .map(|row| {
            Ok(Tombstone {
                digest: digest_column(row, "digest")?,
                size: row.try_get::<i64, _>("size")? as u64,
            })
        })
        .collect()
}

/// The manifests of repository `?1` that are kept: tagged, pushed at or after `?2`, or
/// reachable from a kept one (an index's children, a subject's referrers).
macro_rules! kept_manifests {
    () => {
        "    WITH RECURSIVE
      edges(parent, child) AS (
        SELECT manifest_digest, child_digest FROM manifest_references
          WHERE repository_id = ?1 AND child_is_manifest = 1
        UNION ALL
        SELECT subject, digest FROM manifests WHERE repository_id = ?1 AND subject IS NOT NULL),
      kept(digest) AS (
        SELECT manifest_digest FROM tags WHERE repository_id = ?1
        UNION SELECT digest FROM manifests WHERE repository_id = ?1 AND created_at >= ?2
        UNION SELECT edges.child FROM edges JOIN kept ON edges.parent = kept.digest)"
    };
}

/// The untagged manifests of repository `?1` created before `?2` that nothing kept needs,
/// at most `?3`, deleted. Kept: tagged manifests and those younger than the grace window,
/// then (transitively) the children of a kept index and the referrers of a kept subject.
/// Tags and references go with the manifests (`ON DELETE CASCADE`).
const DELETE_UNKEPT_MANIFESTS: &str = concat!(
    kept_manifests!(),
    "    DELETE FROM manifests WHERE repository_id = ?1 AND digest IN
      (SELECT digest FROM manifests WHERE repository_id = ?1
         AND digest NOT IN (SELECT digest FROM kept) ORDER BY digest LIMIT ?3)
    RETURNING digest"
);

/// Links of repository `?1` created before `?2` that no manifest of it references, at most
/// `?3`, deleted.
const DELETE_UNREFERENCED_LINKS: &str = "
    DELETE FROM repository_blobs WHERE repository_id = ?1 AND digest IN
      (SELECT l.digest FROM repository_blobs l
        WHERE l.repository_id = ?1 AND l.created_at < ?2
          AND NOT EXISTS (SELECT 1 FROM manifest_references r INDEXED BY manifest_references_by_child
                          WHERE r.repository_id = ?1 AND r.child_digest = l.digest)
        ORDER BY l.digest LIMIT ?3)
    RETURNING digest";

/// Whether [`DELETE_UNREFERENCED_LINKS`] would delete anything: read first on a reader, so
/// that a repository with nothing to remove (most of them) never takes the one writer a
/// push needs.
const ANY_UNREFERENCED_LINK: &str = "
    SELECT 1 FROM repository_blobs l
      WHERE l.repository_id = ?1 AND l.created_at < ?2
        AND NOT EXISTS (SELECT 1 FROM manifest_references r INDEXED BY manifest_references_by_child
                        WHERE r.repository_id = ?1 AND r.child_digest = l.digest)
      LIMIT 1";

/// Whether [`DELETE_UNKEPT_MANIFESTS`] would delete anything (the same `kept` set).
const ANY_UNKEPT_MANIFEST: &str = concat!(
    kept_manifests!(),
    "
    SELECT 1 FROM manifests WHERE repository_id = ?1
      AND digest NOT IN (SELECT digest FROM kept) LIMIT 1"
);

#[async_trait]
impl GcStore for SqliteStore {
    async fn gc_repositories(&self, after: i64, limit: usize) -> Result<Vec<GcRepository>> {
        let rows =
            sqlx::query("SELECT id, name FROM repositories WHERE id > ? ORDER BY id LIMIT ?")
                .bind(after)
                .bind(limit_of(limit))
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                Ok(GcRepository {
                    id: row.try_get("id")?,
                    name: name
                        .parse()
                        .map_err(|e| MetaError::Corrupt(format!("repository name: {e}")))?,
                })
            })
            .collect()
    }

    async fn gc_sweep_repository(
        &self,
        repository: &GcRepository,
        sweep: &RepositorySweep,
    ) -> Result<RepositorySwept> {
        // Nothing to remove (seen on a snapshot): done without the writer. Something: the
        // deletes below decide again, inside the write transaction.
        let manifests_to_remove = match sweep.untagged_before {
            Some(before) => sqlx::query(ANY_UNKEPT_MANIFEST)
                .bind(repository.id)
                .bind(before)
                .fetch_optional(&self.reader)
                .await?
                .is_some(),
            None => false,
        };
        let links_to_remove = sqlx::query(ANY_UNREFERENCED_LINK)
            .bind(repository.id)
            .bind(sweep.links_before)
            .fetch_optional(&self.reader)
            .await?
            .is_some();
        if !manifests_to_remove && !links_to_remove {
            return Ok(RepositorySwept::default());
        }
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        let mut swept = RepositorySwept::default();
        if let Some(before) = sweep.untagged_before {
            let rows = sqlx::query(DELETE_UNKEPT_MANIFESTS)
                .bind(repository.id)
                .bind(before)
                .bind(limit_of(sweep.limit))
                .fetch_all(&mut *tx)
                .await?;
            swept.manifests = rows
                .iter()
                .map(|row| digest_column(row, "digest"))
                .collect::<Result<_>>()?;
        }
        let rows = sqlx::query(DELETE_UNREFERENCED_LINKS)
            .bind(repository.id)
            .bind(sweep.links_before)
            .bind(limit_of(sweep.limit))
            .fetch_all(&mut *tx)
            .await?;
        swept.links = rows
            .iter()
            .map(|row| digest_column(row, "digest"))
            .collect::<Result<_>>()?;
        if sweep.dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(swept)
    }

    async fn gc_unlinked_blobs(
        &self,
        before: i64,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Tombstone>> {
        let rows = sqlx::query(
            "SELECT digest, size FROM blobs b
             WHERE created_at < ? AND digest > ?
               AND NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.digest = b.digest)
             ORDER BY digest LIMIT ?",
        )
        .bind(before)
        .bind(after.map(Digest::to_string).unwrap_or_default())
        .bind(limit_of(limit))
        .fetch_all(&self.reader)
        .await?;
        tombstones(&rows)
    }

    async fn gc_link_counts(
        &self,
        digests: &[Digest],
        before: i64,
    ) -> Result<Vec<(Tombstone, u64)>> {
        let rows = sqlx::query(
            "SELECT b.digest, b.size,
                    (SELECT COUNT(*) FROM repository_blobs l WHERE l.digest = b.digest) AS links
             FROM blobs b WHERE b.digest IN (SELECT value FROM json_each(?)) AND b.created_at < ?",
        )
        .bind(digest_array(digests)?)
        .bind(before)
        .fetch_all(&self.reader)
        .await?;
        let blobs = tombstones(&rows)?;
        rows.iter()
            .zip(blobs)
            .map(|(row, blob)| Ok((blob, row.try_get::<i64, _>("links")? as u64)))
            .collect()
    }

    async fn gc_condemn_blobs(
        &self,
        candidates: &[Digest],
        before: i64,
        owner: &str,
        claimed_until: i64,
    ) -> Result<Vec<Tombstone>> {
        let candidates = digest_array(candidates)?;
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        let rows = sqlx::query(
            "INSERT INTO blob_deletions (digest, size, owner, claimed_until, created_at)
             SELECT digest, size, ?3, ?4, ?5 FROM blobs b
             WHERE digest IN (SELECT value FROM json_each(?1)) AND created_at < ?2
               AND NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.digest = b.digest)
             RETURNING digest, size",
        )
        .bind(&candidates)
        .bind(before)
        .bind(owner)
        .bind(claimed_until)
        .bind(now())
        .fetch_all(&mut *tx)
        .await?;
        let condemned = tombstones(&rows)?;
        let digests: Vec<Digest> = condemned.iter().map(|t| t.digest.clone()).collect();
        sqlx::query("DELETE FROM blobs WHERE digest IN (SELECT value FROM json_each(?))")
            .bind(digest_array(&digests)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        drop(conn);
        // The bytes go next: this commit, and every unlink and manifest delete before it in
        // the WAL, must survive a power cut first, or they could come back without bytes.
        self.wal.wait_durable().await?;
        Ok(condemned)
    }

    async fn gc_claim_tombstones(
        &self,
        owner: &str,
        claimed_until: i64,
        limit: usize,
    ) -> Result<Vec<Tombstone>> {
        let rows = sqlx::query(
            "UPDATE blob_deletions SET owner = ?1, claimed_until = ?2
             WHERE digest IN (SELECT digest FROM blob_deletions WHERE claimed_until < ?3
                              ORDER BY digest LIMIT ?4)
             RETURNING digest, size",
        )
        .bind(owner)
        .bind(claimed_until)
        .bind(now())
        .bind(limit_of(limit))
        .fetch_all(&mut *self.write().await?)
        .await?;
        tombstones(&rows)
    }

    async fn gc_forget_tombstones(&self, owner: &str, digests: &[Digest]) -> Result<()> {
        sqlx::query(
            "DELETE FROM blob_deletions WHERE owner = ? AND digest IN (SELECT value FROM json_each(?))",
        )
        .bind(owner)
        .bind(digest_array(digests)?)
        .execute(&mut *self.write().await?)
        .await?;
        Ok(())
    }

    async fn reserve_blob(&self, digest: &Digest, size: u64) -> Result<Option<i64>> {
        // One statement, so no transaction: no row when garbage collection is deleting the
        // bytes (they are refused), else the row, created or refreshed, and its epoch.
        let epoch = sqlx::query_scalar(
            "INSERT INTO blobs (digest, size, created_at, epoch)
             SELECT ?1, ?2, ?3, abs(random())
             WHERE NOT EXISTS (SELECT 1 FROM blob_deletions WHERE digest = ?1)
             ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at
             RETURNING epoch",
        )
        .bind(digest.to_string())
        .bind(size as i64)
        .bind(now())
        .fetch_optional(&mut *self.write().await?)
        .await?;
        Ok(epoch)
    }

    async fn link_reserved_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        epoch: i64,
    ) -> Result<()> {
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        super::link_in(&mut tx, repository, digest, super::BlobRow::Reserved(epoch)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn gc_condemn_orphans(
        &self,
        digests: &[Digest],
        owner: &str,
        claimed_until: i64,
    ) -> Result<Vec<Digest>> {
        let rows = sqlx::query(
            "INSERT INTO blob_deletions (digest, size, owner, claimed_until, created_at)
             SELECT d.value, 0, ?2, ?3, ?4 FROM json_each(?1) d
             WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = d.value)
               AND NOT EXISTS (SELECT 1 FROM blob_deletions t WHERE t.digest = d.value)
             RETURNING digest",
        )
        .bind(digest_array(digests)?)
        .bind(owner)
        .bind(claimed_until)
        .bind(now())
        .fetch_all(&mut *self.write().await?)
        .await?;
        rows.iter()
            .map(|row| digest_column(row, "digest"))
            .collect()
    }
}
