//! Harbor's management API under `/api/v2.0`, as its swagger has it, for what berth manages
//! so far: projects, members, users, robot accounts, repositories, artifacts and tags,
//! quotas, audit logs, search, garbage collection and the system
//! endpoints.
//!
//! Every request goes through [`dispatch`]: authenticate with the same credentials as `/v2/`
//! (Basic for users and robots, bearer tokens), parse into a typed `MgmtEndpoint` (once; the
//! body too where the permission depends on it, `POST /robots`), ask
//! `Authorizer::decide_mgmt` about the endpoint's required permission, then call the one
//! handler. Handlers never check permissions; they change things through `IdentityService`
//! and `Registry`, the places the CLI and `/v2/` use. Successful changes are audited here, in
//! one hook keyed on the endpoint ([`audited`]), not by handlers.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use berth_auth::mgmt::MgmtDecision;
use berth_auth::{IdentityService, Principal};
use berth_core::mgmt::{MgmtEndpoint, MgmtHeaders};
use berth_meta::Project;

use crate::AppState;
use crate::credentials::{Peer, authenticate};

mod artifacts;
mod audited;
mod gc;
mod immutable;
mod logs;
mod members;
pub mod openapi;
mod projects;
mod quotas;
mod registries;
mod replication;
mod repositories;
pub mod response;
mod retentions;
mod robots;
mod system;
mod users;

use response::{MgmtApiError, MgmtResult};

/// What a handler gets besides its endpoint's fields.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub parts: &'a Parts,
    pub principal: &'a Principal,
    /// The project the permission named, resolved by the decision.
    pub project: Option<Project>,
    /// For listings across projects: only these projects' entries (`None`: all of them).
    pub within: Option<Vec<String>>,
}

impl Ctx<'_> {
    /// The identity service; the API's identity endpoints exist in token mode only.
    pub fn identity(&self) -> Result<&IdentityService, MgmtApiError> {
        self.state.identity.as_ref().ok_or_else(|| {
            MgmtApiError::forbidden(
                "users, projects, members and robots are managed in token mode (auth.mode = \"token\")",
            )
        })
    }

    /// The project the decision resolved (every project endpoint has one).
    pub fn project(&self) -> Result<&Project, MgmtApiError> {
        self.project
            .as_ref()
            .ok_or_else(|| MgmtApiError::not_found("project not found"))
    }

    /// The caller's account name, if authenticated.
    pub fn account(&self) -> Option<&str> {
        match self.principal {
            Principal::Account(account) => Some(account.name()),
            Principal::Bearer(claims) if !claims.sub.is_empty() => Some(claims.sub.as_str()),
            Principal::User(name) => Some(name.as_str()),
            _ => None,
        }
    }

    pub fn raw_query(&self) -> Option<&str> {
        self.parts.uri.query()
    }
}

/// `GET /api/v2.0/openapi.json`: the API's OpenAPI document.
pub async fn openapi_document() -> Response {
    match response::json(&openapi::document()) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

pub async fn dispatch(State(state): State<std::sync::Arc<AppState>>, request: Request) -> Response {
    // The request id (`X-Request-Id`, echoed in the answer) is `observe`'s, as everywhere.
    crate::observe::classify(berth_metrics::EndpointClass::Management);
    match route(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn route(state: &AppState, request: Request) -> MgmtResult {
    let (parts, body) = request.into_parts();
    let headers = MgmtHeaders {
        is_resource_name: parts
            .headers
            .get("x-is-resource-name")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
    };
    let peer = Peer::of(&parts.extensions);
    // Credentials first: a wrong password is a 401 whatever the path.
    let principal =
        authenticate(state, &parts, peer)
            .await
            .map_err(|e| match e.status().as_u16() {
                429 => MgmtApiError::new(
                    429,
                    "TOO_MANY_REQUESTS",
                    "too many failed logins; retry later",
                ),
                500 => MgmtApiError::internal("authentication failed"),
                _ => MgmtApiError::unauthorized(),
            })?;
    // Read before parsing: who may `POST /robots` depends on the robot's level and namespace.
    let body = response::read_body(body).await?;
    let endpoint = MgmtEndpoint::parse(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        headers,
        &body,
    )?;
    let (project, within) = match state
        .auth
        .decide_mgmt(&principal, &endpoint.required())
        .await
    {
        MgmtDecision::Allow(project) => (project, None),
        MgmtDecision::AllowIn(projects) => (None, Some(projects)),
        MgmtDecision::Unauthorized => return Err(MgmtApiError::unauthorized()),
        MgmtDecision::Forbidden(reason) => return Err(MgmtApiError::forbidden(reason)),
        MgmtDecision::NotFound(what) => return Err(MgmtApiError::not_found(what)),
    };
    let ctx = Ctx {
        state,
        parts: &parts,
        principal: &principal,
        project,
        within,
    };
    let audited = audited::before(&ctx, &endpoint).await;
    let result = handle(&ctx, endpoint, Body::from(body)).await;
    // What the hook needs of the response, owned: a body is not `Sync` across an await.
    let answered = result.as_ref().ok().map(audited::Answered::of);
    if let (Some(audited), Some(answered)) = (audited, answered) {
        audited.finish(&ctx, peer, answered).await;
    }
    result
}

async fn handle(ctx: &Ctx<'_>, endpoint: MgmtEndpoint, body: Body) -> MgmtResult {
    use MgmtEndpoint as E;
    match endpoint {
        E::Ping => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Pong",
        )
            .into_response()),
        E::Health => system::health(ctx).await,
        E::SystemInfo => system::info(ctx).await,
        E::Search { q } => system::search(ctx, &q).await,
        E::ListProjects {
            query,
            name,
            public,
            owner,
        } => projects::list(ctx, &query, name.as_deref(), public, owner.as_deref()).await,
        E::HeadProject { name } => projects::head(ctx, &name).await,
        E::CreateProject | E::CreateProxyProject => projects::create(ctx, body).await,
        E::ListRegistries { query, name } => registries::list(ctx, &query, name.as_deref()).await,
        E::CreateRegistry => registries::create(ctx, body).await,
        E::GetRegistry(id) => registries::get(ctx, id).await,
        E::UpdateRegistry(id) => registries::update(ctx, id, body).await,
        E::DeleteRegistry(id) => registries::delete(ctx, id).await,
        E::PingRegistry => registries::ping(ctx, body).await,
        E::RegistryInfo(id) => replication::registry_info(ctx, id).await,
        E::ListReplicationAdapters => replication::adapters(ctx).await,
        E::ReplicationAdapterInfos => replication::adapter_infos(ctx).await,
        E::ListReplicationPolicies { query, name } => {
            replication::list_policies(ctx, &query, name.as_deref()).await
        }
        E::CreateReplicationPolicy => replication::create_policy(ctx, body).await,
        E::GetReplicationPolicy(id) => replication::get_policy(ctx, id).await,
        E::UpdateReplicationPolicy(id) => replication::update_policy(ctx, id, body).await,
        E::DeleteReplicationPolicy(id) => replication::delete_policy(ctx, id).await,
        E::ListReplicationExecutions {
            query,
            policy_id,
            status,
            trigger,
        } => {
            let filter = berth_meta::ExecutionFilter {
                policy_id,
                status,
                trigger,
            };
            replication::list_executions(ctx, &query, filter).await
        }
        E::StartReplication => replication::start(ctx, body).await,
        E::GetReplicationExecution(id) => replication::get_execution(ctx, id).await,
        E::StopReplication(id) => replication::stop(ctx, id).await,
        E::ListReplicationTasks {
            execution,
            query,
            status,
        } => replication::list_tasks(ctx, execution, &query, status.as_deref()).await,
        E::GetReplicationLog { execution, task } => {
            replication::task_log(ctx, execution, task).await
        }
        E::GetProject(_) => projects::get(ctx).await,
        E::UpdateProject(_) => projects::update(ctx, body).await,
        E::DeleteProject(_) => projects::delete(ctx).await,
        E::ProjectDeletable(_) => projects::deletable(ctx).await,
        E::ProjectSummary(_) => projects::summary(ctx).await,
        E::ListQuotas {
            query,
            reference,
            reference_id,
        } => quotas::list(ctx, &query, reference.as_deref(), reference_id.as_deref()).await,
        E::GetQuota(id) => quotas::get(ctx, id).await,
        E::ListImmutableRules { query, .. } => immutable::list(ctx, &query).await,
        E::CreateRetention { .. } => retentions::create(ctx, body).await,
        E::GetRetention(id) => retentions::get(ctx, id).await,
        E::UpdateRetention(id) => retentions::update(ctx, id, body).await,
        E::DeleteRetention(id) => retentions::delete(ctx, id).await,
        E::RunRetention(id) => retentions::run(ctx, id, body).await,
        E::ListRetentionRuns { id, query } => retentions::runs(ctx, id, &query).await,
        E::CreateImmutableRule(_) => immutable::create(ctx, body).await,
        E::UpdateImmutableRule { id, .. } => immutable::update(ctx, id, body).await,
        E::DeleteImmutableRule { id, .. } => immutable::delete(ctx, id).await,
        E::UpdateQuota(id) => quotas::update(ctx, id, body).await,
        E::ListMembers {
            query, entity_name, ..
        } => members::list(ctx, &query, entity_name.as_deref()).await,
        E::AddMember(_) => members::add(ctx, body).await,
        E::GetMember { id, .. } => members::get(ctx, id).await,
        E::UpdateMember { id, .. } => members::update(ctx, id, body).await,
        E::DeleteMember { id, .. } => members::delete(ctx, id).await,
        E::ListUsers {
            query,
            username,
            email,
        } => users::list(ctx, &query, username.as_deref(), email.as_deref()).await,
        E::CreateUser => users::create(ctx, body).await,
        E::CurrentUser => users::current(ctx).await,
        E::CurrentPermissions { scope, relative } => {
            users::permissions(ctx, scope.as_deref(), relative).await
        }
        E::SearchUsers { query, username } => users::search(ctx, &query, &username).await,
        E::GetUser(id) => users::get(ctx, id).await,
        E::UpdateUser(id) => users::update(ctx, id, body).await,
        E::DeleteUser(id) => users::delete(ctx, id).await,
        E::SetPassword(id) => users::set_password(ctx, id, body).await,
        E::SetSysadmin(id) => users::set_sysadmin(ctx, id, body).await,
        E::ListRobots { query, scope } => robots::list(ctx, &query, &scope).await,
        E::CreateRobot(request) => robots::create(ctx, *request).await,
        E::GetRobot(id) => robots::get(ctx, id).await,
        E::UpdateRobot(id) => robots::update(ctx, id, body).await,
        E::RefreshRobotSecret(id) => robots::refresh_secret(ctx, id, body).await,
        E::DeleteRobot(id) => robots::delete(ctx, id).await,
        E::ListGcRuns { query } => gc::list(ctx, &query).await,
        E::GetGcRun(id) => gc::get(ctx, id).await,
        E::GetGcLog(id) => gc::log(ctx, id).await,
        E::GetGcSchedule => gc::get_schedule(ctx).await,
        E::CreateGcSchedule => gc::create_schedule(ctx, body).await,
        E::UpdateGcSchedule => gc::update_schedule(ctx, body).await,
        E::ListAuditLogs { query } => logs::list(ctx, &query).await,
        E::ListProjectLogs { query, .. } => logs::project(ctx, &query).await,
        E::ListAllRepositories { query, name, order } => {
            repositories::list_all(ctx, &query, name.as_ref(), order).await
        }
        E::ListRepositories {
            project,
            query,
            name,
            order,
        } => repositories::list_in(ctx, &project, &query, name.as_ref(), order).await,
        E::GetRepository(path) => repositories::get(ctx, &path).await,
        E::UpdateRepository(path) => repositories::update(ctx, &path, body).await,
        E::DeleteRepository(path) => repositories::delete(ctx, &path.name).await,
        E::ListArtifacts {
            repository,
            query,
            filter,
            order,
            with,
        } => artifacts::list(ctx, &repository, &query, &filter, order, with).await,
        E::GetArtifact { artifact, with } => artifacts::get(ctx, &artifact, with).await,
        E::DeleteArtifact(artifact) => artifacts::delete(ctx, &artifact).await,
        E::CopyArtifact { to, from } => artifacts::copy(ctx, &to, &from).await,
        E::ListAccessories { artifact, query } => {
            artifacts::list_accessories(ctx, &artifact, &query).await
        }
        E::ListTags {
            artifact,
            query,
            name,
            order,
        } => artifacts::list_tags(ctx, &artifact, &query, name.as_ref(), order).await,
        E::CreateTag(artifact) => artifacts::create_tag(ctx, &artifact, body).await,
        E::DeleteTag { artifact, tag } => artifacts::delete_tag(ctx, &artifact, &tag).await,
    }
}
