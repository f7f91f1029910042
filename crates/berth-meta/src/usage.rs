//! Storage usage and quotas: what each repository, each project and the whole registry
//! hold, kept exact by triggers in the transactions that link blobs and store manifests
//! (migration 9), so every figure here is one indexed read, never a scan.
//!
//! A repository belongs to the namespace its first path component names
//! ([`RepositoryName::namespace`]); a project's usage is its namespace's. Quotas follow
//! Harbor's rule: a project pays for every blob its repositories link, once however many of
//! them link it, and in full even when other projects link it too — so a project's usage
//! never changes because of what another project does.

use async_trait::async_trait;
use berth_core::{Digest, RepositoryName};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::{MetaError, Result};

/// A storage limit meaning "no limit" (Harbor's `-1`).
pub const UNLIMITED: i64 = -1;

/// What a repository or a project holds, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Distinct blobs it links, each counted once.
    pub blob_bytes: u64,
    /// Of those, the blobs nothing else (no other repository, or no other project) links:
    /// what deleting it, then collecting garbage, would free.
    pub unique_blob_bytes: u64,
    /// Its manifests. berth keeps each repository's manifests in that repository's rows, so
    /// they are never shared.
    pub manifest_bytes: u64,
}

impl Usage {
    /// Everything it holds: what a quota counts.
    pub fn used(&self) -> u64 {
        self.blob_bytes + self.manifest_bytes
    }

    /// What deleting it would free.
    pub fn unique(&self) -> u64 {
        self.unique_blob_bytes + self.manifest_bytes
    }

    /// What it holds that something else holds too (deduplicated with others).
    pub fn shared(&self) -> u64 {
        self.blob_bytes - self.unique_blob_bytes
    }
}

/// One namespace's usage (a project's, or `""` for repositories outside any project).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceUsage {
    pub namespace: String,
    pub usage: Usage,
}

/// The registry's totals, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryUsage {
    /// Distinct blobs some repository links.
    pub linked_blob_bytes: u64,
    /// Every blob recorded, linked or not: the unlinked ones wait for garbage collection.
    pub stored_blob_bytes: u64,
    /// Every repository's manifests.
    pub manifest_bytes: u64,
}

impl RegistryUsage {
    /// What the registry's clients can reach: linked blobs and manifests.
    pub fn total(&self) -> u64 {
        self.linked_blob_bytes + self.manifest_bytes
    }
}

/// A project's quota (Harbor's Quota: its id is the project's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub project_id: i64,
    pub project_name: String,
    pub owner_id: Option<i64>,
    /// Bytes, or [`UNLIMITED`].
    pub storage_limit: i64,
    /// What the quota counts ([`Usage::used`]).
    pub used: u64,
    /// Unix seconds (the project's while no limit was ever set).
    pub created_at: i64,
    pub updated_at: i64,
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// `None` if the repository is unknown.
    async fn repository_usage(&self, repository: &RepositoryName) -> Result<Option<Usage>>;
    /// Zero for a namespace that holds nothing.
    async fn namespace_usage(&self, namespace: &str) -> Result<Usage>;
    /// Every namespace that holds or held something, by name (for `/metrics` and `berth df`).
    async fn all_namespace_usage(&self) -> Result<Vec<NamespaceUsage>>;
    async fn registry_usage(&self) -> Result<RegistryUsage>;
    /// Every project's quota, by project id.
    async fn quotas(&self) -> Result<Vec<Quota>>;
    async fn quota(&self, project_id: i64) -> Result<Option<Quota>>;
    /// Set a project's storage limit (bytes, or [`UNLIMITED`]); whether the project exists.
    async fn set_storage_limit(&self, project_id: i64, storage_limit: i64) -> Result<bool>;
    /// The limit every project created from now on gets, however it is created (bytes, or
    /// [`UNLIMITED`]). Kept in the database, so each node's start sets it from its
    /// configuration.
    async fn set_default_storage_limit(&self, storage_limit: i64) -> Result<()>;
    /// Whether linking the blob into the repository would fit its project's quota, asked
    /// before its bytes are committed to storage. Advisory: the link's own transaction
    /// decides, so concurrent pushes cannot overshoot.
    async fn check_quota(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()>;
}

/// The quota a write must respect: the limit, and what was used before the write.
#[derive(Debug, Clone)]
pub(crate) struct QuotaHold {
    pub project: String,
    pub limit: u64,
    pub used_before: u64,
}

impl QuotaHold {
    pub(crate) fn new(project: &str, limit: i64, used_before: i64) -> QuotaHold {
        QuotaHold {
            project: project.to_owned(),
            limit: limit.max(0) as u64,
            used_before: used_before.max(0) as u64,
        }
    }

    /// Refuse a write that grew the project's usage past its limit. A write that adds
    /// nothing passes even over the limit (lowered below what the project holds), as in
    /// Harbor: pushing what is already there costs nothing.
    pub(crate) fn check(&self, used_after: i64) -> Result<()> {
        let after = used_after.max(0) as u64;
        if after > self.used_before && after > self.limit {
            return Err(MetaError::QuotaExceeded {
                project: self.project.clone(),
                used: self.used_before,
                limit: self.limit,
                needed: after - self.used_before,
            });
        }
        Ok(())
    }
}

/// Every project with its quota and usage, under the column names [`quota_row`] reads; a
/// `WHERE`/`ORDER BY` may follow.
macro_rules! quota_select {
    () => {
        "SELECT p.id AS project_id, p.name AS project_name, p.owner_id,
                COALESCE(q.storage_limit, -1) AS storage_limit,
                COALESCE(u.blob_bytes + u.manifest_bytes, 0) AS used,
                COALESCE(q.created_at, p.created_at) AS created_at,
                COALESCE(q.updated_at, p.updated_at) AS updated_at
         FROM projects p
         LEFT JOIN project_quotas q ON q.project_id = p.id
         LEFT JOIN namespace_usage u ON u.namespace = p.name"
    };
}
pub(crate) use quota_select;

/// A counter column: never negative in a consistent database.
fn bytes(value: i64) -> u64 {
    value.max(0) as u64
}

pub(crate) fn quota_row<R>(row: &R) -> Result<Quota>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Quota {
        project_id: row.try_get("project_id")?,
        project_name: row.try_get("project_name")?,
        owner_id: row.try_get("owner_id")?,
        storage_limit: row.try_get("storage_limit")?,
        used: bytes(row.try_get("used")?),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `blob_bytes`, `unique_blob_bytes` and `manifest_bytes` columns.
pub(crate) fn usage_row<R>(row: &R) -> Result<Usage>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Usage {
        blob_bytes: bytes(row.try_get("blob_bytes")?),
        unique_blob_bytes: bytes(row.try_get("unique_blob_bytes")?),
        manifest_bytes: bytes(row.try_get("manifest_bytes")?),
    })
}

pub(crate) fn registry_row<R>(row: &R) -> Result<RegistryUsage>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(RegistryUsage {
        linked_blob_bytes: bytes(row.try_get("linked_blob_bytes")?),
        stored_blob_bytes: bytes(row.try_get("stored_blob_bytes")?),
        manifest_bytes: bytes(row.try_get("manifest_bytes")?),
    })
}

/// `bytes` for people: "1.5 MiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_refused_only_when_it_grows_usage_past_the_limit() {
        let hold = QuotaHold::new("team", 100, 60);
        assert!(hold.check(100).is_ok(), "up to the limit fits");
        assert!(hold.check(60).is_ok(), "adding nothing fits");
        let refused = hold.check(101).expect_err("past the limit");
        assert_eq!(
            refused.to_string(),
            "quota exceeded: used 60 B of 100 B in project team, and this needs 41 B more"
        );
        let over = QuotaHold::new("team", 50, 60);
        assert!(over.check(60).is_ok(), "already over, adding nothing");
        assert!(over.check(61).is_err());
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
    }

    #[test]
    fn shared_and_unique_split_what_is_used() {
        let usage = Usage {
            blob_bytes: 100,
            unique_blob_bytes: 30,
            manifest_bytes: 5,
        };
        assert_eq!(
            (usage.used(), usage.unique(), usage.shared()),
            (105, 35, 70)
        );
    }
}
