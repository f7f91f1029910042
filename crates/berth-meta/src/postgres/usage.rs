//! The PostgreSQL backend's usage figures and quotas: reads of the counters that migration
//! 9's triggers keep, and the quota check of the writes that grow them.
//!
//! Several nodes may push into one project at once. A write into a project with a limit
//! first locks the project's `namespace_usage` row (`FOR UPDATE`) and reads what is used;
//! concurrent writes into that project wait there, so each one checks the usage its
//! predecessors committed and none can overshoot. Projects without a limit take no lock.

use async_trait::async_trait;
use berth_core::{Digest, RepositoryName};
use sqlx::postgres::PgConnection;

use super::PgStore;
use crate::usage::{
    NamespaceUsage, Quota, QuotaHold, RegistryUsage, Usage, UsageStore, quota_row, quota_select,
    registry_row, usage_row,
};
use crate::{Result, now};

/// The quota of the namespace's project, when it has a limit, with what the namespace used
/// before this transaction's write; the namespace's usage row stays locked until the
/// transaction ends.
pub(super) async fn quota_hold(
    conn: &mut PgConnection,
    namespace: &str,
) -> Result<Option<QuotaHold>> {
    let limit: Option<i64> = sqlx::query_scalar(
        "SELECT q.storage_limit FROM projects p JOIN project_quotas q ON q.project_id = p.id
         WHERE p.name = $1 AND q.storage_limit >= 0",
    )
    .bind(namespace)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(limit) = limit else { return Ok(None) };
    sqlx::query("INSERT INTO namespace_usage (namespace) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(namespace)
        .execute(&mut *conn)
        .await?;
    let used: i64 = sqlx::query_scalar(
        "SELECT blob_bytes + manifest_bytes FROM namespace_usage WHERE namespace = $1 FOR UPDATE",
    )
    .bind(namespace)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(QuotaHold::new(namespace, limit, used)))
}

/// After the write (whose triggers moved the counters): refuse it if it went past the limit.
/// The caller drops the transaction on an error, which rolls the write back.
pub(super) async fn enforce_quota(conn: &mut PgConnection, hold: Option<&QuotaHold>) -> Result<()> {
    let Some(hold) = hold else { return Ok(()) };
    let used: i64 = sqlx::query_scalar(
        "SELECT blob_bytes + manifest_bytes FROM namespace_usage WHERE namespace = $1",
    )
    .bind(&hold.project)
    .fetch_one(conn)
    .await?;
    hold.check(used)
}

#[async_trait]
impl UsageStore for PgStore {
    async fn repository_usage(&self, repository: &RepositoryName) -> Result<Option<Usage>> {
        let row = sqlx::query(
            "SELECT blob_bytes, unique_blob_bytes, manifest_bytes FROM repositories WHERE name = $1",
        )
        .bind(repository.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(usage_row).transpose()
    }

    async fn namespace_usage(&self, namespace: &str) -> Result<Usage> {
        let row = sqlx::query(
            "SELECT blob_bytes, unique_blob_bytes, manifest_bytes FROM namespace_usage WHERE namespace = $1",
        )
        .bind(namespace)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(usage_row).transpose()?.unwrap_or_default())
    }

    async fn all_namespace_usage(&self) -> Result<Vec<NamespaceUsage>> {
        let rows = sqlx::query(
            "SELECT namespace, blob_bytes, unique_blob_bytes, manifest_bytes FROM namespace_usage ORDER BY namespace",
        )
        .fetch_all(&self.pool)
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
                    (SELECT COALESCE(SUM(manifest_bytes), 0)::BIGINT FROM namespace_usage) AS manifest_bytes
             FROM registry_usage",
        )
        .fetch_one(&self.pool)
        .await?;
        registry_row(&row)
    }

    async fn quotas(&self) -> Result<Vec<Quota>> {
        let rows = sqlx::query(concat!(quota_select!(), " ORDER BY p.id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(quota_row).collect()
    }

    async fn quota(&self, project_id: i64) -> Result<Option<Quota>> {
        let row = sqlx::query(concat!(quota_select!(), " WHERE p.id = $1"))
            .bind(project_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(quota_row).transpose()
    }

    async fn set_storage_limit(&self, project_id: i64, storage_limit: i64) -> Result<bool> {
        let at = now();
        let done = sqlx::query(
            "INSERT INTO project_quotas (project_id, storage_limit, created_at, updated_at)
             SELECT id, $1, $2, $2 FROM projects WHERE id = $3
             ON CONFLICT (project_id) DO UPDATE SET
                storage_limit = EXCLUDED.storage_limit, updated_at = EXCLUDED.updated_at",
        )
        .bind(storage_limit)
        .bind(at)
        .bind(project_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_default_storage_limit(&self, storage_limit: i64) -> Result<()> {
        let statement = sqlx::query("UPDATE quota_defaults SET storage_limit = $1 WHERE id = 1")
            .bind(storage_limit);
        statement.execute(&self.pool).await?;
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
                    EXISTS (SELECT 1 FROM namespace_blobs n WHERE n.namespace = p.name AND n.digest = $1)
             FROM projects p JOIN project_quotas q ON q.project_id = p.id
             WHERE p.name = $2 AND q.storage_limit >= 0",
        )
        .bind(digest.to_string())
        .bind(repository.namespace())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((limit, used, false)) => QuotaHold::new(repository.namespace(), limit, used)
                .check(used.saturating_add(size as i64)),
            _ => Ok(()),
        }
    }
}
