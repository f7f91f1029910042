//! Operations: `/metrics` counts requests by endpoint class and status, `X-Request-Id` is
//! echoed or made up, a full disk answers 507 `STORAGE_FULL` and the upload goes on once
//! space is back, and `/readyz` names a data directory without room.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::http::StatusCode;
use berth_core::Digest;
use berth_storage::{Appended, BlobStore, ByteStream, FsBlobStore, StorageError};

use crate::common::{TestApp, sha256, with_digest};

/// The value of the sample `name{labels}` in a scrape (labels as written, in order).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_endpoint_class_and_status() {
    let app = TestApp::new().await;
    app.push_blob("team/app", b"layer").await;
    app.get("/v2/team/app/manifests/missing").send().await;
    app.head("/v2/team/app/manifests/missing").send().await;
    let scrape = app.get("/metrics").send().await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert_eq!(
        scrape.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    for series in [
        r#"berth_http_requests_total{endpoint="upload_start",status="202"}"#,
        r#"berth_http_requests_total{endpoint="upload_complete",status="201"}"#,
        r#"berth_http_requests_total{endpoint="manifest_get",status="404"}"#,
        r#"berth_http_requests_total{endpoint="manifest_head",status="404"}"#,
        r#"berth_http_request_duration_seconds_count{endpoint="manifest_get"}"#,
    ] {
        let value = sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        assert!(value >= 1.0, "{series} = {value}");
    }
    assert!(text.contains("# TYPE berth_http_request_duration_seconds histogram\n"));
    // The scrape itself is counted when it is answered, so the next one sees it.
    let again = String::from_utf8_lossy(&app.get("/metrics").send().await.body).into_owned();
    assert!(
        sample(
            &again,
            r#"berth_http_requests_total{endpoint="metrics",status="200"}"#
        )
        .is_some()
    );
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_a_missing_one_is_made_up() {
    let app = TestApp::new().await;
    let echoed = app
        .get("/v2/")
        .header("x-request-id", "client-id-7")
        .send()
        .await;
    assert_eq!(echoed.header("x-request-id"), "client-id-7");
    let made_up = app.get("/v2/").send().await;
    assert_eq!(made_up.header("x-request-id").len(), 32);
    let replaced = app
        .get("/api/v2.0/projects")
        .header("x-request-id", "no spaces allowed")
        .send()
        .await;
    assert_eq!(
        replaced.header("x-request-id").len(),
        32,
        "the management API uses the same id"
    );
}

/// The filesystem store, whose appends fail with ENOSPC while `full` is set.
struct FillableDisk {
    inner: FsBlobStore,
    full: AtomicBool,
}

#[async_trait]
impl BlobStore for FillableDisk {
    async fn create_upload(&self, id: &str) -> berth_storage::Result<()> {
        self.inner.create_upload(id).await
    }

    async fn append(
        &self,
        id: &str,
        offset: u64,
        state: Option<&[u8]>,
        body: ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> berth_storage::Result<Appended> {
        if self.full.load(Ordering::Relaxed) {
            return Err(StorageError::Io(std::io::ErrorKind::StorageFull.into()));
        }
        self.inner.append(id, offset, state, body, observe).await
    }

    async fn read_upload(
        &self,
        id: &str,
        len: u64,
        state: Option<&[u8]>,
    ) -> berth_storage::Result<ByteStream> {
        self.inner.read_upload(id, len, state).await
    }

    async fn commit(
        &self,
        id: &str,
        state: Option<&[u8]>,
        digest: &Digest,
    ) -> berth_storage::Result<()> {
        self.inner.commit(id, state, digest).await
    }

    async fn delete_upload(&self, id: &str) -> berth_storage::Result<()> {
        self.inner.delete_upload(id).await
    }

    async fn list_uploads(&self) -> berth_storage::Result<Vec<(String, std::time::SystemTime)>> {
        self.inner.list_uploads().await
    }

    async fn stat(&self, digest: &Digest) -> berth_storage::Result<Option<u64>> {
        self.inner.stat(digest).await
    }

    async fn open(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> berth_storage::Result<ByteStream> {
        self.inner.open(digest, start, len).await
    }

    async fn delete(&self, digest: &Digest) -> berth_storage::Result<()> {
        self.inner.delete(digest).await
    }

    async fn list_blobs(&self) -> berth_storage::Result<Vec<(Digest, std::time::SystemTime)>> {
        self.inner.list_blobs().await
    }
}

#[tokio::test]
async fn a_full_disk_answers_507_storage_full_and_the_upload_goes_on_once_space_is_back() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let disk = Arc::new(FillableDisk {
        inner: FsBlobStore::open(dir.path()).expect("blob store"),
        full: AtomicBool::new(true),
    });
    let app = TestApp::builder()
        .dir(dir)
        .blobs(disk.clone())
        .build()
        .await;
    let location = app.start_upload("team/app").await;
    let content = b"a layer that does not fit".to_vec();
    let refused = app
        .patch(&location)
        .body(content.clone())
        .server_error_expected()
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(refused.error_code(), "STORAGE_FULL");
    let message = refused.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("storage is full"), "{message}");
    assert!(
        !String::from_utf8_lossy(&refused.body).contains("os error"),
        "the cause is for the log, not the client"
    );

    disk.full.store(false, Ordering::Relaxed);
    let digest = sha256(&content);
    let resumed = app
        .put(with_digest(&location, &digest))
        .body(content)
        .send()
        .await;
    assert_eq!(
        resumed.status,
        StatusCode::CREATED,
        "the session survived the full disk"
    );
}

#[tokio::test]
async fn readyz_names_a_data_directory_without_room_and_liveness_does_not_care() {
    let app = TestApp::builder().probe_data_dir(u64::MAX).build().await;
    let not_ready = app.get("/readyz").send().await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8_lossy(&not_ready.body).into_owned();
    assert!(text.contains("storage is full"), "{text}");
    assert_eq!(app.get("/healthz").send().await.status, StatusCode::OK);

    let roomy = TestApp::builder().probe_data_dir(0).build().await;
    let ready = roomy.get("/readyz").send().await;
    assert_eq!(ready.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&ready.body).contains("bytes free"));
}
