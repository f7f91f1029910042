//! Token mode's authorization matrix, generated from one table: every `/v2/` endpoint ×
//! every kind of caller → the status it gets, with Basic credentials and with bearer tokens
//! from `/service/token`; plus what each caller sees in `_catalog` and tag lists. No cell
//! may be a 500 (the harness fails any 5xx).

use axum::http::{Method, StatusCode};
use berth_auth::identity::{NewAccount, RobotSpec, project_permissions};
use berth_core::access::{RobotAccess, RobotName};
use berth_core::{RobotPermission, Role};
use serde_json::Value;

use crate::common::{OCI_MANIFEST, TestApp, sha256, with_digest};

const PASSWORD: &str = "Passw0rd-matrix";
const REPO: &str = "team/app";

/// The callers of the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    OtherProjectAdmin,
    ProjectRobot,
    SystemRobot,
    SystemAdmin,
}

use Caller::*;

const CALLERS: [Caller; 10] = [
    Anonymous,
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    OtherProjectAdmin,
    ProjectRobot,
    SystemRobot,
    SystemAdmin,
];

/// What an endpoint needs, and so which callers get through.
#[derive(Debug, Clone, Copy)]
enum Needs {
    /// `GET /v2/`: any authenticated caller.
    Login,
    /// `_catalog`: everyone who logged in (an anonymous token too), filtered.
    Nothing,
    Pull,
    Push,
    Delete,
    /// Push on team/app and pull on other/app.
    MountFromOther,
}

fn allowed(caller: Caller, needs: Needs) -> bool {
    let pull = !matches!(caller, Anonymous | OtherProjectAdmin);
    let push = matches!(
        caller,
        Developer | Maintainer | ProjectAdmin | ProjectRobot | SystemAdmin
    );
    let delete = matches!(caller, Maintainer | ProjectAdmin | SystemAdmin);
    match needs {
        Needs::Login => caller != Anonymous,
        Needs::Nothing => caller != Anonymous,
        Needs::Pull => pull,
        Needs::Push => push,
        Needs::Delete => delete,
        Needs::MountFromOther => caller == SystemAdmin,
    }
}

/// The status a caller gets: the endpoint's success status, 401 for anonymous, 403 for an
/// authenticated caller without the permission.
fn expected(caller: Caller, needs: Needs, success: u16) -> u16 {
    if allowed(caller, needs) {
        success
    } else if caller == Anonymous {
        401
    } else {
        403
    }
}

struct World {
    app: TestApp,
    robot_secrets: [(String, String); 2],
    manifest: Vec<u8>,
}

impl World {
    async fn new() -> World {
        let app = TestApp::builder().token_mode().build().await;
        let id = app.identity();
        let users = [
            ("lguest", false),
            ("guest", false),
            ("dev", false),
            ("maint", false),
            ("padmin", false),
            ("otheradmin", false),
            ("root", true),
        ];
        for (name, sysadmin) in users {
            id.add_user(NewAccount {
                name: name.into(),
                password: PASSWORD.into(),
                sysadmin,
                ..Default::default()
            })
            .await
            .expect("user");
        }
        id.create_project("team", false, Some("padmin"))
            .await
            .expect("project");
        id.create_project("other", false, Some("otheradmin"))
            .await
            .expect("project");
        for (user, role) in [
            ("lguest", Role::LimitedGuest),
            ("guest", Role::Guest),
            ("dev", Role::Developer),
            ("maint", Role::Maintainer),
        ] {
            id.set_member("team", user, role).await.expect("member");
        }
        let (project_robot, project_secret) = id
            .create_robot(RobotSpec {
                name: RobotName::parse("robot$team+ci").expect("name"),
                description: String::new(),
                duration_days: None,
                permissions: project_permissions("team", &["pull", "push"]),
                secret: None,
                disabled: false,
            })
            .await
            .expect("robot");
        let (system_robot, system_secret) = id
            .create_robot(RobotSpec {
                name: RobotName::parse("robot$reader").expect("name"),
                description: String::new(),
                duration_days: None,
                permissions: vec![RobotPermission {
                    kind: "project".into(),
                    namespace: "*".into(),
                    access: vec![RobotAccess::new("repository", "pull")],
                }],
                secret: None,
                disabled: false,
            })
            .await
            .expect("robot");
        // Content, pushed by the system administrator.
        let root = app.with_basic("root", PASSWORD);
        let (_, manifest) = root.push_image(REPO, "v1", "matrix").await;
        root.push_image("other/app", "v1", "other").await;
        root.push_image("library/base", "v1", "public").await;
        World {
            app,
            robot_secrets: [
                (project_robot.name, project_secret),
                (system_robot.name, system_secret),
            ],
            manifest,
        }
    }

    fn credentials(&self, caller: Caller) -> Option<(String, String)> {
        let user = |name: &str| Some((name.to_owned(), PASSWORD.to_owned()));
        match caller {
            Anonymous => None,
            LimitedGuest => user("lguest"),
            Guest => user("guest"),
            Developer => user("dev"),
            Maintainer => user("maint"),
            ProjectAdmin => user("padmin"),
            OtherProjectAdmin => user("otheradmin"),
            ProjectRobot => Some(self.robot_secrets[0].clone()),
            SystemRobot => Some(self.robot_secrets[1].clone()),
            SystemAdmin => user("root"),
        }
    }

    /// The caller's handle: Basic credentials, or a bearer token asked for `scope`.
    async fn as_caller(&self, caller: Caller, bearer_scope: Option<&[&str]>) -> TestApp {
        let Some((user, password)) = self.credentials(caller) else {
            return match bearer_scope {
                Some(scope) => self.app.with_bearer(&token(&self.app, scope).await),
                None => self.app.clone(),
            };
        };
        let basic = self.app.with_basic(&user, &password);
        match bearer_scope {
            Some(scope) => self.app.with_bearer(&token(&basic, scope).await),
            None => basic,
        }
    }
}

/// A token from `/service/token` for these scopes, with the handle's credentials.
async fn token(app: &TestApp, scopes: &[&str]) -> String {
    let query: Vec<String> = scopes
        .iter()
        .map(|s| {
            format!(
                "scope={}",
                form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
            )
        })
        .collect();
    let response = app
        .get(format!("/service/token?service=berth&{}", query.join("&")))
        .send()
        .await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "token: {:?}",
        response.body
    );
    response.json()["token"].as_str().expect("token").to_owned()
}

/// One row of the matrix: the request, what it needs, its success status.
struct Row {
    name: &'static str,
    needs: Needs,
    success: u16,
}

async fn run_row(world: &World, caller: Caller, row: &Row, app: &TestApp, cell: usize) -> u16 {
    let root = world.app.with_basic("root", PASSWORD);
    let tag = format!("cell{cell}");
    let response = match row.name {
        "base" => app.get("/v2/").send().await,
        "catalog" => app.get("/v2/_catalog").send().await,
        "tags" => app.get(format!("/v2/{REPO}/tags/list")).send().await,
        "get manifest" => app.get(format!("/v2/{REPO}/manifests/v1")).send().await,
        "head manifest" => app.head(format!("/v2/{REPO}/manifests/v1")).send().await,
        "get blob" | "head blob" => {
            let digest = sha256(b"layer bytes for matrix");
            let method = if row.name == "get blob" {
                Method::GET
            } else {
                Method::HEAD
            };
            app.request(method, format!("/v2/{REPO}/blobs/{digest}"))
                .send()
                .await
        }
        "referrers" => {
            app.get(format!("/v2/{REPO}/referrers/{}", sha256(&world.manifest)))
                .send()
                .await
        }
        "start upload" => app.post(format!("/v2/{REPO}/blobs/uploads/")).send().await,
        "upload status" | "patch upload" | "cancel upload" => {
            let location = root.start_upload(REPO).await;
            match row.name {
                "upload status" => app.get(location).send().await,
                "patch upload" => app.patch(location).body(b"x".to_vec()).send().await,
                _ => app.delete(location).send().await,
            }
        }
        "complete upload" => {
            let location = root.start_upload(REPO).await;
            let content = format!("blob for cell {cell}");
            app.put(with_digest(&location, &sha256(content.as_bytes())))
                .body(content.into_bytes())
                .send()
                .await
        }
        "put manifest" => {
            app.put(format!("/v2/{REPO}/manifests/{tag}"))
                .header("content-type", OCI_MANIFEST)
                .body(world.manifest.clone())
                .send()
                .await
        }
        "delete tag" => {
            root.push_manifest(REPO, &tag, OCI_MANIFEST, world.manifest.clone())
                .await;
            app.delete(format!("/v2/{REPO}/manifests/{tag}"))
                .send()
                .await
        }
        "delete blob" => {
            let digest = root
                .push_blob(REPO, format!("deletable {cell}").as_bytes())
                .await;
            app.delete(format!("/v2/{REPO}/blobs/{digest}"))
                .send()
                .await
        }
        "mount from other" => {
            let digest = sha256(b"layer bytes for other");
            app.post(format!(
                "/v2/{REPO}/blobs/uploads/?mount={digest}&from=other/app"
            ))
            .send()
            .await
        }
        other => panic!("no request for row {other}"),
    };
    let _ = caller;
    response.status.as_u16()
}

fn rows() -> Vec<Row> {
    let row = |name, needs, success| Row {
        name,
        needs,
        success,
    };
    vec![
        row("base", Needs::Login, 200),
        row("catalog", Needs::Nothing, 200),
        row("tags", Needs::Pull, 200),
        row("get manifest", Needs::Pull, 200),
        row("head manifest", Needs::Pull, 200),
        row("get blob", Needs::Pull, 200),
        row("head blob", Needs::Pull, 200),
        row("referrers", Needs::Pull, 200),
        row("start upload", Needs::Push, 202),
        row("upload status", Needs::Push, 204),
        row("patch upload", Needs::Push, 202),
        row("complete upload", Needs::Push, 201),
        row("cancel upload", Needs::Push, 204),
        row("put manifest", Needs::Push, 201),
        row("delete tag", Needs::Delete, 202),
        row("delete blob", Needs::Delete, 202),
        row("mount from other", Needs::MountFromOther, 201),
    ]
}

/// The scopes a client would ask for before making the row's request.
fn scopes_for(needs: Needs) -> Vec<&'static str> {
    match needs {
        Needs::Login | Needs::Nothing => vec!["registry:catalog:*"],
        Needs::Pull => vec!["repository:team/app:pull"],
        Needs::Push => vec!["repository:team/app:pull,push"],
        Needs::Delete => vec!["repository:team/app:delete"],
        Needs::MountFromOther => vec!["repository:team/app:pull,push", "repository:other/app:pull"],
    }
}

#[tokio::test]
async fn every_endpoint_for_every_caller_with_basic_credentials() {
    let world = World::new().await;
    let mut mismatches = Vec::new();
    let mut cell = 0;
    for row in rows() {
        for caller in CALLERS {
            cell += 1;
            let app = world.as_caller(caller, None).await;
            let got = run_row(&world, caller, &row, &app, cell).await;
            let want = expected(caller, row.needs, row.success);
            if got != want {
                mismatches.push(format!(
                    "{} as {caller:?}: got {got}, want {want}",
                    row.name
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[tokio::test]
async fn every_endpoint_for_every_caller_with_bearer_tokens() {
    let world = World::new().await;
    let mut mismatches = Vec::new();
    let mut cell = 1000;
    for row in rows() {
        for caller in CALLERS {
            cell += 1;
            let scopes = scopes_for(row.needs);
            let app = world.as_caller(caller, Some(&scopes)).await;
            let got = run_row(&world, caller, &row, &app, cell).await;
            // An anonymous token is a login: `GET /v2/` and `_catalog` accept it.
            let want = match (caller, row.needs) {
                (Anonymous, Needs::Login | Needs::Nothing) => 200,
                _ => expected(caller, row.needs, row.success),
            };
            if got != want {
                mismatches.push(format!(
                    "{} as {caller:?}: got {got}, want {want}",
                    row.name
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

fn names(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {body}"))
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}

#[tokio::test]
async fn catalog_shows_each_caller_only_what_it_may_pull() {
    let world = World::new().await;
    let public = vec!["library/base".to_string()];
    let team = vec!["library/base".to_string(), "team/app".to_string()];
    let all = vec![
        "library/base".to_string(),
        "other/app".to_string(),
        "team/app".to_string(),
    ];
    for caller in CALLERS {
        let want = match caller {
            Anonymous => public.clone(),
            OtherProjectAdmin => vec!["library/base".to_string(), "other/app".to_string()],
            SystemAdmin | SystemRobot => all.clone(),
            _ => team.clone(),
        };
        for bearer in [false, true] {
            let scopes = ["registry:catalog:*"];
            let app = world.as_caller(caller, bearer.then_some(&scopes[..])).await;
            let response = app.get("/v2/_catalog").send().await;
            if caller == Anonymous && !bearer {
                // Without any credentials: a challenge, as for `GET /v2/`.
                assert_eq!(response.status, StatusCode::UNAUTHORIZED);
                continue;
            }
            assert_eq!(
                names(&response.json(), "repositories"),
                want,
                "{caller:?} bearer={bearer}"
            );
        }
    }
}

#[tokio::test]
async fn tag_lists_answer_only_callers_who_may_pull() {
    let world = World::new().await;
    for caller in CALLERS {
        let app = world.as_caller(caller, None).await;
        let response = app.get(format!("/v2/{REPO}/tags/list")).send().await;
        if allowed(caller, Needs::Pull) {
            assert_eq!(names(&response.json(), "tags"), ["v1"], "{caller:?}");
        } else {
            assert!(
                response.status == StatusCode::UNAUTHORIZED
                    || response.status == StatusCode::FORBIDDEN,
                "{caller:?}: {}",
                response.status
            );
            assert!(!String::from_utf8_lossy(&response.body).contains("v1"));
        }
    }
}

#[tokio::test]
async fn anonymous_pulls_public_projects_and_is_challenged_for_private_ones() {
    let world = World::new().await;
    let app = &world.app;
    let public = app.get("/v2/library/base/manifests/v1").send().await;
    assert_eq!(public.status, StatusCode::OK);
    // The realm is the token service as this client addressed the registry (its Host).
    let private = app
        .get(format!("/v2/{REPO}/manifests/v1"))
        .header("host", "registry.example:5000")
        .send()
        .await;
    assert_eq!(private.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        private.header("www-authenticate"),
        "Bearer realm=\"http://registry.example:5000/service/token\",service=\"berth\",scope=\"repository:team/app:pull\""
    );
    let push = app
        .post("/v2/library/base/blobs/uploads/")
        .header("host", "registry.example:5000")
        .send()
        .await;
    assert_eq!(
        push.header("www-authenticate"),
        "Bearer realm=\"http://registry.example:5000/service/token\",service=\"berth\",scope=\"repository:library/base:pull,push\""
    );
}

#[tokio::test]
async fn a_denied_push_says_which_permission_is_missing() {
    let world = World::new().await;
    let guest = world.as_caller(Guest, None).await;
    let response = guest
        .post(format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await;
    response.assert_error(403, "DENIED");
    let detail = response.json()["errors"][0]["detail"].to_string();
    assert!(detail.contains("push") && detail.contains(REPO), "{detail}");
}

#[tokio::test]
async fn a_push_into_a_missing_project_is_refused_with_a_message_saying_so() {
    let world = World::new().await;
    let root = world.as_caller(SystemAdmin, None).await;
    let response = root.post("/v2/nosuch/app/blobs/uploads/").send().await;
    response.assert_error(403, "DENIED");
    let detail = response.json()["errors"][0]["detail"].to_string();
    assert!(detail.contains("project nosuch does not exist"), "{detail}");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_look_the_same() {
    let world = World::new().await;
    let wrong = world
        .app
        .with_basic("dev", "Wr0ngPassword")
        .get("/v2/")
        .send()
        .await;
    let unknown = world
        .app
        .with_basic("nobody", "Wr0ngPassword")
        .get("/v2/")
        .send()
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (wrong.status, wrong.body.clone()),
        (unknown.status, unknown.body.clone())
    );
    assert_eq!(
        wrong.header("www-authenticate"),
        unknown.header("www-authenticate")
    );
    let wrong_token = world
        .app
        .with_basic("dev", "Wr0ngPassword")
        .get("/service/token?service=berth")
        .send()
        .await;
    let unknown_token = world
        .app
        .with_basic("nobody", "Wr0ngPassword")
        .get("/service/token?service=berth")
        .send()
        .await;
    assert_eq!(wrong_token.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (wrong_token.status, wrong_token.body.clone()),
        (unknown_token.status, unknown_token.body.clone())
    );
}

#[tokio::test]
async fn a_project_robot_cannot_act_outside_its_project() {
    let world = World::new().await;
    let robot = world.as_caller(ProjectRobot, None).await;
    robot
        .post("/v2/other/app/blobs/uploads/")
        .send()
        .await
        .assert_error(403, "DENIED");
    robot
        .get("/v2/other/app/manifests/v1")
        .send()
        .await
        .assert_error(403, "DENIED");
}
