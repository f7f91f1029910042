//! `/quotas`: Harbor's Quota JSON — every project's storage limit (`hard.storage`, `-1` for
//! none) and what it uses (`used.storage`: each distinct blob its repositories link, plus its
//! manifests). A quota's id is its project's. Listed, read and changed by system
//! administrators; members read their project's in `/projects/{p}/summary`.

use std::collections::BTreeMap;

use axum::body::Body;
use berth_core::mgmt::ListQuery;
use berth_meta::Quota;
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::response::{self, MgmtApiError, MgmtResult, json, page, slice_page, time};

/// Harbor's ResourceList: only `storage` is counted.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceList {
    pub storage: i64,
}

#[derive(Serialize)]
struct QuotaRef {
    id: i64,
    name: String,
    owner_name: String,
}

/// Harbor's Quota model.
#[derive(Serialize)]
struct QuotaJson {
    id: i64,
    #[serde(rename = "ref")]
    reference: QuotaRef,
    hard: ResourceList,
    used: ResourceList,
    creation_time: String,
    update_time: String,
}

/// Harbor's QuotaUpdateReq.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaUpdateReq {
    hard: ResourceList,
}

/// Harbor's rule for a hard limit: a positive number of bytes, or -1 for none.
pub fn valid_limit(storage: i64) -> Result<i64, MgmtApiError> {
    if storage == berth_meta::usage::UNLIMITED || storage > 0 {
        Ok(storage)
    } else {
        Err(MgmtApiError::bad_request(format!(
            "the storage limit must be a positive number of bytes, or -1 for none, not {storage}"
        )))
    }
}

async fn owner_names(ctx: &Ctx<'_>, quotas: &[Quota]) -> BTreeMap<i64, String> {
    let mut names = BTreeMap::new();
    let Some(identity) = ctx.state.identity.as_ref() else {
        return names;
    };
    for owner in quotas.iter().filter_map(|q| q.owner_id) {
        if let std::collections::btree_map::Entry::Vacant(slot) = names.entry(owner)
            && let Ok(user) = identity.user_by_id(owner).await
        {
            slot.insert(user.name);
        }
    }
    names
}

fn to_json(quota: &Quota, owners: &BTreeMap<i64, String>) -> QuotaJson {
    QuotaJson {
        id: quota.project_id,
        reference: QuotaRef {
            id: quota.project_id,
            name: quota.project_name.clone(),
            owner_name: quota
                .owner_id
                .and_then(|id| owners.get(&id).cloned())
                .unwrap_or_default(),
        },
        hard: ResourceList {
            storage: quota.storage_limit,
        },
        used: ResourceList {
            storage: quota.used as i64,
        },
        creation_time: time(quota.created_at),
        update_time: time(quota.updated_at),
    }
}

pub async fn list(
    ctx: &Ctx<'_>,
    query: &ListQuery,
    reference: Option<&str>,
    reference_id: Option<&str>,
) -> MgmtResult {
    let mut quotas: Vec<Quota> = ctx
        .state
        .registry
        .quotas()
        .await?
        .into_iter()
        // Projects are the only references berth's quotas have.
        .filter(|_| reference.is_none_or(|r| r == "project"))
        .filter(|q| reference_id.is_none_or(|id| id == q.project_id.to_string()))
        .collect();
    for key in query.sort.iter().rev() {
        match key.field.as_str() {
            "hard.storage" => quotas.sort_by_key(|q| q.storage_limit),
            "used.storage" => quotas.sort_by_key(|q| q.used),
            "creation_time" => quotas.sort_by_key(|q| q.created_at),
            "update_time" => quotas.sort_by_key(|q| q.updated_at),
            "id" => quotas.sort_by_key(|q| q.project_id),
            _ => continue,
        }
        if key.descending {
            quotas.reverse();
        }
    }
    let shown = slice_page(&quotas, query);
    let owners = owner_names(ctx, &shown).await;
    let items: Vec<QuotaJson> = shown.iter().map(|q| to_json(q, &owners)).collect();
    page(
        &items,
        quotas.len() as u64,
        query,
        "/api/v2.0/quotas",
        ctx.raw_query(),
    )
}

async fn find(ctx: &Ctx<'_>, id: i64) -> Result<Quota, MgmtApiError> {
    ctx.state
        .registry
        .quota(id)
        .await?
        .ok_or_else(|| MgmtApiError::not_found(format!("quota {id} not found")))
}

pub async fn get(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    let quota = find(ctx, id).await?;
    let owners = owner_names(ctx, std::slice::from_ref(&quota)).await;
    json(&to_json(&quota, &owners))
}

pub async fn update(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let request: QuotaUpdateReq = response::body(body).await?;
    let limit = valid_limit(request.hard.storage)?;
    if !ctx.state.registry.set_storage_limit(id, limit).await? {
        return Err(MgmtApiError::not_found(format!("quota {id} not found")));
    }
    response::ok()
}
