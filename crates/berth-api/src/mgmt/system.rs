//! `/health`, `/systeminfo` and `/search`.

use berth_auth::{AuthMode, Visibility};

use super::Ctx;
use super::response::{MgmtResult, json};

pub async fn health(ctx: &Ctx<'_>) -> MgmtResult {
    // The metadata database answering a read is what every request needs.
    let one = berth_core::endpoint::Page {
        n: Some(1),
        last: None,
    };
    let database = match ctx.state.registry.catalog(&one).await {
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
            public_of.insert(p.name.clone(), (p.id, p.public));
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
    let mut repositories = Vec::new();
    let mut page = berth_core::endpoint::Page {
        n: Some(1000),
        last: None,
    };
    // Walk the catalog in pages; names are filtered here (the set is what the caller sees).
    loop {
        let listing = ctx.state.registry.catalog(&page).await?;
        for name in &listing.items {
            let project = name.split_once('/').map(|(p, _)| p).unwrap_or_default();
            if name.contains(q) && sees(project) {
                let (id, public) = public_of.get(project).copied().unwrap_or((0, false));
                // pull_count and artifact_count come with the repository endpoints.
                repositories.push(serde_json::json!({
                    "project_id": id,
                    "project_name": project,
                    "project_public": public,
                    "repository_name": name,
                }));
            }
        }
        match (listing.next_page_size, listing.items.last()) {
            (Some(_), Some(last)) => page.last = Some(last.clone()),
            _ => break,
        }
    }
    json(&serde_json::json!({"project": projects, "repository": repositories}))
}
