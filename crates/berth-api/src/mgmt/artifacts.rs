//! `/projects/{p}/repositories/{r}/artifacts[/{reference}[/tags[/{tag}]]]`: Harbor's
//! Artifact, Tag, Reference and Accessory JSON.
//!
//! Ids: an artifact's id is its manifest's, a tag's its own, both drawn once from the
//! metadata store's sequences and never reused. berth keeps no accessory records: an
//! accessory's `id` is its artifact's id. An artifact's `pull_time` is the latest pull the
//! audit log's writer counted (off the request path, so within its batching interval), and
//! `0001-01-01T00:00:00.000Z` — Harbor's "never" — for one nobody pulled; tags keep Harbor's
//! "never" (pulls are counted per manifest). No labels, scans, signatures or immutability
//! rules exist here, so the `with_*` flags asking for them change nothing.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use berth_core::Tag;
use berth_core::artifact::Platform;
use berth_core::mgmt::{
    ArtifactFilter, ArtifactKey, ArtifactPath, ArtifactWith, ListQuery, Order, RepositoryPath,
    TagKey, TextFilter,
};
use berth_meta::{AccessoryInfo, ArtifactQuery, TagInfo, TagQuery};
use berth_registry::immutable::TagProtection;
use berth_registry::{Artifact, ChildReference};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Ctx;
use super::response::{self, MgmtApiError, MgmtResult, json, page, time};

/// Harbor's time for "never pulled".
const NEVER: &str = "0001-01-01T00:00:00.000Z";

/// Harbor's Artifact model (the fields berth fills; lists it does not keep are `null`).
#[derive(Serialize)]
struct ArtifactJson<'a> {
    id: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    media_type: &'a str,
    manifest_media_type: &'a str,
    project_id: i64,
    repository_id: i64,
    digest: String,
    size: u64,
    push_time: String,
    pull_time: String,
    extra_attrs: &'a Map<String, Value>,
    annotations: Option<&'a Map<String, Value>>,
    references: Option<Vec<ReferenceJson<'a>>>,
    tags: Option<Vec<TagJson>>,
    accessories: Option<Vec<AccessoryJson>>,
    labels: Option<()>,
}

#[derive(Serialize)]
struct ReferenceJson<'a> {
    parent_id: i64,
    child_id: i64,
    child_digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<PlatformJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    urls: &'a [String],
}

#[derive(Serialize)]
struct PlatformJson<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
    os_version: Option<&'a str>,
    #[serde(rename = "os.features", skip_serializing_if = "<[String]>::is_empty")]
    os_features: &'a [String],
}

/// Harbor's Tag model.
#[derive(Serialize)]
struct TagJson {
    id: i64,
    repository_id: i64,
    artifact_id: i64,
    name: String,
    push_time: String,
    pull_time: &'static str,
    immutable: bool,
    signed: bool,
}

/// Harbor's Accessory model.
#[derive(Serialize)]
struct AccessoryJson {
    id: i64,
    artifact_id: i64,
    subject_artifact_id: i64,
    subject_artifact_digest: String,
    subject_artifact_repo: String,
    size: u64,
    digest: String,
    #[serde(rename = "type")]
    kind: &'static str,
    icon: &'static str,
    creation_time: String,
}

/// Harbor's Tag as a POST body: every field it defines; berth uses `name`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "Harbor's read-only fields, accepted and ignored")]
struct TagReq {
    name: Option<String>,
    id: Option<i64>,
    repository_id: Option<i64>,
    artifact_id: Option<i64>,
    push_time: Option<String>,
    pull_time: Option<String>,
    immutable: Option<bool>,
    signed: Option<bool>,
}

fn tag_json(
    tag: &TagInfo,
    repository_id: i64,
    artifact_id: i64,
    protection: &TagProtection,
) -> TagJson {
    TagJson {
        id: tag.id,
        repository_id,
        artifact_id,
        name: tag.name.clone(),
        push_time: time(tag.pushed_at),
        pull_time: NEVER,
        immutable: protection.protects(&tag.name),
        signed: false,
    }
}

fn reference_json(parent_id: i64, child: &ChildReference) -> ReferenceJson<'_> {
    ReferenceJson {
        parent_id,
        child_id: child.id.unwrap_or(0),
        child_digest: child.digest.to_string(),
        platform: child.platform.as_ref().map(|p: &Platform| PlatformJson {
            architecture: &p.architecture,
            os: &p.os,
            variant: p.variant.as_deref(),
            os_version: p.os_version.as_deref(),
            os_features: &p.os_features,
        }),
        annotations: child.annotations.as_ref(),
        urls: &child.urls,
    }
}

fn accessory_json(
    accessory: &AccessoryInfo,
    subject: &Artifact,
    repository: &RepositoryPath,
) -> AccessoryJson {
    AccessoryJson {
        id: accessory.id,
        artifact_id: accessory.id,
        subject_artifact_id: subject.info.id,
        subject_artifact_digest: subject.info.digest.to_string(),
        subject_artifact_repo: repository.name.to_string(),
        size: accessory.size,
        digest: accessory.digest.to_string(),
        kind: berth_core::artifact::accessory_type(accessory.artifact_type.as_deref()),
        icon: "",
        creation_time: time(accessory.created_at),
    }
}

/// The latest pull of an artifact, as the audit log's writer counted it (Harbor's
/// "never" when nobody pulled it or pulls are not recorded).
fn pull_time(artifact: &Artifact) -> String {
    match artifact.info.pulled_at_ms {
        Some(ms) => berth_core::time::rfc3339_millis(ms),
        None => NEVER.to_owned(),
    }
}

fn artifact_json<'a>(
    artifact: &'a Artifact,
    project_id: i64,
    repository: &RepositoryPath,
    pull_time: String,
    protection: &TagProtection,
) -> ArtifactJson<'a> {
    let info = &artifact.info;
    ArtifactJson {
        id: info.id,
        kind: &artifact.kind,
        media_type: &artifact.media_type,
        manifest_media_type: &info.manifest_media_type,
        project_id,
        repository_id: info.repository_id,
        digest: info.digest.to_string(),
        size: info.size,
        push_time: time(info.pushed_at),
        pull_time,
        extra_attrs: &artifact.extra_attrs,
        annotations: info.annotations.as_ref(),
        references: (!artifact.references.is_empty()).then(|| {
            artifact
                .references
                .iter()
                .map(|child| reference_json(info.id, child))
                .collect()
        }),
        // Harbor answers `null` for an artifact without tags, as for one not asked about.
        tags: info.tags.as_ref().filter(|t| !t.is_empty()).map(|tags| {
            tags.iter()
                .map(|t| tag_json(t, info.repository_id, info.id, protection))
                .collect()
        }),
        accessories: info
            .accessories
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|list| {
                list.iter()
                    .map(|a| accessory_json(a, artifact, repository))
                    .collect()
            }),
        labels: None,
    }
}

/// The id of the repository's project: the one the decision resolved (token mode), else
/// the one its name starts with, if that project exists.
async fn project_id(ctx: &Ctx<'_>, repository: &RepositoryPath) -> Result<i64, MgmtApiError> {
    match &ctx.project {
        Some(project) => Ok(project.id),
        None => Ok(ctx
            .state
            .registry
            .project_id_of(&repository.name)
            .await?
            .unwrap_or(0)),
    }
}

pub async fn list(
    ctx: &Ctx<'_>,
    repository: &RepositoryPath,
    query: &ListQuery,
    filter: &ArtifactFilter,
    order: Order<ArtifactKey>,
    with: ArtifactWith,
) -> MgmtResult {
    let found = ctx
        .state
        .registry
        .artifacts(
            &repository.name,
            &ArtifactQuery {
                filter,
                order,
                with,
                offset: query.offset(),
                limit: query.page_size,
            },
        )
        .await?;
    let project_id = project_id(ctx, repository).await?;
    let protection = ctx.state.registry.tag_protection(&repository.name).await?;
    let mut items: Vec<ArtifactJson<'_>> = Vec::with_capacity(found.items.len());
    for artifact in &found.items {
        let pulled = pull_time(artifact);
        items.push(artifact_json(
            artifact,
            project_id,
            repository,
            pulled,
            &protection,
        ));
    }
    page(
        &items,
        found.total,
        query,
        ctx.parts.uri.path(),
        ctx.raw_query(),
    )
}

pub async fn get(ctx: &Ctx<'_>, path: &ArtifactPath, with: ArtifactWith) -> MgmtResult {
    let artifact = ctx
        .state
        .registry
        .artifact(&path.repository.name, &path.reference, with)
        .await?;
    let project_id = project_id(ctx, &path.repository).await?;
    let pulled = pull_time(&artifact);
    let protection = ctx
        .state
        .registry
        .tag_protection(&path.repository.name)
        .await?;
    json(&artifact_json(
        &artifact,
        project_id,
        &path.repository,
        pulled,
        &protection,
    ))
}

pub async fn delete(ctx: &Ctx<'_>, path: &ArtifactPath) -> MgmtResult {
    ctx.state
        .registry
        .delete_artifact(&path.repository.name, &path.reference)
        .await?;
    response::ok()
}

pub async fn list_tags(
    ctx: &Ctx<'_>,
    path: &ArtifactPath,
    query: &ListQuery,
    name: Option<&TextFilter>,
    order: Order<TagKey>,
) -> MgmtResult {
    let (artifact, tags) = ctx
        .state
        .registry
        .artifact_tags(
            &path.repository.name,
            &path.reference,
            &TagQuery {
                name,
                order,
                offset: query.offset(),
                limit: query.page_size,
            },
        )
        .await?;
    let protection = ctx
        .state
        .registry
        .tag_protection(&path.repository.name)
        .await?;
    let items: Vec<TagJson> = tags
        .items
        .iter()
        .map(|t| tag_json(t, artifact.repository_id, artifact.id, &protection))
        .collect();
    page(
        &items,
        tags.total,
        query,
        ctx.parts.uri.path(),
        ctx.raw_query(),
    )
}

/// Copy an artifact from another repository (or project): 201 with the `Location` of the
/// copy, by digest.
pub async fn copy(ctx: &Ctx<'_>, to: &RepositoryPath, from: &ArtifactPath) -> MgmtResult {
    let digest = ctx
        .state
        .registry
        .copy_artifact(&from.repository.name, &from.reference, &to.name)
        .await?;
    let location = format!("{}/{digest}", ctx.parts.uri.path().trim_end_matches('/'));
    response::created(&location)
}

/// An artifact's accessories (its referrers: signatures, SBOMs, …), oldest first.
pub async fn list_accessories(ctx: &Ctx<'_>, path: &ArtifactPath, query: &ListQuery) -> MgmtResult {
    let with = ArtifactWith {
        tags: false,
        accessories: true,
    };
    let artifact = ctx
        .state
        .registry
        .artifact(&path.repository.name, &path.reference, with)
        .await?;
    let all = artifact.info.accessories.as_deref().unwrap_or_default();
    let items: Vec<AccessoryJson> = all
        .iter()
        .skip(usize::try_from(query.offset()).unwrap_or(usize::MAX))
        .take(usize::try_from(query.page_size).unwrap_or(usize::MAX))
        .map(|a| accessory_json(a, &artifact, &path.repository))
        .collect();
    page(
        &items,
        all.len() as u64,
        query,
        ctx.parts.uri.path(),
        ctx.raw_query(),
    )
}

/// 201 without `Location`, as Harbor (it has no endpoint for one tag).
pub async fn create_tag(ctx: &Ctx<'_>, path: &ArtifactPath, body: Body) -> MgmtResult {
    let request: TagReq = response::body(body).await?;
    let name = request
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| MgmtApiError::bad_request("name is required"))?;
    let tag: Tag = name
        .parse()
        .map_err(|e| MgmtApiError::bad_request(format!("invalid tag name {name:?}: {e}")))?;
    ctx.state
        .registry
        .add_tag(&path.repository.name, &path.reference, &tag)
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

pub async fn delete_tag(ctx: &Ctx<'_>, path: &ArtifactPath, tag: &Tag) -> MgmtResult {
    ctx.state
        .registry
        .remove_tag(&path.repository.name, &path.reference, tag)
        .await?;
    response::ok()
}
