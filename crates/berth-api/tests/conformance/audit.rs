//! The audit log end to end: a scripted session (logins, a push, pulls, a member change, a
//! robot, a refusal, a delete) read back through `/audit-logs` and from the JSON lines;
//! Harbor's filters and pagination; who may read which entries; pull counts; no secret
//! anywhere.

use std::net::SocketAddr;

use axum::http::StatusCode;
use berth_auth::identity::{NewAccount, RobotSpec, project_permissions};
use berth_core::access::RobotName;
use berth_core::{Digest, Role};
use berth_meta::AuditStore;
use serde_json::{Value, json};

use crate::common::{OCI_MANIFEST, TestApp, TestResponse};

const PASSWORD: &str = "Passw0rd-audit";
const WRONG: &str = "Wr0ng-password-audit";

/// A token-mode registry with `root` (system admin), `dev`, `guest` and `other`.
async fn app() -> TestApp {
    let app = TestApp::builder().token_mode().build().await;
    let id = app.identity();
    for (name, sysadmin) in [
        ("root", true),
        ("dev", false),
        ("guest", false),
        ("other", false),
    ] {
        id.add_user(NewAccount {
            name: name.into(),
            password: PASSWORD.into(),
            email: format!("{name}@example.com"),
            sysadmin,
            ..Default::default()
        })
        .await
        .expect("user");
    }
    app
}

fn as_user(app: &TestApp, user: &str) -> TestApp {
    app.with_basic(user, PASSWORD)
}

async fn send_json(app: &TestApp, method: &str, path: &str, body: Value) -> TestResponse {
    app.request(method.parse().expect("method"), path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .send()
        .await
}

/// `(username, operation, resource_type, resource, operation_result)` of entries.
fn summary(entries: &Value) -> Vec<(String, String, String, String, bool)> {
    entries
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            let s = |k: &str| {
                e[k].as_str()
                    .unwrap_or_else(|| panic!("{k} in {e}"))
                    .to_owned()
            };
            (
                s("username"),
                s("operation"),
                s("resource_type"),
                s("resource"),
                e["operation_result"].as_bool().expect("result"),
            )
        })
        .collect()
}

fn entry(
    user: &str,
    op: &str,
    kind: &str,
    resource: &str,
    ok: bool,
) -> (String, String, String, String, bool) {
    (user.into(), op.into(), kind.into(), resource.into(), ok)
}

/// Everything, as root, newest first.
async fn all_entries(app: &TestApp) -> Value {
    app.flush_audit().await;
    let response = as_user(app, "root")
        .get("/api/v2.0/audit-logs?page_size=100")
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
    response.json()
}

#[tokio::test]
async fn a_session_is_read_back_through_the_api_and_the_json_lines() {
    let app = app().await;
    let client: SocketAddr = "192.0.2.44:51000".parse().expect("addr");
    let root = as_user(&app, "root").with_peer(client);
    let dev = as_user(&app, "dev").with_peer(client);

    // The administrator creates a project and makes dev a developer (management API).
    let created = send_json(
        &root,
        "POST",
        "/api/v2.0/projects",
        json!({"project_name": "team"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let added = send_json(
        &root,
        "POST",
        "/api/v2.0/projects/team/members",
        json!({"role_id": 2, "member_user": {"username": "dev"}}),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED);
    let dev_id = app.identity().user("dev").await.expect("dev").id;

    // dev logs in (once with a wrong password), pushes and pulls.
    let failed = app
        .with_basic("dev", WRONG)
        .with_peer(client)
        .get("/service/token?service=berth")
        .send()
        .await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    let login = dev
        .get("/service/token?service=berth&scope=repository:team/app:pull,push")
        .send()
        .await;
    assert_eq!(login.status, StatusCode::OK);
    let (digest, _) = dev.push_image("team/app", "v1", "audit").await;
    let pulled = dev
        .get("/v2/team/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await;
    assert_eq!(pulled.status, StatusCode::OK);
    // A HEAD is not a pull (as Harbor).
    dev.head("/v2/team/app/manifests/v1").send().await;

    // A robot pulls by digest with a token.
    let (robot, secret) = app
        .identity()
        .create_robot(RobotSpec {
            name: RobotName::parse("robot$team+ci").expect("name"),
            description: String::new(),
            duration_days: None,
            permissions: project_permissions("team", &["pull"]),
            secret: None,
            disabled: false,
        })
        .await
        .expect("robot");
    let token = app
        .with_basic(&robot.name, &secret)
        .get("/service/token?service=berth&scope=repository:team/app:pull")
        .send()
        .await
        .json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let by_robot = app
        .with_bearer(&token)
        .get(format!("/v2/team/app/manifests/{digest}"))
        .send()
        .await;
    assert_eq!(by_robot.status, StatusCode::OK);

    // The member's role changes; a guest's push is refused; root deletes the tag.
    let changed = send_json(
        &root,
        "PUT",
        &format!("/api/v2.0/projects/team/members/{dev_id}"),
        json!({"role_id": 4}),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK);
    app.identity()
        .set_member("team", "guest", Role::Guest)
        .await
        .expect("member");
    // dev is a maintainer now: the blobs are there, the guest only PUTs the manifest.
    let manifest = dev.image_manifest("team/app", "audit-v2").await;
    let refused = as_user(&app, "guest")
        .put_manifest("team/app", "v2", OCI_MANIFEST, manifest)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let deleted = root.delete("/v2/team/app/manifests/v1").send().await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);

    let entries = all_entries(&app).await;
    let got = summary(&entries);
    let expected = [
        entry("root", "create", "project", "team", true),
        entry("root", "create", "member", "team/dev", true),
        entry("dev", "login", "login", "dev", false),
        entry("dev", "login", "login", "dev", true),
        entry(
            "dev",
            "token",
            "token",
            "repository:team/app:pull,push",
            true,
        ),
        entry("dev", "create", "artifact", "team/app:v1", true),
        entry("dev", "pull", "artifact", "team/app:v1", true),
        entry("robot$team+ci", "login", "login", "robot$team+ci", true),
        entry(
            "robot$team+ci",
            "pull",
            "artifact",
            &format!("team/app@{digest}"),
            true,
        ),
        entry("root", "update", "member", "team/dev", true),
        entry("guest", "create", "artifact", "team/app:v2", false),
        entry("root", "delete", "tag", "team/app:v1", true),
    ];
    for want in &expected {
        assert!(got.contains(want), "{want:?} missing from {got:#?}");
    }
    // HEAD is not a pull; only dev's GET and the robot's are.
    let pulls = got.iter().filter(|e| e.1 == "pull").count();
    assert_eq!(pulls, 2, "{got:#?}");
    // Newest first, with Harbor's fields.
    let first = &entries[0];
    assert_eq!(
        first["resource"], "team/app:v1",
        "the delete came last: {first}"
    );
    for field in [
        "id",
        "username",
        "resource",
        "resource_type",
        "operation",
        "op_time",
    ] {
        assert!(!first[field].is_null(), "{field} in {first}");
    }
    assert!(first["op_time"].as_str().expect("time").ends_with('Z'));
    let failed_login = entries
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["operation"] == "login" && e["operation_result"] == false)
        .expect("the failed login");
    assert_eq!(failed_login["client_ip"], "192.0.2.44");
    assert_eq!(
        failed_login["operation_description"],
        "invalid username or password"
    );
    let refusal = entries
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["username"] == "guest")
        .expect("the refused push");
    assert!(
        refusal["operation_description"]
            .as_str()
            .expect("reason")
            .contains("push on team/app is not allowed"),
        "{refusal}"
    );

    // The same events as JSON lines.
    let lines = app.audit_lines();
    let line_summary: Vec<_> = lines
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (
                s("username"),
                s("operation"),
                s("resource_type"),
                s("resource"),
                l["result"] == "success",
            )
        })
        .collect();
    for want in &expected {
        assert!(
            line_summary.contains(want),
            "{want:?} missing from the JSON lines"
        );
    }
    let pull_line = lines
        .iter()
        .find(|l| l["operation"] == "pull" && l["username"] == "dev")
        .expect("dev's pull");
    assert_eq!(
        (pull_line["project"].as_str(), pull_line["client"].as_str()),
        (Some("team"), Some("192.0.2.44"))
    );

    // No password, secret or token anywhere.
    let everything = format!("{entries}{}", Value::from(lines.clone()));
    for secret in [PASSWORD, WRONG, secret.as_str(), token.as_str()] {
        assert!(
            !everything.contains(secret),
            "a secret leaked into the audit log"
        );
    }

    // Pull counts, written by the same batches: two pulls of the manifest.
    let name = "team/app".parse().expect("name");
    let digest: Digest = digest.parse().expect("digest");
    let stats = app
        .meta()
        .artifact_pulls(&name, &digest)
        .await
        .expect("stats");
    assert_eq!(stats.map(|s| s.count), Some(2));
    assert_eq!(
        app.meta().repository_pulls(&name).await.expect("repo"),
        Some(2)
    );
}

/// An app with a few pulls and pushes by several users in two projects.
async fn busy_app() -> TestApp {
    let app = app().await;
    let id = app.identity();
    for (project, member) in [("team", "dev"), ("side", "other")] {
        id.create_project(project, false, None)
            .await
            .expect("project");
        id.set_member(project, member, Role::Developer)
            .await
            .expect("member");
    }
    id.set_member("team", "guest", Role::Guest)
        .await
        .expect("member");
    as_user(&app, "dev").push_image("team/app", "v1", "a").await;
    as_user(&app, "other")
        .push_image("side/tool", "v1", "b")
        .await;
    for (user, repo) in [
        ("dev", "team/app"),
        ("guest", "team/app"),
        ("other", "side/tool"),
    ] {
        let pulled = as_user(&app, user)
            .get(format!("/v2/{repo}/manifests/v1"))
            .send()
            .await;
        assert_eq!(pulled.status, StatusCode::OK);
    }
    app.flush_audit().await;
    app
}

async fn listed(app: &TestApp, user: &str, path: &str) -> TestResponse {
    let response = as_user(app, user).get(path).send().await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{path}: {:?}",
        response.body
    );
    response
}

#[tokio::test]
async fn filters_sorting_and_pages_follow_harbor() {
    let app = busy_app().await;
    let pulls = listed(&app, "root", "/api/v2.0/audit-logs?q=operation%3Dpull").await;
    assert_eq!(pulls.header("x-total-count"), "3");
    let by_dev = listed(
        &app,
        "root",
        "/api/v2.0/audit-logs?q=username%3Ddev,operation%3Dpull",
    )
    .await;
    assert_eq!(
        summary(&by_dev.json()),
        [entry("dev", "pull", "artifact", "team/app:v1", true)]
    );
    let fuzzy = listed(
        &app,
        "root",
        "/api/v2.0/audit-logs?q=resource%3D~tool,resource_type%3Dartifact",
    )
    .await;
    assert_eq!(fuzzy.header("x-total-count"), "2", "other's push and pull");
    let either = listed(
        &app,
        "root",
        "/api/v2.0/audit-logs?q=operation%3D%7Bpull%20create%7D,username%3D%7Bdev%20guest%7D",
    )
    .await;
    assert_eq!(
        either.header("x-total-count"),
        "3",
        "dev's push and pull, guest's pull"
    );
    // Ranges of op_time: all of it from 2000 on; none before.
    let since = listed(
        &app,
        "root",
        "/api/v2.0/audit-logs?q=op_time%3D%5B2000-01-01%2000%3A00%3A00~%5D,operation%3Dpull",
    )
    .await;
    assert_eq!(since.header("x-total-count"), "3");
    let before = listed(
        &app,
        "root",
        "/api/v2.0/audit-logs?q=op_time%3D%5B~2000-01-01T00%3A00%3A00Z%5D",
    )
    .await;
    assert_eq!(before.header("x-total-count"), "0");
    // Oldest first on request; newest first by default.
    let oldest = listed(
        &app,
        "root",
        "/api/v2.0/audit-logs?q=operation%3Dpull&sort=op_time",
    )
    .await;
    let newest = listed(&app, "root", "/api/v2.0/audit-logs?q=operation%3Dpull").await;
    let ids = |r: &TestResponse| -> Vec<i64> {
        r.json()
            .as_array()
            .expect("list")
            .iter()
            .map(|e| e["id"].as_i64().expect("id"))
            .collect()
    };
    let mut reversed = ids(&newest);
    reversed.reverse();
    assert_eq!(ids(&oldest), reversed);
    // Pages with X-Total-Count and Link.
    let page = listed(
        &app,
        "root",
        "/api/v2.0/audit-logs?q=operation%3Dpull&page=2&page_size=1",
    )
    .await;
    assert_eq!(page.json().as_array().expect("list").len(), 1);
    assert_eq!(page.header("x-total-count"), "3");
    let link = page.header("link");
    assert!(
        link.contains("rel=\"prev\"") && link.contains("rel=\"next\""),
        "{link}"
    );
    assert!(link.contains("page=3"), "{link}");
    // Bad input is Harbor's 4xx.
    for (path, status) in [
        ("/api/v2.0/audit-logs?page_size=101", 422),
        ("/api/v2.0/audit-logs?q=op_time%3D%5Byesterday~%5D", 400),
        ("/api/v2.0/audit-logs?q=username%3D%5Ba~b%5D", 400),
    ] {
        let response = as_user(&app, "root").get(path).send().await;
        assert_eq!(response.status.as_u16(), status, "{path}");
    }
}

#[tokio::test]
async fn callers_read_only_the_entries_of_their_projects() {
    let app = busy_app().await;
    let resources = |r: &TestResponse| -> Vec<String> {
        let mut v: Vec<String> = r
            .json()
            .as_array()
            .expect("list")
            .iter()
            .map(|e| e["resource"].as_str().expect("resource").to_owned())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    // A guest of team sees team's entries only: no logins, no other project.
    let guest = listed(&app, "guest", "/api/v2.0/audit-logs?page_size=100").await;
    assert_eq!(resources(&guest), ["team/app:v1"]);
    let other = listed(&app, "other", "/api/v2.0/audit-logs?page_size=100").await;
    assert_eq!(resources(&other), ["side/tool:v1"]);
    let team = listed(&app, "dev", "/api/v2.0/projects/team/logs?page_size=100").await;
    assert_eq!(
        team.header("x-total-count"),
        "3",
        "dev's push and pull, guest's pull"
    );
    // The system administrator sees everything, logins included.
    let all = listed(&app, "root", "/api/v2.0/audit-logs?page_size=100").await;
    assert!(
        all.json()
            .as_array()
            .expect("list")
            .iter()
            .any(|e| e["operation"] == "login"),
        "logins are system-wide entries"
    );
    for (user, path, status) in [
        (None, "/api/v2.0/audit-logs", 401),
        (None, "/api/v2.0/projects/team/logs", 401),
        (Some("other"), "/api/v2.0/projects/team/logs", 403),
        (Some("root"), "/api/v2.0/projects/nosuch/logs", 404),
    ] {
        let handle = match user {
            Some(u) => as_user(&app, u),
            None => app.clone(),
        };
        assert_eq!(
            handle.get(path).send().await.status.as_u16(),
            status,
            "{user:?} {path}"
        );
    }
}

#[tokio::test]
async fn user_changes_through_the_api_are_audited_under_their_names() {
    let app = app().await;
    let root = as_user(&app, "root");
    let created = send_json(
        &root,
        "POST",
        "/api/v2.0/users",
        json!({"username": "newbie", "email": "n@example.com", "password": "Newbie-Pass1"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let path = created.location();
    // Written between changes, so identical entries are not folded into one.
    app.flush_audit().await;
    for (method, suffix, body) in [
        ("PUT", "/password", json!({"new_password": "Newbie-Pass2"})),
        ("PUT", "/sysadmin", json!({"sysadmin_flag": true})),
    ] {
        let response = send_json(&root, method, &format!("{path}{suffix}"), body).await;
        assert_eq!(response.status, StatusCode::OK);
        app.flush_audit().await;
    }
    assert_eq!(root.delete(&path).send().await.status, StatusCode::OK);
    // A refused change is no change: not an entry.
    let refused = send_json(&as_user(&app, "dev"), "POST", "/api/v2.0/users", json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let got = summary(&all_entries(&app).await);
    let users: Vec<_> = got.iter().filter(|e| e.2 == "user").cloned().collect();
    assert_eq!(
        users,
        [
            entry("root", "delete", "user", "newbie", true),
            entry("root", "update", "user", "newbie", true),
            entry("root", "update", "user", "newbie", true),
            entry("root", "create", "user", "newbie", true),
        ]
    );
    let all = all_entries(&app).await.to_string();
    assert!(
        !all.contains("Newbie-Pass"),
        "a password leaked into the audit log"
    );
}

#[tokio::test]
async fn with_audit_off_nothing_is_recorded_or_counted() {
    let app = TestApp::builder().audit(false).build().await;
    let (digest, _) = app.push_image("plain/app", "v1", "off").await;
    app.get("/v2/plain/app/manifests/v1").send().await;
    app.flush_audit().await;
    let (entries, total) = app
        .meta()
        .audit_entries(&Default::default())
        .await
        .expect("entries");
    assert_eq!((entries.len(), total), (0, 0));
    let stats = app
        .meta()
        .artifact_pulls(
            &"plain/app".parse().expect("name"),
            &digest.parse().expect("digest"),
        )
        .await
        .expect("stats");
    assert_eq!(stats, None);
}

#[tokio::test]
async fn open_mode_audits_anonymous_pushes_and_pulls_by_address() {
    let app = TestApp::new().await;
    app.push_image("plain/app", "v1", "open").await;
    app.with_peer("198.51.100.7:4000".parse().expect("addr"))
        .get("/v2/plain/app/manifests/v1")
        .send()
        .await;
    app.flush_audit().await;
    let (entries, _) = app
        .meta()
        .audit_entries(&Default::default())
        .await
        .expect("entries");
    let got: Vec<(&str, &str, &str, &str)> = entries
        .iter()
        .map(|e| {
            let r = &e.record;
            (
                r.username.as_str(),
                r.operation.as_str(),
                r.resource.as_str(),
                r.client.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("anonymous", "pull", "plain/app:v1", "198.51.100.7"),
            ("anonymous", "create", "plain/app:v1", ""),
        ]
    );
}

#[tokio::test]
async fn pulls_show_in_harbors_repository_and_artifact_json() {
    let app = app().await;
    let root = as_user(&app, "root");
    app.identity()
        .create_project("team", false, Some("root"))
        .await
        .expect("project");
    let (digest, _) = root.push_image("team/app", "v1", "pulled").await;
    let artifact = format!("/api/v2.0/projects/team/repositories/app/artifacts/{digest}");
    app.flush_audit().await;
    let before = root.get(&artifact).send().await.json();
    assert_eq!(
        before["pull_time"], "0001-01-01T00:00:00.000Z",
        "never pulled"
    );
    for _ in 0..3 {
        let pulled = root.get("/v2/team/app/manifests/v1").send().await;
        assert_eq!(pulled.status, StatusCode::OK);
    }
    app.flush_audit().await;
    let after = root.get(&artifact).send().await.json();
    assert_ne!(after["pull_time"], "0001-01-01T00:00:00.000Z", "{after}");
    assert!(
        after["pull_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let repository = root
        .get("/api/v2.0/projects/team/repositories/app")
        .send()
        .await
        .json();
    assert_eq!(repository["pull_count"], 3, "{repository}");
}

#[tokio::test]
async fn artifact_changes_through_the_api_are_audited() {
    let app = app().await;
    let root = as_user(&app, "root");
    for project in ["src", "dst"] {
        let created = send_json(
            &root,
            "POST",
            "/api/v2.0/projects",
            json!({"project_name": project}),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED);
    }
    let (digest, _) = root.push_image("src/app", "v1", "a").await;
    root.push_image("src/old", "v1", "o").await;
    app.flush_audit().await;
    let api = "/api/v2.0/projects";
    let copied = root
        .post(format!(
            "{api}/dst/repositories/app/artifacts?from=src/app:v1"
        ))
        .send()
        .await;
    assert_eq!(copied.status, StatusCode::CREATED);
    app.flush_audit().await;
    for path in [
        format!("{api}/dst/repositories/app/artifacts/v1/tags/v1"),
        format!("{api}/dst/repositories/app/artifacts/{digest}"),
        format!("{api}/src/repositories/old"),
    ] {
        assert_eq!(
            root.delete(&path).send().await.status,
            StatusCode::OK,
            "{path}"
        );
        app.flush_audit().await;
    }
    let got: Vec<_> = summary(&all_entries(&app).await)
        .into_iter()
        .filter(|e| e.2 != "login")
        .collect();
    assert_eq!(
        got[..4],
        [
            entry("root", "delete", "repository", "src/old", true),
            entry(
                "root",
                "delete",
                "artifact",
                &format!("dst/app@{digest}"),
                true
            ),
            entry("root", "delete", "tag", "dst/app:v1", true),
            entry(
                "root",
                "create",
                "artifact",
                &format!("dst/app@{digest}"),
                true
            ),
        ]
    );
}
