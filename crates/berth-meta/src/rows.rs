//! What the rows of the metadata views mean, written once for both backends: each function
//! is generic over sqlx's `Row`, so SQLite and PostgreSQL map a column the same way.

use std::str::FromStr;

use berth_core::Digest;
use berth_core::mgmt::{Order, RepositoryKey, TagKey, TextFilter};
use serde_json::{Map, Value};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::{AccessoryInfo, ArtifactInfo, MetaError, RepositoryInfo, Result, TagInfo};

/// The repository order parameter of both backends' `repository_order!`.
pub(crate) fn repository_order(order: Order<RepositoryKey>) -> i64 {
    let by = match order.key {
        RepositoryKey::Name => 1,
        RepositoryKey::CreationTime => 3,
        RepositoryKey::UpdateTime => 5,
        RepositoryKey::Id => 7,
    };
    by + i64::from(order.descending)
}

/// The tag order parameter of both backends' `TAG_PAGE`.
pub(crate) fn tag_order(order: Order<TagKey>) -> i64 {
    let by = match order.key {
        TagKey::Name => 1,
        TagKey::PushTime => 3,
        TagKey::Id => 5,
    };
    by + i64::from(order.descending)
}

/// A text filter as the (exact, contains) pair of parameters.
pub(crate) fn text(filter: Option<&TextFilter>) -> (Option<&str>, Option<&str>) {
    match filter {
        Some(TextFilter::Exact(v)) => (Some(v.as_str()), None),
        Some(TextFilter::Contains(v)) => (None, Some(v.as_str())),
        None => (None, None),
    }
}

pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn limit(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn json_column<T: serde::de::DeserializeOwned, R>(
    row: &R,
    column: &str,
) -> Result<Option<T>>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| MetaError::Corrupt(format!("{column}: {e}"))))
        .transpose()
}

pub(crate) fn parse_digest(text: &str) -> Result<Digest> {
    Digest::from_str(text).map_err(|e| MetaError::Corrupt(format!("digest {text:?}: {e}")))
}

pub(crate) fn artifact_row<R>(row: &R) -> Result<ArtifactInfo>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let tags = json_column::<Vec<(i64, String, i64)>, _>(row, "tags")?.map(|tags| {
        let mut tags: Vec<TagInfo> = tags
            .into_iter()
            .map(|(id, name, pushed_at)| TagInfo {
                id,
                name,
                pushed_at,
            })
            .collect();
        // Harbor's order: last pushed first.
        tags.sort_by_key(|t| std::cmp::Reverse((t.pushed_at, t.id)));
        tags
    });
    let child_ids = json_column::<Vec<(String, i64)>, _>(row, "children")?
        .unwrap_or_default()
        .into_iter()
        .map(|(digest, id)| Ok((parse_digest(&digest)?, id)))
        .collect::<Result<_>>()?;
    let accessories =
        json_column::<Vec<(i64, String, Option<String>, i64, i64)>, _>(row, "accessories")?
            .map(|list| {
                let mut list = list
                    .into_iter()
                    .map(|(id, digest, artifact_type, size, created_at)| {
                        Ok(AccessoryInfo {
                            id,
                            digest: parse_digest(&digest)?,
                            artifact_type,
                            size: count(size),
                            created_at,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                list.sort_by_key(|a| (a.created_at, a.id));
                Ok::<_, MetaError>(list)
            })
            .transpose()?;
    let subject: Option<String> = row.try_get("subject")?;
    Ok(ArtifactInfo {
        id: row.try_get("id")?,
        repository_id: row.try_get("repository_id")?,
        digest: digest_column(row, "digest")?,
        manifest_media_type: row.try_get("media_type")?,
        config_media_type: row.try_get("config_media_type")?,
        artifact_type: row.try_get("artifact_type")?,
        content: row.try_get("content")?,
        size: count(row.try_get("total_size")?),
        subject: subject.as_deref().map(parse_digest).transpose()?,
        annotations: annotations_column(row)?,
        pushed_at: row.try_get("created_at")?,
        pulled_at_ms: row.try_get("pulled_at_ms")?,
        tags,
        child_ids,
        accessories,
    })
}

pub(crate) fn repository_row<R>(row: &R) -> Result<RepositoryInfo>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let name: String = row.try_get("name")?;
    Ok(RepositoryInfo {
        id: row.try_get("id")?,
        name: name
            .parse()
            .map_err(|e| MetaError::Corrupt(format!("repository name: {e}")))?,
        project_id: row.try_get("project_id")?,
        description: row.try_get("description")?,
        artifact_count: count(row.try_get("artifact_count")?),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        usage: crate::usage::usage_row(row)?,
        pulls: count(row.try_get("pull_count")?),
    })
}

pub(crate) fn digest_column<R>(row: &R, column: &str) -> Result<Digest>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let text: String = row.try_get(column)?;
    Digest::from_str(&text).map_err(|e| MetaError::Corrupt(format!("{column} {text:?}: {e}")))
}

pub(crate) fn annotations_column<R>(row: &R) -> Result<Option<Map<String, Value>>>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let text: Option<String> = row.try_get("annotations")?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| MetaError::Corrupt(format!("annotations: {e}")))
    })
    .transpose()
}

/// The columns [`upstream_row`] reads, in both backends' `registries` table.
pub(crate) const UPSTREAM_COLUMNS: &str = "id, name, kind, url, description, insecure, ca_cert, \
     credential_type, access_key, access_secret, created_at, updated_at";

/// A `registries` row.
pub(crate) fn upstream_row<'r, R>(row: &'r R) -> Result<crate::Upstream>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    Option<Vec<u8>>: Decode<'r, R::Database> + Type<R::Database>,
{
    let kind: Option<String> = row.try_get("credential_type")?;
    let credential = match kind {
        None => None,
        Some(kind) => Some(crate::StoredCredential {
            kind,
            access_key: row
                .try_get::<Option<String>, _>("access_key")?
                .unwrap_or_default(),
            sealed_secret: row
                .try_get::<Option<Vec<u8>>, _>("access_secret")?
                .unwrap_or_default(),
        }),
    };
    Ok(crate::Upstream {
        id: row.try_get("id")?,
        fields: crate::NewUpstream {
            name: row.try_get("name")?,
            kind: row.try_get("kind")?,
            url: row.try_get("url")?,
            description: row.try_get("description")?,
            insecure: row.try_get("insecure")?,
            ca_cert: row.try_get("ca_cert")?,
            credential,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A `proxy_tags` row.
pub(crate) fn proxy_tag_row<'r, R>(row: &'r R) -> Result<crate::ProxyTagCheck>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(crate::ProxyTagCheck {
        repository: row.try_get("repository")?,
        tag: row.try_get("tag")?,
        digest: row.try_get("digest")?,
        checked_at_ms: row.try_get("checked_at")?,
        pulled_at_ms: row.try_get("pulled_at")?,
    })
}
