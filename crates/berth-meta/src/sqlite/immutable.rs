//! The SQLite backend's tag immutability rules, and the check that an immutable tag does not
//! move, made inside the storing transaction (the one writer serializes it with every push).

use async_trait::async_trait;
use berth_core::Tag;
use sqlx::{Row, Sqlite, Transaction};

use super::SqliteStore;
use crate::immutable::{ImmutableRuleRow, ImmutableRuleStore};
use crate::{MetaError, Result, now};

const RULE_COLUMNS: &str = "id, project_id, disabled, priority, selectors";

fn rule_row(row: &sqlx::sqlite::SqliteRow) -> Result<ImmutableRuleRow> {
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
    tx: &mut Transaction<'_, Sqlite>,
    repo_id: i64,
    immutable: &[Tag],
    digest: &str,
) -> Result<()> {
    if immutable.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = immutable.iter().map(Tag::as_str).collect();
    let names =
        serde_json::to_string(&names).map_err(|e| MetaError::Corrupt(format!("tag list: {e}")))?;
    let moved: Option<String> = sqlx::query_scalar(
        "SELECT name FROM tags WHERE repository_id = ? AND manifest_digest <> ?
           AND name IN (SELECT value FROM json_each(?)) ORDER BY name LIMIT 1",
    )
    .bind(repo_id)
    .bind(digest)
    .bind(names)
    .fetch_optional(&mut **tx)
    .await?;
    match moved {
        Some(tag) => Err(MetaError::TagImmutable(tag)),
        None => Ok(()),
    }
}

#[async_trait]
impl ImmutableRuleStore for SqliteStore {
    async fn immutable_rules(&self, project_id: i64) -> Result<Vec<ImmutableRuleRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM immutable_rules WHERE project_id = ? ORDER BY id"
        )))
        .bind(project_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rule_row).collect()
    }

    async fn immutable_rules_in(&self, namespace: &str) -> Result<Vec<ImmutableRuleRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM immutable_rules
             WHERE project_id = (SELECT id FROM projects WHERE name = ?) ORDER BY id"
        )))
        .bind(namespace)
        .fetch_all(&self.reader)
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
        let id = sqlx::query_scalar(
            "INSERT INTO immutable_rules (project_id, disabled, priority, selectors, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(project_id)
        .bind(disabled)
        .bind(priority)
        .bind(selectors)
        .bind(at)
        .bind(at)
        .fetch_one(&mut *self.write().await?)
        .await?;
        self.wal.wait_durable().await?;
        Ok(id)
    }

    async fn update_immutable_rule(
        &self,
        project_id: i64,
        id: i64,
        disabled: bool,
        priority: i64,
        selectors: &str,
    ) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE immutable_rules SET disabled = ?, priority = ?, selectors = ?, updated_at = ?
             WHERE id = ? AND project_id = ?",
        )
        .bind(disabled)
        .bind(priority)
        .bind(selectors.to_owned())
        .bind(now())
        .bind(id)
        .bind(project_id);
        Ok(self.execute_durably(statement).await? > 0)
    }

    async fn delete_immutable_rule(&self, project_id: i64, id: i64) -> Result<bool> {
        let statement = sqlx::query("DELETE FROM immutable_rules WHERE id = ? AND project_id = ?")
            .bind(id)
            .bind(project_id);
        Ok(self.execute_durably(statement).await? > 0)
    }
}
