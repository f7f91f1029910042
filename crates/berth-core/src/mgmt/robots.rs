//! The part of Harbor's `/robots` requests that decides who may make them: a robot's scope
//! (system or one project), read from `POST /robots`' body ([`RobotCreate`]) and from the
//! list's `q=Level=…,ProjectID=…`. Robots named by id are resolved to their scope by the
//! decision (`MgmtPermission::Robot`), which reads the stored row.

use serde::Deserialize;

use super::{ListQuery, Matcher, MgmtError, ProjectRef};
use crate::access::RobotPermission;

/// Whose robot accounts an operation acts on: Harbor's `level`, and for a project-level
/// robot its project. System-level robots are managed by system administrators; a project's
/// robots by those with Harbor's `robot` permissions in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotScope {
    System,
    Project(ProjectRef),
}

/// Harbor's `RobotCreate`, typed: the level is checked and, for a project-level robot, its
/// one permission names the project (the scope). The rest (name grammar, permission kinds,
/// duration, secret policy) is checked where CLI and API both create robots,
/// `berth_auth::IdentityService`.
#[derive(Clone, PartialEq, Eq)]
pub struct RobotCreate {
    /// The short name (`ci`); the full one is `robot$<project>+ci` or `robot$ci`.
    pub name: String,
    pub description: String,
    /// A secret to use instead of a generated one (empty: generate).
    pub secret: Option<String>,
    pub scope: RobotScope,
    pub disable: bool,
    /// Days until it expires: -1 never, 0 the default, `None` as 0 (Harbor's zero value).
    pub duration: Option<i64>,
    pub permissions: Vec<RobotPermission>,
}

/// Never prints the secret.
impl std::fmt::Debug for RobotCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotCreate")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("disable", &self.disable)
            .field("duration", &self.duration)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// The body as sent: every field of Harbor's model, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RobotCreateJson {
    #[serde(default)]
    name: String,
    description: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    level: String,
    disable: Option<bool>,
    duration: Option<i64>,
    #[serde(default)]
    permissions: Vec<RobotPermission>,
}

/// Harbor's `level` values.
pub const LEVEL_SYSTEM: &str = "system";
pub const LEVEL_PROJECT: &str = "project";

impl RobotCreate {
    /// Parse `POST /robots`' body.
    pub fn parse(body: &[u8]) -> Result<RobotCreate, MgmtError> {
        if body.is_empty() {
            return Err(MgmtError::BadRequest(
                "a JSON request body is required".into(),
            ));
        }
        let json: RobotCreateJson = serde_json::from_slice(body)
            .map_err(|e| MgmtError::BadRequest(format!("invalid request body: {e}")))?;
        let scope = match json.level.as_str() {
            LEVEL_SYSTEM => RobotScope::System,
            LEVEL_PROJECT => match json.permissions.as_slice() {
                [only] => RobotScope::Project(ProjectRef::Name(only.namespace.clone())),
                _ => {
                    return Err(MgmtError::BadRequest(
                        "a project-level robot has exactly one permission, of kind \"project\" on its project".into(),
                    ));
                }
            },
            other => {
                return Err(MgmtError::BadRequest(format!(
                    "level must be \"system\" or \"project\", not {other:?}"
                )));
            }
        };
        Ok(RobotCreate {
            name: json.name,
            description: json.description.unwrap_or_default(),
            secret: json.secret.filter(|s| !s.is_empty()),
            scope,
            disable: json.disable.unwrap_or(false),
            duration: json.duration,
            permissions: json.permissions,
        })
    }
}

/// The robots `GET /robots` lists, from `q`: `Level=system` (or no `Level`) for system-level
/// robots, `Level=project,ProjectID=<id>` for a project's.
pub fn list_scope(query: &ListQuery) -> Result<RobotScope, MgmtError> {
    let exact = |key: &str| match query.term(key) {
        None => Ok(None),
        Some(Matcher::Exact(v)) => Ok(Some(v.as_str())),
        Some(_) => Err(MgmtError::BadRequest(format!(
            "{key} in q must be an exact value ({key}=…)"
        ))),
    };
    match exact("Level")? {
        None | Some(LEVEL_SYSTEM) => Ok(RobotScope::System),
        Some(LEVEL_PROJECT) => {
            let id = exact("ProjectID")?.ok_or_else(|| {
                MgmtError::BadRequest(
                    "listing project-level robots needs ProjectID in q (q=Level=project,ProjectID=<id>)"
                        .into(),
                )
            })?;
            id.parse::<i64>()
                .map(|id| RobotScope::Project(ProjectRef::Id(id)))
                .map_err(|_| {
                    MgmtError::BadRequest(format!("ProjectID must be an integer, not {id:?}"))
                })
        }
        Some(other) => Err(MgmtError::BadRequest(format!(
            "Level must be \"system\" or \"project\", not {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::parse_q;

    fn query(q: &str) -> ListQuery {
        ListQuery {
            page: 1,
            page_size: 10,
            q: parse_q(q).expect("q"),
            sort: Vec::new(),
        }
    }

    #[test]
    fn the_scope_of_a_new_robot_is_its_level_and_namespace() {
        let project = RobotCreate::parse(
            br#"{"name":"ci","level":"project","duration":-1,
                "permissions":[{"kind":"project","namespace":"team","access":[{"resource":"repository","action":"push"}]}]}"#,
        )
        .expect("parses");
        assert_eq!(
            project.scope,
            RobotScope::Project(ProjectRef::Name("team".into()))
        );
        let system = RobotCreate::parse(
            br#"{"name":"sync","level":"system","secret":"","permissions":[
                {"kind":"project","namespace":"*","access":[{"resource":"repository","action":"pull"}]},
                {"kind":"system","namespace":"/","access":[{"resource":"project","action":"create"}]}]}"#,
        )
        .expect("parses");
        assert_eq!(system.scope, RobotScope::System);
        assert_eq!(system.secret, None, "an empty secret means generate one");
    }

    #[test]
    fn bad_bodies_are_refused_before_any_decision() {
        for bad in [
            &br#""#[..],
            br#"{"name":"ci","level":"global","permissions":[]}"#,
            br#"{"name":"ci","permissions":[]}"#,
            br#"{"name":"ci","level":"project","permissions":[]}"#,
            br#"{"name":"ci","level":"system","surprise":true}"#,
            br#"{"name":"ci","level":"system","duration":"30"}"#,
            br#"{"name":"ci","level":"system","permissions":[{"kind":"project","namespace":"*","access":[],"extra":1}]}"#,
            br#"{not json"#,
        ] {
            assert!(
                matches!(RobotCreate::parse(bad), Err(MgmtError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let robot = RobotCreate::parse(
            br#"{"name":"ci","level":"system","secret":"Sup3rSecret-x","permissions":[]}"#,
        )
        .expect("parses");
        assert!(!format!("{robot:?}").contains("Sup3rSecret"));
    }

    #[test]
    fn listing_scope_from_q() {
        assert_eq!(list_scope(&query("")), Ok(RobotScope::System));
        assert_eq!(list_scope(&query("Level=system")), Ok(RobotScope::System));
        assert_eq!(
            list_scope(&query("Level=project,ProjectID=7")),
            Ok(RobotScope::Project(ProjectRef::Id(7)))
        );
        for bad in [
            "Level=project",
            "Level=project,ProjectID=x",
            "Level=global",
            "Level=~sys",
        ] {
            assert!(
                matches!(list_scope(&query(bad)), Err(MgmtError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
