//! Upload sessions survive a restart: the registry and its stores are dropped and reopened
//! on the same directory, and the session carries on where it was.

use axum::http::StatusCode;

use crate::common::{TestApp, sha256, with_digest};

/// Open a session, PATCH `first` into it, then restart the registry.
async fn patched_then_restarted(first: &[u8]) -> (TestApp, String) {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let response = app
        .patch(&location)
        .header("content-range", format!("0-{}", first.len() - 1))
        .body(first.to_vec())
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
    (app.restart().await, location)
}

#[tokio::test]
async fn session_status_after_restart_shows_the_offset() {
    let (app, location) = patched_then_restarted(b"before restart ").await;
    let response = app.get(&location).send().await;
    assert_eq!(
        (response.status, response.header("range")),
        (StatusCode::NO_CONTENT, "0-14")
    );
}

#[tokio::test]
async fn session_continues_after_restart() {
    let (app, location) = patched_then_restarted(b"before restart ").await;
    let response = app
        .patch(&location)
        .header("content-range", "15-27")
        .body(b"after restart".to_vec())
        .send()
        .await;
    assert_eq!(
        (response.status, response.header("range")),
        (StatusCode::ACCEPTED, "0-27")
    );
}

#[tokio::test]
async fn session_completes_after_restart_with_the_right_bytes() {
    let (app, location) = patched_then_restarted(b"before restart ").await;
    app.patch(&location)
        .header("content-range", "15-27")
        .body(b"after restart".to_vec())
        .send()
        .await;
    let digest = sha256(b"before restart after restart");
    let response = app.put(with_digest(&location, &digest)).send().await;
    assert_eq!(response.status, StatusCode::CREATED);
    let blob = app.get(format!("/v2/repo/blobs/{digest}")).send().await;
    assert_eq!(&blob.body[..], b"before restart after restart");
}

#[tokio::test]
async fn pushed_content_survives_a_restart() {
    let app = TestApp::new().await;
    let (digest, manifest) = app.push_image("repo", "v1", "a").await;
    let app = app.restart().await;
    let response = app.get("/v2/repo/manifests/v1").send().await;
    assert_eq!(
        (
            response.header("docker-content-digest"),
            response.body.to_vec()
        ),
        (digest.as_str(), manifest)
    );
}
