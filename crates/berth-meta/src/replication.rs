//! Replication policies (Harbor's), their executions and each execution's tasks, as stored:
//! rows only. What a policy means, copying images and deciding who may run one live
//! elsewhere (`berth-replication`, `berth-auth`).
//!
//! The statements are written once, here, with PostgreSQL's `$n` placeholders; the SQLite
//! backend runs them with `?n` ([`sqlite_sql`]), so the two backends cannot drift apart.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::{Paged, Result};

/// A policy to create, or the changeable part of a stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReplicationPolicy {
    pub name: String,
    pub enabled: bool,
    /// The registry images are copied from; `None`: this registry (a push policy).
    pub src_registry: Option<i64>,
    /// The registry images are copied to; `None`: this registry (a pull policy).
    pub dest_registry: Option<i64>,
    /// The rest of Harbor's policy (filters, trigger, namespace, deletion, speed), as JSON.
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationPolicyRow {
    pub id: i64,
    pub fields: NewReplicationPolicy,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// What deleting a policy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDeletion {
    Deleted,
    Missing,
    /// An execution of it is in progress: it stays.
    Running,
}

/// How many of an execution's tasks are in each state (Harbor's execution counters;
/// `in_progress` counts pending tasks too, as Harbor's does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    pub total: i64,
    pub failed: i64,
    pub succeed: i64,
    pub in_progress: i64,
    pub stopped: i64,
}

/// One run of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationExecutionRow {
    pub id: i64,
    pub policy_id: i64,
    /// `manual`, `scheduled` or `event_based`.
    pub trigger: String,
    /// `InProgress`, `Succeed`, `Failed` or `Stopped`.
    pub status: String,
    pub status_text: String,
    /// An operator asked it to stop (it stops before its next task).
    pub stop_requested: bool,
    /// What an event-based execution replicates (JSON), else `None`: all the policy selects.
    pub event: Option<String>,
    /// Unix milliseconds.
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub counts: TaskCounts,
}

/// Which executions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub policy_id: Option<i64>,
    pub status: Option<String>,
    pub trigger: Option<String>,
}

/// A task an execution plans: one repository's artifacts, copied or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReplicationTask {
    /// Harbor's `artifact`.
    pub resource_type: String,
    /// `project/repo:[tag,…]`, as Harbor shows it.
    pub src_resource: String,
    pub dst_resource: String,
    /// `copy` or `deletion`.
    pub operation: String,
    /// What the task copies, for the job that runs it (and runs it again after a crash).
    pub plan: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationTaskRow {
    pub id: i64,
    pub execution_id: i64,
    pub task: NewReplicationTask,
    /// `Pending`, `InProgress`, `Succeed`, `Failed` or `Stopped`.
    pub status: String,
    /// Unix milliseconds.
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
}

/// Whether a task or execution status is final.
pub fn is_final(status: &str) -> bool {
    matches!(status, "Succeed" | "Failed" | "Stopped")
}

#[async_trait]
pub trait ReplicationStore: Send + Sync {
    /// Its id; [`crate::MetaError::Conflict`] if the name is taken.
    async fn create_replication_policy(&self, policy: &NewReplicationPolicy) -> Result<i64>;
    async fn replication_policy(&self, id: i64) -> Result<Option<ReplicationPolicyRow>>;
    /// Every policy, by id (there are few: filters and pages are the caller's).
    async fn replication_policies(&self) -> Result<Vec<ReplicationPolicyRow>>;
    /// False if it does not exist; a name taken by another is a conflict.
    async fn update_replication_policy(
        &self,
        id: i64,
        policy: &NewReplicationPolicy,
    ) -> Result<bool>;
    /// Delete a policy and its history, unless one of its executions is in progress.
    async fn delete_replication_policy(&self, id: i64) -> Result<PolicyDeletion>;

    /// Start recording an execution (`InProgress`, no tasks yet); its id.
    async fn create_replication_execution(
        &self,
        policy_id: i64,
        trigger: &str,
        event: Option<&str>,
    ) -> Result<i64>;
    async fn replication_execution(&self, id: i64) -> Result<Option<ReplicationExecutionRow>>;
    /// Executions, newest first.
    async fn replication_executions(
        &self,
        filter: &ExecutionFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Paged<ReplicationExecutionRow>>;
    /// Ask an execution in progress to stop; false if it is not in progress.
    async fn stop_replication_execution(&self, id: i64) -> Result<bool>;
    /// Record how an execution ended (once: a final status is never changed).
    async fn finish_replication_execution(
        &self,
        id: i64,
        status: &str,
        status_text: &str,
    ) -> Result<()>;

    /// Record an execution's tasks, unless it has some already (a run taken over after a
    /// crash keeps the plan it had); every task of the execution, by id.
    async fn plan_replication_tasks(
        &self,
        execution_id: i64,
        tasks: &[NewReplicationTask],
    ) -> Result<Vec<ReplicationTaskRow>>;
    /// An execution's tasks by id, optionally of one status.
    async fn replication_tasks(
        &self,
        execution_id: i64,
        status: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Paged<ReplicationTaskRow>>;
    /// A task's log, if the execution has that task.
    async fn replication_task_log(&self, execution_id: i64, task_id: i64)
    -> Result<Option<String>>;
    /// Set a task's status and append `log` lines to its log (start and end times follow
    /// the status).
    async fn update_replication_task(&self, id: i64, status: &str, log: &str) -> Result<()>;
}

/// A statement of this module for SQLite: `$n` → `?n` (same numbering, same binds).
pub(crate) fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

pub(crate) const POLICY_COLUMNS: &str =
    "id, name, enabled, src_registry_id, dest_registry_id, definition, created_at, updated_at";

pub(crate) const INSERT_POLICY: &str = "INSERT INTO replication_policies
     (name, enabled, src_registry_id, dest_registry_id, definition, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id";

pub(crate) const UPDATE_POLICY: &str = "UPDATE replication_policies SET name = $1, enabled = $2,
     src_registry_id = $3, dest_registry_id = $4, definition = $5, updated_at = $6 WHERE id = $7";

pub(crate) const POLICY_RUNNING: &str = "SELECT EXISTS (SELECT 1 FROM replication_executions
     WHERE policy_id = $1 AND status = 'InProgress')";

pub(crate) const DELETE_POLICY: &str = "DELETE FROM replication_policies WHERE id = $1";

pub(crate) const INSERT_EXECUTION: &str = "INSERT INTO replication_executions
     (policy_id, trigger, status, status_text, stop_requested, event, started_at)
     VALUES ($1, $2, 'InProgress', '', FALSE, $3, $4) RETURNING id";

/// An execution with its task counters.
pub(crate) const EXECUTION_SELECT: &str = "SELECT e.id, e.policy_id, e.trigger, e.status,
     e.status_text, e.stop_requested, e.event, e.started_at, e.ended_at,
     (SELECT COUNT(*) FROM replication_tasks t WHERE t.execution_id = e.id) AS total,
     (SELECT COUNT(*) FROM replication_tasks t WHERE t.execution_id = e.id
        AND t.status = 'Failed') AS failed,
     (SELECT COUNT(*) FROM replication_tasks t WHERE t.execution_id = e.id
        AND t.status = 'Succeed') AS succeed,
     (SELECT COUNT(*) FROM replication_tasks t WHERE t.execution_id = e.id
        AND t.status IN ('Pending', 'InProgress')) AS in_progress,
     (SELECT COUNT(*) FROM replication_tasks t WHERE t.execution_id = e.id
        AND t.status = 'Stopped') AS stopped
     FROM replication_executions e";

/// The filter of a listing: `$1` policy, `$2` status, `$3` trigger (NULL: any).
pub(crate) const EXECUTION_FILTER: &str = "($1 IS NULL OR policy_id = $1)
     AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR trigger = $3)";

pub(crate) const STOP_EXECUTION: &str = "UPDATE replication_executions SET stop_requested = TRUE
     WHERE id = $1 AND status = 'InProgress'";

pub(crate) const FINISH_EXECUTION: &str = "UPDATE replication_executions
     SET status = $2, status_text = $3, ended_at = $4 WHERE id = $1 AND status = 'InProgress'";

pub(crate) const TASK_COLUMNS: &str = "id, execution_id, resource_type, src_resource,
     dst_resource, operation, plan, status, started_at, ended_at";

pub(crate) const COUNT_TASKS: &str =
    "SELECT COUNT(*) FROM replication_tasks WHERE execution_id = $1";

pub(crate) const INSERT_TASK: &str = "INSERT INTO replication_tasks (execution_id,
     resource_type, src_resource, dst_resource, operation, plan, status, log)
     VALUES ($1, $2, $3, $4, $5, $6, 'Pending', '')";

pub(crate) const TASK_FILTER: &str = "execution_id = $1 AND ($2 IS NULL OR status = $2)";

pub(crate) const TASK_LOG: &str =
    "SELECT log FROM replication_tasks WHERE execution_id = $1 AND id = $2";

/// `$2` the status, `$3` log lines to append, `$4` now (ms).
pub(crate) const UPDATE_TASK: &str = "UPDATE replication_tasks SET status = $2, log = log || $3,
     started_at = CASE WHEN started_at IS NULL AND $2 <> 'Pending' THEN $4 ELSE started_at END,
     ended_at = CASE WHEN $2 IN ('Succeed', 'Failed', 'Stopped') THEN $4 ELSE NULL END
     WHERE id = $1";

pub(crate) fn policy_row<R>(row: &R) -> Result<ReplicationPolicyRow>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ReplicationPolicyRow {
        id: row.try_get("id")?,
        fields: NewReplicationPolicy {
            name: row.try_get("name")?,
            enabled: row.try_get("enabled")?,
            src_registry: row.try_get("src_registry_id")?,
            dest_registry: row.try_get("dest_registry_id")?,
            definition: row.try_get("definition")?,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn execution_row<R>(row: &R) -> Result<ReplicationExecutionRow>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ReplicationExecutionRow {
        id: row.try_get("id")?,
        policy_id: row.try_get("policy_id")?,
        trigger: row.try_get("trigger")?,
        status: row.try_get("status")?,
        status_text: row.try_get("status_text")?,
        stop_requested: row.try_get("stop_requested")?,
        event: row.try_get("event")?,
        started_ms: row.try_get("started_at")?,
        ended_ms: row.try_get("ended_at")?,
        counts: TaskCounts {
            total: row.try_get("total")?,
            failed: row.try_get("failed")?,
            succeed: row.try_get("succeed")?,
            in_progress: row.try_get("in_progress")?,
            stopped: row.try_get("stopped")?,
        },
    })
}

pub(crate) fn task_row<R>(row: &R) -> Result<ReplicationTaskRow>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ReplicationTaskRow {
        id: row.try_get("id")?,
        execution_id: row.try_get("execution_id")?,
        task: NewReplicationTask {
            resource_type: row.try_get("resource_type")?,
            src_resource: row.try_get("src_resource")?,
            dst_resource: row.try_get("dst_resource")?,
            operation: row.try_get("operation")?,
            plan: row.try_get("plan")?,
        },
        status: row.try_get("status")?,
        started_ms: row.try_get("started_at")?,
        ended_ms: row.try_get("ended_at")?,
    })
}
