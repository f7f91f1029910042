//! Background jobs, run from the database so that they survive restarts and run once across
//! several nodes: each node's [`Runner`] enqueues the scheduled runs that are due (a run is
//! keyed by its due time, so two nodes enqueue it once), claims jobs under a lease that it
//! renews while the job runs, and records the outcome; a job whose node died is taken over
//! when its lease lapses, and a failed one is retried with backoff.
//!
//! This crate must not keep any state of its own that matters: everything a job needs to
//! run, resume or be shown is in the `JobStore`. Handlers must be idempotent (a job can run
//! again after a crash or a lost lease).

use berth_core::time::now_ms;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::cron::Cron;
use berth_meta::{Job, JobOutcome, JobStore, MetaError, NewJob, Paged, Schedule};
use serde_json::Value;
use tokio::sync::Notify;

#[cfg(test)]
mod tests;

/// What a job does, by kind.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// The kind this handler runs (`purge_uploads`, `gc`, …).
    fn kind(&self) -> &'static str;

    /// Run once with `params`; what it reports is kept in the job's history.
    async fn run(&self, params: &Value) -> Result<Value, JobError>;
}

/// Why a run failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    pub retry: bool,
}

impl JobError {
    /// A failure worth retrying (an unreachable store, a timeout).
    pub fn transient(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry: true,
        }
    }

    /// A failure that will not go away by itself (bad parameters).
    pub fn permanent(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry: false,
        }
    }
}

/// How a runner paces itself.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// How long a claim holds before another node may take the job over; renewed every
    /// third of it while the job runs.
    pub lease: Duration,
    /// How often an idle runner looks for due schedules and jobs.
    pub poll: Duration,
    /// Runs before a failing job is given up.
    pub max_attempts: u32,
    /// The first retry's delay, doubled for each further one, at most `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(5),
            max_attempts: 5,
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

/// One node's job runner.
pub struct Runner {
    store: Arc<dyn JobStore>,
    handlers: HashMap<&'static str, Arc<dyn JobHandler>>,
    /// This node's name on the leases it takes.
    owner: String,
    options: RunnerOptions,
    /// Rung when a job is enqueued through [`Runner::waking_store`]: it runs at once, not
    /// at the next poll.
    wake: Arc<Notify>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Runner {
    pub fn new(store: Arc<dyn JobStore>, options: RunnerOptions) -> Runner {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Runner {
            store,
            handlers: HashMap::new(),
            owner: format!("{host}-{}-{}", std::process::id(), &unique[..8]),
            options,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Name this runner's leases `owner` (tests use it to play several nodes).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Runner {
        self.owner = owner.into();
        self
    }

    pub fn handle(mut self, handler: Arc<dyn JobHandler>) -> Runner {
        self.handlers.insert(handler.kind(), handler);
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Make `kind` run on `cron` (keeping its next run if the schedule is unchanged), or
    /// with `None` not on a schedule any more.
    pub async fn schedule(
        &self,
        kind: &str,
        cron: Option<&Cron>,
        params: Value,
    ) -> Result<(), MetaError> {
        let Some(cron) = cron else {
            return self.store.set_schedule(kind, None).await;
        };
        let existing = self.store.schedules().await?;
        if existing
            .iter()
            .any(|s| s.kind == kind && s.cron == cron.to_string() && s.params == params)
        {
            return Ok(());
        }
        let next = cron
            .next_after(now_ms() / 1000)
            .ok_or_else(|| MetaError::Corrupt(format!("schedule {cron} never fires")))?;
        self.store
            .set_schedule(
                kind,
                Some(&Schedule {
                    kind: kind.to_owned(),
                    cron: cron.to_string(),
                    params,
                    next_run_ms: next * 1000,
                }),
            )
            .await
    }

    /// Enqueue a run of `kind` now (an operator's "run now"); its id, or `None` if a job with
    /// that key exists.
    pub async fn enqueue_now(
        &self,
        kind: &str,
        key: &str,
        params: Value,
    ) -> Result<Option<i64>, MetaError> {
        self.store
            .enqueue_job(&NewJob {
                kind: kind.to_owned(),
                key: key.to_owned(),
                params,
                run_after_ms: now_ms(),
            })
            .await
    }

    /// The runner's store, for those who enqueue jobs on this node (the API): a job
    /// enqueued through it wakes this runner. Other nodes' runners find it at their next poll.
    pub fn waking_store(&self) -> Arc<dyn JobStore> {
        Arc::new(WakingStore {
            inner: self.store.clone(),
            wake: self.wake.clone(),
        })
    }

    /// Run forever: every `poll` or when woken, enqueue due schedules and run every
    /// claimable job.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.options.poll);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = self.wake.notified() => {}
                }
                if let Err(e) = self.tick().await {
                    tracing::warn!(error = %e, "job runner: the job store failed; trying again");
                }
            }
        })
    }

    /// One pass: enqueue the schedules due now, then claim and run jobs until none is
    /// claimable. How many jobs it ran.
    pub async fn tick(&self) -> Result<usize, MetaError> {
        self.enqueue_due_schedules().await?;
        let kinds: Vec<&str> = self.handlers.keys().copied().collect();
        let mut ran = 0;
        loop {
            let now = now_ms();
            let lease_until = now + millis(self.options.lease);
            let Some(job) = self
                .store
                .claim_job(&kinds, &self.owner, now, lease_until)
                .await?
            else {
                return Ok(ran);
            };
            self.run(job).await?;
            ran += 1;
        }
    }

    async fn enqueue_due_schedules(&self) -> Result<(), MetaError> {
        let now = now_ms();
        for schedule in self.store.schedules().await? {
            if schedule.next_run_ms > now || !self.handlers.contains_key(schedule.kind.as_str()) {
                continue;
            }
            let cron: Cron = match schedule.cron.parse() {
                Ok(cron) => cron,
                Err(e) => {
                    tracing::warn!(kind = %schedule.kind, error = %e, "job schedule is invalid");
                    continue;
                }
            };
            // Runs missed while every node was down are not made up: one run, then on time.
            let Some(next) = cron.next_after(now / 1000) else {
                continue;
            };
            let job = NewJob {
                kind: schedule.kind.clone(),
                key: format!("{}@{}", schedule.kind, schedule.next_run_ms / 1000),
                params: schedule.params.clone(),
                run_after_ms: schedule.next_run_ms,
            };
            if self
                .store
                .advance_schedule(schedule.next_run_ms, next * 1000, &job)
                .await?
            {
                tracing::info!(kind = %job.kind, key = %job.key, "scheduled job enqueued");
            }
        }
        Ok(())
    }

    /// Run a claimed job, renewing its lease meanwhile, and record the outcome. A lease lost
    /// (this node was too slow; another took the job over) abandons the run unrecorded.
    async fn run(&self, job: Job) -> Result<(), MetaError> {
        let Some(handler) = self.handlers.get(job.kind.as_str()) else {
            return Ok(());
        };
        tracing::info!(id = job.id, kind = %job.kind, attempt = job.attempts, "job started");
        let renew_every = self.options.lease / 3;
        let renewing = async {
            loop {
                tokio::time::sleep(renew_every).await;
                let until = now_ms() + millis(self.options.lease);
                match self.store.renew_job(job.id, &self.owner, until).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(id = job.id, error = %e, "cannot renew a job's lease"),
                }
            }
        };
        let result = tokio::select! {
            result = handler.run(&job.params) => result,
            () = renewing => {
                tracing::warn!(id = job.id, kind = %job.kind, "job lease lost; another node took the job over");
                return Ok(());
            }
        };
        let outcome = match result {
            Ok(report) => {
                tracing::info!(id = job.id, kind = %job.kind, %report, "job succeeded");
                JobOutcome::Succeeded(report)
            }
            Err(e) if e.retry && job.attempts < self.options.max_attempts => {
                let exponent = job.attempts.saturating_sub(1).min(20);
                let delay = self
                    .options
                    .backoff
                    .saturating_mul(1 << exponent)
                    .min(self.options.max_backoff);
                tracing::warn!(id = job.id, kind = %job.kind, error = %e.message, retry_in = ?delay, "job failed; will retry");
                JobOutcome::Retry {
                    error: e.message,
                    run_after_ms: now_ms() + millis(delay),
                }
            }
            Err(e) => {
                tracing::error!(id = job.id, kind = %job.kind, error = %e.message, attempts = job.attempts, "job failed");
                JobOutcome::Failed(e.message)
            }
        };
        if !self
            .store
            .finish_job(job.id, &self.owner, &outcome, now_ms())
            .await?
        {
            tracing::warn!(
                id = job.id,
                "job finished after another node took it over; its outcome is not recorded"
            );
        }
        Ok(())
    }
}

/// A [`JobStore`] that wakes a runner after each job enqueued through it.
struct WakingStore {
    inner: Arc<dyn JobStore>,
    wake: Arc<Notify>,
}

#[async_trait]
impl JobStore for WakingStore {
    async fn enqueue_job(&self, job: &NewJob) -> Result<Option<i64>, MetaError> {
        let id = self.inner.enqueue_job(job).await?;
        if id.is_some() {
            // A permit is kept if the runner is busy: it looks again when it is done.
            self.wake.notify_one();
        }
        Ok(id)
    }

    async fn claim_job(
        &self,
        kinds: &[&str],
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Job>, MetaError> {
        self.inner
            .claim_job(kinds, owner, now_ms, lease_until_ms)
            .await
    }

    async fn renew_job(
        &self,
        id: i64,
        owner: &str,
        lease_until_ms: i64,
    ) -> Result<bool, MetaError> {
        self.inner.renew_job(id, owner, lease_until_ms).await
    }

    async fn finish_job(
        &self,
        id: i64,
        owner: &str,
        outcome: &JobOutcome,
        now_ms: i64,
    ) -> Result<bool, MetaError> {
        self.inner.finish_job(id, owner, outcome, now_ms).await
    }

    async fn job(&self, id: i64) -> Result<Option<Job>, MetaError> {
        self.inner.job(id).await
    }

    async fn jobs(
        &self,
        kind: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Paged<Job>, MetaError> {
        self.inner.jobs(kind, offset, limit).await
    }

    async fn set_schedule(&self, kind: &str, schedule: Option<&Schedule>) -> Result<(), MetaError> {
        self.inner.set_schedule(kind, schedule).await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, MetaError> {
        self.inner.schedules().await
    }

    async fn advance_schedule(
        &self,
        due_ms: i64,
        next_run_ms: i64,
        job: &NewJob,
    ) -> Result<bool, MetaError> {
        self.inner.advance_schedule(due_ms, next_run_ms, job).await
    }

    async fn prune_jobs(
        &self,
        kinds: Option<&[&str]>,
        finished_before_ms: i64,
        limit: u64,
    ) -> Result<u64, MetaError> {
        self.inner
            .prune_jobs(kinds, finished_before_ms, limit)
            .await
    }
}
