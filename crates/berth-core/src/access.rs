//! The access model, as Harbor has it: projects (the first path component of a repository),
//! project roles with Harbor's ids, robot-account names and permissions. Pure data and pure
//! rules; who holds which role is the metadata store's business, the decision is
//! `berth_auth`'s.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::endpoint::Action;
use crate::name::RepositoryName;

/// A project role, with Harbor's numeric ids (what `role_id` means in its API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    ProjectAdmin,
    Developer,
    Guest,
    Maintainer,
    LimitedGuest,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::ProjectAdmin,
        Role::Developer,
        Role::Guest,
        Role::Maintainer,
        Role::LimitedGuest,
    ];

    /// Harbor's `role_id`.
    pub fn id(self) -> i64 {
        match self {
            Role::ProjectAdmin => 1,
            Role::Developer => 2,
            Role::Guest => 3,
            Role::Maintainer => 4,
            Role::LimitedGuest => 5,
        }
    }

    pub fn from_id(id: i64) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.id() == id)
    }

    /// Harbor's role names (`role_name` in its API).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProjectAdmin => "projectAdmin",
            Role::Developer => "developer",
            Role::Guest => "guest",
            Role::Maintainer => "maintainer",
            Role::LimitedGuest => "limitedGuest",
        }
    }

    /// What the role may do to the project's repositories. As in Harbor: guests (limited or
    /// not) pull; developers also push; maintainers and project admins also delete.
    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::Pull => true,
            Action::Push => !matches!(self, Role::Guest | Role::LimitedGuest),
            Action::Delete => matches!(self, Role::Maintainer | Role::ProjectAdmin),
            // The whole catalog is for system administrators; others see a filtered one.
            Action::Catalog => false,
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(id) = s.parse::<i64>() {
            return Role::from_id(id).ok_or_else(|| format!("no role with id {id}"));
        }
        let lower = s.to_ascii_lowercase().replace(['-', '_', ' '], "");
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().to_ascii_lowercase() == lower || (lower == "admin" && *r == Role::ProjectAdmin))
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?}: use projectAdmin (1), developer (2), guest (3), maintainer (4) or limitedGuest (5)"
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The project a repository belongs to: its first path component, when it has more than
/// one. A single-component name (`busybox`) belongs to no project: only system
/// administrators may push it, as Harbor refuses such pushes.
pub fn project_of(repository: &RepositoryName) -> Option<&str> {
    repository
        .as_str()
        .split_once('/')
        .map(|(project, _)| project)
}

/// Whether `name` is a valid project name (Harbor: lowercase letters, digits and `._-`,
/// starting with a letter or digit, 1–255 characters; it must also be a valid first
/// component of a repository name).
pub fn valid_project_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.contains('/')
        && name.parse::<RepositoryName>().is_ok()
}

/// Prefix of every robot account's name, as Harbor names them.
pub const ROBOT_PREFIX: &str = "robot$";

/// A robot account's full name: `robot$<project>+<name>` (project level) or `robot$<name>`
/// (system level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotName {
    Project { project: String, name: String },
    System { name: String },
}

impl RobotName {
    pub fn parse(full: &str) -> Option<RobotName> {
        let rest = full.strip_prefix(ROBOT_PREFIX)?;
        if rest.is_empty() {
            return None;
        }
        match rest.split_once('+') {
            Some((project, name)) if !project.is_empty() && !name.is_empty() => {
                Some(RobotName::Project {
                    project: project.to_owned(),
                    name: name.to_owned(),
                })
            }
            Some(_) => None,
            None => Some(RobotName::System {
                name: rest.to_owned(),
            }),
        }
    }
}

impl fmt::Display for RobotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RobotName::Project { project, name } => write!(f, "{ROBOT_PREFIX}{project}+{name}"),
            RobotName::System { name } => write!(f, "{ROBOT_PREFIX}{name}"),
        }
    }
}

/// One entry of a robot's permissions, in Harbor's JSON shape:
/// `{"kind":"project","namespace":"team","access":[{"resource":"repository","action":"pull"}]}`.
/// `namespace` `*` means every project (system robots only). Entries of kind `system`
/// (namespace `/`, Harbor's system-wide resources) are stored as given but grant nothing in
/// berth yet: only `project` entries are read by [`RobotPermission::allows`] and the
/// management decision. Fields other than Harbor's are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotPermission {
    pub kind: String,
    pub namespace: String,
    pub access: Vec<RobotAccess>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotAccess {
    pub resource: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

impl RobotAccess {
    pub fn new(resource: &str, action: &str) -> RobotAccess {
        RobotAccess {
            resource: resource.to_owned(),
            action: action.to_owned(),
            effect: None,
        }
    }

    /// The registry action this entry grants, if any. Harbor's resources: `repository`
    /// pull/push (and `delete`), `artifact` delete.
    fn grants(&self) -> Option<Action> {
        if self.effect.as_deref().is_some_and(|e| e != "allow") {
            return None;
        }
        match (self.resource.as_str(), self.action.as_str()) {
            ("repository", "pull") => Some(Action::Pull),
            ("repository", "push") => Some(Action::Push),
            ("repository" | "artifact", "delete") => Some(Action::Delete),
            _ => None,
        }
    }
}

impl RobotPermission {
    /// Whether this entry lets its robot perform `action` in `project`.
    pub fn allows(&self, project: &str, action: Action) -> bool {
        self.kind == "project"
            && (self.namespace == "*" || self.namespace == project)
            && self.access.iter().any(|a| a.grants() == Some(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_keep_harbor_ids_and_names() {
        for role in Role::ALL {
            assert_eq!(Role::from_id(role.id()), Some(role));
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.id().to_string().parse::<Role>(), Ok(role));
        }
        assert_eq!("maintainer".parse::<Role>(), Ok(Role::Maintainer));
        assert_eq!(Role::from_id(0), None);
        assert!("owner".parse::<Role>().is_err());
    }

    #[test]
    fn role_permissions_follow_harbor() {
        use Action::*;
        let table = [
            (Role::LimitedGuest, [true, false, false]),
            (Role::Guest, [true, false, false]),
            (Role::Developer, [true, true, false]),
            (Role::Maintainer, [true, true, true]),
            (Role::ProjectAdmin, [true, true, true]),
        ];
        for (role, expected) in table {
            assert_eq!(
                [role.allows(Pull), role.allows(Push), role.allows(Delete)],
                expected,
                "{role}"
            );
        }
    }

    #[test]
    fn projects_are_the_first_component() {
        let name = |s: &str| s.parse::<RepositoryName>().expect("name");
        assert_eq!(project_of(&name("team/app")), Some("team"));
        assert_eq!(project_of(&name("team/a/b")), Some("team"));
        assert_eq!(project_of(&name("busybox")), None);
        assert!(valid_project_name("library"));
        assert!(!valid_project_name("Library"));
        assert!(!valid_project_name("a/b"));
        assert!(!valid_project_name(""));
    }

    #[test]
    fn robot_names() {
        assert_eq!(
            RobotName::parse("robot$team+ci"),
            Some(RobotName::Project {
                project: "team".into(),
                name: "ci".into()
            })
        );
        assert_eq!(
            RobotName::parse("robot$sync"),
            Some(RobotName::System {
                name: "sync".into()
            })
        );
        for bad in ["robot$", "robot$+x", "robot$x+", "alice"] {
            assert_eq!(RobotName::parse(bad), None, "{bad}");
        }
        let name = RobotName::parse("robot$team+ci").expect("parses");
        assert_eq!(name.to_string(), "robot$team+ci");
    }

    #[test]
    fn robot_permissions_grant_per_project_and_action() {
        let permission: RobotPermission = serde_json::from_str(
            r#"{"kind":"project","namespace":"team","access":[
                {"resource":"repository","action":"pull"},
                {"resource":"repository","action":"push"},
                {"resource":"artifact","action":"delete","effect":"deny"}]}"#,
        )
        .expect("harbor json");
        assert!(permission.allows("team", Action::Pull));
        assert!(permission.allows("team", Action::Push));
        assert!(!permission.allows("team", Action::Delete));
        assert!(!permission.allows("other", Action::Pull));
        let everywhere = RobotPermission {
            kind: "project".into(),
            namespace: "*".into(),
            access: vec![RobotAccess::new("repository", "pull")],
        };
        assert!(everywhere.allows("any", Action::Pull));
    }
}
