//! Sparse image indexes (`validation.sparse_index`, off by default): an index may name child
//! manifests the repository lacks; pulling a missing child is a 404. Image manifests still
//! need every blob.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{OCI_INDEX, OCI_MANIFEST, TestApp, sha256, to_bytes};

fn index_naming(present: &[u8], absent: &[u8]) -> Vec<u8> {
    let entry = |bytes: &[u8], arch: &str| {
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": sha256(bytes),
            "size": bytes.len(),
            "platform": {"os": "linux", "architecture": arch},
        })
    };
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(present, "amd64"), entry(absent, "arm64")],
    }))
}

#[tokio::test]
async fn by_default_an_index_with_a_missing_child_is_refused() {
    let app = TestApp::new().await;
    let (_, present) = app.push_image("repo", "amd64", "a").await;
    let index = index_naming(&present, b"{\"never\":\"pushed\"}");
    app.put_manifest("repo", "multi", OCI_INDEX, index)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn with_sparse_indexes_on_an_index_with_a_missing_child_is_stored_and_served() {
    let app = TestApp::builder().sparse_index(true).build().await;
    let (present_digest, present) = app.push_image("repo", "amd64", "a").await;
    let absent = b"{\"never\":\"pushed\"}".to_vec();
    let index = index_naming(&present, &absent);
    let digest = app
        .push_manifest("repo", "multi", OCI_INDEX, index.clone())
        .await;
    assert_eq!(digest, sha256(&index));

    let got = app.get("/v2/repo/manifests/multi").send().await;
    assert_eq!(
        (got.status, got.header("content-type"), got.body.to_vec()),
        (StatusCode::OK, OCI_INDEX, index)
    );
    let child = app
        .get(format!("/v2/repo/manifests/{present_digest}"))
        .send()
        .await;
    assert_eq!(child.status, StatusCode::OK);
    app.get(format!("/v2/repo/manifests/{}", sha256(&absent)))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn with_sparse_indexes_on_an_image_manifest_still_needs_every_blob() {
    let app = TestApp::builder().sparse_index(true).build().await;
    let manifest = app.image_manifest("repo", "a").await;
    app.put_manifest("elsewhere", "v1", OCI_MANIFEST, manifest)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
}
