//! Harbor's `/api/v2.0/robots`: robots created through the API log in to `/v2/` as before;
//! Robot JSON, listing by level, paging, updates, secrets and bad input. Who may call each
//! endpoint is in `mgmt.rs`'s authorization matrix.

use axum::http::StatusCode;
use berth_core::Role;
use serde_json::{Value, json};

use crate::common::{TestApp, TestResponse};
use crate::mgmt::{app, as_user, assert_harbor_error, create_project, send_json};

const DAY: i64 = 86_400;

/// A project-level robot's RobotCreate on `team` with these repository actions.
fn project_robot(name: &str, actions: &[&str], duration: i64) -> Value {
    let access: Vec<Value> = actions
        .iter()
        .map(|a| json!({"resource": "repository", "action": a}))
        .collect();
    json!({
        "name": name,
        "description": "made by a test",
        "level": "project",
        "duration": duration,
        "permissions": [{"kind": "project", "namespace": "team", "access": access}],
    })
}

/// `team` (private), with `padmin` its project admin.
async fn team() -> (TestApp, i64) {
    let app = app().await;
    let id = create_project(&app, "root", "team", false).await;
    app.identity()
        .set_member("team", "padmin", Role::ProjectAdmin)
        .await
        .expect("member");
    (app, id)
}

async fn create(app: &TestApp, user: &str, body: Value) -> TestResponse {
    send_json(&as_user(app, user), "POST", "/api/v2.0/robots", body).await
}

/// Whether `name`:`secret` may start an upload in `team/app` (a push's first write).
async fn may_push(app: &TestApp, name: &str, secret: &str) -> StatusCode {
    app.with_basic(name, secret)
        .post("/v2/team/app/blobs/uploads/")
        .send()
        .await
        .status
}

#[tokio::test]
async fn a_robot_made_through_the_api_pushes_until_disabled_and_a_refreshed_secret_replaces_the_old()
 {
    let (app, _) = team().await;
    let padmin = as_user(&app, "padmin");
    let created = create(&app, "padmin", project_robot("ci", &["pull", "push"], -1)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let body = created.json();
    let (id, name, secret) = (
        body["id"].as_i64().expect("id"),
        body["name"].as_str().expect("name").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    );
    assert_eq!(created.location(), format!("/api/v2.0/robots/{id}"));
    assert_eq!(name, "robot$team+ci");
    assert_eq!(body["expires_at"], -1);
    assert!(body["creation_time"].is_string(), "{body}");

    // Pushes with its secret, as docker login would.
    app.with_basic(&name, &secret)
        .push_image("team/app", "v1", "robot")
        .await;

    // Disabled: refused; enabled again: back.
    let path = format!("/api/v2.0/robots/{id}");
    let mut robot = padmin.get(&path).send().await.json();
    robot["disable"] = json!(true);
    let disabled = send_json(&padmin, "PUT", &path, robot.clone()).await;
    assert_eq!(disabled.status, StatusCode::OK, "{:?}", disabled.body);
    assert_eq!(
        may_push(&app, &name, &secret).await,
        StatusCode::UNAUTHORIZED
    );
    robot["disable"] = json!(false);
    send_json(&padmin, "PUT", &path, robot).await;
    assert_eq!(may_push(&app, &name, &secret).await, StatusCode::ACCEPTED);

    // A generated secret is answered once and replaces the old one.
    let refreshed = send_json(&padmin, "PATCH", &path, json!({})).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let new_secret = refreshed.json()["secret"]
        .as_str()
        .expect("generated secret")
        .to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(
        may_push(&app, &name, &secret).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        may_push(&app, &name, &new_secret).await,
        StatusCode::ACCEPTED
    );

    // A given secret is checked against the password policy and not echoed.
    let weak = send_json(&padmin, "PATCH", &path, json!({"secret": "weak"})).await;
    assert_harbor_error(&weak, 400, "BAD_REQUEST");
    let given = send_json(&padmin, "PATCH", &path, json!({"secret": "Chosen-Secret9"})).await;
    assert_eq!((given.status, given.json()), (StatusCode::OK, json!({})));
    assert_eq!(
        may_push(&app, &name, "Chosen-Secret9").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        may_push(&app, &name, &new_secret).await,
        StatusCode::UNAUTHORIZED
    );

    // Deleted: gone, and its secret with it.
    assert_eq!(padmin.delete(&path).send().await.status, StatusCode::OK);
    assert_harbor_error(
        &as_user(&app, "root").get(&path).send().await,
        404,
        "NOT_FOUND",
    );
    assert_eq!(
        may_push(&app, &name, "Chosen-Secret9").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_robot_is_described_as_harbors_robot_model_without_its_secret() {
    let (app, _) = team().await;
    let created = create(&app, "padmin", project_robot("ci", &["pull"], 0)).await;
    let id = created.json()["id"].as_i64().expect("id");
    let robot = as_user(&app, "padmin")
        .get(format!("/api/v2.0/robots/{id}"))
        .send()
        .await
        .json();
    let mut keys: Vec<&str> = robot
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "creation_time",
            "description",
            "disable",
            "duration",
            "editable",
            "expires_at",
            "id",
            "level",
            "name",
            "permissions",
            "update_time"
        ],
        "no secret: {robot}"
    );
    assert_eq!(
        (
            robot["name"].as_str(),
            robot["level"].as_str(),
            robot["editable"].as_bool(),
            robot["disable"].as_bool(),
            robot["description"].as_str(),
        ),
        (
            Some("robot$team+ci"),
            Some("project"),
            Some(true),
            Some(false),
            Some("made by a test")
        )
    );
    // Duration 0 is the default, 30 days.
    assert_eq!(robot["duration"], 30);
    let created_json = created.json();
    let expires_at = created_json["expires_at"].as_i64().expect("expiry");
    assert_eq!(robot["expires_at"].as_i64(), Some(expires_at));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!((expires_at - (now + 30 * DAY)).abs() < 60, "{expires_at}");
    assert_eq!(
        robot["permissions"],
        json!([{"kind": "project", "namespace": "team", "access": [
            {"resource": "repository", "action": "pull"}]}])
    );
    assert!(
        robot["creation_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "RFC 3339: {robot}"
    );
}

#[tokio::test]
async fn robots_are_listed_by_level_filtered_sorted_and_paged() {
    let (app, id) = team().await;
    for name in ["a", "b", "c"] {
        let made = create(&app, "padmin", project_robot(name, &["pull"], -1)).await;
        assert_eq!(made.status, StatusCode::CREATED);
    }
    let made = create(
        &app,
        "root",
        json!({"name": "sync", "level": "system", "permissions": [
            {"kind": "project", "namespace": "*", "access": [{"resource": "repository", "action": "pull"}]}]}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED);
    let root = as_user(&app, "root");
    let names = |r: &TestResponse| -> Vec<String> {
        r.json()
            .as_array()
            .expect("list")
            .iter()
            .map(|x| x["name"].as_str().expect("name").to_owned())
            .collect()
    };

    // No Level: the system robots.
    let system = root.get("/api/v2.0/robots").send().await;
    assert_eq!(
        (system.header("x-total-count"), names(&system)),
        ("1", vec!["robot$sync".to_owned()])
    );
    let q = format!("q=Level%3Dproject%2CProjectID%3D{id}");
    let first = as_user(&app, "padmin")
        .get(format!("/api/v2.0/robots?{q}&page_size=2&sort=-name"))
        .send()
        .await;
    assert_eq!(first.header("x-total-count"), "3");
    assert_eq!(names(&first), ["robot$team+c", "robot$team+b"]);
    assert_eq!(
        first.header("link"),
        format!(
            "</api/v2.0/robots?page=2&page_size=2&q=Level%3Dproject%2CProjectID%3D{id}&sort=-name>; rel=\"next\""
        )
    );
    let filtered = root
        .get(format!(
            "/api/v2.0/robots?q=Level%3Dproject%2CProjectID%3D{id}%2Cname%3D~b"
        ))
        .send()
        .await;
    assert_eq!(names(&filtered), ["robot$team+b"]);
    let exact = root
        .get(format!(
            "/api/v2.0/robots?q=Level%3Dproject%2CProjectID%3D{id}%2Cname%3Drobot%24team%2Bc"
        ))
        .send()
        .await;
    assert_eq!(names(&exact), ["robot$team+c"]);
    // An administrator is told a project does not exist; others cannot tell.
    assert_harbor_error(
        &root
            .get("/api/v2.0/robots?q=Level%3Dproject%2CProjectID%3D99999")
            .send()
            .await,
        404,
        "NOT_FOUND",
    );
    assert_harbor_error(
        &as_user(&app, "padmin")
            .get("/api/v2.0/robots?q=Level%3Dproject%2CProjectID%3D99999")
            .send()
            .await,
        403,
        "FORBIDDEN",
    );
}

#[tokio::test]
async fn put_replaces_description_disable_duration_and_permissions_but_not_name_or_level() {
    let (app, _) = team().await;
    let padmin = as_user(&app, "padmin");
    let created = create(&app, "padmin", project_robot("ci", &["pull"], -1)).await;
    let id = created.json()["id"].as_i64().expect("id");
    let path = format!("/api/v2.0/robots/{id}");
    let before = padmin.get(&path).send().await.json();
    let mut robot = before.clone();
    robot["description"] = json!("new words");
    robot["duration"] = json!(7);
    robot["permissions"][0]["access"] = json!([
        {"resource": "repository", "action": "pull"},
        {"resource": "repository", "action": "push", "effect": "allow"},
    ]);
    let updated = send_json(&padmin, "PUT", &path, robot).await;
    assert_eq!(updated.status, StatusCode::OK, "{:?}", updated.body);
    let after = padmin.get(&path).send().await.json();
    assert_eq!(after["description"], "new words");
    assert_eq!(after["duration"], 7);
    // Counted from creation, as Harbor does.
    let created_at = app
        .identity()
        .robot_by_id(id)
        .await
        .expect("robot")
        .created_at;
    assert_eq!(after["expires_at"].as_i64(), Some(created_at + 7 * DAY));
    assert_eq!(
        after["permissions"][0]["access"][1],
        json!({"resource": "repository", "action": "push", "effect": "allow"})
    );
    // The same duration keeps the expiry; -1 never expires.
    let mut same = after.clone();
    same["description"] = json!("again");
    send_json(&padmin, "PUT", &path, same).await;
    assert_eq!(
        padmin.get(&path).send().await.json()["expires_at"],
        after["expires_at"]
    );
    let mut never = after.clone();
    never["duration"] = json!(-1);
    send_json(&padmin, "PUT", &path, never).await;
    assert_eq!(padmin.get(&path).send().await.json()["expires_at"], -1);

    let current = padmin.get(&path).send().await.json();
    let changed = |field: &str, value: Value| {
        let mut body = current.clone();
        body[field] = value;
        body
    };
    for body in [
        changed("name", json!("robot$team+renamed")),
        changed("name", json!("ci")),
        changed("level", json!("system")),
        changed("duration", json!(-2)),
        changed(
            "permissions",
            json!([{"kind": "project", "namespace": "elsewhere", "access": [
                {"resource": "repository", "action": "pull"}]}]),
        ),
        changed("permissions", json!([])),
        changed("surprise", json!(1)),
        changed("disable", json!("yes")),
    ] {
        let refused = send_json(&padmin, "PUT", &path, body.clone()).await;
        assert_harbor_error(&refused, 400, "BAD_REQUEST");
    }
    // Nothing changed by the refused requests.
    assert_eq!(padmin.get(&path).send().await.json(), current);
}

#[tokio::test]
async fn system_robots_may_hold_system_permissions_that_grant_nothing_yet() {
    let (app, _) = team().await;
    let made = create(
        &app,
        "root",
        json!({"name": "admin-ish", "level": "system", "duration": -1, "permissions": [
            {"kind": "system", "namespace": "/", "access": [{"resource": "project", "action": "create"}]},
            {"kind": "project", "namespace": "team", "access": [{"resource": "repository", "action": "pull"}]}]}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let body = made.json();
    let (name, secret) = (
        body["name"].as_str().expect("name").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    );
    assert_eq!(name, "robot$admin-ish");
    let robot = as_user(&app, "root")
        .get(format!("/api/v2.0/robots/{}", body["id"]))
        .send()
        .await
        .json();
    assert_eq!(robot["level"], "system");
    assert_eq!(robot["permissions"][0]["kind"], "system");
    // Pulls in team as granted; the system entry does not let it create projects.
    assert_eq!(
        app.with_basic(&name, &secret)
            .get("/v2/team/app/tags/list")
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND,
        "allowed to look: the repository does not exist yet"
    );
    let project = send_json(
        &app.with_basic(&name, &secret),
        "POST",
        "/api/v2.0/projects",
        json!({"project_name": "robotmade"}),
    )
    .await;
    assert_harbor_error(&project, 403, "FORBIDDEN");
}

#[tokio::test]
async fn bad_robots_get_harbors_4xx_never_a_500() {
    let (app, _) = team().await;
    let access = json!([{"resource": "repository", "action": "pull"}]);
    let on_team = json!([{"kind": "project", "namespace": "team", "access": access}]);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "upper-case name",
            json!({"name": "CI", "level": "project", "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "a + in the name",
            json!({"name": "a+b", "level": "project", "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "a doubled separator",
            json!({"name": "a..b", "level": "project", "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "no name",
            json!({"level": "project", "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "an unknown level",
            json!({"name": "ci", "level": "global", "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "no level",
            json!({"name": "ci", "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "two permissions on a project robot",
            json!({"name": "ci", "level": "project", "permissions": [on_team[0], on_team[0]]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "a project robot with a system permission",
            json!({"name": "ci", "level": "project", "permissions": [
                {"kind": "system", "namespace": "team", "access": access}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "a project robot on a missing project",
            json!({"name": "ci", "level": "project", "permissions": [
                {"kind": "project", "namespace": "nosuch", "access": access}]}),
            404,
            "NOT_FOUND",
        ),
        (
            "a project robot on every project",
            json!({"name": "ci", "level": "project", "permissions": [
                {"kind": "project", "namespace": "*", "access": access}]}),
            404,
            "NOT_FOUND",
        ),
        (
            "a system robot on a missing project",
            json!({"name": "ci", "level": "system", "permissions": [
                {"kind": "project", "namespace": "nosuch", "access": access}]}),
            404,
            "NOT_FOUND",
        ),
        (
            "a system permission off /",
            json!({"name": "ci", "level": "system", "permissions": [
                {"kind": "system", "namespace": "team", "access": access}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "an unknown kind",
            json!({"name": "ci", "level": "system", "permissions": [
                {"kind": "repository", "namespace": "team", "access": access}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "no permissions",
            json!({"name": "ci", "level": "system", "permissions": []}),
            400,
            "BAD_REQUEST",
        ),
        (
            "a permission without access",
            json!({"name": "ci", "level": "system", "permissions": [
                {"kind": "project", "namespace": "*", "access": []}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "an unknown effect",
            json!({"name": "ci", "level": "system", "permissions": [
                {"kind": "project", "namespace": "*", "access": [
                    {"resource": "repository", "action": "pull", "effect": "maybe"}]}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "an unknown access field",
            json!({"name": "ci", "level": "system", "permissions": [
                {"kind": "project", "namespace": "*", "access": [
                    {"resource": "repository", "action": "pull", "scope": "x"}]}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "duration -2",
            json!({"name": "ci", "level": "project", "duration": -2, "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "duration 2^31",
            json!({"name": "ci", "level": "project", "duration": 2_147_483_648_i64, "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "duration as a string",
            json!({"name": "ci", "level": "project", "duration": "30", "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "disable as a string",
            json!({"name": "ci", "level": "project", "disable": "no", "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "a weak secret",
            json!({"name": "ci", "level": "project", "secret": "password", "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
        (
            "an unknown field",
            json!({"name": "ci", "level": "project", "token": "x", "permissions": on_team}),
            400,
            "BAD_REQUEST",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, body, status, code) in cases {
        let response = create(&app, "root", body).await;
        let got = (
            response.status.as_u16(),
            response
                .json()
                .pointer("/errors/0/code")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        if got != (status, Some(code.to_owned())) {
            wrong.push(format!("{what}: got {got:?}, want {status} {code}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The same name twice is a conflict; the same short name at the other level is not.
    let ok = project_robot("dup", &["pull"], -1);
    assert_eq!(
        create(&app, "root", ok.clone()).await.status,
        StatusCode::CREATED
    );
    assert_harbor_error(&create(&app, "root", ok).await, 409, "CONFLICT");
    let system_dup = create(
        &app,
        "root",
        json!({"name": "dup", "level": "system", "permissions": [
            {"kind": "project", "namespace": "*", "access": access}]}),
    )
    .await;
    assert_eq!(system_dup.status, StatusCode::CREATED);

    let root = as_user(&app, "root");
    for (method, path, status, code) in [
        (
            "GET",
            "/api/v2.0/robots?q=Level%3Dglobal",
            400,
            "BAD_REQUEST",
        ),
        (
            "GET",
            "/api/v2.0/robots?q=Level%3Dproject",
            400,
            "BAD_REQUEST",
        ),
        (
            "GET",
            "/api/v2.0/robots?q=Level%3Dproject%2CProjectID%3Dteam",
            400,
            "BAD_REQUEST",
        ),
        (
            "GET",
            "/api/v2.0/robots?page_size=101",
            422,
            "UNPROCESSABLE_ENTITY",
        ),
        ("GET", "/api/v2.0/robots/abc", 400, "BAD_REQUEST"),
        ("GET", "/api/v2.0/robots/-1", 400, "BAD_REQUEST"),
        ("GET", "/api/v2.0/robots/424242", 404, "NOT_FOUND"),
        ("DELETE", "/api/v2.0/robots/424242", 404, "NOT_FOUND"),
        ("POST", "/api/v2.0/robots/1", 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/api/v2.0/robots", 400, "BAD_REQUEST"),
    ] {
        let response = root
            .request(method.parse().expect("method"), path)
            .send()
            .await;
        assert_harbor_error(&response, status, code);
    }
    let broken = root
        .post("/api/v2.0/robots")
        .header("content-type", "application/json")
        .body(b"{not json".to_vec())
        .send()
        .await;
    assert_harbor_error(&broken, 400, "BAD_REQUEST");
    let id = root
        .get("/api/v2.0/robots?q=Level%3Dsystem")
        .send()
        .await
        .json()[0]["id"]
        .as_i64()
        .expect("a system robot");
    let path = format!("/api/v2.0/robots/{id}");
    for body in [json!({"secret": 42}), json!({"secret": "x", "extra": true})] {
        assert_harbor_error(
            &send_json(&root, "PATCH", &path, body).await,
            400,
            "BAD_REQUEST",
        );
    }
    let empty = root.patch(&path).send().await;
    assert_harbor_error(&empty, 400, "BAD_REQUEST");
}

#[tokio::test]
async fn a_robot_holding_robot_permissions_manages_robots_as_far_as_they_go() {
    let (app, id) = team().await;
    let made = create(
        &app,
        "padmin",
        json!({"name": "lister", "level": "project", "permissions": [
            {"kind": "project", "namespace": "team", "access": [
                {"resource": "robot", "action": "list"},
                {"resource": "robot", "action": "read"}]}]}),
    )
    .await;
    let body = made.json();
    let lister = app.with_basic(
        body["name"].as_str().expect("name"),
        body["secret"].as_str().expect("secret"),
    );
    let listed = lister
        .get(format!(
            "/api/v2.0/robots?q=Level%3Dproject%2CProjectID%3D{id}"
        ))
        .send()
        .await;
    assert_eq!(listed.header("x-total-count"), "1");
    assert_eq!(
        lister
            .get(format!("/api/v2.0/robots/{}", body["id"]))
            .send()
            .await
            .status,
        StatusCode::OK
    );
    let refused = send_json(
        &lister,
        "POST",
        "/api/v2.0/robots",
        project_robot("more", &["push"], -1),
    )
    .await;
    assert_harbor_error(&refused, 403, "FORBIDDEN");
    assert_harbor_error(
        &lister.get("/api/v2.0/robots").send().await,
        403,
        "FORBIDDEN",
    );
}

#[tokio::test]
async fn a_robot_creating_robots_grants_no_more_than_it_holds() {
    let (app, _) = team().await;
    let made = create(
        &app,
        "padmin",
        json!({"name": "maker", "level": "project", "duration": -1, "permissions": [
            {"kind": "project", "namespace": "team", "access": [
                {"resource": "robot", "action": "create"},
                {"resource": "repository", "action": "pull"}]}]}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let body = made.json();
    let maker = app.with_basic(
        body["name"].as_str().expect("name"),
        body["secret"].as_str().expect("secret"),
    );
    // What it holds, it may pass on.
    let pull = send_json(
        &maker,
        "POST",
        "/api/v2.0/robots",
        project_robot("puller", &["pull"], -1),
    )
    .await;
    assert_eq!(pull.status, StatusCode::CREATED, "{:?}", pull.body);
    // Not push, which it lacks; nor robot creation is refused for lack of it alone.
    for actions in [&["push"][..], &["pull", "push"][..], &["delete"][..]] {
        let refused = send_json(
            &maker,
            "POST",
            "/api/v2.0/robots",
            project_robot("pusher", actions, -1),
        )
        .await;
        assert_harbor_error(&refused, 403, "FORBIDDEN");
        assert!(
            refused.json()["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("does not have")),
            "{:?}",
            refused.body
        );
    }
    // A user with the project's robot permission is bounded by the role, not by this rule.
    assert_eq!(
        create(&app, "padmin", project_robot("pusher", &["push"], -1))
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn robots_are_managed_in_token_mode_only() {
    let app = TestApp::new().await;
    let response = app.get("/api/v2.0/robots").send().await;
    assert_harbor_error(&response, 403, "FORBIDDEN");
}
