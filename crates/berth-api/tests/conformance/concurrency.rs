//! Races: two uploads of the same blob, and two manifests pushed to the same tag, run on a
//! multi-threaded runtime so the requests really overlap.

use axum::http::StatusCode;

use crate::common::{OCI_MANIFEST, TestApp, sha256, with_digest};

/// A full session upload (POST, two PATCHes, PUT); returns the PUT's status.
async fn upload_in_session(app: TestApp, content: Vec<u8>) -> StatusCode {
    let location = app.start_upload("repo").await;
    let (first, second) = content.split_at(content.len() / 2);
    for (start, chunk) in [(0, first), (first.len(), second)] {
        let response = app
            .patch(&location)
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await;
        assert_eq!(response.status, StatusCode::ACCEPTED);
    }
    app.put(with_digest(&location, &sha256(&content)))
        .send()
        .await
        .status
}

fn racing_blob() -> Vec<u8> {
    (0..512 * 1024).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_uploads_of_the_same_blob_both_answer_201() {
    let app = TestApp::new().await;
    let (a, b) = tokio::join!(
        tokio::spawn(upload_in_session(app.clone(), racing_blob())),
        tokio::spawn(upload_in_session(app.clone(), racing_blob())),
    );
    assert_eq!(
        (a.expect("task a"), b.expect("task b")),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_uploads_of_the_same_blob_leave_it_readable_and_intact() {
    let app = TestApp::new().await;
    let (a, b) = tokio::join!(
        tokio::spawn(upload_in_session(app.clone(), racing_blob())),
        tokio::spawn(upload_in_session(app.clone(), racing_blob())),
    );
    a.expect("task a");
    b.expect("task b");
    let response = app
        .get(format!("/v2/repo/blobs/{}", sha256(&racing_blob())))
        .send()
        .await;
    assert_eq!(
        (response.status, response.body.to_vec() == racing_blob()),
        (StatusCode::OK, true)
    );
}

/// Two different manifests pushed to tag `latest` at the same time; returns their
/// digests after checking both pushes answered 201.
async fn race_two_manifests_to_one_tag(app: &TestApp) -> (String, String) {
    let first = app.image_manifest("repo", "first").await;
    let second = app.image_manifest("repo", "second").await;
    let push = |manifest: Vec<u8>| {
        let app = app.clone();
        tokio::spawn(async move {
            app.put_manifest("repo", "latest", OCI_MANIFEST, manifest)
                .await
                .status
        })
    };
    let (a, b) = tokio::join!(push(first.clone()), push(second.clone()));
    assert_eq!(
        (a.expect("task a"), b.expect("task b")),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    (sha256(&first), sha256(&second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_pushes_to_one_tag_leave_it_on_one_of_them() {
    let app = TestApp::new().await;
    let (first, second) = race_two_manifests_to_one_tag(&app).await;
    let response = app.head("/v2/repo/manifests/latest").send().await;
    let tagged = response.header("docker-content-digest");
    assert!(
        tagged == first || tagged == second,
        "tag points at {tagged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_pushes_to_one_tag_keep_both_manifests_by_digest() {
    let app = TestApp::new().await;
    let (first, second) = race_two_manifests_to_one_tag(&app).await;
    let mut statuses = Vec::new();
    for digest in [first, second] {
        statuses.push(
            app.get(format!("/v2/repo/manifests/{digest}"))
                .send()
                .await
                .status,
        );
    }
    assert_eq!(statuses, [StatusCode::OK, StatusCode::OK]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_pushes_to_one_tag_list_the_tag_once() {
    let app = TestApp::new().await;
    race_two_manifests_to_one_tag(&app).await;
    let body = app.get("/v2/repo/tags/list").send().await.json();
    assert_eq!(body["tags"], serde_json::json!(["latest"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_patches_of_the_same_chunk_accept_exactly_one() {
    let app = TestApp::new().await;
    let location = app.start_upload("repo").await;
    let chunk = racing_blob();
    let patch = || {
        let (app, location, chunk) = (app.clone(), location.clone(), chunk.clone());
        tokio::spawn(async move {
            app.patch(&location)
                .header("content-range", format!("0-{}", chunk.len() - 1))
                .body(chunk)
                .send()
                .await
                .status
        })
    };
    let (a, b) = tokio::join!(patch(), patch());
    let mut statuses = [a.expect("task a"), b.expect("task b")];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::ACCEPTED, StatusCode::RANGE_NOT_SATISFIABLE]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_single_request_pushes_of_the_same_blob_both_answer_201() {
    let app = TestApp::new().await;
    let digest = sha256(&racing_blob());
    let push = || {
        let (app, digest) = (app.clone(), digest.clone());
        tokio::spawn(async move {
            app.post(format!("/v2/repo/blobs/uploads/?digest={digest}"))
                .body(racing_blob())
                .send()
                .await
                .status
        })
    };
    let (a, b) = tokio::join!(push(), push());
    assert_eq!(
        (a.expect("task a"), b.expect("task b")),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
}

/// A push that meets the database locked for longer than a statement may wait (another
/// process holding it, as a backup tool might) is answered 503 with `Retry-After`, keeps
/// nothing, and the client's retry succeeds once the lock is gone.
#[tokio::test]
async fn a_push_kept_waiting_on_a_database_lock_gets_503_and_its_retry_succeeds() {
    let app = TestApp::builder()
        .busy_timeout(std::time::Duration::from_millis(200))
        .build()
        .await;
    let digest = app.push_blob("repo", b"before the lock").await;
    let mut other = app.hold_metadata_write_lock().await;

    let refused = app
        .post("/v2/repo/blobs/uploads/")
        .server_error_expected()
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(refused.json()["errors"][0]["code"], "UNAVAILABLE");
    // Reads go on: readers do not wait for the writer.
    let read = app.head(format!("/v2/repo/blobs/{digest}")).send().await;
    assert_eq!(read.status, StatusCode::OK);

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("lets go");
    app.push_blob("repo", b"after the lock").await;
}
