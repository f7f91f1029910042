//! The PostgreSQL backend: one database shared by several berth processes ("nodes").
//!
//! SQLite settles every "first writer wins" question by having one writer connection. Here
//! several nodes write at once, so each write transaction that decides from what a
//! repository holds, or removes from it, first locks the repository's row
//! (`SELECT … FOR NO KEY UPDATE`): manifest and tag writes, deletes, unlinks. Writes into one
//! repository are thus applied one after another, across every node, exactly as SQLite
//! applies them; writes into different repositories do not wait for each other.
//!
//! Blob links only add to a repository (parallel layer uploads), so they take the weaker
//! `FOR KEY SHARE`: they never wait for each other or for a manifest push, only for the
//! repository's deletion. Upload sessions advance with one conditional `UPDATE`, which
//! PostgreSQL re-checks against the newest row after waiting for a concurrent one.
//!
//! Transactions run at `READ COMMITTED`; after waiting for a lock, each statement sees what
//! the previous holder committed. A transaction PostgreSQL aborts for a deadlock or a
//! serialization failure is run again (see [`retrying`]). Multi-statement reads (a page and
//! its total) use one `REPEATABLE READ` snapshot so that they agree.
//!
//! Commits are durable when they return (PostgreSQL's `synchronous_commit`), so nothing
//! here needs SQLite's group commit.
//!
//! Each node may keep an in-memory read cache: every transaction that changes what a
//! repository's lookups answer sends `NOTIFY` with the repository's name (delivered at
//! commit, dropped on rollback), and [`RepositoryStore::invalidations`] `LISTEN`s on a
//! connection of its own (see [`forward_invalidations`]).

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::{Digest, Reference, RepositoryName, Tag};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Executor, Row};
use tokio::sync::{mpsc, watch};

use crate::rows::{annotations_column, digest_column};
use crate::{
    BlobIndex, Invalidation, ManifestStore, MetaError, NewManifest, Paged, Referrer,
    RepositoryInfo, RepositoryQuery, RepositoryStore, Result, StoredManifest, Upload, UploadStore,
    now,
};

mod artifacts;
mod audit;
mod gc;
mod identity;
mod immutable;
mod jobs;
pub(crate) mod migrations;
mod replication;
mod retention;
#[cfg(any(test, feature = "test-postgres"))]
pub mod testing;
mod transfer;
mod upstreams;
mod usage;

use migrations::MIGRATIONS;

/// A statement with its parameters bound, ready to run.
type PgQuery<'q> =
    sqlx::query::Query<'q, sqlx::Postgres, <sqlx::Postgres as sqlx::Database>::Arguments>;

/// How to reach the database and how to use it.
#[derive(Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/database?…`. Never logged as is: see
    /// [`redacted_url`].
    pub url: String,
    /// Connections this node keeps open at most.
    pub pool_size: u32,
    /// Set on every connection (`SET statement_timeout`): a statement running longer is
    /// cancelled by the server. `None`: no limit.
    pub statement_timeout: Option<Duration>,
    /// How long start-up waits for the database to accept connections.
    pub connect_timeout: Duration,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            pool_size: 16,
            statement_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redacted_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// `url` with its password (if any) replaced, for logs and error messages.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first '/', '?' or '#'; credentials end at its last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return redact_query_password(url);
    };
    let user = match credentials.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => credentials.to_owned(),
    };
    redact_query_password(&format!("{scheme}://{user}@{host}{tail}"))
}

/// A `password=` query parameter (libpq accepts one) replaced too.
fn redact_query_password(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// For the invalidation feeds' own connections.
    connect: Arc<PgConnectOptions>,
    /// Set by [`PgStore::close`]: the feeds let their connections go.
    closing: watch::Sender<bool>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// The pool's state, for metrics.
    pub fn stats(&self) -> crate::StoreStats {
        crate::StoreStats {
            pools: vec![crate::pool_stats("main", &self.pool)],
            wal_sync: None,
        }
    }
}

impl PgStore {
    /// Wait for the database (up to `connect_timeout`), bring its schema up to date (once,
    /// whichever node gets there first), and open the pool.
    pub async fn connect(options: &PgOptions) -> Result<PgStore> {
        let shown = redacted_url(&options.url);
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|e| MetaError::Backend(format!("database url {shown}: {e}").into()))?
            .application_name("berth");
        let mut conn = wait_for_database(&connect, options.connect_timeout, &shown).await?;
        // Migrations run on this connection, without the statement timeout: waiting for
        // another node's migration, or a long one, is no hung statement.
        migrate(&mut conn).await?;
        conn.close().await?;
        let timeout_ms = options.statement_timeout.map(|t| t.as_millis());
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if let Some(ms) = timeout_ms {
                        // A number, not input: safe to format into the statement.
                        conn.execute(sqlx::AssertSqlSafe(format!("SET statement_timeout = {ms}")))
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect.clone())
            .await?;
        tracing::info!(url = %shown, pool_size = options.pool_size, "metadata database is PostgreSQL");
        Ok(PgStore {
            pool,
            connect: Arc::new(connect),
            closing: watch::Sender::new(false),
        })
    }

    pub async fn close(&self) {
        self.closing.send_replace(true);
        self.pool.close().await;
    }

    /// A read transaction that sees one snapshot throughout (a page and its total agree).
    async fn snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?)
    }
}

/// Connect, retrying with backoff while the server is not up yet (a database container
/// starting next to berth), each retry logged, until `patience` has passed.
async fn wait_for_database(
    options: &PgConnectOptions,
    patience: Duration,
    shown: &str,
) -> Result<PgConnection> {
    let deadline = Instant::now() + patience;
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // One attempt must not outlast the deadline (a dropped SYN hangs for minutes).
        let outcome =
            match tokio::time::timeout(remaining.max(Duration::from_secs(1)), options.connect())
                .await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(sqlx::Error::PoolTimedOut),
            };
        match outcome {
            Ok(conn) => {
                if attempt > 1 {
                    tracing::info!(url = %shown, attempt, "metadata database is reachable");
                }
                return Ok(conn);
            }
            Err(e) if is_not_up_yet(&e) && Instant::now() + delay < deadline => {
                tracing::warn!(
                    url = %shown, attempt, error = %e, retry_in = ?delay,
                    "metadata database is not reachable yet; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(e) => {
                return Err(MetaError::Backend(
                    format!("cannot connect to {shown} (attempt {attempt}): {e}").into(),
                ));
            }
        }
    }
}

/// Errors that go away once the server has started: nothing listening yet, still starting
/// up or shutting down, no connection slot free. A wrong password or an unknown database
/// does not go away by waiting.
fn is_not_up_yet(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| matches!(&*c, "57P03" | "57P01" | "53300")),
        _ => false,
    }
}

/// Any number: the key every berth node takes while it migrates.
const MIGRATION_LOCK: i64 = 0x6265_7274_685f_6d67;

/// Apply the migrations this database lacks, under a session-level advisory lock: nodes
/// starting together wait for the first, then find nothing left to do.
async fn migrate(conn: &mut PgConnection) -> Result<()> {
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !free {
        tracing::info!("another node is migrating the metadata database; waiting");
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let applied = apply_migrations(conn).await;
    // Closing the connection would release the lock too; an error must not keep it longer.
    let released = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    applied?;
    released?;
    Ok(())
}

async fn apply_migrations(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *conn)
            .await?;
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        if version <= current {
            continue;
        }
        let mut tx = conn.begin().await?;
        // Migrations are constants compiled into the binary, not input.
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied metadata migration");
    }
    Ok(())
}

/// How many times a transaction PostgreSQL aborted as a deadlock victim or for a
/// serialization failure is tried again before the error is returned.
const TRANSIENT_RETRIES: u32 = 5;

/// Run `attempt` (one whole transaction) again while PostgreSQL aborts it for a reason that
/// a second try resolves: a deadlock (`40P01`) or a serialization failure (`40001`).
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if tries < TRANSIENT_RETRIES && is_transient(&e) => {
                tries += 1;
                tracing::debug!(error = %e, tries, "metadata transaction aborted; trying again");
                tokio::time::sleep(Duration::from_millis(2 << tries)).await;
            }
            outcome => return outcome,
        }
    }
}

fn is_transient(e: &MetaError) -> bool {
    let MetaError::Backend(source) = e else {
        return false;
    };
    source
        .downcast_ref::<sqlx::Error>()
        .and_then(sqlx::Error::as_database_error)
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40001" || c == "40P01")
}

/// The channel of [`notify_changed`]: the payload is a repository's name.
const CHANGES_CHANNEL: &str = "berth_repository_changed";

/// Tell every node's cache, when the transaction commits, that what lookups in
/// `repository` answer may have changed.
async fn notify_changed(conn: &mut PgConnection, repository: &RepositoryName) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(repository.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Until [`PgStore::close`] (or forever, once every store clone is gone without it).
async fn store_closed(closing: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across the caller's awaits.
    if closing.wait_for(|closed| *closed).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Forward the names [`notify_changed`] sends to `out`, on a connection of its own, until
/// `out` is dropped or the store closes. Notifications sent while no connection listens are
/// lost, so the feed says [`Invalidation::Lost`] when its connection fails and
/// [`Invalidation::All`] each time it listens again (the first time too).
async fn forward_invalidations(
    connect: PgConnectOptions,
    out: mpsc::Sender<Invalidation>,
    mut closing: watch::Receiver<bool>,
) {
    // A pool of one: the listening connection takes no query connection's slot, and
    // closing the store does not wait for it.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(connect);
    let mut delay = Duration::from_millis(250);
    'connect: loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANGES_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let attempt = tokio::select! {
            listener = listening => listener,
            _ = store_closed(&mut closing) => break 'connect,
            _ = out.closed() => break 'connect,
        };
        let mut listener = match attempt {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot listen for other nodes' changes; the read cache stays off");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = store_closed(&mut closing) => break 'connect,
                    _ = out.closed() => break 'connect,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                continue 'connect;
            }
        };
        delay = Duration::from_millis(250);
        // Listening now: from here on every change is reported; before, nobody knows.
        if out.send(Invalidation::All).await.is_err() {
            break 'connect;
        }
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => {
                        let changed = Invalidation::Repository(notification.payload().to_owned());
                        if out.send(changed).await.is_err() {
                            break 'connect;
                        }
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!("lost the connection listening for other nodes' changes; the read cache is off until it is back");
                        if out.send(Invalidation::Lost).await.is_err() {
                            break 'connect;
                        }
                        continue 'connect;
                    }
                },
                _ = store_closed(&mut closing) => break 'connect,
                _ = out.closed() => break 'connect,
            }
        }
    }
    pool.close().await;
}

/// The lock a write transaction takes on its repository's row (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RepoLock {
    /// The write only adds blob links: it must not race the repository's deletion.
    Link,
    /// The write decides from what the repository holds, or removes from it: one such
    /// transaction per repository at a time, on every node.
    Change,
}

/// The repository's id, its row locked as `lock` says until the transaction ends.
async fn lock_repository(
    conn: &mut PgConnection,
    name: &RepositoryName,
    lock: RepoLock,
) -> Result<Option<i64>> {
    let sql = match lock {
        RepoLock::Link => "SELECT id FROM repositories WHERE name = $1 FOR KEY SHARE",
        RepoLock::Change => "SELECT id FROM repositories WHERE name = $1 FOR NO KEY UPDATE",
    };
    Ok(sqlx::query_scalar(sql)
        .bind(name.as_str())
        .fetch_optional(conn)
        .await?)
}

/// The id of `name`, locked as `lock` says, creating the repository if it does not exist.
async fn ensure_repository(
    conn: &mut PgConnection,
    name: &RepositoryName,
    lock: RepoLock,
) -> Result<i64> {
    // Two rounds always suffice unless the repository is deleted again in between.
    for _ in 0..8 {
        if let Some(id) = lock_repository(conn, name, lock).await? {
            return Ok(id);
        }
        let at = now();
        // A row this transaction inserts stays locked by it until it ends.
        let created: Option<i64> = sqlx::query_scalar(
            "INSERT INTO repositories (name, created_at, updated_at) VALUES ($1, $2, $2)
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name.as_str())
        .bind(at)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(id) = created {
            // Other nodes' cached catalog pages lack it.
            notify_changed(conn, name).await?;
            return Ok(id);
        }
        // Another node created it after the SELECT: the next SELECT sees it.
    }
    Err(MetaError::Backend(
        format!("repository {name} keeps being created and deleted").into(),
    ))
}

/// A push happened into the repository: its update time moves.
async fn touch_repository(conn: &mut PgConnection, repo_id: i64) -> Result<()> {
    sqlx::query("UPDATE repositories SET updated_at = $1 WHERE id = $2")
        .bind(now())
        .bind(repo_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Record the blob (once registry-wide) and link it into the repository `repo_id`, within
/// the quota of its namespace's project. With a `reservation` (an upload's, see
/// `GcStore::reserve_blob`) only the row it reserved is linked; without one the row is
/// created if missing.
pub(crate) async fn link_in(
    conn: &mut PgConnection,
    namespace: &str,
    repo_id: i64,
    blob: &Digest,
    size: u64,
    reservation: Option<i64>,
) -> Result<()> {
    let quota = usage::quota_hold(conn, namespace).await?;
    let digest = blob.to_string();
    if reservation.is_none() {
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at, epoch)
             VALUES ($1, $2, $3, floor(random() * 9.2e18)::bigint) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&digest)
        .bind(size as i64)
        .bind(now())
        .execute(&mut *conn)
        .await?;
    }
    // Hold the row against garbage collection until this commits (its condemnation waits,
    // then sees the link). Gone: a condemnation deleted it while the insert above waited.
    let epoch: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM blobs WHERE digest = $1 FOR KEY SHARE")
            .bind(&digest)
            .fetch_optional(&mut *conn)
            .await?;
    let held = match reservation {
        Some(reserved) => epoch == Some(reserved),
        None => epoch.is_some(),
    };
    // A tombstone: GC is deleting the bytes (a statement of its own, so it sees a
    // condemnation that committed while the statements above waited).
    let condemned: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM blob_deletions WHERE digest = $1")
            .bind(&digest)
            .fetch_optional(&mut *conn)
            .await?;
    if !held || condemned.is_some() {
        return Err(MetaError::BlobBeingDeleted(blob.clone()));
    }
    // A link made again is fresh again: GC's grace window counts from the last upload.
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = EXCLUDED.created_at",
    )
    .bind(repo_id)
    .bind(&digest)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    usage::enforce_quota(conn, quota.as_ref()).await
}

/// Point each tag at the manifest `digest` (stored by the transaction, which holds the
/// repository's [`RepoLock::Change`]).
async fn set_tags(conn: &mut PgConnection, repo_id: i64, tags: &[Tag], digest: &str) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    let at = now();
    // A tag keeps its id when it moves to another manifest (as Harbor's do); only new
    // tags draw an id, in the order given.
    let moved: Vec<String> = sqlx::query_scalar(
        "UPDATE tags SET manifest_digest = $3, updated_at = $4
         WHERE repository_id = $1 AND name = ANY($2) RETURNING name",
    )
    .bind(repo_id)
    .bind(&names)
    .bind(digest)
    .bind(at)
    .fetch_all(&mut *conn)
    .await?;
    let new: Vec<&str> = names
        .into_iter()
        .filter(|n| !moved.iter().any(|m| m == n))
        .collect();
    if !new.is_empty() {
        insert_tags(conn, repo_id, &new, digest).await?;
    }
    Ok(())
}

/// Add tags the repository does not have yet, with ids in the order given.
async fn insert_tags(
    conn: &mut PgConnection,
    repo_id: i64,
    names: &[&str],
    digest: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO tags (repository_id, name, manifest_digest, updated_at)
         SELECT $1, t.name, $3, $4 FROM unnest($2::text[]) WITH ORDINALITY AS t(name, position)
         ORDER BY t.position",
    )
    .bind(repo_id)
    .bind(names)
    .bind(digest)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl RepositoryStore for PgStore {
    async fn list_repositories(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn list_repositories_in(
        &self,
        projects: &[String],
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        crate::repositories_in_projects(projects, last, limit, |after, before, n| async move {
            Ok(sqlx::query_scalar(
                "SELECT name FROM repositories WHERE name > $1 AND name < $2
                 ORDER BY name LIMIT $3",
            )
            .bind(after)
            .bind(before)
            .bind(n as i64)
            .fetch_all(&self.pool)
            .await?)
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
        let done = sqlx::query(
            "UPDATE repositories SET description = $1, updated_at = $2 WHERE name = $3",
        )
        .bind(description)
        .bind(now())
        .bind(name.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_repository(&self, name: &RepositoryName) -> Result<bool> {
        // Links and manifests first, under the repository's lock and while its row is there
        // for the usage triggers to find its namespace; references and tags go with the
        // manifests (ON DELETE CASCADE).
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let Some(repo_id) = lock_repository(&mut tx, name, RepoLock::Change).await? else {
                return Ok(false);
            };
            for statement in [
                "DELETE FROM repository_blobs WHERE repository_id = $1",
                "DELETE FROM manifests WHERE repository_id = $1",
                "DELETE FROM repositories WHERE id = $1",
            ] {
                sqlx::query(statement)
                    .bind(repo_id)
                    .execute(&mut *tx)
                    .await?;
            }
            notify_changed(&mut tx, name).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    fn invalidations(&self) -> Option<mpsc::Receiver<Invalidation>> {
        let (out, feed) = mpsc::channel(1024);
        tokio::spawn(forward_invalidations(
            PgConnectOptions::clone(&self.connect),
            out,
            self.closing.subscribe(),
        ));
        Some(feed)
    }
}

#[async_trait]
impl BlobIndex for PgStore {
    async fn linked_blob_size(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs l
             JOIN repositories r ON r.id = l.repository_id
             JOIN blobs b ON b.digest = l.digest
             WHERE r.name = $1 AND l.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let repo_id = ensure_repository(&mut tx, repository, RepoLock::Link).await?;
            link_in(&mut tx, repository.namespace(), repo_id, digest, size, None).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn mount_blob(
        &self,
        from: &RepositoryName,
        to: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            // The source's link stays until this commits (an unlink there waits).
            let size: Option<i64> = sqlx::query_scalar(
                "SELECT b.size FROM repository_blobs l
                 JOIN repositories r ON r.id = l.repository_id
                 JOIN blobs b ON b.digest = l.digest
                 WHERE r.name = $1 AND l.digest = $2 FOR KEY SHARE OF l",
            )
            .bind(from.as_str())
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(size) = size else { return Ok(None) };
            let repo_id = ensure_repository(&mut tx, to, RepoLock::Link).await?;
            link_in(&mut tx, to.namespace(), repo_id, digest, size as u64, None).await?;
            tx.commit().await?;
            Ok(Some(size as u64))
        })
        .await
    }

    async fn repositories_linking(&self, digest: &Digest, limit: usize) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT r.name FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
             WHERE l.digest = $1 ORDER BY r.name LIMIT $2",
        )
        .bind(digest.to_string())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool> {
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let Some(repo_id) = lock_repository(&mut tx, repository, RepoLock::Change).await?
            else {
                return Ok(false);
            };
            let done = sqlx::query(
                "DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2",
            )
            .bind(repo_id)
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 {
                notify_changed(&mut tx, repository).await?;
            }
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }
}

fn upload_row(row: &PgRow) -> Result<Upload> {
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
}

#[async_trait]
impl UploadStore for PgStore {
    async fn create_upload(&self, upload: &Upload) -> Result<()> {
        sqlx::query(
            "INSERT INTO uploads (id, repository, \"offset\", hash_state, store_state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $6, $5, $5)",
        )
        .bind(&upload.id)
        .bind(upload.repository.as_str())
        .bind(upload.offset as i64)
        .bind(&upload.hash_state)
        .bind(upload.created_at)
        .bind(&upload.store_state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<Upload>> {
        let row = sqlx::query(
            "SELECT id, repository, \"offset\", hash_state, store_state, created_at FROM uploads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(upload_row).transpose()
    }

    async fn advance_upload(
        &self,
        id: &str,
        from_offset: u64,
        to_offset: u64,
        hash_state: &[u8],
        store_state: Option<&[u8]>,
    ) -> Result<bool> {
        // One statement: a second writer waits for the first's row lock, then PostgreSQL
        // re-checks its WHERE against the row the first wrote, where the offset has moved.
        let done = sqlx::query(
            "UPDATE uploads SET \"offset\" = $1, hash_state = $2, updated_at = $3, store_state = $6
             WHERE id = $4 AND \"offset\" = $5",
        )
        .bind(to_offset as i64)
        .bind(hash_state)
        .bind(now())
        .bind(id)
        .bind(from_offset as i64)
        .bind(store_state)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn uploads_idle_since(&self, cutoff: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM uploads WHERE updated_at < $1 ORDER BY updated_at, id",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn complete_upload(
        &self,
        id: &str,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
        reservation: i64,
    ) -> Result<()> {
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let repo_id = ensure_repository(&mut tx, repository, RepoLock::Link).await?;
            link_in(
                &mut tx,
                repository.namespace(),
                repo_id,
                digest,
                size,
                Some(reservation),
            )
            .await?;
            sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

impl PgStore {
    /// One try of [`ManifestStore::put_manifest`], as one transaction holding the
    /// repository's [`RepoLock::Change`].
    async fn put_manifest_once(
        &self,
        repository: &RepositoryName,
        manifest: &NewManifest,
        tags: &[Tag],
    ) -> Result<Digest> {
        let mut tx = self.pool.begin().await?;
        // Taken first, so that pushes into a project with a limit queue here, holding nothing.
        let quota = usage::quota_hold(&mut tx, repository.namespace()).await?;
        let repo_id = ensure_repository(&mut tx, repository, RepoLock::Change).await?;
        if !manifest.aliases.is_empty() {
            let aliases: Vec<String> = manifest.aliases.iter().map(Digest::to_string).collect();
            let stored: Option<String> = sqlx::query_scalar(
                "SELECT a.digest FROM unnest($2::text[]) WITH ORDINALITY AS a(digest, position)
                 WHERE EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = $1 AND m.digest = a.digest)
                 ORDER BY a.position LIMIT 1",
            )
            .bind(repo_id)
            .bind(&aliases)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(alias) = stored {
                // The same bytes, already stored and checked: only the tags are new.
                immutable::refuse_immutable_moves(
                    &mut tx,
                    repo_id,
                    &manifest.immutable_tags,
                    &alias,
                )
                .await?;
                set_tags(&mut tx, repo_id, tags, &alias).await?;
                touch_repository(&mut tx, repo_id).await?;
                notify_changed(&mut tx, repository).await?;
                tx.commit().await?;
                return Digest::from_str(&alias)
                    .map_err(|e| MetaError::Corrupt(format!("digest {alias:?}: {e}")));
            }
        }
        immutable::refuse_immutable_moves(
            &mut tx,
            repo_id,
            &manifest.immutable_tags,
            &manifest.digest.to_string(),
        )
        .await?;
        // The first reference missing, blobs first, in the order given (as SQLite reports).
        let mut wanted: Vec<String> = manifest.blobs.iter().map(Digest::to_string).collect();
        let mut wanted_is_manifest = vec![false; wanted.len()];
        if manifest.require_manifests {
            wanted.extend(manifest.manifests.iter().map(Digest::to_string));
            wanted_is_manifest.resize(wanted.len(), true);
        }
        if !wanted.is_empty() {
            let missing: Option<(String, bool)> = sqlx::query_as(
                "SELECT w.digest, w.is_manifest
                 FROM unnest($2::text[], $3::bool[]) WITH ORDINALITY AS w(digest, is_manifest, position)
                 WHERE CASE WHEN w.is_manifest
                   THEN NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = $1 AND m.digest = w.digest)
                   ELSE NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.repository_id = $1 AND l.digest = w.digest)
                 END
                 ORDER BY w.position LIMIT 1",
            )
            .bind(repo_id)
            .bind(&wanted)
            .bind(&wanted_is_manifest)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((digest, is_manifest)) = missing {
                return Err(MetaError::MissingReference {
                    digest: Digest::from_str(&digest)
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
        sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, content, size, artifact_type, config_media_type, subject, annotations, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (repository_id, digest) DO NOTHING",
        )
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
        let mut children: Vec<String> = manifest.blobs.iter().map(Digest::to_string).collect();
        let mut children_are_manifests = vec![false; children.len()];
        children.extend(manifest.manifests.iter().map(Digest::to_string));
        children_are_manifests.resize(children.len(), true);
        if !children.is_empty() {
            sqlx::query(
                "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_is_manifest)
                 SELECT $1, $2, c.digest, c.is_manifest FROM unnest($3::text[], $4::bool[]) AS c(digest, is_manifest)
                 ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(&digest)
            .bind(&children)
            .bind(&children_are_manifests)
            .execute(&mut *tx)
            .await?;
        }
        usage::enforce_quota(&mut tx, quota.as_ref()).await?;
        set_tags(&mut tx, repo_id, tags, &digest).await?;
        touch_repository(&mut tx, repo_id).await?;
        notify_changed(&mut tx, repository).await?;
        tx.commit().await?;
        Ok(manifest.digest.clone())
    }
}

#[async_trait]
impl ManifestStore for PgStore {
    async fn put_manifest(
        &self,
        repository: &RepositoryName,
        manifest: &NewManifest,
        tags: &[Tag],
    ) -> Result<Digest> {
        retrying(|| self.put_manifest_once(repository, manifest, tags)).await
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
                     WHERE r.name = $1 AND t.name = $2",
                )
                .bind(repository.as_str())
                .bind(tag.as_str())
                .fetch_optional(&self.pool)
                .await?
            }
            Reference::Digest(digest) => {
                sqlx::query(
                    "SELECT m.digest, m.media_type, m.content FROM manifests m
                     JOIN repositories r ON r.id = m.repository_id
                     WHERE r.name = $1 AND m.digest = $2",
                )
                .bind(repository.as_str())
                .bind(digest.to_string())
                .fetch_optional(&self.pool)
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
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let Some(repo_id) = lock_repository(&mut tx, repository, RepoLock::Change).await?
            else {
                return Ok(false);
            };
            // Tags and references go with it (ON DELETE CASCADE).
            let done =
                sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
                    .bind(repo_id)
                    .bind(digest.to_string())
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() > 0 {
                notify_changed(&mut tx, repository).await?;
            }
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn delete_tag(&self, repository: &RepositoryName, tag: &Tag) -> Result<bool> {
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let Some(repo_id) = lock_repository(&mut tx, repository, RepoLock::Change).await?
            else {
                return Ok(false);
            };
            let done = sqlx::query("DELETE FROM tags WHERE repository_id = $1 AND name = $2")
                .bind(repo_id)
                .bind(tag.as_str())
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() > 0 {
                notify_changed(&mut tx, repository).await?;
            }
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn list_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<String>>> {
        // One statement: the repository's existence and its tags from one snapshot.
        let rows: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT t.name FROM repositories r
             LEFT JOIN LATERAL (SELECT name FROM tags WHERE repository_id = r.id AND name > $2
                                ORDER BY name LIMIT $3) t ON true
             WHERE r.name = $1 ORDER BY t.name",
        )
        .bind(repository.as_str())
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(rows.into_iter().flatten().collect()))
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
             WHERE r.name = $1 AND m.subject = $2 AND ($3::text IS NULL OR m.artifact_type = $3)
             ORDER BY m.created_at, m.digest",
        )
        .bind(repository.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .fetch_all(&self.pool)
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
mod tests;
