//! The PostgreSQL backend's audit log and pull statistics. A batch is a handful of
//! statements whatever its size: its rows travel as arrays expanded by `unnest`.

use async_trait::async_trait;
use berth_core::{Digest, RepositoryName};
use sqlx::Row;

use super::{PgQuery, PgStore, retrying};
use crate::Result;
use crate::audit::{
    AuditBatch, AuditColumn, AuditEntry, AuditMatch, AuditQuery, AuditRecord, AuditStore, PullStats,
};

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
    Texts(Vec<String>),
    Int(i64),
}

/// The WHERE clause of `query` (from constant fragments, `$1`…) and its parameters.
fn filter(query: &AuditQuery) -> (String, Vec<Arg>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut args = Vec::new();
    // The placeholder of the parameter about to be pushed.
    let next = |args: &Vec<Arg>| format!("${}", args.len() + 1);
    for (col, matcher) in &query.terms {
        let c = column(*col);
        match matcher {
            AuditMatch::Exact(v) => {
                clauses.push(format!("{c} = {}", next(&args)));
                args.push(Arg::Text(v.clone()));
            }
            AuditMatch::Contains(v) => {
                clauses.push(format!("strpos({c}, {}) > 0", next(&args)));
                args.push(Arg::Text(v.clone()));
            }
            AuditMatch::AnyOf(vs) => {
                clauses.push(format!("{c} = ANY({})", next(&args)));
                args.push(Arg::Texts(vs.clone()));
            }
        }
    }
    if let Some(from) = query.from_ms {
        clauses.push(format!("op_time >= {}", next(&args)));
        args.push(Arg::Int(from));
    }
    if let Some(to) = query.to_ms {
        clauses.push(format!("op_time <= {}", next(&args)));
        args.push(Arg::Int(to));
    }
    if let Some(projects) = &query.projects {
        clauses.push(format!("project = ANY({})", next(&args)));
        args.push(Arg::Texts(projects.clone()));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

fn bind_all<'q>(mut statement: PgQuery<'q>, args: &[Arg]) -> PgQuery<'q> {
    for arg in args {
        statement = match arg {
            Arg::Text(t) => statement.bind(t.clone()),
            Arg::Texts(t) => statement.bind(t.clone()),
            Arg::Int(i) => statement.bind(*i),
        };
    }
    statement
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgStore {
    /// One try of [`AuditStore::append_audit`], in one transaction.
    async fn append_audit_once(&self, batch: &AuditBatch) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if !batch.entries.is_empty() {
            let e = &batch.entries;
            sqlx::query(
                "INSERT INTO audit_log (op_time, username, client, operation, resource_type, resource, project, success, reason, count)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::text[], $8::bool[], $9::text[], $10::bigint[])",
            )
            .bind(e.iter().map(|r| r.op_time_ms).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.username.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.client.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.operation.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.resource_type.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.resource.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.project.as_deref()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.success).collect::<Vec<_>>())
            .bind(e.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|r| clamp(r.count)).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !batch.pulls.is_empty() {
            let p = &batch.pulls;
            let repos: Vec<&str> = p.iter().map(|r| r.repository.as_str()).collect();
            let digests: Vec<&str> = p.iter().map(|r| r.digest.as_str()).collect();
            let counts: Vec<i64> = p.iter().map(|r| clamp(r.count)).collect();
            let times: Vec<i64> = p.iter().map(|r| r.last_ms).collect();
            // The repositories' rows first, in id order: a push holds its repository's row
            // before it touches the manifests, so taking them in the same order (and all
            // in one order) leaves no cycle to deadlock in.
            sqlx::query(
                "SELECT id FROM repositories WHERE name = ANY($1) ORDER BY id FOR NO KEY UPDATE",
            )
            .bind(&repos)
            .execute(&mut *tx)
            .await?;
            // Manifests deleted since their pull are skipped by the joins; a manifest pulled
            // twice in the batch is one row.
            sqlx::query(
                "WITH p AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS p(repo, digest, n, t))
                 INSERT INTO artifact_pulls (repository_id, digest, pull_count, pull_time)
                 SELECT m.repository_id, m.digest, sum(p.n)::bigint, max(p.t) FROM p
                 JOIN repositories r ON r.name = p.repo
                 JOIN manifests m ON m.repository_id = r.id AND m.digest = p.digest
                 GROUP BY m.repository_id, m.digest
                 ORDER BY m.repository_id, m.digest
                 ON CONFLICT (repository_id, digest) DO UPDATE SET
                   pull_count = artifact_pulls.pull_count + excluded.pull_count,
                   pull_time = GREATEST(artifact_pulls.pull_time, excluded.pull_time)",
            )
            .bind(&repos)
            .bind(&digests)
            .bind(&counts)
            .bind(&times)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "WITH p AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) AS p(repo, digest, n)),
                 counted AS (
                   SELECT r.id, sum(p.n)::bigint AS n FROM p
                   JOIN repositories r ON r.name = p.repo
                   JOIN manifests m ON m.repository_id = r.id AND m.digest = p.digest
                   GROUP BY r.id)
                 UPDATE repositories SET pull_count = repositories.pull_count + counted.n
                 FROM counted WHERE repositories.id = counted.id",
            )
            .bind(&repos)
            .bind(&digests)
            .bind(&counts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, batch: &AuditBatch) -> Result<()> {
        if batch.entries.is_empty() && batch.pulls.is_empty() {
            return Ok(());
        }
        retrying(|| self.append_audit_once(batch)).await
    }

    async fn audit_entries(&self, query: &AuditQuery) -> Result<(Vec<AuditEntry>, u64)> {
        let (where_sql, args) = filter(query);
        let mut order: Vec<String> = query
            .sort
            .iter()
            .map(|(c, desc)| format!("{} {}", column(*c), if *desc { "DESC" } else { "ASC" }))
            .collect();
        let last_desc = query.sort.last().is_none_or(|(_, desc)| *desc);
        order.push(format!("id {}", if last_desc { "DESC" } else { "ASC" }));
        let sql = format!(
            "SELECT id, op_time, username, client, operation, resource_type, resource, project, success, reason, count
             FROM audit_log{where_sql} ORDER BY {} LIMIT ${} OFFSET ${}",
            order.join(", "),
            args.len() + 1,
            args.len() + 2,
        );
        let mut tx = self.snapshot().await?;
        // The statement is built from the constant fragments above; values are bound.
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &args)
            .bind(clamp(query.limit))
            .bind(clamp(query.offset))
            .fetch_all(&mut *tx)
            .await?;
        let count_sql = format!("SELECT COUNT(*) FROM audit_log{where_sql}");
        let total: i64 = bind_all(sqlx::query(sqlx::AssertSqlSafe(count_sql)), &args)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
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
        let done = sqlx::query(
            "DELETE FROM audit_log WHERE id IN
               (SELECT id FROM audit_log WHERE op_time < $1 ORDER BY op_time LIMIT $2)",
        )
        .bind(before_ms)
        .bind(clamp(limit))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn artifact_pulls(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<PullStats>> {
        let row = sqlx::query(
            "SELECT p.pull_count, p.pull_time FROM artifact_pulls p
             JOIN repositories r ON r.id = p.repository_id
             WHERE r.name = $1 AND p.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
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
            sqlx::query_scalar("SELECT pull_count FROM repositories WHERE name = $1")
                .bind(repository.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(count.map(|c| c.max(0) as u64))
    }
}
