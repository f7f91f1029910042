//! The SQLite backend's retention policies and run history.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::retention::{RetentionPolicyRow, RetentionRunRow, RetentionStore};
use crate::{MetaError, Result, now};

fn policy_row(row: &SqliteRow) -> Result<RetentionPolicyRow> {
    Ok(RetentionPolicyRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        policy: row.try_get("policy")?,
    })
}

fn run_row(row: &SqliteRow) -> Result<RetentionRunRow> {
    Ok(RetentionRunRow {
        id: row.try_get("id")?,
        policy_id: row.try_get("policy_id")?,
        dry_run: row.try_get("dry_run")?,
        trigger: row.try_get("trigger")?,
        status: row.try_get("status")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        result: row.try_get("result")?,
    })
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn create_retention_policy(&self, project_id: i64, policy: &str) -> Result<i64> {
        let at = now();
        let created = sqlx::query_scalar(
            "INSERT INTO retention_policies (project_id, policy, created_at, updated_at)
             VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(project_id)
        .bind(policy)
        .bind(at)
        .bind(at)
        .fetch_one(&mut *self.write().await?)
        .await;
        let id = match created {
            Ok(id) => id,
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                return Err(MetaError::Conflict(format!(
                    "a retention policy of project {project_id}"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        self.wal.wait_durable().await?;
        Ok(id)
    }

    async fn retention_policy(&self, id: i64) -> Result<Option<RetentionPolicyRow>> {
        let row = sqlx::query("SELECT id, project_id, policy FROM retention_policies WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(policy_row).transpose()
    }

    async fn update_retention_policy(&self, id: i64, policy: &str) -> Result<bool> {
        let statement =
            sqlx::query("UPDATE retention_policies SET policy = ?, updated_at = ? WHERE id = ?")
                .bind(policy.to_owned())
                .bind(now())
                .bind(id);
        Ok(self.execute_durably(statement).await? > 0)
    }

    async fn delete_retention_policy(&self, id: i64) -> Result<bool> {
        let statement = sqlx::query("DELETE FROM retention_policies WHERE id = ?").bind(id);
        Ok(self.execute_durably(statement).await? > 0)
    }

    async fn retention_policies(&self) -> Result<Vec<RetentionPolicyRow>> {
        let rows = sqlx::query("SELECT id, project_id, policy FROM retention_policies ORDER BY id")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(policy_row).collect()
    }

    async fn record_retention_run(&self, run: &RetentionRunRow) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO retention_runs (policy_id, dry_run, trigger, status, started_at, finished_at, result)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(run.policy_id)
        .bind(run.dry_run)
        .bind(&run.trigger)
        .bind(&run.status)
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(&run.result)
        .fetch_one(&mut *self.write().await?)
        .await?;
        self.wal.wait_durable().await?;
        Ok(id)
    }

    async fn retention_runs(&self, policy_id: i64) -> Result<Vec<RetentionRunRow>> {
        let rows = sqlx::query(
            "SELECT id, policy_id, dry_run, trigger, status, started_at, finished_at, result
             FROM retention_runs WHERE policy_id = ? ORDER BY id DESC",
        )
        .bind(policy_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(run_row).collect()
    }
}
