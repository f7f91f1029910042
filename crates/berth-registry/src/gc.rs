//! Online garbage collection: never deletes bytes an acknowledged image or a push in flight needs, never lists the blob store (but in the orphan sweep).
//!
//! A run works from the metadata database alone, in short transactions:
//!
//! 1. Tombstones left by a run that crashed between deleting blob rows and their bytes are
//!    claimed once their claim has lapsed, and their bytes deleted.
//! 2. Each repository, in batches, under the lock a push takes (`GcStore::
//!    gc_sweep_repository`): optionally the untagged manifests older than the untagged
//!    grace window that nothing kept needs, then the links older than the blob grace
//!    window that no remaining manifest references.
//! 3. Blobs linked nowhere and older than the blob grace window, in batches: one
//!    transaction deletes their rows and writes tombstones (`gc_condemn_blobs`, made durable
//!    before anything else happens); then their bytes are deleted (batched on S3); then the
//!    tombstones are removed. While a digest has a tombstone, no upload may link it or
//!    commit its bytes ([`Registry::reserve_blob`]): an upload racing the sweep waits for
//!    the deletion to end, then writes its bytes again.
//! 4. Abandoned upload sessions (the upload purge's database half).
//!
//! A dry run takes the same steps with every transaction rolled back, and counts as freed
//! the blobs whose every link it would have removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::Digest;
use berth_meta::{GcRepository, RepositorySweep, Tombstone};
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::{Error, Registry, Result};

/// How long a run owns the tombstones it writes, by default. Another run takes over only
/// after this (the owner crashed); the owner deletes no bytes once half of it has passed.
const TOMBSTONE_CLAIM: Duration = Duration::from_secs(120);

/// How long an upload waits for GC to finish deleting the bytes of the digest it is
/// committing, before it is refused (retriably).
const RESERVE_PATIENCE: Duration = Duration::from_secs(30);

/// What a run does.
#[derive(Debug, Clone, Serialize)]
pub struct GcOptions {
    /// Delete untagged manifests that nothing kept needs.
    pub delete_untagged: bool,
    /// Report what a run would free, and free nothing.
    pub dry_run: bool,
    /// Untagged manifests younger than this are kept.
    pub untagged_grace: Duration,
    /// Links and blobs younger than this are kept: a push in flight has uploaded them and
    /// not yet pushed its manifest.
    pub blob_grace: Duration,
    /// Rows per transaction (and blobs per batched delete).
    pub batch: usize,
    /// Upload sessions idle this long are reclaimed with the run (`None`: not by GC).
    pub upload_max_idle: Option<Duration>,
    /// How long the run owns the tombstones it writes: a crashed run's are taken over by a
    /// later run after this, and until then pushes of those digests wait (or are refused).
    pub tombstone_claim: Duration,
    /// Crash tests only: wait this long after condemning each batch, before deleting its
    /// bytes, so that the process can be killed there.
    pub pause_before_bytes: Option<Duration>,
    /// Make way for clients: while they are being served, pause after each step.
    #[serde(skip)]
    pub yielding: Yielding,
}

/// How long a run pauses after a step while clients are being served, as a multiple of the
/// step's own time: the run then works at most a tenth of the time (and of a core) while
/// clients are served, and runs at full speed on an idle registry. With 3 (a quarter),
/// bench (j)'s (f) kept 84–93 % of its throughput during a run; the goal is 90 %.
const YIELD_FACTOR: u32 = 9;

/// When a run makes way for clients: `busy` says whether they are being served now.
#[derive(Clone, Default)]
pub struct Yielding {
    busy: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl std::fmt::Debug for Yielding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.busy.is_some() {
            "Yielding(when busy)"
        } else {
            "Yielding(never)"
        })
    }
}

impl Yielding {
    /// Pause while `busy()` says clients are being served.
    pub fn when(busy: impl Fn() -> bool + Send + Sync + 'static) -> Yielding {
        Yielding {
            busy: Some(Arc::new(busy)),
        }
    }

    /// After a step that began at `began`: pause if clients are being served.
    async fn after(&self, began: Instant) {
        if let Some(busy) = &self.busy
            && busy()
        {
            tokio::time::sleep(began.elapsed() * YIELD_FACTOR).await;
        }
    }
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            delete_untagged: false,
            dry_run: false,
            untagged_grace: Duration::from_secs(3600),
            blob_grace: Duration::from_secs(3600),
            batch: 1000,
            upload_max_idle: None,
            tombstone_claim: TOMBSTONE_CLAIM,
            pause_before_bytes: None,
            yielding: Yielding::default(),
        }
    }
}

/// What a run freed (or, dry, would free), and its log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub manifests_deleted: u64,
    pub links_removed: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    /// Blobs a crashed run had condemned, whose deletion this run finished.
    pub blobs_finished: u64,
    pub uploads_purged: u64,
    /// Time spent walking repositories (manifests and links).
    pub mark_ms: u64,
    /// Time spent condemning blobs and deleting their bytes.
    pub sweep_ms: u64,
    pub duration_ms: u64,
    /// One line per step, for `/system/gc/{id}/log` and `berth gc`.
    pub log: Vec<String>,
}

impl GcReport {
    fn note(&mut self, line: String) {
        tracing::info!(target: "berth::gc", "{line}");
        self.log.push(line);
    }
}

/// What the orphan sweep found and deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrphanReport {
    pub dry_run: bool,
    /// Blobs in the store.
    pub listed: u64,
    /// Bytes with no row, older than the age asked for, deleted (or, dry, found).
    pub orphans: u64,
    pub duration_ms: u64,
}

/// A point in a run where a test may act before the run goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcPoint {
    /// These blobs' rows are deleted and tombstoned; their bytes are not deleted yet.
    Condemned(Vec<Digest>),
}

/// Called at every [`GcPoint`]; the run waits for the future.
pub type GcHook = Arc<dyn Fn(GcPoint) -> BoxFuture<'static, ()> + Send + Sync>;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The time before which a row is older than `grace`. A zero grace takes everything up
/// to now (rows keep whole seconds, so this second's rows too).
fn cutoff(now: i64, grace: Duration) -> i64 {
    if grace.is_zero() {
        now + 1
    } else {
        now - seconds(grace)
    }
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What sweeping one repository removed (a dry run: would remove).
#[derive(Default)]
struct RepositoryOutcome {
    name: String,
    manifests: u64,
    links: u64,
    /// A dry run's links, which it leaves.
    unlinked: Vec<Digest>,
}

impl Registry {
    /// Before an upload commits a blob's bytes: make its row young (GC leaves it alone for
    /// the grace window), waiting while GC is deleting that digest's bytes, which must not
    /// happen after this upload's bytes are written.
    /// Returns the row's epoch, which the upload's link must find unchanged.
    pub async fn reserve_blob(&self, digest: &Digest, size: u64) -> Result<i64> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            if let Some(epoch) = self.meta.reserve_blob(digest, size).await? {
                return Ok(epoch);
            }
            if started.elapsed() > RESERVE_PATIENCE {
                return Err(Error::BlobBeingDeleted(digest.clone()));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// Link a blob whose bytes an upload has committed under `reservation`, with `link`. If
    /// GC deleted the reserved row meanwhile (its window was shorter than the upload), the
    /// bytes may be gone too: reserve again and, if the bytes are there (content-addressed:
    /// whoever stored them stored these), link under the new reservation. A few tries, then
    /// the upload is refused retriably.
    pub(crate) async fn link_committed<F, Fut>(
        &self,
        digest: &Digest,
        size: u64,
        reservation: i64,
        link: F,
    ) -> Result<()>
    where
        F: Fn(i64) -> Fut,
        Fut: std::future::Future<Output = berth_meta::Result<()>>,
    {
        let linked = self.link_reserved(digest, size, reservation, link).await;
        // The link may have created the repository (even if a later step failed).
        self.cache.repositories_changed();
        linked
    }

    async fn link_reserved<F, Fut>(
        &self,
        digest: &Digest,
        size: u64,
        reservation: i64,
        link: F,
    ) -> Result<()>
    where
        F: Fn(i64) -> Fut,
        Fut: std::future::Future<Output = berth_meta::Result<()>>,
    {
        let mut epoch = reservation;
        for _ in 0..3 {
            match link(epoch).await {
                Err(berth_meta::MetaError::BlobBeingDeleted(_)) => {}
                other => return Ok(other?),
            }
            epoch = self.reserve_blob(digest, size).await?;
            if self.blobs.stat(digest).await?.is_none() {
                break;
            }
        }
        Err(Error::BlobBeingDeleted(digest.clone()))
    }

    /// One garbage collection run (see the module docs).
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport> {
        self.collect_garbage_with(options, None).await
    }

    /// [`Registry::collect_garbage`], calling `hook` at each [`GcPoint`] (tests).
    pub async fn collect_garbage_with(
        &self,
        options: &GcOptions,
        hook: Option<GcHook>,
    ) -> Result<GcReport> {
        let started = Instant::now();
        let owner = format!("gc-{}", uuid::Uuid::new_v4());
        let batch = options.batch.max(1);
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        report.note(format!(
            "start: delete_untagged={} dry_run={} untagged_grace={}s blob_grace={}s",
            options.delete_untagged,
            options.dry_run,
            options.untagged_grace.as_secs(),
            options.blob_grace.as_secs()
        ));
        if !options.dry_run {
            self.finish_lapsed_tombstones(&owner, batch, options.tombstone_claim, &mut report)
                .await?;
        }

        let analyzed = Instant::now();
        let refreshed = self.meta.gc_refresh_statistics().await?;
        if !refreshed.is_empty() {
            report.note(format!(
                "planner statistics refreshed in {} ms: {}",
                millis(analyzed.elapsed()),
                refreshed.join(", ")
            ));
        }

        // Repositories: manifests and links.
        let now = unix_now();
        let untagged_before = options
            .delete_untagged
            .then(|| cutoff(now, options.untagged_grace));
        let links_before = cutoff(now, options.blob_grace);
        let sweep = RepositorySweep {
            untagged_before,
            links_before,
            limit: if options.dry_run { usize::MAX } else { batch },
            dry_run: options.dry_run,
        };
        // A dry run removes no link: what it would remove, per digest.
        let mut unlinked: HashMap<Digest, u64> = HashMap::new();
        let mut after = 0;
        loop {
            let repositories = self.meta.gc_repositories(after, 500).await?;
            let Some(last) = repositories.last() else {
                break;
            };
            after = last.id;
            // One repository at a time: sweeping several at once on PostgreSQL livelocked
            // with sixteen pushing clients (tests/gc.rs), and on SQLite they would only queue
            // on the one writer ahead of pushes.
            let mut swept = Vec::with_capacity(repositories.len());
            for repository in &repositories {
                swept.push(
                    self.sweep_repository(repository, &sweep, &options.yielding)
                        .await,
                );
            }
            for outcome in swept {
                let outcome = outcome?;
                if outcome.manifests > 0 || outcome.links > 0 {
                    report.note(format!(
                        "{}: {} manifests, {} links",
                        outcome.name, outcome.manifests, outcome.links
                    ));
                }
                report.manifests_deleted += outcome.manifests;
                report.links_removed += outcome.links;
                for digest in outcome.unlinked {
                    *unlinked.entry(digest).or_default() += 1;
                }
            }
        }
        report.mark_ms = millis(started.elapsed());

        // Blobs linked nowhere.
        let swept = Instant::now();
        if options.dry_run {
            self.count_unlinked_blobs(links_before, batch, &unlinked, &mut report)
                .await?;
        } else {
            self.delete_unlinked_blobs(links_before, &owner, options, hook.as_ref(), &mut report)
                .await?;
        }
        report.sweep_ms = millis(swept.elapsed());

        if let Some(max_idle) = options.upload_max_idle
            && !options.dry_run
        {
            // Sessions only: finding upload areas without a session lists the store, which
            // the hourly upload purge does.
            report.uploads_purged = self.purge_idle_sessions(max_idle).await? as u64;
        }
        report.duration_ms = millis(started.elapsed());
        report.note(format!(
            "{}: {} manifests, {} links, {} blobs ({} bytes){}, {} uploads; mark {} ms, sweep {} ms, total {} ms",
            if options.dry_run { "would free" } else { "freed" },
            report.manifests_deleted,
            report.links_removed,
            report.blobs_deleted,
            report.bytes_freed,
            if report.blobs_finished > 0 {
                format!(" (of which {} left by an interrupted run)", report.blobs_finished)
            } else {
                String::new()
            },
            report.uploads_purged,
            report.mark_ms,
            report.sweep_ms,
            report.duration_ms
        ));
        Ok(report)
    }

    /// Sweep one repository until a batch comes back short; what it removed (or, dry,
    /// would remove).
    async fn sweep_repository(
        &self,
        repository: &GcRepository,
        sweep: &RepositorySweep,
        yielding: &Yielding,
    ) -> Result<RepositoryOutcome> {
        let mut outcome = RepositoryOutcome {
            name: repository.name.to_string(),
            ..RepositoryOutcome::default()
        };
        loop {
            let began = Instant::now();
            let swept = self.meta.gc_sweep_repository(repository, sweep).await?;
            yielding.after(began).await;
            if !sweep.dry_run && (!swept.manifests.is_empty() || !swept.links.is_empty()) {
                self.cache.invalidate(&repository.name);
            }
            outcome.manifests += swept.manifests.len() as u64;
            outcome.links += swept.links.len() as u64;
            let full = swept.manifests.len() >= sweep.limit || swept.links.len() >= sweep.limit;
            if sweep.dry_run {
                outcome.unlinked.extend(swept.links);
                break;
            }
            if !full {
                break;
            }
        }
        Ok(outcome)
    }

    /// A dry run: blobs already linked nowhere, and those whose every link it would remove.
    async fn count_unlinked_blobs(
        &self,
        before: i64,
        batch: usize,
        unlinked: &HashMap<Digest, u64>,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut after: Option<Digest> = None;
        loop {
            let page = self
                .meta
                .gc_unlinked_blobs(before, after.as_ref(), batch)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            for blob in &page {
                report.blobs_deleted += 1;
                report.bytes_freed += blob.size;
            }
        }
        let candidates: Vec<Digest> = unlinked.keys().cloned().collect();
        for chunk in candidates.chunks(batch) {
            for (blob, links) in self.meta.gc_link_counts(chunk, before).await? {
                if links > 0 && unlinked.get(&blob.digest) == Some(&links) {
                    report.blobs_deleted += 1;
                    report.bytes_freed += blob.size;
                }
            }
        }
        Ok(())
    }

    async fn delete_unlinked_blobs(
        &self,
        before: i64,
        owner: &str,
        options: &GcOptions,
        hook: Option<&GcHook>,
        report: &mut GcReport,
    ) -> Result<()> {
        let batch = options.batch.max(1);
        let mut after: Option<Digest> = None;
        loop {
            let began = Instant::now();
            let candidates = self
                .meta
                .gc_unlinked_blobs(before, after.as_ref(), batch)
                .await?;
            let Some(last) = candidates.last() else {
                break;
            };
            after = Some(last.digest.clone());
            let digests: Vec<Digest> = candidates.into_iter().map(|t| t.digest).collect();
            let claimed_until = unix_now() + seconds(options.tombstone_claim);
            let condemned_at = Instant::now();
            let condemned = self
                .meta
                .gc_condemn_blobs(&digests, before, owner, claimed_until)
                .await?;
            if condemned.is_empty() {
                continue;
            }
            report.note(format!(
                "condemned {} blobs; deleting their bytes",
                condemned.len()
            ));
            if let Some(pause) = options.pause_before_bytes {
                tokio::time::sleep(pause).await;
            }
            if let Some(hook) = hook {
                hook(GcPoint::Condemned(
                    condemned.iter().map(|t| t.digest.clone()).collect(),
                ))
                .await;
            }
            self.delete_condemned(
                owner,
                &condemned,
                condemned_at,
                options.tombstone_claim,
                report,
            )
            .await?;
            options.yielding.after(began).await;
        }
        Ok(())
    }

    /// Delete the bytes of blobs this run holds tombstones for, then the tombstones.
    async fn delete_condemned(
        &self,
        owner: &str,
        condemned: &[Tombstone],
        condemned_at: Instant,
        claim: Duration,
        report: &mut GcReport,
    ) -> Result<()> {
        if condemned_at.elapsed() > claim / 2 {
            // Another run may take these over soon: leave the bytes to it.
            report.note(format!(
                "{} condemned blobs left to a later run: this one was too slow",
                condemned.len()
            ));
            return Ok(());
        }
        let digests: Vec<Digest> = condemned.iter().map(|t| t.digest.clone()).collect();
        self.blobs.delete_many(&digests).await?;
        self.meta.gc_forget_tombstones(owner, &digests).await?;
        report.blobs_deleted += condemned.len() as u64;
        report.bytes_freed += condemned.iter().map(|t| t.size).sum::<u64>();
        Ok(())
    }

    async fn finish_lapsed_tombstones(
        &self,
        owner: &str,
        batch: usize,
        claim: Duration,
        report: &mut GcReport,
    ) -> Result<()> {
        loop {
            let claimed_until = unix_now() + seconds(claim);
            let claimed_at = Instant::now();
            let lapsed = self
                .meta
                .gc_claim_tombstones(owner, claimed_until, batch)
                .await?;
            if lapsed.is_empty() {
                return Ok(());
            }
            report.note(format!(
                "finishing {} blob deletions an interrupted run began",
                lapsed.len()
            ));
            report.blobs_finished += lapsed.len() as u64;
            self.delete_condemned(owner, &lapsed, claimed_at, claim, report)
                .await?;
        }
    }

    /// The orphan sweep: bytes in the blob store with no row in the database (left by a
    /// crash between committing an upload's bytes and linking them, or by a lost database),
    /// written more than `min_age` ago. Lists the whole store: run it rarely.
    pub async fn sweep_orphans(&self, min_age: Duration, dry_run: bool) -> Result<OrphanReport> {
        let started = Instant::now();
        let owner = format!("orphans-{}", uuid::Uuid::new_v4());
        let listed = self.blobs.list_blobs().await?;
        let now = std::time::SystemTime::now();
        let old: Vec<Digest> = listed
            .iter()
            .filter(|(_, written)| now.duration_since(*written).is_ok_and(|age| age > min_age))
            .map(|(digest, _)| digest.clone())
            .collect();
        let mut report = OrphanReport {
            dry_run,
            listed: listed.len() as u64,
            ..OrphanReport::default()
        };
        for chunk in old.chunks(1000) {
            let claimed_until = unix_now() + seconds(TOMBSTONE_CLAIM);
            let condemned_at = Instant::now();
            let orphans = self
                .meta
                .gc_condemn_orphans(chunk, &owner, claimed_until)
                .await?;
            report.orphans += orphans.len() as u64;
            if dry_run {
                self.meta.gc_forget_tombstones(&owner, &orphans).await?;
                continue;
            }
            let tombstones: Vec<Tombstone> = orphans
                .into_iter()
                .map(|digest| Tombstone { digest, size: 0 })
                .collect();
            let mut ignored = GcReport::default();
            self.delete_condemned(
                &owner,
                &tombstones,
                condemned_at,
                TOMBSTONE_CLAIM,
                &mut ignored,
            )
            .await?;
        }
        report.duration_ms = millis(started.elapsed());
        Ok(report)
    }
}
