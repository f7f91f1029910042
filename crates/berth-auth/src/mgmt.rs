//! The decision for the management API (`/api/v2.0`): the endpoint's [`MgmtPermission`]
//! against the caller's grants, with Harbor's project policies (`berth_core::mgmt`). The
//! same accounts, roles and caches as `/v2/`; only the permission vocabulary is Harbor's.
//!
//! Permissions that name something stored are resolved here, once: a project by id or name
//! (handed to the handler in [`MgmtDecision::Allow`]), and a robot by id, to what its scope
//! needs (its project's `robot` permission, or a system administrator).

use berth_core::RobotPermission;
use berth_core::mgmt::{MgmtPermission, ProjectRef, Resource, Verb, public_allows, role_allows};
use berth_meta::Project;

use crate::access::{Caller, Grants, ProjectCreation, TokenAuth};
use crate::{AuthFailure, AuthMode, Authorizer, Principal};

/// The outcome of a management access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MgmtDecision {
    /// Allowed; the project the permission named, when it named one (resolved once here).
    Allow(Option<Project>),
    /// Allowed within these projects only (a listing across projects by a caller who is not
    /// a system administrator; possibly none).
    AllowIn(Vec<String>),
    /// No credentials: 401.
    Unauthorized,
    /// Known caller without the permission: 403 with the reason.
    Forbidden(String),
    /// The named project does not exist (told only to callers who could see it: system
    /// administrators).
    NotFound(String),
}

/// Whether a robot's permissions grant `resource`/`verb` in `project` (Harbor's access
/// entries name the same resources and actions).
fn robot_allows(
    permissions: &[RobotPermission],
    project: &str,
    resource: Resource,
    verb: Verb,
) -> bool {
    permissions.iter().any(|p| {
        p.kind == "project"
            && (p.namespace == "*" || p.namespace == project)
            && p.access.iter().any(|a| {
                a.effect.as_deref().is_none_or(|e| e == "allow")
                    && a.resource == resource.as_str()
                    && (a.action == verb.as_str()
                        // A robot that may pull a repository may list and read it.
                        || (resource == Resource::Repository
                            && matches!(verb, Verb::List | Verb::Read)
                            && a.action == "pull")
                        || (matches!(resource, Resource::Artifact | Resource::Tag)
                            && matches!(verb, Verb::List | Verb::Read)
                            && a.resource == "repository"
                            && a.action == "pull"))
            })
    })
}

/// The first access of `wanted` that the robot permissions `held` do not hold exactly
/// (same kind, the namespace or `*`, the same resource and action, allowed), described.
fn robot_lacks(held: &[RobotPermission], wanted: &RobotPermission) -> Option<String> {
    wanted
        .access
        .iter()
        .filter(|a| a.effect.as_deref().is_none_or(|e| e == "allow"))
        .find(|a| {
            !held.iter().any(|p| {
                p.kind == wanted.kind
                    && (p.namespace == "*" || p.namespace == wanted.namespace)
                    && p.access.iter().any(|h| {
                        h.effect.as_deref().is_none_or(|e| e == "allow")
                            && h.resource == a.resource
                            && h.action == a.action
                    })
            })
        })
        .map(|a| {
            format!(
                "{} {} in {} {}",
                a.action, a.resource, wanted.kind, wanted.namespace
            )
        })
}

/// Whether `grants` allow `resource`/`verb` in `project`.
pub fn grants_allow(grants: &Grants, project: &Project, resource: Resource, verb: Verb) -> bool {
    grants.sysadmin
        || (project.public && public_allows(resource, verb))
        || grants
            .roles
            .get(&project.name)
            .is_some_and(|role| role_allows(*role, resource, verb))
        || robot_allows(&grants.robot, &project.name, resource, verb)
}

impl TokenAuth {
    async fn project_by_ref(&self, project: &ProjectRef) -> Result<Option<Project>, AuthFailure> {
        let store_err = |e: berth_meta::MetaError| AuthFailure::Store(e.to_string());
        match project {
            ProjectRef::Id(id) => self.store().project_by_id(*id).await.map_err(store_err),
            ProjectRef::Name(name) => self.store().project_by_name(name).await.map_err(store_err),
        }
    }

    /// `resource`/`verb` in `project` (resolved here; its row goes to the handler).
    async fn decide_in_project(
        &self,
        grants: Option<&Grants>,
        project: &ProjectRef,
        resource: Resource,
        verb: Verb,
    ) -> Result<MgmtDecision, AuthFailure> {
        let refuse = |what: String| match grants {
            Some(_) => MgmtDecision::Forbidden(what),
            None => MgmtDecision::Unauthorized,
        };
        Ok(match self.project_by_ref(project).await? {
            None if grants.is_some_and(|g| g.sysadmin) => {
                MgmtDecision::NotFound(format!("project {project} not found"))
            }
            // Others cannot tell a missing project from one they may not see (Harbor).
            None => refuse(format!(
                "{} {} on project {project} is not allowed",
                resource.as_str(),
                verb.as_str()
            )),
            Some(found) => {
                let allowed = match grants {
                    Some(g) => grants_allow(g, &found, resource, verb),
                    None => found.public && public_allows(resource, verb),
                };
                if allowed {
                    MgmtDecision::Allow(Some(found))
                } else {
                    refuse(format!(
                        "{} {} on project {} is not allowed for this account",
                        resource.as_str(),
                        verb.as_str(),
                        found.name
                    ))
                }
            }
        })
    }

    /// The management decision in token mode.
    pub async fn decide_mgmt(
        &self,
        caller: Caller<'_>,
        required: &MgmtPermission,
    ) -> Result<MgmtDecision, AuthFailure> {
        let name = match caller {
            Caller::Anonymous => None,
            Caller::Account(account) => Some(account.name().to_owned()),
            Caller::Token(claims) => Some(claims.sub.clone()).filter(|s| !s.is_empty()),
        };
        let grants = match &name {
            Some(n) => self.grants(n).await?,
            None => None,
        };
        let authenticated = grants.is_some();
        let sysadmin = grants.as_ref().is_some_and(|g| g.sysadmin);
        let refuse = |what: String| {
            if authenticated {
                MgmtDecision::Forbidden(what)
            } else {
                MgmtDecision::Unauthorized
            }
        };
        Ok(match required {
            MgmtPermission::Anyone => MgmtDecision::Allow(None),
            MgmtPermission::Authenticated if authenticated => MgmtDecision::Allow(None),
            MgmtPermission::User if grants.as_ref().is_some_and(|g| g.user_id.is_some()) => {
                MgmtDecision::Allow(None)
            }
            MgmtPermission::SystemAdmin if sysadmin => MgmtDecision::Allow(None),
            MgmtPermission::CreateProject
                if sysadmin
                    || (grants.as_ref().is_some_and(|g| g.user_id.is_some())
                        && self.settings().project_creation == ProjectCreation::Users) =>
            {
                MgmtDecision::Allow(None)
            }
            MgmtPermission::CreateProject => {
                refuse("only system administrators may create projects on this registry".into())
            }
            MgmtPermission::SelfOrAdmin(id)
                if sysadmin || grants.as_ref().is_some_and(|g| g.user_id == Some(*id)) =>
            {
                MgmtDecision::Allow(None)
            }
            MgmtPermission::Authenticated | MgmtPermission::User => {
                refuse("this operation needs a logged-in user".into())
            }
            MgmtPermission::SystemAdmin | MgmtPermission::SelfOrAdmin(_) => {
                refuse("this operation needs a system administrator".into())
            }
            MgmtPermission::InProjects { .. } if sysadmin => MgmtDecision::Allow(None),
            MgmtPermission::InProjects { resource, verb } => match &grants {
                None => MgmtDecision::Unauthorized,
                Some(g) => {
                    let projects = self
                        .store()
                        .list_projects()
                        .await
                        .map_err(|e| AuthFailure::Store(e.to_string()))?;
                    MgmtDecision::AllowIn(
                        projects
                            .into_iter()
                            .filter(|p| grants_allow(g, p, *resource, *verb))
                            .map(|p| p.name)
                            .collect(),
                    )
                }
            },
            MgmtPermission::Project {
                project,
                resource,
                verb,
            } => {
                self.decide_in_project(grants.as_deref(), project, *resource, *verb)
                    .await?
            }
            MgmtPermission::Delegate(wanted) => match &grants {
                None => MgmtDecision::Unauthorized,
                Some(g) if g.user_id.is_some() || g.sysadmin => MgmtDecision::Allow(None),
                Some(g) => match wanted.iter().find_map(|p| robot_lacks(&g.robot, p)) {
                    None => MgmtDecision::Allow(None),
                    Some(missing) => MgmtDecision::Forbidden(format!(
                        "a robot cannot grant what it does not have: {missing}"
                    )),
                },
            },
            MgmtPermission::Both { main, also } => {
                match Box::pin(self.decide_mgmt(caller, also)).await? {
                    MgmtDecision::Allow(_) | MgmtDecision::AllowIn(_) => {
                        Box::pin(self.decide_mgmt(caller, main)).await?
                    }
                    refused => refused,
                }
            }
            MgmtPermission::Retention { id, verb } => {
                let policy = self
                    .store()
                    .retention_policy(*id)
                    .await
                    .map_err(|e| AuthFailure::Store(e.to_string()))?;
                match policy {
                    None if sysadmin => {
                        MgmtDecision::NotFound(format!("retention policy {id} not found"))
                    }
                    // Others cannot tell a missing policy from one they may not see.
                    None => refuse(format!(
                        "tag-retention {} on policy {id} is not allowed",
                        verb.as_str()
                    )),
                    Some(policy) => {
                        self.decide_in_project(
                            grants.as_deref(),
                            &ProjectRef::Id(policy.project_id),
                            Resource::TagRetention,
                            *verb,
                        )
                        .await?
                    }
                }
            }
            MgmtPermission::Robot { id, verb } => {
                let robot = self
                    .store()
                    .robot_by_id(*id)
                    .await
                    .map_err(|e| AuthFailure::Store(e.to_string()))?;
                match robot {
                    None if sysadmin => MgmtDecision::NotFound(format!("robot {id} not found")),
                    // As for projects: others cannot tell a missing robot from one they may
                    // not see.
                    None => refuse(format!(
                        "robot {} on robot {id} is not allowed",
                        verb.as_str()
                    )),
                    Some(robot) => match robot.project_id {
                        Some(project_id) => {
                            self.decide_in_project(
                                grants.as_deref(),
                                &ProjectRef::Id(project_id),
                                Resource::Robot,
                                *verb,
                            )
                            .await?
                        }
                        None if sysadmin => MgmtDecision::Allow(None),
                        None => refuse(
                            "system-level robots are managed by system administrators".into(),
                        ),
                    },
                }
            }
        })
    }
}

impl Authorizer {
    /// The one decision for `/api/v2.0`. Outside token mode there are no accounts or roles:
    /// anything anyone may do answers, reading what a client could pull is allowed as on
    /// `/v2/`, an htpasswd user may change repositories, artifacts and tags (as it may push
    /// and delete on `/v2/`), and everything else needs token mode.
    pub async fn decide_mgmt(
        &self,
        principal: &Principal,
        required: &MgmtPermission,
    ) -> MgmtDecision {
        if let MgmtPermission::Both { main, also } = required {
            return match Box::pin(self.decide_mgmt(principal, also)).await {
                MgmtDecision::Allow(_) | MgmtDecision::AllowIn(_) => {
                    Box::pin(self.decide_mgmt(principal, main)).await
                }
                refused => refused,
            };
        }
        match self.mode() {
            AuthMode::Token(auth) => {
                let caller = match principal {
                    Principal::Account(account) => Caller::Account(account),
                    Principal::Bearer(claims) => Caller::Token(claims),
                    _ => Caller::Anonymous,
                };
                match auth.decide_mgmt(caller, required).await {
                    Ok(decision) => decision,
                    Err(e) => {
                        tracing::error!(error = %e, "management authorization failed");
                        MgmtDecision::Forbidden("authorization is unavailable; try again".into())
                    }
                }
            }
            mode => {
                let htpasswd_user = matches!(principal, Principal::User(_));
                let htpasswd = matches!(mode, AuthMode::Htpasswd { .. });
                let may_read = !htpasswd || htpasswd_user;
                match required {
                    MgmtPermission::Anyone => MgmtDecision::Allow(None),
                    MgmtPermission::Project {
                        resource: Resource::Repository | Resource::Artifact | Resource::Tag,
                        verb: Verb::List | Verb::Read,
                        ..
                    } if may_read => MgmtDecision::Allow(None),
                    MgmtPermission::Project {
                        resource: Resource::Repository | Resource::Artifact | Resource::Tag,
                        ..
                    } if htpasswd_user => MgmtDecision::Allow(None),
                    _ if !may_read => MgmtDecision::Unauthorized,
                    MgmtPermission::Project {
                        resource: Resource::Repository | Resource::Artifact | Resource::Tag,
                        ..
                    } => MgmtDecision::Forbidden(
                        "changing repositories, artifacts and tags through /api/v2.0 needs accounts (htpasswd or token mode)".into(),
                    ),
                    _ => MgmtDecision::Forbidden(
                        "users, projects, members and robots are managed in token mode (auth.mode = \"token\")".into(),
                    ),
                }
            }
        }
    }
}
