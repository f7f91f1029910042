//! Harbor's `/api/v2.0` for projects, members, users, search and the system endpoints:
//! JSON shapes, status codes, pagination, bad input, and the authorization matrix over every
//! endpoint (robots' own behaviour is in `robots.rs`; their rows are here).

use axum::http::StatusCode;
use berth_auth::identity::NewAccount;
use berth_core::Role;
use serde_json::{Value, json};

use crate::common::{TestApp, TestResponse};

pub(crate) const PASSWORD: &str = "Passw0rd-mgmt";

/// A token-mode registry with `root` (system admin) and a few users.
pub(crate) async fn app() -> TestApp {
    with_users(TestApp::builder().token_mode().build().await).await
}

/// `app` (in token mode) with `root` (system admin) and a few users.
async fn with_users(app: TestApp) -> TestApp {
    let id = app.identity();
    for (name, sysadmin) in [
        ("root", true),
        ("dev", false),
        ("guest", false),
        ("maint", false),
        ("padmin", false),
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

pub(crate) fn as_user(app: &TestApp, user: &str) -> TestApp {
    app.with_basic(user, PASSWORD)
}

pub(crate) async fn send_json(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Value,
) -> TestResponse {
    let method = method.parse().expect("method");
    app.request(method, path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .send()
        .await
}

/// Harbor's error body: `{"errors":[{"code","message"}]}`.
#[track_caller]
pub(crate) fn assert_harbor_error(response: &TestResponse, status: u16, code: &str) {
    let body = response.json();
    assert_eq!(
        (response.status.as_u16(), body["errors"][0]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(body["errors"][0]["message"].is_string(), "{body}");
}

/// `POST /projects` as `user`; the new project's id (from `Location`).
pub(crate) async fn create_project(app: &TestApp, user: &str, name: &str, public: bool) -> i64 {
    let response = send_json(
        &as_user(app, user),
        "POST",
        "/api/v2.0/projects",
        json!({"project_name": name, "metadata": {"public": public.to_string()}}),
    )
    .await;
    assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
    response
        .location()
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("numeric id in Location")
}

#[tokio::test]
async fn the_seeds_member_command_then_a_docker_style_push() {
    let app = app().await;
    let id = create_project(&app, "root", "team", false).await;
    // curl -u admin:… -X POST -H "Content-Type: application/json"
    //   -d '{"role_id": 2, "member_user": {"username": "dev"}}' …/api/v2.0/projects/1/members
    let added = send_json(
        &as_user(&app, "root"),
        "POST",
        &format!("/api/v2.0/projects/{id}/members"),
        json!({"role_id": 2, "member_user": {"username": "dev"}}),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED);
    assert!(
        added
            .location()
            .starts_with(&format!("/api/v2.0/projects/{id}/members/"))
    );
    // The developer pushes, through /v2/, at once.
    as_user(&app, "dev")
        .push_image("team/app", "v1", "seed")
        .await;
    let members = as_user(&app, "root")
        .get(format!("/api/v2.0/projects/{id}/members"))
        .send()
        .await;
    let entries = members.json();
    let dev = entries
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["entity_name"] == "dev")
        .expect("dev listed");
    assert_eq!(
        (
            dev["role_id"].as_i64(),
            dev["role_name"].as_str(),
            dev["entity_type"].as_str()
        ),
        (Some(2), Some("developer"), Some("u"))
    );
}

#[tokio::test]
async fn projects_are_created_listed_paged_and_described_as_harbor_does() {
    let app = app().await;
    let root = as_user(&app, "root");
    for i in 0..12 {
        create_project(&app, "root", &format!("p{i:02}"), i % 2 == 0).await;
    }
    let first = root
        .get("/api/v2.0/projects?page=1&page_size=5")
        .send()
        .await;
    assert_eq!(first.status, StatusCode::OK);
    // 12 created + library.
    assert_eq!(first.header("x-total-count"), "13");
    assert_eq!(first.json().as_array().expect("list").len(), 5);
    assert_eq!(
        first.header("link"),
        "</api/v2.0/projects?page=2&page_size=5>; rel=\"next\""
    );
    let second = root
        .get("/api/v2.0/projects?page=2&page_size=5")
        .send()
        .await;
    assert_eq!(
        second.header("link"),
        "</api/v2.0/projects?page=1&page_size=5>; rel=\"prev\" , </api/v2.0/projects?page=3&page_size=5>; rel=\"next\""
    );
    let public = root
        .get("/api/v2.0/projects?public=true&page_size=100")
        .send()
        .await;
    assert_eq!(
        public.header("x-total-count"),
        "7",
        "6 even ones and library"
    );
    let named = root
        .get("/api/v2.0/projects?name=p0&page_size=100")
        .send()
        .await;
    assert_eq!(named.header("x-total-count"), "10");
    let by_q = root.get("/api/v2.0/projects?q=name%3D~p1").send().await;
    assert_eq!(by_q.header("x-total-count"), "2");

    let project = root.get("/api/v2.0/projects/p00").send().await.json();
    for field in [
        "project_id",
        "name",
        "owner_id",
        "owner_name",
        "creation_time",
        "update_time",
        "repo_count",
        "metadata",
    ] {
        assert!(!project[field].is_null(), "{field} in {project}");
    }
    assert_eq!(project["metadata"]["public"], "true");
    assert_eq!(project["owner_name"], "root");
    let by_id = root
        .get(format!("/api/v2.0/projects/{}", project["project_id"]))
        .send()
        .await
        .json();
    assert_eq!(by_id["name"], "p00");

    assert_eq!(
        root.head("/api/v2.0/projects?project_name=p00")
            .send()
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        root.head("/api/v2.0/projects?project_name=nope")
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let dup = send_json(
        &root,
        "POST",
        "/api/v2.0/projects",
        json!({"project_name": "p00"}),
    )
    .await;
    assert_harbor_error(&dup, 409, "CONFLICT");
}

#[tokio::test]
async fn a_numeric_project_name_is_reached_with_x_is_resource_name() {
    let app = app().await;
    let root = as_user(&app, "root");
    create_project(&app, "root", "2024", false).await;
    let response = root
        .get("/api/v2.0/projects/2024")
        .header("x-is-resource-name", "true")
        .send()
        .await;
    assert_eq!(response.json()["name"], "2024");
}

#[tokio::test]
async fn projects_update_delete_deletable_and_summary() {
    let app = app().await;
    let root = as_user(&app, "root");
    let id = create_project(&app, "root", "team", false).await;
    let path = format!("/api/v2.0/projects/{id}");
    let updated = send_json(&root, "PUT", &path, json!({"metadata": {"public": "true"}})).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(
        root.get(&path).send().await.json()["metadata"]["public"],
        "true"
    );
    app.identity()
        .set_member("team", "dev", Role::Developer)
        .await
        .expect("member");
    let summary = root.get(format!("{path}/summary")).send().await.json();
    assert_eq!(
        (
            summary["project_admin_count"].as_u64(),
            summary["developer_count"].as_u64()
        ),
        (Some(1), Some(1))
    );
    root.push_image("team/app", "v1", "x").await;
    let deletable = root.get(format!("{path}/_deletable")).send().await.json();
    assert_eq!(deletable["deletable"], false);
    let refused = root.delete(&path).send().await;
    assert_harbor_error(&refused, 412, "PRECONDITION");
    create_project(&app, "root", "empty", false).await;
    assert_eq!(
        root.delete("/api/v2.0/projects/empty").send().await.status,
        StatusCode::OK
    );
    assert_eq!(
        root.get("/api/v2.0/projects/empty").send().await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn users_are_managed_by_administrators_and_themselves() {
    let app = app().await;
    let root = as_user(&app, "root");
    let created = send_json(
        &root,
        "POST",
        "/api/v2.0/users",
        json!({"username": "newbie", "email": "n@example.com", "realname": "New", "password": "Newbie-Pass1"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let user_path = created.location();
    let user = root.get(&user_path).send().await.json();
    assert_eq!(
        (user["username"].as_str(), user["sysadmin_flag"].as_bool()),
        (Some("newbie"), Some(false))
    );
    let list = root.get("/api/v2.0/users?username=new").send().await;
    assert_eq!(list.header("x-total-count"), "1");
    // Themselves: current user, profile, password (with the old one).
    let newbie = app.with_basic("newbie", "Newbie-Pass1");
    assert_eq!(
        newbie.get("/api/v2.0/users/current").send().await.json()["username"],
        "newbie"
    );
    let wrong_old = send_json(
        &newbie,
        "PUT",
        &format!("{user_path}/password"),
        json!({"old_password": "nope", "new_password": "Other-Pass2"}),
    )
    .await;
    assert_harbor_error(&wrong_old, 403, "FORBIDDEN");
    let changed = send_json(
        &newbie,
        "PUT",
        &format!("{user_path}/password"),
        json!({"old_password": "Newbie-Pass1", "new_password": "Other-Pass2"}),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK);
    let again = app.with_basic("newbie", "Other-Pass2");
    assert_eq!(
        again.get("/api/v2.0/users/current").send().await.status,
        StatusCode::OK
    );
    // Not other users' business.
    assert_harbor_error(&again.get("/api/v2.0/users").send().await, 403, "FORBIDDEN");
    let admin = send_json(
        &root,
        "PUT",
        &format!("{user_path}/sysadmin"),
        json!({"sysadmin_flag": true}),
    )
    .await;
    assert_eq!(admin.status, StatusCode::OK);
    assert_eq!(
        again.get("/api/v2.0/users").send().await.status,
        StatusCode::OK
    );
    let search = again
        .get("/api/v2.0/users/search?username=ro")
        .send()
        .await
        .json();
    assert_eq!(search[0]["username"], "root");
    assert_eq!(root.delete(&user_path).send().await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_gets_harbors_4xx_never_a_500() {
    let app = app().await;
    let root = as_user(&app, "root");
    let id = create_project(&app, "root", "team", false).await;
    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "POST",
            "/api/v2.0/projects".into(),
            json!({"project_name": "x", "surprise": 1}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v2.0/projects".into(),
            json!({"project_name": 42}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v2.0/projects".into(),
            json!({"project_name": "Bad Name"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v2.0/projects".into(),
            json!({"project_name": "x", "metadata": {"public": "yes"}}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("/api/v2.0/projects/{id}/members"),
            json!({"role_id": 9, "member_user": {"username": "dev"}}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("/api/v2.0/projects/{id}/members"),
            json!({"role_id": 2, "member_user": {"username": "ghost"}}),
            404,
            "NOT_FOUND",
        ),
        (
            "POST",
            format!("/api/v2.0/projects/{id}/members"),
            json!({"role_id": "2"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v2.0/users".into(),
            json!({"username": "weak", "email": "w@example.com", "password": "short"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v2.0/users".into(),
            json!({"username": "noemail", "password": "Passw0rd-ok"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v2.0/users".into(),
            json!({"username": "dev", "email": "d@example.com", "password": "Passw0rd-ok"}),
            409,
            "CONFLICT",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let response = send_json(&root, method, &path, body.clone()).await;
        assert_harbor_error(&response, status, code);
    }
    for (path, status, code) in [
        (
            "/api/v2.0/projects?page_size=101",
            422,
            "UNPROCESSABLE_ENTITY",
        ),
        ("/api/v2.0/projects?page=0", 422, "UNPROCESSABLE_ENTITY"),
        (
            "/api/v2.0/projects?public=maybe",
            422,
            "UNPROCESSABLE_ENTITY",
        ),
        ("/api/v2.0/projects?q=name", 400, "BAD_REQUEST"),
        ("/api/v2.0/users/abc", 400, "BAD_REQUEST"),
        ("/api/v2.0/projects/99999", 404, "NOT_FOUND"),
        ("/api/v2.0/nothing/here", 404, "NOT_FOUND"),
    ] {
        let response = root.get(path).send().await;
        assert_harbor_error(&response, status, code);
    }
    let broken = root
        .post("/api/v2.0/projects")
        .header("content-type", "application/json")
        .body(b"{not json".to_vec())
        .send()
        .await;
    assert_harbor_error(&broken, 400, "BAD_REQUEST");
    let wrong_method = root
        .request("PATCH".parse().expect("method"), "/api/v2.0/projects")
        .send()
        .await;
    assert_harbor_error(&wrong_method, 405, "METHOD_NOT_ALLOWED");
    // Every answer carries a request id, echoed when the client sent one.
    let echoed = root
        .get("/api/v2.0/ping")
        .header("x-request-id", "abc-123")
        .send()
        .await;
    assert_eq!(
        (echoed.header("x-request-id"), &echoed.body[..]),
        ("abc-123", &b"Pong"[..])
    );
}

#[tokio::test]
async fn system_endpoints_answer_anyone() {
    let app = app().await;
    let health = app.get("/api/v2.0/health").send().await.json();
    assert_eq!(health["status"], "healthy");
    let info = app.get("/api/v2.0/systeminfo").send().await.json();
    assert_eq!(info["auth_mode"], "db_auth");
    assert!(
        info.get("external_url").is_none(),
        "only for logged-in callers"
    );
    let info = as_user(&app, "dev")
        .get("/api/v2.0/systeminfo")
        .send()
        .await
        .json();
    assert_eq!(info["project_creation_restriction"], "everyone");
}

#[tokio::test]
async fn search_shows_only_what_the_caller_may_see() {
    let app = app().await;
    create_project(&app, "root", "secret", false).await;
    create_project(&app, "root", "shared", true).await;
    as_user(&app, "root")
        .push_image("secret/app", "v1", "a")
        .await;
    as_user(&app, "root")
        .push_image("shared/app", "v1", "b")
        .await;
    let anonymous = app.get("/api/v2.0/search?q=s").send().await.json();
    let names = |v: &Value, key: &str, field: &str| -> Vec<String> {
        v[key]
            .as_array()
            .expect("array")
            .iter()
            .map(|x| x[field].as_str().expect("name").to_owned())
            .collect()
    };
    assert_eq!(names(&anonymous, "project", "name"), ["shared"]);
    assert_eq!(
        names(&anonymous, "repository", "repository_name"),
        ["shared/app"]
    );
    let shared = &anonymous["repository"][0];
    assert_eq!(
        (
            shared["artifact_count"].as_u64(),
            shared["pull_count"].as_u64(),
            shared["project_public"].as_bool()
        ),
        (Some(1), Some(0), Some(true))
    );
    let root = as_user(&app, "root")
        .get("/api/v2.0/search?q=s")
        .send()
        .await
        .json();
    assert_eq!(names(&root, "project", "name"), ["secret", "shared"]);
}

/// The management matrix: each endpoint × caller → status, from one table.
#[tokio::test]
async fn management_authorization_matrix() {
    let app = app().await;
    let id = create_project(&app, "root", "team", false).await;
    create_project(&app, "other", "elsewhere", false).await;
    let ids = app.identity();
    for (user, role) in [
        ("dev", Role::Developer),
        ("guest", Role::Guest),
        ("maint", Role::Maintainer),
        ("padmin", Role::ProjectAdmin),
    ] {
        ids.set_member("team", user, role).await.expect("member");
    }
    let dev_id = ids.user("dev").await.expect("dev").id;
    let callers = ["-", "guest", "dev", "maint", "padmin", "other", "root"];
    // Robots: one of each level to read and change, and one of each per caller to delete.
    let root = as_user(&app, "root");
    let project_robot = |name: &str| {
        json!({"name": name, "level": "project", "duration": -1, "permissions": [
            {"kind": "project", "namespace": "team", "access": [
                {"resource": "repository", "action": "pull"}]}]})
    };
    let system_robot = |name: &str| {
        json!({"name": name, "level": "system", "duration": -1, "permissions": [
            {"kind": "project", "namespace": "*", "access": [
                {"resource": "repository", "action": "pull"}]}]})
    };
    let create_robot = async |body: Value| -> i64 {
        let created = send_json(&root, "POST", "/api/v2.0/robots", body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        created.json()["id"].as_i64().expect("robot id")
    };
    let pr = create_robot(project_robot("matrix")).await;
    let sr = create_robot(system_robot("matrix")).await;
    let label = |caller: &str| if caller == "-" { "anonymous" } else { caller }.to_owned();
    let mut victims = std::collections::HashMap::new();
    for caller in callers {
        let who = label(caller);
        let project = create_robot(project_robot(&format!("del-{who}"))).await;
        let system = create_robot(system_robot(&format!("del-{who}"))).await;
        victims.insert(who, (project, system));
    }
    let robot_put = |name: &str, level: &str, namespace: &str| {
        json!({"name": name, "level": level, "description": "changed", "disable": false,
            "duration": -1, "permissions": [{"kind": "project", "namespace": namespace,
            "access": [{"resource": "repository", "action": "pull"}]}]})
    };
    // (method, path, body, expected per caller in the order above)
    let p = format!("/api/v2.0/projects/{id}");
    let rows: Vec<(&str, String, Option<Value>, [u16; 7])> = vec![
        ("GET", "/api/v2.0/ping".into(), None, [200; 7]),
        ("GET", "/api/v2.0/projects".into(), None, [200; 7]),
        ("GET", p.clone(), None, [401, 200, 200, 200, 200, 403, 200]),
        (
            "GET",
            format!("{p}/summary"),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
        (
            "GET",
            format!("{p}/members"),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
        (
            "GET",
            format!("{p}/members/{dev_id}"),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
        (
            "PUT",
            format!("{p}/members/{dev_id}"),
            Some(json!({"role_id": 2})),
            [401, 403, 403, 403, 200, 403, 200],
        ),
        (
            "PUT",
            p.clone(),
            Some(json!({"metadata": {"public": "false"}})),
            [401, 403, 403, 403, 200, 403, 200],
        ),
        (
            "GET",
            format!("{p}/_deletable"),
            None,
            [401, 403, 403, 403, 200, 403, 200],
        ),
        (
            "GET",
            "/api/v2.0/users".into(),
            None,
            [401, 403, 403, 403, 403, 403, 200],
        ),
        (
            "GET",
            "/api/v2.0/quotas".into(),
            None,
            [401, 403, 403, 403, 403, 403, 200],
        ),
        (
            "GET",
            format!("/api/v2.0/quotas/{id}"),
            None,
            [401, 403, 403, 403, 403, 403, 200],
        ),
        (
            "PUT",
            format!("/api/v2.0/quotas/{id}"),
            Some(json!({"hard": {"storage": -1}})),
            [401, 403, 403, 403, 403, 403, 200],
        ),
        (
            "GET",
            format!("/api/v2.0/users/{dev_id}"),
            None,
            [401, 403, 200, 403, 403, 403, 200],
        ),
        (
            "GET",
            "/api/v2.0/users/current".into(),
            None,
            [401, 200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/v2.0/users/search?username=d".into(),
            None,
            [401, 200, 200, 200, 200, 200, 200],
        ),
        (
            "HEAD",
            "/api/v2.0/projects?project_name=team".into(),
            None,
            [401, 200, 200, 200, 200, 200, 200],
        ),
        // Robots. In a path or body, CALLER becomes the caller's name, and VICTIM and
        // SYSVICTIM the ids of a project and a system robot made for that caller alone.
        (
            "GET",
            "/api/v2.0/robots".into(),
            None,
            [401, 403, 403, 403, 403, 403, 200],
        ),
        (
            "GET",
            "/api/v2.0/robots?q=Level%3Dsystem".into(),
            None,
            [401, 403, 403, 403, 403, 403, 200],
        ),
        (
            "GET",
            format!("/api/v2.0/robots?q=Level%3Dproject%2CProjectID%3D{id}"),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
        (
            "POST",
            "/api/v2.0/robots".into(),
            Some(project_robot("new-CALLER")),
            [401, 403, 403, 403, 201, 403, 201],
        ),
        (
            "POST",
            "/api/v2.0/robots".into(),
            Some(system_robot("new-CALLER")),
            [401, 403, 403, 403, 403, 403, 201],
        ),
        (
            "GET",
            format!("/api/v2.0/robots/{pr}"),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
        (
            "GET",
            format!("/api/v2.0/robots/{sr}"),
            None,
            [401, 403, 403, 403, 403, 403, 200],
        ),
        (
            "PUT",
            format!("/api/v2.0/robots/{pr}"),
            Some(robot_put("robot$team+matrix", "project", "team")),
            [401, 403, 403, 403, 200, 403, 200],
        ),
        (
            "PUT",
            format!("/api/v2.0/robots/{sr}"),
            Some(robot_put("robot$matrix", "system", "*")),
            [401, 403, 403, 403, 403, 403, 200],
        ),
        (
            "PATCH",
            format!("/api/v2.0/robots/{pr}"),
            Some(json!({})),
            [401, 403, 403, 403, 200, 403, 200],
        ),
        (
            "PATCH",
            format!("/api/v2.0/robots/{sr}"),
            Some(json!({"secret": ""})),
            [401, 403, 403, 403, 403, 403, 200],
        ),
        (
            "DELETE",
            "/api/v2.0/robots/VICTIM".into(),
            None,
            [401, 403, 403, 403, 200, 403, 200],
        ),
        (
            "DELETE",
            "/api/v2.0/robots/SYSVICTIM".into(),
            None,
            [401, 403, 403, 403, 403, 403, 200],
        ),
        (
            "GET",
            "/api/v2.0/robots/999999".into(),
            None,
            [401, 403, 403, 403, 403, 403, 404],
        ),
        // Everyone signed in lists the audit log (filtered to what they may read).
        (
            "GET",
            "/api/v2.0/audit-logs".into(),
            None,
            [401, 200, 200, 200, 200, 200, 200],
        ),
        // A project's log: log:list, which every member role has (Harbor).
        (
            "GET",
            "/api/v2.0/projects/team/logs".into(),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
    ];
    let mut mismatches = Vec::new();
    for (method, path, body, want) in rows {
        for (caller, want) in callers.iter().zip(want) {
            let handle = if *caller == "-" {
                app.clone()
            } else {
                as_user(&app, caller)
            };
            let who = label(caller);
            let (victim, system_victim) = victims[&who];
            let expand = |text: &str| {
                text.replace("SYSVICTIM", &system_victim.to_string())
                    .replace("VICTIM", &victim.to_string())
                    .replace("CALLER", &who)
            };
            let path = expand(&path);
            let request = handle.request(method.parse().expect("method"), path.clone());
            let request = match &body {
                Some(b) => request
                    .header("content-type", "application/json")
                    .body(expand(&b.to_string())),
                None => request,
            };
            let got = request.send().await.status.as_u16();
            if got != want {
                mismatches.push(format!(
                    "{method} {path} as {caller}: got {got}, want {want}"
                ));
            }
        }
    }
    // A non-member cannot tell a missing project from a private one; an administrator can.
    let missing = as_user(&app, "other")
        .get("/api/v2.0/projects/nosuch")
        .send()
        .await;
    assert_harbor_error(&missing, 403, "FORBIDDEN");
    let missing = as_user(&app, "root")
        .get("/api/v2.0/projects/nosuch")
        .send()
        .await;
    assert_harbor_error(&missing, 404, "NOT_FOUND");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The OpenAPI document is a snapshot: any change to the API shows as a diff of
/// `tests/snapshots/openapi.json`. Regenerate with `UPDATE_SNAPSHOTS=1`.
#[tokio::test]
async fn the_openapi_document_matches_its_snapshot() {
    let app = app().await;
    let response = app.get("/api/v2.0/openapi.json").send().await;
    assert_eq!(response.status, StatusCode::OK);
    let document = response.json();
    assert_eq!(document["openapi"], "3.0.3");
    let rendered = serde_json::to_string_pretty(&document).expect("json") + "\n";
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &rendered).expect("write snapshot");
    }
    let snapshot = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        snapshot == rendered,
        "the API changed: review and run with UPDATE_SNAPSHOTS=1 to accept ({})",
        path.display()
    );
}

/// The repository, artifact and tag endpoints × the same callers → status (the rest of
/// the API is in `management_authorization_matrix`).
#[tokio::test]
async fn repository_authorization_matrix() {
    let app = app().await;
    create_project(&app, "root", "team", false).await;
    create_project(&app, "other", "elsewhere", false).await;
    let ids = app.identity();
    for (user, role) in [
        ("dev", Role::Developer),
        ("guest", Role::Guest),
        ("maint", Role::Maintainer),
        ("padmin", Role::ProjectAdmin),
    ] {
        ids.set_member("team", user, role).await.expect("member");
    }
    let callers = ["-", "guest", "dev", "maint", "padmin", "other", "root"];
    // What each caller may delete or create without taking it from the next one: rows
    // say `{caller}` where a name differs per caller.
    let slug = |caller: &str| if caller == "-" { "anon" } else { caller }.to_owned();
    let root = as_user(&app, "root");
    let (_, v1) = root.push_image("team/app", "v1", "v1").await;
    for caller in callers {
        let slug = slug(caller);
        root.push_image(&format!("team/del-{slug}"), "v1", &slug)
            .await;
        root.push_image("team/app", &format!("d-{slug}"), &format!("d-{slug}"))
            .await;
        root.push_manifest(
            "team/app",
            &format!("t-{slug}"),
            crate::common::OCI_MANIFEST,
            v1.clone(),
        )
        .await;
    }
    let r = "/api/v2.0/projects/team/repositories";
    // (method, path, body, expected per caller in the order above)
    let rows: Vec<(&str, String, Option<Value>, [u16; 7])> = vec![
        // Repositories, artifacts and tags: Harbor's policies (rbac_role.go).
        ("GET", "/api/v2.0/repositories".into(), None, [200; 7]),
        ("GET", r.into(), None, [401, 200, 200, 200, 200, 403, 200]),
        (
            "GET",
            format!("{r}/app"),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
        (
            "PUT",
            format!("{r}/app"),
            Some(json!({"description": "by {caller}"})),
            [401, 403, 200, 200, 200, 403, 200],
        ),
        (
            "DELETE",
            format!("{r}/del-{{caller}}"),
            None,
            [401, 403, 403, 200, 200, 403, 200],
        ),
        (
            "GET",
            format!("{r}/app/artifacts"),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
        (
            "GET",
            format!("{r}/app/artifacts/v1"),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
        (
            "DELETE",
            format!("{r}/app/artifacts/d-{{caller}}"),
            None,
            [401, 403, 403, 200, 200, 403, 200],
        ),
        (
            "GET",
            format!("{r}/app/artifacts/v1/accessories"),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
        // A copy within the project: pull and push in it (developers and up).
        (
            "POST",
            format!("{r}/copy-{{caller}}/artifacts?from=team/app:v1"),
            None,
            [401, 403, 201, 201, 201, 403, 201],
        ),
        (
            "GET",
            format!("{r}/app/artifacts/v1/tags"),
            None,
            [401, 200, 200, 200, 200, 403, 200],
        ),
        (
            "POST",
            format!("{r}/app/artifacts/v1/tags"),
            Some(json!({"name": "n-{caller}"})),
            [401, 403, 201, 201, 201, 403, 201],
        ),
        (
            "DELETE",
            format!("{r}/app/artifacts/v1/tags/t-{{caller}}"),
            None,
            [401, 403, 403, 200, 200, 403, 200],
        ),
    ];
    let mut mismatches = Vec::new();
    for (method, path, body, want) in rows {
        for (caller, want) in callers.iter().zip(want) {
            let handle = if *caller == "-" {
                app.clone()
            } else {
                as_user(&app, caller)
            };
            let path = path.replace("{caller}", &slug(caller));
            let request = handle.request(method.parse().expect("method"), path.clone());
            let request = match &body {
                Some(b) => request
                    .header("content-type", "application/json")
                    .body(b.to_string().replace("{caller}", &slug(caller))),
                None => request,
            };
            let got = request.send().await.status.as_u16();
            if got != want {
                mismatches.push(format!(
                    "{method} {path} as {caller}: got {got}, want {want}"
                ));
            }
        }
    }
    // A non-member cannot tell a missing project from a private one; an administrator can.
    let missing = as_user(&app, "other")
        .get("/api/v2.0/projects/nosuch")
        .send()
        .await;
    assert_harbor_error(&missing, 403, "FORBIDDEN");
    let missing = as_user(&app, "root")
        .get("/api/v2.0/projects/nosuch")
        .send()
        .await;
    assert_harbor_error(&missing, 404, "NOT_FOUND");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Wave 2's endpoints (GC, quotas, immutability rules, retention, upstream registries): a
/// malformed body, an unknown id or a bad page answers a 4xx with Harbor's error body, never
/// a 500 (the test app fails the test on any 5xx).
#[tokio::test]
async fn wave_two_endpoints_answer_bad_input_with_a_4xx() {
    let app = app().await;
    let root = as_user(&app, "root");
    create_project(&app, "root", "team", false).await;
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "PUT",
            "/api/v2.0/system/gc/schedule",
            json!({"schedule": 7}),
        ),
        (
            "POST",
            "/api/v2.0/system/gc/schedule",
            json!({"schedule": {"type": "Sometimes"}}),
        ),
        ("GET", "/api/v2.0/system/gc/99999", Value::Null),
        ("GET", "/api/v2.0/system/gc/abc/log", Value::Null),
        ("GET", "/api/v2.0/system/gc?page_size=101", Value::Null),
        (
            "PUT",
            "/api/v2.0/quotas/99999",
            json!({"hard": {"storage": 10}}),
        ),
        (
            "PUT",
            "/api/v2.0/quotas/abc",
            json!({"hard": {"storage": 10}}),
        ),
        ("GET", "/api/v2.0/quotas?page=0", Value::Null),
        (
            "POST",
            "/api/v2.0/projects/team/immutabletagrules",
            json!({"tag_selectors": "v*"}),
        ),
        (
            "PUT",
            "/api/v2.0/projects/team/immutabletagrules/99999",
            json!({"disabled": true}),
        ),
        (
            "DELETE",
            "/api/v2.0/projects/team/immutabletagrules/abc",
            Value::Null,
        ),
        ("POST", "/api/v2.0/retentions", json!({"rules": "none"})),
        ("GET", "/api/v2.0/retentions/99999", Value::Null),
        (
            "POST",
            "/api/v2.0/retentions/99999/executions",
            json!({"dry_run": true}),
        ),
        (
            "POST",
            "/api/v2.0/registries",
            json!({"name": "up", "url": "not a url"}),
        ),
        ("POST", "/api/v2.0/registries", json!({"name": 3})),
        ("GET", "/api/v2.0/registries/99999", Value::Null),
        ("DELETE", "/api/v2.0/registries/abc", Value::Null),
        ("POST", "/api/v2.0/registries/ping", json!({"id": 99999})),
        ("POST", "/api/v2.0/replication/policies", json!({"name": 3})),
        ("GET", "/api/v2.0/replication/executions/abc", Value::Null),
        ("PUT", "/api/v2.0/replication/executions/99999", Value::Null),
        (
            "GET",
            "/api/v2.0/replication/executions?policy_id=x",
            Value::Null,
        ),
    ];
    for (method, path, body) in cases {
        let response = send_json(&root, method, path, body).await;
        let status = response.status.as_u16();
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&response.body)
        );
        assert!(
            response.json()["errors"][0]["code"].is_string(),
            "{method} {path}: Harbor's error body, got {}",
            String::from_utf8_lossy(&response.body)
        );
    }
}

/// `/api/v2.0` meeting the database locked past a statement's wait: Harbor's error body with
/// 503 and `Retry-After`, nothing created, and the same request succeeds afterwards.
#[tokio::test]
async fn a_write_kept_waiting_on_a_database_lock_gets_503_and_its_retry_succeeds() {
    let app = with_users(
        TestApp::builder()
            .token_mode()
            .busy_timeout(std::time::Duration::from_millis(200))
            .build()
            .await,
    )
    .await;
    let mut other = app.hold_metadata_write_lock().await;
    let root = as_user(&app, "root");
    let body = serde_json::to_vec(&json!({"project_name": "locked"})).expect("json");
    let refused = root
        .post("/api/v2.0/projects")
        .header("content-type", "application/json")
        .body(body.clone())
        .server_error_expected()
        .send()
        .await;
    assert_harbor_error(&refused, 503, "SERVICE_UNAVAILABLE");
    assert_eq!(refused.header("retry-after"), "1");

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("lets go");
    let missing = root.get("/api/v2.0/projects/locked").send().await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    create_project(&app, "root", "locked", false).await;
}
