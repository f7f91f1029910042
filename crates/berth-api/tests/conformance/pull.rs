//! Pulling: manifests by tag and by digest (GET and HEAD), Accept negotiation, blobs with
//! and without `Range`, and the not-found errors.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{
    DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, TestApp, descriptor, sha256, to_bytes,
};

#[tokio::test]
async fn get_manifest_by_tag_returns_the_pushed_bytes() {
    let app = TestApp::new().await;
    let (_, manifest) = app.push_image("repo", "v1", "a").await;
    let response = app.get("/v2/repo/manifests/v1").send().await;
    assert_eq!(
        (response.status, response.body.to_vec()),
        (StatusCode::OK, manifest)
    );
}

#[tokio::test]
async fn get_manifest_by_tag_has_content_type_digest_and_length() {
    let app = TestApp::new().await;
    let (digest, manifest) = app.push_image("repo", "v1", "a").await;
    let response = app.get("/v2/repo/manifests/v1").send().await;
    assert_eq!(
        (
            response.header("content-type"),
            response.header("docker-content-digest"),
            response.header("content-length")
        ),
        (
            OCI_MANIFEST,
            digest.as_str(),
            manifest.len().to_string().as_str()
        )
    );
}

#[tokio::test]
async fn get_manifest_by_digest_returns_the_pushed_bytes() {
    let app = TestApp::new().await;
    let (digest, manifest) = app.push_image("repo", "v1", "a").await;
    let response = app.get(format!("/v2/repo/manifests/{digest}")).send().await;
    assert_eq!(
        (response.status, response.body.to_vec()),
        (StatusCode::OK, manifest)
    );
}

#[tokio::test]
async fn get_manifest_by_digest_reports_that_digest() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("repo", "v1", "a").await;
    let response = app.get(format!("/v2/repo/manifests/{digest}")).send().await;
    assert_eq!(response.header("docker-content-digest"), digest);
}

#[tokio::test]
async fn pushed_manifest_digest_is_the_sha256_of_its_bytes() {
    let app = TestApp::new().await;
    let (digest, manifest) = app.push_image("repo", "v1", "a").await;
    assert_eq!(digest, sha256(&manifest));
}

#[tokio::test]
async fn head_manifest_by_tag_has_headers_and_no_body() {
    let app = TestApp::new().await;
    let (digest, manifest) = app.push_image("repo", "v1", "a").await;
    let response = app.head("/v2/repo/manifests/v1").send().await;
    assert_eq!(
        (
            response.status,
            response.header("content-type"),
            response.header("docker-content-digest"),
            response.header("content-length").to_owned(),
            response.body.len()
        ),
        (
            StatusCode::OK,
            OCI_MANIFEST,
            digest.as_str(),
            manifest.len().to_string(),
            0
        )
    );
}

#[tokio::test]
async fn head_manifest_by_digest_answers_200_without_body() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("repo", "v1", "a").await;
    let response = app
        .head(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await;
    assert_eq!((response.status, response.body.len()), (StatusCode::OK, 0));
}

#[tokio::test]
async fn unknown_tag_is_404_manifest_unknown() {
    let app = TestApp::new().await;
    app.push_image("repo", "v1", "a").await;
    app.get("/v2/repo/manifests/v2")
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn unknown_manifest_digest_is_404_manifest_unknown() {
    let app = TestApp::new().await;
    app.push_image("repo", "v1", "a").await;
    app.get(format!("/v2/repo/manifests/{}", sha256(b"nothing")))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn head_unknown_manifest_is_404() {
    let app = TestApp::new().await;
    let response = app.head("/v2/repo/manifests/v1").send().await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn manifest_of_another_repository_is_not_visible() {
    let app = TestApp::new().await;
    let (digest, _) = app.push_image("one", "v1", "a").await;
    app.get(format!("/v2/two/manifests/{digest}"))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

async fn push_index(app: &TestApp) -> String {
    let (_, child) = app.push_image("repo", "child", "a").await;
    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &child)],
    }));
    app.push_manifest("repo", "multi", OCI_INDEX, index).await
}

#[tokio::test]
async fn index_requested_with_only_a_docker_accept_is_404_manifest_unknown() {
    let app = TestApp::new().await;
    push_index(&app).await;
    app.get("/v2/repo/manifests/multi")
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn index_requested_without_accept_is_served() {
    let app = TestApp::new().await;
    push_index(&app).await;
    let response = app.get("/v2/repo/manifests/multi").send().await;
    assert_eq!(
        (response.status, response.header("content-type")),
        (StatusCode::OK, OCI_INDEX)
    );
}

#[tokio::test]
async fn index_requested_with_an_accept_listing_it_is_served() {
    let app = TestApp::new().await;
    push_index(&app).await;
    let response = app
        .get("/v2/repo/manifests/multi")
        .header("accept", format!("{DOCKER_MANIFEST}, {OCI_INDEX};q=0.5"))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test]
async fn get_blob_returns_its_bytes() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"hello blob").await;
    let response = app.get(format!("/v2/repo/blobs/{digest}")).send().await;
    assert_eq!(
        (response.status, &response.body[..]),
        (StatusCode::OK, &b"hello blob"[..])
    );
}

#[tokio::test]
async fn get_blob_has_digest_and_length_headers() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"hello blob").await;
    let response = app.get(format!("/v2/repo/blobs/{digest}")).send().await;
    assert_eq!(
        (
            response.header("docker-content-digest"),
            response.header("content-length")
        ),
        (digest.as_str(), "10")
    );
}

#[tokio::test]
async fn head_blob_has_length_and_digest_and_no_body() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"hello blob").await;
    let response = app.head(format!("/v2/repo/blobs/{digest}")).send().await;
    assert_eq!(
        (
            response.status,
            response.header("content-length"),
            response.header("docker-content-digest"),
            response.body.len()
        ),
        (StatusCode::OK, "10", digest.as_str(), 0)
    );
}

#[tokio::test]
async fn range_get_answers_206_with_the_slice_and_content_range() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"0123456789").await;
    let response = app
        .get(format!("/v2/repo/blobs/{digest}"))
        .header("range", "bytes=2-5")
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            &response.body[..],
            response.header("content-range"),
            response.header("content-length")
        ),
        (
            StatusCode::PARTIAL_CONTENT,
            &b"2345"[..],
            "bytes 2-5/10",
            "4"
        )
    );
}

#[tokio::test]
async fn open_ended_range_returns_the_tail() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"0123456789").await;
    let response = app
        .get(format!("/v2/repo/blobs/{digest}"))
        .header("range", "bytes=7-")
        .send()
        .await;
    assert_eq!(
        (response.status, &response.body[..]),
        (StatusCode::PARTIAL_CONTENT, &b"789"[..])
    );
}

#[tokio::test]
async fn unsatisfiable_range_is_416_with_the_blob_size() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"0123456789").await;
    let response = app
        .get(format!("/v2/repo/blobs/{digest}"))
        .header("range", "bytes=10-20")
        .send()
        .await;
    assert_eq!(
        (response.status, response.header("content-range")),
        (StatusCode::RANGE_NOT_SATISFIABLE, "bytes */10")
    );
}

#[tokio::test]
async fn malformed_range_is_416() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"0123456789").await;
    let response = app
        .get(format!("/v2/repo/blobs/{digest}"))
        .header("range", "bytes=5-2")
        .send()
        .await;
    assert_eq!(response.status, StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn unknown_blob_is_404_blob_unknown() {
    let app = TestApp::new().await;
    app.get(format!("/v2/repo/blobs/{}", sha256(b"never pushed")))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn head_unknown_blob_is_404() {
    let app = TestApp::new().await;
    let response = app
        .head(format!("/v2/repo/blobs/{}", sha256(b"never pushed")))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn blob_of_another_repository_is_not_visible() {
    let app = TestApp::new().await;
    let digest = app.push_blob("one", b"private").await;
    app.get(format!("/v2/two/blobs/{digest}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn accept_types_spread_over_several_header_lines_are_all_honoured() {
    // Docker, skopeo and podman send one Accept line per media type.
    let app = TestApp::new().await;
    push_index(&app).await;
    let response = app
        .get("/v2/repo/manifests/multi")
        .header("accept", DOCKER_MANIFEST)
        .header("accept", OCI_INDEX)
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test]
async fn head_with_a_range_is_206_without_body() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"0123456789").await;
    let response = app
        .head(format!("/v2/repo/blobs/{digest}"))
        .header("range", "bytes=0-3")
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            response.header("content-length"),
            response.body.len()
        ),
        (StatusCode::PARTIAL_CONTENT, "4", 0)
    );
}
