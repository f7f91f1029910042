//! `/health`, `/systeminfo` and `/search`.

use berth_auth::{AuthMode, Visibility};

use super::Ctx;
use super::response::{MgmtResult, json};

pub async fn health(ctx: &Ctx<'_>) -> MgmtResult {
    // The metadata database answering a read is what every request needs.
    let database = match ctx.state.registry.metadata_answers().await {
        Ok(_) => serde_json::json!({"name": "database", "status": "healthy"}),
        Err(e) => {
            serde_json::json!({"name": "database", "status": "unhealthy", "error": e.to_string()})
        }
    };
    let healthy = database["status"] == "healthy";
    json(&serde_json::json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "components": [database],
    }))
}

pub async fn info(ctx: &Ctx<'_>) -> MgmtResult {
    let auth_mode = match ctx.state.auth.mode() {
        AuthMode::Token(_) => "db_auth",
        AuthMode::Htpasswd { .. } => "htpasswd",
        AuthMode::Open { .. } => "none",
    };
    let mut info = serde_json::json!({
        "auth_mode": auth_mode,
        "self_registration": false,
        "harbor_version": concat!("berth-", env!("CARGO_PKG_VERSION")),
    });
    if ctx.account().is_some() {
        let external =
            ctx.state
                .external
                .base_url(&ctx.parts.uri, &ctx.parts.headers, &ctx.parts.extensions);
        let creation = match ctx
            .state
            .auth
            .token_auth()
            .map(|a| a.settings().project_creation)
        {
            Some(berth_auth::ProjectCreation::Users) => "everyone",
            _ => "adminonly",
        };
        info["external_url"] = external.clone().into();
        info["registry_url"] = external
            .split_once("://")
            .map_or(external.as_str(), |(_, host)| host)
            .into();
        info["project_creation_restriction"] = creation.into();
        info["has_ca_root"] = false.into();
        info["read_only"] = false.into();
        info["with_chartmuseum"] = false.into();
        info["with_notary"] = false.into();
        info["notification_enable"] = false.into();
        info["registry_storage_provider_name"] = "filesystem".into();
    }
    json(&info)
}

/// Projects and repositories whose names contain `q`, among those the caller may see.
pub async fn search(ctx: &Ctx<'_>, q: &str) -> MgmtResult {
    let visible = ctx.state.auth.visibility(ctx.principal).await;
    let sees = |project: &str| match &visible {
        Visibility::All => true,
        Visibility::Projects(names) => names.contains(project),
    };
    let mut projects = Vec::new();
    let mut public_of = std::collections::HashMap::new();
    if let Some(identity) = &ctx.state.identity {
        for p in identity.projects().await? {
            public_of.insert(p.name.clone(), p.public);
            if sees(&p.name) && p.name.contains(q) {
                projects.push(serde_json::json!({
                    "project_id": p.id,
                    "name": p.name,
                    "metadata": {"public": p.public.to_string()},
                    "repo_count": identity.repository_count(&p.name).await?,
                }));
            }
        }
    }
    // One read: the visible repositories whose names contain `q`, with their counts.
    let visible_projects = match &visible {
        Visibility::All => None,
        Visibility::Projects(names) => Some(names.iter().cloned().collect::<Vec<_>>()),
    };
    let contains = berth_core::mgmt::TextFilter::Contains(q.to_owned());
    let found = ctx
        .state
        .registry
        .repositories(&berth_meta::RepositoryQuery {
            projects: visible_projects.as_deref(),
            name: Some(&contains),
            order: berth_core::mgmt::Order {
                key: berth_core::mgmt::RepositoryKey::Name,
                descending: false,
            },
            offset: 0,
            limit: u64::MAX,
        })
        .await?;
    let repositories: Vec<serde_json::Value> = found
        .items
        .iter()
        .map(|r| {
            let project = r
                .name
                .as_str()
                .split_once('/')
                .map(|(p, _)| p)
                .unwrap_or_default();
            let public = public_of.get(project).copied().unwrap_or(false);
            serde_json::json!({
                "project_id": r.project_id.unwrap_or(0),
                "project_name": project,
                "project_public": public,
                "repository_name": r.name.as_str(),
                // Pulls are not counted yet: 0, Harbor's count for a repository never pulled.
                "pull_count": 0,
                "artifact_count": r.artifact_count,
            })
        })
        .collect();
    json(&serde_json::json!({"project": projects, "repository": repositories}))
}
