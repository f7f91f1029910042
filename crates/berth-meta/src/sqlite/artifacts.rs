//! The SQLite backend's views for Harbor's API: repository summaries and pages of artifacts
//! with their tags, children and accessories, each page in one read transaction of three
//! statements (the repository, the page, the total), whatever its size.
//!
//! A page is chosen on the `manifests_pushed` index alone (which holds what decides whether
//! a manifest is listed), then only its rows are read, with their tags and sizes, by id.
//! Statements name the indexes they rely on (`INDEXED BY`): without statistics SQLite may
//! guess that scanning a repository's tags beats an index on their manifest, which turns a
//! page into a quadratic walk; a named index cannot be guessed away.

use async_trait::async_trait;
use berth_core::mgmt::{ArtifactFilter, ArtifactKey, ArtifactWith, Order, TagFilter};
use berth_core::{Digest, Reference, RepositoryName, Tag};
use sqlx::{Connection, Row, Sqlite, Transaction};

use super::{SqliteQuery, SqliteStore, insert_tag};
use crate::rows::{
    artifact_row, count, limit, parse_digest, repository_order, repository_row, tag_order, text,
};
use crate::{
    ArtifactDeletion, ArtifactInfo, ArtifactQuery, ArtifactStore, MetaError, Paged, RepositoryInfo,
    RepositoryQuery, Result, TagAddition, TagInfo, TagQuery, now,
};

/// The bytes of the blobs the manifest `$m` references (config and layers).
macro_rules! blob_bytes {
    ($m:literal) => {
        concat!(
            "(SELECT COALESCE(SUM(b.size), 0) FROM manifest_references br JOIN blobs b ON b.digest = br.child_digest",
            " WHERE br.repository_id = ", $m, ".repository_id AND br.manifest_digest = ", $m,
            ".digest AND br.child_is_manifest = 0)"
        )
    };
}

/// Harbor's size of the manifest `$m`: its bytes, its blobs', and its child manifests' with
/// their blobs (an index counts its platforms).
macro_rules! artifact_size {
    ($m:literal) => {
        concat!(
            "(", $m, ".size + ", blob_bytes!($m),
            " + (SELECT COALESCE(SUM(c.size + ", blob_bytes!("c"), "), 0) FROM manifest_references cr",
            " JOIN manifests c ON c.repository_id = cr.repository_id AND c.digest = cr.child_digest",
            " WHERE cr.repository_id = ", $m, ".repository_id AND cr.manifest_digest = ", $m,
            ".digest AND cr.child_is_manifest = 1))"
        )
    };
}

/// Harbor's base collection: `m` is listed unless it is an accessory (its subject is in
/// the repository) or an untagged child of an index of the repository.
macro_rules! listed {
    () => {
        concat!(
            "((m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s",
            " WHERE s.repository_id = m.repository_id AND s.digest = m.subject))",
            " AND (NOT EXISTS (SELECT 1 FROM manifest_references p INDEXED BY manifest_references_child",
            " WHERE p.repository_id = m.repository_id AND p.child_digest = m.digest AND p.child_is_manifest = 1)",
            " OR EXISTS (SELECT 1 FROM tags tg INDEXED BY tags_manifest",
            " WHERE tg.repository_id = m.repository_id AND tg.manifest_digest = m.digest)))"
        )
    };
}

/// The artifacts of a listing: ?1 repository id, ?2 every manifest (`base=*`), ?3 tag mode
/// (1 tagged, 2 untagged, 3 a tag containing ?4), ?5/?6 digest exact/contains, ?7/?8 Harbor
/// media type exact/contains, ?9/?10 manifest media type exact/contains, ?11 nothing.
macro_rules! artifact_filter {
    () => {
        concat!(
            "m.repository_id = ?1 AND (?2 OR ", listed!(), ")",
            " AND CASE ?3",
            " WHEN 1 THEN EXISTS (SELECT 1 FROM tags tg INDEXED BY tags_manifest WHERE tg.repository_id = m.repository_id AND tg.manifest_digest = m.digest)",
            " WHEN 2 THEN NOT EXISTS (SELECT 1 FROM tags tg INDEXED BY tags_manifest WHERE tg.repository_id = m.repository_id AND tg.manifest_digest = m.digest)",
            " WHEN 3 THEN EXISTS (SELECT 1 FROM tags tg INDEXED BY tags_manifest WHERE tg.repository_id = m.repository_id AND tg.manifest_digest = m.digest",
            " AND instr(tg.name, ?4) > 0)",
            " ELSE 1 END",
            " AND (?5 IS NULL OR m.digest = ?5) AND (?6 IS NULL OR instr(m.digest, ?6) > 0)",
            " AND (?7 IS NULL OR COALESCE(m.config_media_type, m.media_type) = ?7)",
            " AND (?8 IS NULL OR instr(COALESCE(m.config_media_type, m.media_type), ?8) > 0)",
            " AND (?9 IS NULL OR m.media_type = ?9) AND (?10 IS NULL OR instr(m.media_type, ?10) > 0)",
            " AND NOT ?11"
        )
    };
}

/// What an artifact row carries; `$tags` and `$accessories` are the parameters saying
/// whether to gather its tags and its accessories.
macro_rules! artifact_columns {
    ($tags:literal, $accessories:literal) => {
        concat!(
            "m.id, m.repository_id, m.digest, m.media_type, m.config_media_type, m.artifact_type,",
            " m.content, m.subject, m.annotations, m.created_at, ", artifact_size!("m"), " AS total_size,",
            " (SELECT ap.pull_time FROM artifact_pulls ap WHERE ap.repository_id = m.repository_id",
            " AND ap.digest = m.digest AND ap.pull_count > 0) AS pulled_at_ms,",
            " CASE WHEN ", $tags, " THEN (SELECT json_group_array(json_array(tg.id, tg.name, tg.updated_at))",
            " FROM tags tg INDEXED BY tags_manifest WHERE tg.repository_id = m.repository_id AND tg.manifest_digest = m.digest) END AS tags,",
            " (SELECT json_group_array(json_array(cr.child_digest, c.id)) FROM manifest_references cr",
            " JOIN manifests c ON c.repository_id = cr.repository_id AND c.digest = cr.child_digest",
            " WHERE cr.repository_id = m.repository_id AND cr.manifest_digest = m.digest",
            " AND cr.child_is_manifest = 1) AS children,",
            " CASE WHEN ", $accessories, " THEN (SELECT json_group_array(json_array(a.id, a.digest, a.artifact_type, ",
            artifact_size!("a"), ", a.created_at))",
            " FROM manifests a WHERE a.repository_id = m.repository_id AND a.subject = m.digest) END AS accessories"
        )
    };
}

/// A page in push order, newest first (Harbor's default) or oldest first: chosen on the
/// `manifests_pushed` index, then only the page's rows are read.
macro_rules! artifact_page {
    ($direction:literal) => {
        concat!(
            "WITH page AS MATERIALIZED (SELECT m.id FROM manifests m INDEXED BY manifests_pushed WHERE ",
            artifact_filter!(),
            " ORDER BY m.created_at ", $direction, ", m.id ", $direction, " LIMIT ?12 OFFSET ?13)",
            " SELECT ", artifact_columns!("?14", "?15"),
            " FROM page JOIN manifests m ON m.id = page.id",
            " ORDER BY m.created_at ", $direction, ", m.id ", $direction
        )
    };
}

const ARTIFACTS_NEWEST_FIRST: &str = artifact_page!("DESC");
const ARTIFACTS_OLDEST_FIRST: &str = artifact_page!("ASC");
const ARTIFACT_COUNT: &str = concat!(
    "SELECT COUNT(*) FROM manifests m INDEXED BY manifests_pushed WHERE ",
    artifact_filter!()
);
/// How many artifacts of the repository `$repo` Harbor's base collection has, without
/// walking it: every manifest (counted by migration 5's triggers) less those not listed, found among the
/// few that could be (manifests with a subject, children of an index).
macro_rules! listed_count {
    ($repo:literal) => {
        concat!(
            "((SELECT manifest_count FROM repositories WHERE id = ", $repo, ")",
            " - (SELECT COUNT(*) FROM (",
            "SELECT digest FROM manifests INDEXED BY manifests_subject WHERE repository_id = ", $repo,
            " AND subject IS NOT NULL",
            " UNION SELECT child_digest FROM manifest_references INDEXED BY manifest_references_child",
            " WHERE repository_id = ", $repo, " AND child_is_manifest = 1) AS candidate",
            " JOIN manifests m ON m.repository_id = ", $repo, " AND m.digest = candidate.digest",
            " WHERE NOT ", listed!(), "))"
        )
    };
}

const LISTED_COUNT: &str = concat!("SELECT ", listed_count!("?1"));
const ARTIFACT_BY_DIGEST: &str = concat!(
    "SELECT ",
    artifact_columns!("?3", "?4"),
    " FROM manifests m WHERE m.repository_id = ?1 AND m.digest = ?2"
);
const ARTIFACT_BY_TAG: &str = concat!(
    "SELECT ",
    artifact_columns!("?3", "?4"),
    " FROM tags t JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest",
    " WHERE t.repository_id = ?1 AND t.name = ?2"
);

/// Repositories: ?1 JSON array of projects (NULL: all), ?2/?3 name exact/contains.
macro_rules! repository_filter {
    () => {
        concat!(
            "(?1 IS NULL OR (instr(r.name, '/') > 0",
            " AND substr(r.name, 1, instr(r.name, '/') - 1) IN (SELECT value FROM json_each(?1))))",
            " AND (?2 IS NULL OR r.name = ?2) AND (?3 IS NULL OR instr(r.name, ?3) > 0)"
        )
    };
}

/// Repository order by ?4 (see [`repository_order`]); ties newest first.
macro_rules! repository_order {
    () => {
        concat!(
            " ORDER BY CASE WHEN ?4 = 1 THEN r.name END ASC, CASE WHEN ?4 = 2 THEN r.name END DESC,",
            " CASE WHEN ?4 = 3 THEN r.created_at END ASC, CASE WHEN ?4 = 4 THEN r.created_at END DESC,",
            " CASE WHEN ?4 = 5 THEN r.updated_at END ASC, CASE WHEN ?4 = 6 THEN r.updated_at END DESC,",
            " CASE WHEN ?4 = 7 THEN r.id END ASC, r.id DESC"
        )
    };
}

/// A repository's row with its project and its artifact count.
macro_rules! repository_columns {
    () => {
        concat!(
            "r.id, r.name, p.id AS project_id, r.description, r.created_at, r.updated_at,",
            "r.blob_bytes, r.unique_blob_bytes, r.manifest_bytes, r.pull_count,",
            " ",
            listed_count!("r.id"),
            " AS artifact_count"
        )
    };
}

const REPOSITORY_PAGE: &str = concat!(
    "WITH page AS MATERIALIZED (SELECT r.id FROM repositories r WHERE ",
    repository_filter!(),
    repository_order!(),
    " LIMIT ?5 OFFSET ?6)",
    " SELECT ",
    repository_columns!(),
    " FROM page JOIN repositories r ON r.id = page.id",
    " LEFT JOIN projects p ON p.name = substr(r.name, 1, instr(r.name, '/') - 1)",
    repository_order!()
);
const REPOSITORY_COUNT: &str = concat!(
    "SELECT COUNT(*) FROM repositories r WHERE ",
    repository_filter!()
);
const REPOSITORY_BY_NAME: &str = concat!(
    "SELECT ",
    repository_columns!(),
    " FROM repositories r",
    " LEFT JOIN projects p ON p.name = substr(r.name, 1, instr(r.name, '/') - 1)",
    " WHERE r.name = ?1"
);

/// An artifact's tags: ?1 repository id, ?2 digest, ?3/?4 name exact/contains.
macro_rules! tag_filter {
    () => {
        concat!(
            "t.repository_id = ?1 AND t.manifest_digest = ?2",
            " AND (?3 IS NULL OR t.name = ?3) AND (?4 IS NULL OR instr(t.name, ?4) > 0)"
        )
    };
}

const TAG_PAGE: &str = concat!(
    "SELECT t.id, t.name, t.updated_at FROM tags t INDEXED BY tags_manifest WHERE ",
    tag_filter!(),
    " ORDER BY CASE WHEN ?5 = 1 THEN t.name END ASC, CASE WHEN ?5 = 2 THEN t.name END DESC,",
    " CASE WHEN ?5 = 3 THEN t.updated_at END ASC, CASE WHEN ?5 = 4 THEN t.updated_at END DESC,",
    " CASE WHEN ?5 = 5 THEN t.id END ASC, t.id DESC LIMIT ?6 OFFSET ?7"
);
const TAG_COUNT: &str = concat!(
    "SELECT COUNT(*) FROM tags t INDEXED BY tags_manifest WHERE ",
    tag_filter!()
);

/// The repository's id, in the transaction `tx`.
async fn repository_id(
    tx: &mut Transaction<'_, Sqlite>,
    name: &RepositoryName,
) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// Bind ?2..?11 of [`artifact_filter!`].
fn bind_filter<'q>(statement: SqliteQuery<'q>, query: &'q ArtifactQuery<'_>) -> SqliteQuery<'q> {
    let filter = query.filter;
    let (tag_mode, tag_text) = match &filter.tags {
        TagFilter::Any => (0, None),
        TagFilter::Tagged => (1, None),
        TagFilter::Untagged => (2, None),
        TagFilter::NameContains(v) => (3, Some(v.as_str())),
    };
    let digest = text(filter.digest.as_ref());
    let media = text(filter.media_type.as_ref());
    let manifest_media = text(filter.manifest_media_type.as_ref());
    statement
        .bind(filter.all)
        .bind(tag_mode)
        .bind(tag_text)
        .bind(digest.0)
        .bind(digest.1)
        .bind(media.0)
        .bind(media.1)
        .bind(manifest_media.0)
        .bind(manifest_media.1)
        .bind(filter.nothing)
}

impl SqliteStore {
    pub(super) async fn repository_page_of(
        &self,
        query: &RepositoryQuery<'_>,
    ) -> Result<Paged<RepositoryInfo>> {
        let projects = query
            .projects
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| MetaError::Corrupt(format!("project list: {e}")))?;
        let (exact, contains) = text(query.name);
        let mut conn = self.reader.acquire().await?;
        let mut tx = conn.begin().await?;
        let total: i64 = sqlx::query_scalar(REPOSITORY_COUNT)
            .bind(&projects)
            .bind(exact)
            .bind(contains)
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(REPOSITORY_PAGE)
            .bind(&projects)
            .bind(exact)
            .bind(contains)
            .bind(repository_order(query.order))
            .bind(limit(query.limit))
            .bind(limit(query.offset))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Paged {
            total: count(total),
            items: rows.iter().map(repository_row).collect::<Result<_>>()?,
        })
    }

    pub(super) async fn repository_info_of(
        &self,
        name: &RepositoryName,
    ) -> Result<Option<RepositoryInfo>> {
        let row = sqlx::query(REPOSITORY_BY_NAME)
            .bind(name.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(repository_row).transpose()
    }

    pub(super) async fn describe_repository(
        &self,
        name: &RepositoryName,
        description: &str,
    ) -> Result<bool> {
        let statement =
            sqlx::query("UPDATE repositories SET description = ?, updated_at = ? WHERE name = ?")
                .bind(description.to_owned())
                .bind(now())
                .bind(name.as_str().to_owned());
        Ok(self.execute_durably(statement).await? > 0)
    }

    pub(super) async fn remove_repository(&self, name: &RepositoryName) -> Result<bool> {
        // Links and manifests first, while the row is there for the usage triggers to find
        // the repository's namespace; references and tags go with the manifests (ON DELETE
        // CASCADE).
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        for statement in [
            "DELETE FROM repository_blobs WHERE repository_id = (SELECT id FROM repositories WHERE name = ?)",
            "DELETE FROM manifests WHERE repository_id = (SELECT id FROM repositories WHERE name = ?)",
        ] {
            sqlx::query(statement)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM repositories WHERE name = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        drop(conn);
        self.wal.wait_durable().await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl ArtifactStore for SqliteStore {
    async fn artifact_page(
        &self,
        repository: &RepositoryName,
        query: &ArtifactQuery<'_>,
    ) -> Result<Option<Paged<ArtifactInfo>>> {
        let mut conn = self.reader.acquire().await?;
        let mut tx = conn.begin().await?;
        let Some(repo_id) = repository_id(&mut tx, repository).await? else {
            return Ok(None);
        };
        let total: i64 = if *query.filter == ArtifactFilter::default() {
            // The default listing: counted without a walk (the same set, see the suite).
            sqlx::query_scalar(LISTED_COUNT)
                .bind(repo_id)
                .fetch_one(&mut *tx)
                .await?
        } else {
            bind_filter(sqlx::query(ARTIFACT_COUNT).bind(repo_id), query)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?
        };
        // `push_time` and `id` order alike: ids are given in push order.
        let sql = match query.order {
            Order {
                key: ArtifactKey::PushTime | ArtifactKey::Id,
                descending: true,
            } => ARTIFACTS_NEWEST_FIRST,
            Order {
                key: ArtifactKey::PushTime | ArtifactKey::Id,
                descending: false,
            } => ARTIFACTS_OLDEST_FIRST,
        };
        let rows = bind_filter(sqlx::query(sql).bind(repo_id), query)
            .bind(limit(query.limit))
            .bind(limit(query.offset))
            .bind(query.with.tags)
            .bind(query.with.accessories)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Paged {
            total: count(total),
            items: rows.iter().map(artifact_row).collect::<Result<_>>()?,
        }))
    }

    async fn artifact(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        with: ArtifactWith,
    ) -> Result<Option<ArtifactInfo>> {
        let mut conn = self.reader.acquire().await?;
        let mut tx = conn.begin().await?;
        let Some(repo_id) = repository_id(&mut tx, repository).await? else {
            return Ok(None);
        };
        let (sql, key) = match reference {
            Reference::Digest(digest) => (ARTIFACT_BY_DIGEST, digest.to_string()),
            Reference::Tag(tag) => (ARTIFACT_BY_TAG, tag.as_str().to_owned()),
        };
        let row = sqlx::query(sql)
            .bind(repo_id)
            .bind(key)
            .bind(with.tags)
            .bind(with.accessories)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(artifact_row).transpose()
    }

    async fn artifact_tags(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        query: &TagQuery<'_>,
    ) -> Result<Paged<TagInfo>> {
        let mut conn = self.reader.acquire().await?;
        let mut tx = conn.begin().await?;
        let Some(repo_id) = repository_id(&mut tx, repository).await? else {
            return Ok(Paged {
                total: 0,
                items: Vec::new(),
            });
        };
        let (exact, contains) = text(query.name);
        let digest = digest.to_string();
        let total: i64 = sqlx::query_scalar(TAG_COUNT)
            .bind(repo_id)
            .bind(&digest)
            .bind(exact)
            .bind(contains)
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(TAG_PAGE)
            .bind(repo_id)
            .bind(&digest)
            .bind(exact)
            .bind(contains)
            .bind(tag_order(query.order))
            .bind(limit(query.limit))
            .bind(limit(query.offset))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(TagInfo {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    pushed_at: row.try_get("updated_at")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Paged {
            total: count(total),
            items,
        })
    }

    async fn add_tag(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        tag: &Tag,
    ) -> Result<TagAddition> {
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        let Some(repo_id) = repository_id(&mut tx, repository).await? else {
            return Ok(TagAddition::NoArtifact);
        };
        let digest = digest.to_string();
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?")
                .bind(repo_id)
                .bind(&digest)
                .fetch_optional(&mut *tx)
                .await?;
        if stored.is_none() {
            return Ok(TagAddition::NoArtifact);
        }
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM tags WHERE repository_id = ? AND name = ?")
                .bind(repo_id)
                .bind(tag.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Ok(TagAddition::Exists);
        }
        insert_tag(&mut tx, repo_id, tag, &digest).await?;
        tx.commit().await?;
        drop(conn);
        self.wal.wait_durable().await?;
        Ok(TagAddition::Added)
    }

    async fn remove_tag_from(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        tag: &Tag,
    ) -> Result<bool> {
        let statement = sqlx::query(
            "DELETE FROM tags WHERE name = ? AND manifest_digest = ?
             AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(tag.as_str().to_owned())
        .bind(digest.to_string())
        .bind(repository.as_str().to_owned());
        Ok(self.execute_durably(statement).await? > 0)
    }

    async fn delete_artifact(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<ArtifactDeletion> {
        let mut conn = self.write().await?;
        let mut tx = conn.begin().await?;
        let Some(repo_id) = repository_id(&mut tx, repository).await? else {
            return Ok(ArtifactDeletion::NotFound);
        };
        let root = digest.to_string();
        if !manifest_exists(&mut tx, repo_id, &root).await? {
            return Ok(ArtifactDeletion::NotFound);
        }
        if let Some(parent) = parent_of(&mut tx, repo_id, &root).await? {
            return Ok(ArtifactDeletion::Referenced(parse_digest(&parent)?));
        }
        let mut pending = vec![(root, true)];
        let mut deleted = Vec::new();
        while let Some((digest, is_root)) = pending.pop() {
            // A child goes only if nothing else keeps it: no tag, no other index.
            if !is_root
                && (!manifest_exists(&mut tx, repo_id, &digest).await?
                    || parent_of(&mut tx, repo_id, &digest).await?.is_some()
                    || is_tagged(&mut tx, repo_id, &digest).await?)
            {
                continue;
            }
            let children: Vec<String> = sqlx::query_scalar(
                "SELECT child_digest FROM manifest_references
                 WHERE repository_id = ? AND manifest_digest = ? AND child_is_manifest = 1",
            )
            .bind(repo_id)
            .bind(&digest)
            .fetch_all(&mut *tx)
            .await?;
            let accessories: Vec<String> = sqlx::query_scalar(
                "SELECT digest FROM manifests WHERE repository_id = ? AND subject = ?",
            )
            .bind(repo_id)
            .bind(&digest)
            .fetch_all(&mut *tx)
            .await?;
            // Its tags and its references go with it (ON DELETE CASCADE).
            sqlx::query("DELETE FROM manifests WHERE repository_id = ? AND digest = ?")
                .bind(repo_id)
                .bind(&digest)
                .execute(&mut *tx)
                .await?;
            deleted.push(parse_digest(&digest)?);
            // Accessories are deleted with their subject, tagged or not (Harbor's hard
            // references); children only if nothing else keeps them.
            pending.extend(accessories.into_iter().map(|a| (a, true)));
            pending.extend(children.into_iter().map(|c| (c, false)));
        }
        tx.commit().await?;
        drop(conn);
        self.wal.wait_durable().await?;
        Ok(ArtifactDeletion::Deleted(deleted))
    }
}

async fn manifest_exists(
    tx: &mut Transaction<'_, Sqlite>,
    repo_id: i64,
    digest: &str,
) -> Result<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?")
            .bind(repo_id)
            .bind(digest)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

/// An index of the repository that lists `digest`, if any.
async fn parent_of(
    tx: &mut Transaction<'_, Sqlite>,
    repo_id: i64,
    digest: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT manifest_digest FROM manifest_references
         WHERE repository_id = ? AND child_digest = ? AND child_is_manifest = 1 LIMIT 1",
    )
    .bind(repo_id)
    .bind(digest)
    .fetch_optional(&mut **tx)
    .await?)
}

async fn is_tagged(tx: &mut Transaction<'_, Sqlite>, repo_id: i64, digest: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM tags WHERE repository_id = ? AND manifest_digest = ? LIMIT 1",
    )
    .bind(repo_id)
    .bind(digest)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}
