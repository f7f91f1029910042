//! The SQLite backend's audit log and pull statistics. A batch is a handful of statements
//! whatever its size: its rows travel as one JSON parameter expanded by `json_each`, so a
//! batch of thousands costs one round trip to the writer per table.

use async_trait::async_trait;
use berth_core::{Digest, RepositoryName};
use sqlx::Row;

use super::SqliteStore;
use crate::audit::{
    AuditBatch, AuditColumn, AuditEntry, AuditMatch, AuditQuery, AuditRecord, AuditStore, PullStats,
};
use crate::{MetaError, Result};

fn json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| MetaError::Corrupt(format!("audit batch: {e}")))
}

/// The column's name in SQL: constants only ever reach the statement text.
fn column(c: AuditColumn) -> &'static str {
    match c {
        AuditColumn::Id => "id",
        AuditColumn::OpTime => "op_time",
        AuditColumn::Username => "username",
        AuditColumn::Resource => "resource",
        AuditColumn::ResourceType => "resource_type",
        AuditColumn::Operation => "operation",
    }
}

/// A bound parameter of a query built from constant fragments.
enum Arg {
    Text(String),
    Int(i64),
}

/// The WHERE clause of `query` (from constant fragments) and its parameters.
fn filter(query: &AuditQuery) -> Result<(String, Vec<Arg>)> {
    let mut clauses: Vec<String> = Vec::new();
    let mut args = Vec::new();
    for (col, matcher) in &query.terms {
        let c = column(*col);
        match matcher {
            AuditMatch::Exact(v) => {
                clauses.push(format!("{c} = ?"));
                args.push(Arg::Text(v.clone()));
            }
            AuditMatch::Contains(v) => {
                clauses.push(format!("instr({c}, ?) > 0"));
                args.push(Arg::Text(v.clone()));
            }
            AuditMatch::AnyOf(vs) => {
                clauses.push(format!("{c} IN (SELECT value FROM json_each(?))"));
                args.push(Arg::Text(json(vs)?));
            }
        }
    }
    if let Some(from) = query.from_ms {
        clauses.push("op_time >= ?".into());
        args.push(Arg::Int(from));
    }
    if let Some(to) = query.to_ms {
        clauses.push("op_time <= ?".into());
        args.push(Arg::Int(to));
    }
    if let Some(projects) = &query.projects {
        clauses.push("project IN (SELECT value FROM json_each(?))".into());
        args.push(Arg::Text(json(projects)?));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    Ok((sql, args))
}

fn bind_all<'q>(mut statement: super::SqliteQuery<'q>, args: &[Arg]) -> super::SqliteQuery<'q> {
    for arg in args {
        statement = match arg {
            Arg::Text(t) => statement.bind(t.clone()),
            Arg::Int(i) => statement.bind(*i),
        };
    }
    statement
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, batch: &AuditBatch) -> Result<()> {
        if batch.entries.is_empty() && batch.pulls.is_empty() {
            return Ok(());
        }
        let entries: Vec<_> = batch
            .entries
            .iter()
            .map(|e| {
                (
                    e.op_time_ms,
                    &e.username,
                    &e.client,
                    &e.operation,
                    &e.resource_type,
                    &e.resource,
                    &e.project,
                    e.success,
                    &e.reason,
                    e.count,
                )
            })
            .collect();
        let pulls: Vec<_> = batch
            .pulls
            .iter()
            .map(|p| (&p.repository, &p.digest, p.count, p.last_ms))
            .collect();
        let (entries, pulls) = (json(&entries)?, json(&pulls)?);
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        if !batch.entries.is_empty() {
            sqlx::query(
                "INSERT INTO audit_log (op_time, username, client, operation, resource_type, resource, project, success, reason, count)
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
                        json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
                        json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'),
                        json_extract(value, '$[9]')
                 FROM json_each(?)",
            )
            .bind(&entries)
            .execute(&mut *tx)
            .await?;
        }
        if !batch.pulls.is_empty() {
            // Manifests deleted since their pull are skipped by the joins.
            sqlx::query(
                "WITH p(repo, digest, n, t) AS (
                   SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                          json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(?))
                 INSERT INTO artifact_pulls (repository_id, digest, pull_count, pull_time)
                 SELECT m.repository_id, m.digest, p.n, p.t FROM p
                 JOIN repositories r ON r.name = p.repo
                 JOIN manifests m ON m.repository_id = r.id AND m.digest = p.digest
                 WHERE true
                 ON CONFLICT (repository_id, digest) DO UPDATE SET
                   pull_count = pull_count + excluded.pull_count,
                   pull_time = max(pull_time, excluded.pull_time)",
            )
            .bind(&pulls)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "WITH p(repo, digest, n) AS (
                   SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                          json_extract(value, '$[2]') FROM json_each(?)),
                 counted(repo, n) AS (
                   SELECT p.repo, sum(p.n) FROM p
                   JOIN repositories r ON r.name = p.repo
                   JOIN manifests m ON m.repository_id = r.id AND m.digest = p.digest
                   GROUP BY p.repo)
                 UPDATE repositories SET pull_count = pull_count + (SELECT n FROM counted WHERE counted.repo = repositories.name)
                 WHERE name IN (SELECT repo FROM counted)",
            )
            .bind(&pulls)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        drop(conn);
        self.wal.wait_durable().await?;
        Ok(())
    }

    async fn audit_entries(&self, query: &AuditQuery) -> Result<(Vec<AuditEntry>, u64)> {
        let (where_sql, args) = filter(query)?;
        let mut order: Vec<String> = query
            .sort
            .iter()
            .map(|(c, desc)| format!("{} {}", column(*c), if *desc { "DESC" } else { "ASC" }))
            .collect();
        let last_desc = query.sort.last().is_none_or(|(_, desc)| *desc);
        order.push(format!("id {}", if last_desc { "DESC" } else { "ASC" }));
        let sql = format!(
            "SELECT id, op_time, username, client, operation, resource_type, resource, project, success, reason, count
             FROM audit_log{where_sql} ORDER BY {} LIMIT ? OFFSET ?",
            order.join(", ")
        );
        // The statement is built from the constant fragments above; values are bound.
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &args)
            .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(query.offset).unwrap_or(i64::MAX))
            .fetch_all(&self.reader)
            .await?;
        let count_sql = format!("SELECT COUNT(*) FROM audit_log{where_sql}");
        let total: i64 = bind_all(sqlx::query(sqlx::AssertSqlSafe(count_sql)), &args)
            .fetch_one(&self.reader)
            .await?
            .try_get(0)?;
        let entries = rows
            .iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    record: AuditRecord {
                        op_time_ms: row.try_get("op_time")?,
                        username: row.try_get("username")?,
                        client: row.try_get("client")?,
                        operation: row.try_get("operation")?,
                        resource_type: row.try_get("resource_type")?,
                        resource: row.try_get("resource")?,
                        project: row.try_get("project")?,
                        success: row.try_get("success")?,
                        reason: row.try_get("reason")?,
                        count: row.try_get::<i64, _>("count")?.max(0) as u64,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((entries, total.max(0) as u64))
    }

    async fn delete_audit_before(&self, before_ms: i64, limit: u64) -> Result<u64> {
        let statement = sqlx::query(
            "DELETE FROM audit_log WHERE id IN
               (SELECT id FROM audit_log WHERE op_time < ? ORDER BY op_time LIMIT ?)",
        )
        .bind(before_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.execute_durably(statement).await
    }

    async fn artifact_pulls(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<PullStats>> {
        let row = sqlx::query(
            "SELECT p.pull_count, p.pull_time FROM artifact_pulls p
             JOIN repositories r ON r.id = p.repository_id
             WHERE r.name = ? AND p.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(PullStats {
                count: row.try_get::<i64, _>("pull_count")?.max(0) as u64,
                last_ms: row.try_get("pull_time")?,
            })
        })
        .transpose()
    }

    async fn repository_pulls(&self, repository: &RepositoryName) -> Result<Option<u64>> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT pull_count FROM repositories WHERE name = ?")
                .bind(repository.as_str())
                .fetch_optional(&self.reader)
                .await?;
        Ok(count.map(|c| c.max(0) as u64))
    }
}
