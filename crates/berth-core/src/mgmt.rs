//! Parsing a Harbor-compatible `/api/v2.0` request into a typed [`MgmtEndpoint`], and the
//! permission it requires ([`MgmtEndpoint::required`]) — the only input to authorization, as
//! `Endpoint::required_access` is for `/v2/`.
//!
//! Paths follow Harbor's `api/v2.0/swagger.yaml`. `{project_name_or_id}` is an id when it
//! parses as an integer, unless the request says `X-Is-Resource-Name: true`; the repository
//! endpoints name the project (`{project_name}`). Segments are percent-decoded here, and
//! `{repository_name}` once more: Harbor's clients encode it twice (`a/b` as `a%252Fb`).
//!
//! A permission may depend on more than the path: `POST /robots`' body says the robot's
//! level and project, so it is parsed here too ([`robots`]); `/robots/{id}` names a stored
//! robot, whose scope the decision looks up ([`MgmtPermission::Robot`]).

use crate::access::Role;
use crate::endpoint::Reference;
use crate::name::{RepositoryName, Tag};

pub mod robots;

pub use robots::{RobotCreate, RobotScope};

/// A project named in a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRef {
    Id(i64),
    Name(String),
}

impl ProjectRef {
    fn parse(segment: &str, is_name: bool) -> ProjectRef {
        match segment.parse::<i64>() {
            Ok(id) if !is_name => ProjectRef::Id(id),
            _ => ProjectRef::Name(segment.to_owned()),
        }
    }
}

impl std::fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProjectRef::Id(id) => write!(f, "{id}"),
            ProjectRef::Name(name) => f.write_str(name),
        }
    }
}

/// Harbor's pagination and filters: `page`, `page_size` (1–100), `q`, `sort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub page: u64,
    pub page_size: u64,
    pub q: Vec<QueryTerm>,
    pub sort: Vec<SortKey>,
}

/// Harbor's largest page.
pub const MAX_PAGE_SIZE: u64 = 100;

/// One `q` term: `k=v`, `k=~v`, `k=[a~b]`, `k={a b}`, `k=(a b)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryTerm {
    pub key: String,
    pub matcher: Matcher,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Exact(String),
    Fuzzy(String),
    Range(Option<String>, Option<String>),
    AnyOf(Vec<String>),
    AllOf(Vec<String>),
}

impl Matcher {
    /// Whether `value` satisfies the matcher (strings compared as Harbor's database does:
    /// exact, substring for fuzzy, numeric when both sides are numbers for ranges).
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(v) => value == v,
            Matcher::Fuzzy(v) => value.contains(v.as_str()),
            Matcher::AnyOf(vs) => vs.iter().any(|v| v == value),
            Matcher::AllOf(vs) => vs.iter().all(|v| v == value),
            Matcher::Range(min, max) => {
                let cmp = |bound: &str| match (value.parse::<i64>(), bound.parse::<i64>()) {
                    (Ok(a), Ok(b)) => a.cmp(&b),
                    _ => value.cmp(bound),
                };
                min.as_deref().is_none_or(|m| cmp(m).is_ge())
                    && max.as_deref().is_none_or(|m| cmp(m).is_le())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub field: String,
    pub descending: bool,
}

/// A repository named in a path: `/projects/{project_name}/repositories/{repository_name}`.
/// Harbor names the project here (never an id) and the repository without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryPath {
    pub project: ProjectRef,
    /// The full name, project included.
    pub name: RepositoryName,
}

/// An artifact named in a path: a digest or a tag of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactPath {
    pub repository: RepositoryPath,
    pub reference: Reference,
}

/// What an artifact listing or lookup includes (`with_tag`, `with_accessory`). Harbor's
/// other `with_*` flags (labels, scan overview, signature, immutable status, SBOM) are
/// validated and answered as "none": berth keeps no such data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactWith {
    pub tags: bool,
    pub accessories: bool,
}

/// A text condition from `q`: `k=v` is exact, `k=~v` a substring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextFilter {
    Exact(String),
    Contains(String),
}

impl TextFilter {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            TextFilter::Exact(v) => value == v,
            TextFilter::Contains(v) => value.contains(v.as_str()),
        }
    }
}

/// Harbor's `q=tags=…` on artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TagFilter {
    #[default]
    Any,
    /// `tags=*`
    Tagged,
    /// `tags=nil`
    Untagged,
    /// `tags=~v`: some tag's name contains `v`.
    NameContains(String),
}

/// The artifacts a listing shows, from `q` (keys berth knows; others are ignored, as Harbor
/// ignores keys its model lacks).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArtifactFilter {
    pub tags: TagFilter,
    pub digest: Option<TextFilter>,
    /// Harbor's `media_type`: the config's media type (an index's own).
    pub media_type: Option<TextFilter>,
    pub manifest_media_type: Option<TextFilter>,
    /// `base=*`: every artifact, also untagged children of an index and accessories, which
    /// are otherwise shown only under their parent or subject (Harbor's base collection).
    pub all: bool,
    /// `labels=(…)`: berth has no labels, so nothing matches.
    pub nothing: bool,
}

impl ArtifactFilter {
    fn from_query(query: &ListQuery) -> Result<ArtifactFilter, MgmtError> {
        let mut filter = ArtifactFilter::default();
        for term in &query.q {
            match term.key.as_str() {
                "tags" => {
                    filter.tags = match &term.matcher {
                        Matcher::Exact(v) if v == "*" => TagFilter::Tagged,
                        Matcher::Exact(v) if v == "nil" => TagFilter::Untagged,
                        Matcher::Fuzzy(v) => TagFilter::NameContains(v.clone()),
                        _ => {
                            return Err(MgmtError::BadRequest(
                                "the value of \"tags\" query can only be fuzzy match value or exact match value with \"*\" and \"nil\"".into(),
                            ));
                        }
                    }
                }
                "digest" => filter.digest = Some(text_filter(term)?),
                "media_type" => filter.media_type = Some(text_filter(term)?),
                "manifest_media_type" => filter.manifest_media_type = Some(text_filter(term)?),
                "base" => match &term.matcher {
                    Matcher::Exact(v) if v == "*" => filter.all = true,
                    _ => {
                        return Err(MgmtError::BadRequest(
                            "the value of \"base\" query can only be exact match value with \"*\""
                                .into(),
                        ));
                    }
                },
                "labels" => filter.nothing = true,
                _ => {}
            }
        }
        Ok(filter)
    }
}

/// An exact or fuzzy term as a [`TextFilter`]; ranges and lists are refused for text keys.
fn text_filter(term: &QueryTerm) -> Result<TextFilter, MgmtError> {
    match &term.matcher {
        Matcher::Exact(v) => Ok(TextFilter::Exact(v.clone())),
        Matcher::Fuzzy(v) => Ok(TextFilter::Contains(v.clone())),
        _ => Err(MgmtError::BadRequest(format!(
            "{} can only be matched exactly (k=v) or fuzzily (k=~v)",
            term.key
        ))),
    }
}

/// The order of a listing: one of the model's keys, ascending or descending; ties by id,
/// newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order<K> {
    pub key: K,
    pub descending: bool,
}

/// Keys repositories sort by (Harbor's default: newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryKey {
    Name,
    CreationTime,
    UpdateTime,
    Id,
}

/// Keys artifacts sort by (default: last pushed first). `pull_time` is accepted and
/// orders nothing: berth does not record pulls yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKey {
    PushTime,
    Id,
}

/// Keys tags sort by (default: last pushed first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKey {
    Name,
    PushTime,
    Id,
}

/// The first sort key of `query` that `known` maps, else `default` (Harbor's default order).
fn order<K: Copy>(query: &ListQuery, known: fn(&str) -> Option<K>, default: Order<K>) -> Order<K> {
    query
        .sort
        .iter()
        .find_map(|s| {
            known(&s.field).map(|key| Order {
                key,
                descending: s.descending,
            })
        })
        .unwrap_or(default)
}

impl ListQuery {
    /// The first term for `key`, if any.
    pub fn term(&self, key: &str) -> Option<&Matcher> {
        self.q.iter().find(|t| t.key == key).map(|t| &t.matcher)
    }

    /// Offset of the page's first item.
    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.page_size)
    }
}

/// A Harbor RBAC resource inside a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// The project itself.
    Project,
    Member,
    Log,
    Repository,
    Artifact,
    Tag,
    Robot,
    /// Tag immutability rules (Harbor's `immutable-tag`).
    ImmutableTag,
    /// The project's retention policy and its runs (Harbor's `tag-retention`; running it
    /// is Harbor's `operate`, here `update`).
    TagRetention,
}

/// A Harbor RBAC action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Read,
    List,
    Create,
    Update,
    Delete,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Project => "project",
            Resource::Member => "member",
            Resource::Log => "log",
            Resource::Repository => "repository",
            Resource::Artifact => "artifact",
            Resource::Tag => "tag",
            Resource::Robot => "robot",
            Resource::ImmutableTag => "immutable-tag",
            Resource::TagRetention => "tag-retention",
        }
    }

    pub const ALL: [Resource; 9] = [
        Resource::Project,
        Resource::Member,
        Resource::Log,
        Resource::Repository,
        Resource::Artifact,
        Resource::Tag,
        Resource::Robot,
        Resource::ImmutableTag,
        Resource::TagRetention,
    ];
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Read => "read",
            Verb::List => "list",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
        }
    }

    pub const ALL: [Verb; 5] = [
        Verb::Read,
        Verb::List,
        Verb::Create,
        Verb::Update,
        Verb::Delete,
    ];
}

/// Harbor's project policies (`rbac_role.go`): what `role` may do to `resource`. System
/// administrators may do everything; non-members of a public project get
/// [`public_allows`].
pub fn role_allows(role: Role, resource: Resource, verb: Verb) -> bool {
    use Resource as R;
    use Role::*;
    use Verb as V;
    let admin = role == ProjectAdmin;
    let maintainer = admin || role == Maintainer;
    let developer = maintainer || role == Developer;
    let guest = developer || role == Guest;
    match (resource, verb) {
        (R::Project, V::Read) => true,
        (R::Project, _) => admin,
        (R::Member, V::Read | V::List) => guest,
        (R::Member, _) => admin,
        (R::Log, V::List | V::Read) => guest,
        (R::Log, _) => false,
        (R::Repository, V::List) => true,
        (R::Repository, V::Read) => guest,
        (R::Repository, V::Create | V::Update) => developer,
        (R::Repository, V::Delete) => maintainer,
        (R::Artifact | R::Tag, V::Read | V::List) => true,
        (R::Artifact | R::Tag, V::Create | V::Update) => developer,
        (R::Artifact | R::Tag, V::Delete) => maintainer,
        (R::Robot, V::Read | V::List) => guest,
        (R::Robot, _) => admin,
        (R::ImmutableTag, V::Read | V::List) => guest,
        (R::ImmutableTag, _) => maintainer,
        (R::TagRetention, V::Read | V::List) => guest,
        (R::TagRetention, _) => maintainer,
    }
}

/// What anyone (anonymous or not a member) may do in a public project.
pub fn public_allows(resource: Resource, verb: Verb) -> bool {
    matches!(
        (resource, verb),
        (Resource::Project, Verb::Read)
            | (Resource::Repository, Verb::List)
            | (Resource::Artifact | Resource::Tag, Verb::Read | Verb::List)
    )
}

/// What an endpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MgmtPermission {
    /// Anyone, anonymous too (answers are filtered to what the caller may see).
    Anyone,
    /// Any authenticated account.
    Authenticated,
    /// A local user (not a robot), e.g. `/users/current`.
    User,
    /// System administrators only.
    SystemAdmin,
    /// Creating a project: system administrators, and users unless creation is restricted
    /// to administrators (Harbor's `project_creation_restriction`); never robots.
    CreateProject,
    /// The user `user_id` itself, or a system administrator.
    SelfOrAdmin(i64),
    /// An action on a resource in every project where the caller may do it (a listing
    /// across projects, e.g. `/audit-logs`): system administrators see all; others only
    /// their projects' entries; anonymous callers nothing (401).
    InProjects { resource: Resource, verb: Verb },
    /// An action on a project's resource.
    Project {
        project: ProjectRef,
        resource: Resource,
        verb: Verb,
    },
    /// An action on the stored robot `id`. The decision reads the robot and asks what its
    /// scope needs: Harbor's `robot` permission in its project for a project-level robot,
    /// a system administrator for a system-level one.
    Robot { id: i64, verb: Verb },
    /// An action on the stored retention policy `id`: `tag-retention` in the project the
    /// decision reads from the policy's row.
    Retention { id: i64, verb: Verb },
    /// Every one of these robot permissions held by the caller itself, if it is a robot: a
    /// robot that may create robots cannot give one more than it has (users are bounded by
    /// their roles through the permission this accompanies).
    Delegate(Vec<crate::RobotPermission>),
    /// Both permissions (`main` decides which project the answer names): copying an
    /// artifact needs to create in the destination and to read the source.
    Both {
        main: Box<MgmtPermission>,
        also: Box<MgmtPermission>,
    },
}

/// Every operation of the management API berth serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MgmtEndpoint {
    Ping,
    Health,
    SystemInfo,
    Search {
        q: String,
    },
    ListProjects {
        query: ListQuery,
        name: Option<String>,
        public: Option<bool>,
        owner: Option<String>,
    },
    HeadProject {
        name: String,
    },
    CreateProject,
    /// `POST /projects` with a `registry_id`: a proxy-cache project, which only system
    /// administrators may create (as in Harbor), so the body is read with the path.
    CreateProxyProject,
    GetProject(ProjectRef),
    UpdateProject(ProjectRef),
    DeleteProject(ProjectRef),
    ProjectDeletable(ProjectRef),
    ProjectSummary(ProjectRef),
    /// Harbor's `/quotas`: every project's storage quota (`reference=project`,
    /// `reference_id=<project id>` narrow it).
    ListQuotas {
        query: ListQuery,
        reference: Option<String>,
        reference_id: Option<String>,
    },
    /// A quota by id (a project's quota has the project's id).
    GetQuota(i64),
    UpdateQuota(i64),
    /// `/retentions`: a project's retention policy (Harbor's), and its runs.
    /// `POST /retentions`: `project` is the body's `scope.ref` when it has one (the policy's
    /// project, which the permission is asked in).
    CreateRetention {
        project: Option<i64>,
    },
    GetRetention(i64),
    UpdateRetention(i64),
    DeleteRetention(i64),
    /// `POST /retentions/{id}/executions` with `{"dry_run": bool}`: run it now.
    RunRetention(i64),
    ListRetentionRuns {
        id: i64,
        query: ListQuery,
    },
    /// `/projects/{p}/immutabletagrules`: a project's tag immutability rules.
    ListImmutableRules {
        project: ProjectRef,
        query: ListQuery,
    },
    CreateImmutableRule(ProjectRef),
    UpdateImmutableRule {
        project: ProjectRef,
        id: i64,
    },
    DeleteImmutableRule {
        project: ProjectRef,
        id: i64,
    },
    ListMembers {
        project: ProjectRef,
        query: ListQuery,
        entity_name: Option<String>,
    },
    AddMember(ProjectRef),
    GetMember {
        project: ProjectRef,
        id: i64,
    },
    UpdateMember {
        project: ProjectRef,
        id: i64,
    },
    DeleteMember {
        project: ProjectRef,
        id: i64,
    },
    ListUsers {
        query: ListQuery,
        username: Option<String>,
        email: Option<String>,
    },
    CreateUser,
    CurrentUser,
    CurrentPermissions {
        scope: Option<String>,
        relative: bool,
    },
    SearchUsers {
        query: ListQuery,
        username: String,
    },
    GetUser(i64),
    UpdateUser(i64),
    DeleteUser(i64),
    SetPassword(i64),
    SetSysadmin(i64),
    ListRobots {
        query: ListQuery,
        scope: RobotScope,
    },
    /// `POST /robots`: who may create the robot depends on its level and namespace, so the
    /// body is parsed with the path, before the decision.
    CreateRobot(Box<RobotCreate>),
    GetRobot(i64),
    UpdateRobot(i64),
    RefreshRobotSecret(i64),
    DeleteRobot(i64),
    /// `GET /system/gc`: garbage collection runs, newest first.
    ListGcRuns {
        query: ListQuery,
    },
    /// `GET /system/gc/{gc_id}`.
    GetGcRun(i64),
    /// `GET /system/gc/{gc_id}/log`: the run's log as text.
    GetGcLog(i64),
    /// `GET /system/gc/schedule`.
    GetGcSchedule,
    /// `POST /system/gc/schedule`: a schedule, or (type `Manual`) a run now.
    CreateGcSchedule,
    /// `PUT /system/gc/schedule`.
    UpdateGcSchedule,
    /// `GET /audit-logs`: entries of every project the caller may read logs of.
    ListAuditLogs {
        query: ListQuery,
    },
    /// `GET /projects/{project_name}/logs`.
    ListProjectLogs {
        project: ProjectRef,
        query: ListQuery,
    },
    /// `GET /registries`: upstream registries (Harbor's registry endpoints).
    ListRegistries {
        query: ListQuery,
        name: Option<String>,
    },
    CreateRegistry,
    GetRegistry(i64),
    UpdateRegistry(i64),
    DeleteRegistry(i64),
    /// `POST /registries/ping`: a stored registry by `id`, or the one the body describes.
    PingRegistry,
    /// `GET /registries/{id}/info`: what replication can do with it.
    RegistryInfo(i64),
    /// `GET /replication/adapters`: the registry types replication supports.
    ListReplicationAdapters,
    /// `GET /replication/adapterinfos`.
    ReplicationAdapterInfos,
    ListReplicationPolicies {
        query: ListQuery,
        name: Option<String>,
    },
    CreateReplicationPolicy,
    GetReplicationPolicy(i64),
    UpdateReplicationPolicy(i64),
    DeleteReplicationPolicy(i64),
    /// `GET /replication/executions?policy_id=&status=&trigger=`.
    ListReplicationExecutions {
        query: ListQuery,
        policy_id: Option<i64>,
        status: Option<String>,
        trigger: Option<String>,
    },
    /// `POST /replication/executions` with `{"policy_id"}`: run a policy now.
    StartReplication,
    GetReplicationExecution(i64),
    /// `PUT /replication/executions/{id}`: stop it.
    StopReplication(i64),
    ListReplicationTasks {
        execution: i64,
        query: ListQuery,
        status: Option<String>,
    },
    /// `GET /replication/executions/{id}/tasks/{task_id}/log`: the task's log as text.
    GetReplicationLog {
        execution: i64,
        task: i64,
    },
    /// Every repository the caller may see.
    ListAllRepositories {
        query: ListQuery,
        name: Option<TextFilter>,
        order: Order<RepositoryKey>,
    },
    ListRepositories {
        project: ProjectRef,
        query: ListQuery,
        name: Option<TextFilter>,
        order: Order<RepositoryKey>,
    },
    GetRepository(RepositoryPath),
    UpdateRepository(RepositoryPath),
    DeleteRepository(RepositoryPath),
    ListArtifacts {
        repository: RepositoryPath,
        query: ListQuery,
        filter: ArtifactFilter,
        order: Order<ArtifactKey>,
        with: ArtifactWith,
    },
    GetArtifact {
        artifact: ArtifactPath,
        with: ArtifactWith,
    },
    DeleteArtifact(ArtifactPath),
    /// `POST …/artifacts?from=project/repository:tag|@digest`: the artifact, its children,
    /// its accessories and (as Harbor does) the tags of the artifact itself, into `to`.
    CopyArtifact {
        to: RepositoryPath,
        from: ArtifactPath,
    },
    ListAccessories {
        artifact: ArtifactPath,
        query: ListQuery,
    },
    ListTags {
        artifact: ArtifactPath,
        query: ListQuery,
        name: Option<TextFilter>,
        order: Order<TagKey>,
    },
    CreateTag(ArtifactPath),
    DeleteTag {
        artifact: ArtifactPath,
        tag: Tag,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MgmtError {
    #[error("no such API endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    /// Harbor answers bad query parameters (e.g. `page_size` over 100) with 422.
    #[error("validation failure list:\n{0}")]
    Unprocessable(String),
}

/// How the request named its resources.
#[derive(Debug, Clone, Copy, Default)]
pub struct MgmtHeaders {
    /// `X-Is-Resource-Name: true`: `{project_name_or_id}` is a name even if numeric.
    pub is_resource_name: bool,
}

impl MgmtEndpoint {
    /// Parse `method` on `path` (starting `/api/v2.0`, decoded once by the router as received
    /// percent-encoded) with the raw `query` and the request's `body`. Only endpoints whose
    /// permission depends on their body (`POST /robots`) read it here; the others' bodies are
    /// their handlers' business, after the decision.
    pub fn parse(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: MgmtHeaders,
        body: &[u8],
    ) -> Result<MgmtEndpoint, MgmtError> {
        let rest = path.strip_prefix("/api/v2.0/").ok_or(MgmtError::NotFound)?;
        let params = Params::parse(query);
        // Split on raw `/`: an encoded `%2F` (double-encoded by clients) stays in its segment.
        let segments: Vec<String> = rest
            .trim_end_matches('/')
            .split('/')
            .map(percent_decode)
            .collect::<Result<_, _>>()?;
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let project = |seg: &str| ProjectRef::parse(seg, headers.is_resource_name);
        let int = |seg: &str, what: &str| {
            seg.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| MgmtError::BadRequest(format!("{what} must be a positive integer")))
        };
        use MgmtEndpoint as E;
        let endpoint = match (method, s.as_slice()) {
            ("GET", ["ping"]) => E::Ping,
            ("GET", ["health"]) => E::Health,
            ("GET", ["systeminfo"]) => E::SystemInfo,
            ("GET", ["search"]) => E::Search {
                q: params
                    .get("q")
                    .ok_or_else(|| MgmtError::BadRequest("q is required".into()))?
                    .to_owned(),
            },
            ("GET", ["projects"]) => E::ListProjects {
                query: params.list()?,
                name: params.get("name").map(str::to_owned),
                public: params.bool("public")?,
                owner: params.get("owner").map(str::to_owned),
            },
            ("HEAD", ["projects"]) => E::HeadProject {
                name: params
                    .get("project_name")
                    .ok_or_else(|| MgmtError::BadRequest("project_name is required".into()))?
                    .to_owned(),
            },
            ("POST", ["projects"]) if names_registry(body) => E::CreateProxyProject,
            ("POST", ["projects"]) => E::CreateProject,
            ("GET", ["registries"]) => E::ListRegistries {
                query: params.list()?,
                name: params.get("name").map(str::to_owned),
            },
            ("POST", ["registries"]) => E::CreateRegistry,
            ("POST", ["registries", "ping"]) => E::PingRegistry,
            ("GET", ["registries", r]) => E::GetRegistry(int(r, "registry id")?),
            ("PUT", ["registries", r]) => E::UpdateRegistry(int(r, "registry id")?),
            ("DELETE", ["registries", r]) => E::DeleteRegistry(int(r, "registry id")?),
            ("GET", ["registries", r, "info"]) => E::RegistryInfo(int(r, "registry id")?),
            ("GET", ["replication", "adapters"]) => E::ListReplicationAdapters,
            ("GET", ["replication", "adapterinfos"]) => E::ReplicationAdapterInfos,
            ("GET", ["replication", "policies"]) => E::ListReplicationPolicies {
                query: params.list()?,
                name: params.get("name").map(str::to_owned),
            },
            ("POST", ["replication", "policies"]) => E::CreateReplicationPolicy,
            ("GET", ["replication", "policies", id]) => {
                E::GetReplicationPolicy(int(id, "policy id")?)
            }
            ("PUT", ["replication", "policies", id]) => {
                E::UpdateReplicationPolicy(int(id, "policy id")?)
            }
            ("DELETE", ["replication", "policies", id]) => {
                E::DeleteReplicationPolicy(int(id, "policy id")?)
            }
            ("GET", ["replication", "executions"]) => E::ListReplicationExecutions {
                query: params.list()?,
                policy_id: params
                    .get("policy_id")
                    .map(|id| int(id, "policy_id"))
                    .transpose()?,
                status: params.get("status").map(str::to_owned),
                trigger: params.get("trigger").map(str::to_owned),
            },
            ("POST", ["replication", "executions"]) => E::StartReplication,
            ("GET", ["replication", "executions", id]) => {
                E::GetReplicationExecution(int(id, "execution id")?)
            }
            ("PUT", ["replication", "executions", id]) => {
                E::StopReplication(int(id, "execution id")?)
            }
            ("GET", ["replication", "executions", id, "tasks"]) => E::ListReplicationTasks {
                execution: int(id, "execution id")?,
                query: params.list()?,
                status: params.get("status").map(str::to_owned),
            },
            ("GET", ["replication", "executions", id, "tasks", task, "log"]) => {
                E::GetReplicationLog {
                    execution: int(id, "execution id")?,
                    task: int(task, "task id")?,
                }
            }
            ("GET", ["projects", p]) => E::GetProject(project(p)),
            ("PUT", ["projects", p]) => E::UpdateProject(project(p)),
            ("DELETE", ["projects", p]) => E::DeleteProject(project(p)),
            ("GET", ["projects", p, "_deletable"]) => E::ProjectDeletable(project(p)),
            ("GET", ["projects", p, "summary"]) => E::ProjectSummary(project(p)),
            ("GET", ["projects", p, "immutabletagrules"]) => E::ListImmutableRules {
                project: project(p),
                query: params.list()?,
            },
            ("POST", ["projects", p, "immutabletagrules"]) => E::CreateImmutableRule(project(p)),
            ("PUT", ["projects", p, "immutabletagrules", id]) => E::UpdateImmutableRule {
                project: project(p),
                id: int(id, "immutable rule id")?,
            },
            ("DELETE", ["projects", p, "immutabletagrules", id]) => E::DeleteImmutableRule {
                project: project(p),
                id: int(id, "immutable rule id")?,
            },
            ("POST", ["retentions"]) => E::CreateRetention {
                project: retention_scope(body),
            },
            ("GET", ["retentions", id]) => E::GetRetention(int(id, "retention id")?),
            ("PUT", ["retentions", id]) => E::UpdateRetention(int(id, "retention id")?),
            ("DELETE", ["retentions", id]) => E::DeleteRetention(int(id, "retention id")?),
            ("POST", ["retentions", id, "executions"]) => E::RunRetention(int(id, "retention id")?),
            ("GET", ["retentions", id, "executions"]) => E::ListRetentionRuns {
                id: int(id, "retention id")?,
                query: params.list()?,
            },
            ("GET", ["quotas"]) => E::ListQuotas {
                query: params.list()?,
                reference: params.get("reference").map(str::to_owned),
                reference_id: params.get("reference_id").map(str::to_owned),
            },
            ("GET", ["quotas", id]) => E::GetQuota(int(id, "quota id")?),
            ("PUT", ["quotas", id]) => E::UpdateQuota(int(id, "quota id")?),
            ("GET", ["projects", p, "members"]) => E::ListMembers {
                project: project(p),
                query: params.list()?,
                entity_name: params.get("entityname").map(str::to_owned),
            },
            ("POST", ["projects", p, "members"]) => E::AddMember(project(p)),
            ("GET", ["projects", p, "members", m]) => E::GetMember {
                project: project(p),
                id: int(m, "member id")?,
            },
            ("PUT", ["projects", p, "members", m]) => E::UpdateMember {
                project: project(p),
                id: int(m, "member id")?,
            },
            ("DELETE", ["projects", p, "members", m]) => E::DeleteMember {
                project: project(p),
                id: int(m, "member id")?,
            },
            ("GET", ["users"]) => E::ListUsers {
                query: params.list()?,
                username: params.get("username").map(str::to_owned),
                email: params.get("email").map(str::to_owned),
            },
            ("POST", ["users"]) => E::CreateUser,
            ("GET", ["users", "current"]) => E::CurrentUser,
            ("GET", ["users", "current", "permissions"]) => E::CurrentPermissions {
                scope: params.get("scope").map(str::to_owned),
                relative: params.bool("relative")?.unwrap_or(false),
            },
            ("GET", ["users", "search"]) => E::SearchUsers {
                query: params.list()?,
                username: params
                    .get("username")
                    .ok_or_else(|| MgmtError::BadRequest("username is required".into()))?
                    .to_owned(),
            },
            ("GET", ["users", u]) => E::GetUser(int(u, "user id")?),
            ("PUT", ["users", u]) => E::UpdateUser(int(u, "user id")?),
            ("DELETE", ["users", u]) => E::DeleteUser(int(u, "user id")?),
            ("PUT", ["users", u, "password"]) => E::SetPassword(int(u, "user id")?),
            ("PUT", ["users", u, "sysadmin"]) => E::SetSysadmin(int(u, "user id")?),
            ("GET", ["robots"]) => {
                let query = params.list()?;
                let scope = robots::list_scope(&query)?;
                E::ListRobots { query, scope }
            }
            ("POST", ["robots"]) => E::CreateRobot(Box::new(RobotCreate::parse(body)?)),
            ("GET", ["robots", r]) => E::GetRobot(int(r, "robot id")?),
            ("PUT", ["robots", r]) => E::UpdateRobot(int(r, "robot id")?),
            ("PATCH", ["robots", r]) => E::RefreshRobotSecret(int(r, "robot id")?),
            ("DELETE", ["robots", r]) => E::DeleteRobot(int(r, "robot id")?),
            ("GET", ["system", "gc"]) => E::ListGcRuns {
                query: params.list()?,
            },
            ("GET", ["system", "gc", "schedule"]) => E::GetGcSchedule,
            ("POST", ["system", "gc", "schedule"]) => E::CreateGcSchedule,
            ("PUT", ["system", "gc", "schedule"]) => E::UpdateGcSchedule,
            ("GET", ["system", "gc", id]) => E::GetGcRun(int(id, "gc id")?),
            ("GET", ["system", "gc", id, "log"]) => E::GetGcLog(int(id, "gc id")?),
            ("GET", ["audit-logs"]) => E::ListAuditLogs {
                query: params.list()?,
            },
            // Harbor names the project here, never by id.
            ("GET", ["projects", p, "logs"]) => E::ListProjectLogs {
                project: ProjectRef::Name((*p).to_owned()),
                query: params.list()?,
            },
            ("GET", ["repositories"]) => {
                let query = params.list()?;
                E::ListAllRepositories {
                    name: name_filter(&query)?,
                    order: order(&query, repository_key, NEWEST_REPOSITORIES),
                    query,
                }
            }
            ("GET", ["projects", p, "repositories"]) => {
                let query = params.list()?;
                E::ListRepositories {
                    project: ProjectRef::Name((*p).to_owned()),
                    name: name_filter(&query)?,
                    order: order(&query, repository_key, NEWEST_REPOSITORIES),
                    query,
                }
            }
            ("GET", ["projects", p, "repositories", r]) => E::GetRepository(repository(p, r)?),
            ("PUT", ["projects", p, "repositories", r]) => E::UpdateRepository(repository(p, r)?),
            ("DELETE", ["projects", p, "repositories", r]) => {
                E::DeleteRepository(repository(p, r)?)
            }
            ("GET", ["projects", p, "repositories", r, "artifacts"]) => {
                let query = params.list()?;
                E::ListArtifacts {
                    repository: repository(p, r)?,
                    filter: ArtifactFilter::from_query(&query)?,
                    order: order(&query, artifact_key, NEWEST_ARTIFACTS),
                    with: params.artifact_with()?,
                    query,
                }
            }
            ("GET", ["projects", p, "repositories", r, "artifacts", a]) => E::GetArtifact {
                artifact: artifact(p, r, a)?,
                with: params.artifact_with()?,
            },
            ("DELETE", ["projects", p, "repositories", r, "artifacts", a]) => {
                E::DeleteArtifact(artifact(p, r, a)?)
            }
            ("POST", ["projects", p, "repositories", r, "artifacts"]) => E::CopyArtifact {
                to: repository(p, r)?,
                from: copy_source(params.get("from"))?,
            },
            (
                "GET",
                [
                    "projects",
                    p,
                    "repositories",
                    r,
                    "artifacts",
                    a,
                    "accessories",
                ],
            ) => E::ListAccessories {
                artifact: artifact(p, r, a)?,
                query: params.list()?,
            },
            ("GET", ["projects", p, "repositories", r, "artifacts", a, "tags"]) => {
                let query = params.list()?;
                params.bool("with_signature")?;
                params.bool("with_immutable_status")?;
                E::ListTags {
                    artifact: artifact(p, r, a)?,
                    name: name_filter(&query)?,
                    order: order(&query, tag_key, NEWEST_TAGS),
                    query,
                }
            }
            ("POST", ["projects", p, "repositories", r, "artifacts", a, "tags"]) => {
                E::CreateTag(artifact(p, r, a)?)
            }
            ("DELETE", ["projects", p, "repositories", r, "artifacts", a, "tags", t]) => {
                E::DeleteTag {
                    artifact: artifact(p, r, a)?,
                    tag: t.parse().map_err(|e| {
                        MgmtError::BadRequest(format!("invalid tag name {t:?}: {e}"))
                    })?,
                }
            }
            (_, known) if is_known(known) => return Err(MgmtError::MethodNotAllowed),
            _ => return Err(MgmtError::NotFound),
        };
        Ok(endpoint)
    }

    /// The permission this endpoint needs: the only input to authorization.
    pub fn required(&self) -> MgmtPermission {
        use MgmtEndpoint as E;
        use MgmtPermission as P;
        let on = |project: &ProjectRef, resource, verb| P::Project {
            project: project.clone(),
            resource,
            verb,
        };
        let robots = |scope: &RobotScope, verb| match scope {
            RobotScope::System => P::SystemAdmin,
            RobotScope::Project(project) => on(project, Resource::Robot, verb),
        };
        let robot = |id: &i64, verb| P::Robot { id: *id, verb };
        let retention = |id: &i64, verb| P::Retention { id: *id, verb };
        match self {
            E::Ping | E::Health | E::SystemInfo | E::Search { .. } => P::Anyone,
            E::ListProjects { .. } => P::Anyone,
            E::HeadProject { .. } | E::SearchUsers { .. } => P::Authenticated,
            E::CreateProject => P::CreateProject,
            E::CreateProxyProject => P::SystemAdmin,
            E::ListRegistries { .. }
            | E::CreateRegistry
            | E::GetRegistry(_)
            | E::UpdateRegistry(_)
            | E::DeleteRegistry(_)
            | E::PingRegistry
            | E::RegistryInfo(_) => P::SystemAdmin,
            // Replication reads and writes whole registries: administrators only (Harbor's).
            E::ListReplicationAdapters
            | E::ReplicationAdapterInfos
            | E::ListReplicationPolicies { .. }
            | E::CreateReplicationPolicy
            | E::GetReplicationPolicy(_)
            | E::UpdateReplicationPolicy(_)
            | E::DeleteReplicationPolicy(_)
            | E::ListReplicationExecutions { .. }
            | E::StartReplication
            | E::GetReplicationExecution(_)
            | E::StopReplication(_)
            | E::ListReplicationTasks { .. }
            | E::GetReplicationLog { .. } => P::SystemAdmin,
            E::CurrentUser => P::User,
            E::CurrentPermissions { .. } => P::Authenticated,
            E::GetProject(p) | E::ProjectSummary(p) => on(p, Resource::Project, Verb::Read),
            E::UpdateProject(p) => on(p, Resource::Project, Verb::Update),
            E::DeleteProject(p) | E::ProjectDeletable(p) => on(p, Resource::Project, Verb::Delete),
            E::ListMembers { project, .. } => on(project, Resource::Member, Verb::List),
            E::AddMember(p) => on(p, Resource::Member, Verb::Create),
            E::GetMember { project, .. } => on(project, Resource::Member, Verb::Read),
            E::UpdateMember { project, .. } => on(project, Resource::Member, Verb::Update),
            E::DeleteMember { project, .. } => on(project, Resource::Member, Verb::Delete),
            E::ListUsers { .. } | E::CreateUser | E::DeleteUser(_) | E::SetSysadmin(_) => {
                P::SystemAdmin
            }
            // Garbage collection is the whole registry's: administrators only.
            E::ListGcRuns { .. }
            | E::GetGcRun(_)
            | E::GetGcLog(_)
            | E::GetGcSchedule
            | E::CreateGcSchedule
            | E::UpdateGcSchedule => P::SystemAdmin,
            // Harbor's quota resource is system-level: members see their project's quota in
            // its summary.
            E::ListQuotas { .. } | E::GetQuota(_) | E::UpdateQuota(_) => P::SystemAdmin,
            // A policy's project: named in the body to create it, read from its row after.
            E::CreateRetention { project: Some(id) } => P::Project {
                project: ProjectRef::Id(*id),
                resource: Resource::TagRetention,
                verb: Verb::Create,
            },
            // No project named: only an administrator learns what is wrong with the body.
            E::CreateRetention { project: None } => P::SystemAdmin,
            E::GetRetention(id) => retention(id, Verb::Read),
            E::UpdateRetention(id) | E::RunRetention(id) => retention(id, Verb::Update),
            E::DeleteRetention(id) => retention(id, Verb::Delete),
            E::ListRetentionRuns { id, .. } => retention(id, Verb::List),
            E::ListImmutableRules { project, .. } => {
                on(project, Resource::ImmutableTag, Verb::List)
            }
            E::CreateImmutableRule(p) => on(p, Resource::ImmutableTag, Verb::Create),
            E::UpdateImmutableRule { project, .. } => {
                on(project, Resource::ImmutableTag, Verb::Update)
            }
            E::DeleteImmutableRule { project, .. } => {
                on(project, Resource::ImmutableTag, Verb::Delete)
            }
            E::GetUser(id) | E::UpdateUser(id) | E::SetPassword(id) => P::SelfOrAdmin(*id),
            E::ListRobots { scope, .. } => robots(scope, Verb::List),
            E::CreateRobot(request) => P::Both {
                main: Box::new(robots(&request.scope, Verb::Create)),
                also: Box::new(P::Delegate(request.permissions.clone())),
            },
            E::GetRobot(id) => robot(id, Verb::Read),
            E::UpdateRobot(id) | E::RefreshRobotSecret(id) => robot(id, Verb::Update),
            E::DeleteRobot(id) => robot(id, Verb::Delete),
            E::ListAuditLogs { .. } => P::InProjects {
                resource: Resource::Log,
                verb: Verb::List,
            },
            E::ListProjectLogs { project, .. } => on(project, Resource::Log, Verb::List),
            // Listed per project by what the caller may see.
            E::ListAllRepositories { .. } => P::Anyone,
            // Harbor asks repository:list to read one repository too.
            E::ListRepositories { project, .. } => on(project, Resource::Repository, Verb::List),
            E::GetRepository(r) => on(&r.project, Resource::Repository, Verb::List),
            E::UpdateRepository(r) => on(&r.project, Resource::Repository, Verb::Update),
            E::DeleteRepository(r) => on(&r.project, Resource::Repository, Verb::Delete),
            E::ListArtifacts { repository, .. } => {
                on(&repository.project, Resource::Artifact, Verb::List)
            }
            E::GetArtifact { artifact, .. } => {
                on(&artifact.repository.project, Resource::Artifact, Verb::Read)
            }
            E::DeleteArtifact(a) => on(&a.repository.project, Resource::Artifact, Verb::Delete),
            E::CopyArtifact { to, from } => P::Both {
                main: Box::new(on(&to.project, Resource::Artifact, Verb::Create)),
                also: Box::new(on(&from.repository.project, Resource::Artifact, Verb::Read)),
            },
            E::ListAccessories { artifact, .. } => {
                on(&artifact.repository.project, Resource::Artifact, Verb::List)
            }
            E::ListTags { artifact, .. } => {
                on(&artifact.repository.project, Resource::Tag, Verb::List)
            }
            E::CreateTag(a) => on(&a.repository.project, Resource::Tag, Verb::Create),
            E::DeleteTag { artifact, .. } => {
                on(&artifact.repository.project, Resource::Tag, Verb::Delete)
            }
        }
    }
}

const NEWEST_REPOSITORIES: Order<RepositoryKey> = Order {
    key: RepositoryKey::CreationTime,
    descending: true,
};
const NEWEST_ARTIFACTS: Order<ArtifactKey> = Order {
    key: ArtifactKey::PushTime,
    descending: true,
};
const NEWEST_TAGS: Order<TagKey> = Order {
    key: TagKey::PushTime,
    descending: true,
};

fn repository_key(field: &str) -> Option<RepositoryKey> {
    match field {
        "name" => Some(RepositoryKey::Name),
        "creation_time" => Some(RepositoryKey::CreationTime),
        "update_time" => Some(RepositoryKey::UpdateTime),
        "id" | "repository_id" => Some(RepositoryKey::Id),
        _ => None,
    }
}

fn artifact_key(field: &str) -> Option<ArtifactKey> {
    match field {
        "push_time" => Some(ArtifactKey::PushTime),
        "id" => Some(ArtifactKey::Id),
        _ => None,
    }
}

fn tag_key(field: &str) -> Option<TagKey> {
    match field {
        "name" => Some(TagKey::Name),
        "push_time" => Some(TagKey::PushTime),
        "id" => Some(TagKey::Id),
        _ => None,
    }
}

/// `q=name=…` of a repository or tag listing.
fn name_filter(query: &ListQuery) -> Result<Option<TextFilter>, MgmtError> {
    query
        .q
        .iter()
        .find(|t| t.key == "name")
        .map(text_filter)
        .transpose()
}

/// The repository of a path. `{repository_name}` arrives encoded twice (`a%252Fb` for
/// `a/b`; the first decoding made it `a%2Fb`): decode it once more. A name encoded once
/// (`a%2Fb`, already `a/b`) is the same name. A bad encoding or a name that breaks the
/// distribution grammar is a 400: no repository can have it.
fn repository(project: &str, segment: &str) -> Result<RepositoryPath, MgmtError> {
    let decoded = percent_decode(segment)?;
    let full = format!("{project}/{decoded}");
    let name = full
        .parse::<RepositoryName>()
        .map_err(|e| MgmtError::BadRequest(e.to_string()))?;
    Ok(RepositoryPath {
        project: ProjectRef::Name(project.to_owned()),
        name,
    })
}

/// The artifact of a path: `{reference}` is a digest (`algorithm:hex`) or a tag.
fn artifact(project: &str, repo: &str, reference: &str) -> Result<ArtifactPath, MgmtError> {
    Ok(ArtifactPath {
        repository: repository(project, repo)?,
        reference: reference
            .parse()
            .map_err(|e| MgmtError::BadRequest(format!("invalid reference {reference:?}: {e}")))?,
    })
}

/// The source of a copy: `project/repository:tag` or `project/repository@digest`.
fn copy_source(from: Option<&str>) -> Result<ArtifactPath, MgmtError> {
    let from = from
        .filter(|f| !f.is_empty())
        .ok_or_else(|| MgmtError::BadRequest("the query parameter \"from\" is required".into()))?;
    let bad = || {
        MgmtError::BadRequest(format!(
            "from={from:?} must be \"project/repository:tag\" or \"project/repository@digest\""
        ))
    };
    let (name, reference) = match from.split_once('@') {
        Some(split) => split,
        None => {
            let slash = from.rfind('/').ok_or_else(bad)?;
            let colon = from[slash..].find(':').ok_or_else(bad)? + slash;
            (&from[..colon], &from[colon + 1..])
        }
    };
    let (project, repo) = name.split_once('/').ok_or_else(bad)?;
    if project.is_empty() || repo.is_empty() {
        return Err(bad());
    }
    Ok(ArtifactPath {
        repository: RepositoryPath {
            project: ProjectRef::Name(project.to_owned()),
            name: name
                .parse()
                .map_err(|e| MgmtError::BadRequest(format!("from={from:?}: {e}")))?,
        },
        reference: reference
            .parse()
            .map_err(|e| MgmtError::BadRequest(format!("from={from:?}: {e}")))?,
    })
}

/// Whether a project create request names an upstream (`registry_id` set, not null).
/// A body that is not JSON is left to the handler's own parse.
/// The project a retention policy's body names (`scope.ref`), if it names one.
fn retention_scope(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("scope")?
        .get("ref")?
        .as_i64()
}

fn names_registry(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("registry_id").cloned())
        .is_some_and(|id| !id.is_null())
}

/// Paths that exist with another method (405 rather than 404).
fn is_known(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["ping"
            | "health"
            | "systeminfo"
            | "search"
            | "projects"
            | "users"
            | "robots"
            | "registries"
            | "audit-logs"
            | "quotas"
            | "retentions"]
            | ["registries", _]
            | ["registries", _, "info"]
            | [
                "replication",
                "adapters" | "adapterinfos" | "policies" | "executions"
            ]
            | ["replication", "policies" | "executions", _]
            | ["replication", "executions", _, "tasks"]
            | ["replication", "executions", _, "tasks", _, "log"]
            | ["projects", _]
            | ["quotas", _]
            | ["retentions", _]
            | ["retentions", _, "executions"]
            | ["robots", _]
            | [
                "projects",
                _,
                "_deletable" | "summary" | "members" | "logs" | "immutabletagrules"
            ]
            | ["projects", _, "immutabletagrules", _]
            | ["projects", _, "members", _]
            | ["users", _]
            | ["users", _, "password" | "sysadmin" | "permissions"]
            | ["repositories"]
            | ["projects", _, "repositories"]
            | ["projects", _, "repositories", _]
            | ["projects", _, "repositories", _, "artifacts"]
            | ["projects", _, "repositories", _, "artifacts", _]
            | [
                "projects",
                _,
                "repositories",
                _,
                "artifacts",
                _,
                "tags" | "accessories"
            ]
            | ["projects", _, "repositories", _, "artifacts", _, "tags", _]
    )
}

/// Decode `%XX` escapes (the second decoding of a double-encoded name).
fn percent_decode(segment: &str) -> Result<String, MgmtError> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    MgmtError::BadRequest(format!("bad percent-encoding in {segment:?}"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| MgmtError::BadRequest(format!("{segment:?} is not UTF-8")))
}

/// Query parameters, decoded.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<&str>) -> Params {
        Params(
            raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, MgmtError> {
        self.get(key)
            .map(|v| match v {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(MgmtError::Unprocessable(format!(
                    "{key} in query must be of type boolean: \"{v}\""
                ))),
            })
            .transpose()
    }

    /// `with_tag` (default true), `with_accessory`; Harbor's other `with_*` flags must be
    /// booleans and change nothing.
    fn artifact_with(&self) -> Result<ArtifactWith, MgmtError> {
        for ignored in [
            "with_label",
            "with_scan_overview",
            "with_sbom_overview",
            "with_signature",
            "with_immutable_status",
        ] {
            self.bool(ignored)?;
        }
        Ok(ArtifactWith {
            tags: self.bool("with_tag")?.unwrap_or(true),
            accessories: self.bool("with_accessory")?.unwrap_or(false),
        })
    }

    fn int(&self, key: &str, default: u64) -> Result<u64, MgmtError> {
        match self.get(key) {
            None | Some("") => Ok(default),
            Some(v) => v.parse::<u64>().map_err(|_| {
                MgmtError::Unprocessable(format!("{key} in query must be of type int64: \"{v}\""))
            }),
        }
    }

    fn list(&self) -> Result<ListQuery, MgmtError> {
        let page = self.int("page", 1)?;
        let page_size = self.int("page_size", 10)?;
        if page == 0 {
            return Err(MgmtError::Unprocessable(
                "page in query should be greater than or equal to 1".into(),
            ));
        }
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(MgmtError::Unprocessable(format!(
                "page_size in query should be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        let q = match self.get("q") {
            Some(q) if !q.is_empty() => parse_q(q)?,
            _ => Vec::new(),
        };
        let sort = self
            .get("sort")
            .map(|s| {
                s.split(',')
                    .filter(|f| !f.is_empty())
                    .map(|f| match f.strip_prefix('-') {
                        Some(field) => SortKey {
                            field: field.to_owned(),
                            descending: true,
                        },
                        None => SortKey {
                            field: f.to_owned(),
                            descending: false,
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ListQuery {
            page,
            page_size,
            q,
            sort,
        })
    }
}

/// Parse Harbor's `q`: comma-separated `key=value` terms.
pub fn parse_q(q: &str) -> Result<Vec<QueryTerm>, MgmtError> {
    let bad = || {
        MgmtError::BadRequest(
            "the query string must contain \"=\" and the key/value cannot be empty".into(),
        )
    };
    let mut terms = Vec::new();
    for part in split_terms(q) {
        let (key, value) = part.split_once('=').ok_or_else(bad)?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return Err(bad());
        }
        let list = |inner: &str| -> Vec<String> {
            inner
                .split_whitespace()
                .map(|v| v.trim_matches(['"', '\'']).to_owned())
                .collect()
        };
        let matcher = if let Some(v) = value.strip_prefix('~') {
            Matcher::Fuzzy(v.to_owned())
        } else if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            let (min, max) = inner.split_once('~').ok_or_else(|| {
                MgmtError::BadRequest(format!("range {value:?} needs exactly one ~"))
            })?;
            let bound = |b: &str| (!b.trim().is_empty()).then(|| b.trim().to_owned());
            Matcher::Range(bound(min), bound(max))
        } else if let Some(inner) = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            Matcher::AnyOf(list(inner))
        } else if let Some(inner) = value.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
            Matcher::AllOf(list(inner))
        } else {
            Matcher::Exact(value.strip_prefix('\\').unwrap_or(value).to_owned())
        };
        terms.push(QueryTerm {
            key: key.to_owned(),
            matcher,
        });
    }
    Ok(terms)
}

/// Split `q` on commas that are not inside `[]`, `{}` or `()`.
fn split_terms(q: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in q.char_indices() {
        match c {
            '[' | '{' | '(' => depth += 1,
            ']' | '}' | ')' => depth -= 1,
            ',' if depth <= 0 => {
                parts.push(&q[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&q[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: &str, path_and_query: &str) -> Result<MgmtEndpoint, MgmtError> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        MgmtEndpoint::parse(method, path, query, MgmtHeaders::default(), b"")
    }

    #[test]
    fn projects_by_id_or_name() {
        assert_eq!(
            parse("GET", "/api/v2.0/projects/1"),
            Ok(MgmtEndpoint::GetProject(ProjectRef::Id(1)))
        );
        assert_eq!(
            parse("GET", "/api/v2.0/projects/team"),
            Ok(MgmtEndpoint::GetProject(ProjectRef::Name("team".into())))
        );
        let named = MgmtEndpoint::parse(
            "GET",
            "/api/v2.0/projects/123",
            None,
            MgmtHeaders {
                is_resource_name: true,
            },
            b"",
        );
        assert_eq!(
            named,
            Ok(MgmtEndpoint::GetProject(ProjectRef::Name("123".into())))
        );
    }

    #[test]
    fn copy_sources_name_a_project_repository_and_reference() {
        let e = parse(
            "POST",
            "/api/v2.0/projects/dst/repositories/a%252Fb/artifacts?from=src%2Fteam%2Fapp%3Av1",
        )
        .expect("by tag");
        let MgmtEndpoint::CopyArtifact { to, from } = &e else {
            panic!("not a copy: {e:?}")
        };
        assert_eq!(to.name.as_str(), "dst/a/b");
        assert_eq!(from.repository.name.as_str(), "src/team/app");
        assert_eq!(from.repository.project, ProjectRef::Name("src".into()));
        assert_eq!(from.reference, Reference::Tag("v1".parse().expect("tag")));
        let digest = format!("sha256:{}", "a".repeat(64));
        let e = parse(
            "POST",
            &format!("/api/v2.0/projects/dst/repositories/app/artifacts?from=src/app@{digest}"),
        )
        .expect("by digest");
        let MgmtEndpoint::CopyArtifact { from, .. } = &e else {
            panic!("not a copy")
        };
        assert_eq!(from.reference.to_string(), digest);
        // Both projects are checked: create in the destination, read the source.
        assert_eq!(
            e.required(),
            MgmtPermission::Both {
                main: Box::new(MgmtPermission::Project {
                    project: ProjectRef::Name("dst".into()),
                    resource: Resource::Artifact,
                    verb: Verb::Create,
                }),
                also: Box::new(MgmtPermission::Project {
                    project: ProjectRef::Name("src".into()),
                    resource: Resource::Artifact,
                    verb: Verb::Read,
                }),
            }
        );
        for bad in [
            "",
            "?from=",
            "?from=app:v1",
            "?from=src/app",
            "?from=src/app@sha256:short",
            "?from=src/App:v1",
            "?from=/app:v1",
            "?from=src/app:bad%20tag",
        ] {
            assert!(
                matches!(
                    parse(
                        "POST",
                        &format!("/api/v2.0/projects/dst/repositories/app/artifacts{bad}")
                    ),
                    Err(MgmtError::BadRequest(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn pagination_is_validated_as_harbor_does() {
        let e = parse("GET", "/api/v2.0/projects?page=2&page_size=50&sort=-name").expect("ok");
        let MgmtEndpoint::ListProjects { query, .. } = e else {
            panic!("not a list")
        };
        assert_eq!((query.page, query.page_size, query.offset()), (2, 50, 50));
        assert_eq!(query.sort[0].field, "name");
        assert!(query.sort[0].descending);
        for bad in [
            "page=0",
            "page_size=101",
            "page=x",
            "page_size=0",
            "public=maybe",
        ] {
            assert!(
                matches!(
                    parse("GET", &format!("/api/v2.0/projects?{bad}")),
                    Err(MgmtError::Unprocessable(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn q_syntax() {
        let terms =
            parse_q("name=~lib,public=true,id=[1~10],role={1 2},x=(a b),y=\\~z").expect("q");
        assert_eq!(terms.len(), 6);
        assert_eq!(terms[0].matcher, Matcher::Fuzzy("lib".into()));
        assert_eq!(terms[1].matcher, Matcher::Exact("true".into()));
        assert_eq!(
            terms[2].matcher,
            Matcher::Range(Some("1".into()), Some("10".into()))
        );
        assert!(terms[2].matcher.matches("5") && !terms[2].matcher.matches("11"));
        assert_eq!(
            terms[3].matcher,
            Matcher::AnyOf(vec!["1".into(), "2".into()])
        );
        assert_eq!(terms[5].matcher, Matcher::Exact("~z".into()));
        assert!(parse_q("novalue=").is_err());
        assert!(parse_q("=x").is_err());
        assert!(parse_q("noequals").is_err());
    }

    #[test]
    fn audit_log_endpoints() {
        let all = parse("GET", "/api/v2.0/audit-logs?q=operation%3Dpull&page_size=5").expect("ok");
        assert_eq!(
            all.required(),
            MgmtPermission::InProjects {
                resource: Resource::Log,
                verb: Verb::List
            }
        );
        let MgmtEndpoint::ListAuditLogs { query } = all else {
            panic!("not the audit log")
        };
        assert_eq!((query.page_size, query.q[0].key.as_str()), (5, "operation"));
        // A numeric project name is still a name here.
        assert_eq!(
            parse("GET", "/api/v2.0/projects/2024/logs").map(|e| e.required()),
            Ok(MgmtPermission::Project {
                project: ProjectRef::Name("2024".into()),
                resource: Resource::Log,
                verb: Verb::List
            })
        );
        assert_eq!(
            parse("DELETE", "/api/v2.0/audit-logs"),
            Err(MgmtError::MethodNotAllowed)
        );
        assert!(role_allows(Role::Guest, Resource::Log, Verb::List));
        assert!(!role_allows(Role::LimitedGuest, Resource::Log, Verb::List));
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(parse("GET", "/api/v2.0/nothing"), Err(MgmtError::NotFound));
        assert_eq!(
            parse("PATCH", "/api/v2.0/projects"),
            Err(MgmtError::MethodNotAllowed)
        );
        assert!(matches!(
            parse("GET", "/api/v2.0/users/abc"),
            Err(MgmtError::BadRequest(_))
        ));
    }

    #[test]
    fn repository_names_arrive_encoded_twice_or_once() {
        let twice = parse("GET", "/api/v2.0/projects/team/repositories/a%252Fb").expect("ok");
        let once = parse("GET", "/api/v2.0/projects/team/repositories/a%2Fb").expect("ok");
        let plain = parse("GET", "/api/v2.0/projects/team/repositories/app").expect("ok");
        let MgmtEndpoint::GetRepository(path) = &twice else {
            panic!("not a repository: {twice:?}")
        };
        assert_eq!(path.name.as_str(), "team/a/b");
        assert_eq!(path.project, ProjectRef::Name("team".into()));
        assert_eq!(twice, once);
        assert!(matches!(plain, MgmtEndpoint::GetRepository(p) if p.name.as_str() == "team/app"));
        // The project is always a name here, even when numeric.
        let numeric = parse("GET", "/api/v2.0/projects/42/repositories").expect("ok");
        assert!(matches!(
            numeric,
            MgmtEndpoint::ListRepositories { project: ProjectRef::Name(n), .. } if n == "42"
        ));
        for bad in [
            "/api/v2.0/projects/team/repositories/a%25zz",
            "/api/v2.0/projects/team/repositories/a%zz",
            "/api/v2.0/projects/team/repositories/Upper",
            "/api/v2.0/projects/team/repositories/a%252F%252Fb",
            "/api/v2.0/projects/team/repositories/app/artifacts/sha256:nothex",
            "/api/v2.0/projects/team/repositories/app/artifacts/bad%20tag",
        ] {
            assert!(
                matches!(parse("GET", bad), Err(MgmtError::BadRequest(_))),
                "{bad}: {:?}",
                parse("GET", bad)
            );
        }
    }

    #[test]
    fn artifact_listings_take_harbors_q_sort_and_with_flags() {
        let e = parse(
            "GET",
            "/api/v2.0/projects/p/repositories/r/artifacts?q=tags%3D*,media_type%3D~config,base%3D*&sort=push_time&with_tag=false&with_accessory=true&with_label=true",
        )
        .expect("ok");
        let MgmtEndpoint::ListArtifacts {
            filter,
            order,
            with,
            ..
        } = e
        else {
            panic!("not a listing")
        };
        assert_eq!(filter.tags, TagFilter::Tagged);
        assert_eq!(
            filter.media_type,
            Some(TextFilter::Contains("config".into()))
        );
        assert!(filter.all);
        assert_eq!(
            order,
            Order {
                key: ArtifactKey::PushTime,
                descending: false
            }
        );
        assert_eq!(
            with,
            ArtifactWith {
                tags: false,
                accessories: true
            }
        );
        let defaults = parse("GET", "/api/v2.0/projects/p/repositories/r/artifacts").expect("ok");
        assert!(matches!(
            defaults,
            MgmtEndpoint::ListArtifacts {
                order: NEWEST_ARTIFACTS,
                with: ArtifactWith {
                    tags: true,
                    accessories: false
                },
                ..
            }
        ));
        for (q, bad) in [
            ("q=tags%3Dv1", "exact tag names are not a Harbor filter"),
            ("q=base%3Dall", "base is only *"),
            ("q=digest%3D%5B1~2%5D", "a range on a text key"),
        ] {
            assert!(
                matches!(
                    parse(
                        "GET",
                        &format!("/api/v2.0/projects/p/repositories/r/artifacts?{q}")
                    ),
                    Err(MgmtError::BadRequest(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse(
                "GET",
                "/api/v2.0/projects/p/repositories/r/artifacts?with_scan_overview=yes"
            ),
            Err(MgmtError::Unprocessable(_))
        ));
    }

    #[test]
    fn repository_endpoints_need_harbors_permissions() {
        let needs = |method: &str, path: &str| match parse(method, path).map(|e| e.required()) {
            Ok(MgmtPermission::Project {
                project,
                resource,
                verb,
            }) => {
                assert_eq!(project, ProjectRef::Name("p".into()), "{path}");
                (resource, verb)
            }
            other => panic!("{method} {path}: {other:?}"),
        };
        let base = "/api/v2.0/projects/p/repositories";
        let artifact = format!("{base}/r/artifacts/v1");
        use Resource::*;
        use Verb::*;
        for (method, path, want) in [
            ("GET", base.to_owned(), (Repository, List)),
            ("GET", format!("{base}/r"), (Repository, List)),
            ("PUT", format!("{base}/r"), (Repository, Update)),
            ("DELETE", format!("{base}/r"), (Repository, Delete)),
            ("GET", format!("{base}/r/artifacts"), (Artifact, List)),
            ("GET", artifact.clone(), (Artifact, Read)),
            ("DELETE", artifact.clone(), (Artifact, Delete)),
            ("GET", format!("{artifact}/tags"), (Tag, List)),
            ("POST", format!("{artifact}/tags"), (Tag, Create)),
            ("DELETE", format!("{artifact}/tags/v2"), (Tag, Delete)),
        ] {
            assert_eq!(needs(method, &path), want, "{method} {path}");
        }
        assert_eq!(
            parse("GET", "/api/v2.0/repositories").map(|e| e.required()),
            Ok(MgmtPermission::Anyone)
        );
        assert_eq!(
            parse("PATCH", &format!("{base}/r/artifacts/v1/tags")),
            Err(MgmtError::MethodNotAllowed)
        );
    }

    #[test]
    fn permissions_follow_harbor() {
        assert!(role_allows(
            Role::Developer,
            Resource::Repository,
            Verb::Create
        ));
        assert!(!role_allows(
            Role::Developer,
            Resource::Repository,
            Verb::Delete
        ));
        assert!(role_allows(
            Role::Maintainer,
            Resource::Repository,
            Verb::Delete
        ));
        assert!(!role_allows(
            Role::Maintainer,
            Resource::Member,
            Verb::Create
        ));
        assert!(role_allows(
            Role::ProjectAdmin,
            Resource::Member,
            Verb::Create
        ));
        assert!(!role_allows(
            Role::LimitedGuest,
            Resource::Member,
            Verb::List
        ));
        assert!(role_allows(Role::Guest, Resource::Member, Verb::List));
        assert!(public_allows(Resource::Repository, Verb::List));
        assert!(!public_allows(Resource::Member, Verb::List));
        assert_eq!(
            parse("POST", "/api/v2.0/projects/1/members").map(|e| e.required()),
            Ok(MgmtPermission::Project {
                project: ProjectRef::Id(1),
                resource: Resource::Member,
                verb: Verb::Create
            })
        );
    }

    #[test]
    fn robots_are_decided_by_their_scope_or_their_stored_row() {
        let list = |q: &str| parse("GET", &format!("/api/v2.0/robots?{q}")).map(|e| e.required());
        assert_eq!(list(""), Ok(MgmtPermission::SystemAdmin));
        assert_eq!(
            list("q=Level%3Dproject%2CProjectID%3D3"),
            Ok(MgmtPermission::Project {
                project: ProjectRef::Id(3),
                resource: Resource::Robot,
                verb: Verb::List
            })
        );
        let create = |body: &str| {
            MgmtEndpoint::parse(
                "POST",
                "/api/v2.0/robots",
                None,
                MgmtHeaders::default(),
                body.as_bytes(),
            )
            .map(|e| e.required())
        };
        assert_eq!(
            create(
                r#"{"name":"ci","level":"project","permissions":[{"kind":"project","namespace":"team","access":[{"resource":"repository","action":"push"}]}]}"#
            ),
            Ok(MgmtPermission::Both {
                main: Box::new(MgmtPermission::Project {
                    project: ProjectRef::Name("team".into()),
                    resource: Resource::Robot,
                    verb: Verb::Create
                }),
                // A robot creating it must hold what it grants.
                also: Box::new(MgmtPermission::Delegate(vec![crate::RobotPermission {
                    kind: "project".into(),
                    namespace: "team".into(),
                    access: vec![crate::access::RobotAccess::new("repository", "push")],
                }])),
            })
        );
        assert_eq!(
            create(r#"{"name":"ci","level":"system","permissions":[]}"#),
            Ok(MgmtPermission::Both {
                main: Box::new(MgmtPermission::SystemAdmin),
                also: Box::new(MgmtPermission::Delegate(Vec::new())),
            })
        );
        assert!(matches!(create(""), Err(MgmtError::BadRequest(_))));
        for (method, verb) in [
            ("GET", Verb::Read),
            ("PUT", Verb::Update),
            ("PATCH", Verb::Update),
            ("DELETE", Verb::Delete),
        ] {
            assert_eq!(
                parse(method, "/api/v2.0/robots/5").map(|e| e.required()),
                Ok(MgmtPermission::Robot { id: 5, verb })
            );
        }
        assert!(matches!(
            parse("GET", "/api/v2.0/robots/0"),
            Err(MgmtError::BadRequest(_))
        ));
        assert_eq!(
            parse("POST", "/api/v2.0/robots/5"),
            Err(MgmtError::MethodNotAllowed)
        );
    }
}
