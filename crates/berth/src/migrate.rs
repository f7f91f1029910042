//! `berth migrate --from SOURCE.toml --to DESTINATION.toml`: copy a whole registry — its
//! metadata database and its blobs — to another database and blob store (SQLite and the
//! filesystem to PostgreSQL and S3, or back), keeping every id, then verify the copy.
//!
//! Order, so that an interrupted run can simply be run again:
//! 1. Refuse before writing anything: a source table or column the copy does not know, a
//!    destination database that is not fresh, or the same database on both sides.
//! 2. Open one read snapshot of the source database; everything below reads through it.
//! 3. Blobs: every row of the snapshot's `blobs` table, streamed from the source store into
//!    the destination store a few at a time, its digest checked in the same pass. A blob the
//!    destination already has with the right size is skipped (so a second run resumes).
//! 4. Metadata: every table in one destination transaction, so the destination database is
//!    either still empty or complete.
//! 5. Verify: per table, rows and a checksum of their contents on both sides; every blob
//!    present at the destination with its size (or, with `--verify-blobs full`, its digest).
//!
//! The source is only read. It should be stopped (or read-only) while this runs: the
//! metadata copied is the snapshot taken at step 2, so whatever is pushed after it is not
//! in the copy, and a blob deleted from the source store meanwhile fails step 3.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use berth_core::{Digest, DigestHasher};
use berth_meta::transfer::{self, DatabaseSum, TableAccess, TableSum};
use berth_storage::{BlobStore, StorageError};
use futures_util::{StreamExt, TryStreamExt};

use crate::Metadata;
use crate::config::{self, Config, RawConfig};

/// How many blobs are copied (or re-hashed) at once.
const BLOB_CONCURRENCY: usize = 4;

/// How often the blob copy reports its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The source registry's configuration file (its `[database]`, `[storage]` and
    /// `data_dir`; environment variables and flags are not read).
    #[arg(long, value_name = "CONFIG.toml")]
    from: PathBuf,
    /// The destination's configuration file. Its database must be new (or empty); its blob
    /// store may already hold some of the blobs (a previous, interrupted run).
    #[arg(long, value_name = "CONFIG.toml")]
    to: PathBuf,
    /// Copy nothing; compare the two registries as a finished migrate would.
    #[arg(long)]
    verify_only: bool,
    /// Copy the metadata only: the blobs are already in the destination store (the same
    /// bucket or directory, or copied by other means). They are still verified.
    #[arg(long)]
    skip_blobs: bool,
    /// How the destination's blobs are verified: `size` (present with the right size),
    /// `full` (read back and hashed), or `none`.
    #[arg(long, value_enum, default_value_t = BlobCheck::Size)]
    verify_blobs: BlobCheck,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BlobCheck {
    None,
    Size,
    Full,
}

/// One side of the migration: its stores, open.
pub struct Side {
    pub meta: Metadata,
    pub blobs: Arc<dyn BlobStore>,
    /// What to call it in the report (no password).
    pub described: String,
}

impl Side {
    async fn open(config: &Config) -> Result<Side, String> {
        Ok(Side {
            meta: crate::open_metadata(config).await?,
            blobs: crate::open_blobs(config)?,
            described: describe(config),
        })
    }

    fn tables(&self) -> &dyn TableAccess {
        match &self.meta {
            Metadata::Sqlite(store) => store,
            Metadata::Postgres(store) => store,
        }
    }
}

fn describe(config: &Config) -> String {
    let database = match &config.database {
        config::Database::Sqlite(path) => format!("sqlite {}", path.display()),
        config::Database::Postgres(options) => format!(
            "postgres {}",
            berth_meta::postgres::redacted_url(&options.url)
        ),
    };
    let storage = match &config.storage {
        config::StorageSetting::Filesystem => {
            format!("filesystem {}", config.data_dir.join("blobs").display())
        }
        config::StorageSetting::S3(s3) => format!(
            "s3 {}/{} at {}",
            s3.bucket,
            s3.prefix,
            s3.endpoint.as_deref().unwrap_or("AWS")
        ),
    };
    format!("{database} + {storage}")
}

/// What to do, apart from where.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub verify_only: bool,
    pub skip_blobs: bool,
    pub verify_blobs: BlobCheck,
}

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub tables: Vec<(TableSum, Option<TableSum>)>,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    pub blobs_present: u64,
    pub uploads_skipped: u64,
    /// Every difference or failure; the run failed if there is any.
    pub problems: Vec<String>,
    pub seconds: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<22} {:>10} {:>10}  checksum",
            "table", "source", "copy"
        )?;
        for (source, copy) in &self.tables {
            let (rows, same) = match copy {
                Some(copy) => (
                    copy.rows.to_string(),
                    if copy == source { "same" } else { "DIFFERENT" },
                ),
                None => ("-".into(), "not compared"),
            };
            writeln!(
                f,
                "{:<22} {:>10} {:>10}  {same} {}",
                source.table,
                source.rows,
                rows,
                &source.checksum_hex()[..16]
            )?;
        }
        writeln!(
            f,
            "blobs: {} ({}); {} copied ({}), {} already in the destination",
            self.blobs,
            bytes(self.blob_bytes),
            self.blobs_copied,
            bytes(self.bytes_copied),
            self.blobs_present
        )?;
        writeln!(
            f,
            "upload sessions not copied: {} (in-flight uploads; their clients start them again)",
            self.uploads_skipped
        )?;
        writeln!(f, "time: {:.1} s", self.seconds)?;
        if self.problems.is_empty() {
            writeln!(f, "result: the destination holds the same registry")
        } else {
            for problem in &self.problems {
                writeln!(f, "problem: {problem}")?;
            }
            writeln!(f, "result: {} problem(s)", self.problems.len())
        }
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A configuration file alone: the environment and flags would apply to both sides.
fn load(path: &std::path::Path) -> Result<Config, String> {
    let (raw, warnings) = RawConfig::from_file(path).map_err(|e| e.to_string())?;
    for warning in warnings {
        eprintln!("berth: {}: {warning}", path.display());
    }
    Config::resolve(&[("config file", raw)]).map_err(|e| format!("{}: {e}", path.display()))
}

pub async fn command(args: MigrateArgs) -> Result<(), String> {
    let (from, to) = (load(&args.from)?, load(&args.to)?);
    if same_database(&from.database, &to.database) {
        return Err(format!(
            "{} and {} name the same metadata database: migrate copies into another one",
            args.from.display(),
            args.to.display()
        ));
    }
    // Opening creates a missing SQLite database: a wrong path would migrate nothing, "successfully".
    if let config::Database::Sqlite(path) = &from.database
        && !path.exists()
    {
        return Err(format!(
            "the source database {} does not exist (is {} the registry's configuration, with its data_dir?)",
            path.display(),
            args.from.display()
        ));
    }
    let source = Side::open(&from).await?;
    let destination = Side::open(&to).await?;
    let options = Options {
        verify_only: args.verify_only,
        skip_blobs: args.skip_blobs,
        verify_blobs: args.verify_blobs,
    };
    eprintln!(
        "berth migrate: {}\n           to: {}",
        source.described, destination.described
    );
    let result = migrate(&source, &destination, options).await;
    source.meta.close().await;
    destination.meta.close().await;
    let report = result?;
    print!("{report}");
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the destination does not match the source ({} problem(s) above)",
            report.problems.len()
        ))
    }
}

fn same_database(a: &config::Database, b: &config::Database) -> bool {
    match (a, b) {
        (config::Database::Sqlite(a), config::Database::Sqlite(b)) => {
            let resolve = |p: &PathBuf| p.canonicalize().unwrap_or_else(|_| p.clone());
            resolve(a) == resolve(b)
        }
        (config::Database::Postgres(a), config::Database::Postgres(b)) => a.url == b.url,
        _ => false,
    }
}

/// Copy (unless `verify_only`) and verify. An error is a refusal or a failure before the
/// verification; differences found by the verification are in the report's `problems`.
pub async fn migrate(
    source: &Side,
    destination: &Side,
    options: Options,
) -> Result<Report, String> {
    let started = Instant::now();
    let (from, to) = (source.tables(), destination.tables());
    transfer::check_schema(from)
        .await
        .map_err(|e| e.to_string())?;
    if !options.verify_only {
        transfer::check_destination(from, to)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut snapshot = from.reader().await.map_err(|e| e.to_string())?;
    let blobs = transfer::blob_rows(&mut *snapshot)
        .await
        .map_err(|e| e.to_string())?;
    let mut report = Report {
        blobs: blobs.len() as u64,
        blob_bytes: blobs.iter().map(|(_, size)| size).sum(),
        ..Default::default()
    };
    let blobs: Vec<(Digest, u64)> = blobs
        .into_iter()
        .map(|(digest, size)| {
            digest
                .parse()
                .map(|d| (d, size))
                .map_err(|e| format!("the source's blobs table holds {digest:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;

    let source_sum: DatabaseSum = if options.verify_only {
        transfer::summarize(&mut *snapshot)
            .await
            .map_err(|e| e.to_string())?
    } else {
        if !options.skip_blobs {
            copy_blobs(source, destination, &blobs, &mut report).await?;
        }
        eprintln!("copying the metadata");
        transfer::copy(&mut *snapshot, to, &mut |table| {
            eprintln!("  {:<22} {:>10} rows", table.table, table.rows);
        })
        .await
        .map_err(|e| {
            format!("copying the metadata failed (the destination database is left as it was): {e}")
        })?
    };
    drop(snapshot);
    report.uploads_skipped = source_sum.uploads;

    eprintln!("verifying");
    let mut reader = to.reader().await.map_err(|e| e.to_string())?;
    let destination_sum = transfer::summarize(&mut *reader)
        .await
        .map_err(|e| e.to_string())?;
    drop(reader);
    report.problems = transfer::differences(&source_sum, &destination_sum);
    report.tables = source_sum
        .tables
        .iter()
        .cloned()
        .zip(destination_sum.tables.iter().cloned().map(Some))
        .collect();
    report
        .problems
        .extend(verify_blobs(&*destination.blobs, &blobs, options.verify_blobs).await);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Stream every blob the destination lacks; stop (before any metadata is written) if one
/// cannot be copied.
async fn copy_blobs(
    source: &Side,
    destination: &Side,
    blobs: &[(Digest, u64)],
    report: &mut Report,
) -> Result<(), String> {
    eprintln!(
        "copying {} blobs ({})",
        blobs.len(),
        bytes(blobs.iter().map(|(_, s)| s).sum())
    );
    let (from, to) = (&*source.blobs, &*destination.blobs);
    let mut outcomes = futures_util::stream::iter(blobs.iter())
        .enumerate()
        .map(|(n, (digest, size))| async move {
            copy_blob(from, to, digest, *size, n)
                .await
                .map_err(|e| format!("blob {digest}: {e}"))
        })
        .buffer_unordered(BLOB_CONCURRENCY);
    let mut failures = Vec::new();
    let (mut done, mut shown) = (0usize, Instant::now());
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Ok(Some(copied)) => {
                report.blobs_copied += 1;
                report.bytes_copied += copied;
            }
            Ok(None) => report.blobs_present += 1,
            Err(e) => failures.push(e),
        }
        done += 1;
        // A large registry takes hours: say how far it is, every few seconds.
        if shown.elapsed() >= PROGRESS_EVERY {
            shown = Instant::now();
            eprintln!(
                "  {done}/{} blobs: {} copied ({}), {} already there, {} failed",
                blobs.len(),
                report.blobs_copied,
                bytes(report.bytes_copied),
                report.blobs_present,
                failures.len()
            );
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} blob(s) could not be copied, so no metadata was copied (run again once fixed; copied blobs are kept):\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}

/// Copy one blob unless the destination has it with this size; the bytes copied, or
/// `None` if it was there already.
async fn copy_blob(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    digest: &Digest,
    size: u64,
    n: usize,
) -> Result<Option<u64>, String> {
    if to.stat(digest).await.map_err(|e| e.to_string())? == Some(size) {
        return Ok(None);
    }
    let body = match from.open(digest, 0, size).await {
        Ok(body) => body,
        Err(StorageError::BlobMissing(_)) => {
            return Err("listed in the source's database but missing from its storage".into());
        }
        Err(e) => return Err(format!("reading the source: {e}")),
    };
    // An area no session owns: the registry's upload purge removes it if this run dies.
    let area = format!("migrate-{}-{n}", std::process::id());
    to.create_upload(&area).await.map_err(|e| e.to_string())?;
    let mut hasher = DigestHasher::new(digest.algorithm());
    let appended = to
        .append(&area, 0, None, body, &mut |chunk| hasher.update(chunk))
        .await;
    let failure = match appended {
        Err(ref e) => Some(format!("writing the destination: {e}")),
        Ok(ref a) if a.len != size => Some(format!("{} bytes read, {size} expected", a.len)),
        Ok(_) => {
            let actual = hasher.finish();
            (actual != *digest).then(|| format!("the source's bytes hash to {actual}"))
        }
    };
    match (failure, appended) {
        (None, Ok(appended)) => {
            to.commit(&area, appended.state.as_deref(), digest)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Some(size))
        }
        (failure, _) => {
            let _ = to.delete_upload(&area).await;
            Err(failure.unwrap_or_default())
        }
    }
}

/// Every blob present at the destination with its size, or re-hashed: the problems found.
async fn verify_blobs(
    to: &dyn BlobStore,
    blobs: &[(Digest, u64)],
    check: BlobCheck,
) -> Vec<String> {
    if check == BlobCheck::None {
        return Vec::new();
    }
    let found: Vec<Option<String>> = futures_util::stream::iter(blobs.iter())
        .map(|(digest, size)| async move {
            let problem = match to.stat(digest).await {
                Ok(Some(actual)) if actual == *size => {
                    if check == BlobCheck::Full {
                        rehash(to, digest, *size).await.err()
                    } else {
                        None
                    }
                }
                Ok(Some(actual)) => Some(format!("{actual} bytes, {size} expected")),
                Ok(None) => Some("missing".into()),
                Err(e) => Some(e.to_string()),
            };
            problem.map(|p| format!("blob {digest} at the destination: {p}"))
        })
        .buffer_unordered(BLOB_CONCURRENCY)
        .collect()
        .await;
    found.into_iter().flatten().collect()
}

async fn rehash(to: &dyn BlobStore, digest: &Digest, size: u64) -> Result<(), String> {
    let mut body = to.open(digest, 0, size).await.map_err(|e| e.to_string())?;
    let mut hasher = DigestHasher::new(digest.algorithm());
    while let Some(chunk) = body.try_next().await.map_err(|e| e.to_string())? {
        hasher.update(&chunk);
    }
    let actual = hasher.finish();
    if actual == *digest {
        Ok(())
    } else {
        Err(format!("its bytes hash to {actual}"))
    }
}

#[cfg(test)]
mod tests {
    use berth_core::Algorithm;
    use berth_meta::transfer::sample;
    use berth_meta::{MetaStore, PgOptions, PgStore, SqliteStore};
    use berth_storage::s3::testing::{S3Server, S3ServerKind};
    use berth_storage::{FsBlobStore, S3BlobStore};

    use super::*;

    const CHECKED: Options = Options {
        verify_only: false,
        skip_blobs: false,
        verify_blobs: BlobCheck::Full,
    };

    async fn sqlite_side(dir: &std::path::Path) -> Side {
        std::fs::create_dir_all(dir).expect("mkdir");
        Side {
            meta: Metadata::Sqlite(
                SqliteStore::open(&dir.join("metadata.db"))
                    .await
                    .expect("sqlite"),
            ),
            blobs: Arc::new(FsBlobStore::open(dir).expect("fs")),
            described: format!("sqlite+fs {}", dir.display()),
        }
    }

    async fn store_blob(blobs: &dyn BlobStore, digest: &Digest, bytes: Vec<u8>) {
        let area = format!("test-{}", digest.hex());
        blobs.create_upload(&area).await.expect("area");
        let body = futures_util::stream::iter([Ok(bytes::Bytes::from(bytes))]).boxed();
        let appended = blobs
            .append(&area, 0, None, body, &mut |_| {})
            .await
            .expect("append");
        blobs
            .commit(&area, appended.state.as_deref(), digest)
            .await
            .expect("commit");
    }

    /// A registry with a row in every table, its blobs stored, one of them larger than an
    /// S3 multipart part.
    async fn filled_sqlite(dir: &std::path::Path) -> Side {
        let side = sqlite_side(dir).await;
        let store = side.meta.store();
        let mut blobs = sample::fill(&*store).await;
        let large: Vec<u8> = (0..12 << 20).map(|i: u32| (i % 251) as u8).collect();
        let digest = Digest::of(Algorithm::Sha256, &large);
        store
            .link_blob(
                &"team/app".parse().expect("name"),
                &digest,
                large.len() as u64,
            )
            .await
            .expect("link");
        blobs.push((digest, large));
        for (digest, bytes) in blobs {
            store_blob(&*side.blobs, &digest, bytes).await;
        }
        side
    }

    fn table(report: &Report, name: &str) -> u64 {
        report
            .tables
            .iter()
            .find(|(t, _)| t.table == name)
            .map_or(0, |(t, _)| t.rows)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_and_files_to_postgres_and_s3_and_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = filled_sqlite(&dir.path().join("source")).await;
        let db = berth_meta::postgres::testing::database().await;
        let s3 = S3Server::start(S3ServerKind::S3sFs);
        let cluster = Side {
            meta: Metadata::Postgres(
                PgStore::connect(&PgOptions::new(db.url.clone()))
                    .await
                    .expect("postgres"),
            ),
            blobs: Arc::new(S3BlobStore::new(s3.settings("berth")).expect("s3")),
            described: "postgres+s3".into(),
        };

        let there = migrate(&source, &cluster, CHECKED).await.expect("migrate");
        assert_eq!(there.problems, Vec::<String>::new(), "{there}");
        assert_eq!(
            (there.blobs, there.blobs_copied, there.blobs_present),
            (5, 5, 0)
        );
        assert_eq!(
            there.uploads_skipped, 1,
            "the upload in flight is not copied"
        );
        assert!(table(&there, "manifests") >= 5, "{there}");
        let large = Digest::of(
            Algorithm::Sha256,
            &(0..12 << 20)
                .map(|i: u32| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        assert_eq!(
            cluster.blobs.stat(&large).await.expect("stat"),
            Some(12 << 20)
        );

        let again = migrate(&source, &cluster, CHECKED)
            .await
            .expect_err("the destination is in use now");
        assert!(again.contains("not empty"), "{again}");
        let verified = migrate(
            &source,
            &cluster,
            Options {
                verify_only: true,
                ..CHECKED
            },
        )
        .await
        .expect("verify");
        assert_eq!(verified.problems, Vec::<String>::new(), "{verified}");

        // Back to SQLite and files, into a store that already has one blob (an earlier,
        // interrupted run): that one is not copied again.
        let back_dir = dir.path().join("back");
        let back = sqlite_side(&back_dir).await;
        let first = sample_blob("config one");
        store_blob(&*back.blobs, &first.0, first.1).await;
        let home = migrate(&cluster, &back, CHECKED)
            .await
            .expect("migrate back");
        assert_eq!(home.problems, Vec::<String>::new(), "{home}");
        assert_eq!((home.blobs_copied, home.blobs_present), (4, 1));
        assert_eq!(
            shown(&*source.meta.store()).await,
            shown(&*back.meta.store()).await
        );

        // A blob lost at the destination is found by the verification.
        back.blobs.delete(&large).await.expect("delete");
        let broken = migrate(
            &cluster,
            &back,
            Options {
                verify_only: true,
                ..CHECKED
            },
        )
        .await
        .expect("verify");
        assert_eq!(broken.problems.len(), 1, "{broken}");
        assert!(broken.problems[0].contains("missing"), "{broken}");
        cluster.meta.close().await;
    }

    #[tokio::test]
    async fn a_blob_missing_from_the_source_stops_before_the_metadata() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = filled_sqlite(&dir.path().join("source")).await;
        let lost = sample_blob("layer two");
        source.blobs.delete(&lost.0).await.expect("delete");
        let destination = sqlite_side(&dir.path().join("destination")).await;
        let err = migrate(&source, &destination, CHECKED)
            .await
            .expect_err("a blob is missing");
        assert!(err.contains(&lost.0.to_string()), "{err}");
        assert!(err.contains("no metadata was copied"), "{err}");
        let tables = destination.tables();
        transfer::check_destination(source.tables(), tables)
            .await
            .expect("the destination database is still empty");
    }

    fn sample_blob(content: &str) -> (Digest, Vec<u8>) {
        let bytes = content.as_bytes().to_vec();
        (Digest::of(Algorithm::Sha256, &bytes), bytes)
    }

    /// Repositories, with their ids, as the management API lists them.
    async fn shown(store: &dyn MetaStore) -> String {
        let page = store
            .repository_page(&berth_meta::RepositoryQuery {
                projects: None,
                name: None,
                order: berth_core::mgmt::Order {
                    key: berth_core::mgmt::RepositoryKey::Id,
                    descending: false,
                },
                offset: 0,
                limit: 100,
            })
            .await
            .expect("repositories");
        format!("{:?}", page.items)
    }
}
