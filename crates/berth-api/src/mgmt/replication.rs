//! `/replication/*` and `/registries/{id}/info`: Harbor's replication policies, their
//! executions, tasks and logs. Policies are checked here and stored as rows; running them is
//! `berth-replication`'s (a job per execution).

use std::sync::Arc;

use axum::body::Body;
use berth_core::mgmt::ListQuery;
use berth_meta::{
    ExecutionFilter, NewReplicationPolicy, PolicyDeletion, ReplicationExecutionRow,
    ReplicationPolicyRow, ReplicationTaskRow, Upstream,
};
use berth_replication::policy::{Definition, Filter, Trigger};
use berth_replication::{LOCAL_REGISTRY_ID, ReplicationError, Replicator};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Ctx;
use super::registries::{RegistryJson, to_json as registry_json};
use super::response::{self, MgmtApiError, MgmtResult, created, json, ok, page, slice_page, time};

/// The registry types replication copies to and from (all speak the distribution API).
const ADAPTERS: &[&str] = &["docker-hub", "docker-registry", "harbor"];

fn replicator<'a>(ctx: &'a Ctx<'_>) -> Result<&'a Arc<Replicator>, MgmtApiError> {
    ctx.state
        .replication
        .as_ref()
        .ok_or_else(|| MgmtApiError::forbidden("replication is not enabled"))
}

/// Harbor's ReplicationPolicy as berth answers it.
#[derive(Serialize)]
struct PolicyJson {
    id: i64,
    name: String,
    description: String,
    src_registry: Option<RegistryJson>,
    dest_registry: Option<RegistryJson>,
    dest_namespace: String,
    dest_namespace_replace_count: i32,
    trigger: Trigger,
    filters: Vec<Filter>,
    replicate_deletion: bool,
    /// Harbor's deprecated name of `replicate_deletion`, still read by older clients.
    deletion: bool,
    #[serde(rename = "override")]
    overwrite: bool,
    enabled: bool,
    speed: i32,
    copy_by_chunk: bool,
    single_active_replication: bool,
    creation_time: String,
    update_time: String,
}

/// Harbor's ReplicationPolicy as a request: every field optional (a create needs a name and
/// one remote registry; an update changes what it names). Read-only fields of a GET's answer
/// are accepted and ignored.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyReq {
    name: Option<String>,
    description: Option<String>,
    src_registry: Option<Option<RegistryRef>>,
    dest_registry: Option<Option<RegistryRef>>,
    dest_namespace: Option<String>,
    dest_namespace_replace_count: Option<i32>,
    trigger: Option<Trigger>,
    filters: Option<Vec<Filter>>,
    replicate_deletion: Option<bool>,
    deletion: Option<bool>,
    #[serde(rename = "override")]
    overwrite: Option<bool>,
    enabled: Option<bool>,
    speed: Option<i32>,
    copy_by_chunk: Option<bool>,
    single_active_replication: Option<bool>,
    #[expect(dead_code, reason = "read-only, accepted in a PUT of a GET's answer")]
    id: Option<i64>,
    #[expect(dead_code, reason = "read-only, accepted in a PUT of a GET's answer")]
    creation_time: Option<String>,
    #[expect(dead_code, reason = "read-only, accepted in a PUT of a GET's answer")]
    update_time: Option<String>,
}

/// A registry in a policy: only its id counts (a whole Registry object may come).
#[derive(Deserialize)]
struct RegistryRef {
    id: Option<i64>,
    #[serde(flatten)]
    _rest: serde_json::Map<String, Value>,
}

fn registry_id(reference: &Option<RegistryRef>) -> Option<i64> {
    reference
        .as_ref()
        .and_then(|r| r.id)
        .filter(|id| *id != LOCAL_REGISTRY_ID)
}

impl PolicyReq {
    fn apply(
        self,
        fields: &mut NewReplicationPolicy,
        definition: &mut Definition,
    ) -> Result<(), MgmtApiError> {
        if let Some(name) = self.name {
            fields.name = name.trim().to_owned();
        }
        if let Some(src) = &self.src_registry {
            fields.src_registry = registry_id(src);
        }
        if let Some(dest) = &self.dest_registry {
            fields.dest_registry = registry_id(dest);
        }
        if let Some(enabled) = self.enabled {
            fields.enabled = enabled;
        }
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { definition.$field = v; })* };
        }
        set!(
            description,
            dest_namespace,
            dest_namespace_replace_count,
            trigger,
            filters,
            replicate_deletion,
            speed,
            copy_by_chunk,
            single_active_replication
        );
        if let Some(deletion) = self.deletion
            && self.replicate_deletion.is_none()
        {
            definition.replicate_deletion = deletion;
        }
        if let Some(overwrite) = self.overwrite {
            definition.r#override = overwrite;
        }
        if fields.name.is_empty() || fields.name.len() > 255 {
            return Err(MgmtApiError::bad_request(
                "name is required (at most 255 characters)",
            ));
        }
        match (fields.src_registry, fields.dest_registry) {
            (Some(_), Some(_)) => Err(MgmtApiError::bad_request(
                "one of src_registry and dest_registry must be this registry (id 0 or null)",
            )),
            (None, None) => Err(MgmtApiError::bad_request(
                "src_registry or dest_registry must name a registry (a push or a pull policy)",
            )),
            (src, _) => definition
                .validate(src.is_none())
                .map_err(|e| MgmtApiError::bad_request(e.to_string())),
        }
    }
}

/// "This registry", as Harbor shows it in a policy (its id 0).
fn local_registry() -> RegistryJson {
    registry_json(&Upstream {
        id: LOCAL_REGISTRY_ID,
        fields: berth_meta::NewUpstream {
            name: "Local".into(),
            kind: "harbor".into(),
            url: String::new(),
            description: "this registry".into(),
            insecure: false,
            ca_cert: None,
            credential: None,
        },
        created_at: 0,
        updated_at: 0,
    })
}

async fn registry_of(ctx: &Ctx<'_>, id: Option<i64>) -> Result<RegistryJson, MgmtApiError> {
    let Some(id) = id else {
        return Ok(local_registry());
    };
    let store = replicator(ctx)?.store();
    match store.upstream_by_id(id).await? {
        Some(upstream) => Ok(registry_json(&upstream)),
        None => Err(MgmtApiError::bad_request(format!(
            "registry {id} not found"
        ))),
    }
}

async fn policy_json(
    ctx: &Ctx<'_>,
    row: &ReplicationPolicyRow,
) -> Result<PolicyJson, MgmtApiError> {
    let definition = Replicator::definition(row).map_err(MgmtApiError::internal)?;
    Ok(PolicyJson {
        id: row.id,
        name: row.fields.name.clone(),
        description: definition.description,
        src_registry: Some(registry_of(ctx, row.fields.src_registry).await?),
        dest_registry: Some(registry_of(ctx, row.fields.dest_registry).await?),
        dest_namespace: definition.dest_namespace,
        dest_namespace_replace_count: definition.dest_namespace_replace_count,
        trigger: definition.trigger,
        filters: definition.filters,
        replicate_deletion: definition.replicate_deletion,
        deletion: definition.replicate_deletion,
        overwrite: definition.r#override,
        enabled: row.fields.enabled,
        speed: definition.speed,
        copy_by_chunk: definition.copy_by_chunk,
        single_active_replication: definition.single_active_replication,
        creation_time: time(row.created_at),
        update_time: time(row.updated_at),
    })
}

async fn stored(ctx: &Ctx<'_>, id: i64) -> Result<ReplicationPolicyRow, MgmtApiError> {
    replicator(ctx)?
        .store()
        .replication_policy(id)
        .await?
        .ok_or_else(|| MgmtApiError::not_found(format!("replication policy {id} not found")))
}

/// A policy's remote registry must exist when it is stored.
async fn check_registries(
    ctx: &Ctx<'_>,
    fields: &NewReplicationPolicy,
) -> Result<(), MgmtApiError> {
    for id in [fields.src_registry, fields.dest_registry]
        .into_iter()
        .flatten()
    {
        registry_of(ctx, Some(id)).await?;
    }
    Ok(())
}

pub async fn list_policies(ctx: &Ctx<'_>, query: &ListQuery, name: Option<&str>) -> MgmtResult {
    let mut all = replicator(ctx)?.store().replication_policies().await?;
    all.retain(|p| {
        name.is_none_or(|n| p.fields.name.contains(n))
            && query.q.iter().all(|t| match t.key.as_str() {
                "name" => t.matcher.matches(&p.fields.name),
                _ => true,
            })
    });
    let mut items = Vec::new();
    for row in slice_page(&all, query) {
        items.push(policy_json(ctx, &row).await?);
    }
    page(
        &items,
        all.len() as u64,
        query,
        ctx.parts.uri.path(),
        ctx.parts.uri.query(),
    )
}

pub async fn create_policy(ctx: &Ctx<'_>, body: Body) -> MgmtResult {
    let request: PolicyReq = response::body(body).await?;
    let mut fields = NewReplicationPolicy {
        name: String::new(),
        enabled: true,
        src_registry: None,
        dest_registry: None,
        definition: String::new(),
    };
    let mut definition = Definition::default();
    request.apply(&mut fields, &mut definition)?;
    check_registries(ctx, &fields).await?;
    fields.definition = serde_json::to_string(&definition).map_err(MgmtApiError::internal)?;
    let replicator = replicator(ctx)?;
    let id = replicator
        .store()
        .create_replication_policy(&fields)
        .await?;
    replicator.forget();
    created(&format!("/api/v2.0/replication/policies/{id}"))
}

pub async fn get_policy(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    let row = stored(ctx, id).await?;
    json(&policy_json(ctx, &row).await?)
}

pub async fn update_policy(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let request: PolicyReq = response::body(body).await?;
    let row = stored(ctx, id).await?;
    let mut fields = row.fields.clone();
    let mut definition = Replicator::definition(&row).map_err(MgmtApiError::internal)?;
    request.apply(&mut fields, &mut definition)?;
    check_registries(ctx, &fields).await?;
    fields.definition = serde_json::to_string(&definition).map_err(MgmtApiError::internal)?;
    let replicator = replicator(ctx)?;
    if !replicator
        .store()
        .update_replication_policy(id, &fields)
        .await?
    {
        return Err(MgmtApiError::not_found(format!(
            "replication policy {id} not found"
        )));
    }
    replicator.forget();
    ok()
}

pub async fn delete_policy(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    let replicator = replicator(ctx)?;
    match replicator.store().delete_replication_policy(id).await? {
        PolicyDeletion::Deleted => {
            replicator.forget();
            ok()
        }
        PolicyDeletion::Missing => Err(MgmtApiError::not_found(format!(
            "replication policy {id} not found"
        ))),
        PolicyDeletion::Running => Err(MgmtApiError::new(
            412,
            "PRECONDITION",
            format!("replication policy {id} has an execution in progress: stop it first"),
        )),
    }
}

/// Harbor's ReplicationExecution.
#[derive(Serialize)]
struct ExecutionJson {
    id: i64,
    policy_id: i64,
    status: String,
    status_text: String,
    trigger: String,
    start_time: String,
    end_time: Option<String>,
    total: i64,
    failed: i64,
    succeed: i64,
    in_progress: i64,
    stopped: i64,
}

fn execution_json(row: &ReplicationExecutionRow) -> ExecutionJson {
    ExecutionJson {
        id: row.id,
        policy_id: row.policy_id,
        status: row.status.clone(),
        status_text: row.status_text.clone(),
        trigger: row.trigger.clone(),
        start_time: berth_core::time::rfc3339_millis(row.started_ms),
        end_time: row.ended_ms.map(berth_core::time::rfc3339_millis),
        total: row.counts.total,
        failed: row.counts.failed,
        succeed: row.counts.succeed,
        in_progress: row.counts.in_progress,
        stopped: row.counts.stopped,
    }
}

const EXECUTION_STATUSES: &[&str] = &["InProgress", "Succeed", "Failed", "Stopped"];
const TRIGGERS: &[&str] = &["manual", "scheduled", "event_based"];
const TASK_STATUSES: &[&str] = &["Pending", "InProgress", "Succeed", "Failed", "Stopped"];

fn one_of(value: Option<&str>, allowed: &[&str], what: &str) -> Result<(), MgmtApiError> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(MgmtApiError::bad_request(format!(
            "{what} must be one of {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

pub async fn list_executions(
    ctx: &Ctx<'_>,
    query: &ListQuery,
    filter: ExecutionFilter,
) -> MgmtResult {
    one_of(filter.status.as_deref(), EXECUTION_STATUSES, "status")?;
    one_of(filter.trigger.as_deref(), TRIGGERS, "trigger")?;
    let found = replicator(ctx)?
        .store()
        .replication_executions(&filter, query.offset(), query.page_size)
        .await?;
    let items: Vec<ExecutionJson> = found.items.iter().map(execution_json).collect();
    page(
        &items,
        found.total,
        query,
        ctx.parts.uri.path(),
        ctx.parts.uri.query(),
    )
}

/// Harbor's StartReplicationExecution.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartReq {
    policy_id: i64,
}

pub async fn start(ctx: &Ctx<'_>, body: Body) -> MgmtResult {
    let request: StartReq = response::body(body).await?;
    let id = replicator(ctx)?
        .start(request.policy_id, "manual", None)
        .await
        .map_err(|e| match e {
            ReplicationError::PolicyUnknown(_) => MgmtApiError::not_found(e.to_string()),
            ReplicationError::Disabled(_) | ReplicationError::Invalid { .. } => {
                MgmtApiError::bad_request(e.to_string())
            }
            ReplicationError::Busy(_) => MgmtApiError::conflict(e.to_string()),
            ReplicationError::Meta(e) => e.into(),
        })?;
    created(&format!("/api/v2.0/replication/executions/{id}"))
}

async fn execution(ctx: &Ctx<'_>, id: i64) -> Result<ReplicationExecutionRow, MgmtApiError> {
    replicator(ctx)?
        .store()
        .replication_execution(id)
        .await?
        .ok_or_else(|| MgmtApiError::not_found(format!("replication execution {id} not found")))
}

pub async fn get_execution(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    json(&execution_json(&execution(ctx, id).await?))
}

/// Stop an execution: it ends before its next artifact (one already finished stays so).
pub async fn stop(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    execution(ctx, id).await?;
    replicator(ctx)?.stop(id).await?;
    ok()
}

/// Harbor's ReplicationTask.
#[derive(Serialize)]
struct TaskJson {
    id: i64,
    execution_id: i64,
    resource_type: String,
    src_resource: String,
    dst_resource: String,
    job_id: String,
    status: String,
    operation: String,
    start_time: Option<String>,
    end_time: Option<String>,
}

fn task_json(row: &ReplicationTaskRow) -> TaskJson {
    TaskJson {
        id: row.id,
        execution_id: row.execution_id,
        resource_type: row.task.resource_type.clone(),
        src_resource: row.task.src_resource.clone(),
        dst_resource: row.task.dst_resource.clone(),
        job_id: format!("execution-{}", row.execution_id),
        status: row.status.clone(),
        operation: row.task.operation.clone(),
        start_time: row.started_ms.map(berth_core::time::rfc3339_millis),
        end_time: row.ended_ms.map(berth_core::time::rfc3339_millis),
    }
}

pub async fn list_tasks(
    ctx: &Ctx<'_>,
    id: i64,
    query: &ListQuery,
    status: Option<&str>,
) -> MgmtResult {
    one_of(status, TASK_STATUSES, "status")?;
    execution(ctx, id).await?;
    let found = replicator(ctx)?
        .store()
        .replication_tasks(id, status, query.offset(), query.page_size)
        .await?;
    let items: Vec<TaskJson> = found.items.iter().map(task_json).collect();
    page(
        &items,
        found.total,
        query,
        ctx.parts.uri.path(),
        ctx.parts.uri.query(),
    )
}

pub async fn task_log(ctx: &Ctx<'_>, id: i64, task: i64) -> MgmtResult {
    use axum::response::IntoResponse;

    let log = replicator(ctx)?
        .store()
        .replication_task_log(id, task)
        .await?
        .ok_or_else(|| {
            MgmtApiError::not_found(format!(
                "task {task} of replication execution {id} not found"
            ))
        })?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        log,
    )
        .into_response())
}

pub async fn adapters(ctx: &Ctx<'_>) -> MgmtResult {
    replicator(ctx)?;
    json(&ADAPTERS)
}

pub async fn adapter_infos(ctx: &Ctx<'_>) -> MgmtResult {
    replicator(ctx)?;
    let infos: serde_json::Map<String, Value> = ADAPTERS
        .iter()
        .map(|kind| ((*kind).to_owned(), info(kind)))
        .collect();
    json(&infos)
}

/// Harbor's RegistryInfo for a registry type.
fn info(kind: &str) -> Value {
    json!({
        "type": kind,
        "description": "",
        "supported_resource_filters": [
            {"type": "name", "style": "input"},
            {"type": "tag", "style": "input"},
            {"type": "resource", "style": "radio", "values": ["image", "artifact"]},
        ],
        "supported_triggers": ["manual", "scheduled", "event_based"],
        "supported_copy_by_chunk": false,
    })
}

pub async fn registry_info(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    let upstream = replicator(ctx)?
        .store()
        .upstream_by_id(id)
        .await?
        .ok_or_else(|| MgmtApiError::not_found(format!("registry {id} not found")))?;
    json(&info(&upstream.fields.kind))
}
