//! The management API's one audit hook: which endpoints change projects, members, users,
//! robots, repositories, artifacts and tags (by endpoint kind), recorded when they succeed
//! (by response status), named as they were before the change (a deleted user's name is
//! read first) or, for creations, from the `Location` the handler answered. Handlers know
//! nothing of it.

use axum::http::header;
use axum::response::Response;
use berth_audit::{ANONYMOUS, AuditEvent, Operation, ResourceType};
use berth_core::mgmt::MgmtEndpoint;

use super::Ctx;
use crate::audit::client;
use crate::credentials::Peer;

/// How an audited change names what it changed.
enum Target {
    Named(String),
    /// A new project, by the `Location` answered.
    NewProject,
    /// A new member of the decided project, by the `Location` answered (its user id).
    NewMember,
    /// A new user, by the `Location` answered (its id).
    NewUser,
    /// A new robot, by the `Location` answered (its id).
    NewRobot,
    /// An artifact copied into this repository, by the `Location` answered (its digest).
    CopiedInto(String),
    /// A retention run of this policy, by the `Location` answered (the run's id); each
    /// artifact it removed is recorded as deleted too.
    RetentionRun(i64),
    /// Something new named by this prefix and the `Location` answered (its id).
    Prefixed(&'static str),
}

/// A change to record if the handler succeeds.
pub struct Pending {
    operation: Operation,
    resource_type: ResourceType,
    target: Target,
}

async fn user_name(ctx: &Ctx<'_>, id: i64) -> String {
    match &ctx.state.identity {
        Some(identity) => match identity.user_by_id(id).await {
            Ok(user) => user.name,
            Err(_) => id.to_string(),
        },
        None => id.to_string(),
    }
}

async fn robot_name(ctx: &Ctx<'_>, id: i64) -> String {
    match &ctx.state.identity {
        Some(identity) => match identity.robot_by_id(id).await {
            Ok(robot) => robot.name,
            Err(_) => id.to_string(),
        },
        None => id.to_string(),
    }
}

/// `team/app:v1` or `team/app@sha256:…`, as `/v2/` events name artifacts.
fn artifact_name(artifact: &berth_core::mgmt::ArtifactPath) -> String {
    match &artifact.reference {
        berth_core::Reference::Tag(tag) => format!("{}:{tag}", artifact.repository.name),
        berth_core::Reference::Digest(digest) => format!("{}@{digest}", artifact.repository.name),
    }
}

fn project_name(ctx: &Ctx<'_>) -> String {
    ctx.project
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_default()
}

/// What `endpoint` changes, if it is audited (and the audit log is on).
pub async fn before(ctx: &Ctx<'_>, endpoint: &MgmtEndpoint) -> Option<Pending> {
    use MgmtEndpoint as E;
    use Operation::{Create, Delete, Update};
    use ResourceType::{
        Artifact, Member, Project, Replication, Repository, Retention, Robot, Tag, User,
    };
    if !ctx.state.audit.is_on() {
        return None;
    }
    let member = |id| async move { format!("{}/{}", project_name(ctx), user_name(ctx, id).await) };
    let (operation, resource_type, target) = match endpoint {
        E::CreateProject | E::CreateProxyProject => (Create, Project, Target::NewProject),
        E::UpdateProject(_) => (Update, Project, Target::Named(project_name(ctx))),
        E::DeleteProject(_) => (Delete, Project, Target::Named(project_name(ctx))),
        E::AddMember(_) => (Create, Member, Target::NewMember),
        E::UpdateMember { id, .. } => (Update, Member, Target::Named(member(*id).await)),
        E::DeleteMember { id, .. } => (Delete, Member, Target::Named(member(*id).await)),
        E::CreateUser => (Create, User, Target::NewUser),
        E::UpdateUser(id) | E::SetPassword(id) | E::SetSysadmin(id) => {
            (Update, User, Target::Named(user_name(ctx, *id).await))
        }
        E::DeleteUser(id) => (Delete, User, Target::Named(user_name(ctx, *id).await)),
        E::CreateRobot(_) => (Create, Robot, Target::NewRobot),
        E::UpdateRobot(id) | E::RefreshRobotSecret(id) => {
            (Update, Robot, Target::Named(robot_name(ctx, *id).await))
        }
        E::DeleteRobot(id) => (Delete, Robot, Target::Named(robot_name(ctx, *id).await)),
        E::DeleteRepository(path) => (Delete, Repository, Target::Named(path.name.to_string())),
        E::DeleteArtifact(a) => (Delete, Artifact, Target::Named(artifact_name(a))),
        E::CreateRetention { .. } => (Create, Retention, Target::Named("retention".into())),
        E::UpdateRetention(id) => (Update, Retention, Target::Named(format!("retention/{id}"))),
        E::DeleteRetention(id) => (Delete, Retention, Target::Named(format!("retention/{id}"))),
        // A run deletes artifacts: it is recorded as such (what it removed is in its record).
        E::RunRetention(id) => (Create, Retention, Target::RetentionRun(*id)),
        E::CopyArtifact { to, .. } => (Create, Artifact, Target::CopiedInto(to.name.to_string())),
        E::DeleteTag { artifact, tag } => (
            Delete,
            Tag,
            Target::Named(format!("{}:{tag}", artifact.repository.name)),
        ),
        E::CreateReplicationPolicy => {
            (Create, Replication, Target::Prefixed("replication/policy/"))
        }
        E::UpdateReplicationPolicy(id) => (
            Update,
            Replication,
            Target::Named(format!("replication/policy/{id}")),
        ),
        E::DeleteReplicationPolicy(id) => (
            Delete,
            Replication,
            Target::Named(format!("replication/policy/{id}")),
        ),
        E::StartReplication => (
            Create,
            Replication,
            Target::Prefixed("replication/execution/"),
        ),
        E::StopReplication(id) => (
            Update,
            Replication,
            Target::Named(format!("replication/execution/{id}")),
        ),
        _ => return None,
    };
    Some(Pending {
        operation,
        resource_type,
        target,
    })
}

/// What the handler answered, as far as the hook cares.
pub struct Answered {
    success: bool,
    /// The last segment of `Location`, if any.
    location: String,
}

impl Answered {
    pub fn of(response: &Response) -> Answered {
        Answered {
            success: response.status().is_success(),
            location: response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.rsplit('/').next())
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

/// What a recorded retention run removed, as `repository@digest` (nothing for a dry run).
async fn removed_by_run(ctx: &Ctx<'_>, policy: i64, run: i64) -> Vec<String> {
    let Ok(runs) = ctx.state.registry.retention_runs(policy).await else {
        return Vec::new();
    };
    let Some(run) = runs.into_iter().find(|r| r.id == run && !r.dry_run) else {
        return Vec::new();
    };
    let result: serde_json::Value = serde_json::from_str(&run.result).unwrap_or_default();
    result["removed"]
        .as_array()
        .map(|removed| {
            removed
                .iter()
                .filter_map(|r| {
                    Some(format!(
                        "{}@{}",
                        r["repository"].as_str()?,
                        r["digest"].as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Pending {
    /// Record the change if the answer says it happened.
    pub async fn finish(self, ctx: &Ctx<'_>, peer: Peer, answered: Answered) {
        if !answered.success {
            return;
        }
        let location = answered.location.as_str();
        let id = location.parse::<i64>().ok();
        let resource = match self.target {
            Target::Named(name) => name,
            Target::Prefixed(prefix) => format!("{prefix}{location}"),
            Target::NewProject => match (id, &ctx.state.identity) {
                (Some(id), Some(identity)) => identity
                    .projects()
                    .await
                    .ok()
                    .and_then(|all| all.into_iter().find(|p| p.id == id))
                    .map_or_else(|| id.to_string(), |p| p.name),
                _ => location.to_owned(),
            },
            Target::NewMember => match id {
                Some(id) => format!("{}/{}", project_name(ctx), user_name(ctx, id).await),
                None => format!("{}/{location}", project_name(ctx)),
            },
            Target::NewUser => match id {
                Some(id) => user_name(ctx, id).await,
                None => location.to_owned(),
            },
            Target::NewRobot => match id {
                Some(id) => robot_name(ctx, id).await,
                None => location.to_owned(),
            },
            Target::CopiedInto(repository) => format!("{repository}@{location}"),
            Target::RetentionRun(policy) => {
                let removed = match id {
                    Some(run) => removed_by_run(ctx, policy, run).await,
                    None => Vec::new(),
                };
                let username = ctx.account().unwrap_or(ANONYMOUS).to_owned();
                let client = client(ctx.state, ctx.parts, peer);
                for artifact in removed {
                    ctx.state.audit.record(AuditEvent::new(
                        username.clone(),
                        client,
                        Operation::Delete,
                        ResourceType::Artifact,
                        artifact,
                    ));
                }
                format!("retention/{policy}/execution/{location}")
            }
        };
        let username = ctx.account().unwrap_or(ANONYMOUS).to_owned();
        ctx.state.audit.record(AuditEvent::new(
            username,
            client(ctx.state, ctx.parts, peer),
            self.operation,
            self.resource_type,
            resource,
        ));
    }
}
