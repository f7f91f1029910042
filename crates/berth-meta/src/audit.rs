//! The audit log and pull statistics as stored: rows appended in batches by `berth-audit`'s
//! background writer (never by a request), read back by the management API's `/audit-logs`.
//! Rows only: what is audited, and who may read it, are decided elsewhere.

use async_trait::async_trait;
use berth_core::{Digest, RepositoryName};

use crate::Result;

/// One audit row to append. Identical events of one batch arrive as one row with `count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Unix milliseconds (of the first of `count` identical events).
    pub op_time_ms: i64,
    /// The account, or `anonymous`.
    pub username: String,
    /// The client's address as text; empty when unknown.
    pub client: String,
    /// Harbor's operation: `create`, `update`, `delete`, `pull`, `login`, `token`.
    pub operation: String,
    /// `artifact`, `tag`, `blob`, `project`, `member`, `user`, `robot`, `login`, `token`.
    pub resource_type: String,
    /// What was acted on, e.g. `team/app:v1` or `team/app@sha256:…`.
    pub resource: String,
    /// The project the entry belongs to (who may read it); `None` for system-wide entries.
    pub project: Option<String>,
    pub success: bool,
    /// Why it failed; empty on success.
    pub reason: String,
    pub count: u64,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub record: AuditRecord,
}

/// Pulls of one manifest within a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRecord {
    pub repository: String,
    pub digest: String,
    pub count: u64,
    /// Unix milliseconds of the latest pull.
    pub last_ms: i64,
}

/// What one background write stores, in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditBatch {
    pub entries: Vec<AuditRecord>,
    pub pulls: Vec<PullRecord>,
}

/// A column of the audit log that queries filter or sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditColumn {
    Id,
    OpTime,
    Username,
    Resource,
    ResourceType,
    Operation,
}

/// How a text column must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditMatch {
    Exact(String),
    /// Contains the text (case-sensitive).
    Contains(String),
    AnyOf(Vec<String>),
}

/// Which audit rows, in which order, which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Every term must match (text columns only).
    pub terms: Vec<(AuditColumn, AuditMatch)>,
    /// `op_time` bounds in Unix milliseconds, inclusive.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// `None`: every row; `Some`: only rows of these projects (none at all if empty).
    pub projects: Option<Vec<String>>,
    /// Sort keys (column, descending), then by id in the same direction as the last key.
    pub sort: Vec<(AuditColumn, bool)>,
    pub offset: u64,
    pub limit: u64,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            terms: Vec::new(),
            from_ms: None,
            to_ms: None,
            projects: None,
            sort: vec![(AuditColumn::OpTime, true)],
            offset: 0,
            limit: 100,
        }
    }
}

/// How often and when a manifest was pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullStats {
    pub count: u64,
    /// Unix milliseconds of the latest pull.
    pub last_ms: i64,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// In one transaction: append the entries, and add the pulls to their manifests' and
    /// repositories' counts (pulls of manifests deleted meanwhile are dropped). Durable when
    /// it returns.
    async fn append_audit(&self, batch: &AuditBatch) -> Result<()>;
    /// The page of rows `query` asks for, and how many rows match in all.
    async fn audit_entries(&self, query: &AuditQuery) -> Result<(Vec<AuditEntry>, u64)>;
    /// Delete at most `limit` rows older than `before_ms`; how many were deleted.
    async fn delete_audit_before(&self, before_ms: i64, limit: u64) -> Result<u64>;
    /// A manifest's pulls; `None` if it was never pulled (or does not exist).
    async fn artifact_pulls(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<PullStats>>;
    /// A repository's pulls over all its manifests; `None` if it does not exist.
    async fn repository_pulls(&self, repository: &RepositoryName) -> Result<Option<u64>>;
}
