//! The PostgreSQL backend's tag immutability rules, and the check that an immutable tag does
//! not move, made inside the storing transaction (which holds the repository's lock, so no
//! other node's push moves the tag meanwhile).

use async_trait::async_trait;
use berth_core::Tag;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::PgStore;
use crate::immutable::{ImmutableRuleRow, ImmutableRuleStore};
use crate::{MetaError, Result, now};

fn rule_row(row: &PgRow) -> Result<ImmutableRuleRow> {
    Ok(ImmutableRuleRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        disabled: row.try_get("disabled")?,
        priority: row.try_get("priority")?,
        selectors: row.try_get("selectors")?,
    })
}

/// Refuse the write if one of `immutable` is in the repository on another manifest than
/// `digest`.
pub(super) async fn refuse_immutable_moves(
    conn: &mut PgConnection,
    repo_id: i64,
    immutable: &[Tag],
    digest: &str,
) -> Result<()> {
    if immutable.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = immutable.iter().map(Tag::as_str).collect();
    let moved: Option<String> = sqlx::query_scalar(
        "SELECT name FROM tags WHERE repository_id = $1 AND manifest_digest <> $2
           AND name = ANY($3) ORDER BY name LIMIT 1",
    )
    .bind(repo_id)
    .bind(digest)
    .bind(&names)
    .fetch_optional(conn)
    .await?;
    match moved {
        Some(tag) => Err(MetaError::TagImmutable(tag)),
        None => Ok(()),
    }
}

#[async_trait]
impl ImmutableRuleStore for PgStore {
    async fn immutable_rules(&self, project_id: i64) -> Result<Vec<ImmutableRuleRow>> {
        let rows = sqlx::query(
            "SELECT id, project_id, disabled, priority, selectors FROM immutable_rules
             WHERE project_id = $1 ORDER BY id",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_row).collect()
    }

    async fn immutable_rules_in(&self, namespace: &str) -> Result<Vec<ImmutableRuleRow>> {
        let rows = sqlx::query(
            "SELECT id, project_id, disabled, priority, selectors FROM immutable_rules
             WHERE project_id = (SELECT id FROM projects WHERE name = $1) ORDER BY id",
        )
        .bind(namespace)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_row).collect()
    }

    async fn create_immutable_rule(
        &self,
        project_id: i64,
        disabled: bool,
        priority: i64,
        selectors: &str,
    ) -> Result<i64> {
        let at = now();
        Ok(sqlx::query_scalar(
            "INSERT INTO immutable_rules (project_id, disabled, priority, selectors, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(project_id)
        .bind(disabled)
        .bind(priority)
        .bind(selectors)
        .bind(at)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn update_immutable_rule(
        &self,
        project_id: i64,
        id: i64,
        disabled: bool,
        priority: i64,
        selectors: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE immutable_rules SET disabled = $1, priority = $2, selectors = $3, updated_at = $4
             WHERE id = $5 AND project_id = $6",
        )
        .bind(disabled)
        .bind(priority)
        .bind(selectors)
        .bind(now())
        .bind(id)
        .bind(project_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_immutable_rule(&self, project_id: i64, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM immutable_rules WHERE id = $1 AND project_id = $2")
            .bind(id)
            .bind(project_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
