//! `PUT /v2/<name>/manifests/<digest>?tag=…` (distribution-spec main, end-7b): every tag is
//! created in the manifest's transaction and named in an `OCI-Tag` header; an invalid tag
//! refuses the whole push before anything is stored.

use axum::http::StatusCode;

use crate::common::{OCI_MANIFEST, TestApp, sha256};

fn oci_tags(response: &crate::common::TestResponse) -> Vec<String> {
    response
        .headers
        .get_all("oci-tag")
        .iter()
        .flat_map(|v| v.to_str().expect("text").split(','))
        .map(|t| t.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn push_by_digest_with_tags_creates_each_and_names_them_in_oci_tag_headers() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let digest = sha256(&manifest);
    let response = app
        .put(format!(
            "/v2/repo/manifests/{digest}?tag=1.2.3&tag=1.2&tag=latest"
        ))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            response.header("docker-content-digest"),
            oci_tags(&response)
        ),
        (
            StatusCode::CREATED,
            digest.as_str(),
            vec!["1.2.3".to_string(), "1.2".into(), "latest".into()]
        )
    );
    for tag in ["1.2.3", "1.2", "latest"] {
        let got = app.get(format!("/v2/repo/manifests/{tag}")).send().await;
        assert_eq!(
            (got.status, got.header("docker-content-digest")),
            (StatusCode::OK, digest.as_str()),
            "{tag}"
        );
    }
    let tags = app.get("/v2/repo/tags/list").send().await.json();
    assert_eq!(tags["tags"], serde_json::json!(["1.2", "1.2.3", "latest"]));
}

#[tokio::test]
async fn an_invalid_tag_parameter_refuses_the_push_and_stores_nothing() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let digest = sha256(&manifest);
    app.put(format!("/v2/repo/manifests/{digest}?tag=good&tag=.bad"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .assert_error(400, "TAG_INVALID");
    app.get(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    app.get("/v2/repo/manifests/good")
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn a_refused_manifest_creates_none_of_its_tags() {
    // The layer is missing: the manifest and its tags are one transaction.
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let digest = sha256(&manifest);
    app.put(format!("/v2/other/manifests/{digest}?tag=v1"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    app.get("/v2/other/manifests/v1")
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn tag_parameters_move_existing_tags() {
    let app = TestApp::new().await;
    app.push_image("repo", "latest", "old").await;
    let manifest = app.image_manifest("repo", "new").await;
    let digest = sha256(&manifest);
    let response = app
        .put(format!("/v2/repo/manifests/{digest}?tag=latest"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await;
    assert_eq!(oci_tags(&response), vec!["latest".to_string()]);
    let got = app.head("/v2/repo/manifests/latest").send().await;
    assert_eq!(got.header("docker-content-digest"), digest);
}

#[tokio::test]
async fn tag_parameters_on_a_push_by_tag_are_400_tag_invalid() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    app.put("/v2/repo/manifests/v1?tag=v2")
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .assert_error(400, "TAG_INVALID");
}

#[tokio::test]
async fn a_push_without_tag_parameters_has_no_oci_tag_header() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let response = app
        .put_manifest("repo", &sha256(&manifest), OCI_MANIFEST, manifest)
        .await;
    assert_eq!(response.maybe_header("oci-tag"), None);
}

#[tokio::test]
async fn too_many_tag_parameters_are_refused() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let query: Vec<String> = (0..=berth_core::endpoint::MAX_TAGS_PER_PUSH)
        .map(|i| format!("tag=t{i}"))
        .collect();
    app.put(format!(
        "/v2/repo/manifests/{}?{}",
        sha256(&manifest),
        query.join("&")
    ))
    .header("content-type", OCI_MANIFEST)
    .body(manifest)
    .send()
    .await
    .assert_error(400, "TAG_INVALID");
}
