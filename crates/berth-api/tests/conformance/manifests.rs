//! Pushing manifests: every supported kind, reference checks, validation errors, the size
//! limit, digest references and byte-exact storage.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{
    DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_EMPTY,
    OCI_INDEX, OCI_LAYER, OCI_MANIFEST, TestApp, descriptor, sha256, sha512, to_bytes,
};

#[tokio::test]
async fn oci_image_manifest_push_answers_201_with_location_and_digest() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let response = app
        .put_manifest("repo", "v1", OCI_MANIFEST, manifest.clone())
        .await;
    let digest = sha256(&manifest);
    assert_eq!(
        (
            response.status,
            response.location(),
            response.header("docker-content-digest")
        ),
        (
            StatusCode::CREATED,
            format!("/v2/repo/manifests/{digest}"),
            digest.as_str()
        )
    );
}

#[tokio::test]
async fn oci_manifest_without_subject_has_no_oci_subject_header() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let response = app.put_manifest("repo", "v1", OCI_MANIFEST, manifest).await;
    assert_eq!(response.maybe_header("oci-subject"), None);
}

#[tokio::test]
async fn oci_manifest_push_by_digest_answers_201() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let digest = sha256(&manifest);
    let response = app
        .put_manifest("repo", &digest, OCI_MANIFEST, manifest)
        .await;
    assert_eq!(
        (response.status, response.header("docker-content-digest")),
        (StatusCode::CREATED, digest.as_str())
    );
}

#[tokio::test]
async fn manifest_push_by_wrong_digest_is_400_digest_invalid() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    app.put_manifest("repo", &sha256(b"something else"), OCI_MANIFEST, manifest)
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn manifest_pushed_by_sha512_digest_is_retrievable_by_it() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let digest = sha512(&manifest);
    app.push_manifest("repo", &digest, OCI_MANIFEST, manifest.clone())
        .await;
    let response = app.get(format!("/v2/repo/manifests/{digest}")).send().await;
    assert_eq!(
        (
            response.status,
            response.header("docker-content-digest"),
            response.body.to_vec()
        ),
        (StatusCode::OK, digest.as_str(), manifest)
    );
}

#[tokio::test]
async fn manifest_pushed_by_sha512_then_by_tag_answers_the_tag_with_sha512() {
    // As the conformance suite pushes: by digest first, then the same bytes by tag. The tag
    // answers with the digest the manifest was pushed under, on PUT, GET and HEAD.
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let digest = sha512(&manifest);
    app.push_manifest("repo", &digest, OCI_MANIFEST, manifest.clone())
        .await;
    let pushed = app
        .put_manifest("repo", "v1", OCI_MANIFEST, manifest.clone())
        .await;
    assert_eq!(
        (
            pushed.status,
            pushed.header("docker-content-digest"),
            pushed.location()
        ),
        (
            StatusCode::CREATED,
            digest.as_str(),
            format!("/v2/repo/manifests/{digest}")
        )
    );
    for head in [false, true] {
        let request = if head {
            app.head("/v2/repo/manifests/v1")
        } else {
            app.get("/v2/repo/manifests/v1")
        };
        let response = request.send().await;
        assert_eq!(
            (response.status, response.header("docker-content-digest")),
            (StatusCode::OK, digest.as_str()),
            "head={head}"
        );
    }
}

#[tokio::test]
async fn manifest_pushed_by_sha512_with_tag_parameters_answers_the_tags_with_sha512() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let digest = sha512(&manifest);
    let response = app
        .put(format!("/v2/repo/manifests/{digest}?tag=v1"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    let got = app.head("/v2/repo/manifests/v1").send().await;
    assert_eq!(got.header("docker-content-digest"), digest);
}

#[tokio::test]
async fn referrer_pushed_by_sha512_is_listed_with_its_sha512_digest() {
    let app = TestApp::new().await;
    let (subject, subject_bytes) = app.push_image("repo", "v1", "a").await;
    app.push_blob("repo", b"{}").await;
    app.push_blob("repo", b"signature").await;
    let manifest = artifact(
        &subject,
        subject_bytes.len(),
        "application/x.sig",
        b"signature",
    );
    let digest = sha512(&manifest);
    app.push_manifest("repo", &digest, OCI_MANIFEST, manifest.clone())
        .await;
    app.push_manifest("repo", "sig", OCI_MANIFEST, manifest)
        .await;
    let listing = app
        .get(format!("/v2/repo/referrers/{subject}"))
        .send()
        .await
        .json();
    let listed: Vec<&str> = listing["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["digest"].as_str().expect("digest"))
        .collect();
    assert_eq!(listed, vec![digest.as_str()]);
}

#[tokio::test]
async fn manifest_referencing_a_missing_layer_is_400_manifest_blob_unknown() {
    let app = TestApp::new().await;
    let config = b"{}";
    app.push_blob("repo", config).await;
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, b"never pushed")],
    }));
    app.put_manifest("repo", "v1", OCI_MANIFEST, manifest)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn manifest_referencing_a_missing_config_is_400_manifest_blob_unknown() {
    let app = TestApp::new().await;
    app.push_blob("repo", b"layer").await;
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, b"never pushed"),
        "layers": [descriptor(OCI_LAYER, b"layer")],
    }));
    app.put_manifest("repo", "v1", OCI_MANIFEST, manifest)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn manifest_referencing_a_blob_of_another_repository_is_400_manifest_blob_unknown() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("elsewhere", "a").await;
    app.put_manifest("repo", "v1", OCI_MANIFEST, manifest)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn rejected_manifest_is_not_stored() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("elsewhere", "a").await;
    app.put_manifest("repo", "v1", OCI_MANIFEST, manifest).await;
    let response = app.get("/v2/repo/manifests/v1").send().await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
}

fn index_of(children: &[&[u8]]) -> Vec<u8> {
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children
            .iter()
            .map(|c| {
                let mut d = descriptor(OCI_MANIFEST, c);
                d["platform"] = json!({ "architecture": "amd64", "os": "linux" });
                d
            })
            .collect::<Vec<_>>(),
    }))
}

#[tokio::test]
async fn oci_index_with_existing_children_answers_201() {
    let app = TestApp::new().await;
    let (_, a) = app.push_image("repo", "a", "a").await;
    let (_, b) = app.push_image("repo", "b", "b").await;
    let response = app
        .put_manifest("repo", "multi", OCI_INDEX, index_of(&[&a, &b]))
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
}

#[tokio::test]
async fn oci_index_is_served_with_its_media_type() {
    let app = TestApp::new().await;
    let (_, a) = app.push_image("repo", "a", "a").await;
    app.push_manifest("repo", "multi", OCI_INDEX, index_of(&[&a]))
        .await;
    let response = app.get("/v2/repo/manifests/multi").send().await;
    assert_eq!(response.header("content-type"), OCI_INDEX);
}

#[tokio::test]
async fn oci_index_with_a_missing_child_is_400_manifest_blob_unknown() {
    let app = TestApp::new().await;
    let (_, a) = app.push_image("repo", "a", "a").await;
    let missing = app
        .image_manifest("repo", "never pushed as a manifest")
        .await;
    app.put_manifest("repo", "multi", OCI_INDEX, index_of(&[&a, &missing]))
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn oci_index_may_be_empty() {
    let app = TestApp::new().await;
    let response = app
        .put_manifest("repo", "empty", OCI_INDEX, index_of(&[]))
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
}

async fn docker_manifest(app: &TestApp, seed: &str) -> Vec<u8> {
    let config = format!(r#"{{"os":"linux","seed":"{seed}"}}"#);
    let layer = format!("docker layer {seed}");
    app.push_blob("repo", config.as_bytes()).await;
    app.push_blob("repo", layer.as_bytes()).await;
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config.as_bytes()),
        "layers": [descriptor(DOCKER_LAYER, layer.as_bytes())],
    }))
}

#[tokio::test]
async fn docker_schema2_manifest_is_accepted_and_served_with_its_type() {
    let app = TestApp::new().await;
    let manifest = docker_manifest(&app, "a").await;
    app.push_manifest("repo", "docker", DOCKER_MANIFEST, manifest)
        .await;
    let response = app
        .get("/v2/repo/manifests/docker")
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await;
    assert_eq!(
        (response.status, response.header("content-type")),
        (StatusCode::OK, DOCKER_MANIFEST)
    );
}

#[tokio::test]
async fn docker_manifest_list_is_accepted_and_served_with_its_type() {
    let app = TestApp::new().await;
    let child = docker_manifest(&app, "a").await;
    app.push_manifest("repo", "child", DOCKER_MANIFEST, child.clone())
        .await;
    let list = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [{
            "mediaType": DOCKER_MANIFEST,
            "digest": sha256(&child),
            "size": child.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
        }],
    }));
    app.push_manifest("repo", "list", DOCKER_MANIFEST_LIST, list)
        .await;
    let response = app.get("/v2/repo/manifests/list").send().await;
    assert_eq!(response.header("content-type"), DOCKER_MANIFEST_LIST);
}

#[tokio::test]
async fn docker_manifest_list_with_a_missing_child_is_400_manifest_blob_unknown() {
    let app = TestApp::new().await;
    let list = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [descriptor(DOCKER_MANIFEST, b"never pushed")],
    }));
    app.put_manifest("repo", "list", DOCKER_MANIFEST_LIST, list)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
}

/// An artifact manifest: `artifactType`, the empty config, and a `subject`.
pub fn artifact(subject: &str, subject_size: usize, artifact_type: &str, layer: &[u8]) -> Vec<u8> {
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": { "mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2, "data": "e30=" },
        "layers": [descriptor("application/octet-stream", layer)],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size },
        "annotations": { "org.example.kind": artifact_type },
    }))
}

#[tokio::test]
async fn artifact_with_subject_answers_201_with_oci_subject() {
    let app = TestApp::new().await;
    let (subject, subject_bytes) = app.push_image("repo", "v1", "a").await;
    app.push_blob("repo", b"{}").await;
    app.push_blob("repo", b"signature").await;
    let manifest = artifact(
        &subject,
        subject_bytes.len(),
        "application/x.sig",
        b"signature",
    );
    let response = app
        .put_manifest("repo", &sha256(&manifest), OCI_MANIFEST, manifest)
        .await;
    assert_eq!(
        (response.status, response.header("oci-subject")),
        (StatusCode::CREATED, subject.as_str())
    );
}

#[tokio::test]
async fn artifact_whose_subject_does_not_exist_is_accepted() {
    let app = TestApp::new().await;
    app.push_blob("repo", b"{}").await;
    app.push_blob("repo", b"signature").await;
    let subject = sha256(b"a manifest pushed later");
    let manifest = artifact(&subject, 23, "application/x.sig", b"signature");
    let response = app
        .put_manifest("repo", &sha256(&manifest), OCI_MANIFEST, manifest)
        .await;
    assert_eq!(
        (response.status, response.header("oci-subject")),
        (StatusCode::CREATED, subject.as_str())
    );
}

#[tokio::test]
async fn malformed_json_is_400_manifest_invalid() {
    let app = TestApp::new().await;
    app.put_manifest("repo", "v1", OCI_MANIFEST, b"{not json".to_vec())
        .await
        .assert_error(400, "MANIFEST_INVALID");
}

#[tokio::test]
async fn json_that_is_not_an_object_is_400_manifest_invalid() {
    let app = TestApp::new().await;
    app.put_manifest("repo", "v1", OCI_MANIFEST, b"[1,2,3]".to_vec())
        .await
        .assert_error(400, "MANIFEST_INVALID");
}

#[tokio::test]
async fn content_type_not_matching_media_type_is_400_manifest_invalid() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    app.put_manifest("repo", "v1", DOCKER_MANIFEST, manifest)
        .await
        .assert_error(400, "MANIFEST_INVALID");
}

#[tokio::test]
async fn manifest_with_a_malformed_layer_descriptor_is_400_manifest_invalid() {
    let app = TestApp::new().await;
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, b"{}"),
        "layers": [{ "mediaType": OCI_LAYER, "digest": "sha256:short", "size": 1 }],
    }));
    app.put_manifest("repo", "v1", OCI_MANIFEST, manifest)
        .await
        .assert_error(400, "MANIFEST_INVALID");
}

#[tokio::test]
async fn schema1_content_type_is_400_manifest_invalid_naming_schema_1() {
    let app = TestApp::new().await;
    let body = br#"{"schemaVersion":1,"name":"repo","tag":"v1","fsLayers":[],"signatures":[]}"#;
    let response = app
        .put_manifest(
            "repo",
            "v1",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            body.to_vec(),
        )
        .await;
    response.assert_error(400, "MANIFEST_INVALID");
    let detail = response.json()["errors"][0]["detail"].to_string();
    assert!(detail.contains("schema 1"), "detail: {detail}");
}

#[tokio::test]
async fn schema_version_1_body_is_400_manifest_invalid_naming_schema_1() {
    let app = TestApp::new().await;
    let body = br#"{"schemaVersion":1,"name":"repo","tag":"v1","fsLayers":[]}"#;
    let response = app
        .put_manifest("repo", "v1", "application/json", body.to_vec())
        .await;
    response.assert_error(400, "MANIFEST_INVALID");
    let detail = response.json()["errors"][0]["detail"].to_string();
    assert!(detail.contains("schema 1"), "detail: {detail}");
}

/// A syntactically valid manifest just over 4 MiB (padded with an annotation).
fn oversized_manifest() -> Vec<u8> {
    let padding = "x".repeat(4 * 1024 * 1024);
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, b"{}"),
        "layers": [],
        "annotations": { "padding": padding },
    }))
}

#[tokio::test]
async fn manifest_over_4_mib_is_413_size_invalid() {
    let app = TestApp::new().await;
    app.put_manifest("repo", "big", OCI_MANIFEST, oversized_manifest())
        .await
        .assert_error(413, "SIZE_INVALID");
}

#[tokio::test]
async fn streamed_manifest_over_4_mib_is_413_size_invalid() {
    let app = TestApp::new().await;
    let body = oversized_manifest();
    let pieces = body.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    app.put("/v2/repo/manifests/big")
        .header("content-type", OCI_MANIFEST)
        .streamed(pieces)
        .send()
        .await
        .assert_error(413, "SIZE_INVALID");
}

#[tokio::test]
async fn manifest_bytes_are_preserved_exactly() {
    let app = TestApp::new().await;
    let config = b"{}";
    app.push_blob("repo", config).await;
    let manifest = format!(
        "{{\n   \"schemaVersion\" :  2,\t\"mediaType\":\"{OCI_MANIFEST}\",\r\n  \"config\": {{ \"size\": 2, \"digest\": \"{}\", \"mediaType\": \"{OCI_CONFIG}\" }},\n\n  \"layers\" : [ ]\n}}\n\n",
        sha256(config)
    )
    .into_bytes();
    app.push_manifest("repo", "spaced", OCI_MANIFEST, manifest.clone())
        .await;
    let response = app.get("/v2/repo/manifests/spaced").send().await;
    assert_eq!(
        (
            response.body.to_vec(),
            response.header("docker-content-digest")
        ),
        (manifest.clone(), sha256(&manifest).as_str())
    );
}

#[tokio::test]
async fn pushing_the_same_manifest_twice_answers_201_both_times() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    app.push_manifest("repo", "v1", OCI_MANIFEST, manifest.clone())
        .await;
    let response = app.put_manifest("repo", "v1", OCI_MANIFEST, manifest).await;
    assert_eq!(response.status, StatusCode::CREATED);
}

#[tokio::test]
async fn pushing_a_tag_again_moves_it_to_the_new_manifest() {
    let app = TestApp::new().await;
    app.push_image("repo", "v1", "a").await;
    let (second, _) = app.push_image("repo", "v1", "b").await;
    let response = app.head("/v2/repo/manifests/v1").send().await;
    assert_eq!(response.header("docker-content-digest"), second);
}

#[tokio::test]
async fn manifest_without_media_type_takes_it_from_content_type() {
    let app = TestApp::new().await;
    let config = b"{}";
    app.push_blob("repo", config).await;
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [],
    }));
    app.push_manifest("repo", "v1", OCI_MANIFEST, manifest)
        .await;
    let response = app.get("/v2/repo/manifests/v1").send().await;
    assert_eq!(response.header("content-type"), OCI_MANIFEST);
}

#[tokio::test]
async fn invalid_tag_is_rejected_with_400() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let response = app
        .put_manifest("repo", "-starts-with-dash", OCI_MANIFEST, manifest)
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn manifest_of_exactly_4_mib_is_accepted() {
    // The spec asks registries to accept manifests of at least 4 MiB.
    let app = TestApp::new().await;
    app.push_blob("repo", b"{}").await;
    let skeleton = |padding: &str| {
        to_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, b"{}"),
            "layers": [],
            "annotations": { "padding": padding },
        }))
    };
    let overhead = skeleton("").len();
    let manifest = skeleton(&"x".repeat(4 * 1024 * 1024 - overhead));
    assert_eq!(manifest.len(), 4 * 1024 * 1024);
    let response = app
        .put_manifest("repo", "big", OCI_MANIFEST, manifest)
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
}

#[tokio::test]
async fn index_with_a_subject_answers_201_with_oci_subject() {
    let app = TestApp::new().await;
    let (subject, subject_bytes) = app.push_image("repo", "v1", "a").await;
    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/x.bundle",
        "manifests": [],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len() },
    }));
    let response = app.put_manifest("repo", "bundle", OCI_INDEX, index).await;
    assert_eq!(
        (response.status, response.header("oci-subject")),
        (StatusCode::CREATED, subject.as_str())
    );
}

#[tokio::test]
async fn manifest_pushed_without_content_type_is_served_with_its_body_media_type() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    let response = app.put("/v2/repo/manifests/v1").body(manifest).send().await;
    assert_eq!(response.status, StatusCode::CREATED);
    let pulled = app.get("/v2/repo/manifests/v1").send().await;
    assert_eq!(pulled.header("content-type"), OCI_MANIFEST);
}
