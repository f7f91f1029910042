//! The PostgreSQL backend's garbage-collection steps, safe against pushes on every node.
//!
//! - A repository step locks the repository's row as every manifest push, tag write and
//!   unlink does (`FOR NO KEY UPDATE`), so it sees each push wholly or not at all. Its
//!   `DELETE`s keep their conditions on the target row (a link's age), which PostgreSQL
//!   re-checks against a row a concurrent upload has just refreshed.
//! - Condemning blobs locks their rows `FOR UPDATE` first, which waits for every link being
//!   inserted (the foreign key check holds `FOR KEY SHARE` on the blob's row) and blocks
//!   new ones; only then, in a new snapshot that sees those links, does it pick the rows to
//!   delete. A link inserted after waits, finds the row gone, and is refused (see
//!   `link_in`).
//! - Reserving a blob for an upload and condemning an orphan's bytes take the digest's
//!   transaction-level advisory lock, so one of them sees the other's row or tombstone.

use async_trait::async_trait;
use berth_core::{Digest, RepositoryName};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, notify_changed, retrying};
use crate::gc::{GcRepository, GcStore, RepositorySweep, RepositorySwept, Tombstone};
use crate::rows::digest_column;
use crate::{MetaError, Result, now};

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn texts(digests: &[Digest]) -> Vec<String> {
    digests.iter().map(Digest::to_string).collect()
}

fn tombstones(rows: &[PgRow]) -> Result<Vec<Tombstone>> {
    rows.iter()
        .map(|row| {
            Ok(Tombstone {
                digest: digest_column(row, "digest")?,
                size: row.try_get::<i64, _>("size")? as u64,
            })
        })
        .collect()
}

fn digest_rows(rows: &[PgRow]) -> Result<Vec<Digest>> {
    rows.iter()
        .map(|row| digest_column(row, "digest"))
        .collect()
}

/// See the SQLite twin (`sqlite/gc.rs`): the unkept untagged manifests, deleted.
const DELETE_UNKEPT_MANIFESTS: &str = "
    WITH RECURSIVE
      edges(parent, child) AS (
        SELECT manifest_digest, child_digest FROM manifest_references
          WHERE repository_id = $1 AND child_is_manifest
        UNION ALL
        SELECT subject, digest FROM manifests WHERE repository_id = $1 AND subject IS NOT NULL),
      kept(digest) AS (
        SELECT manifest_digest FROM tags WHERE repository_id = $1
        UNION SELECT digest FROM manifests WHERE repository_id = $1 AND created_at >= $2
        UNION SELECT edges.child FROM edges JOIN kept ON edges.parent = kept.digest)
    DELETE FROM manifests WHERE repository_id = $1 AND digest IN
      (SELECT digest FROM manifests WHERE repository_id = $1
         AND digest NOT IN (SELECT digest FROM kept) ORDER BY digest LIMIT $3)
    RETURNING digest";

/// The batch is chosen once (`MATERIALIZED`): as an `IN` subquery, a plan made from stale
/// statistics ran it again for every row it deleted.
const DELETE_UNREFERENCED_LINKS: &str = "
    WITH batch AS MATERIALIZED (
      SELECT c.digest FROM repository_blobs c
      WHERE c.repository_id = $1 AND c.created_at < $2
        AND NOT EXISTS (SELECT 1 FROM manifest_references r
                        WHERE r.repository_id = $1 AND r.child_digest = c.digest)
      ORDER BY c.digest LIMIT $3)
    DELETE FROM repository_blobs l
    WHERE l.repository_id = $1 AND l.created_at < $2
      AND l.digest IN (SELECT digest FROM batch)
      AND NOT EXISTS (SELECT 1 FROM manifest_references r
                      WHERE r.repository_id = $1 AND r.child_digest = l.digest)
    RETURNING l.digest";

/// The tables a GC run's queries read, whose statistics [`GcStore::gc_refresh_statistics`]
/// keeps current, each with the statement that analyzes it.
const GC_TABLES: [(&str, &str); 5] = [
    ("repository_blobs", "ANALYZE repository_blobs"),
    ("manifest_references", "ANALYZE manifest_references"),
    ("manifests", "ANALYZE manifests"),
    ("tags", "ANALYZE tags"),
    ("blobs", "ANALYZE blobs"),
];

/// Every advisory lock of a digest is this key: a 64-bit hash of its text.
const DIGEST_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

#[async_trait]
impl GcStore for PgStore {
    async fn gc_refresh_statistics(&self) -> Result<Vec<String>> {
        // Stale as autovacuum counts it (50 rows + 10 % changed since the last analysis);
        // this only does now what it would do within its next rounds.
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT relname::text FROM pg_stat_user_tables
             WHERE relid = ANY(SELECT to_regclass(t)::oid FROM unnest($1::text[]) AS t)
               AND n_mod_since_analyze > 50 + 0.1 * GREATEST(n_live_tup, 0)
             ORDER BY relname",
        )
        .bind(GC_TABLES.map(|(table, _)| table).as_slice())
        .fetch_all(&self.pool)
        .await?;
        for (_, analyze) in GC_TABLES
            .iter()
            .filter(|(t, _)| stale.iter().any(|s| s == t))
        {
            // A role that does not own the table gets a warning from PostgreSQL, and the run
            // goes on as before.
            sqlx::raw_sql(*analyze).execute(&self.pool).await?;
        }
        Ok(stale)
    }

    async fn gc_repositories(&self, after: i64, limit: usize) -> Result<Vec<GcRepository>> {
        let rows =
            sqlx::query("SELECT id, name FROM repositories WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit_of(limit))
                .fetch_all(&self.pool)
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
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let locked: Option<i64> =
                sqlx::query_scalar("SELECT id FROM repositories WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(repository.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let mut swept = RepositorySwept::default();
            if locked.is_none() {
                return Ok(swept);
            }
            if let Some(before) = sweep.untagged_before {
                let rows = sqlx::query(DELETE_UNKEPT_MANIFESTS)
                    .bind(repository.id)
                    .bind(before)
                    .bind(limit_of(sweep.limit))
                    .fetch_all(&mut *tx)
                    .await?;
                swept.manifests = digest_rows(&rows)?;
            }
            let rows = sqlx::query(DELETE_UNREFERENCED_LINKS)
                .bind(repository.id)
                .bind(sweep.links_before)
                .bind(limit_of(sweep.limit))
                .fetch_all(&mut *tx)
                .await?;
            swept.links = digest_rows(&rows)?;
            if sweep.dry_run {
                tx.rollback().await?;
            } else {
                if !swept.manifests.is_empty() || !swept.links.is_empty() {
                    notify_changed(&mut tx, &repository.name).await?;
                }
                tx.commit().await?;
            }
            Ok(swept)
        })
        .await
    }

    async fn gc_unlinked_blobs(
        &self,
        before: i64,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Tombstone>> {
        let rows = sqlx::query(
            "SELECT digest, size FROM blobs b
             WHERE created_at < $1 AND digest > $2
               AND NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.digest = b.digest)
             ORDER BY digest LIMIT $3",
        )
        .bind(before)
        .bind(after.map(Digest::to_string).unwrap_or_default())
        .bind(limit_of(limit))
        .fetch_all(&self.pool)
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
             FROM blobs b WHERE b.digest = ANY($1) AND b.created_at < $2",
        )
        .bind(texts(digests))
        .bind(before)
        .fetch_all(&self.pool)
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
        let candidates = texts(candidates);
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            // Waits for links being inserted, blocks new ones, and re-checks the age against
            // a row an upload has just reserved again.
            let locked: Vec<String> = sqlx::query_scalar(
                "SELECT digest FROM blobs WHERE digest = ANY($1) AND created_at < $2
                 ORDER BY digest FOR UPDATE",
            )
            .bind(&candidates)
            .bind(before)
            .fetch_all(&mut *tx)
            .await?;
            let rows = sqlx::query(
                "INSERT INTO blob_deletions (digest, size, owner, claimed_until, created_at)
                 SELECT digest, size, $2, $3, $4 FROM blobs b
                 WHERE digest = ANY($1)
                   AND NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.digest = b.digest)
                 RETURNING digest, size",
            )
            .bind(&locked)
            .bind(owner)
            .bind(claimed_until)
            .bind(now())
            .fetch_all(&mut *tx)
            .await?;
            let condemned = tombstones(&rows)?;
            let gone: Vec<String> = condemned.iter().map(|t| t.digest.to_string()).collect();
            sqlx::query("DELETE FROM blobs WHERE digest = ANY($1)")
                .bind(&gone)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(condemned)
        })
        .await
    }

    async fn gc_claim_tombstones(
        &self,
        owner: &str,
        claimed_until: i64,
        limit: usize,
    ) -> Result<Vec<Tombstone>> {
        let rows = sqlx::query(
            "UPDATE blob_deletions SET owner = $1, claimed_until = $2
             WHERE digest IN (SELECT digest FROM blob_deletions WHERE claimed_until < $3
                              ORDER BY digest LIMIT $4 FOR UPDATE SKIP LOCKED)
               AND claimed_until < $3
             RETURNING digest, size",
        )
        .bind(owner)
        .bind(claimed_until)
        .bind(now())
        .bind(limit_of(limit))
        .fetch_all(&self.pool)
        .await?;
        tombstones(&rows)
    }

    async fn gc_forget_tombstones(&self, owner: &str, digests: &[Digest]) -> Result<()> {
        sqlx::query("DELETE FROM blob_deletions WHERE owner = $1 AND digest = ANY($2)")
            .bind(owner)
            .bind(texts(digests))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reserve_blob(&self, digest: &Digest, size: u64) -> Result<Option<i64>> {
        let digest = digest.to_string();
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(DIGEST_LOCK)
                .bind(&digest)
                .execute(&mut *tx)
                .await?;
            // The upsert waits for a condemnation holding the row; the check after it, a
            // statement of its own, sees the tombstone that condemnation committed.
            let epoch: i64 = sqlx::query_scalar(
                "INSERT INTO blobs (digest, size, created_at, epoch)
                 VALUES ($1, $2, $3, floor(random() * 9.2e18)::bigint)
                 ON CONFLICT (digest) DO UPDATE SET created_at = EXCLUDED.created_at
                 RETURNING epoch",
            )
            .bind(&digest)
            .bind(size as i64)
            .bind(now())
            .fetch_one(&mut *tx)
            .await?;
            let condemned: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM blob_deletions WHERE digest = $1")
                    .bind(&digest)
                    .fetch_optional(&mut *tx)
                    .await?;
            if condemned.is_some() {
                tx.rollback().await?;
                return Ok(None);
            }
            tx.commit().await?;
            Ok(Some(epoch))
        })
        .await
    }

    async fn link_reserved_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        epoch: i64,
    ) -> Result<()> {
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let repo_id =
                super::ensure_repository(&mut tx, repository, super::RepoLock::Link).await?;
            super::link_in(
                &mut tx,
                repository.namespace(),
                repo_id,
                digest,
                0,
                Some(epoch),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn gc_condemn_orphans(
        &self,
        digests: &[Digest],
        owner: &str,
        claimed_until: i64,
    ) -> Result<Vec<Digest>> {
        let mut sorted = texts(digests);
        sorted.sort();
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            for digest in &sorted {
                sqlx::query(DIGEST_LOCK)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await?;
            }
            let rows = sqlx::query(
                "INSERT INTO blob_deletions (digest, size, owner, claimed_until, created_at)
                 SELECT d, 0, $2, $3, $4 FROM unnest($1::text[]) AS d
                 WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = d)
                 ON CONFLICT (digest) DO NOTHING
                 RETURNING digest",
            )
            .bind(&sorted)
            .bind(owner)
            .bind(claimed_until)
            .bind(now())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            digest_rows(&rows)
        })
        .await
    }
}
