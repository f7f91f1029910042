//! Pushing blobs: monolithic, single-request, chunked and streamed uploads, session status
//! and cancellation, chunk-order errors, digest checks, sha512 and cross-repository mounts.

use axum::http::StatusCode;

use crate::common::{TestApp, sha256, sha512, with_digest};

async fn blob_bytes(app: &TestApp, repo: &str, digest: &str) -> Vec<u8> {
    let response = app.get(format!("/v2/{repo}/blobs/{digest}")).send().await;
    assert_eq!(response.status, StatusCode::OK, "blob {digest} readable");
    response.body.to_vec()
}

#[tokio::test]
async fn post_starts_a_session_with_202_location_and_upload_uuid() {
    let app = TestApp::new().await;
    let response = app.post("/v2/repo/blobs/uploads/").send().await;
    let location = response.location();
    let uuid = response.header("docker-upload-uuid");
    assert_eq!(
        (
            response.status,
            location.starts_with("/v2/repo/blobs/uploads/"),
            location.ends_with(uuid)
        ),
        (StatusCode::ACCEPTED, true, true)
    );
}

#[tokio::test]
async fn monolithic_post_then_put_answers_201_with_location_and_digest() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let digest = sha256(b"monolithic");
    let response = app
        .put(with_digest(&location, &digest))
        .body(b"monolithic".to_vec())
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            response.location(),
            response.header("docker-content-digest")
        ),
        (
            StatusCode::CREATED,
            format!("/v2/repo/blobs/{digest}"),
            digest.as_str()
        )
    );
}

#[tokio::test]
async fn monolithic_upload_is_readable() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"monolithic").await;
    assert_eq!(blob_bytes(&app, "repo", &digest).await, b"monolithic");
}

#[tokio::test]
async fn single_post_with_digest_answers_201() {
    let app = TestApp::new().await;
    let digest = sha256(b"one request");
    let response = app
        .post(format!("/v2/repo/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(b"one request".to_vec())
        .send()
        .await;
    assert_eq!(
        (response.status, response.location()),
        (StatusCode::CREATED, format!("/v2/repo/blobs/{digest}"))
    );
}

#[tokio::test]
async fn single_post_with_digest_is_readable() {
    let app = TestApp::new().await;
    let digest = sha256(b"one request");
    app.post(format!("/v2/repo/blobs/uploads/?digest={digest}"))
        .body(b"one request".to_vec())
        .send()
        .await;
    assert_eq!(blob_bytes(&app, "repo", &digest).await, b"one request");
}

#[tokio::test]
async fn single_post_with_wrong_digest_is_400_digest_invalid() {
    let app = TestApp::new().await;
    app.post(format!(
        "/v2/repo/blobs/uploads/?digest={}",
        sha256(b"other")
    ))
    .body(b"one request".to_vec())
    .send()
    .await
    .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn single_post_with_wrong_digest_leaves_no_blob() {
    let app = TestApp::new().await;
    let claimed = sha256(b"other");
    app.post(format!("/v2/repo/blobs/uploads/?digest={claimed}"))
        .body(b"one request".to_vec())
        .send()
        .await;
    app.get(format!("/v2/repo/blobs/{claimed}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn single_post_with_sha512_digest_answers_201_and_is_readable() {
    let app = TestApp::new().await;
    let digest = sha512(b"sha512 blob");
    let response = app
        .post(format!("/v2/repo/blobs/uploads/?digest={digest}"))
        .body(b"sha512 blob".to_vec())
        .send()
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(blob_bytes(&app, "repo", &digest).await, b"sha512 blob");
}

#[tokio::test]
async fn session_put_with_sha512_digest_answers_201_and_is_readable() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let digest = sha512(b"sha512 session blob");
    let response = app
        .put(with_digest(&location, &digest))
        .body(b"sha512 session blob".to_vec())
        .send()
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(
        blob_bytes(&app, "repo", &digest).await,
        b"sha512 session blob"
    );
}

#[tokio::test]
async fn chunked_session_put_with_wrong_sha512_digest_is_400() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.patch(&location)
        .header("content-range", "0-4")
        .body(b"abcde".to_vec())
        .send()
        .await;
    app.put(with_digest(&location, &sha512(b"abcdX")))
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
}

/// PATCH `chunks` in order with Content-Range; returns the last response.
async fn patch_chunks(
    app: &TestApp,
    location: &str,
    chunks: &[&[u8]],
) -> crate::common::TestResponse {
    let mut start = 0;
    let mut last = None;
    for chunk in chunks {
        let end = start + chunk.len() - 1;
        let response = app
            .patch(location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{end}"))
            .body(chunk.to_vec())
            .send()
            .await;
        assert_eq!(response.status, StatusCode::ACCEPTED, "chunk {start}-{end}");
        start = end + 1;
        last = Some(response);
    }
    last.expect("at least one chunk")
}

#[tokio::test]
async fn chunk_accepted_answers_202_with_range_and_location() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let response = patch_chunks(&app, &location, &[b"0123", b"4567"]).await;
    assert_eq!(
        (response.header("range"), response.location()),
        ("0-7", location)
    );
}

#[tokio::test]
async fn chunked_upload_of_several_chunks_then_put_is_readable() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    patch_chunks(&app, &location, &[b"first-", b"second-", b"third"]).await;
    let digest = sha256(b"first-second-third");
    let response = app.put(with_digest(&location, &digest)).send().await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(
        blob_bytes(&app, "repo", &digest).await,
        b"first-second-third"
    );
}

#[tokio::test]
async fn patch_without_content_range_streams_the_body() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let response = app
        .patch(&location)
        .streamed(vec![b"stream".to_vec(), b"ed ".to_vec(), b"body".to_vec()])
        .send()
        .await;
    assert_eq!(
        (response.status, response.header("range")),
        (StatusCode::ACCEPTED, "0-12")
    );
}

#[tokio::test]
async fn streamed_patch_then_put_is_readable() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.patch(&location)
        .streamed(vec![b"stream".to_vec(), b"ed ".to_vec(), b"body".to_vec()])
        .send()
        .await;
    let digest = sha256(b"streamed body");
    assert_eq!(
        app.put(with_digest(&location, &digest)).send().await.status,
        StatusCode::CREATED
    );
    assert_eq!(blob_bytes(&app, "repo", &digest).await, b"streamed body");
}

#[tokio::test]
async fn final_chunk_in_the_put_body_completes_the_blob() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    patch_chunks(&app, &location, &[b"head-"]).await;
    let digest = sha256(b"head-tail");
    let response = app
        .put(with_digest(&location, &digest))
        .header("content-range", "5-8")
        .body(b"tail".to_vec())
        .send()
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(blob_bytes(&app, "repo", &digest).await, b"head-tail");
}

#[tokio::test]
async fn final_chunk_streamed_in_the_put_body_completes_the_blob() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    patch_chunks(&app, &location, &[b"head-"]).await;
    let digest = sha256(b"head-tail");
    let response = app
        .put(with_digest(&location, &digest))
        .streamed(vec![b"ta".to_vec(), b"il".to_vec()])
        .send()
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
}

#[tokio::test]
async fn out_of_order_chunk_is_416_with_range_and_location() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    patch_chunks(&app, &location, &[b"01234"]).await;
    let response = app
        .patch(&location)
        .header("content-range", "10-14")
        .body(b"abcde".to_vec())
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            response.header("range"),
            response.location()
        ),
        (StatusCode::RANGE_NOT_SATISFIABLE, "0-4", location)
    );
}

#[tokio::test]
async fn retried_chunk_is_416() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    patch_chunks(&app, &location, &[b"01234"]).await;
    let response = app
        .patch(&location)
        .header("content-range", "0-4")
        .body(b"01234".to_vec())
        .send()
        .await;
    assert_eq!(
        (response.status, response.header("range")),
        (StatusCode::RANGE_NOT_SATISFIABLE, "0-4")
    );
}

#[tokio::test]
async fn upload_continues_after_a_rejected_chunk() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    patch_chunks(&app, &location, &[b"01234"]).await;
    app.patch(&location)
        .header("content-range", "0-4")
        .body(b"01234".to_vec())
        .send()
        .await;
    app.patch(&location)
        .header("content-range", "5-9")
        .body(b"56789".to_vec())
        .send()
        .await;
    let digest = sha256(b"0123456789");
    assert_eq!(
        app.put(with_digest(&location, &digest)).send().await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn invalid_content_range_is_416() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let response = app
        .patch(&location)
        .header("content-range", "garbage")
        .body(b"01234".to_vec())
        .send()
        .await;
    assert_eq!(response.status, StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn upload_status_answers_204_with_range_and_upload_uuid() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    patch_chunks(&app, &location, &[b"0123456789"]).await;
    let response = app.get(&location).send().await;
    assert_eq!(
        (
            response.status,
            response.header("range"),
            location.ends_with(response.header("docker-upload-uuid"))
        ),
        (StatusCode::NO_CONTENT, "0-9", true)
    );
}

#[tokio::test]
async fn upload_status_of_a_fresh_session_is_range_0_0() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let response = app.get(&location).send().await;
    assert_eq!(
        (response.status, response.header("range")),
        (StatusCode::NO_CONTENT, "0-0")
    );
}

#[tokio::test]
async fn cancel_upload_answers_204() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    assert_eq!(
        app.delete(&location).send().await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn cancelled_upload_status_is_404_blob_upload_unknown() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.delete(&location).send().await;
    app.get(&location)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn patch_to_a_cancelled_upload_is_404_blob_upload_unknown() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.delete(&location).send().await;
    app.patch(&location)
        .body(b"late".to_vec())
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn unknown_upload_id_is_404_blob_upload_unknown() {
    let app = TestApp::new().await;
    app.get("/v2/repo/blobs/uploads/00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn completed_upload_is_gone() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.put(with_digest(&location, &sha256(b"x")))
        .body(b"x".to_vec())
        .send()
        .await;
    app.get(&location)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn put_without_digest_is_rejected() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let response = app.put(&location).body(b"x".to_vec()).send().await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn digest_mismatch_is_400_digest_invalid() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.put(with_digest(&location, &sha256(b"claimed")))
        .body(b"actual".to_vec())
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn digest_mismatch_leaves_the_claimed_blob_unknown() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let claimed = sha256(b"claimed");
    app.put(with_digest(&location, &claimed))
        .body(b"actual".to_vec())
        .send()
        .await;
    app.get(format!("/v2/repo/blobs/{claimed}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn digest_mismatch_leaves_the_actual_blob_unknown() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.put(with_digest(&location, &sha256(b"claimed")))
        .body(b"actual".to_vec())
        .send()
        .await;
    app.get(format!("/v2/repo/blobs/{}", sha256(b"actual")))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn digest_mismatch_ends_the_session() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.put(with_digest(&location, &sha256(b"claimed")))
        .body(b"actual".to_vec())
        .send()
        .await;
    app.get(&location)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn upload_id_under_another_repository_is_404() {
    let app = TestApp::new().await;
    let location = app.start_upload("one").await;
    let id = location.rsplit('/').next().expect("id");
    app.get(format!("/v2/two/blobs/uploads/{id}"))
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn upload_id_under_another_repository_cannot_complete() {
    let app = TestApp::new().await;
    let location = app.start_upload("one").await;
    let id = location.rsplit('/').next().expect("id");
    let digest = sha256(b"smuggled");
    app.put(format!("/v2/two/blobs/uploads/{id}?digest={digest}"))
        .body(b"smuggled".to_vec())
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn mount_from_a_repository_with_the_blob_answers_201_with_location() {
    let app = TestApp::new().await;
    let digest = app.push_blob("source", b"shared layer").await;
    let response = app
        .post(format!(
            "/v2/target/blobs/uploads/?mount={digest}&from=source"
        ))
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            response.location(),
            response.header("docker-content-digest")
        ),
        (
            StatusCode::CREATED,
            format!("/v2/target/blobs/{digest}"),
            digest.as_str()
        )
    );
}

#[tokio::test]
async fn mounted_blob_is_readable_in_the_target() {
    let app = TestApp::new().await;
    let digest = app.push_blob("source", b"shared layer").await;
    app.post(format!(
        "/v2/target/blobs/uploads/?mount={digest}&from=source"
    ))
    .send()
    .await;
    assert_eq!(blob_bytes(&app, "target", &digest).await, b"shared layer");
}

#[tokio::test]
async fn mount_from_a_repository_lacking_the_blob_opens_a_session() {
    let app = TestApp::new().await;
    app.push_blob("source", b"something else").await;
    let digest = sha256(b"not in source");
    let response = app
        .post(format!(
            "/v2/target/blobs/uploads/?mount={digest}&from=source"
        ))
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            response.location().starts_with("/v2/target/blobs/uploads/")
        ),
        (StatusCode::ACCEPTED, true)
    );
}

#[tokio::test]
async fn mount_without_from_links_a_blob_the_caller_may_pull_elsewhere() {
    // Spec: "The registry MAY treat the from parameter as optional, and it MAY cross-mount
    // the blob if it can be found." In open mode every repository may be pulled.
    let app = TestApp::new().await;
    let digest = app.push_blob("source", b"shared layer").await;
    let response = app
        .post(format!("/v2/target/blobs/uploads/?mount={digest}"))
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            response.location(),
            response.header("docker-content-digest")
        ),
        (
            StatusCode::CREATED,
            format!("/v2/target/blobs/{digest}"),
            digest.as_str()
        )
    );
    assert_eq!(blob_bytes(&app, "target", &digest).await, b"shared layer");
}

#[tokio::test]
async fn mount_without_from_of_a_blob_stored_nowhere_opens_a_session() {
    let app = TestApp::new().await;
    let response = app
        .post(format!(
            "/v2/target/blobs/uploads/?mount={}",
            sha256(b"nowhere")
        ))
        .send()
        .await;
    assert_eq!(
        (
            response.status,
            response.location().starts_with("/v2/target/blobs/uploads/")
        ),
        (StatusCode::ACCEPTED, true)
    );
}

#[tokio::test]
async fn mount_without_from_of_an_unlinked_blob_opens_a_session() {
    // Deleted from its only repository: the bytes may linger until GC, but no repository
    // offers them, so nothing is mounted.
    let app = TestApp::new().await;
    let digest = app.push_blob("source", b"deleted layer").await;
    app.delete(format!("/v2/source/blobs/{digest}"))
        .send()
        .await;
    let response = app
        .post(format!("/v2/target/blobs/uploads/?mount={digest}"))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
    app.get(format!("/v2/target/blobs/{digest}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn upload_cancel_is_204_then_the_session_is_404() {
    // distribution-spec main, end-14: "the response SHOULD be a 204 No Content".
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.patch(&location).body(b"partial".to_vec()).send().await;
    let cancelled = app.delete(&location).send().await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    app.get(&location)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    app.delete(&location)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    app.put(with_digest(&location, &sha256(b"partial")))
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn every_blob_push_answers_201_with_location_and_the_client_digest() {
    // Monolithic POST, POST then PUT, and PATCH then PUT, with sha256 and sha512: the
    // Docker-Content-Digest is the one the client gave, Location names the blob.
    let app = TestApp::new().await;
    for (i, algorithm) in ["sha256", "sha512"].iter().enumerate() {
        let content = format!("blob {i}");
        let digest = if *algorithm == "sha256" {
            sha256(content.as_bytes())
        } else {
            sha512(content.as_bytes())
        };
        let post_only = app
            .post(format!("/v2/a{i}/blobs/uploads/?digest={digest}"))
            .body(content.clone())
            .send()
            .await;
        let location = app.start_upload(&format!("b{i}")).await;
        let post_put = app
            .put(with_digest(&location, &digest))
            .body(content.clone())
            .send()
            .await;
        let location = app.start_upload(&format!("c{i}")).await;
        let patched = app.patch(&location).body(content.clone()).send().await;
        let patch_put = app
            .put(with_digest(&patched.location(), &digest))
            .send()
            .await;
        for (repo, response) in [("a", post_only), ("b", post_put), ("c", patch_put)] {
            assert_eq!(
                (
                    response.status,
                    response.location(),
                    response.header("docker-content-digest")
                ),
                (
                    StatusCode::CREATED,
                    format!("/v2/{repo}{i}/blobs/{digest}"),
                    digest.as_str()
                ),
                "{repo} {algorithm}"
            );
        }
    }
}

#[tokio::test]
async fn digest_algorithm_parameter_opens_a_session_hashing_with_it() {
    // distribution-spec main, end-4c: POST ...?digest-algorithm=sha512, then chunks.
    let app = TestApp::new().await;
    let response = app
        .post("/v2/repo/blobs/uploads/?digest-algorithm=sha512")
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
    let patched = app
        .patch(response.location())
        .body(b"chunk one ".to_vec())
        .send()
        .await;
    let patched = app
        .patch(patched.location())
        .body(b"chunk two".to_vec())
        .send()
        .await;
    let digest = sha512(b"chunk one chunk two");
    let done = app
        .put(with_digest(&patched.location(), &digest))
        .send()
        .await;
    assert_eq!(done.status, StatusCode::CREATED);
    assert_eq!(
        blob_bytes(&app, "repo", &digest).await,
        b"chunk one chunk two"
    );
}

#[tokio::test]
async fn unsupported_digest_algorithm_parameter_is_400_digest_invalid() {
    let app = TestApp::new().await;
    app.post("/v2/repo/blobs/uploads/?digest-algorithm=md5")
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn pushing_an_existing_blob_again_answers_201() {
    let app = TestApp::new().await;
    app.push_blob("repo", b"twice").await;
    let location = app.start_upload("repo").await;
    let response = app
        .put(with_digest(&location, &sha256(b"twice")))
        .body(b"twice".to_vec())
        .send()
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
}

#[tokio::test]
async fn empty_blob_can_be_pushed_and_read() {
    let app = TestApp::new().await;
    let digest = app.push_blob("repo", b"").await;
    let response = app.get(format!("/v2/repo/blobs/{digest}")).send().await;
    assert_eq!(
        (
            response.status,
            response.header("content-length"),
            response.body.len()
        ),
        (StatusCode::OK, "0", 0)
    );
}

#[tokio::test]
async fn final_chunk_without_any_length_header_completes_the_blob() {
    // HTTP/2 requests carry neither Content-Length nor Transfer-Encoding when the client
    // streams; the body is still the final chunk.
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    patch_chunks(&app, &location, &[b"head-"]).await;
    let digest = sha256(b"head-tail");
    let response = app
        .put(with_digest(&location, &digest))
        .unframed(vec![b"ta".to_vec(), b"il".to_vec()])
        .send()
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
}

#[tokio::test]
async fn final_chunk_not_at_the_offset_is_416_and_keeps_the_session() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    patch_chunks(&app, &location, &[b"head-"]).await;
    let response = app
        .put(with_digest(&location, &sha256(b"head-tail")))
        .header("content-range", "9-12")
        .body(b"tail".to_vec())
        .send()
        .await;
    let status = app.get(&location).send().await;
    assert_eq!(
        (response.status, response.header("range"), status.status),
        (
            StatusCode::RANGE_NOT_SATISFIABLE,
            "0-4",
            StatusCode::NO_CONTENT
        )
    );
}

#[tokio::test]
async fn chunked_session_completed_with_sha512_is_readable() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    patch_chunks(&app, &location, &[b"sha512 ", b"in ", b"chunks"]).await;
    let digest = sha512(b"sha512 in chunks");
    let response = app.put(with_digest(&location, &digest)).send().await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(blob_bytes(&app, "repo", &digest).await, b"sha512 in chunks");
}

#[tokio::test]
async fn completion_with_an_unsupported_digest_algorithm_is_400_digest_invalid() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    app.put(with_digest(
        &location,
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ))
    .body(b"x".to_vec())
    .send()
    .await
    .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn mount_from_an_invalid_repository_name_opens_a_session() {
    // Spec: "If a mount fails due to invalid repository or digest arguments, the registry
    // will fall back to the standard upload behavior and return a 202 Accepted"; CNCF
    // Distribution ignores mount arguments it cannot parse.
    let app = TestApp::new().await;
    let digest = sha256(b"anything");
    let response = app
        .post(format!(
            "/v2/target/blobs/uploads/?mount={digest}&from=Not..Valid"
        ))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn mount_of_a_malformed_digest_opens_a_session() {
    // Same spec sentence as above, for the digest argument.
    let app = TestApp::new().await;
    app.push_blob("source", b"shared layer").await;
    let response = app
        .post("/v2/target/blobs/uploads/?mount=sha256:nothex&from=source")
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn whole_blob_put_with_a_content_range_on_a_fresh_session_answers_201() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let response = app
        .put(with_digest(&location, &sha256(b"0123456789")))
        .header("content-range", "0-9")
        .body(b"0123456789".to_vec())
        .send()
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
}
