//! Authentication and authorization as clients see them: htpasswd basic auth (401 with a
//! `Basic` challenge, as registry:2) and open mode's loopback-only writes (403 `DENIED`).

use std::net::SocketAddr;

use axum::http::StatusCode;
use base64::Engine as _;
use berth_auth::{AuthMode, Htpasswd};

use crate::common::{OCI_MANIFEST, TestApp, TestResponse, sha256};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pa55";

/// A registry with htpasswd auth and one user, `alice`, whose password is [`PASSWORD`].
async fn htpasswd_app() -> TestApp {
    htpasswd_app_with(&[(USER, PASSWORD)], "berth").await
}

async fn htpasswd_app_with(users: &[(&str, &str)], realm: &str) -> TestApp {
    let file: String = users
        .iter()
        .map(|(user, password)| {
            format!(
                "{user}:{}\n",
                bcrypt::hash(password, 4).expect("bcrypt hash")
            )
        })
        .collect();
    let passwords = Htpasswd::parse(&format!("# test users\n{file}")).expect("htpasswd parses");
    TestApp::builder()
        .auth(AuthMode::Htpasswd {
            realm: realm.into(),
            passwords,
        })
        .build()
        .await
}

/// An `Authorization` header value for basic auth.
fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Assert a 401 with the spec's `UNAUTHORIZED` code and a basic challenge for `realm`.
#[track_caller]
fn assert_challenge(response: &TestResponse, realm: &str) {
    response.assert_error(401, "UNAUTHORIZED");
    assert_eq!(
        response.maybe_header("www-authenticate"),
        Some(format!("Basic realm=\"{realm}\"").as_str()),
        "challenge header"
    );
}

/// A client on another machine.
fn remote_peer() -> SocketAddr {
    "203.0.113.7:40000".parse().expect("socket address")
}

// ---------------------------------------------------------------- htpasswd: no credentials

#[tokio::test]
async fn base_endpoint_without_credentials_is_challenged() {
    let app = htpasswd_app().await;
    assert_challenge(&app.get("/v2/").send().await, "berth");
}

#[tokio::test]
async fn base_endpoint_without_trailing_slash_is_challenged_too() {
    let app = htpasswd_app().await;
    assert_challenge(&app.get("/v2").send().await, "berth");
}

#[tokio::test]
async fn pull_without_credentials_is_challenged_even_for_existing_content() {
    let app = htpasswd_app().await;
    let alice = app.with_header("authorization", basic(USER, PASSWORD));
    let (digest, _) = alice.push_image("private/repo", "v1", "secret").await;
    let config_digest = sha256(br#"{"architecture":"amd64","os":"linux","seed":"secret"}"#);

    for uri in [
        "/v2/private/repo/manifests/v1".to_owned(),
        format!("/v2/private/repo/manifests/{digest}"),
        format!("/v2/private/repo/blobs/{config_digest}"),
        "/v2/private/repo/tags/list".to_owned(),
        "/v2/_catalog".to_owned(),
    ] {
        let response = app.get(&uri).send().await;
        assert_challenge(&response, "berth");
        assert!(
            !String::from_utf8_lossy(&response.body).contains("secret"),
            "{uri} leaked content: {}",
            String::from_utf8_lossy(&response.body)
        );
    }
    // HEAD has no body to carry the error code, but must be a 401 with the challenge.
    let response = app.head("/v2/private/repo/manifests/v1").send().await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.maybe_header("www-authenticate"),
        Some("Basic realm=\"berth\"")
    );
}

#[tokio::test]
async fn push_without_credentials_is_challenged_and_stores_nothing() {
    let app = htpasswd_app().await;
    assert_challenge(&app.post("/v2/repo/blobs/uploads/").send().await, "berth");
    let content = b"monolithic blob".to_vec();
    let digest = sha256(&content);
    assert_challenge(
        &app.post(format!("/v2/repo/blobs/uploads/?digest={digest}"))
            .body(content)
            .send()
            .await,
        "berth",
    );
    assert_challenge(
        &app.put_manifest("repo", "v1", OCI_MANIFEST, b"{}".to_vec())
            .await,
        "berth",
    );
    assert_challenge(&app.delete("/v2/repo/manifests/v1").send().await, "berth");

    // Nothing of that landed: alice sees no blob.
    let alice = app.with_header("authorization", basic(USER, PASSWORD));
    let response = alice.head(format!("/v2/repo/blobs/{digest}")).send().await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn upload_session_of_a_user_cannot_be_continued_without_credentials() {
    let app = htpasswd_app().await;
    let alice = app.with_header("authorization", basic(USER, PASSWORD));
    let location = alice.start_upload("repo").await;
    assert_challenge(
        &app.patch(&location).body(b"chunk".to_vec()).send().await,
        "berth",
    );
    assert_challenge(&app.get(&location).send().await, "berth");
    assert_challenge(&app.delete(&location).send().await, "berth");
}

#[tokio::test]
async fn realm_in_the_challenge_is_the_configured_one() {
    let app = htpasswd_app_with(&[(USER, PASSWORD)], "My Registry").await;
    assert_challenge(&app.get("/v2/").send().await, "My Registry");
}

// ---------------------------------------------------------------- htpasswd: bad credentials

#[tokio::test]
async fn wrong_password_is_challenged() {
    let app = htpasswd_app().await;
    let response = app
        .get("/v2/")
        .header("authorization", basic(USER, "wrong"))
        .send()
        .await;
    assert_challenge(&response, "berth");
}

#[tokio::test]
async fn wrong_password_is_challenged_after_the_right_one_was_cached() {
    let app = htpasswd_app().await;
    let ok = app
        .get("/v2/")
        .header("authorization", basic(USER, PASSWORD))
        .send()
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    for password in ["wrong", "", &format!("{PASSWORD}x"), &PASSWORD[1..]] {
        let response = app
            .get("/v2/")
            .header("authorization", basic(USER, password))
            .send()
            .await;
        assert_challenge(&response, "berth");
    }
}

#[tokio::test]
async fn unknown_user_is_challenged() {
    let app = htpasswd_app().await;
    for (user, password) in [("bob", PASSWORD), ("", PASSWORD), ("Alice", PASSWORD)] {
        let response = app
            .get("/v2/")
            .header("authorization", basic(user, password))
            .send()
            .await;
        assert_challenge(&response, "berth");
    }
}

#[tokio::test]
async fn another_users_password_does_not_work() {
    let app = htpasswd_app_with(&[(USER, PASSWORD), ("bob", "bobs-password")], "berth").await;
    let response = app
        .get("/v2/")
        .header("authorization", basic(USER, "bobs-password"))
        .send()
        .await;
    assert_challenge(&response, "berth");
    let response = app
        .get("/v2/")
        .header("authorization", basic("bob", "bobs-password"))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_on_a_push_is_challenged() {
    let app = htpasswd_app().await;
    let response = app
        .post("/v2/repo/blobs/uploads/")
        .header("authorization", basic(USER, "wrong"))
        .send()
        .await;
    assert_challenge(&response, "berth");
}

#[tokio::test]
async fn malformed_authorization_headers_are_challenged_not_server_errors() {
    let app = htpasswd_app().await;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let headers = [
        "Basic !!!not-base64!!!".to_owned(),
        format!("Basic {}", b64(b"alice-without-colon")),
        format!("Basic {}", b64(b"alice\xff\xfe:s3cret")),
        "Basic".to_owned(),
        "Basic ".to_owned(),
        "Bearer some.jwt.token".to_owned(),
        format!("Bearer {}", b64(format!("{USER}:{PASSWORD}").as_bytes())),
        "Digest username=\"alice\"".to_owned(),
        "garbage".to_owned(),
        String::new(),
    ];
    for value in headers {
        let response = app
            .get("/v2/")
            .header("authorization", value.clone())
            .send()
            .await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "Authorization: {value:?}"
        );
        assert_challenge(&response, "berth");
    }
}

// ---------------------------------------------------------------- htpasswd: valid credentials

#[tokio::test]
async fn valid_credentials_open_the_base_endpoint() {
    let app = htpasswd_app().await;
    let response = app
        .get("/v2/")
        .header("authorization", basic(USER, PASSWORD))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.maybe_header("www-authenticate"), None);
}

#[tokio::test]
async fn scheme_name_is_case_insensitive() {
    // RFC 9110 §11.1: the auth scheme is case-insensitive.
    let app = htpasswd_app().await;
    let value = basic(USER, PASSWORD).replacen("Basic", "basic", 1);
    let response = app.get("/v2/").header("authorization", value).send().await;
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test]
async fn password_may_contain_colons() {
    // The user-id ends at the first colon (RFC 7617); the rest is the password.
    let app = htpasswd_app_with(&[("carol", "a:b:c")], "berth").await;
    let response = app
        .get("/v2/")
        .header("authorization", basic("carol", "a:b:c"))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test]
async fn valid_user_can_push_and_pull() {
    let app = htpasswd_app().await;
    let alice = app.with_header("authorization", basic(USER, PASSWORD));
    let (digest, manifest) = alice.push_image("team/app", "v1", "authed").await;

    let response = alice.get("/v2/team/app/manifests/v1").send().await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body.as_ref(), manifest.as_slice());
    assert_eq!(response.header("docker-content-digest"), digest);

    let layer = b"layer bytes for authed";
    let response = alice
        .get(format!("/v2/team/app/blobs/{}", sha256(layer)))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body.as_ref(), layer);

    let tags = alice.get("/v2/team/app/tags/list").send().await;
    assert_eq!(tags.status, StatusCode::OK);
    assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]));

    let response = alice
        .delete(format!("/v2/team/app/manifests/{digest}"))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn any_valid_user_can_pull_what_another_pushed() {
    let app = htpasswd_app_with(&[(USER, PASSWORD), ("bob", "bobs-password")], "berth").await;
    let alice = app.with_header("authorization", basic(USER, PASSWORD));
    let bob = app.with_header("authorization", basic("bob", "bobs-password"));
    let (digest, manifest) = alice.push_image("shared", "v1", "shared").await;
    let response = bob
        .get(format!("/v2/shared/manifests/{digest}"))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body.as_ref(), manifest.as_slice());
    bob.push_image("shared", "v2", "bob").await;
}

#[tokio::test]
async fn valid_credentials_from_another_machine_may_push() {
    // With authentication configured, the loopback rule of open mode does not apply.
    let app = htpasswd_app().await;
    let alice = app
        .with_header("authorization", basic(USER, PASSWORD))
        .with_peer(remote_peer());
    alice.push_image("remote", "v1", "remote").await;
}

// ---------------------------------------------------------------- open mode: loopback-only writes

#[tokio::test]
async fn open_mode_denies_pushes_from_other_machines() {
    let app = TestApp::new().await;
    let remote = app.with_peer(remote_peer());
    let response = remote.post("/v2/repo/blobs/uploads/").send().await;
    response.assert_error(403, "DENIED");
    assert_eq!(response.maybe_header("www-authenticate"), None);
    // The reason is the message, which docker and podman print ("denied: <message>").
    let message = response.json()["errors"][0]["message"].clone();
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.starts_with("anonymous writes are only accepted from this machine")),
        "message: {message}"
    );

    let content = b"monolithic".to_vec();
    remote
        .post(format!(
            "/v2/repo/blobs/uploads/?digest={}",
            sha256(&content)
        ))
        .body(content)
        .send()
        .await
        .assert_error(403, "DENIED");
    remote
        .put_manifest("repo", "v1", OCI_MANIFEST, b"{}".to_vec())
        .await
        .assert_error(403, "DENIED");
}

#[tokio::test]
async fn open_mode_denies_deletes_and_upload_continuation_from_other_machines() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("repo", "v1", "local").await;
    let location = app.start_upload("repo").await;
    let remote = app.with_peer(remote_peer());
    remote
        .delete(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await
        .assert_error(403, "DENIED");
    remote
        .patch(&location)
        .body(b"chunk".to_vec())
        .send()
        .await
        .assert_error(403, "DENIED");
    // Still there.
    assert_eq!(
        remote.get("/v2/repo/manifests/v1").send().await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn open_mode_lets_other_machines_pull() {
    let app = TestApp::new().await;
    let (digest, manifest) = app.push_image("repo", "v1", "pullable").await;
    let remote = app.with_peer(remote_peer());
    assert_eq!(remote.get("/v2/").send().await.status, StatusCode::OK);
    let response = remote.get("/v2/repo/manifests/v1").send().await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body.as_ref(), manifest.as_slice());
    assert_eq!(
        remote
            .get(format!("/v2/repo/manifests/{digest}"))
            .send()
            .await
            .status,
        StatusCode::OK
    );
    let layer = b"layer bytes for pullable";
    let response = remote
        .get(format!("/v2/repo/blobs/{}", sha256(layer)))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body.as_ref(), layer);
    assert_eq!(
        remote.get("/v2/repo/tags/list").send().await.status,
        StatusCode::OK
    );
    assert_eq!(
        remote.get("/v2/_catalog").send().await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn open_mode_accepts_pushes_from_loopback_peers() {
    let app = TestApp::new().await;
    for (i, peer) in ["127.0.0.1:40000", "127.8.9.10:40000", "[::1]:40000"]
        .into_iter()
        .enumerate()
    {
        let local = app.with_peer(peer.parse().expect("socket address"));
        local.push_image("repo", &format!("v{i}"), peer).await;
    }
}

#[tokio::test]
async fn open_mode_treats_ipv4_mapped_loopback_as_loopback() {
    // A dual-stack listener (`[::]:5000`) sees IPv4 clients as ::ffff:a.b.c.d.
    let app = TestApp::new().await;
    let local = app.with_peer("[::ffff:127.0.0.1]:40000".parse().expect("socket address"));
    local.push_image("repo", "v1", "mapped").await;
    let remote = app.with_peer(
        "[::ffff:203.0.113.7]:40000"
            .parse()
            .expect("socket address"),
    );
    remote
        .post("/v2/repo/blobs/uploads/")
        .send()
        .await
        .assert_error(403, "DENIED");
}

#[tokio::test]
async fn open_mode_with_anonymous_write_accepts_pushes_from_other_machines() {
    let app = TestApp::builder()
        .auth(AuthMode::Open {
            anonymous_write: true,
        })
        .build()
        .await;
    let remote = app.with_peer(remote_peer());
    let (digest, manifest) = remote.push_image("repo", "v1", "public").await;
    let response = remote
        .get(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await;
    assert_eq!(response.body.as_ref(), manifest.as_slice());
    let response = remote
        .delete(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn open_mode_ignores_credentials() {
    // Without htpasswd configured, an Authorization header neither helps nor hurts.
    let app = TestApp::new().await;
    let response = app
        .get("/v2/")
        .header("authorization", basic("anyone", "anything"))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK);
    let remote = app
        .with_header("authorization", basic("anyone", "anything"))
        .with_peer(remote_peer());
    remote
        .post("/v2/repo/blobs/uploads/")
        .send()
        .await
        .assert_error(403, "DENIED");
}

#[tokio::test]
async fn malformed_paths_without_credentials_are_challenged_before_being_judged() {
    let app = htpasswd_app().await;
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a/unknown-endpoint",
        "/v2/a/blobs/sha256:zz",
    ] {
        let response = app.get(path).send().await;
        assert_challenge(&response, "berth");
    }
}
