//! `/service/token` and bearer tokens on `/v2/`: scope intersection, several scopes,
//! refresh tokens, the OAuth2 POST form, forged and misused tokens, expired robots, and
//! throttled password guessing.

use axum::http::StatusCode;
use base64::Engine as _;
use berth_auth::identity::{NewAccount, RobotSpec, project_permissions};
use berth_core::Role;
use berth_core::access::RobotName;
use berth_meta::RobotStore;
use serde_json::Value;

use crate::common::TestApp;

const PASSWORD: &str = "Passw0rd-tokens";

async fn app_with_team() -> TestApp {
    let app = TestApp::builder().token_mode().build().await;
    let id = app.identity();
    for (name, sysadmin) in [("root", true), ("guest", false), ("dev", false)] {
        id.add_user(NewAccount {
            name: name.into(),
            password: PASSWORD.into(),
            sysadmin,
            ..Default::default()
        })
        .await
        .expect("user");
    }
    id.create_project("team", false, None)
        .await
        .expect("project");
    id.set_member("team", "guest", Role::Guest)
        .await
        .expect("member");
    id.set_member("team", "dev", Role::Developer)
        .await
        .expect("member");
    app.with_basic("root", PASSWORD)
        .push_image("team/app", "v1", "tokens")
        .await;
    app
}

/// The claims of a JWT (not verified: the registry does that).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

fn access(token: &str) -> Vec<(String, Vec<String>)> {
    claims(token)["access"]
        .as_array()
        .expect("access")
        .iter()
        .map(|a| {
            let actions = a["actions"]
                .as_array()
                .expect("actions")
                .iter()
                .map(|x| x.as_str().expect("action").to_owned())
                .collect();
            (a["name"].as_str().expect("name").to_owned(), actions)
        })
        .collect()
}

async fn get_token(app: &TestApp, query: &str) -> Value {
    let response = app.get(format!("/service/token?{query}")).send().await;
    assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
    response.json()
}

#[tokio::test]
async fn the_token_grants_the_intersection_of_asked_and_allowed() {
    let app = app_with_team().await;
    let guest = app.with_basic("guest", PASSWORD);
    let answer = get_token(
        &guest,
        "service=berth&scope=repository:team/app:pull,push,delete",
    )
    .await;
    let token = answer["token"].as_str().expect("token");
    assert_eq!(
        access(token),
        [("team/app".to_string(), vec!["pull".to_string()])]
    );
    assert_eq!(answer["access_token"], answer["token"]);
    assert!(answer["expires_in"].as_u64().expect("expires_in") > 0);
    assert!(
        answer["issued_at"]
            .as_str()
            .expect("issued_at")
            .ends_with('Z')
    );
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(header["alg"], "ES256");
    assert!(
        header["kid"]
            .as_str()
            .is_some_and(|k| k.split(':').count() == 12)
    );
    let claims = claims(token);
    assert_eq!(
        (
            claims["sub"].as_str(),
            claims["aud"].as_str(),
            claims["iss"].as_str()
        ),
        (Some("guest"), Some("berth"), Some("berth"))
    );
    // Anonymous: a private project grants nothing.
    let anonymous = get_token(&app, "service=berth&scope=repository:team/app:pull").await;
    assert!(access(anonymous["token"].as_str().expect("token")).is_empty());
}

#[tokio::test]
async fn several_scopes_in_one_request() {
    let app = app_with_team().await;
    let dev = app.with_basic("dev", PASSWORD);
    let answer = get_token(
        &dev,
        "service=berth&scope=repository:team/app:pull&scope=repository:team/app:push%20repository:team/other:pull&scope=repository:library/x:pull,push",
    )
    .await;
    let mut granted = access(answer["token"].as_str().expect("token"));
    granted.sort();
    assert_eq!(
        granted,
        [
            ("library/x".to_string(), vec!["pull".to_string()]),
            (
                "team/app".to_string(),
                vec!["pull".to_string(), "push".to_string()]
            ),
            ("team/other".to_string(), vec!["pull".to_string()]),
        ]
    );
}

#[tokio::test]
async fn a_token_lacking_a_scope_the_account_may_have_is_challenged_for_it() {
    let app = app_with_team().await;
    let dev = app.with_basic("dev", PASSWORD);
    let pull_only = get_token(&dev, "service=berth&scope=repository:team/app:pull").await;
    let with_token = app.with_bearer(pull_only["token"].as_str().expect("token"));
    assert_eq!(
        with_token
            .get("/v2/team/app/manifests/v1")
            .send()
            .await
            .status,
        StatusCode::OK
    );
    let push = with_token
        .post("/v2/team/app/blobs/uploads/")
        .header("host", "registry.example")
        .send()
        .await;
    push.assert_error(401, "UNAUTHORIZED");
    assert_eq!(
        push.header("www-authenticate"),
        "Bearer realm=\"http://registry.example/service/token\",service=\"berth\",scope=\"repository:team/app:pull,push\",error=\"insufficient_scope\""
    );
    // The guest's token cannot get push, whatever it asks: a 403, not a retry loop.
    let guest = app.with_basic("guest", PASSWORD);
    let guest_token = get_token(&guest, "service=berth&scope=repository:team/app:pull,push").await;
    app.with_bearer(guest_token["token"].as_str().expect("token"))
        .post("/v2/team/app/blobs/uploads/")
        .send()
        .await
        .assert_error(403, "DENIED");
}

#[tokio::test]
async fn refresh_tokens_are_issued_offline_and_redeemed_by_the_post_form() {
    let app = app_with_team().await;
    let dev = app.with_basic("dev", PASSWORD);
    let answer = get_token(&dev, "service=berth&offline_token=true&client_id=test").await;
    let refresh = answer["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    // Without offline_token, none.
    assert!(get_token(&dev, "service=berth").await["refresh_token"].is_null());
    let form = format!(
        "grant_type=refresh_token&service=berth&client_id=test&scope=repository%3Ateam%2Fapp%3Apull&refresh_token={refresh}"
    );
    let posted = app
        .post("/service/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await;
    assert_eq!(posted.status, StatusCode::OK);
    let posted = posted.json();
    assert_eq!(posted["scope"], "repository:team/app:pull");
    let access_token = posted["access_token"].as_str().expect("access token");
    assert_eq!(
        access(access_token),
        [("team/app".to_string(), vec!["pull".to_string()])]
    );
    // A refresh token is not an access token, and an access token does not refresh.
    app.with_bearer(&refresh)
        .get("/v2/team/app/tags/list")
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
    let misuse = app
        .post("/service/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&service=berth&refresh_token={access_token}"
        ))
        .send()
        .await;
    assert_eq!(misuse.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_post_form_takes_passwords_and_refuses_bad_requests() {
    let app = app_with_team().await;
    let post = |body: &str| {
        app.post("/service/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
    };
    let ok = post(&format!(
        "grant_type=password&service=berth&client_id=x&access_type=offline&username=dev&password={PASSWORD}&scope=repository%3Ateam%2Fapp%3Apush"
    ))
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let ok = ok.json();
    assert!(ok["refresh_token"].is_string());
    assert_eq!(ok["scope"], "repository:team/app:push");
    let wrong = post("grant_type=password&service=berth&username=dev&password=nope").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post("grant_type=magic&service=berth").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(post("service=berth").await.status, StatusCode::BAD_REQUEST);
    let other_service = app.get("/service/token?service=elsewhere").send().await;
    assert_eq!(other_service.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let app = app_with_team().await;
    let dev = app.with_basic("dev", PASSWORD);
    let real = get_token(&dev, "service=berth&scope=repository:team/app:pull").await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(v).expect("json"))
    };
    // The real token is used first, so it is in the cache of verified tokens when a forged
    // one with the same signature arrives.
    let genuine = app
        .with_bearer(&real)
        .get("/v2/team/app/tags/list")
        .send()
        .await;
    assert_ne!(genuine.status, StatusCode::UNAUTHORIZED);
    let mut escalated = claims(&real);
    escalated["access"][0]["actions"] = serde_json::json!(["pull", "push", "delete"]);
    let parts: Vec<&str> = real.split('.').collect();
    let forged = [
        // alg: none, no signature.
        format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&escalated)
        ),
        // The real header and signature over a changed payload.
        format!("{}.{}.{}", parts[0], b64(&escalated), parts[2]),
        // HS256 "signed" with the public kid.
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(&serde_json::json!({"alg": "HS256", "kid": claims_kid(&real)})),
            b64(&escalated)
        ),
        "not-a-jwt".to_owned(),
    ];
    for token in forged {
        let response = app
            .with_bearer(&token)
            .get("/v2/team/app/tags/list")
            .send()
            .await;
        response.assert_error(401, "UNAUTHORIZED");
        assert!(
            response
                .header("www-authenticate")
                .contains("error=\"invalid_token\""),
            "{token}"
        );
    }
}

fn claims_kid(token: &str) -> String {
    let header = token.split('.').next().expect("header");
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .expect("b64"),
    )
    .expect("json");
    header["kid"].as_str().expect("kid").to_owned()
}

#[tokio::test]
async fn an_expired_or_disabled_robot_is_refused() {
    let app = app_with_team().await;
    let id = app.identity();
    let (robot, secret) = id
        .create_robot(RobotSpec {
            name: RobotName::parse("robot$team+ci").expect("name"),
            description: String::new(),
            duration_days: Some(30),
            permissions: project_permissions("team", &["pull"]),
            secret: None,
            disabled: false,
        })
        .await
        .expect("robot");
    let as_robot = app.with_basic(&robot.name, &secret);
    assert_eq!(
        as_robot.get("/v2/team/app/tags/list").send().await.status,
        StatusCode::OK
    );
    // Expired a second ago (set in the store: the API only creates future expiries).
    let mut expired = robot.clone();
    expired.expires_at = Some(1);
    app.meta().update_robot(&expired).await.expect("expire");
    id.set_robot_disabled(&robot.name, false)
        .await
        .expect("invalidate caches");
    as_robot
        .get("/v2/team/app/tags/list")
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
    assert_eq!(
        as_robot
            .get("/service/token?service=berth")
            .send()
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Disabled: refused the same way.
    app.meta().update_robot(&robot).await.expect("unexpire");
    id.set_robot_disabled(&robot.name, true)
        .await
        .expect("disable");
    as_robot
        .get("/v2/team/app/tags/list")
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn repeated_wrong_passwords_are_slowed_down() {
    let app = app_with_team().await;
    let wrong = app.with_basic("dev", "Wr0ngPassword");
    for _ in 0..5 {
        wrong
            .get("/v2/")
            .send()
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    let throttled = wrong.get("/v2/").send().await;
    throttled.assert_error(429, "TOOMANYREQUESTS");
    assert!(throttled.header("retry-after").parse::<u64>().is_ok());
    // Even the right password waits: guessing cannot tell it apart.
    app.with_basic("dev", PASSWORD)
        .get("/v2/")
        .send()
        .await
        .assert_error(429, "TOOMANYREQUESTS");
}

#[tokio::test]
async fn basic_credentials_work_straight_on_v2_in_token_mode() {
    let app = app_with_team().await;
    let dev = app.with_basic("dev", PASSWORD);
    assert_eq!(dev.get("/v2/").send().await.status, StatusCode::OK);
    assert_eq!(
        dev.get("/v2/team/app/manifests/v1").send().await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn with_project_creation_on_push_a_user_creates_a_missing_project_and_administers_it() {
    let app = TestApp::builder()
        .token_settings(berth_auth::TokenSettings {
            create_project_on_push: berth_auth::ProjectCreation::Users,
            ..Default::default()
        })
        .build()
        .await;
    let id = app.identity();
    for name in ["alice", "bob"] {
        id.add_user(NewAccount {
            name: name.into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .expect("user");
    }
    // Through a token request, as docker does before pushing.
    let alice = app.with_basic("alice", PASSWORD);
    let token = get_token(&alice, "service=berth&scope=repository:fresh/app:pull,push").await;
    assert_eq!(
        access(token["token"].as_str().expect("token")),
        [(
            "fresh/app".to_string(),
            vec!["pull".to_string(), "push".to_string()]
        )]
    );
    let project = id.project("fresh").await.expect("created");
    assert!(!project.public, "created private");
    let members = id.members("fresh").await.expect("members");
    assert_eq!(
        members
            .iter()
            .map(|m| (m.user_name.as_str(), m.role))
            .collect::<Vec<_>>(),
        [("alice", Role::ProjectAdmin)]
    );
    // Straight to /v2/ with Basic: the same. Another user cannot push into alice's project.
    app.with_basic("bob", PASSWORD)
        .push_image("bobs/app", "v1", "b")
        .await;
    app.with_basic("bob", PASSWORD)
        .post("/v2/fresh/app/blobs/uploads/")
        .send()
        .await
        .assert_error(403, "DENIED");
    // Robots never create projects.
    let (robot, secret) = id
        .create_robot(RobotSpec {
            name: RobotName::parse("robot$sys").expect("name"),
            description: String::new(),
            duration_days: None,
            permissions: vec![berth_core::RobotPermission {
                kind: "project".into(),
                namespace: "*".into(),
                access: vec![berth_core::access::RobotAccess::new("repository", "push")],
            }],
            secret: None,
            disabled: false,
        })
        .await
        .expect("robot");
    app.with_basic(&robot.name, &secret)
        .post("/v2/robotmade/app/blobs/uploads/")
        .send()
        .await
        .assert_error(403, "DENIED");
}
