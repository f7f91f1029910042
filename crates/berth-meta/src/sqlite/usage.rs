//! The SQLite backend's usage figures and quotas: reads of the counters that migration 9's
//! triggers keep, and the quota check of the writes that grow them. The one writer
//! connection serializes writes, so a check made inside the writing transaction is exact.

use async_trait::async_trait;
use berth_core::{Digest, RepositoryName};
use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use crate::usage::{
    NamespaceUsage, Quota, QuotaHold, RegistryUsage, Usage, UsageStore, quota_row, quota_select,
    registry_row, usage_row,
};
use crate::{Result, now};

/// The quota of the namespace's project, when it has a limit, with what the namespace used
/// before this transaction's write.
pub(super) async fn quota_hold(
    tx: &mut Transaction<'_, Sqlite>,
    namespace: &str,
) -> Result<Option<QuotaHold>> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT q.storage_limit,
                COALESCE((SELECT blob_bytes + manifest_bytes FROM namespace_usage WHERE namespace = p.name), 0)
         FROM projects p JOIN project_quotas q ON q.project_id = p.id
         WHERE p.name = ? AND q.storage_limit >= 0",
    )
    .bind(namespace)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(limit, used)| QuotaHold::new(namespace, limit, used)))
}

/// After the write (whose triggers moved the counters): refuse it if it went past the limit.
/// The caller drops the transaction on an error, which rolls the write back.
pub(super) async fn enforce_quota(
    tx: &mut Transaction<'_, Sqlite>,
    hold: Option<&QuotaHold>,
) -> Result<()> {
    let Some(hold) = hold else { return Ok(()) };
    let used: i64 = sqlx::query_scalar(
        "SELECT COALESCE((SELECT blob_bytes + manifest_bytes FROM namespace_usage WHERE namespace = ?), 0)",
    )
    .bind(&hold.project)
    .fetch_one(&mut **tx)
    .await?;
    hold.check(used)
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn repository_usage(&self, repository: &RepositoryName) -> Result<Option<Usage>> {
        let row = sqlx::query(
            "SELECT blob_bytes, unique_blob_bytes, manifest_bytes FROM repositories WHERE name = ?",
        )
        .bind(repository.as_str())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(usage_row).transpose()
    }

    async fn namespace_usage(&self, namespace: &str) -> Result<Usage> {
        let row = sqlx::query(
            "SELECT blob_bytes, unique_blob_bytes, manifest_bytes FROM namespace_usage WHERE namespace = ?",
        )
        .bind(namespace)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.as_ref().map(usage_row).transpose()?.unwrap_or_default())
    }

    async fn all_namespace_usage(&self) -> Result<Vec<NamespaceUsage>> {
        let rows = sqlx::query(
            "SELECT namespace, blob_bytes, unique_blob_bytes, manifest_bytes FROM namespace_usage ORDER BY namespace",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(NamespaceUsage {
                    namespace: sqlx::Row::try_get(row, "namespace")?,
                    usage: usage_row(row)?,
                })
            })
            .collect()
    }

    async fn registry_usage(&self) -> Result<RegistryUsage> {
        let row = sqlx::query(
            "SELECT linked_blob_bytes, stored_blob_bytes,
                    (SELECT COALESCE(SUM(manifest_bytes), 0) FROM namespace_usage) AS manifest_bytes
             FROM registry_usage",
        )
        .fetch_one(&self.reader)
        .await?;
        registry_row(&row)
    }

    async fn quotas(&self) -> Result<Vec<Quota>> {
        let rows = sqlx::query(concat!(quota_select!(), " ORDER BY p.id"))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(quota_row).collect()
    }

    async fn quota(&self, project_id: i64) -> Result<Option<Quota>> {
        let row = sqlx::query(concat!(quota_select!(), " WHERE p.id = ?"))
            .bind(project_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(quota_row).transpose()
    }

    async fn set_storage_limit(&self, project_id: i64, storage_limit: i64) -> Result<bool> {
        let at = now();
        let statement = sqlx::query(
            "INSERT INTO project_quotas (project_id, storage_limit, created_at, updated_at)
             SELECT id, ?, ?, ? FROM projects WHERE id = ?
             ON CONFLICT (project_id) DO UPDATE SET
                storage_limit = excluded.storage_limit, updated_at = excluded.updated_at",
        )
        .bind(storage_limit)
        .bind(at)
        .bind(at)
        .bind(project_id);
        Ok(self.execute_durably(statement).await? > 0)
    }

    async fn set_default_storage_limit(&self, storage_limit: i64) -> Result<()> {
        let statement = sqlx::query("UPDATE quota_defaults SET storage_limit = ? WHERE id = 1")
            .bind(storage_limit);
        self.execute_durably(statement).await?;
        Ok(())
    }

    async fn check_quota(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let row: Option<(i64, i64, bool)> = sqlx::query_as(
            "SELECT q.storage_limit,
                    COALESCE((SELECT blob_bytes + manifest_bytes FROM namespace_usage WHERE namespace = p.name), 0),
                    EXISTS (SELECT 1 FROM namespace_blobs n WHERE n.namespace = p.name AND n.digest = ?)
             FROM projects p JOIN project_quotas q ON q.project_id = p.id
             WHERE p.name = ? AND q.storage_limit >= 0",
        )
        .bind(digest.to_string())
        .bind(repository.namespace())
        .fetch_optional(&self.reader)
        .await?;
        match row {
            Some((limit, used, false)) => QuotaHold::new(repository.namespace(), limit, used)
                .check(used.saturating_add(size as i64)),
            _ => Ok(()),
        }
    }
}
