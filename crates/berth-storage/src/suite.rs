//! The one behavioural test suite every blob store backend must pass.

use std::io;

use berth_core::{Algorithm, Digest};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::{BlobStore, ByteStream, StorageError};

fn body(parts: &[&'static [u8]]) -> ByteStream {
    let parts: Vec<io::Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    stream::iter(parts).boxed()
}

async fn collect(s: ByteStream) -> Vec<u8> {
    s.try_fold(Vec::new(), |mut acc, b| async move {
        acc.extend_from_slice(&b);
        Ok(acc)
    })
    .await
    .expect("stream reads")
}

/// Exercise every operation on an empty store.
pub async fn run(store: &dyn BlobStore) {
    // Appends accumulate and the observer sees every byte in order.
    store.create_upload("up-1").await.expect("create");
    let mut seen = Vec::new();
    let n = store
        .append("up-1", 0, body(&[b"hello ", b"wor"]), &mut |c| {
            seen.extend_from_slice(c)
        })
        .await
        .expect("append");
    assert_eq!(n, 9);
    let n = store
        .append("up-1", 9, body(&[b"ld"]), &mut |c| {
            seen.extend_from_slice(c)
        })
        .await
        .expect("append");
    assert_eq!(n, 2);
    assert_eq!(seen, b"hello world");
    assert_eq!(
        collect(store.read_upload("up-1", 11).await.expect("read")).await,
        b"hello world"
    );

    // A body that fails half-way leaves the upload as it was.
    let failing = stream::iter(vec![
        Ok(Bytes::from_static(b"junk")),
        Err(io::Error::other("client went away")),
    ])
    .boxed();
    let err = store
        .append("up-1", 11, failing, &mut |_| {})
        .await
        .expect_err("body failed");
    assert!(matches!(err, StorageError::Body(_)), "{err:?}");
    assert_eq!(
        collect(store.read_upload("up-1", 100).await.expect("read")).await,
        b"hello world"
    );

    // Appending from an earlier offset drops what came after it (a retried chunk).
    store
        .append("up-1", 6, body(&[b"world"]), &mut |_| {})
        .await
        .expect("rewrite tail");
    assert_eq!(
        collect(store.read_upload("up-1", 100).await.expect("read")).await,
        b"hello world"
    );
    let err = store
        .append("up-1", 50, body(&[b"x"]), &mut |_| {})
        .await
        .expect_err("past the end");
    assert!(
        matches!(err, StorageError::UploadTruncated { .. }),
        "{err:?}"
    );

    // Commit makes the blob readable, by range too.
    let digest = Digest::of(Algorithm::Sha256, b"hello world");
    assert_eq!(store.stat(&digest).await.expect("stat"), None);
    store.commit("up-1", &digest).await.expect("commit");
    assert_eq!(store.stat(&digest).await.expect("stat"), Some(11));
    assert_eq!(
        collect(store.open(&digest, 0, 11).await.expect("open")).await,
        b"hello world"
    );
    assert_eq!(
        collect(store.open(&digest, 6, 3).await.expect("open")).await,
        b"wor"
    );
    assert!(matches!(
        store.read_upload("up-1", 1).await,
        Err(StorageError::UploadMissing(_))
    ));

    // Committing the same digest again keeps one copy and drops the upload.
    store.create_upload("up-2").await.expect("create");
    store
        .append("up-2", 0, body(&[b"hello world"]), &mut |_| {})
        .await
        .expect("append");
    store.commit("up-2", &digest).await.expect("second commit");
    assert_eq!(store.stat(&digest).await.expect("stat"), Some(11));
    assert!(matches!(
        store.append("up-2", 0, body(&[b"x"]), &mut |_| {}).await,
        Err(StorageError::UploadMissing(_))
    ));

    // A blob of several megabytes reads back exactly, from any offset.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let big_digest = Digest::of(Algorithm::Sha256, &big);
    store.create_upload("up-big").await.expect("create");
    let parts: Vec<io::Result<Bytes>> = big
        .chunks(70_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    store
        .append("up-big", 0, stream::iter(parts).boxed(), &mut |_| {})
        .await
        .expect("append");
    store.commit("up-big", &big_digest).await.expect("commit");
    assert_eq!(
        collect(
            store
                .open(&big_digest, 0, big.len() as u64)
                .await
                .expect("open")
        )
        .await,
        big
    );
    let (from, len) = (524_000u64, 1_100_000u64);
    let window = collect(store.open(&big_digest, from, len).await.expect("open")).await;
    assert_eq!(window, big[from as usize..(from + len) as usize]);

    // Deleting is idempotent.
    store.create_upload("up-3").await.expect("create");
    let listed = store.list_uploads().await.expect("list");
    assert_eq!(
        listed.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        vec!["up-3"]
    );
    store.delete_upload("up-3").await.expect("delete upload");
    store
        .delete_upload("up-3")
        .await
        .expect("delete missing upload");
    store.delete(&digest).await.expect("delete");
    store.delete(&digest).await.expect("delete missing");
    assert!(matches!(
        store.open(&digest, 0, 1).await,
        Err(StorageError::BlobMissing(_))
    ));
}
