//! Retention policies as stored (Harbor's RetentionPolicy JSON, one per project) and the
//! record of each run, dry or real: when, how it went, and what it removed.

use async_trait::async_trait;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicyRow {
    pub id: i64,
    pub project_id: i64,
    /// Harbor's RetentionPolicy JSON.
    pub policy: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRunRow {
    pub id: i64,
    pub policy_id: i64,
    pub dry_run: bool,
    /// `MANUAL` or `SCHEDULE`.
    pub trigger: String,
    /// `Succeed` or `Error`.
    pub status: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub finished_at: i64,
    /// What the run removed (or would), JSON.
    pub result: String,
}

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// The new policy's id; `MetaError::Conflict` if the project has one.
    async fn create_retention_policy(&self, project_id: i64, policy: &str) -> Result<i64>;
    async fn retention_policy(&self, id: i64) -> Result<Option<RetentionPolicyRow>>;
    /// Whether it exists (and now reads so).
    async fn update_retention_policy(&self, id: i64, policy: &str) -> Result<bool>;
    async fn delete_retention_policy(&self, id: i64) -> Result<bool>;
    /// Every policy (for the scheduler).
    async fn retention_policies(&self) -> Result<Vec<RetentionPolicyRow>>;
    /// Record a finished run; its id.
    async fn record_retention_run(&self, run: &RetentionRunRow) -> Result<i64>;
    /// A policy's runs, newest first.
    async fn retention_runs(&self, policy_id: i64) -> Result<Vec<RetentionRunRow>>;
}
