//! Blobs staged piece by piece (the proxy's fetches) become visible only when their bytes
//! hashed to their digest, on the filesystem (written into the store's upload area) and on
//! S3 (spooled locally, then sent to the store), and leave no upload area either way.

use std::sync::Arc;

use berth_core::{Algorithm, Digest, RepositoryName};
use berth_meta::SqliteStore;
use berth_registry::{Error, Registry, RegistryOptions};
use berth_storage::s3::testing::{S3Server, S3ServerKind};
use berth_storage::{BlobStore, FsBlobStore, S3BlobStore};
use bytes::Bytes;
use futures_util::TryStreamExt;

async fn registry(dir: &std::path::Path, blobs: Arc<dyn BlobStore>) -> Registry {
    let meta = SqliteStore::open(&dir.join("metadata.db"))
        .await
        .expect("meta");
    Registry::new(Arc::new(meta), blobs, RegistryOptions::default())
}

/// Bytes that differ from piece to piece, cut into uneven pieces.
fn pieces() -> (Vec<Bytes>, Vec<u8>) {
    let whole: Vec<u8> = (0..6_000_000u32).map(|i| (i % 249) as u8).collect();
    let pieces = whole
        .chunks(700_001)
        .map(Bytes::copy_from_slice)
        .collect::<Vec<_>>();
    (pieces, whole)
}

async fn staged_blobs_commit_only_when_they_match(registry: &Registry, blobs: &dyn BlobStore) {
    let dir = tempfile::tempdir().expect("spool dir");
    let repository: RepositoryName = "cache/app".parse().expect("name");
    let (pieces, whole) = pieces();
    let digest = Digest::of(Algorithm::Sha256, &whole);

    // Bytes that do not hash to the digest asked for: refused, nothing left behind.
    let promised = Digest::of(Algorithm::Sha256, b"something else");
    let mut staged = registry
        .stage_blob(&repository, &promised, dir.path())
        .await
        .expect("stage");
    for piece in &pieces {
        staged.write(piece.clone()).await.expect("write");
    }
    let refused = staged.finish(whole.len() as u64).await;
    assert!(matches!(refused, Err(Error::DigestMismatch { .. })));
    assert!(matches!(
        registry.blob_size(&repository, &promised).await,
        Err(Error::BlobUnknown(_))
    ));
    assert_eq!(blobs.stat(&digest).await.expect("stat"), None);

    // The right bytes: readable from the file as they are written, then committed.
    let mut staged = registry
        .stage_blob(&repository, &digest, dir.path())
        .await
        .expect("stage");
    for piece in &pieces {
        staged.write(piece.clone()).await.expect("write");
    }
    let written = staged.written();
    let file = staged.file();
    let verified = staged.finish(whole.len() as u64).await.expect("matches");
    assert_eq!(*written.borrow(), whole.len() as u64);
    let from_file: Vec<Bytes> = berth_storage::local::read_range(file, 0, whole.len() as u64)
        .try_collect()
        .await
        .expect("read the staged file");
    assert!(from_file.concat() == whole);
    let size = registry.commit_staged(verified).await.expect("commit");
    assert_eq!(size, whole.len() as u64);
    assert_eq!(
        registry
            .blob_size(&repository, &digest)
            .await
            .expect("linked"),
        size
    );
    let stored: Vec<Bytes> = blobs
        .open(&digest, 0, size)
        .await
        .expect("open")
        .try_collect()
        .await
        .expect("read");
    assert!(stored.concat() == whole);

    // A short body is refused too.
    let mut staged = registry
        .stage_blob(&repository, &digest, dir.path())
        .await
        .expect("stage");
    staged.write(pieces[0].clone()).await.expect("write");
    let short = staged.finish(whole.len() as u64).await;
    assert!(matches!(short, Err(Error::SizeInvalid(_))));

    // Areas are deleted by the refusals themselves, not later.
    assert_eq!(blobs.list_uploads().await.expect("list"), vec![]);
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("spool dir").count(),
        0,
        "spools are unlinked files"
    );
}

#[tokio::test]
async fn staged_blobs_on_the_filesystem_commit_only_when_they_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Arc::new(FsBlobStore::open(&dir.path().join("store")).expect("blobs"));
    let registry = registry(dir.path(), blobs.clone()).await;
    staged_blobs_commit_only_when_they_match(&registry, blobs.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_blobs_on_s3_commit_only_when_they_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = S3Server::start(S3ServerKind::S3sFs);
    let blobs = Arc::new(S3BlobStore::new(server.settings("staged")).expect("s3"));
    let registry = registry(dir.path(), blobs.clone()).await;
    staged_blobs_commit_only_when_they_match(&registry, blobs.as_ref()).await;
}
