//! Managing accounts, projects, members and robots: the one place both the operator CLI and
//! the management API call. It validates names and passwords, hashes secrets (argon2id),
//! and tells the token-mode caches when something changed.

use std::sync::Arc;

use berth_core::access::{RobotAccess, RobotName, valid_project_name};
use berth_core::{RobotPermission, Role};
use berth_meta::{IdentityStore, Member, MetaError, NewRobot, NewUser, Project, Robot, User};

use crate::access::TokenAuth;
use crate::password;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(MetaError),
}

impl From<MetaError> for IdentityError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Conflict(what) => IdentityError::Conflict(what),
            other => IdentityError::Store(other),
        }
    }
}

pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    pub name: String,
    pub password: String,
    pub email: String,
    pub realname: String,
    pub comment: String,
    pub sysadmin: bool,
}

/// How long a robot lives when it is created (or updated) with duration 0: Harbor's
/// `robot_token_duration`, whose default is 30 days. Not configurable in berth yet.
pub const DEFAULT_ROBOT_DAYS: i64 = 30;

/// The longest duration Harbor accepts, in days.
const MAX_ROBOT_DAYS: i64 = i32::MAX as i64 - 1;

/// A robot to create. Never printed with `{:?}`: it may carry a secret.
#[derive(Clone)]
pub struct RobotSpec {
    pub name: RobotName,
    pub description: String,
    /// Days until it expires: `None` or -1 never, 0 [`DEFAULT_ROBOT_DAYS`], N > 0 N days.
    pub duration_days: Option<i64>,
    pub permissions: Vec<RobotPermission>,
    /// A secret to use instead of a generated one.
    pub secret: Option<String>,
    /// Created disabled (it cannot log in until enabled).
    pub disabled: bool,
}

/// What `PUT /robots/{id}` replaces: everything but the name, level, secret and creation
/// time.
#[derive(Debug, Clone)]
pub struct RobotChanges {
    pub description: String,
    pub disabled: bool,
    /// Days from the robot's creation until it expires (as in [`RobotSpec::duration_days`]),
    /// or `None` to keep the expiry.
    pub duration_days: Option<i64>,
    pub permissions: Vec<RobotPermission>,
}

/// A robot's lifetime in whole days from its creation to its expiry, -1 if it never
/// expires: Harbor's `duration`, derived from the stored expiry (rounded, as the CLI's
/// expiry is taken a moment before the row's creation time).
pub fn robot_duration_days(robot: &Robot) -> i64 {
    match robot.expires_at {
        None => -1,
        Some(at) => at.saturating_sub(robot.created_at).saturating_add(43_200) / 86_400,
    }
}

/// When a robot created at `created_at` with `duration_days` expires (`None`: never).
fn robot_expiry(created_at: i64, duration_days: Option<i64>) -> Result<Option<i64>> {
    let days = match duration_days {
        None | Some(-1) => return Ok(None),
        Some(0) => DEFAULT_ROBOT_DAYS,
        Some(days) if (1..=MAX_ROBOT_DAYS).contains(&days) => days,
        Some(days) => {
            return Err(IdentityError::Invalid(format!(
                "duration {days}: days until expiry must be -1 (never), 0 (the default, {DEFAULT_ROBOT_DAYS} days) or a positive number of days below 2^31"
            )));
        }
    };
    Ok(Some(created_at.saturating_add(days * 86_400)))
}

/// Permissions for one project with these repository actions (`pull`, `push`, `delete`).
pub fn project_permissions(project: &str, actions: &[&str]) -> Vec<RobotPermission> {
    vec![RobotPermission {
        kind: "project".into(),
        namespace: project.to_owned(),
        access: actions
            .iter()
            .map(|a| match *a {
                "delete" => RobotAccess::new("artifact", "delete"),
                other => RobotAccess::new("repository", other),
            })
            .collect(),
    }]
}

#[derive(Clone)]
pub struct IdentityService {
    store: Arc<dyn IdentityStore>,
    caches: Option<Arc<TokenAuth>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn check_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 255
        && !name.starts_with(berth_core::access::ROBOT_PREFIX)
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || ":,\"~#%$/\\".contains(c));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Invalid(format!(
            "invalid user name {name:?}: 1-255 characters without spaces or any of : , \" ~ # % $ / \\"
        )))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IdentityError::Invalid(format!("hashing task failed: {e}")))
}

async fn hash_secret(secret: &str) -> Result<String> {
    let secret = secret.to_owned();
    blocking(move || password::hash(&secret))
        .await?
        .map_err(IdentityError::Invalid)
}

impl IdentityService {
    pub fn new(store: Arc<dyn IdentityStore>) -> IdentityService {
        IdentityService {
            store,
            caches: None,
        }
    }

    /// Invalidate token mode's caches after every change.
    pub fn with_caches(mut self, auth: Arc<TokenAuth>) -> IdentityService {
        self.caches = Some(auth);
        self
    }

    fn changed(&self) {
        if let Some(auth) = &self.caches {
            auth.invalidate();
        }
    }

    /// On first start in token mode (no users at all): create `admin`, a system
    /// administrator, with `password`, or with a generated one that is returned so the
    /// caller can show it once.
    pub async fn bootstrap_admin(&self, password: Option<String>) -> Result<Option<String>> {
        if !self.store.list_users().await?.is_empty() {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => (p, false),
            None => (
                password::generate_secret().map_err(IdentityError::Invalid)?,
                true,
            ),
        };
        self.add_user(NewAccount {
            name: "admin".into(),
            password: password.clone(),
            sysadmin: true,
            comment: "created on first start".into(),
            ..Default::default()
        })
        .await?;
        Ok(generated.then_some(password))
    }

    pub async fn add_user(&self, account: NewAccount) -> Result<User> {
        check_user_name(&account.name)?;
        if !account.email.is_empty() {
            check_email(&account.email)?;
        }
        password::check_policy(&account.password).map_err(IdentityError::Invalid)?;
        let password_hash = hash_secret(&account.password).await?;
        let id = self
            .store
            .create_user(&NewUser {
                name: account.name.clone(),
                email: account.email,
                realname: account.realname,
                comment: account.comment,
                password_hash,
                sysadmin: account.sysadmin,
            })
            .await?;
        self.changed();
        self.store
            .user_by_id(id)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("user {}", account.name)))
    }

    pub async fn user(&self, name: &str) -> Result<User> {
        self.store
            .user_by_name(name)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("user {name}")))
    }

    pub async fn user_by_id(&self, id: i64) -> Result<User> {
        self.store
            .user_by_id(id)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("user {id}")))
    }

    /// Change a user's email, real name and comment.
    pub async fn update_profile(
        &self,
        id: i64,
        email: Option<String>,
        realname: Option<String>,
        comment: Option<String>,
    ) -> Result<User> {
        let mut user = self.user_by_id(id).await?;
        if let Some(email) = email {
            check_email(&email)?;
            user.email = email;
        }
        if let Some(realname) = realname {
            user.realname = realname;
        }
        if let Some(comment) = comment {
            user.comment = comment;
        }
        self.store.update_user(&user).await?;
        self.changed();
        Ok(user)
    }

    /// Whether `password` is the user's password (slow: argon2id).
    pub async fn check_password(&self, name: &str, password: &str) -> Result<bool> {
        let user = self.user(name).await?;
        let (password, hash) = (password.to_owned(), user.password_hash);
        blocking(move || password::verify(&password, &hash)).await
    }

    /// How many repositories a project holds.
    pub async fn repository_count(&self, project: &str) -> Result<u64> {
        Ok(self.store.project_repository_count(project).await?)
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        Ok(self.store.list_users().await?)
    }

    pub async fn set_password(&self, name: &str, new_password: &str) -> Result<()> {
        password::check_policy(new_password).map_err(IdentityError::Invalid)?;
        let mut user = self.user(name).await?;
        user.password_hash = hash_secret(new_password).await?;
        self.store.update_user(&user).await?;
        self.changed();
        Ok(())
    }

    pub async fn set_sysadmin(&self, name: &str, sysadmin: bool) -> Result<()> {
        let mut user = self.user(name).await?;
        user.sysadmin = sysadmin;
        self.store.update_user(&user).await?;
        self.changed();
        Ok(())
    }

    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let user = self.user(name).await?;
        self.store.delete_user(user.id).await?;
        self.changed();
        Ok(())
    }

    /// Create a project; its owner (if any) becomes its project admin.
    pub async fn create_project(
        &self,
        name: &str,
        public: bool,
        owner: Option<&str>,
    ) -> Result<Project> {
        if !valid_project_name(name) {
            return Err(IdentityError::Invalid(format!(
                "invalid project name {name:?}: lowercase letters, digits and . _ - (a valid first component of a repository name)"
            )));
        }
        let owner = match owner {
            Some(o) => Some(self.user(o).await?),
            None => None,
        };
        let id = self
            .store
            .create_project(name, public, owner.as_ref().map(|u| u.id))
            .await?;
        if let Some(owner) = &owner {
            self.store
                .set_member(id, owner.id, Role::ProjectAdmin)
                .await?;
        }
        self.changed();
        self.project(name).await
    }

    pub async fn project(&self, name: &str) -> Result<Project> {
        self.store
            .project_by_name(name)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("project {name}")))
    }

    pub async fn projects(&self) -> Result<Vec<Project>> {
        Ok(self.store.list_projects().await?)
    }

    pub async fn set_public(&self, name: &str, public: bool) -> Result<()> {
        let mut project = self.project(name).await?;
        project.public = public;
        self.store.update_project(&project).await?;
        self.changed();
        Ok(())
    }

    /// Delete a project that holds no repositories (as Harbor refuses otherwise).
    pub async fn delete_project(&self, name: &str) -> Result<()> {
        let project = self.project(name).await?;
        let repositories = self.store.project_repository_count(name).await?;
        if repositories > 0 {
            return Err(IdentityError::Invalid(format!(
                "project {name} still holds {repositories} repositories: delete them first"
            )));
        }
        self.store.delete_project(project.id).await?;
        self.changed();
        Ok(())
    }

    /// Add a member, or change its role.
    pub async fn set_member(&self, project: &str, user: &str, role: Role) -> Result<()> {
        let project = self.project(project).await?;
        let user = self.user(user).await?;
        self.store.set_member(project.id, user.id, role).await?;
        self.changed();
        Ok(())
    }

    pub async fn remove_member(&self, project: &str, user: &str) -> Result<()> {
        let project_row = self.project(project).await?;
        let user_row = self.user(user).await?;
        if !self
            .store
            .remove_member(project_row.id, user_row.id)
            .await?
        {
            return Err(IdentityError::NotFound(format!(
                "member {user} of project {project}"
            )));
        }
        self.changed();
        Ok(())
    }

    pub async fn members(&self, project: &str) -> Result<Vec<Member>> {
        let project = self.project(project).await?;
        Ok(self.store.members(project.id).await?)
    }

    /// Create a robot; returns it and its secret (shown once, never stored in clear).
    pub async fn create_robot(&self, mut spec: RobotSpec) -> Result<(Robot, String)> {
        let project_id = match &spec.name {
            RobotName::Project { project, name } => {
                check_robot_part(name)?;
                Some(self.project(project).await?.id)
            }
            RobotName::System { name } => {
                check_robot_part(name)?;
                None
            }
        };
        self.check_robot_permissions(&spec.name, &mut spec.permissions)
            .await?;
        let secret = match spec.secret {
            Some(s) => {
                password::check_policy(&s).map_err(IdentityError::Invalid)?;
                s
            }
            None => password::generate_secret().map_err(IdentityError::Invalid)?,
        };
        let expires_at = robot_expiry(now(), spec.duration_days)?;
        let full_name = spec.name.to_string();
        let id = self
            .store
            .create_robot(&NewRobot {
                name: full_name.clone(),
                description: spec.description,
                project_id,
                secret_hash: hash_secret(&secret).await?,
                disabled: spec.disabled,
                expires_at,
                permissions: spec.permissions,
            })
            .await?;
        self.changed();
        let robot = self
            .store
            .robot_by_id(id)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("robot {full_name}")))?;
        Ok((robot, secret))
    }

    /// Harbor's rules for a robot's permissions, by its level. Every entry needs access
    /// entries with a resource and an action, and an effect of `allow` or `deny` (an empty
    /// one means allow, and is stored as absent). A project-level robot has exactly one
    /// entry, of kind `project` on its own project. A system-level robot's entries are of
    /// kind `project` on an existing project or `*` (every project), or of kind `system` on
    /// `/` — stored as given, but they grant nothing in berth yet.
    async fn check_robot_permissions(
        &self,
        name: &RobotName,
        permissions: &mut [RobotPermission],
    ) -> Result<()> {
        let invalid = |m: String| Err(IdentityError::Invalid(m));
        if permissions.is_empty() {
            return invalid("a robot needs at least one permission".into());
        }
        for permission in permissions.iter_mut() {
            if permission.access.is_empty() {
                return invalid(format!(
                    "the permission of kind {:?} on {:?} has no access entries",
                    permission.kind, permission.namespace
                ));
            }
            for access in &mut permission.access {
                if access.resource.is_empty() || access.action.is_empty() {
                    return invalid("every access entry needs a resource and an action".into());
                }
                match access.effect.as_deref() {
                    None | Some("allow" | "deny") => {}
                    Some("") => access.effect = None,
                    Some(other) => {
                        return invalid(format!(
                            "effect must be \"allow\" or \"deny\", not {other:?}"
                        ));
                    }
                }
            }
        }
        match name {
            RobotName::Project { project, .. } => match permissions {
                [only] if only.kind == "project" && &only.namespace == project => Ok(()),
                _ => invalid(format!(
                    "a project-level robot has exactly one permission, of kind \"project\" on its project {project}"
                )),
            },
            RobotName::System { .. } => {
                for permission in permissions.iter() {
                    match (permission.kind.as_str(), permission.namespace.as_str()) {
                        ("project", "*") | ("system", "/") => {}
                        ("project", project) => {
                            self.project(project).await?;
                        }
                        ("system", other) => {
                            return invalid(format!(
                                "a permission of kind \"system\" has namespace \"/\", not {other:?}"
                            ));
                        }
                        (kind, _) => {
                            return invalid(format!(
                                "kind must be \"project\" or \"system\", not {kind:?}"
                            ));
                        }
                    }
                }
                Ok(())
            }
        }
    }

    pub async fn robot_by_id(&self, id: i64) -> Result<Robot> {
        self.store
            .robot_by_id(id)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("robot {id}")))
    }

    /// Replace a robot's description, disabled flag, permissions and (if given) duration,
    /// counted from its creation as Harbor does.
    pub async fn update_robot(&self, id: i64, mut changes: RobotChanges) -> Result<Robot> {
        let mut robot = self.robot_by_id(id).await?;
        let name = RobotName::parse(&robot.name).ok_or_else(|| {
            IdentityError::Invalid(format!(
                "stored robot name {:?} is not a robot's name",
                robot.name
            ))
        })?;
        self.check_robot_permissions(&name, &mut changes.permissions)
            .await?;
        if changes.duration_days.is_some() {
            robot.expires_at = robot_expiry(robot.created_at, changes.duration_days)?;
        }
        robot.description = changes.description;
        robot.disabled = changes.disabled;
        robot.permissions = changes.permissions;
        self.store.update_robot(&robot).await?;
        self.changed();
        self.robot_by_id(id).await
    }

    pub async fn robot(&self, name: &str) -> Result<Robot> {
        self.store
            .robot_by_name(name)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("robot {name}")))
    }

    pub async fn robots(&self) -> Result<Vec<Robot>> {
        Ok(self.store.list_robots().await?)
    }

    pub async fn delete_robot(&self, name: &str) -> Result<()> {
        let robot = self.robot(name).await?;
        self.store.delete_robot(robot.id).await?;
        self.changed();
        Ok(())
    }

    /// Give a robot a new secret (the given one, or a generated one); returns it.
    pub async fn refresh_robot_secret(&self, name: &str, secret: Option<String>) -> Result<String> {
        let mut robot = self.robot(name).await?;
        let secret = match secret {
            Some(s) => {
                password::check_policy(&s).map_err(IdentityError::Invalid)?;
                s
            }
            None => password::generate_secret().map_err(IdentityError::Invalid)?,
        };
        robot.secret_hash = hash_secret(&secret).await?;
        self.store.update_robot(&robot).await?;
        self.changed();
        Ok(secret)
    }

    pub async fn set_robot_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        let mut robot = self.robot(name).await?;
        robot.disabled = disabled;
        self.store.update_robot(&robot).await?;
        self.changed();
        Ok(())
    }
}

/// A plausible email address: one `@` with text on both sides, no spaces, at most 255.
fn check_email(email: &str) -> Result<()> {
    let ok = email.len() <= 255
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Invalid(format!("invalid email {email:?}")))
    }
}

/// Harbor's grammar for a robot's own name, `^[a-z0-9]+(?:[._-][a-z0-9]+)*$`: runs of
/// lowercase letters and digits joined by single `.`, `_` or `-`.
fn check_robot_part(name: &str) -> Result<()> {
    let ok = name.len() <= 255
        && name.split(['.', '_', '-']).all(|run| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Invalid(format!(
            "invalid robot name {name:?}: lowercase letters and digits, joined by single . _ or -"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_names_follow_harbors_grammar() {
        for good in ["ci", "a1", "ci-push", "a.b_c-d", "0"] {
            assert!(check_robot_part(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "CI",
            "a+b",
            "-ci",
            "ci-",
            "a..b",
            "a b",
            "a$b",
            &"x".repeat(256),
        ] {
            assert!(check_robot_part(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_as_harbor_counts_them() {
        assert_eq!(robot_expiry(1_000, None).ok(), Some(None));
        assert_eq!(robot_expiry(1_000, Some(-1)).ok(), Some(None));
        assert_eq!(
            robot_expiry(1_000, Some(0)).ok(),
            Some(Some(1_000 + DEFAULT_ROBOT_DAYS * 86_400))
        );
        assert_eq!(
            robot_expiry(1_000, Some(2)).ok(),
            Some(Some(1_000 + 2 * 86_400))
        );
        for bad in [-2, i64::from(i32::MAX), i64::MAX, i64::MIN] {
            assert!(robot_expiry(1_000, Some(bad)).is_err(), "{bad}");
        }
        let robot = |created_at, expires_at| Robot {
            id: 1,
            name: "robot$ci".into(),
            description: String::new(),
            project_id: None,
            secret_hash: String::new(),
            disabled: false,
            expires_at,
            permissions: Vec::new(),
            created_at,
            updated_at: created_at,
        };
        assert_eq!(robot_duration_days(&robot(10, None)), -1);
        assert_eq!(robot_duration_days(&robot(10, Some(10 + 7 * 86_400))), 7);
        // The CLI's expiry is taken a moment before the row is created.
        assert_eq!(robot_duration_days(&robot(12, Some(10 + 7 * 86_400))), 7);
    }
}
