//! Abandoned uploads are reclaimed: idle sessions and upload areas no session owns.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::SqliteStore;
use berth_registry::{Error, Registry, RegistryOptions};
use berth_storage::{BlobStore, FsBlobStore};

#[tokio::test]
async fn purge_removes_idle_sessions_and_orphan_areas_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Arc::new(
        SqliteStore::open(&dir.path().join("metadata.db"))
            .await
            .expect("meta"),
    );
    let blobs = Arc::new(FsBlobStore::open(dir.path()).expect("blobs"));
    let registry = Registry::new(meta, blobs.clone(), RegistryOptions::default());
    let repo = "purge/test".parse().expect("name");

    let abandoned = registry
        .start_upload(&repo, berth_core::Algorithm::Sha256)
        .await
        .expect("start");
    blobs.create_upload("orphan-area").await.expect("orphan");
    // Session timestamps have one-second resolution.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = registry
        .start_upload(&repo, berth_core::Algorithm::Sha256)
        .await
        .expect("start");

    // Generous limits: nothing is old enough.
    let purged = registry
        .purge_uploads(Duration::from_secs(3600), Duration::from_secs(3600))
        .await;
    assert_eq!(purged.expect("purge"), (0, 0));

    let purged = registry
        .purge_uploads(Duration::from_millis(500), Duration::ZERO)
        .await;
    assert_eq!(purged.expect("purge"), (1, 1));
    assert!(matches!(
        registry.upload_offset(&repo, &abandoned).await,
        Err(Error::UploadUnknown)
    ));
    assert_eq!(
        registry
            .upload_offset(&repo, &fresh)
            .await
            .expect("fresh session stays"),
        0
    );
    let areas = blobs.list_uploads().await.expect("list");
    assert_eq!(
        areas.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        vec![fresh.as_str()]
    );
}
