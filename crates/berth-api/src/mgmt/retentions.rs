//! `/retentions`: Harbor's retention policies (one per project) — create, get, update,
//! delete — and their executions: `POST …/executions` runs one now (`{"dry_run": true}` lists
//! what would go and removes nothing), `GET …/executions` lists the recorded runs, newest
//! first, each with what it removed (berth's `removed`). What a run does is
//! `berth-registry`'s `retention.rs`.

use axum::body::Body;
use berth_core::mgmt::ListQuery;
use berth_registry::retention::PolicyJson;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ctx;
use super::response::{self, MgmtApiError, MgmtResult, created, json, page, slice_page};

#[derive(Deserialize)]
struct ExecutionReq {
    #[serde(default)]
    dry_run: bool,
}

fn not_found(id: i64) -> MgmtApiError {
    MgmtApiError::not_found(format!("retention policy {id} not found"))
}

pub async fn create(ctx: &Ctx<'_>, body: Body) -> MgmtResult {
    let policy: PolicyJson = response::body(body).await?;
    let id = ctx.state.registry.create_retention_policy(&policy).await?;
    created(&format!("/api/v2.0/retentions/{id}"))
}

pub async fn get(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    let stored = ctx
        .state
        .registry
        .retention_policy(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let mut body = serde_json::to_value(&stored.policy).map_err(MgmtApiError::internal)?;
    body["id"] = json!(stored.id);
    body["algorithm"] = json!("or");
    json(&body)
}

pub async fn update(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let policy: PolicyJson = response::body(body).await?;
    if !ctx
        .state
        .registry
        .update_retention_policy(id, &policy)
        .await?
    {
        return Err(not_found(id));
    }
    response::ok()
}

pub async fn delete(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    if !ctx.state.registry.delete_retention_policy(id).await? {
        return Err(not_found(id));
    }
    response::ok()
}

pub async fn run(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let bytes = response::read_body(body).await?;
    let request: ExecutionReq = if bytes.is_empty() {
        ExecutionReq { dry_run: false }
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| MgmtApiError::bad_request(format!("invalid request body: {e}")))?
    };
    let run = ctx
        .state
        .registry
        .execute_retention(id, request.dry_run, "MANUAL")
        .await?;
    created(&format!(
        "/api/v2.0/retentions/{id}/executions/{}",
        run.run_id
    ))
}

pub async fn runs(ctx: &Ctx<'_>, id: i64, query: &ListQuery) -> MgmtResult {
    if ctx.state.registry.retention_policy(id).await?.is_none() {
        return Err(not_found(id));
    }
    let runs = ctx.state.registry.retention_runs(id).await?;
    let items: Vec<Value> = slice_page(&runs, query)
        .iter()
        .map(|run| {
            let result: Value = serde_json::from_str(&run.result).unwrap_or(Value::Null);
            json!({
                "id": run.id,
                "policy_id": run.policy_id,
                "start_time": berth_core::time::rfc3339_millis(run.started_at),
                "end_time": berth_core::time::rfc3339_millis(run.finished_at),
                "status": run.status,
                "trigger": run.trigger,
                "dry_run": run.dry_run,
                "removed": result.get("removed").cloned().unwrap_or(json!([])),
                "skipped": result.get("skipped").cloned().unwrap_or(json!([])),
                "error": result.get("error").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    page(
        &items,
        runs.len() as u64,
        query,
        &format!("/api/v2.0/retentions/{id}/executions"),
        ctx.raw_query(),
    )
}
