//! `/projects/{p}/immutabletagrules`: Harbor's tag immutability rules (list, create, update,
//! delete), in Harbor's ImmutableRule JSON. What they protect is decided in
//! `berth-registry` (`immutable.rs`), on every push and delete.

use axum::body::Body;
use berth_core::immutable::Selector;
use berth_core::mgmt::ListQuery;
use berth_registry::immutable::{ScopeSelectors, Selectors, StoredRule};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Ctx;
use super::response::{self, MgmtApiError, MgmtResult, created, page, slice_page};

/// Harbor's ImmutableRule.
#[derive(Serialize)]
struct RuleJson {
    id: i64,
    project_id: i64,
    priority: i64,
    disabled: bool,
    action: &'static str,
    template: &'static str,
    tag_selectors: Vec<Selector>,
    scope_selectors: ScopeJson,
}

#[derive(Serialize)]
struct ScopeJson {
    repository: Vec<Selector>,
}

/// What a client sends: Harbor's ImmutableRule (its `id`, `action`, `template` and `params`
/// are accepted and not needed: berth's rules have one action).
#[derive(Deserialize)]
struct RuleReq {
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    disabled: bool,
    action: Option<String>,
    #[serde(default)]
    tag_selectors: Vec<Selector>,
    #[serde(default)]
    scope_selectors: ScopeSelectors,
    #[expect(dead_code, reason = "Harbor's fields, accepted and not used")]
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

impl RuleReq {
    fn selectors(&self) -> Result<Selectors, MgmtApiError> {
        if self.action.as_deref().is_some_and(|a| a != "immutable") {
            return Err(MgmtApiError::bad_request(
                "a tag immutability rule's action is \"immutable\"",
            ));
        }
        Ok(Selectors {
            tag_selectors: self.tag_selectors.clone(),
            scope_selectors: self.scope_selectors.clone(),
        })
    }
}

fn to_json(rule: &StoredRule) -> RuleJson {
    RuleJson {
        id: rule.id,
        project_id: rule.project_id,
        priority: rule.priority,
        disabled: rule.disabled,
        action: "immutable",
        template: "immutable_template",
        tag_selectors: rule.selectors.tag_selectors.clone(),
        scope_selectors: ScopeJson {
            repository: rule.selectors.scope_selectors.repository.clone(),
        },
    }
}

pub async fn list(ctx: &Ctx<'_>, query: &ListQuery) -> MgmtResult {
    let project = ctx.project()?;
    let rules = ctx.state.registry.immutable_rules(project.id).await?;
    let items: Vec<RuleJson> = slice_page(&rules, query).iter().map(to_json).collect();
    page(
        &items,
        rules.len() as u64,
        query,
        &format!("/api/v2.0/projects/{}/immutabletagrules", project.name),
        ctx.raw_query(),
    )
}

pub async fn create(ctx: &Ctx<'_>, body: Body) -> MgmtResult {
    let project = ctx.project()?;
    let request: RuleReq = response::body(body).await?;
    let id = ctx
        .state
        .registry
        .create_immutable_rule(
            project.id,
            request.disabled,
            request.priority,
            &request.selectors()?,
        )
        .await?;
    created(&format!(
        "/api/v2.0/projects/{}/immutabletagrules/{id}",
        project.id
    ))
}

pub async fn update(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let project = ctx.project()?;
    let request: RuleReq = response::body(body).await?;
    let found = ctx
        .state
        .registry
        .update_immutable_rule(
            project.id,
            id,
            request.disabled,
            request.priority,
            &request.selectors()?,
        )
        .await?;
    if !found {
        return Err(MgmtApiError::not_found(format!(
            "immutable tag rule {id} not found"
        )));
    }
    response::ok()
}

pub async fn delete(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    let project = ctx.project()?;
    if !ctx
        .state
        .registry
        .delete_immutable_rule(project.id, id)
        .await?
    {
        return Err(MgmtApiError::not_found(format!(
            "immutable tag rule {id} not found"
        )));
    }
    response::ok()
}
