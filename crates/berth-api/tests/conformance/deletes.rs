//! Deleting manifests (by digest and by tag) and blobs, and the 405 when deletes are off.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{TestApp, sha256};

#[tokio::test]
async fn delete_manifest_by_digest_answers_202() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("repo", "v1", "a").await;
    let response = app
        .delete(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn deleted_manifest_is_404_manifest_unknown_by_digest() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("repo", "v1", "a").await;
    app.delete(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await;
    app.get(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn deleting_a_manifest_by_digest_removes_its_tags() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("repo", "v1", "a").await;
    app.delete(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await;
    app.get("/v2/repo/manifests/v1")
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn deleting_a_manifest_by_digest_removes_its_tags_from_the_list() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("repo", "v1", "a").await;
    app.push_image("repo", "other", "b").await;
    app.delete(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await;
    let body = app.get("/v2/repo/tags/list").send().await.json();
    assert_eq!(body["tags"], json!(["other"]));
}

#[tokio::test]
async fn delete_tag_answers_202() {
    let app = TestApp::new().await;
    app.push_image("repo", "v1", "a").await;
    let response = app.delete("/v2/repo/manifests/v1").send().await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn deleted_tag_is_404_manifest_unknown() {
    let app = TestApp::new().await;
    app.push_image("repo", "v1", "a").await;
    app.delete("/v2/repo/manifests/v1").send().await;
    app.get("/v2/repo/manifests/v1")
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn deleting_a_tag_keeps_the_manifest_by_digest() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("repo", "v1", "a").await;
    app.delete("/v2/repo/manifests/v1").send().await;
    let response = app.get(format!("/v2/repo/manifests/{digest}")).send().await;
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test]
async fn deleting_an_unknown_tag_is_404_manifest_unknown() {
    let app = TestApp::new().await;
    app.push_image("repo", "v1", "a").await;
    app.delete("/v2/repo/manifests/v2")
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn deleting_an_unknown_manifest_digest_is_404_manifest_unknown() {
    let app = TestApp::new().await;
    app.delete(format!("/v2/repo/manifests/{}", sha256(b"nothing")))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_blob_answers_202() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"doomed").await;
    let response = app.delete(format!("/v2/repo/blobs/{digest}")).send().await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn deleted_blob_is_404_blob_unknown() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"doomed").await;
    app.delete(format!("/v2/repo/blobs/{digest}")).send().await;
    app.get(format!("/v2/repo/blobs/{digest}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn deleting_a_blob_in_one_repository_keeps_it_in_another() {
    let app = TestApp::new().await;
    let digest = app.push_blob("one", b"shared").await;
    app.push_blob("two", b"shared").await;
    app.delete(format!("/v2/one/blobs/{digest}")).send().await;
    let response = app.get(format!("/v2/two/blobs/{digest}")).send().await;
    assert_eq!(
        (response.status, &response.body[..]),
        (StatusCode::OK, &b"shared"[..])
    );
}

#[tokio::test]
async fn deleting_an_unknown_blob_is_404_blob_unknown() {
    let app = TestApp::new().await;
    app.delete(format!("/v2/repo/blobs/{}", sha256(b"nothing")))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

async fn without_deletes() -> TestApp {
    TestApp::builder().delete_enabled(false).build().await
}

#[tokio::test]
async fn with_deletes_disabled_manifest_delete_is_405_unsupported() {
    let app = without_deletes().await;
    let (digest, _) = app.push_image("repo", "v1", "a").await;
    app.delete(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await
        .assert_error(405, "UNSUPPORTED");
}

#[tokio::test]
async fn with_deletes_disabled_tag_delete_is_405_unsupported() {
    let app = without_deletes().await;
    app.push_image("repo", "v1", "a").await;
    app.delete("/v2/repo/manifests/v1")
        .send()
        .await
        .assert_error(405, "UNSUPPORTED");
}

#[tokio::test]
async fn with_deletes_disabled_blob_delete_is_405_unsupported() {
    let app = without_deletes().await;
    let digest = app.push_blob("repo", b"kept").await;
    app.delete(format!("/v2/repo/blobs/{digest}"))
        .send()
        .await
        .assert_error(405, "UNSUPPORTED");
}

#[tokio::test]
async fn with_deletes_disabled_the_manifest_stays() {
    let app = without_deletes().await;
    app.push_image("repo", "v1", "a").await;
    app.delete("/v2/repo/manifests/v1").send().await;
    let response = app.get("/v2/repo/manifests/v1").send().await;
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test]
async fn with_deletes_disabled_uploads_can_still_be_cancelled() {
    let app = without_deletes().await;
    let location = app.start_upload("repo").await;
    assert_eq!(
        app.delete(&location).send().await.status,
        StatusCode::NO_CONTENT
    );
}
