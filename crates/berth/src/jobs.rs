//! The jobs this binary runs through `berth-jobs`, their schedules, and `berth jobs` (the
//! operator's view of their history).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_jobs::{JobError, JobHandler, Runner};
use berth_registry::{GcOptions, Registry};
use serde_json::{Value, json};

use crate::config::GcSetting;

/// Sessions idle this long are abandoned (registry:2's default purge age).
const UPLOAD_MAX_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Upload areas without a session are debris after this long.
const ORPHAN_AREA_MAX_IDLE: Duration = Duration::from_secs(3600);
/// When abandoned uploads are reclaimed: hourly, as before the job system.
const PURGE_UPLOADS_SCHEDULE: &str = "0 * * * *";

/// Reclaim abandoned upload sessions and upload areas no session owns.
pub struct PurgeUploads {
    pub registry: Arc<Registry>,
}

#[async_trait]
impl JobHandler for PurgeUploads {
    fn kind(&self) -> &'static str {
        "purge_uploads"
    }

    async fn run(&self, _params: &Value) -> Result<Value, JobError> {
        let (sessions, areas) = self
            .registry
            .purge_uploads(UPLOAD_MAX_IDLE, ORPHAN_AREA_MAX_IDLE)
            .await
            .map_err(|e| JobError::transient(e.to_string()))?;
        Ok(json!({"sessions": sessions, "areas": areas}))
    }
}

/// The job kind of a garbage collection run (Harbor's `/system/gc` lists these).
pub const GC_JOB: &str = "gc";

/// Garbage collection (`berth_registry::gc`): params are Harbor's (`delete_untagged`,
/// `dry_run`; `workers` is accepted and ignored), the result is the run's report with its log.
pub struct CollectGarbage {
    pub registry: Arc<Registry>,
    pub settings: GcSetting,
    tombstone_claim: Duration,
    pause_before_bytes: Option<Duration>,
}

/// Crash tests only (tests/e2e/t-gc.sh): milliseconds a run waits between condemning
/// blobs and deleting their bytes, and seconds it owns its tombstones.
const TEST_PAUSE_ENV: &str = "BERTH_GC_TEST_PAUSE_MS";
const TEST_CLAIM_ENV: &str = "BERTH_GC_TEST_CLAIM_SECS";

impl CollectGarbage {
    pub fn new(registry: Arc<Registry>, settings: GcSetting) -> CollectGarbage {
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        CollectGarbage {
            registry,
            settings,
            tombstone_claim: env(TEST_CLAIM_ENV)
                .map_or(GcOptions::default().tombstone_claim, Duration::from_secs),
            pause_before_bytes: env(TEST_PAUSE_ENV).map(Duration::from_millis),
        }
    }
}

impl CollectGarbage {
    pub fn options(&self, params: &Value) -> GcOptions {
        let flag = |name: &str| params.get(name).and_then(Value::as_bool).unwrap_or(false);
        GcOptions {
            delete_untagged: flag("delete_untagged"),
            dry_run: flag("dry_run"),
            untagged_grace: self.settings.untagged_grace,
            blob_grace: self.settings.blob_grace,
            upload_max_idle: Some(UPLOAD_MAX_IDLE),
            tombstone_claim: self.tombstone_claim,
            pause_before_bytes: self.pause_before_bytes,
            // A scheduled or API run makes way for the registry's clients.
            yielding: berth_registry::Yielding::when(|| {
                berth_metrics::HTTP.registry_in_flight() > 0
            }),
            ..GcOptions::default()
        }
    }
}

#[async_trait]
impl JobHandler for CollectGarbage {
    fn kind(&self) -> &'static str {
        GC_JOB
    }

    async fn run(&self, params: &Value) -> Result<Value, JobError> {
        let began = std::time::Instant::now();
        let outcome = self.registry.collect_garbage(&self.options(params)).await;
        let gc = &berth_metrics::GC;
        gc.runs.inc();
        gc.duration.observe(began.elapsed());
        let report = outcome.map_err(|e| {
            gc.failures.inc();
            JobError::transient(e.to_string())
        })?;
        if !report.dry_run {
            gc.bytes_freed.add(report.bytes_freed);
            gc.blobs_deleted
                .add(report.blobs_deleted + report.blobs_finished);
        }
        serde_json::to_value(&report).map_err(|e| JobError::permanent(e.to_string()))
    }
}

/// How often the retention and replication schedulers look for policies whose schedule
/// came due.
const RETENTION_SCHEDULER_SCHEDULE: &str = "* * * * *";
/// A policy's run that came due longer ago than this (the nodes were down) is not made up.
const RETENTION_CATCH_UP_SECS: i64 = 120;

/// Queue a `retention` job for each policy whose cron (`trigger.settings.cron`) came due
/// since the last look. A job is keyed by its policy and due time, so of several nodes
/// looking at once, one queues it, once.
pub struct RetentionScheduler {
    pub registry: Arc<Registry>,
    pub jobs: Arc<dyn berth_meta::JobStore>,
}

#[async_trait]
impl JobHandler for RetentionScheduler {
    fn kind(&self) -> &'static str {
        "retention_schedule"
    }

    async fn run(&self, _params: &Value) -> Result<Value, JobError> {
        let policies = self
            .registry
            .retention_policies()
            .await
            .map_err(|e| JobError::transient(e.to_string()))?;
        let now = berth_audit::now_ms() / 1000;
        let mut queued = Vec::new();
        for policy in policies {
            let Some(cron) = policy.policy.cron() else {
                continue;
            };
            let Ok(cron) = cron.parse::<berth_core::cron::Cron>() else {
                tracing::warn!(
                    policy = policy.id,
                    cron,
                    "retention policy has an invalid schedule"
                );
                continue;
            };
            let Some(due) = latest_due(&cron, now) else {
                continue;
            };
            let job = berth_meta::NewJob {
                kind: "retention".into(),
                key: format!("{}@{due}", policy.id),
                params: json!({"policy_id": policy.id, "dry_run": false}),
                run_after_ms: due * 1000,
            };
            if let Some(id) = self
                .jobs
                .enqueue_job(&job)
                .await
                .map_err(|e| JobError::transient(e.to_string()))?
            {
                queued.push(id);
            }
        }
        Ok(json!({"queued": queued}))
    }
}

/// Run one retention policy (`{"policy_id", "dry_run"}`) and record the run, in the
/// policy's history and in the audit log (the run, and each artifact it removed, by
/// [`RETENTION_ACTOR`]).
pub struct RetentionRun {
    pub registry: Arc<Registry>,
    pub audit: berth_audit::Audit,
}

/// The name the audit log gives scheduled retention runs.
pub const RETENTION_ACTOR: &str = "retention";

#[async_trait]
impl JobHandler for RetentionRun {
    fn kind(&self) -> &'static str {
        "retention"
    }

    async fn run(&self, params: &Value) -> Result<Value, JobError> {
        let id = params["policy_id"]
            .as_i64()
            .ok_or_else(|| JobError::permanent("policy_id is missing"))?;
        let dry_run = params["dry_run"].as_bool().unwrap_or(false);
        match self
            .registry
            .execute_retention(id, dry_run, "SCHEDULE")
            .await
        {
            Ok(run) => {
                use berth_audit::{AuditEvent, Client, Operation, ResourceType};
                let event = |operation, resource_type, resource: String| {
                    AuditEvent::new(
                        RETENTION_ACTOR,
                        Client::Unknown,
                        operation,
                        resource_type,
                        resource,
                    )
                };
                for removed in &run.removed {
                    let artifact = format!("{}@{}", removed.repository, removed.digest);
                    self.audit
                        .record(event(Operation::Delete, ResourceType::Artifact, artifact));
                }
                let execution = format!("retention/{id}/execution/{}", run.run_id);
                self.audit
                    .record(event(Operation::Create, ResourceType::Retention, execution));
                Ok(json!({"policy_id": id, "run": run.run_id}))
            }
            Err(e @ berth_registry::Error::PolicyUnknown(_)) => {
                Err(JobError::permanent(e.to_string()))
            }
            Err(e) => Err(JobError::transient(e.to_string())),
        }
    }
}

/// Run a replication execution (`{"execution_id"}`), or a scheduled run of a policy
/// (`{"policy_id", "due"}`, queued by [`ReplicationScheduler`]): its execution is found or
/// made, then run. Resumable: a run taken over continues at its first unfinished task.
pub struct ReplicationRun {
    pub replicator: Arc<berth_replication::Replicator>,
}

#[async_trait]
impl JobHandler for ReplicationRun {
    fn kind(&self) -> &'static str {
        berth_replication::REPLICATION_JOB
    }

    async fn run(&self, params: &Value) -> Result<Value, JobError> {
        let step = |e: berth_replication::sides::StepError| JobError {
            message: e.message,
            retry: e.transient,
        };
        let execution = match (
            params["execution_id"].as_i64(),
            params["policy_id"].as_i64(),
        ) {
            (Some(id), _) => id,
            (None, Some(policy)) => {
                let due = params["due"].as_i64().unwrap_or(0);
                match self
                    .replicator
                    .scheduled_execution(policy, due)
                    .await
                    .map_err(step)?
                {
                    Some(id) => id,
                    None => return Ok(json!({"policy_id": policy, "skipped": true})),
                }
            }
            _ => return Err(JobError::permanent("execution_id or policy_id is missing")),
        };
        self.replicator.run(execution).await.map_err(step)
    }
}

/// Queue a `replication` job for each enabled policy whose cron came due since the last
/// look, keyed by policy and due time (several nodes looking at once queue it once).
pub struct ReplicationScheduler {
    pub store: Arc<dyn berth_meta::MetaStore>,
}

#[async_trait]
impl JobHandler for ReplicationScheduler {
    fn kind(&self) -> &'static str {
        "replication_schedule"
    }

    async fn run(&self, _params: &Value) -> Result<Value, JobError> {
        let policies = self
            .store
            .replication_policies()
            .await
            .map_err(|e| JobError::transient(e.to_string()))?;
        let now = berth_audit::now_ms() / 1000;
        let mut queued = Vec::new();
        for policy in policies.iter().filter(|p| p.fields.enabled) {
            let Ok(definition) = berth_replication::Replicator::definition(policy) else {
                continue;
            };
            if definition.trigger.kind != "scheduled" {
                continue;
            }
            let cron = &definition.trigger.trigger_settings.cron;
            let Ok(cron) = cron.parse::<berth_core::cron::Cron>() else {
                tracing::warn!(policy = policy.id, %cron, "replication policy has an invalid schedule");
                continue;
            };
            let Some(due) = latest_due(&cron, now) else {
                continue;
            };
            let job = berth_meta::NewJob {
                kind: berth_replication::REPLICATION_JOB.into(),
                key: format!("policy-{}@{due}", policy.id),
                params: json!({"policy_id": policy.id, "due": due}),
                run_after_ms: due * 1000,
            };
            if let Some(id) = self
                .store
                .enqueue_job(&job)
                .await
                .map_err(|e| JobError::transient(e.to_string()))?
            {
                queued.push(id);
            }
        }
        Ok(json!({"queued": queued}))
    }
}

/// The latest time `cron` came due in the catch-up window before `now` (at most one run per
/// look: runs missed while every node was down are not made up).
fn latest_due(cron: &berth_core::cron::Cron, now: i64) -> Option<i64> {
    let mut due = None;
    let mut after = now - RETENTION_CATCH_UP_SECS;
    while let Some(next) = cron.next_after(after).filter(|t| *t <= now) {
        due = Some(next);
        after = next;
    }
    due
}

/// Revalidate, ahead of their TTL, the proxy cache's tags pulled lately
/// (`berth_proxy::ProxyCache::revalidate_pulled`), so that their pulls never wait for the
/// upstream and one node asks for all of them.
pub struct ProxyRevalidate {
    pub proxy: Arc<berth_proxy::ProxyCache>,
    pub keep_fresh: Duration,
}

/// How often the proxy revalidation runs, and how far ahead of the TTL it asks.
const PROXY_REVALIDATE_SCHEDULE: &str = "* * * * *";
const PROXY_REVALIDATE_LEAD: Duration = Duration::from_secs(90);
/// Tags one run asks about at most, and how long it starts new questions (the rest wait
/// for the next run, or their pulls ask).
const PROXY_REVALIDATE_LIMIT: u64 = 2_000;
const PROXY_REVALIDATE_BUDGET: Duration = Duration::from_secs(45);

#[async_trait]
impl JobHandler for ProxyRevalidate {
    fn kind(&self) -> &'static str {
        "proxy_revalidate"
    }

    async fn run(&self, _params: &Value) -> Result<Value, JobError> {
        let report = self
            .proxy
            .revalidate_pulled(
                self.keep_fresh,
                PROXY_REVALIDATE_LEAD,
                PROXY_REVALIDATE_LIMIT,
                PROXY_REVALIDATE_BUDGET,
            )
            .await
            .map_err(|e| JobError::transient(e.to_string()))?;
        serde_json::to_value(&report).map_err(|e| JobError::permanent(e.to_string()))
    }
}

/// Jobs that run every minute or hour to look for work: their history is kept a day.
const FREQUENT_JOBS: &[&str] = &[
    "retention_schedule",
    "replication_schedule",
    "purge_uploads",
    "proxy_revalidate",
    PRUNE_JOBS,
];
const FREQUENT_JOBS_KEPT: Duration = Duration::from_secs(24 * 3600);
/// Every other job (GC, retention and replication runs) is kept this long.
const JOBS_KEPT: Duration = Duration::from_secs(90 * 24 * 3600);
const PRUNE_JOBS: &str = "prune_jobs";
const PRUNE_JOBS_SCHEDULE: &str = "23 * * * *";
/// Rows one statement deletes: a first prune of a long history holds the writer briefly.
const PRUNE_BATCH: u64 = 5_000;

/// Delete the history of finished jobs past its keeping time; queued and running jobs stay.
pub struct PruneJobs {
    pub jobs: Arc<dyn berth_meta::JobStore>,
}

impl PruneJobs {
    async fn prune(&self, kinds: Option<&[&str]>, kept: Duration) -> Result<u64, JobError> {
        let before = berth_audit::now_ms() - i64::try_from(kept.as_millis()).unwrap_or(i64::MAX);
        let mut deleted = 0;
        loop {
            let batch = self
                .jobs
                .prune_jobs(kinds, before, PRUNE_BATCH)
                .await
                .map_err(|e| JobError::transient(e.to_string()))?;
            deleted += batch;
            if batch < PRUNE_BATCH {
                return Ok(deleted);
            }
        }
    }
}

#[async_trait]
impl JobHandler for PruneJobs {
    fn kind(&self) -> &'static str {
        PRUNE_JOBS
    }

    async fn run(&self, _params: &Value) -> Result<Value, JobError> {
        let frequent = self.prune(Some(FREQUENT_JOBS), FREQUENT_JOBS_KEPT).await?;
        let others = self.prune(None, JOBS_KEPT).await?;
        Ok(json!({"deleted": frequent + others}))
    }
}

/// This node's runner with every job berth has, scheduled, and started; a purge is also
/// queued for now, as a start-up always did. GC's schedule is `[gc] schedule` when the
/// configuration sets one; otherwise whatever Harbor's API last set stays.
pub async fn start(
    store: Arc<dyn berth_meta::MetaStore>,
    registry: Arc<Registry>,
    gc: GcSetting,
    audit: berth_audit::Audit,
    replication: ReplicationSetup,
    proxy_keep_fresh: Duration,
) -> Result<(Arc<Runner>, Arc<berth_replication::Replicator>), String> {
    let gc_schedule = gc.schedule.clone();
    let gc_params = json!({"delete_untagged": gc.delete_untagged, "dry_run": false});
    let jobs: Arc<dyn berth_meta::JobStore> = store.clone();
    let runner = Runner::new(jobs.clone(), berth_jobs::RunnerOptions::default())
        .handle(Arc::new(PurgeUploads {
            registry: registry.clone(),
        }))
        .handle(Arc::new(CollectGarbage::new(registry.clone(), gc)))
        .handle(Arc::new(RetentionScheduler {
            registry: registry.clone(),
            jobs: jobs.clone(),
        }))
        .handle(Arc::new(PruneJobs { jobs }))
        .handle(Arc::new(ProxyRevalidate {
            proxy: replication.proxy.clone(),
            keep_fresh: proxy_keep_fresh,
        }))
        .handle(Arc::new(RetentionRun {
            registry: registry.clone(),
            audit,
        }))
        .handle(Arc::new(ReplicationScheduler {
            store: store.clone(),
        }));
    // Executions queued through the replicator (the API, events) wake this runner.
    let replicator = Arc::new(berth_replication::Replicator::new(
        registry.clone(),
        store,
        runner.waking_store(),
        replication.proxy,
        replication.projects,
    ));
    registry.observe(replicator.events());
    let runner = runner.handle(Arc::new(ReplicationRun {
        replicator: replicator.clone(),
    }));
    let retention = RETENTION_SCHEDULER_SCHEDULE
        .parse()
        .map_err(|e| format!("{e}"))?;
    runner
        .schedule("retention_schedule", Some(&retention), json!({}))
        .await
        .map_err(|e| format!("cannot schedule retention: {e}"))?;
    runner
        .schedule("replication_schedule", Some(&retention), json!({}))
        .await
        .map_err(|e| format!("cannot schedule replication: {e}"))?;
    let schedule = PURGE_UPLOADS_SCHEDULE.parse().map_err(|e| format!("{e}"))?;
    runner
        .schedule("purge_uploads", Some(&schedule), json!({}))
        .await
        .map_err(|e| format!("cannot schedule the upload purge: {e}"))?;
    let schedule = PRUNE_JOBS_SCHEDULE.parse().map_err(|e| format!("{e}"))?;
    runner
        .schedule(PRUNE_JOBS, Some(&schedule), json!({}))
        .await
        .map_err(|e| format!("cannot schedule the job history's pruning: {e}"))?;
    let schedule = PROXY_REVALIDATE_SCHEDULE
        .parse()
        .map_err(|e| format!("{e}"))?;
    let revalidate = (!proxy_keep_fresh.is_zero()).then_some(&schedule);
    runner
        .schedule("proxy_revalidate", revalidate, json!({}))
        .await
        .map_err(|e| format!("cannot schedule the proxy cache's revalidation: {e}"))?;
    if let Some(cron) = &gc_schedule {
        runner
            .schedule(GC_JOB, Some(cron), gc_params)
            .await
            .map_err(|e| format!("cannot schedule garbage collection: {e}"))?;
    }
    let key = format!("start-{}", runner.owner());
    runner
        .enqueue_now("purge_uploads", &key, json!({}))
        .await
        .map_err(|e| format!("cannot queue the start-up upload purge: {e}"))?;
    let runner = Arc::new(runner);
    runner.clone().spawn();
    Ok((runner, replicator))
}

/// What replication needs from the rest of the binary.
pub struct ReplicationSetup {
    /// Clients of stored registries (their secrets opened with its keyring).
    pub proxy: Arc<berth_proxy::ProxyCache>,
    /// Token mode: repositories live in projects, which a pull creates.
    pub projects: bool,
}

/// `berth jobs …`: what ran, when, and how it ended (read from the database, so on any node).
#[derive(clap::Subcommand)]
pub enum JobsCommand {
    /// Jobs, newest first: id, kind, state, attempts, times, result or error.
    List {
        /// Only jobs of this kind (e.g. purge_uploads).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// The schedules: kind, cron and the next run (UTC).
    Schedules,
}

pub async fn command(command: JobsCommand, flags: &crate::Flags) -> Result<(), String> {
    let config = flags.load().map_err(|e| e.to_string())?;
    let metadata = crate::open_metadata(&config).await?;
    let store = metadata.store();
    let time =
        |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), berth_core::time::rfc3339_millis);
    let result = async {
        match command {
            JobsCommand::List { kind, limit } => {
                let page = store
                    .jobs(kind.as_deref(), 0, limit)
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "{} jobs{}",
                    page.total,
                    if page.total > limit {
                        format!(", newest {limit}")
                    } else {
                        String::new()
                    }
                );
                for job in page.items {
                    let outcome = match (&job.result, &job.error) {
                        (Some(result), _) => result.to_string(),
                        (None, Some(error)) => format!("error: {error}"),
                        (None, None) => String::new(),
                    };
                    println!(
                        "{:<6} {:<16} {:<9} attempts={} created={} started={} finished={} {}",
                        job.id,
                        job.kind,
                        job.state.as_str(),
                        job.attempts,
                        time(Some(job.created_ms)),
                        time(job.started_ms),
                        time(job.finished_ms),
                        outcome
                    );
                }
                Ok(())
            }
            JobsCommand::Schedules => {
                for schedule in store.schedules().await.map_err(|e| e.to_string())? {
                    println!(
                        "{:<16} {:<16} next={}",
                        schedule.kind,
                        schedule.cron,
                        time(Some(schedule.next_run_ms))
                    );
                }
                Ok(())
            }
        }
    }
    .await;
    metadata.close().await;
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_jobs::JobHandler;
    use berth_meta::{AuditStore, JobStore, ProjectStore, SqliteStore};
    use berth_registry::retention::PolicyJson;
    use berth_registry::{Registry, RegistryOptions};
    use serde_json::json;

    /// A policy whose schedule came due gets one `retention` job per due time, however many
    /// times (or nodes) the scheduler looks; that job runs it and records the run, in its
    /// history and in the audit log (the run, and the artifact it removed).
    #[tokio::test]
    async fn a_due_policy_is_queued_once_and_its_run_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("meta.db"))
                .await
                .expect("open"),
        );
        let blobs = Arc::new(berth_storage::FsBlobStore::open(dir.path()).expect("blobs"));
        let registry = Arc::new(Registry::new(
            store.clone(),
            blobs,
            RegistryOptions::default(),
        ));
        let project = store
            .create_project("team", false, None)
            .await
            .expect("project");
        // One image, tagged v1: the policy keeps only tags matching keep*, so it goes.
        let repository: berth_core::RepositoryName = "team/app".parse().expect("name");
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let config_digest = berth_core::Digest::of(berth_core::Algorithm::Sha256, &config);
        let body: berth_storage::ByteStream =
            Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(
                bytes::Bytes::from(config.clone()),
            )]));
        registry
            .put_blob(&repository, &config_digest, body)
            .await
            .expect("config");
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
            "layers": [],
        }))
        .expect("json");
        let pushed = registry
            .put_manifest(
                &repository,
                &"v1".parse().expect("tag"),
                &[],
                Some("application/vnd.oci.image.manifest.v1+json"),
                &manifest,
            )
            .await
            .expect("manifest");
        let policy: PolicyJson = serde_json::from_value(json!({
            "algorithm": "or",
            "rules": [{"template": "always", "action": "retain",
                "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "keep*"}],
                "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}}],
            // Every minute: due within the scheduler's window whenever it looks.
            "trigger": {"kind": "Schedule", "settings": {"cron": "0 * * * * *"}},
            "scope": {"level": "project", "ref": project},
        }))
        .expect("policy");
        let id = registry
            .create_retention_policy(&policy)
            .await
            .expect("create");
        let scheduler = super::RetentionScheduler {
            registry: registry.clone(),
            jobs: store.clone(),
        };
        let first = scheduler.run(&json!({})).await.expect("look");
        assert_eq!(first["queued"].as_array().map(Vec::len), Some(1), "{first}");
        let second = scheduler.run(&json!({})).await.expect("look again");
        assert!(
            second["queued"].as_array().is_some_and(|q| q.is_empty())
                // A minute boundary passed between the two looks: a new due time.
                || second["queued"].as_array().map(Vec::len) == Some(1),
            "{second}"
        );
        let jobs = store.jobs(Some("retention"), 0, 10).await.expect("jobs");
        assert!(jobs.total >= 1);
        let audit = berth_audit::Audit::start(store.clone(), Default::default())
            .await
            .expect("audit");
        let ran = super::RetentionRun {
            registry: registry.clone(),
            audit: audit.clone(),
        }
        .run(&jobs.items[0].params)
        .await
        .expect("run");
        assert_eq!(ran["policy_id"], id);
        let runs = registry.retention_runs(id).await.expect("runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (runs[0].trigger.as_str(), runs[0].status.as_str()),
            ("SCHEDULE", "Succeed")
        );
        assert!(
            registry
                .get_manifest(&repository, &"v1".parse().expect("tag"))
                .await
                .is_err(),
            "the run removed team/app:v1"
        );
        audit.flush().await;
        let (entries, _) = store
            .audit_entries(&berth_meta::AuditQuery::default())
            .await
            .expect("audit log");
        let logged: Vec<(String, String, String, String)> = entries
            .into_iter()
            .map(|e| {
                let r = e.record;
                (r.username, r.operation, r.resource_type, r.resource)
            })
            .collect();
        let removed = format!("team/app@{}", pushed.digest);
        let execution = format!("retention/{id}/execution/{}", runs[0].id);
        for (operation, kind, resource) in [
            ("delete", "artifact", removed),
            ("create", "retention", execution),
        ] {
            assert!(
                logged.iter().any(|(u, o, k, r)| u == super::RETENTION_ACTOR
                    && o == operation
                    && k == kind
                    && *r == resource),
                "{operation} {kind} {resource} by retention in {logged:?}"
            );
        }
    }

    /// The history of frequent jobs goes after a day, that of the others after 90 days;
    /// a job still queued stays however old.
    #[tokio::test]
    async fn pruning_keeps_each_kind_of_job_for_its_time() {
        use berth_jobs::JobHandler as _;
        use berth_meta::{JobOutcome, NewJob};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("meta.db"))
                .await
                .expect("open"),
        );
        let now = berth_audit::now_ms();
        let day = 24 * 3600 * 1000;
        let mut ids = Vec::new();
        // (kind, ended how many days ago; None: still queued)
        let jobs = [
            ("retention_schedule", Some(2)),
            ("proxy_revalidate", Some(0)),
            ("gc", Some(2)),
            ("gc", Some(100)),
            ("replication", Some(100)),
            ("gc", None),
        ];
        for (n, (kind, _)) in jobs.iter().enumerate() {
            let id = store
                .enqueue_job(&NewJob {
                    kind: (*kind).into(),
                    key: format!("k{n}"),
                    params: json!({}),
                    run_after_ms: 0,
                })
                .await
                .expect("enqueue")
                .expect("new");
            ids.push(id);
        }
        for (n, (kind, ended)) in jobs.iter().enumerate() {
            let Some(days) = ended else { continue };
            let claimed = store
                .claim_job(&[kind], "node", 1, now + day)
                .await
                .expect("claim")
                .expect("queued");
            assert_eq!(claimed.id, ids[n]);
            store
                .finish_job(
                    claimed.id,
                    "node",
                    &JobOutcome::Succeeded(json!({})),
                    now - days * day - 1,
                )
                .await
                .expect("finish");
        }
        let prune = super::PruneJobs {
            jobs: store.clone(),
        };
        let result = prune.run(&json!({})).await.expect("prune");
        assert_eq!(result, json!({"deleted": 3}));
        let mut left = Vec::new();
        for id in &ids {
            left.push(store.job(*id).await.expect("job").is_some());
        }
        assert_eq!(left, [false, true, true, false, false, true]);
    }
}
