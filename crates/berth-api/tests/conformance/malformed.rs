//! Malformed references and digests, by one rule (see `berth_core::endpoint`): reading or
//! deleting under a name that cannot exist is 404, as for any name nobody pushed (conformance
//! v1.1.1, registry:2); creating under a bad name is 400 before anything is stored.

use axum::http::StatusCode;
use base64::Engine as _;
use berth_auth::{AuthMode, Htpasswd};

use crate::common::{OCI_MANIFEST, TestApp, sha256, with_digest};

const BAD_REFERENCES: &[&str] = &[
    ".INVALID_NAME",
    "-dash",
    "sha256:baddigeststring",
    "sha256:ABCDEF",
    "md5:abc",
    "sha256:",
];

#[tokio::test]
async fn get_and_head_of_a_malformed_manifest_reference_are_404_manifest_unknown() {
    let app = TestApp::new().await;
    app.push_image("repo", "latest", "a").await;
    for reference in BAD_REFERENCES {
        for request in [
            app.get(format!("/v2/repo/manifests/{reference}")),
            app.head(format!("/v2/repo/manifests/{reference}")),
        ] {
            let response = request.send().await;
            assert_eq!(response.status, StatusCode::NOT_FOUND, "{reference}");
            if !response.body.is_empty() {
                response.assert_error(404, "MANIFEST_UNKNOWN");
            }
        }
    }
}

#[tokio::test]
async fn delete_of_a_malformed_manifest_reference_is_404_manifest_unknown() {
    let app = TestApp::new().await;
    for reference in BAD_REFERENCES {
        app.delete(format!("/v2/repo/manifests/{reference}"))
            .send()
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
}

#[tokio::test]
async fn blob_reads_and_deletes_with_a_malformed_digest_are_404_blob_unknown() {
    let app = TestApp::new().await;
    app.push_blob("repo", b"x").await;
    for digest in ["sha256:nothex", "sha256:abc", "md5:abc", "nodigest"] {
        app.get(format!("/v2/repo/blobs/{digest}"))
            .send()
            .await
            .assert_error(404, "BLOB_UNKNOWN");
        let head = app.head(format!("/v2/repo/blobs/{digest}")).send().await;
        assert_eq!(head.status, StatusCode::NOT_FOUND, "{digest}");
        app.delete(format!("/v2/repo/blobs/{digest}"))
            .send()
            .await
            .assert_error(404, "BLOB_UNKNOWN");
    }
}

#[tokio::test]
async fn manifest_put_under_an_invalid_tag_is_400_tag_invalid_and_stores_nothing() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    app.put_manifest("repo", ".INVALID_NAME", OCI_MANIFEST, manifest.clone())
        .await
        .assert_error(400, "TAG_INVALID");
    app.get(format!("/v2/repo/manifests/{}", sha256(&manifest)))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn manifest_put_under_a_malformed_digest_is_400_digest_invalid() {
    let app = TestApp::new().await;
    let manifest = app.image_manifest("repo", "a").await;
    app.put_manifest("repo", "sha256:baddigeststring", OCI_MANIFEST, manifest)
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn upload_completion_with_a_malformed_digest_is_400_digest_invalid() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.put(with_digest(&location, "sha256:nothex"))
        .body(b"x".to_vec())
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
    app.post("/v2/repo/blobs/uploads/?digest=sha256:nothex")
        .body(b"x".to_vec())
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn referrers_of_a_malformed_subject_is_400_digest_invalid() {
    // The referrers endpoint is the one place the spec says: "a <digest> with an invalid
    // syntax, a 400 Bad Request MUST be returned".
    let app = TestApp::new().await;
    app.get("/v2/repo/referrers/sha256:nothex")
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn a_malformed_reference_is_no_answer_for_a_caller_without_credentials() {
    // Authorization comes first: an anonymous caller of a registry with auth is challenged,
    // and learns nothing from the path.
    let hash = bcrypt::hash("pw", 4).expect("hash");
    let passwords = Htpasswd::parse(&format!("alice:{hash}\n")).expect("htpasswd");
    let app = TestApp::builder()
        .auth(AuthMode::Htpasswd {
            realm: "berth".into(),
            passwords,
        })
        .build()
        .await;
    app.get("/v2/repo/manifests/.INVALID_NAME")
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:pw");
    app.with_header("authorization", format!("Basic {basic}"))
        .get("/v2/repo/manifests/.INVALID_NAME")
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}
