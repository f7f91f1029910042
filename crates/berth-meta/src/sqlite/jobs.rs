//! The SQLite backend's jobs and schedules. Claims and schedule advances are single
//! statements or transactions on the one writer connection, so two runners (or two nodes
//! sharing nothing but this file) can never both win one.
//!
//! Job bookkeeping commits without waiting for a disk flush: jobs are idempotent, and a
//! power cut that loses a claim or a result only makes a job run again.

use async_trait::async_trait;
use sqlx::{Connection, Row};

use super::SqliteStore;
use crate::jobs::{
    JOB_COLUMNS, Job, JobOutcome, JobStore, NewJob, Schedule, job_row, json_text, now_ms,
    parse_json,
};
use crate::{MetaError, Paged, Result};

#[async_trait]
impl JobStore for SqliteStore {
    async fn enqueue_job(&self, job: &NewJob) -> Result<Option<i64>> {
        let id = sqlx::query_scalar(
            "INSERT INTO jobs (kind, key, params, state, run_after, created_at)
             VALUES (?, ?, ?, 'queued', ?, ?)
             ON CONFLICT (kind, key) DO NOTHING RETURNING id",
        )
        .bind(&job.kind)
        .bind(&job.key)
        .bind(json_text(&job.params))
        .bind(job.run_after_ms)
        .bind(now_ms())
        .fetch_optional(&mut *self.write().await?)
        .await?;
        Ok(id)
    }

    async fn claim_job(
        &self,
        kinds: &[&str],
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Job>> {
        let kinds = serde_json::to_string(kinds)
            .map_err(|e| MetaError::Corrupt(format!("job kinds: {e}")))?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_until = ?2,
                 attempts = attempts + 1, started_at = COALESCE(started_at, ?3)
             WHERE id = (SELECT id FROM jobs
                 WHERE kind IN (SELECT value FROM json_each(?4))
                   AND ((state = 'queued' AND run_after <= ?3)
                        OR (state = 'running' AND lease_until < ?3))
                 ORDER BY run_after, id LIMIT 1)
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(owner)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(kinds)
        .fetch_optional(&mut *self.write().await?)
        .await?;
        row.as_ref().map(job_row).transpose()
    }

    async fn renew_job(&self, id: i64, owner: &str, lease_until_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND state = 'running'",
        )
        .bind(lease_until_ms)
        .bind(id)
        .bind(owner)
        .execute(&mut *self.write().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_job(
        &self,
        id: i64,
        owner: &str,
        outcome: &JobOutcome,
        now_ms: i64,
    ) -> Result<bool> {
        let (state, result, error, run_after) = match outcome {
            JobOutcome::Succeeded(result) => ("succeeded", Some(json_text(result)), None, None),
            JobOutcome::Retry {
                error,
                run_after_ms,
            } => ("queued", None, Some(error.as_str()), Some(*run_after_ms)),
            JobOutcome::Failed(error) => ("failed", None, Some(error.as_str()), None),
        };
        let done = sqlx::query(
            "UPDATE jobs SET state = ?1, result = ?2, error = ?3,
                 run_after = COALESCE(?4, run_after),
                 finished_at = CASE WHEN ?1 = 'queued' THEN NULL ELSE ?5 END,
                 lease_owner = NULL, lease_until = NULL
             WHERE id = ?6 AND lease_owner = ?7 AND state = 'running'",
        )
        .bind(state)
        .bind(result)
        .bind(error)
        .bind(run_after)
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .execute(&mut *self.write().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn job(&self, id: i64) -> Result<Option<Job>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(job_row).transpose()
    }

    async fn jobs(&self, kind: Option<&str>, offset: u64, limit: u64) -> Result<Paged<Job>> {
        let mut conn = self.reader.acquire().await?;
        let mut tx = conn.begin().await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE ?1 IS NULL OR kind = ?1")
                .bind(kind)
                .fetch_one(&mut *tx)
                .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ?1 IS NULL OR kind = ?1
             ORDER BY id DESC LIMIT ?2 OFFSET ?3"
        )))
        .bind(kind)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Paged {
            total: u64::try_from(total).unwrap_or(0),
            items: rows.iter().map(job_row).collect::<Result<_>>()?,
        })
    }

    async fn set_schedule(&self, kind: &str, schedule: Option<&Schedule>) -> Result<()> {
        let mut writer = self.write().await?;
        match schedule {
            Some(s) => {
                sqlx::query(
                    "INSERT INTO job_schedules (kind, cron, params, next_run) VALUES (?, ?, ?, ?)
                     ON CONFLICT (kind) DO UPDATE SET cron = excluded.cron,
                         params = excluded.params, next_run = excluded.next_run",
                )
                .bind(kind)
                .bind(&s.cron)
                .bind(json_text(&s.params))
                .bind(s.next_run_ms)
                .execute(&mut *writer)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM job_schedules WHERE kind = ?")
                    .bind(kind)
                    .execute(&mut *writer)
                    .await?;
            }
        }
        Ok(())
    }

    async fn schedules(&self) -> Result<Vec<Schedule>> {
        let rows =
            sqlx::query("SELECT kind, cron, params, next_run FROM job_schedules ORDER BY kind")
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(Schedule {
                    kind: row.try_get("kind")?,
                    cron: row.try_get("cron")?,
                    params: parse_json(&row.try_get::<String, _>("params")?, "schedule params")?,
                    next_run_ms: row.try_get("next_run")?,
                })
            })
            .collect()
    }

    async fn advance_schedule(&self, due_ms: i64, next_run_ms: i64, job: &NewJob) -> Result<bool> {
        let mut writer = self.write().await?;
        let mut tx = writer.begin().await?;
        let moved =
            sqlx::query("UPDATE job_schedules SET next_run = ? WHERE kind = ? AND next_run = ?")
                .bind(next_run_ms)
                .bind(&job.kind)
                .bind(due_ms)
                .execute(&mut *tx)
                .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO jobs (kind, key, params, state, run_after, created_at)
             VALUES (?, ?, ?, 'queued', ?, ?) ON CONFLICT (kind, key) DO NOTHING",
        )
        .bind(&job.kind)
        .bind(&job.key)
        .bind(json_text(&job.params))
        .bind(job.run_after_ms)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn prune_jobs(
        &self,
        kinds: Option<&[&str]>,
        finished_before_ms: i64,
        limit: u64,
    ) -> Result<u64> {
        let kinds = kinds
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| MetaError::Corrupt(format!("job kinds: {e}")))?;
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
                 WHERE state IN ('succeeded', 'failed') AND finished_at < ?1
                   AND (?2 IS NULL OR kind IN (SELECT value FROM json_each(?2)))
                 ORDER BY finished_at LIMIT ?3)",
        )
        .bind(finished_before_ms)
        .bind(kinds)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&mut *self.write().await?)
        .await?;
        Ok(done.rows_affected())
    }
}
