//! The referrers API: an image index of the manifests whose `subject` is a digest, with
//! the `artifactType` filter.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{OCI_INDEX, OCI_MANIFEST, TestApp, descriptor, sha256, to_bytes};
use crate::manifests::artifact;

/// Push an image and an artifact referring to it; returns (subject, artifact digest,
/// artifact size).
async fn image_with_artifact(app: &TestApp, artifact_type: &str) -> (String, String, usize) {
    let (subject, subject_bytes) = app.push_image("repo", "v1", "a").await;
    app.push_blob("repo", b"{}").await;
    app.push_blob("repo", artifact_type.as_bytes()).await;
    let manifest = artifact(
        &subject,
        subject_bytes.len(),
        artifact_type,
        artifact_type.as_bytes(),
    );
    let size = manifest.len();
    let digest = app
        .push_manifest("repo", &sha256(&manifest), OCI_MANIFEST, manifest)
        .await;
    (subject, digest, size)
}

#[tokio::test]
async fn referrers_answers_200_with_an_image_index() {
    let app = TestApp::new().await;
    let (subject, _, _) = image_with_artifact(&app, "application/x.sig").await;
    let response = app
        .get(format!("/v2/repo/referrers/{subject}"))
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            response.header("content-type"),
            response.json()["mediaType"].clone(),
            response.json()["schemaVersion"].clone()
        ),
        (StatusCode::OK, OCI_INDEX, json!(OCI_INDEX), json!(2))
    );
}

#[tokio::test]
async fn referrers_lists_the_artifact_descriptor() {
    let app = TestApp::new().await;
    let (subject, digest, size) = image_with_artifact(&app, "application/x.sig").await;
    let body = app
        .get(format!("/v2/repo/referrers/{subject}"))
        .send()
        .await
        .json();
    assert_eq!(
        body["manifests"],
        json!([{
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": size,
            "artifactType": "application/x.sig",
            "annotations": { "org.example.kind": "application/x.sig" },
        }])
    );
}

#[tokio::test]
async fn referrers_lists_every_artifact_of_the_subject() {
    let app = TestApp::new().await;
    let (subject, _, _) = image_with_artifact(&app, "application/x.sig").await;
    image_with_artifact(&app, "application/x.sbom").await;
    let body = app
        .get(format!("/v2/repo/referrers/{subject}"))
        .send()
        .await
        .json();
    let mut listed: Vec<_> = body["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["artifactType"].as_str().expect("artifactType").to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["application/x.sbom", "application/x.sig"]);
}

#[tokio::test]
async fn artifact_type_filter_keeps_only_matching_referrers() {
    let app = TestApp::new().await;
    let (subject, _, _) = image_with_artifact(&app, "application/x.sig").await;
    let (_, sbom, _) = image_with_artifact(&app, "application/x.sbom").await;
    let body = app
        .get(format!(
            "/v2/repo/referrers/{subject}?artifactType=application/x.sbom"
        ))
        .send()
        .await
        .json();
    let digests: Vec<_> = body["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["digest"].clone())
        .collect();
    assert_eq!(digests, [json!(sbom)]);
}

#[tokio::test]
async fn artifact_type_filter_is_reported_in_oci_filters_applied() {
    let app = TestApp::new().await;
    let (subject, _, _) = image_with_artifact(&app, "application/x.sig").await;
    let response = app
        .get(format!(
            "/v2/repo/referrers/{subject}?artifactType=application%2Fx.sig"
        ))
        .send()
        .await;
    assert_eq!(response.header("oci-filters-applied"), "artifactType");
}

#[tokio::test]
async fn unfiltered_referrers_have_no_oci_filters_applied() {
    let app = TestApp::new().await;
    let (subject, _, _) = image_with_artifact(&app, "application/x.sig").await;
    let response = app
        .get(format!("/v2/repo/referrers/{subject}"))
        .send()
        .await;
    assert_eq!(response.maybe_header("oci-filters-applied"), None);
}

#[tokio::test]
async fn referrers_of_a_subject_nothing_refers_to_is_200_and_empty() {
    let app = TestApp::new().await;
    let (subject, _) = app.push_image("repo", "v1", "a").await;
    let response = app
        .get(format!("/v2/repo/referrers/{subject}"))
        .send()
        .await;
    assert_eq!(
        (response.status, response.json()["manifests"].clone()),
        (StatusCode::OK, json!([]))
    );
}

#[tokio::test]
async fn referrers_of_an_unknown_digest_is_200_and_empty() {
    let app = TestApp::new().await;
    let response = app
        .get(format!("/v2/repo/referrers/{}", sha256(b"nothing")))
        .send()
        .await;
    assert_eq!(
        (response.status, response.json()["manifests"].clone()),
        (StatusCode::OK, json!([]))
    );
}

#[tokio::test]
async fn referrers_of_a_subject_pushed_after_its_artifact_are_listed() {
    let app = TestApp::new().await;
    let subject_bytes = app.image_manifest("repo", "later").await;
    let subject = sha256(&subject_bytes);
    app.push_blob("repo", b"{}").await;
    app.push_blob("repo", b"sig").await;
    let manifest = artifact(&subject, subject_bytes.len(), "application/x.sig", b"sig");
    let digest = app
        .push_manifest("repo", &sha256(&manifest), OCI_MANIFEST, manifest)
        .await;
    app.push_manifest("repo", "v1", OCI_MANIFEST, subject_bytes)
        .await;
    let body = app
        .get(format!("/v2/repo/referrers/{subject}"))
        .send()
        .await
        .json();
    assert_eq!(body["manifests"][0]["digest"], json!(digest));
}

#[tokio::test]
async fn deleted_artifact_leaves_the_referrers_list() {
    let app = TestApp::new().await;
    let (subject, digest, _) = image_with_artifact(&app, "application/x.sig").await;
    app.delete(format!("/v2/repo/manifests/{digest}"))
        .send()
        .await;
    let body = app
        .get(format!("/v2/repo/referrers/{subject}"))
        .send()
        .await
        .json();
    assert_eq!(body["manifests"], json!([]));
}

#[tokio::test]
async fn referrers_with_a_malformed_digest_is_400_digest_invalid() {
    let app = TestApp::new().await;
    app.get("/v2/repo/referrers/sha256:xyz")
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn image_referrer_without_artifact_type_reports_its_config_media_type() {
    // Spec: when an image manifest has no artifactType, the referrers descriptor's
    // artifactType is its config descriptor's mediaType.
    let app = TestApp::new().await;
    let (subject, subject_bytes) = app.push_image("repo", "v1", "a").await;
    let config = br#"{"kind":"attestation"}"#;
    app.push_blob("repo", config).await;
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/x.attestation.config+json", config),
        "layers": [],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len() },
    }));
    app.push_manifest("repo", &sha256(&manifest), OCI_MANIFEST, manifest)
        .await;
    let body = app
        .get(format!("/v2/repo/referrers/{subject}"))
        .send()
        .await
        .json();
    assert_eq!(
        body["manifests"][0]["artifactType"],
        json!("application/x.attestation.config+json")
    );
}

#[tokio::test]
async fn index_referrer_is_listed_with_the_index_media_type() {
    let app = TestApp::new().await;
    let (subject, subject_bytes) = app.push_image("repo", "v1", "a").await;
    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/x.bundle",
        "manifests": [],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len() },
    }));
    let digest = app
        .push_manifest("repo", &sha256(&index), OCI_INDEX, index.clone())
        .await;
    let body = app
        .get(format!("/v2/repo/referrers/{subject}"))
        .send()
        .await
        .json();
    assert_eq!(
        body["manifests"],
        json!([{
            "mediaType": OCI_INDEX,
            "digest": digest,
            "size": index.len(),
            "artifactType": "application/x.bundle",
        }])
    );
}

#[tokio::test]
async fn artifact_type_filter_matching_nothing_is_200_empty_with_the_header() {
    let app = TestApp::new().await;
    let (subject, _, _) = image_with_artifact(&app, "application/x.sig").await;
    let response = app
        .get(format!(
            "/v2/repo/referrers/{subject}?artifactType=application/x.other"
        ))
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            response.json()["manifests"].clone(),
            response.header("oci-filters-applied")
        ),
        (StatusCode::OK, json!([]), "artifactType")
    );
}

#[tokio::test]
async fn referrers_are_scoped_to_the_repository() {
    let app = TestApp::new().await;
    let (subject, _, _) = image_with_artifact(&app, "application/x.sig").await;
    let body = app
        .get(format!("/v2/other/referrers/{subject}"))
        .send()
        .await
        .json();
    assert_eq!(body["manifests"], json!([]));
}
