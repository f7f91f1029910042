//! The API version check, the version header on every response, and requests that match
//! no endpoint.

use axum::http::{Method, StatusCode};

use crate::common::TestApp;

#[tokio::test]
async fn base_endpoint_answers_200_with_the_api_version() {
    let app = TestApp::new().await;
    let response = app.get("/v2/").send().await;
    assert_eq!(
        (
            response.status,
            response.header("docker-distribution-api-version")
        ),
        (StatusCode::OK, "registry/2.0")
    );
}

#[tokio::test]
async fn base_endpoint_without_trailing_slash_answers_200() {
    let app = TestApp::new().await;
    assert_eq!(app.get("/v2").send().await.status, StatusCode::OK);
}

#[tokio::test]
async fn head_on_the_base_endpoint_answers_200() {
    let app = TestApp::new().await;
    assert_eq!(app.head("/v2/").send().await.status, StatusCode::OK);
}

#[tokio::test]
async fn error_responses_carry_the_api_version_header() {
    let app = TestApp::new().await;
    let response = app.get("/v2/nothing/here/manifests/latest").send().await;
    assert_eq!(
        (
            response.status,
            response.header("docker-distribution-api-version")
        ),
        (StatusCode::NOT_FOUND, "registry/2.0")
    );
}

#[tokio::test]
async fn errors_are_the_spec_json_with_code_message_and_detail() {
    let app = TestApp::new().await;
    let body = app.get("/v2/repo/manifests/latest").send().await.json();
    let error = &body["errors"][0];
    assert!(
        error["code"].is_string() && error["message"].is_string() && error.get("detail").is_some(),
        "{body}"
    );
}

#[tokio::test]
async fn error_responses_are_json() {
    let app = TestApp::new().await;
    let response = app.get("/v2/repo/manifests/latest").send().await;
    assert_eq!(response.header("content-type"), "application/json");
}

#[tokio::test]
async fn unknown_path_under_v2_is_404() {
    let app = TestApp::new().await;
    assert_eq!(
        app.get("/v2/repo/unknown").send().await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn method_not_allowed_on_tags_list_is_405_unsupported() {
    let app = TestApp::new().await;
    app.post("/v2/repo/tags/list")
        .send()
        .await
        .assert_error(405, "UNSUPPORTED");
}

#[tokio::test]
async fn method_not_allowed_on_manifests_is_405() {
    let app = TestApp::new().await;
    let response = app
        .request(Method::PATCH, "/v2/repo/manifests/latest")
        .send()
        .await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn method_not_allowed_on_blobs_is_405() {
    let app = TestApp::new().await;
    let digest = crate::common::sha256(b"x");
    let response = app.post(format!("/v2/repo/blobs/{digest}")).send().await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn method_not_allowed_on_the_base_endpoint_is_405() {
    let app = TestApp::new().await;
    assert_eq!(
        app.delete("/v2/").send().await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn method_not_allowed_on_an_upload_session_is_405() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let response = app.post(location).send().await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn readyz_says_which_store_fails_and_recovers() {
    let app = TestApp::new().await;
    let ready = app.get("/readyz").send().await;
    assert_eq!(ready.status, StatusCode::OK);
    // The blob store's root replaced by a file: lookups fail, and readiness names it.
    let blobs = app.data_dir().join("blobs");
    let moved = app.data_dir().join("blobs.moved");
    std::fs::rename(&blobs, &moved).expect("move");
    std::fs::write(&blobs, b"not a directory").expect("file");
    let broken = app.get("/readyz").send().await;
    assert_eq!(broken.status, StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8_lossy(&broken.body).into_owned();
    assert!(text.contains("blob storage"), "{text}");
    // Liveness is not readiness: the process still answers.
    assert_eq!(app.get("/healthz").send().await.status, StatusCode::OK);
    std::fs::remove_file(&blobs).expect("remove");
    std::fs::rename(&moved, &blobs).expect("restore");
    assert_eq!(app.get("/readyz").send().await.status, StatusCode::OK);
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::new().await;
    let response = app.get("/healthz").send().await;
    assert_eq!(
        (response.status, &response.body[..]),
        (StatusCode::OK, &b"ok"[..])
    );
}
