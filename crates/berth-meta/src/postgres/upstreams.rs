//! The PostgreSQL backend's upstream registries, proxy-cache projects and secret-sealing
//! keys. Each write is one statement; the foreign key settles a registry deleted while a
//! node binds a project to it.

use async_trait::async_trait;
use sqlx::Row;

use super::{PgQuery, PgStore};
use crate::rows::{UPSTREAM_COLUMNS, proxy_tag_row, upstream_row};
use crate::upstreams::{
    NewUpstream, ProxyTagCheck, SecretKey, Upstream, UpstreamDeletion, UpstreamStore,
};
use crate::{MetaError, Result, now};

/// Binds an upstream's fields as `$1` … `$9` of the `INSERT` and `UPDATE` below.
fn bind_fields<'q>(statement: PgQuery<'q>, u: &'q NewUpstream) -> PgQuery<'q> {
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
impl UpstreamStore for PgStore {
    async fn create_upstream(&self, upstream: &NewUpstream) -> Result<i64> {
        let at = now();
        let statement = sqlx::query(
            "INSERT INTO registries (name, kind, url, description, insecure, ca_cert,
                 credential_type, access_key, access_secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        );
        let row = bind_fields(statement, upstream)
            .bind(at)
            .bind(at)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| conflict_or(e, &upstream.name))?;
        Ok(row.try_get(0)?)
    }

    async fn upstream_by_id(&self, id: i64) -> Result<Option<Upstream>> {
        let sql = format!("SELECT {UPSTREAM_COLUMNS} FROM registries WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(upstream_row).transpose()
    }

    async fn list_upstreams(&self) -> Result<Vec<Upstream>> {
        let sql = format!("SELECT {UPSTREAM_COLUMNS} FROM registries ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(upstream_row).collect()
    }

    async fn update_upstream(&self, id: i64, upstream: &NewUpstream) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE registries SET name = $1, kind = $2, url = $3, description = $4,
                 insecure = $5, ca_cert = $6, credential_type = $7, access_key = $8,
                 access_secret = $9, updated_at = $10
             WHERE id = $11",
        );
        let done = bind_fields(statement, upstream)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict_or(e, &upstream.name))?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_upstream(&self, id: i64) -> Result<UpstreamDeletion> {
        let done = sqlx::query(
            "DELETE FROM registries WHERE id = $1
             AND NOT EXISTS (SELECT 1 FROM proxy_projects WHERE registry_id = $1)
             AND NOT EXISTS (SELECT 1 FROM replication_policies
                             WHERE src_registry_id = $1 OR dest_registry_id = $1)",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(UpstreamDeletion::Deleted);
        }
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM registries WHERE id = $1)")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        Ok(if exists {
            UpstreamDeletion::InUse
        } else {
            UpstreamDeletion::Missing
        })
    }

    async fn set_project_upstream(&self, project_id: i64, upstream_id: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO proxy_projects (project_id, registry_id) VALUES ($1, $2)
             ON CONFLICT (project_id) DO UPDATE SET registry_id = excluded.registry_id",
        )
        .bind(project_id)
        .bind(upstream_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn project_upstream(&self, project: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT pp.registry_id FROM proxy_projects pp JOIN projects p ON p.id = pp.project_id
             WHERE p.name = $1",
        )
        .bind(project)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn secret_keys(&self) -> Result<Vec<SecretKey>> {
        let rows =
            sqlx::query("SELECT kid, key, created_at FROM secret_keys ORDER BY created_at, kid")
                .fetch_all(&self.pool)
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
        let done = sqlx::query(
            "INSERT INTO secret_keys (kid, key, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (kid) DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.key)
        .bind(key.created_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // The proxy cache's records are hints, written as they come: several nodes may record
    // answers for one tag at once, and the latest check wins.

    async fn proxy_tag_check(&self, repository: &str, tag: &str) -> Result<Option<ProxyTagCheck>> {
        let row = sqlx::query(
            "SELECT repository, tag, digest, checked_at, pulled_at FROM proxy_tags
             WHERE repository = $1 AND tag = $2",
        )
        .bind(repository)
        .bind(tag)
        .fetch_optional(&self.pool)
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
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (repository, tag) DO UPDATE
             SET digest = excluded.digest, checked_at = excluded.checked_at
             WHERE excluded.checked_at >= proxy_tags.checked_at",
        )
        .bind(repository)
        .bind(tag)
        .bind(digest)
        .bind(checked_at_ms)
        .execute(&self.pool)
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
            "UPDATE proxy_tags SET pulled_at = $3
             WHERE repository = $1 AND tag = $2 AND pulled_at < $3",
        )
        .bind(repository)
        .bind(tag)
        .bind(pulled_at_ms)
        .execute(&self.pool)
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
             WHERE checked_at < $1 AND pulled_at >= $2
             ORDER BY checked_at, repository, tag LIMIT $3",
        )
        .bind(checked_before_ms)
        .bind(pulled_since_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(proxy_tag_row).collect()
    }

    async fn forget_proxy_tag(&self, repository: &str, tag: &str) -> Result<()> {
        sqlx::query("DELETE FROM proxy_tags WHERE repository = $1 AND tag = $2")
            .bind(repository)
            .bind(tag)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
