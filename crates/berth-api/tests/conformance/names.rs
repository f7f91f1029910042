//! Repository names: the spec's grammar, the length limit, and multi-component names.

use axum::http::StatusCode;

use crate::common::{OCI_MANIFEST, TestApp};

#[tokio::test]
async fn uppercase_name_is_400_name_invalid() {
    let app = TestApp::new().await;
    app.get("/v2/Library/tags/list")
        .send()
        .await
        .assert_error(400, "NAME_INVALID");
}

#[tokio::test]
async fn dot_dot_component_is_400_name_invalid() {
    let app = TestApp::new().await;
    app.get("/v2/a/../b/manifests/latest")
        .send()
        .await
        .assert_error(400, "NAME_INVALID");
}

#[tokio::test]
async fn empty_component_is_400_name_invalid() {
    let app = TestApp::new().await;
    app.post("/v2/a//b/blobs/uploads/")
        .send()
        .await
        .assert_error(400, "NAME_INVALID");
}

#[tokio::test]
async fn name_over_255_characters_is_400_name_invalid() {
    let app = TestApp::new().await;
    let name = format!("{}/{}", "a".repeat(200), "b".repeat(60));
    app.get(format!("/v2/{name}/tags/list"))
        .send()
        .await
        .assert_error(400, "NAME_INVALID");
}

#[tokio::test]
async fn name_of_exactly_255_characters_is_accepted() {
    let app = TestApp::new().await;
    let name = format!("{}/{}", "a".repeat(200), "b".repeat(54));
    let response = app.post(format!("/v2/{name}/blobs/uploads/")).send().await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn name_with_invalid_characters_is_400_name_invalid() {
    let app = TestApp::new().await;
    app.post("/v2/a_-b/blobs/uploads/")
        .send()
        .await
        .assert_error(400, "NAME_INVALID");
}

#[tokio::test]
async fn invalid_name_on_a_manifest_push_is_400_name_invalid() {
    let app = TestApp::new().await;
    app.put_manifest("Bad/Name", "v1", OCI_MANIFEST, b"{}".to_vec())
        .await
        .assert_error(400, "NAME_INVALID");
}

#[tokio::test]
async fn multi_component_name_round_trips_a_manifest() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("library/x/y", "v1", "a").await;
    let response = app.get("/v2/library/x/y/manifests/v1").send().await;
    assert_eq!(
        (response.status, response.header("docker-content-digest")),
        (StatusCode::OK, digest.as_str())
    );
}

#[tokio::test]
async fn multi_component_name_lists_its_tags() {
    let app = TestApp::new().await;
    app.push_image("library/x/y", "v1", "a").await;
    let body = app.get("/v2/library/x/y/tags/list").send().await.json();
    assert_eq!(
        (body["name"].as_str(), body["tags"].clone()),
        (Some("library/x/y"), serde_json::json!(["v1"]))
    );
}

#[tokio::test]
async fn name_containing_endpoint_keywords_works() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("a/manifests/blobs", "v1", "a").await;
    let response = app.get("/v2/a/manifests/blobs/manifests/v1").send().await;
    assert_eq!(response.header("docker-content-digest"), digest);
}

#[tokio::test]
async fn names_with_separators_are_accepted() {
    let app = TestApp::new().await;
    let response = app
        .post("/v2/my.org/some-repo__x/a_b/blobs/uploads/")
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
}
