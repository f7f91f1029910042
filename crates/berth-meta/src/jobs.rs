//! Background jobs and their schedules, kept in the database so that they survive restarts
//! and run once across several nodes: a job is claimed under a lease that its runner renews;
//! a lease that runs out (its node died) lets another node take the job over. Scheduled runs
//! are enqueued under a key naming the run (`gc@1796025600`), so two nodes that find the same
//! schedule due enqueue it once.

use async_trait::async_trait;
use serde_json::Value;

use crate::{MetaError, Paged, Result};

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What runs it (`purge_uploads`, `gc`, …).
    pub kind: String,
    /// Unique per kind: a second job with the same key is not enqueued.
    pub key: String,
    pub params: Value,
    /// Unix milliseconds; not claimed before.
    pub run_after_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A job as stored, with its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub params: Value,
    pub state: JobState,
    /// Claims so far (the first run is attempt 1).
    pub attempts: u32,
    pub run_after_ms: i64,
    /// The node holding it while it runs.
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// What a successful run reported (e.g. what it freed).
    pub result: Option<Value>,
    /// The last failure.
    pub error: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Succeeded(Value),
    /// Failed; queued again, not before `run_after_ms`.
    Retry {
        error: String,
        run_after_ms: i64,
    },
    /// Failed for good.
    Failed(String),
}

/// A recurring job.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub kind: String,
    /// Cron syntax (`berth_core::cron`).
    pub cron: String,
    pub params: Value,
    /// Unix milliseconds of the next run.
    pub next_run_ms: i64,
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Enqueue `job`; its id, or `None` when a job of that kind and key exists already.
    async fn enqueue_job(&self, job: &NewJob) -> Result<Option<i64>>;

    /// Claim the next job of one of `kinds` that is due (`run_after_ms <= now_ms`) or whose
    /// lease ran out, for `owner` until `lease_until_ms`; the claim counts an attempt.
    async fn claim_job(
        &self,
        kinds: &[&str],
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Job>>;

    /// Extend the lease `owner` holds on job `id`; false when it holds it no longer.
    async fn renew_job(&self, id: i64, owner: &str, lease_until_ms: i64) -> Result<bool>;

    /// Record how the run `owner` holds ended; false (and nothing changed) when it holds
    /// the job no longer (another node took it over).
    async fn finish_job(
        &self,
        id: i64,
        owner: &str,
        outcome: &JobOutcome,
        now_ms: i64,
    ) -> Result<bool>;

    async fn job(&self, id: i64) -> Result<Option<Job>>;

    /// Jobs of `kind` (all kinds if `None`), newest first.
    async fn jobs(&self, kind: Option<&str>, offset: u64, limit: u64) -> Result<Paged<Job>>;

    /// Set (or with `None`, remove) the schedule of `kind`.
    async fn set_schedule(&self, kind: &str, schedule: Option<&Schedule>) -> Result<()>;

    async fn schedules(&self) -> Result<Vec<Schedule>>;

    /// If the schedule of `job.kind` is still due at `due_ms` (nobody advanced it), move it
    /// to `next_run_ms` and enqueue `job`, in one transaction; whether this call did.
    async fn advance_schedule(&self, due_ms: i64, next_run_ms: i64, job: &NewJob) -> Result<bool>;

    /// Delete at most `limit` jobs that ended (succeeded or failed for good) before
    /// `finished_before_ms`, of `kinds` (every kind if `None`), oldest first; how many went.
    /// Queued and running jobs are never touched.
    async fn prune_jobs(
        &self,
        kinds: Option<&[&str]>,
        finished_before_ms: i64,
        limit: u64,
    ) -> Result<u64>;
}

/// The columns of a [`Job`] row, in both backends' statements.
pub(crate) const JOB_COLUMNS: &str = "id, kind, key, params, state, attempts, run_after, \
     lease_owner, lease_until, created_at, started_at, finished_at, result, error";

pub(crate) fn json_text(value: &Value) -> String {
    value.to_string()
}

pub(crate) fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| MetaError::Corrupt(format!("job {what}: {e}")))
}

pub(crate) use berth_core::time::now_ms;

/// A [`Job`] from a row of [`JOB_COLUMNS`], in either backend.
pub(crate) fn job_row<R>(row: &R) -> Result<Job>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let state: String = row.try_get("state")?;
    let result: Option<String> = row.try_get("result")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        key: row.try_get("key")?,
        params: parse_json(&row.try_get::<String, _>("params")?, "params")?,
        state: JobState::parse(&state)
            .ok_or_else(|| MetaError::Corrupt(format!("job state {state:?}")))?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        run_after_ms: row.try_get("run_after")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until_ms: row.try_get("lease_until")?,
        created_ms: row.try_get("created_at")?,
        started_ms: row.try_get("started_at")?,
        finished_ms: row.try_get("finished_at")?,
        result: result
            .as_deref()
            .map(|r| parse_json(r, "result"))
            .transpose()?,
        error: row.try_get("error")?,
    })
}
