//! `/repositories` and `/projects/{project_name}/repositories[/{repository_name}]`: Harbor's
//! Repository JSON, listed with `q` (name), `sort`, pages, `X-Total-Count` and `Link`.

use axum::body::Body;
use berth_auth::Visibility;
use berth_core::RepositoryName;
use berth_core::mgmt::{ListQuery, Order, ProjectRef, RepositoryKey, RepositoryPath, TextFilter};
use berth_meta::{RepositoryInfo, RepositoryQuery};
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::response::{self, MgmtResult, json, page, time};

/// Harbor's Repository model.
#[derive(Serialize)]
struct RepositoryJson {
    id: i64,
    project_id: i64,
    name: String,
    description: String,
    artifact_count: u64,
    /// Pulls counted by the audit log's writer (off the request path, so a pull shows here
    /// within its batching interval); 0 for a repository nobody pulled, as Harbor.
    pull_count: u64,
    creation_time: String,
    update_time: String,
    /// berth's: bytes it holds (`used`), only it holds (`unique`) and shares (`shared`).
    usage: serde_json::Value,
}

fn to_json(repository: &RepositoryInfo, pull_count: u64) -> RepositoryJson {
    RepositoryJson {
        id: repository.id,
        project_id: repository.project_id.unwrap_or(0),
        name: repository.name.to_string(),
        description: repository.description.clone(),
        artifact_count: repository.artifact_count,
        pull_count,
        creation_time: time(repository.created_at),
        update_time: time(repository.updated_at),
        usage: super::projects::usage_json(&repository.usage),
    }
}

/// Harbor's Repository as a PUT body: every field it defines; only `description` changes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "Harbor's read-only fields, accepted and ignored")]
struct RepositoryReq {
    description: Option<String>,
    id: Option<i64>,
    project_id: Option<i64>,
    name: Option<String>,
    artifact_count: Option<i64>,
    pull_count: Option<i64>,
    creation_time: Option<String>,
    update_time: Option<String>,
}

async fn list(
    ctx: &Ctx<'_>,
    projects: Option<&[String]>,
    query: &ListQuery,
    name: Option<&TextFilter>,
    order: Order<RepositoryKey>,
) -> MgmtResult {
    let found = ctx
        .state
        .registry
        .repositories(&RepositoryQuery {
            projects,
            name,
            order,
            offset: query.offset(),
            limit: query.page_size,
        })
        .await?;
    let items: Vec<RepositoryJson> = found
        .items
        .iter()
        .map(|repository| to_json(repository, pulls(ctx, repository)))
        .collect();
    page(
        &items,
        found.total,
        query,
        ctx.parts.uri.path(),
        ctx.raw_query(),
    )
}

/// How often the repository was pulled (read with its row; 0 when pulls are not
/// recorded: audit off).
fn pulls(ctx: &Ctx<'_>, repository: &RepositoryInfo) -> u64 {
    if ctx.state.audit_log.is_some() {
        repository.pulls
    } else {
        0
    }
}

/// Every repository of the projects the caller may see.
pub async fn list_all(
    ctx: &Ctx<'_>,
    query: &ListQuery,
    name: Option<&TextFilter>,
    order: Order<RepositoryKey>,
) -> MgmtResult {
    let projects = match ctx.state.auth.visibility(ctx.principal).await {
        Visibility::All => None,
        Visibility::Projects(names) => {
            let mut names: Vec<String> = names.into_iter().collect();
            names.sort();
            Some(names)
        }
    };
    list(ctx, projects.as_deref(), query, name, order).await
}

/// The repositories of one project.
pub async fn list_in(
    ctx: &Ctx<'_>,
    project: &ProjectRef,
    query: &ListQuery,
    name: Option<&TextFilter>,
    order: Order<RepositoryKey>,
) -> MgmtResult {
    let project = match (&ctx.project, project) {
        (Some(found), _) => found.name.clone(),
        (None, reference) => reference.to_string(),
    };
    list(ctx, Some(&[project]), query, name, order).await
}

pub async fn get(ctx: &Ctx<'_>, path: &RepositoryPath) -> MgmtResult {
    let repository = ctx.state.registry.repository(&path.name).await?;
    json(&to_json(&repository, pulls(ctx, &repository)))
}

pub async fn update(ctx: &Ctx<'_>, path: &RepositoryPath, body: Body) -> MgmtResult {
    let request: RepositoryReq = response::body(body).await?;
    // Harbor stores what the body says: no description is an empty one.
    let description = request.description.unwrap_or_default();
    ctx.state
        .registry
        .describe_repository(&path.name, &description)
        .await?;
    response::ok()
}

pub async fn delete(ctx: &Ctx<'_>, name: &RepositoryName) -> MgmtResult {
    ctx.state.registry.delete_repository(name).await?;
    response::ok()
}
