//! The SQLite backend's replication policies, executions and tasks: the statements are
//! `crate::replication`'s, numbered for SQLite. Every write is durable before it returns.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::SqliteStore;
use crate::replication::{
    COUNT_TASKS, DELETE_POLICY, EXECUTION_FILTER, EXECUTION_SELECT, ExecutionFilter,
    FINISH_EXECUTION, INSERT_EXECUTION, INSERT_POLICY, INSERT_TASK, NewReplicationPolicy,
    NewReplicationTask, POLICY_COLUMNS, POLICY_RUNNING, PolicyDeletion, ReplicationExecutionRow,
    ReplicationPolicyRow, ReplicationStore, ReplicationTaskRow, STOP_EXECUTION, TASK_COLUMNS,
    TASK_FILTER, TASK_LOG, UPDATE_POLICY, UPDATE_TASK, execution_row, policy_row, sqlite_sql,
    task_row,
};
use crate::rows::{count, limit};
use crate::{MetaError, Paged, Result, now};

fn sql(statement: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(sqlite_sql(statement))
}

fn conflict_or(e: sqlx::Error, name: &str) -> MetaError {
    if e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
    {
        MetaError::Conflict(format!("replication policy {name}"))
    } else {
        e.into()
    }
}

fn now_ms() -> i64 {
    crate::jobs::now_ms()
}

#[async_trait]
impl ReplicationStore for SqliteStore {
    async fn create_replication_policy(&self, p: &NewReplicationPolicy) -> Result<i64> {
        let id = sqlx::query_scalar(sql(INSERT_POLICY))
            .bind(&p.name)
            .bind(p.enabled)
            .bind(p.src_registry)
            .bind(p.dest_registry)
            .bind(&p.definition)
            .bind(now())
            .fetch_one(&mut *self.write().await?)
            .await
            .map_err(|e| conflict_or(e, &p.name))?;
        self.wal.wait_durable().await?;
        Ok(id)
    }

    async fn replication_policy(&self, id: i64) -> Result<Option<ReplicationPolicyRow>> {
        let statement = format!("SELECT {POLICY_COLUMNS} FROM replication_policies WHERE id = $1");
        let row = sqlx::query(sql(&statement))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(policy_row).transpose()
    }

    async fn replication_policies(&self) -> Result<Vec<ReplicationPolicyRow>> {
        let statement = format!("SELECT {POLICY_COLUMNS} FROM replication_policies ORDER BY id");
        let rows = sqlx::query(sql(&statement)).fetch_all(&self.reader).await?;
        rows.iter().map(policy_row).collect()
    }

    async fn update_replication_policy(&self, id: i64, p: &NewReplicationPolicy) -> Result<bool> {
        let done = sqlx::query(sql(UPDATE_POLICY))
            .bind(&p.name)
            .bind(p.enabled)
            .bind(p.src_registry)
            .bind(p.dest_registry)
            .bind(&p.definition)
            .bind(now())
            .bind(id)
            .execute(&mut *self.write().await?)
            .await
            .map_err(|e| conflict_or(e, &p.name))?;
        self.wal.wait_durable().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_replication_policy(&self, id: i64) -> Result<PolicyDeletion> {
        // One writer: the check and the delete see the same rows.
        let mut writer = self.write().await?;
        let running: bool = sqlx::query_scalar(sql(POLICY_RUNNING))
            .bind(id)
            .fetch_one(&mut *writer)
            .await?;
        if running {
            return Ok(PolicyDeletion::Running);
        }
        let done = sqlx::query(sql(DELETE_POLICY))
            .bind(id)
            .execute(&mut *writer)
            .await?;
        drop(writer);
        if done.rows_affected() == 0 {
            return Ok(PolicyDeletion::Missing);
        }
        self.wal.wait_durable().await?;
        Ok(PolicyDeletion::Deleted)
    }

    async fn create_replication_execution(
        &self,
        policy_id: i64,
        trigger: &str,
        event: Option<&str>,
    ) -> Result<i64> {
        let id = sqlx::query_scalar(sql(INSERT_EXECUTION))
            .bind(policy_id)
            .bind(trigger)
            .bind(event)
            .bind(now_ms())
            .fetch_one(&mut *self.write().await?)
            .await?;
        self.wal.wait_durable().await?;
        Ok(id)
    }

    async fn replication_execution(&self, id: i64) -> Result<Option<ReplicationExecutionRow>> {
        let statement = format!("{EXECUTION_SELECT} WHERE e.id = $1");
        let row = sqlx::query(sql(&statement))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(execution_row).transpose()
    }

    async fn replication_executions(
        &self,
        filter: &ExecutionFilter,
        offset: u64,
        page: u64,
    ) -> Result<Paged<ReplicationExecutionRow>> {
        let total: i64 = sqlx::query_scalar(sql(&format!(
            "SELECT COUNT(*) FROM replication_executions WHERE {EXECUTION_FILTER}"
        )))
        .bind(filter.policy_id)
        .bind(filter.status.as_deref())
        .bind(filter.trigger.as_deref())
        .fetch_one(&self.reader)
        .await?;
        let statement = format!(
            "{EXECUTION_SELECT} WHERE {EXECUTION_FILTER} ORDER BY e.id DESC LIMIT $4 OFFSET $5"
        );
        let rows = sqlx::query(sql(&statement))
            .bind(filter.policy_id)
            .bind(filter.status.as_deref())
            .bind(filter.trigger.as_deref())
            .bind(limit(page))
            .bind(limit(offset))
            .fetch_all(&self.reader)
            .await?;
        Ok(Paged {
            total: count(total),
            items: rows.iter().map(execution_row).collect::<Result<_>>()?,
        })
    }

    async fn stop_replication_execution(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(sql(STOP_EXECUTION))
            .bind(id)
            .execute(&mut *self.write().await?)
            .await?;
        self.wal.wait_durable().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn finish_replication_execution(
        &self,
        id: i64,
        status: &str,
        status_text: &str,
    ) -> Result<()> {
        sqlx::query(sql(FINISH_EXECUTION))
            .bind(id)
            .bind(status)
            .bind(status_text)
            .bind(now_ms())
            .execute(&mut *self.write().await?)
            .await?;
        self.wal.wait_durable().await?;
        Ok(())
    }

    async fn plan_replication_tasks(
        &self,
        execution_id: i64,
        tasks: &[NewReplicationTask],
    ) -> Result<Vec<ReplicationTaskRow>> {
        {
            let mut writer = self.write().await?;
            let mut tx = writer.begin().await?;
            let existing: i64 = sqlx::query_scalar(sql(COUNT_TASKS))
                .bind(execution_id)
                .fetch_one(&mut *tx)
                .await?;
            if existing == 0 {
                for task in tasks {
                    sqlx::query(sql(INSERT_TASK))
                        .bind(execution_id)
                        .bind(&task.resource_type)
                        .bind(&task.src_resource)
                        .bind(&task.dst_resource)
                        .bind(&task.operation)
                        .bind(&task.plan)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
        }
        self.wal.wait_durable().await?;
        let statement = format!(
            "SELECT {TASK_COLUMNS} FROM replication_tasks WHERE execution_id = $1 ORDER BY id"
        );
        let rows = sqlx::query(sql(&statement))
            .bind(execution_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(task_row).collect()
    }

    async fn replication_tasks(
        &self,
        execution_id: i64,
        status: Option<&str>,
        offset: u64,
        page: u64,
    ) -> Result<Paged<ReplicationTaskRow>> {
        let total: i64 = sqlx::query_scalar(sql(&format!(
            "SELECT COUNT(*) FROM replication_tasks WHERE {TASK_FILTER}"
        )))
        .bind(execution_id)
        .bind(status)
        .fetch_one(&self.reader)
        .await?;
        let statement = format!(
            "SELECT {TASK_COLUMNS} FROM replication_tasks WHERE {TASK_FILTER}
             ORDER BY id LIMIT $3 OFFSET $4"
        );
        let rows = sqlx::query(sql(&statement))
            .bind(execution_id)
            .bind(status)
            .bind(limit(page))
            .bind(limit(offset))
            .fetch_all(&self.reader)
            .await?;
        Ok(Paged {
            total: count(total),
            items: rows.iter().map(task_row).collect::<Result<_>>()?,
        })
    }

    async fn replication_task_log(
        &self,
        execution_id: i64,
        task_id: i64,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(sql(TASK_LOG))
            .bind(execution_id)
            .bind(task_id)
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn update_replication_task(&self, id: i64, status: &str, log: &str) -> Result<()> {
        sqlx::query(sql(UPDATE_TASK))
            .bind(id)
            .bind(status)
            .bind(log)
            .bind(now_ms())
            .execute(&mut *self.write().await?)
            .await?;
        self.wal.wait_durable().await?;
        Ok(())
    }
}
