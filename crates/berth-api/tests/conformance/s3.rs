//! Push and pull through berth with blobs in S3 (moto on 127.0.0.1): chunked uploads that
//! cross S3's part size, a session continued after a restart with a fresh S3 store (all it
//! knows comes from the upload session), blob GETs answered with a presigned redirect or
//! streamed with `Range`.

use std::sync::Arc;

use axum::http::StatusCode;
use berth_storage::s3::testing::{S3Server, S3ServerKind};
use berth_storage::{S3BlobStore, S3Settings};

use crate::common::{OCI_MANIFEST, TestApp, sha256, with_digest};

fn s3_store(settings: S3Settings) -> Arc<S3BlobStore> {
    Arc::new(S3BlobStore::new(settings).expect("S3 store"))
}

/// Distinct bytes, so a misplaced chunk shows.
fn layer(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(7) % 253) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_with_blobs_in_s3() {
    let server = S3Server::start(S3ServerKind::Moto);
    let mut app = TestApp::builder()
        .blobs(s3_store(server.settings("registry")))
        .build()
        .await;

    // A 12 MiB layer in 3 MiB PATCHes, with a restart half-way, finished by a PUT.
    let content = layer(12 * 1024 * 1024 + 77);
    let digest = sha256(&content);
    let location = app.start_upload("s3/app").await;
    let mut start = 0;
    for (i, chunk) in content.chunks(3 * 1024 * 1024).enumerate() {
        if i == 2 {
            app = app
                .restart_with_blobs(s3_store(server.settings("registry")))
                .await;
        }
        let end = start + chunk.len() - 1;
        let response = app
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{end}"))
            .body(chunk.to_vec())
            .send()
            .await;
        assert_eq!(response.status, StatusCode::ACCEPTED, "chunk {start}-{end}");
        start = end + 1;
    }
    let response = app.put(with_digest(&location, &digest)).send().await;
    assert_eq!(response.status, StatusCode::CREATED, "complete");

    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = app.push_blob("s3/app", config).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": content.len()}],
    }))
    .expect("json");
    app.push_manifest("s3/app", "v1", OCI_MANIFEST, manifest)
        .await;

    // HEAD is berth's; GET redirects to a presigned URL that serves the bytes, by range too.
    let head = app.head(format!("/v2/s3/app/blobs/{digest}")).send().await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), content.len().to_string());
    assert_eq!(head.header("docker-content-digest"), digest);
    let get = app.get(format!("/v2/s3/app/blobs/{digest}")).send().await;
    assert_eq!(get.status, StatusCode::TEMPORARY_REDIRECT);
    let url = get.header("location").to_owned();
    assert!(url.starts_with(&server.endpoint), "{url}");
    let client = reqwest::Client::new();
    let pulled = client.get(&url).send().await.expect("GET presigned");
    assert_eq!(pulled.status(), 200);
    assert!(
        pulled.bytes().await.expect("body") == content,
        "pulled bytes differ"
    );
    let ranged = client
        .get(&url)
        .header("range", "bytes=5242870-5242889")
        .send()
        .await
        .expect("GET presigned range");
    assert_eq!(ranged.status(), 206);
    assert!(ranged.bytes().await.expect("body") == content[5_242_870..5_242_890]);

    // A blob another repository cannot see is not redirected to.
    app.get(format!("/v2/s3/other/blobs/{digest}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");

    // Streaming instead of redirecting (private networks), with Range.
    let streaming = app
        .restart_with_blobs(s3_store(S3Settings {
            redirect: false,
            ..server.settings("registry")
        }))
        .await;
    let whole = streaming
        .get(format!("/v2/s3/app/blobs/{digest}"))
        .send()
        .await;
    assert_eq!(whole.status, StatusCode::OK);
    assert!(whole.body == content, "streamed bytes differ");
    let ranged = streaming
        .get(format!("/v2/s3/app/blobs/{digest}"))
        .header("range", "bytes=100-199")
        .send()
        .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert!(ranged.body == content[100..200]);
    let manifest = streaming.get("/v2/s3/app/manifests/v1").send().await;
    assert_eq!(manifest.status, StatusCode::OK);
}
