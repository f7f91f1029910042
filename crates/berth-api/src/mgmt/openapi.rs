//! The OpenAPI 3 document of `/api/v2.0`, served at `/api/v2.0/openapi.json` and snapshot-
//! tested (`tests/snapshots/openapi.json`), so a change to the API is a visible diff.
//!
//! It is generated from [`OPERATIONS`], which is tied to the parser: every `MgmtEndpoint`
//! variant maps to an operation id in [`operation_id`] (an exhaustive match, so a new
//! endpoint does not compile without one), and a test parses an example request of every
//! operation and checks it lands on the variant with that id.

use berth_core::mgmt::MgmtEndpoint;
use serde_json::{Map, Value, json};

/// One operation of the document.
pub struct Operation {
    pub id: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    /// An example request path (with query) that must parse to this operation.
    pub example: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Query parameters: (name, type, description).
    pub query: &'static [(&'static str, &'static str, &'static str)],
    pub body: Option<&'static str>,
    /// (status, schema of the body, or none).
    pub responses: &'static [(u16, Option<&'static str>)],
    pub paginated: bool,
}

const PAGE: &[(&str, &str, &str)] = &[
    (
        "q",
        "string",
        "Harbor's query: k=v, k=~v, k=[a~b], k={a b}, k=(a b), comma-separated",
    ),
    (
        "sort",
        "string",
        "fields, comma-separated; - for descending",
    ),
    ("page", "integer", "page number, from 1"),
    ("page_size", "integer", "items per page, 1-100 (default 10)"),
];

const ERRORS: &[(u16, Option<&str>)] = &[
    (400, Some("Errors")),
    (401, Some("Errors")),
    (403, Some("Errors")),
    (404, Some("Errors")),
    (422, Some("Errors")),
    (500, Some("Errors")),
];

macro_rules! op {
    ($id:literal, $method:literal, $path:literal, $example:literal, $tag:literal, $summary:literal,
     query: $query:expr, body: $body:expr, ok: $ok:expr, paginated: $pag:expr) => {
        Operation {
            id: $id,
            method: $method,
            path: $path,
            example: $example,
            tag: $tag,
            summary: $summary,
            query: $query,
            body: $body,
            responses: $ok,
            paginated: $pag,
        }
    };
}

/// Every operation berth serves under `/api/v2.0`.
pub const OPERATIONS: &[Operation] = &[
    op!("ping", "get", "/ping", "/api/v2.0/ping", "ping", "Answers Pong",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("getHealth", "get", "/health", "/api/v2.0/health", "health", "Health of the registry's components",
        query: &[], body: None, ok: &[(200, Some("OverallHealthStatus"))], paginated: false),
    op!("getSystemInfo", "get", "/systeminfo", "/api/v2.0/systeminfo", "systeminfo", "General information (more for logged-in callers)",
        query: &[], body: None, ok: &[(200, Some("GeneralInfo"))], paginated: false),
    op!("search", "get", "/search", "/api/v2.0/search?q=x", "search", "Projects and repositories whose names contain q, among those the caller may see",
        query: &[("q", "string", "text to look for")], body: None, ok: &[(200, Some("Search"))], paginated: false),
    op!("listProjects", "get", "/projects", "/api/v2.0/projects", "project", "Projects the caller may see",
        query: &[("name", "string", "name contains"), ("public", "boolean", "public or private"), ("owner", "string", "owner's user name"), ("with_detail", "boolean", "accepted; details are always included")],
        body: None, ok: &[(200, Some("Project[]"))], paginated: true),
    op!("headProject", "head", "/projects", "/api/v2.0/projects?project_name=x", "project", "Whether a project exists",
        query: &[("project_name", "string", "the project's name")], body: None, ok: &[(200, None)], paginated: false),
    op!("createProject", "post", "/projects", "/api/v2.0/projects", "project", "Create a project; the caller owns it",
        query: &[], body: Some("ProjectReq"), ok: &[(201, None), (409, Some("Errors"))], paginated: false),
    op!("getProject", "get", "/projects/{project_name_or_id}", "/api/v2.0/projects/1", "project", "One project",
        query: &[], body: None, ok: &[(200, Some("Project"))], paginated: false),
    op!("updateProject", "put", "/projects/{project_name_or_id}", "/api/v2.0/projects/1", "project", "Change a project's public flag",
        query: &[], body: Some("ProjectReq"), ok: &[(200, None)], paginated: false),
    op!("deleteProject", "delete", "/projects/{project_name_or_id}", "/api/v2.0/projects/1", "project", "Delete a project that holds no repositories",
        query: &[], body: None, ok: &[(200, None), (412, Some("Errors"))], paginated: false),
    op!("getProjectDeletableStatus", "get", "/projects/{project_name_or_id}/_deletable", "/api/v2.0/projects/1/_deletable", "project", "Whether a project can be deleted",
        query: &[], body: None, ok: &[(200, Some("ProjectDeletable"))], paginated: false),
    op!("getProjectSummary", "get", "/projects/{project_name_or_id}/summary", "/api/v2.0/projects/1/summary", "project", "Counts of repositories and members by role",
        query: &[], body: None, ok: &[(200, Some("ProjectSummary"))], paginated: false),
    op!("ListImmuRules", "get", "/projects/{project_name_or_id}/immutabletagrules", "/api/v2.0/projects/1/immutabletagrules", "immutable", "A project's tag immutability rules",
        query: &[], body: None, ok: &[(200, Some("ImmutableRule[]"))], paginated: true),
    op!("CreateImmuRule", "post", "/projects/{project_name_or_id}/immutabletagrules", "/api/v2.0/projects/1/immutabletagrules", "immutable", "Add a tag immutability rule",
        query: &[], body: Some("ImmutableRule"), ok: &[(201, None)], paginated: false),
    op!("UpdateImmuRule", "put", "/projects/{project_name_or_id}/immutabletagrules/{immutable_rule_id}", "/api/v2.0/projects/1/immutabletagrules/1", "immutable", "Change a tag immutability rule (or disable it)",
        query: &[], body: Some("ImmutableRule"), ok: &[(200, None)], paginated: false),
    op!("DeleteImmuRule", "delete", "/projects/{project_name_or_id}/immutabletagrules/{immutable_rule_id}", "/api/v2.0/projects/1/immutabletagrules/1", "immutable", "Delete a tag immutability rule",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("createRetention", "post", "/retentions", "/api/v2.0/retentions", "Retention", "Create a project's retention policy (system administrators)",
        query: &[], body: Some("RetentionPolicy"), ok: &[(201, None), (409, Some("Errors"))], paginated: false),
    op!("getRetention", "get", "/retentions/{id}", "/api/v2.0/retentions/1", "Retention", "A retention policy",
        query: &[], body: None, ok: &[(200, Some("RetentionPolicy"))], paginated: false),
    op!("updateRetention", "put", "/retentions/{id}", "/api/v2.0/retentions/1", "Retention", "Change a retention policy",
        query: &[], body: Some("RetentionPolicy"), ok: &[(200, None)], paginated: false),
    op!("deleteRetention", "delete", "/retentions/{id}", "/api/v2.0/retentions/1", "Retention", "Delete a retention policy and its runs' record",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("triggerRetentionExecution", "post", "/retentions/{id}/executions", "/api/v2.0/retentions/1/executions", "Retention", "Run a retention policy now; dry_run lists what would go",
        query: &[], body: Some("RetentionExecutionReq"), ok: &[(201, None)], paginated: false),
    op!("listRetentionExecutions", "get", "/retentions/{id}/executions", "/api/v2.0/retentions/1/executions", "Retention", "A policy's runs, newest first, with what each removed",
        query: &[], body: None, ok: &[(200, Some("RetentionExecution[]"))], paginated: true),
    op!("listQuotas", "get", "/quotas", "/api/v2.0/quotas?reference=project&reference_id=1", "quota", "Every project's storage quota and usage (system administrators)",
        query: &[("reference", "string", "project"), ("reference_id", "string", "the project's id")], body: None, ok: &[(200, Some("Quota[]"))], paginated: true),
    op!("getQuota", "get", "/quotas/{id}", "/api/v2.0/quotas/1", "quota", "A project's storage quota and usage; its id is the project's",
        query: &[], body: None, ok: &[(200, Some("Quota"))], paginated: false),
    op!("updateQuota", "put", "/quotas/{id}", "/api/v2.0/quotas/1", "quota", "Set a project's storage limit (bytes, -1 for none)",
        query: &[], body: Some("QuotaUpdateReq"), ok: &[(200, None)], paginated: false),
    op!("listProjectMembers", "get", "/projects/{project_name_or_id}/members", "/api/v2.0/projects/1/members", "member", "A project's members",
        query: &[("entityname", "string", "member name contains")], body: None, ok: &[(200, Some("ProjectMemberEntity[]"))], paginated: true),
    op!("createProjectMember", "post", "/projects/{project_name_or_id}/members", "/api/v2.0/projects/1/members", "member", "Add a user to a project with a role",
        query: &[], body: Some("ProjectMember"), ok: &[(201, None), (409, Some("Errors"))], paginated: false),
    op!("getProjectMember", "get", "/projects/{project_name_or_id}/members/{mid}", "/api/v2.0/projects/1/members/2", "member", "One member (its id is its user's id)",
        query: &[], body: None, ok: &[(200, Some("ProjectMemberEntity"))], paginated: false),
    op!("updateProjectMember", "put", "/projects/{project_name_or_id}/members/{mid}", "/api/v2.0/projects/1/members/2", "member", "Change a member's role",
        query: &[], body: Some("RoleRequest"), ok: &[(200, None)], paginated: false),
    op!("deleteProjectMember", "delete", "/projects/{project_name_or_id}/members/{mid}", "/api/v2.0/projects/1/members/2", "member", "Remove a member",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("listUsers", "get", "/users", "/api/v2.0/users", "user", "Every user (system administrators)",
        query: &[("username", "string", "name contains"), ("email", "string", "email contains")], body: None, ok: &[(200, Some("UserResp[]"))], paginated: true),
    op!("createUser", "post", "/users", "/api/v2.0/users", "user", "Create a user (system administrators)",
        query: &[], body: Some("UserCreationReq"), ok: &[(201, None), (409, Some("Errors"))], paginated: false),
    op!("getCurrentUserInfo", "get", "/users/current", "/api/v2.0/users/current", "user", "The calling user",
        query: &[], body: None, ok: &[(200, Some("UserResp"))], paginated: false),
    op!("getCurrentUserPermissions", "get", "/users/current/permissions", "/api/v2.0/users/current/permissions", "user", "What the caller may do in a scope such as /project/1",
        query: &[("scope", "string", "/project/<id>"), ("relative", "boolean", "resources relative to the scope")], body: None, ok: &[(200, Some("Permission[]"))], paginated: false),
    op!("searchUsers", "get", "/users/search", "/api/v2.0/users/search?username=a", "user", "Users whose names contain username",
        query: &[("username", "string", "name contains")], body: None, ok: &[(200, Some("UserSearchRespItem[]"))], paginated: true),
    op!("getUser", "get", "/users/{user_id}", "/api/v2.0/users/2", "user", "One user (itself or a system administrator)",
        query: &[], body: None, ok: &[(200, Some("UserResp"))], paginated: false),
    op!("updateUserProfile", "put", "/users/{user_id}", "/api/v2.0/users/2", "user", "Change email, real name, comment",
        query: &[], body: Some("UserProfile"), ok: &[(200, None)], paginated: false),
    op!("deleteUser", "delete", "/users/{user_id}", "/api/v2.0/users/2", "user", "Delete a user (not oneself)",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("updateUserPassword", "put", "/users/{user_id}/password", "/api/v2.0/users/2/password", "user", "Change a password (one's own needs the old one)",
        query: &[], body: Some("PasswordReq"), ok: &[(200, None)], paginated: false),
    op!("setUserSysAdmin", "put", "/users/{user_id}/sysadmin", "/api/v2.0/users/2/sysadmin", "user", "Grant or take system administrator rights",
        query: &[], body: Some("UserSysAdminFlag"), ok: &[(200, None)], paginated: false),
    op!("ListRobot", "get", "/robots", "/api/v2.0/robots?q=Level%3Dsystem", "robot", "Robot accounts: system ones, or a project's (q=Level=project,ProjectID=N)",
        query: &[], body: None, ok: &[(200, Some("Robot[]"))], paginated: true),
    op!("CreateRobot", "post", "/robots", "/api/v2.0/robots", "robot", "Create a robot account; its secret is in the answer, once",
        query: &[], body: Some("RobotCreate"), ok: &[(201, Some("RobotCreated"))], paginated: false),
    op!("GetRobotByID", "get", "/robots/{robot_id}", "/api/v2.0/robots/1", "robot", "One robot account (never its secret)",
        query: &[], body: None, ok: &[(200, Some("Robot"))], paginated: false),
    op!("UpdateRobot", "put", "/robots/{robot_id}", "/api/v2.0/robots/1", "robot", "Change a robot's description, state, duration and permissions",
        query: &[], body: Some("Robot"), ok: &[(200, None)], paginated: false),
    op!("RefreshSec", "patch", "/robots/{robot_id}", "/api/v2.0/robots/1", "robot", "A new secret (generated, or the one given)",
        query: &[], body: Some("RobotSec"), ok: &[(200, Some("RobotSec"))], paginated: false),
    op!("DeleteRobot", "delete", "/robots/{robot_id}", "/api/v2.0/robots/1", "robot", "Delete a robot account",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("listAllRepositories", "get", "/repositories", "/api/v2.0/repositories", "repository", "Every repository the caller may see",
        query: &[], body: None, ok: &[(200, Some("Repository[]"))], paginated: true),
    op!("listRepositories", "get", "/projects/{project_name}/repositories", "/api/v2.0/projects/team/repositories", "repository", "A project's repositories",
        query: &[], body: None, ok: &[(200, Some("Repository[]"))], paginated: true),
    op!("getRepository", "get", "/projects/{project_name}/repositories/{repository_name}", "/api/v2.0/projects/team/repositories/a%252Fb", "repository", "One repository (its name without the project, URL-encoded twice)",
        query: &[], body: None, ok: &[(200, Some("Repository"))], paginated: false),
    op!("updateRepository", "put", "/projects/{project_name}/repositories/{repository_name}", "/api/v2.0/projects/team/repositories/app", "repository", "Change a repository's description",
        query: &[], body: Some("Repository"), ok: &[(200, None)], paginated: false),
    op!("deleteRepository", "delete", "/projects/{project_name}/repositories/{repository_name}", "/api/v2.0/projects/team/repositories/app", "repository", "Delete a repository: every artifact and tag in it",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("listArtifacts", "get", "/projects/{project_name}/repositories/{repository_name}/artifacts", "/api/v2.0/projects/team/repositories/app/artifacts", "artifact", "A repository's artifacts, newest first",
        query: &[("with_tag", "boolean", "include tags (default true)"), ("with_label", "boolean", "accepted"), ("with_scan_overview", "boolean", "accepted"), ("with_signature", "boolean", "accepted"), ("with_immutable_status", "boolean", "accepted"), ("with_accessory", "boolean", "include accessories (referrers)")],
        body: None, ok: &[(200, Some("Artifact[]"))], paginated: true),
    op!("getArtifact", "get", "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}", "/api/v2.0/projects/team/repositories/app/artifacts/v1", "artifact", "One artifact, by tag or digest",
        query: &[("with_tag", "boolean", "include tags (default true)"), ("with_accessory", "boolean", "include accessories (referrers)")],
        body: None, ok: &[(200, Some("Artifact"))], paginated: false),
    op!("deleteArtifact", "delete", "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}", "/api/v2.0/projects/team/repositories/app/artifacts/v1", "artifact", "Delete an artifact and its tags",
        query: &[], body: None, ok: &[(200, None), (412, Some("Errors"))], paginated: false),
    op!("copyArtifact", "post", "/projects/{project_name}/repositories/{repository_name}/artifacts", "/api/v2.0/projects/team/repositories/app/artifacts?from=other/app:v1", "artifact", "Copy an artifact (with its children, accessories and tags) from project/repository:tag or project/repository@digest",
        query: &[("from", "string", "the source: project/repository:tag or project/repository@digest")],
        body: None, ok: &[(201, None)], paginated: false),
    op!("listAccessories", "get", "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/accessories", "/api/v2.0/projects/team/repositories/app/artifacts/v1/accessories", "artifact", "An artifact's accessories (referrers), oldest first",
        query: &[], body: None, ok: &[(200, Some("Accessory[]"))], paginated: true),
    op!("listTags", "get", "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags", "/api/v2.0/projects/team/repositories/app/artifacts/v1/tags", "artifact", "An artifact's tags",
        query: &[], body: None, ok: &[(200, Some("Tag[]"))], paginated: true),
    op!("createTag", "post", "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags", "/api/v2.0/projects/team/repositories/app/artifacts/v1/tags", "artifact", "Tag an artifact",
        query: &[], body: Some("Tag"), ok: &[(201, None), (409, Some("Errors"))], paginated: false),
    op!("deleteTag", "delete", "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags/{tag_name}", "/api/v2.0/projects/team/repositories/app/artifacts/v1/tags/v1", "artifact", "Remove a tag from an artifact",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("listRegistries", "get", "/registries", "/api/v2.0/registries?q=name%3D~hub", "registry", "Upstream registries (system administrators)",
        query: &[("name", "string", "part of the name")], body: None, ok: &[(200, Some("Registry[]"))], paginated: true),
    op!("createRegistry", "post", "/registries", "/api/v2.0/registries", "registry", "Add an upstream registry; its secret is sealed and never answered",
        query: &[], body: Some("RegistryReq"), ok: &[(201, None), (409, Some("Errors"))], paginated: false),
    op!("getRegistry", "get", "/registries/{id}", "/api/v2.0/registries/1", "registry", "One upstream registry (its credential without the secret)",
        query: &[], body: None, ok: &[(200, Some("Registry"))], paginated: false),
    op!("updateRegistry", "put", "/registries/{id}", "/api/v2.0/registries/1", "registry", "Change an upstream registry",
        query: &[], body: Some("RegistryReq"), ok: &[(200, None), (409, Some("Errors"))], paginated: false),
    op!("deleteRegistry", "delete", "/registries/{id}", "/api/v2.0/registries/1", "registry", "Delete an upstream registry no proxy-cache project uses",
        query: &[], body: None, ok: &[(200, None), (412, Some("Errors"))], paginated: false),
    op!("pingRegistry", "post", "/registries/ping", "/api/v2.0/registries/ping", "registry", "Check that an upstream registry (stored by id, or described) answers and accepts the credential",
        query: &[], body: Some("RegistryReq"), ok: &[(200, None)], paginated: false),
    op!("getRegistryInfo", "get", "/registries/{id}/info", "/api/v2.0/registries/1/info", "registry", "What replication supports with a registry: filters and triggers",
        query: &[], body: None, ok: &[(200, Some("RegistryInfo"))], paginated: false),
    op!("listReplicationAdapters", "get", "/replication/adapters", "/api/v2.0/replication/adapters", "replication", "The registry types replication supports",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("listReplicationAdapterinfos", "get", "/replication/adapterinfos", "/api/v2.0/replication/adapterinfos", "replication", "Each supported registry type with its endpoint pattern",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("listReplicationPolicies", "get", "/replication/policies", "/api/v2.0/replication/policies?name=edge", "replication", "Replication policies (system administrators)",
        query: &[("name", "string", "part of the name")], body: None, ok: &[(200, Some("ReplicationPolicy[]"))], paginated: true),
    op!("createReplicationPolicy", "post", "/replication/policies", "/api/v2.0/replication/policies", "replication", "Create a push (from this registry) or pull (into it) policy",
        query: &[], body: Some("ReplicationPolicy"), ok: &[(201, None), (409, Some("Errors"))], paginated: false),
    op!("getReplicationPolicy", "get", "/replication/policies/{id}", "/api/v2.0/replication/policies/1", "replication", "One replication policy",
        query: &[], body: None, ok: &[(200, Some("ReplicationPolicy"))], paginated: false),
    op!("updateReplicationPolicy", "put", "/replication/policies/{id}", "/api/v2.0/replication/policies/1", "replication", "Change a replication policy",
        query: &[], body: Some("ReplicationPolicy"), ok: &[(200, None), (409, Some("Errors"))], paginated: false),
    op!("deleteReplicationPolicy", "delete", "/replication/policies/{id}", "/api/v2.0/replication/policies/1", "replication", "Delete a replication policy and its history (none running)",
        query: &[], body: None, ok: &[(200, None), (412, Some("Errors"))], paginated: false),
    op!("listReplicationExecutions", "get", "/replication/executions", "/api/v2.0/replication/executions?policy_id=1&status=Succeed&trigger=manual", "replication", "Replication executions, newest first",
        query: &[("policy_id", "integer", "the policy"), ("status", "string", "InProgress, Succeed, Failed or Stopped"), ("trigger", "string", "manual, scheduled or event_based")], body: None, ok: &[(200, Some("ReplicationExecution[]"))], paginated: true),
    op!("startReplication", "post", "/replication/executions", "/api/v2.0/replication/executions", "replication", "Run a policy now",
        query: &[], body: Some("StartReplicationExecution"), ok: &[(201, None)], paginated: false),
    op!("getReplicationExecution", "get", "/replication/executions/{id}", "/api/v2.0/replication/executions/1", "replication", "One execution with its task counts",
        query: &[], body: None, ok: &[(200, Some("ReplicationExecution"))], paginated: false),
    op!("stopReplication", "put", "/replication/executions/{id}", "/api/v2.0/replication/executions/1", "replication", "Stop an execution before its next artifact",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("listReplicationTasks", "get", "/replication/executions/{id}/tasks", "/api/v2.0/replication/executions/1/tasks?status=Failed", "replication", "An execution's tasks (one per repository)",
        query: &[("status", "string", "Pending, InProgress, Succeed, Failed or Stopped")], body: None, ok: &[(200, Some("ReplicationTask[]"))], paginated: true),
    op!("getReplicationLog", "get", "/replication/executions/{id}/tasks/{task_id}/log", "/api/v2.0/replication/executions/1/tasks/2/log", "replication", "A task's log (text)",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("getGCHistory", "get", "/system/gc", "/api/v2.0/system/gc", "gc", "Garbage collection runs, newest first, with what each freed",
        query: &[], body: None, ok: &[(200, Some("GCHistory[]"))], paginated: true),
    op!("getGC", "get", "/system/gc/{gc_id}", "/api/v2.0/system/gc/1", "gc", "One garbage collection run",
        query: &[], body: None, ok: &[(200, Some("GCHistory"))], paginated: false),
    op!("getGCLog", "get", "/system/gc/{gc_id}/log", "/api/v2.0/system/gc/1/log", "gc", "A garbage collection run's log (text)",
        query: &[], body: None, ok: &[(200, None)], paginated: false),
    op!("getGCSchedule", "get", "/system/gc/schedule", "/api/v2.0/system/gc/schedule", "gc", "The garbage collection schedule and its parameters",
        query: &[], body: None, ok: &[(200, Some("GCSchedule"))], paginated: false),
    op!("createGCSchedule", "post", "/system/gc/schedule", "/api/v2.0/system/gc/schedule", "gc", "Run garbage collection now (type Manual) or set its schedule",
        query: &[], body: Some("GCSchedule"), ok: &[(201, None)], paginated: false),
    op!("updateGCSchedule", "put", "/system/gc/schedule", "/api/v2.0/system/gc/schedule", "gc", "Set the garbage collection schedule (None: off)",
        query: &[], body: Some("GCSchedule"), ok: &[(200, None)], paginated: false),
    op!("listAuditLogs", "get", "/audit-logs", "/api/v2.0/audit-logs", "auditlog", "Audit entries of the projects whose logs the caller may read (all for administrators)",
        query: &[], body: None, ok: &[(200, Some("AuditLog[]"))], paginated: true),
    op!("getLogs", "get", "/projects/{project_name}/logs", "/api/v2.0/projects/team/logs", "project", "A project's audit entries",
        query: &[], body: None, ok: &[(200, Some("AuditLog[]"))], paginated: true),
];

/// Request bodies the examples need (the rest send none).
#[cfg(test)]
fn example_body(id: &str) -> &'static [u8] {
    match id {
        "CreateRobot" => {
            br#"{"name":"ci","level":"project","duration":-1,"permissions":[{"kind":"project","namespace":"team","access":[{"resource":"repository","action":"pull"}]}]}"#
        }
        _ => b"",
    }
}

/// The operation id of a parsed endpoint: exhaustive, so every endpoint has one.
pub fn operation_id(endpoint: &MgmtEndpoint) -> &'static str {
    use MgmtEndpoint as E;
    match endpoint {
        E::Ping => "ping",
        E::Health => "getHealth",
        E::SystemInfo => "getSystemInfo",
        E::Search { .. } => "search",
        E::ListProjects { .. } => "listProjects",
        E::HeadProject { .. } => "headProject",
        E::CreateProject | E::CreateProxyProject => "createProject",
        E::ListRegistries { .. } => "listRegistries",
        E::CreateRegistry => "createRegistry",
        E::GetRegistry(_) => "getRegistry",
        E::UpdateRegistry(_) => "updateRegistry",
        E::DeleteRegistry(_) => "deleteRegistry",
        E::PingRegistry => "pingRegistry",
        E::RegistryInfo(_) => "getRegistryInfo",
        E::ListReplicationAdapters => "listReplicationAdapters",
        E::ReplicationAdapterInfos => "listReplicationAdapterinfos",
        E::ListReplicationPolicies { .. } => "listReplicationPolicies",
        E::CreateReplicationPolicy => "createReplicationPolicy",
        E::GetReplicationPolicy(_) => "getReplicationPolicy",
        E::UpdateReplicationPolicy(_) => "updateReplicationPolicy",
        E::DeleteReplicationPolicy(_) => "deleteReplicationPolicy",
        E::ListReplicationExecutions { .. } => "listReplicationExecutions",
        E::StartReplication => "startReplication",
        E::GetReplicationExecution(_) => "getReplicationExecution",
        E::StopReplication(_) => "stopReplication",
        E::ListReplicationTasks { .. } => "listReplicationTasks",
        E::GetReplicationLog { .. } => "getReplicationLog",
        E::GetProject(_) => "getProject",
        E::UpdateProject(_) => "updateProject",
        E::DeleteProject(_) => "deleteProject",
        E::ProjectDeletable(_) => "getProjectDeletableStatus",
        E::ProjectSummary(_) => "getProjectSummary",
        E::ListQuotas { .. } => "listQuotas",
        E::CreateRetention { .. } => "createRetention",
        E::GetRetention(_) => "getRetention",
        E::UpdateRetention(_) => "updateRetention",
        E::DeleteRetention(_) => "deleteRetention",
        E::RunRetention(_) => "triggerRetentionExecution",
        E::ListRetentionRuns { .. } => "listRetentionExecutions",
        E::ListImmutableRules { .. } => "ListImmuRules",
        E::CreateImmutableRule(_) => "CreateImmuRule",
        E::UpdateImmutableRule { .. } => "UpdateImmuRule",
        E::DeleteImmutableRule { .. } => "DeleteImmuRule",
        E::GetQuota(_) => "getQuota",
        E::UpdateQuota(_) => "updateQuota",
        E::ListMembers { .. } => "listProjectMembers",
        E::AddMember(_) => "createProjectMember",
        E::GetMember { .. } => "getProjectMember",
        E::UpdateMember { .. } => "updateProjectMember",
        E::DeleteMember { .. } => "deleteProjectMember",
        E::ListUsers { .. } => "listUsers",
        E::CreateUser => "createUser",
        E::CurrentUser => "getCurrentUserInfo",
        E::CurrentPermissions { .. } => "getCurrentUserPermissions",
        E::SearchUsers { .. } => "searchUsers",
        E::GetUser(_) => "getUser",
        E::UpdateUser(_) => "updateUserProfile",
        E::DeleteUser(_) => "deleteUser",
        E::SetPassword(_) => "updateUserPassword",
        E::SetSysadmin(_) => "setUserSysAdmin",
        E::ListRobots { .. } => "ListRobot",
        E::CreateRobot(_) => "CreateRobot",
        E::GetRobot(_) => "GetRobotByID",
        E::UpdateRobot(_) => "UpdateRobot",
        E::RefreshRobotSecret(_) => "RefreshSec",
        E::DeleteRobot(_) => "DeleteRobot",
        E::ListAllRepositories { .. } => "listAllRepositories",
        E::ListRepositories { .. } => "listRepositories",
        E::GetRepository(_) => "getRepository",
        E::UpdateRepository(_) => "updateRepository",
        E::DeleteRepository(_) => "deleteRepository",
        E::ListArtifacts { .. } => "listArtifacts",
        E::GetArtifact { .. } => "getArtifact",
        E::DeleteArtifact(_) => "deleteArtifact",
        E::CopyArtifact { .. } => "copyArtifact",
        E::ListAccessories { .. } => "listAccessories",
        E::ListTags { .. } => "listTags",
        E::CreateTag(_) => "createTag",
        E::DeleteTag { .. } => "deleteTag",
        E::ListGcRuns { .. } => "getGCHistory",
        E::GetGcRun(_) => "getGC",
        E::GetGcLog(_) => "getGCLog",
        E::GetGcSchedule => "getGCSchedule",
        E::CreateGcSchedule => "createGCSchedule",
        E::UpdateGcSchedule => "updateGCSchedule",
        E::ListAuditLogs { .. } => "listAuditLogs",
        E::ListProjectLogs { .. } => "getLogs",
    }
}

fn schema_ref(name: &str) -> Value {
    match name.strip_suffix("[]") {
        Some(item) => {
            json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}})
        }
        None => json!({"$ref": format!("#/components/schemas/{name}")}),
    }
}

fn object(fields: &[(&str, &str)]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|(name, kind)| {
            let schema = match *kind {
                "string" | "integer" | "boolean" | "object" => json!({"type": kind}),
                "date-time" => json!({"type": "string", "format": "date-time"}),
                "string[]" => json!({"type": "array", "items": {"type": "string"}}),
                "integer[]" => json!({"type": "array", "items": {"type": "integer"}}),
                "map" => json!({"type": "object", "additionalProperties": {"type": "string"}}),
                other => schema_ref(other),
            };
            ((*name).to_owned(), schema)
        })
        .collect();
    json!({"type": "object", "properties": properties})
}

fn schemas() -> Value {
    let mut schemas = json!({
        "Errors": object(&[("errors", "Error[]")]),
        "Error": object(&[("code", "string"), ("message", "string")]),
        "OverallHealthStatus": object(&[("status", "string"), ("components", "ComponentHealthStatus[]")]),
        "GCHistory": object(&[("id", "integer"), ("job_name", "string"), ("job_kind", "string"), ("job_parameters", "string"), ("schedule", "ScheduleObj"), ("job_status", "string"), ("deleted", "boolean"), ("creation_time", "date-time"), ("update_time", "date-time"), ("result", "object")]),
        "ScheduleObj": object(&[("type", "string"), ("cron", "string"), ("next_scheduled_time", "date-time")]),
        "GCSchedule": object(&[("schedule", "ScheduleObj"), ("parameters", "object")]),
        "ComponentHealthStatus": object(&[("name", "string"), ("status", "string"), ("error", "string")]),
        "GeneralInfo": object(&[("auth_mode", "string"), ("self_registration", "boolean"), ("harbor_version", "string"), ("external_url", "string"), ("registry_url", "string"), ("project_creation_restriction", "string"), ("has_ca_root", "boolean"), ("read_only", "boolean"), ("with_chartmuseum", "boolean"), ("with_notary", "boolean"), ("notification_enable", "boolean"), ("registry_storage_provider_name", "string")]),
        "Search": object(&[("project", "Project[]"), ("repository", "SearchRepository[]")]),
        "SearchRepository": object(&[("project_id", "integer"), ("project_name", "string"), ("project_public", "boolean"), ("repository_name", "string")]),
        "Project": object(&[("project_id", "integer"), ("owner_id", "integer"), ("name", "string"), ("owner_name", "string"), ("creation_time", "date-time"), ("update_time", "date-time"), ("deleted", "boolean"), ("togglable", "boolean"), ("current_user_role_id", "integer"), ("current_user_role_ids", "integer[]"), ("repo_count", "integer"), ("chart_count", "integer"), ("metadata", "map"), ("cve_allowlist", "object"), ("registry_id", "integer")]),
        "ProjectReq": object(&[("project_name", "string"), ("public", "boolean"), ("metadata", "map"), ("cve_allowlist", "object"), ("storage_limit", "integer"), ("registry_id", "integer")]),
        "Registry": object(&[("id", "integer"), ("name", "string"), ("url", "string"), ("type", "string"), ("description", "string"), ("insecure", "boolean"), ("credential", "RegistryCredential"), ("status", "string"), ("creation_time", "date-time"), ("update_time", "date-time")]),
        "RegistryCredential": object(&[("type", "string"), ("access_key", "string"), ("access_secret", "string")]),
        "RegistryReq": object(&[("id", "integer"), ("name", "string"), ("url", "string"), ("type", "string"), ("description", "string"), ("insecure", "boolean"), ("credential", "RegistryCredential"), ("credential_type", "string"), ("access_key", "string"), ("access_secret", "string"), ("ca_certificate", "string")]),
        "ProjectDeletable": object(&[("deletable", "boolean"), ("message", "string")]),
        "ProjectSummary": object(&[("repo_count", "integer"), ("chart_count", "integer"), ("project_admin_count", "integer"), ("maintainer_count", "integer"), ("developer_count", "integer"), ("guest_count", "integer"), ("limited_guest_count", "integer"), ("quota", "ProjectSummaryQuota"), ("usage", "Usage")]),
        "ProjectMemberEntity": object(&[("id", "integer"), ("project_id", "integer"), ("entity_name", "string"), ("role_name", "string"), ("role_id", "integer"), ("entity_id", "integer"), ("entity_type", "string")]),
        "ProjectMember": object(&[("role_id", "integer"), ("member_user", "UserEntity"), ("member_group", "object")]),
        "UserEntity": object(&[("user_id", "integer"), ("username", "string")]),
        "RoleRequest": object(&[("role_id", "integer")]),
        "UserResp": object(&[("user_id", "integer"), ("username", "string"), ("email", "string"), ("realname", "string"), ("comment", "string"), ("creation_time", "date-time"), ("update_time", "date-time"), ("sysadmin_flag", "boolean"), ("admin_role_in_auth", "boolean")]),
        "UserCreationReq": object(&[("username", "string"), ("email", "string"), ("realname", "string"), ("comment", "string"), ("password", "string")]),
        "UserProfile": object(&[("email", "string"), ("realname", "string"), ("comment", "string")]),
        "PasswordReq": object(&[("old_password", "string"), ("new_password", "string")]),
        "UserSysAdminFlag": object(&[("sysadmin_flag", "boolean")]),
        "UserSearchRespItem": object(&[("user_id", "integer"), ("username", "string")]),
        "Permission": object(&[("resource", "string"), ("action", "string")]),
        "Robot": object(&[("id", "integer"), ("name", "string"), ("description", "string"), ("level", "string"), ("duration", "integer"), ("editable", "boolean"), ("disable", "boolean"), ("expires_at", "integer"), ("permissions", "RobotPermission[]"), ("creation_time", "date-time"), ("update_time", "date-time")]),
        "RobotCreate": object(&[("name", "string"), ("description", "string"), ("secret", "string"), ("level", "string"), ("disable", "boolean"), ("duration", "integer"), ("permissions", "RobotPermission[]")]),
        "RobotCreated": object(&[("id", "integer"), ("name", "string"), ("secret", "string"), ("creation_time", "date-time"), ("expires_at", "integer")]),
        "RobotSec": object(&[("secret", "string")]),
        "RobotPermission": object(&[("kind", "string"), ("namespace", "string"), ("access", "Access[]")]),
        "Access": object(&[("resource", "string"), ("action", "string"), ("effect", "string")]),
        "Repository": object(&[("id", "integer"), ("project_id", "integer"), ("name", "string"), ("description", "string"), ("artifact_count", "integer"), ("pull_count", "integer"), ("creation_time", "date-time"), ("update_time", "date-time"), ("usage", "Usage")]),
        "Artifact": object(&[("id", "integer"), ("type", "string"), ("media_type", "string"), ("manifest_media_type", "string"), ("project_id", "integer"), ("repository_id", "integer"), ("digest", "string"), ("size", "integer"), ("push_time", "date-time"), ("pull_time", "date-time"), ("extra_attrs", "object"), ("annotations", "map"), ("references", "Reference[]"), ("tags", "Tag[]"), ("accessories", "Accessory[]")]),
        "Reference": object(&[("parent_id", "integer"), ("child_id", "integer"), ("child_digest", "string"), ("platform", "object")]),
        "Tag": object(&[("id", "integer"), ("repository_id", "integer"), ("artifact_id", "integer"), ("name", "string"), ("push_time", "date-time"), ("pull_time", "date-time"), ("immutable", "boolean"), ("signed", "boolean")]),
        "Accessory": object(&[("id", "integer"), ("artifact_id", "integer"), ("subject_artifact_id", "integer"), ("size", "integer"), ("digest", "string"), ("type", "string"), ("creation_time", "date-time")]),
        "AuditLog": object(&[("id", "integer"), ("username", "string"), ("resource", "string"), ("resource_type", "string"), ("operation", "string"), ("op_time", "date-time")]),
    });
    // Quotas, usage and tag immutability (one json! of everything would pass serde_json's
    // macro recursion limit).
    let more = json!({
        "RegistryInfo": object(&[("type", "string"), ("description", "string"), ("supported_resource_filters", "object"), ("supported_triggers", "object"), ("supported_copy_by_chunk", "boolean")]),
        "ReplicationPolicy": object(&[("id", "integer"), ("name", "string"), ("description", "string"), ("src_registry", "Registry"), ("dest_registry", "Registry"), ("dest_namespace", "string"), ("dest_namespace_replace_count", "integer"), ("trigger", "object"), ("filters", "object"), ("replicate_deletion", "boolean"), ("override", "boolean"), ("enabled", "boolean"), ("speed", "integer"), ("copy_by_chunk", "boolean"), ("single_active_replication", "boolean"), ("creation_time", "date-time"), ("update_time", "date-time")]),
        "ReplicationExecution": object(&[("id", "integer"), ("policy_id", "integer"), ("status", "string"), ("status_text", "string"), ("trigger", "string"), ("start_time", "date-time"), ("end_time", "date-time"), ("total", "integer"), ("failed", "integer"), ("succeed", "integer"), ("in_progress", "integer"), ("stopped", "integer")]),
        "ReplicationTask": object(&[("id", "integer"), ("execution_id", "integer"), ("resource_type", "string"), ("src_resource", "string"), ("dst_resource", "string"), ("job_id", "string"), ("status", "string"), ("operation", "string"), ("start_time", "date-time"), ("end_time", "date-time")]),
        "StartReplicationExecution": object(&[("policy_id", "integer")]),
        "ProjectSummaryQuota": object(&[("hard", "ResourceList"), ("used", "ResourceList")]),
        "ResourceList": object(&[("storage", "integer")]),
        "Usage": object(&[("used", "integer"), ("unique", "integer"), ("shared", "integer")]),
        "Quota": object(&[("id", "integer"), ("ref", "QuotaRefObject"), ("hard", "ResourceList"), ("used", "ResourceList"), ("creation_time", "date-time"), ("update_time", "date-time")]),
        "QuotaRefObject": object(&[("id", "integer"), ("name", "string"), ("owner_name", "string")]),
        "QuotaUpdateReq": object(&[("hard", "ResourceList")]),
        "ImmutableRule": object(&[("id", "integer"), ("project_id", "integer"), ("priority", "integer"), ("disabled", "boolean"), ("action", "string"), ("template", "string"), ("tag_selectors", "ImmutableSelector[]"), ("scope_selectors", "ImmutableScope")]),
        "ImmutableScope": object(&[("repository", "ImmutableSelector[]")]),
        "RetentionPolicy": object(&[("id", "integer"), ("algorithm", "string"), ("rules", "object"), ("trigger", "object"), ("scope", "object")]),
        "RetentionExecutionReq": object(&[("dry_run", "boolean")]),
        "RetentionExecution": object(&[("id", "integer"), ("policy_id", "integer"), ("start_time", "date-time"), ("end_time", "date-time"), ("status", "string"), ("trigger", "string"), ("dry_run", "boolean"), ("removed", "object")]),
        "ImmutableSelector": object(&[("kind", "string"), ("decoration", "string"), ("pattern", "string")]),
    });
    if let (Some(all), Value::Object(more)) = (schemas.as_object_mut(), more) {
        all.extend(more);
    }
    schemas
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut parameters: Vec<Value> = Vec::new();
        for segment in op.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let kind = if name.ends_with("_id") || name == "mid" {
                    "integer"
                } else {
                    "string"
                };
                parameters.push(
                    json!({"name": name, "in": "path", "required": true, "schema": {"type": kind}}),
                );
            }
        }
        let query = op.query.iter().chain(if op.paginated { PAGE } else { &[] });
        for (name, kind, description) in query {
            parameters.push(json!({"name": name, "in": "query", "description": description, "schema": {"type": kind}}));
        }
        if op.path.contains("{project_name_or_id}") {
            parameters.push(json!({"name": "X-Is-Resource-Name", "in": "header", "description": "the project segment is a name even if numeric", "schema": {"type": "boolean"}}));
        }
        parameters.push(json!({"name": "X-Request-Id", "in": "header", "description": "echoed in the answer", "schema": {"type": "string"}}));
        let mut responses = Map::new();
        for (status, schema) in op.responses.iter().chain(ERRORS) {
            let key = status.to_string();
            if responses.contains_key(&key) {
                continue;
            }
            let mut response = json!({"description": reason(*status)});
            if let Some(schema) = schema {
                response["content"] = json!({"application/json": {"schema": schema_ref(schema)}});
            }
            if *status == 201 {
                response["headers"] = json!({"Location": {"schema": {"type": "string"}}});
            }
            if op.paginated && *status == 200 {
                response["headers"] = json!({
                    "X-Total-Count": {"schema": {"type": "integer"}},
                    "Link": {"schema": {"type": "string"}},
                });
            }
            responses.insert(key, response);
        }
        let mut operation = json!({
            "operationId": op.id,
            "tags": [op.tag],
            "summary": op.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(body) = op.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_ref(body)}}});
        }
        let entry = paths
            .entry(op.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "berth management API (Harbor v2.0 compatible)",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "servers": [{"url": "/api/v2.0"}],
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
        "security": [{"basic": []}, {"bearer": []}, {}],
        "paths": paths,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        409 => "Conflict",
        412 => "Precondition failed",
        422 => "Unprocessable entity",
        _ => "Internal server error",
    }
}

#[cfg(test)]
mod tests {
    use berth_core::mgmt::{MgmtEndpoint, MgmtHeaders};

    use super::*;

    #[test]
    fn every_operation_parses_to_the_endpoint_with_its_id() {
        let mut ids = std::collections::HashSet::new();
        for op in OPERATIONS {
            assert!(ids.insert(op.id), "duplicate operation id {}", op.id);
            let (path, query) = match op.example.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (op.example, None),
            };
            let method = op.method.to_ascii_uppercase();
            let parsed = MgmtEndpoint::parse(
                &method,
                path,
                query,
                MgmtHeaders::default(),
                example_body(op.id),
            )
            .unwrap_or_else(|e| panic!("{} {}: {e}", op.method, op.example));
            assert_eq!(operation_id(&parsed), op.id, "{} {}", op.method, op.example);
            assert_eq!(
                format!("/api/v2.0{}", op.path).split('/').count(),
                path.split('/').count(),
                "{}: the example matches the template",
                op.id
            );
        }
    }
}
