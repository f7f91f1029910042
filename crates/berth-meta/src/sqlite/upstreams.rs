//! The SQLite backend's upstream registries, proxy-cache projects and secret-sealing keys.
//! Every write is durable before it returns (rare, and an operator expects it to stay).

use async_trait::async_trait;
use sqlx::Row;

use super::{SqliteQuery, SqliteStore};
use crate::rows::{UPSTREAM_COLUMNS, proxy_tag_row, upstream_row};
use crate::upstreams::{
    NewUpstream, ProxyTagCheck, SecretKey, Upstream, UpstreamDeletion, UpstreamStore,
};
use crate::{MetaError, Result, now};

/// Binds an upstream's fields in the order of the `INSERT` and `UPDATE` below.
fn bind_fields<'q>(statement: SqliteQuery<'q>, u: &'q NewUpstream) -> SqliteQuery<'q> {
    let credential = u.credential.as_ref();
    statement
        .bind(&u.name)
        .bind(&u.kind)
        .bind(&u.url)
        .bind(&u.description)
        .bind(u.insecure)
        .bind(u.ca_cert.as_deref())
        .bind(credential.map(|c| c.kind.as_str()))
        .bind(credential.map(|c| c.access_key.as_str()))
        .bind(credential.map(|c| c.sealed_secret.as_slice()))
}

fn conflict_or(e: sqlx::Error, name: &str) -> MetaError {
    if e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
    {
        MetaError::Conflict(format!("registry {name}"))
    } else {
        e.into()
    }
}

#[async_trait]
impl UpstreamStore for SqliteStore {
    async fn create_upstream(&self, upstream: &NewUpstream) -> Result<i64> {
        let at = now();
        let statement = sqlx::query(
            "INSERT INTO registries (name, kind, url, description, insecure, ca_cert,
                 credential_type, access_key, access_secret, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        let statement = bind_fields(statement, upstream).bind(at).bind(at);
        let done = statement
            .execute(&mut *self.write().await?)
            .await
            .map_err(|e| conflict_or(e, &upstream.name))?;
        self.wal.wait_durable().await?;
        Ok(done.last_insert_rowid())
    }

    async fn upstream_by_id(&self, id: i64) -> Result<Option<Upstream>> {
        let sql = format!("SELECT {UPSTREAM_COLUMNS} FROM registries WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(upstream_row).transpose()
    }

    async fn list_upstreams(&self) -> Result<Vec<Upstream>> {
        let sql = format!("SELECT {UPSTREAM_COLUMNS} FROM registries ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(upstream_row).collect()
    }

    async fn update_upstream(&self, id: i64, upstream: &NewUpstream) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE registries SET name = ?, kind = ?, url = ?, description = ?, insecure = ?,
                 ca_cert = ?, credential_type = ?, access_key = ?, access_secret = ?,
                 updated_at = ?
             WHERE id = ?",
        );
        let statement = bind_fields(statement, upstream).bind(now()).bind(id);
        let done = statement
            .execute(&mut *self.write().await?)
            .await
            .map_err(|e| conflict_or(e, &upstream.name))?;
        self.wal.wait_durable().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_upstream(&self, id: i64) -> Result<UpstreamDeletion> {
        // One writer: the check and the delete see the same rows.
        let mut writer = self.write().await?;
        let used: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM proxy_projects WHERE registry_id = ?1)
                 OR EXISTS (SELECT 1 FROM replication_policies
                            WHERE src_registry_id = ?1 OR dest_registry_id = ?1)",
        )
        .bind(id)
        .fetch_one(&mut *writer)
        .await?;
        if used {
            return Ok(UpstreamDeletion::InUse);
        }
        let done = sqlx::query("DELETE FROM registries WHERE id = ?")
            .bind(id)
            .execute(&mut *writer)
            .await?;
        drop(writer);
        if done.rows_affected() == 0 {
            return Ok(UpstreamDeletion::Missing);
        }
        self.wal.wait_durable().await?;
        Ok(UpstreamDeletion::Deleted)
    }

    async fn set_project_upstream(&self, project_id: i64, upstream_id: i64) -> Result<()> {
        let statement = sqlx::query(
            "INSERT INTO proxy_projects (project_id, registry_id) VALUES (?, ?)
             ON CONFLICT (project_id) DO UPDATE SET registry_id = excluded.registry_id",
        )
        .bind(project_id)
        .bind(upstream_id);
        self.execute_durably(statement).await?;
        Ok(())
    }

    async fn project_upstream(&self, project: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT pp.registry_id FROM proxy_projects pp JOIN projects p ON p.id = pp.project_id
             WHERE p.name = ?",
        )
        .bind(project)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn secret_keys(&self) -> Result<Vec<SecretKey>> {
        let rows =
            sqlx::query("SELECT kid, key, created_at FROM secret_keys ORDER BY created_at, kid")
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(SecretKey {
                    kid: row.try_get("kid")?,
                    key: row.try_get("key")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn add_secret_key(&self, key: &SecretKey) -> Result<bool> {
        let statement = sqlx::query(
            "INSERT INTO secret_keys (kid, key, created_at) VALUES (?, ?, ?)
             ON CONFLICT (kid) DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.key)
        .bind(key.created_at);
        Ok(self.execute_durably(statement).await? > 0)
    }

    // The proxy cache's records are hints: they commit without waiting for a flush (a
    // record lost to a power cut costs one more question to the upstream).

    async fn proxy_tag_check(&self, repository: &str, tag: &str) -> Result<Option<ProxyTagCheck>> {
        let row = sqlx::query(
            "SELECT repository, tag, digest, checked_at, pulled_at FROM proxy_tags
             WHERE repository = ? AND tag = ?",
        )
        .bind(repository)
        .bind(tag)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(proxy_tag_row).transpose()
    }

    async fn record_proxy_check(
        &self,
        repository: &str,
        tag: &str,
        digest: &str,
        checked_at_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO proxy_tags (repository, tag, digest, checked_at, pulled_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (repository, tag) DO UPDATE
             SET digest = excluded.digest, checked_at = excluded.checked_at
             WHERE excluded.checked_at >= proxy_tags.checked_at",
        )
        .bind(repository)
        .bind(tag)
        .bind(digest)
        .bind(checked_at_ms)
        .execute(&mut *self.write().await?)
        .await?;
        Ok(())
    }

    async fn record_proxy_pull(
        &self,
        repository: &str,
        tag: &str,
        pulled_at_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE proxy_tags SET pulled_at = ?3
             WHERE repository = ?1 AND tag = ?2 AND pulled_at < ?3",
        )
        .bind(repository)
        .bind(tag)
        .bind(pulled_at_ms)
        .execute(&mut *self.write().await?)
        .await?;
        Ok(())
    }

    async fn proxy_tags_to_check(
        &self,
        pulled_since_ms: i64,
        checked_before_ms: i64,
        limit: u64,
    ) -> Result<Vec<ProxyTagCheck>> {
        let rows = sqlx::query(
            "SELECT repository, tag, digest, checked_at, pulled_at FROM proxy_tags
             WHERE checked_at < ? AND pulled_at >= ?
             ORDER BY checked_at, repository, tag LIMIT ?",
        )
        .bind(checked_before_ms)
        .bind(pulled_since_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(proxy_tag_row).collect()
    }

    async fn forget_proxy_tag(&self, repository: &str, tag: &str) -> Result<()> {
        sqlx::query("DELETE FROM proxy_tags WHERE repository = ? AND tag = ?")
            .bind(repository)
            .bind(tag)
            .execute(&mut *self.write().await?)
            .await?;
        Ok(())
    }
}
