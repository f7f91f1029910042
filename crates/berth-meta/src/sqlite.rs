//! The embedded SQLite backend.
//!
//! One writer connection and a pool of read-only connections over a WAL database: SQLite
//! allows one writer at a time anyway, and funnelling writes through one connection means
//! writes queue in the pool instead of contending for SQLite's lock. Readers never block the
//! writer or each other. The writer's transactions still take the write lock at `BEGIN`
//! (see [`Writer::begin`]): a reader holds it too, for an instant, now and then.
//!
//! Writes that must survive a power cut (manifests, tags, deletes) are made durable by group
//! commit after the writer is released (see `wal_sync`), so no write waits on another's
//! disk flush while holding the writer.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::{Digest, Reference, RepositoryName, Tag};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, Transaction};

use crate::migrations::MIGRATIONS;

mod artifacts;
mod audit;
mod gc;
mod identity;
mod immutable;
mod jobs;
mod replication;
mod retention;
mod transfer;
mod upstreams;
mod usage;
use crate::wal_sync::WalSync;

/// A statement with its parameters bound, ready to run.
type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, <Sqlite as sqlx::Database>::Arguments>;
use crate::rows::{annotations_column, digest_column};
use crate::{
    BlobIndex, ManifestStore, MetaError, NewManifest, Paged, Referrer, RepositoryInfo,
    RepositoryQuery, RepositoryStore, Result, StoredManifest, Upload, UploadStore, now,
};

impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        MetaError::Backend(Box::new(e))
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) writer: SqlitePool,
    reader: SqlitePool,
    /// Group commit: what makes a write survive a power cut.
    wal: WalSync,
}

// What each write's commit must survive before it returns:
//
// - A power cut: manifests, tags and deletes, what makes an image exist for clients. They
//   commit, release the writer, then wait for `wal.wait_durable()`.
// - A crash of this process only: upload-session bookkeeping and blob links. Their commit
//   (`synchronous=NORMAL`) writes the WAL without syncing it. The WAL is written in order,
//   so the sync that makes a manifest durable makes every earlier link durable too,
//   including those of its own blobs: no acknowledged image can lose a blob. A power cut can
//   only lose links that no acknowledged manifest uses yet; the client's next `HEAD` says
//   404 and it uploads the blob again (whose bytes were synced before the link was written).

impl SqliteStore {
    /// The pools' and the group commit's state, for metrics.
    pub fn stats(&self) -> crate::StoreStats {
        crate::StoreStats {
            pools: vec![
                crate::pool_stats("writer", &self.writer),
                crate::pool_stats("reader", &self.reader),
            ],
            wal_sync: Some(self.wal.stats()),
        }
    }

    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_with_busy_timeout(path, Duration::from_secs(10)).await
    }

    /// [`SqliteStore::open`], with statements waiting at most `busy_timeout` for a lock
    /// another connection holds before they fail as [`MetaError::is_busy`] (tests use a
    /// short one).
    pub async fn open_with_busy_timeout(
        path: &Path,
        busy_timeout: Duration,
    ) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL: commits write the WAL; `wal_sync` makes those that must be durable so.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        // Neither pool pings a connection before lending it (sqlx's default): an SQLite
        // connection is a thread of this process, not a socket that can drop, and the ping
        // is one more hand-off to that thread and back on every statement's way in. sqlx
        // still pings it when it comes back, which is where a crashed one is found.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        migrate(&writer).await?;
        // The writer connection keeps the WAL in existence from here on.
        let wal = WalSync::open(wal_path(path))?;
        wal.wait_durable().await?;
        // Readers are opened as load asks for them, while the writer works. They do not
        // repeat `journal_mode=WAL`: the file keeps it since the writer set it, and a
        // read-only connection has no journal mode to change (sqlx warns that changing it
        // takes a lock the busy timeout does not wait for).
        let reader_options = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(busy_timeout)
            .read_only(true);
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(reader_options)
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            wal,
        })
    }

    /// The one writer connection.
    async fn write(&self) -> Result<Writer> {
        Ok(Writer(self.writer.acquire().await?))
    }

    /// Run one statement on the writer, let the writer go, and return (the number of rows
    /// it changed) only once its commit would survive a power cut.
    async fn execute_durably(&self, statement: SqliteQuery<'_>) -> Result<u64> {
        let done = statement.execute(&mut *self.write().await?).await?;
        self.wal.wait_durable().await?;
        Ok(done.rows_affected())
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// How every write transaction begins: see [`Writer::begin`].
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The writer connection, lent by its pool of one: statements run on it as on any
/// connection, and its transactions begin with the write lock held.
pub(crate) struct Writer(PoolConnection<Sqlite>);

impl Writer {
    /// Begin a write transaction that holds SQLite's write lock from its first statement
    /// (`BEGIN IMMEDIATE`).
    ///
    /// A deferred `BEGIN` whose transaction reads first takes the lock only at its first
    /// write, and SQLite fails that upgrade at once with `SQLITE_BUSY` ("database is
    /// locked"), without the busy wait, if the lock is held at that instant. Even with one
    /// writer connection it can be: a reader that finds the WAL-index header torn (the
    /// writer was updating it) takes the write lock to read the header again. Taken at
    /// `BEGIN`, the lock is waited for like any other (`busy_timeout`).
    pub(crate) async fn begin(&mut self) -> sqlx::Result<Transaction<'_, Sqlite>> {
        self.0.begin_with(BEGIN_WRITE).await
    }
}

impl std::ops::Deref for Writer {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.0
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.0
    }
}

/// SQLite's name for the WAL of the database at `path`.
fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// A manifest's references as one JSON parameter, `[[digest, 0 or 1 (is a manifest)], …]` in
/// their order, for `json_each`; `None` when there are none.
fn references_json<'a>(references: impl Iterator<Item = (&'a Digest, bool)>) -> Option<String> {
    let pairs: Vec<serde_json::Value> = references
        .map(|(digest, is_manifest)| serde_json::json!([digest.to_string(), u8::from(is_manifest)]))
        .collect();
    (!pairs.is_empty()).then(|| serde_json::Value::Array(pairs).to_string())
}

async fn migrate(pool: &SqlitePool) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(pool)
            .await?;
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        if version <= current {
            continue;
        }
        let mut tx = pool.begin_with(BEGIN_WRITE).await?;
        // Migrations are constants compiled into the binary, not input.
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
            .bind(version)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied metadata migration");
    }
    Ok(())
}

/// A page of names from `json_group_array(name)` over a subquery already in name order:
/// fetching 10 000 names as one value is several times faster than as 10 000 rows.
///
/// An `ORDER BY` inside the aggregate would make SQLite sort the page again in a temporary
/// B-tree (half of a cold 10 000-tag page). SQLite feeds the aggregate in the subquery's
/// order, but does not promise to, so the order is checked here, in one pass, and restored
/// if it ever differs. Rust orders strings bytewise, as SQLite's default `BINARY` collation.
fn names_from_json(json: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> =
        serde_json::from_str(json).map_err(|e| MetaError::Corrupt(format!("name listing: {e}")))?;
    if !names.is_sorted() {
        names.sort_unstable();
    }
    Ok(names)
}

/// The next id of `sequence` (`repositories`, `manifests`, `tags`): never given before.
async fn next_id(tx: &mut Transaction<'_, Sqlite>, sequence: &str) -> Result<i64> {
    let id =
        sqlx::query_scalar("UPDATE sequences SET value = value + 1 WHERE name = ? RETURNING value")
            .bind(sequence)
            .fetch_one(&mut **tx)
            .await?;
    Ok(id)
}

/// The id of `name`, creating the repository if it does not exist yet.
async fn ensure_repository(tx: &mut Transaction<'_, Sqlite>, name: &RepositoryName) -> Result<i64> {
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
        .bind(name.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(id) = id {
        return Ok(id);
    }
    let id = next_id(tx, "repositories").await?;
    let at = now();
    sqlx::query("INSERT INTO repositories (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)")
        .bind(id)
        .bind(name.as_str())
        .bind(at)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// A push happened into the repository: its update time moves.
async fn touch_repository(tx: &mut Transaction<'_, Sqlite>, repo_id: i64) -> Result<()> {
    sqlx::query("UPDATE repositories SET updated_at = ? WHERE id = ?")
        .bind(now())
        .bind(repo_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What a linking transaction knows about the blob's row in `blobs`.
///
/// A digest never has a row in `blobs` and one in `blob_deletions` at once: condemning a
/// blob deletes the first in the transaction that inserts the second, and nothing inserts a
/// `blobs` row for a digest being deleted (`link_in` and `reserve_blob` check first). So a
/// transaction that has seen the `blobs` row need not look for a deletion.
pub(crate) enum BlobRow {
    /// Not read yet: created if missing, refused if garbage collection is deleting the bytes.
    Unknown { size: u64 },
    /// Read by this transaction (a mount's source link joins it).
    Seen,
    /// Reserved by an upload with this epoch (see `GcStore::reserve_blob`): only that row is
    /// linked, and the link is refused if the row is gone or another one.
    Reserved(i64),
}

/// Link `digest` into `repository`, within its project's quota.
pub(crate) async fn link_in(
    tx: &mut Transaction<'_, Sqlite>,
    repository: &RepositoryName,
    digest: &Digest,
    row: BlobRow,
) -> Result<()> {
    let quota = usage::quota_hold(tx, repository.namespace()).await?;
    let repo_id = ensure_repository(tx, repository).await?;
    match row {
        BlobRow::Unknown { size } => {
            // Garbage collection is deleting the bytes (their row is gone already): a link
            // now would outlive them.
            let condemned: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM blob_deletions WHERE digest = ?")
                    .bind(digest.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
            if condemned.is_some() {
                return Err(MetaError::BlobBeingDeleted(digest.clone()));
            }
            sqlx::query(
                "INSERT INTO blobs (digest, size, created_at, epoch) VALUES (?, ?, ?, abs(random()))
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest.to_string())
            .bind(size as i64)
            .bind(now())
            .execute(&mut **tx)
            .await?;
        }
        BlobRow::Seen => {}
        BlobRow::Reserved(reserved) => {
            let epoch: Option<i64> = sqlx::query_scalar("SELECT epoch FROM blobs WHERE digest = ?")
                .bind(digest.to_string())
                .fetch_optional(&mut **tx)
                .await?;
            if epoch != Some(reserved) {
                return Err(MetaError::BlobBeingDeleted(digest.clone()));
            }
        }
    }
    sqlx::query(
        // A link made again is fresh again: GC's grace window counts from the last upload.
        "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)
         ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at",
    )
    .bind(repo_id)
    .bind(digest.to_string())
    .bind(now())
    .execute(&mut **tx)
    .await?;
    usage::enforce_quota(tx, quota.as_ref()).await
}

/// Point each tag at the manifest `digest` (which the transaction has stored).
async fn set_tags(
    tx: &mut Transaction<'_, Sqlite>,
    repo_id: i64,
    tags: &[Tag],
    digest: &str,
) -> Result<()> {
    for tag in tags {
        // A tag keeps its id when it moves to another manifest (as Harbor's do).
        let moved = sqlx::query(
            "UPDATE tags SET manifest_digest = ?, updated_at = ? WHERE repository_id = ? AND name = ?",
        )
        .bind(digest)
        .bind(now())
        .bind(repo_id)
        .bind(tag.as_str())
        .execute(&mut **tx)
        .await?;
        if moved.rows_affected() == 0 {
            insert_tag(tx, repo_id, tag, digest).await?;
        }
    }
    Ok(())
}

/// Add a tag the repository does not have yet.
async fn insert_tag(
    tx: &mut Transaction<'_, Sqlite>,
    repo_id: i64,
    tag: &Tag,
    digest: &str,
) -> Result<()> {
    let id = next_id(tx, "tags").await?;
    sqlx::query(
        "INSERT INTO tags (id, repository_id, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(repo_id)
    .bind(tag.as_str())
    .bind(digest)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl RepositoryStore for SqliteStore {
    async fn list_repositories(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let names: String = sqlx::query_scalar(
            "SELECT json_group_array(name) FROM
               (SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?)",
        )
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .fetch_one(&self.reader)
        .await?;
        names_from_json(&names)
    }

    async fn list_repositories_in(
        &self,
        projects: &[String],
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        crate::repositories_in_projects(projects, last, limit, |after, before, n| async move {
            let names: String = sqlx::query_scalar(
                "SELECT json_group_array(name) FROM
                   (SELECT name FROM repositories WHERE name > ? AND name < ?
                    ORDER BY name LIMIT ?)",
            )
            .bind(after)
            .bind(before)
            .bind(n as i64)
            .fetch_one(&self.reader)
            .await?;
            names_from_json(&names)
        })
        .await
    }

    async fn repository_page(&self, query: &RepositoryQuery<'_>) -> Result<Paged<RepositoryInfo>> {
        self.repository_page_of(query).await
    }

    async fn repository_info(&self, name: &RepositoryName) -> Result<Option<RepositoryInfo>> {
        self.repository_info_of(name).await
    }

    async fn set_repository_description(
        &self,
        name: &RepositoryName,
        description: &str,
    ) -> Result<bool> {
        self.describe_repository(name, description).await
    }

    async fn delete_repository(&self, name: &RepositoryName) -> Result<bool> {
        self.remove_repository(name).await
    }
}

#[async_trait]
impl BlobIndex for SqliteStore {
    async fn linked_blob_size(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs l
             JOIN repositories r ON r.id = l.repository_id
             JOIN blobs b ON b.digest = l.digest
             WHERE r.name = ? AND l.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        link_in(&mut tx, repository, digest, BlobRow::Unknown { size }).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mount_blob(
        &self,
        from: &RepositoryName,
        to: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs l
             JOIN repositories r ON r.id = l.repository_id
             JOIN blobs b ON b.digest = l.digest
             WHERE r.name = ? AND l.digest = ?",
        )
        .bind(from.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(size) = size else { return Ok(None) };
        link_in(&mut tx, to, digest, BlobRow::Seen).await?;
        tx.commit().await?;
        Ok(Some(size as u64))
    }

    async fn repositories_linking(&self, digest: &Digest, limit: usize) -> Result<Vec<String>> {
        let names: String = sqlx::query_scalar(
            "SELECT json_group_array(name) FROM
               (SELECT r.name FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
                WHERE l.digest = ? ORDER BY r.name LIMIT ?)",
        )
        .bind(digest.to_string())
        .bind(limit as i64)
        .fetch_one(&self.reader)
        .await?;
        names_from_json(&names)
    }

    async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool> {
        let statement = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = ?
             AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(digest.to_string())
        .bind(repository.as_str());
        Ok(self.execute_durably(statement).await? > 0)
    }
}

#[async_trait]
impl UploadStore for SqliteStore {
    async fn create_upload(&self, upload: &Upload) -> Result<()> {
        sqlx::query(
            "INSERT INTO uploads (id, repository, \"offset\", hash_state, store_state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&upload.id)
        .bind(upload.repository.as_str())
        .bind(upload.offset as i64)
        .bind(&upload.hash_state)
        .bind(&upload.store_state)
        .bind(upload.created_at)
        .bind(upload.created_at)
        .execute(&mut *self.write().await?)
        .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<Upload>> {
        // A reader sees every commit that finished before its statement began, so the offset
        // the previous PATCH wrote; racing PATCHes are settled by `advance_upload`'s check.
        let row = sqlx::query(
            "SELECT id, repository, \"offset\", hash_state, store_state, created_at FROM uploads WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            let repository: String = row.try_get("repository")?;
            Ok(Upload {
                id: row.try_get("id")?,
                repository: repository
                    .parse()
                    .map_err(|e| MetaError::Corrupt(format!("upload repository: {e}")))?,
                offset: row.try_get::<i64, _>("offset")? as u64,
                hash_state: row.try_get("hash_state")?,
                store_state: row.try_get("store_state")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn advance_upload(
        &self,
        id: &str,
        from_offset: u64,
        to_offset: u64,
        hash_state: &[u8],
        store_state: Option<&[u8]>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE uploads SET \"offset\" = ?, hash_state = ?, store_state = ?, updated_at = ? WHERE id = ? AND \"offset\" = ?",
        )
        .bind(to_offset as i64)
        .bind(hash_state)
        .bind(store_state)
        .bind(now())
        .bind(id)
        .bind(from_offset as i64)
        .execute(&mut *self.write().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id)
            .execute(&mut *self.write().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn uploads_idle_since(&self, cutoff: i64) -> Result<Vec<String>> {
        let ids =
            sqlx::query_scalar("SELECT id FROM uploads WHERE updated_at < ? ORDER BY updated_at")
                .bind(cutoff)
                .fetch_all(&self.writer)
                .await?;
        Ok(ids)
    }

    async fn complete_upload(
        &self,
        id: &str,
        repository: &RepositoryName,
        digest: &Digest,
        _size: u64,
        reservation: i64,
    ) -> Result<()> {
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        link_in(&mut tx, repository, digest, BlobRow::Reserved(reservation)).await?;
        sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl ManifestStore for SqliteStore {
    async fn put_manifest(
        &self,
        repository: &RepositoryName,
        manifest: &NewManifest,
        tags: &[Tag],
    ) -> Result<Digest> {
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        let quota = usage::quota_hold(&mut tx, repository.namespace()).await?;
        let repo_id = ensure_repository(&mut tx, repository).await?;
        for alias in &manifest.aliases {
            let stored: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?",
            )
            .bind(repo_id)
            .bind(alias.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if stored.is_some() {
                // The same bytes, already stored and checked: only the tags are new.
                immutable::refuse_immutable_moves(
                    &mut tx,
                    repo_id,
                    &manifest.immutable_tags,
                    &alias.to_string(),
                )
                .await?;
                set_tags(&mut tx, repo_id, tags, &alias.to_string()).await?;
                touch_repository(&mut tx, repo_id).await?;
                tx.commit().await?;
                drop(conn);
                self.wal.wait_durable().await?;
                return Ok(alias.clone());
            }
        }
        immutable::refuse_immutable_moves(
            &mut tx,
            repo_id,
            &manifest.immutable_tags,
            &manifest.digest.to_string(),
        )
        .await?;
        // The first reference missing, blobs first, in the order given: one statement for
        // them all, however many there are (the one writer is held until the commit).
        let blobs = manifest.blobs.iter().map(|d| (d, false));
        let children = manifest
            .manifests
            .iter()
            .filter(|_| manifest.require_manifests)
            .map(|d| (d, true));
        if let Some(wanted) = references_json(blobs.chain(children)) {
            let missing: Option<(String, bool)> = sqlx::query_as(
                "SELECT w.value ->> 0, w.value ->> 1 FROM json_each(?2) w
                 WHERE CASE WHEN w.value ->> 1
                   THEN NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = ?1 AND m.digest = w.value ->> 0)
                   ELSE NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.repository_id = ?1 AND l.digest = w.value ->> 0)
                 END
                 ORDER BY w.key LIMIT 1",
            )
            .bind(repo_id)
            .bind(wanted)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((digest, is_manifest)) = missing {
                return Err(MetaError::MissingReference {
                    digest: digest
                        .parse()
                        .map_err(|e| MetaError::Corrupt(format!("digest {digest:?}: {e}")))?,
                    is_manifest,
                });
            }
        }
        let digest = manifest.digest.to_string();
        let annotations = manifest
            .annotations
            .as_ref()
            .map(|a| serde_json::Value::Object(a.clone()).to_string());
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?")
                .bind(repo_id)
                .bind(&digest)
                .fetch_optional(&mut *tx)
                .await?;
        if stored.is_none() {
            let id = next_id(&mut tx, "manifests").await?;
            sqlx::query(
                "INSERT INTO manifests (id, repository_id, digest, media_type, content, size, artifact_type, config_media_type, subject, annotations, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(repo_id)
            .bind(&digest)
            .bind(&manifest.media_type)
            .bind(&manifest.content)
            .bind(manifest.content.len() as i64)
            .bind(&manifest.artifact_type)
            .bind(&manifest.config_media_type)
            .bind(manifest.subject.as_ref().map(Digest::to_string))
            .bind(annotations)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        let children = manifest
            .blobs
            .iter()
            .map(|d| (d, false))
            .chain(manifest.manifests.iter().map(|d| (d, true)));
        if let Some(children) = references_json(children) {
            // `WHERE true`: without a WHERE, SQLite would read the upsert's ON as a join's.
            sqlx::query(
                "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_is_manifest)
                 SELECT ?1, ?2, c.value ->> 0, c.value ->> 1 FROM json_each(?3) c WHERE true
                 ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(&digest)
            .bind(children)
            .execute(&mut *tx)
            .await?;
        }
        usage::enforce_quota(&mut tx, quota.as_ref()).await?;
        set_tags(&mut tx, repo_id, tags, &digest).await?;
        touch_repository(&mut tx, repo_id).await?;
        tx.commit().await?;
        drop(conn);
        self.wal.wait_durable().await?;
        Ok(manifest.digest.clone())
    }

    async fn get_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>> {
        let row = match reference {
            Reference::Tag(tag) => {
                sqlx::query(
                    "SELECT m.digest, m.media_type, m.content FROM tags t
                     JOIN repositories r ON r.id = t.repository_id
                     JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
                     WHERE r.name = ? AND t.name = ?",
                )
                .bind(repository.as_str())
                .bind(tag.as_str())
                .fetch_optional(&self.reader)
                .await?
            }
            Reference::Digest(digest) => {
                sqlx::query(
                    "SELECT m.digest, m.media_type, m.content FROM manifests m
                     JOIN repositories r ON r.id = m.repository_id
                     WHERE r.name = ? AND m.digest = ?",
                )
                .bind(repository.as_str())
                .bind(digest.to_string())
                .fetch_optional(&self.reader)
                .await?
            }
        };
        row.map(|row| {
            Ok(StoredManifest {
                digest: digest_column(&row, "digest")?,
                media_type: row.try_get("media_type")?,
                content: row.try_get("content")?,
            })
        })
        .transpose()
    }

    async fn delete_manifest(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool> {
        // Tags and references go with it (ON DELETE CASCADE).
        let statement = sqlx::query(
            "DELETE FROM manifests WHERE digest = ? AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(digest.to_string())
        .bind(repository.as_str());
        Ok(self.execute_durably(statement).await? > 0)
    }

    async fn delete_tag(&self, repository: &RepositoryName, tag: &Tag) -> Result<bool> {
        let statement = sqlx::query(
            "DELETE FROM tags WHERE name = ? AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(tag.as_str())
        .bind(repository.as_str());
        Ok(self.execute_durably(statement).await? > 0)
    }

    async fn list_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<String>>> {
        let repo_id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repository.as_str())
            .fetch_optional(&self.reader)
            .await?;
        let Some(repo_id) = repo_id else {
            return Ok(None);
        };
        let tags: String = sqlx::query_scalar(
            "SELECT json_group_array(name) FROM
               (SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?)",
        )
        .bind(repo_id)
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .fetch_one(&self.reader)
        .await?;
        names_from_json(&tags).map(Some)
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ? AND m.subject = ? AND (? IS NULL OR m.artifact_type = ?)
             ORDER BY m.created_at, m.digest",
        )
        .bind(repository.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .bind(artifact_type)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Referrer {
                    digest: digest_column(row, "digest")?,
                    media_type: row.try_get("media_type")?,
                    size: row.try_get::<i64, _>("size")? as u64,
                    artifact_type: row.try_get("artifact_type")?,
                    annotations: annotations_column(row)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_pages_come_back_in_bytewise_order_whatever_sqlite_fed() {
        let names = super::names_from_json(r#"["b","B","a","a-1","é"]"#).expect("parses");
        assert_eq!(names, ["B", "a", "a-1", "b", "é"]);
        assert!(super::names_from_json("not json").is_err());
    }

    #[tokio::test]
    async fn sqlite_passes_the_metadata_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .expect("opens");
        crate::suite::run(&store).await;
        store.close().await;
        // Reopening applies no migration twice and keeps the data.
        let store = super::SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .expect("reopens");
        crate::suite::reopened(&store).await;
    }

    /// A second connection to the database at `path`, holding its write lock until it
    /// rolls back.
    async fn hold_write_lock(path: &std::path::Path) -> sqlx::sqlite::SqliteConnection {
        use sqlx::Connection;

        let mut other = sqlx::sqlite::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
        )
        .await
        .expect("a second connection");
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("holds the write lock");
        other
    }

    /// A write transaction that reads before it writes waits for a write lock held for a
    /// moment elsewhere, as a single statement does, instead of failing at once with
    /// "database is locked" when it comes to write (what a deferred `BEGIN` does: the busy
    /// wait does not apply to a transaction that already reads). Here the lock is held by a
    /// second connection; in berth it is a reader re-reading a torn WAL-index header.
    #[tokio::test]
    async fn a_transaction_that_reads_first_waits_for_a_write_lock_held_elsewhere() {
        use berth_core::{Digest, RepositoryName};

        use crate::BlobIndex;

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        let store = super::SqliteStore::open(&path).await.expect("opens");
        let from: RepositoryName = "team/base".parse().expect("name");
        let to: RepositoryName = "team/app".parse().expect("name");
        let digest = Digest::of(berth_core::Algorithm::Sha256, b"layer");
        store.link_blob(&from, &digest, 5).await.expect("links");

        let mut other = hold_write_lock(&path).await;
        let held = std::time::Duration::from_millis(300);
        let release = tokio::spawn(async move {
            tokio::time::sleep(held).await;
            sqlx::raw_sql("ROLLBACK")
                .execute(&mut other)
                .await
                .expect("lets go");
        });
        let started = std::time::Instant::now();
        // A mount reads the source's link, then writes the new one, in one transaction.
        let mounted = store.mount_blob(&from, &to, &digest).await;
        let waited = started.elapsed();
        release.await.expect("released");
        assert_eq!(mounted.expect("waits, then mounts"), Some(5));
        assert!(
            waited >= held,
            "mounted after {waited:?}, with the lock held"
        );
        assert_eq!(
            store.linked_blob_size(&to, &digest).await.expect("size"),
            Some(5)
        );
    }

    /// A write that waits past the busy timeout for a lock another connection holds fails
    /// as busy (what the API answers 503 to), keeps nothing, and the same write succeeds
    /// once the lock is gone.
    #[tokio::test]
    async fn a_write_kept_waiting_on_a_lock_fails_as_busy_and_can_be_retried() {
        use crate::{Upload, UploadStore};

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        let store = super::SqliteStore::open_with_busy_timeout(
            &path,
            std::time::Duration::from_millis(200),
        )
        .await
        .expect("opens");
        let mut other = hold_write_lock(&path).await;
        let upload = Upload {
            id: "u1".into(),
            repository: "busy/app".parse().expect("name"),
            offset: 0,
            hash_state: vec![],
            store_state: None,
            created_at: 7,
        };
        let error = store.create_upload(&upload).await.expect_err("locked out");
        assert!(error.is_busy(), "{error}");
        assert!(!crate::MetaError::Conflict("x".into()).is_busy());
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut other)
            .await
            .expect("lets go");
        assert_eq!(store.get_upload("u1").await.expect("get"), None);
        store.create_upload(&upload).await.expect("retried");
        assert!(store.get_upload("u1").await.expect("get").is_some());
    }

    #[tokio::test]
    async fn sqlite_keeps_immutable_tags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .expect("opens");
        crate::suite::immutable_tags(&store).await;
        crate::suite::retention_policies(&store).await;
        crate::suite::replication(&store).await;
    }

    #[tokio::test]
    async fn sqlite_keeps_usage_and_quotas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .expect("opens");
        crate::suite::usage_and_quotas(&store).await;
    }

    /// A database written before migration 3 gets ids for its repositories, manifests and
    /// tags, and its manifests' config media types, and new ids follow the old ones.
    #[tokio::test]
    async fn migrations_give_existing_rows_ids_config_media_types_and_counts() {
        use berth_core::mgmt::ArtifactWith;
        use berth_core::{Algorithm, Digest, Reference};

        use crate::{ArtifactStore, ManifestStore, RepositoryStore};

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        let config = Digest::of(Algorithm::Sha256, b"config");
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":6}},"layers":[]}}"#
        );
        let digest = Digest::of(Algorithm::Sha256, manifest.as_bytes());
        {
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .connect_with(
                    sqlx::sqlite::SqliteConnectOptions::new()
                        .filename(&path)
                        .create_if_missing(true),
                )
                .await
                .expect("create");
            sqlx::raw_sql(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
                 INSERT INTO schema_migrations VALUES (1, 0), (2, 0);",
            )
            .execute(&pool)
            .await
            .expect("versions");
            for sql in &super::MIGRATIONS[..2] {
                sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                    .execute(&pool)
                    .await
                    .expect("old schema");
            }
            sqlx::query(
                "INSERT INTO repositories (name, created_at) VALUES ('old/app', 7);
                 INSERT INTO blobs VALUES (?1, 6, 7);
                 INSERT INTO repository_blobs VALUES (1, ?1, 7);
                 INSERT INTO manifests (repository_id, digest, media_type, content, size, created_at)
                     VALUES (1, ?2, 'application/vnd.oci.image.manifest.v1+json', CAST(?3 AS BLOB), length(?3), 7);
                 INSERT INTO manifest_references VALUES (1, ?2, ?1, 0);
                 INSERT INTO tags VALUES (1, 'b', ?2, 7), (1, 'a', ?2, 7);
                 INSERT INTO repositories (name, created_at) VALUES ('old/two', 7), ('other/x', 7);
                 INSERT INTO repository_blobs VALUES (2, ?1, 7), (3, ?1, 7);",
            )
            .bind(config.to_string())
            .bind(digest.to_string())
            .bind(&manifest)
            .execute(&pool)
            .await
            .expect("old rows");
            pool.close().await;
        }
        let store = super::SqliteStore::open(&path).await.expect("migrates");
        let repo = "old/app".parse().expect("name");
        let info = store
            .repository_info(&repo)
            .await
            .expect("info")
            .expect("found");
        assert_eq!((info.id, info.updated_at, info.artifact_count), (1, 7, 1));
        // Migration 9 counted what was there: the config blob is shared by two repositories
        // of `old` and one of `other`, so nobody holds it alone.
        use crate::UsageStore;
        let shared = |manifests: u64| crate::Usage {
            blob_bytes: 6,
            unique_blob_bytes: 0,
            manifest_bytes: manifests,
        };
        assert_eq!(info.usage, shared(manifest.len() as u64));
        assert_eq!(
            store.namespace_usage("old").await.expect("usage"),
            shared(manifest.len() as u64)
        );
        assert_eq!(
            store.namespace_usage("other").await.expect("usage"),
            shared(0)
        );
        let registry = store.registry_usage().await.expect("registry");
        assert_eq!(
            (registry.linked_blob_bytes, registry.stored_blob_bytes),
            (6, 6)
        );
        let with = ArtifactWith {
            tags: true,
            accessories: false,
        };
        let artifact = store
            .artifact(&repo, &Reference::Digest(digest.clone()), with)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(artifact.id, 1);
        assert_eq!(
            artifact.config_media_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(artifact.size, manifest.len() as u64 + 6);
        let mut tag_ids: Vec<(String, i64)> = artifact
            .tags
            .expect("tags")
            .into_iter()
            .map(|t| (t.name, t.id))
            .collect();
        tag_ids.sort();
        assert_eq!(tag_ids, [("a".to_string(), 1), ("b".to_string(), 2)]);
        store
            .put_manifest(
                &repo,
                &crate::NewManifest {
                    digest: Digest::of(Algorithm::Sha256, b"{}"),
                    media_type: berth_core::media_type::OCI_MANIFEST.into(),
                    content: b"{}".to_vec(),
                    artifact_type: None,
                    config_media_type: None,
                    subject: None,
                    annotations: None,
                    blobs: Vec::new(),
                    manifests: Vec::new(),
                    require_manifests: true,
                    aliases: Vec::new(),
                    immutable_tags: Vec::new(),
                },
                &["c".parse().expect("tag")],
            )
            .await
            .expect("put");
        let newer = store
            .artifact(&repo, &Reference::Tag("c".parse().expect("tag")), with)
            .await
            .expect("get")
            .expect("found");
        assert_eq!((newer.id, newer.tags.expect("tags")[0].id), (2, 3));
        // Migration 5 counted the old manifest; its triggers count the new one.
        let info = store
            .repository_info(&repo)
            .await
            .expect("info")
            .expect("found");
        assert_eq!(info.artifact_count, 2);
    }

    #[tokio::test]
    async fn sqlite_lists_many_artifacts_page_by_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .expect("opens");
        crate::suite::many_artifacts(&store).await;
    }
}
