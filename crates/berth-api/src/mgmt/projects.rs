//! `/projects`: list, create, `HEAD ?project_name=`, get, update, delete, `_deletable`,
//! `summary` — Harbor's Project JSON.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use berth_core::Role;
use berth_core::mgmt::ListQuery;
use berth_meta::Project;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Ctx;
use super::response::{self, MgmtApiError, MgmtResult, created, json, page, slice_page, time};

/// Harbor's Project model (the fields berth fills).
#[derive(Serialize)]
struct ProjectJson {
    project_id: i64,
    owner_id: i64,
    name: String,
    owner_name: String,
    creation_time: String,
    update_time: String,
    deleted: bool,
    togglable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_user_role_id: Option<i64>,
    current_user_role_ids: Vec<i64>,
    repo_count: u64,
    chart_count: u64,
    metadata: BTreeMap<&'static str, String>,
    cve_allowlist: Value,
    /// The upstream registry of a proxy-cache project (absent for other projects).
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_id: Option<i64>,
}

/// Harbor's ProjectReq, every field it defines; berth uses `project_name`, `public` and
/// `metadata.public`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectReq {
    project_name: Option<String>,
    public: Option<bool>,
    metadata: Option<BTreeMap<String, String>>,
    #[expect(
        dead_code,
        reason = "Harbor's field, accepted and not used (no CVE allowlists yet)"
    )]
    cve_allowlist: Option<Value>,
    /// Bytes, or -1 for none; absent: the configured default (`[quota]`).
    storage_limit: Option<i64>,
    registry_id: Option<i64>,
}

impl ProjectReq {
    /// `metadata.public` wins over the deprecated `public`; must be "true" or "false".
    fn public(&self) -> Result<Option<bool>, MgmtApiError> {
        match self.metadata.as_ref().and_then(|m| m.get("public")) {
            Some(v) if v == "true" => Ok(Some(true)),
            Some(v) if v == "false" => Ok(Some(false)),
            Some(v) => Err(MgmtApiError::bad_request(format!(
                "metadata.public must be \"true\" or \"false\", not {v:?}"
            ))),
            None => Ok(self.public),
        }
    }
}

/// The caller's roles, for `current_user_role_id(s)`.
async fn caller_roles(ctx: &Ctx<'_>) -> BTreeMap<String, Role> {
    let (Some(auth), Some(account)) = (ctx.state.auth.token_auth(), ctx.account()) else {
        return BTreeMap::new();
    };
    match auth.grants(account).await {
        Ok(Some(grants)) => grants.roles.iter().map(|(p, r)| (p.clone(), *r)).collect(),
        _ => BTreeMap::new(),
    }
}

async fn to_json(
    ctx: &Ctx<'_>,
    project: &Project,
    roles: &BTreeMap<String, Role>,
) -> Result<ProjectJson, MgmtApiError> {
    let identity = ctx.identity()?;
    let owner_name = match project.owner_id {
        Some(id) => identity
            .user_by_id(id)
            .await
            .map(|u| u.name)
            .unwrap_or_default(),
        None => String::new(),
    };
    let role = roles.get(&project.name).map(|r| r.id());
    let registry_id = match &ctx.state.upstreams {
        Some(store) => store.project_upstream(&project.name).await?,
        None => None,
    };
    Ok(ProjectJson {
        project_id: project.id,
        owner_id: project.owner_id.unwrap_or(0),
        name: project.name.clone(),
        owner_name,
        creation_time: time(project.created_at),
        update_time: time(project.updated_at),
        deleted: false,
        togglable: true,
        current_user_role_id: role,
        current_user_role_ids: role.into_iter().collect(),
        repo_count: identity.repository_count(&project.name).await?,
        chart_count: 0,
        metadata: BTreeMap::from([("public", project.public.to_string())]),
        cve_allowlist: serde_json::json!({
            "project_id": project.id,
            "items": [],
            "creation_time": time(project.created_at),
            "update_time": time(project.updated_at),
        }),
        registry_id,
    })
}

pub async fn list(
    ctx: &Ctx<'_>,
    query: &ListQuery,
    name: Option<&str>,
    public: Option<bool>,
    owner: Option<&str>,
) -> MgmtResult {
    let identity = ctx.identity()?;
    let visible = ctx.state.auth.visibility(ctx.principal).await;
    let owner_id = match owner {
        Some(o) => match identity.user(o).await {
            Ok(u) => Some(u.id),
            Err(_) => {
                return page::<ProjectJson>(&[], 0, query, "/api/v2.0/projects", ctx.raw_query());
            }
        },
        None => None,
    };
    let mut projects: Vec<Project> = identity
        .projects()
        .await?
        .into_iter()
        .filter(|p| match &visible {
            berth_auth::Visibility::All => true,
            berth_auth::Visibility::Projects(names) => names.contains(&p.name),
        })
        .filter(|p| name.is_none_or(|n| p.name.contains(n)))
        .filter(|p| public.is_none_or(|v| p.public == v))
        .filter(|p| owner_id.is_none_or(|id| p.owner_id == Some(id)))
        .filter(|p| {
            query.q.iter().all(|t| match t.key.as_str() {
                "name" => t.matcher.matches(&p.name),
                "public" => t.matcher.matches(&p.public.to_string()),
                "project_id" => t.matcher.matches(&p.id.to_string()),
                "owner_id" => t.matcher.matches(&p.owner_id.unwrap_or(0).to_string()),
                // Harbor ignores keys a model does not have.
                _ => true,
            })
        })
        .collect();
    for key in query.sort.iter().rev() {
        match key.field.as_str() {
            "name" => projects.sort_by(|a, b| a.name.cmp(&b.name)),
            "creation_time" => projects.sort_by_key(|p| p.created_at),
            "update_time" => projects.sort_by_key(|p| p.updated_at),
            "project_id" => projects.sort_by_key(|p| p.id),
            _ => continue,
        }
        if key.descending {
            projects.reverse();
        }
    }
    let roles = caller_roles(ctx).await;
    let mut items = Vec::new();
    for project in slice_page(&projects, query) {
        items.push(to_json(ctx, &project, &roles).await?);
    }
    page(
        &items,
        projects.len() as u64,
        query,
        "/api/v2.0/projects",
        ctx.raw_query(),
    )
}

pub async fn head(ctx: &Ctx<'_>, name: &str) -> MgmtResult {
    match ctx.identity()?.project(name).await {
        Ok(_) => Ok(StatusCode::OK.into_response()),
        Err(berth_auth::IdentityError::NotFound(_)) => Ok(StatusCode::NOT_FOUND.into_response()),
        Err(e) => Err(e.into()),
    }
}

pub async fn create(ctx: &Ctx<'_>, body: Body) -> MgmtResult {
    let request: ProjectReq = response::body(body).await?;
    let name = request
        .project_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| MgmtApiError::bad_request("project_name is required"))?;
    // Only system administrators get here with one (`MgmtEndpoint::CreateProxyProject`).
    let upstream = match request.registry_id {
        None => None,
        Some(id) => {
            let store =
                ctx.state.upstreams.as_ref().ok_or_else(|| {
                    MgmtApiError::bad_request("proxy-cache projects are not enabled")
                })?;
            if store.upstream_by_id(id).await?.is_none() {
                return Err(MgmtApiError::bad_request(format!(
                    "registry {id} does not exist"
                )));
            }
            Some((store.clone(), id))
        }
    };
    let public = request.public()?.unwrap_or(false);
    let storage_limit = request
        .storage_limit
        .map(super::quotas::valid_limit)
        .transpose()?;
    // The creator owns the project (a robot cannot get here: the decision refuses it).
    let owner = match ctx.account() {
        Some(name) if berth_core::access::RobotName::parse(name).is_none() => Some(name),
        _ => None,
    };
    let project = ctx.identity()?.create_project(name, public, owner).await?;
    if let Some((store, upstream_id)) = upstream {
        if let Err(e) = store.set_project_upstream(project.id, upstream_id).await {
            // Not left behind as an ordinary project the caller did not ask for.
            let _ = ctx.identity()?.delete_project(&project.name).await;
            return Err(e.into());
        }
        if let Some(proxy) = &ctx.state.proxy {
            proxy.forget();
        }
    }
    if let Some(limit) = storage_limit {
        ctx.state
            .registry
            .set_storage_limit(project.id, limit)
            .await?;
    }
    let by_name = ctx
        .parts
        .headers
        .get("x-resource-name-in-location")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let location = if by_name {
        format!("/api/v2.0/projects/{}", project.name)
    } else {
        format!("/api/v2.0/projects/{}", project.id)
    };
    created(&location)
}

pub async fn get(ctx: &Ctx<'_>) -> MgmtResult {
    let roles = caller_roles(ctx).await;
    json(&to_json(ctx, ctx.project()?, &roles).await?)
}

pub async fn update(ctx: &Ctx<'_>, body: Body) -> MgmtResult {
    let request: ProjectReq = response::body(body).await?;
    let project = ctx.project()?;
    if let Some(name) = &request.project_name
        && name != &project.name
    {
        return Err(MgmtApiError::bad_request("projects cannot be renamed"));
    }
    if let Some(public) = request.public()? {
        ctx.identity()?.set_public(&project.name, public).await?;
    }
    response::ok()
}

pub async fn delete(ctx: &Ctx<'_>) -> MgmtResult {
    let project = ctx.project()?;
    let identity = ctx.identity()?;
    if identity.repository_count(&project.name).await? > 0 {
        return Err(MgmtApiError::new(
            412,
            "PRECONDITION",
            "the project contains repositories, can not be deleted",
        ));
    }
    identity.delete_project(&project.name).await?;
    response::ok()
}

pub async fn deletable(ctx: &Ctx<'_>) -> MgmtResult {
    let project = ctx.project()?;
    let repositories = ctx.identity()?.repository_count(&project.name).await?;
    let (deletable, message) = if repositories > 0 {
        (
            false,
            "the project contains repositories, can not be deleted",
        )
    } else {
        (true, "")
    };
    json(&serde_json::json!({"deletable": deletable, "message": message}))
}

pub async fn summary(ctx: &Ctx<'_>) -> MgmtResult {
    let project = ctx.project()?;
    let identity = ctx.identity()?;
    let members = identity.members(&project.name).await?;
    let count = |role| members.iter().filter(|m| m.role == role).count();
    let registry = &ctx.state.registry;
    let limit = registry
        .quota(project.id)
        .await?
        .map_or(berth_meta::usage::UNLIMITED, |q| q.storage_limit);
    let usage = registry.project_usage(&project.name).await?;
    json(&serde_json::json!({
        "repo_count": identity.repository_count(&project.name).await?,
        "chart_count": 0,
        "project_admin_count": count(Role::ProjectAdmin),
        "maintainer_count": count(Role::Maintainer),
        "developer_count": count(Role::Developer),
        "guest_count": count(Role::Guest),
        "limited_guest_count": count(Role::LimitedGuest),
        // Harbor's: what the quota counts against its limit.
        "quota": {
            "hard": {"storage": limit},
            "used": {"storage": usage.used()},
        },
        // berth's: of what is used, what only this project holds and what it shares.
        "usage": usage_json(&usage),
    }))
}

/// A usage figure as berth's JSON shows it (repositories and project summaries).
pub fn usage_json(usage: &berth_meta::Usage) -> Value {
    serde_json::json!({
        "used": usage.used(),
        "unique": usage.unique(),
        "shared": usage.shared(),
    })
}
