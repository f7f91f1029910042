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

/// A body of `total` bytes cut into `piece`-sized chunks.
fn pattern_body(bytes: &[u8], piece: usize) -> ByteStream {
    let parts: Vec<io::Result<Bytes>> = bytes
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(parts).boxed()
}

/// Distinct bytes, so a misplaced piece shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

/// An upload in progress as the caller sees it: the offset and the backend's state, which
/// the registry keeps in the upload session.
struct Session {
    id: &'static str,
    offset: u64,
    state: Option<Vec<u8>>,
}

impl Session {
    fn new(id: &'static str) -> Session {
        Session {
            id,
            offset: 0,
            state: None,
        }
    }

    async fn append(&mut self, store: &dyn BlobStore, body: ByteStream) -> crate::Appended {
        let appended = store
            .append(
                self.id,
                self.offset,
                self.state.as_deref(),
                body,
                &mut |_| {},
            )
            .await
            .expect("append");
        self.offset += appended.len;
        self.state = appended.state.clone();
        appended
    }

    async fn read(&self, store: &dyn BlobStore) -> Vec<u8> {
        let stream = store
            .read_upload(self.id, self.offset, self.state.as_deref())
            .await
            .expect("read upload");
        collect(stream).await
    }

    async fn commit(&self, store: &dyn BlobStore, digest: &Digest) {
        store
            .commit(self.id, self.state.as_deref(), digest)
            .await
            .expect("commit");
    }
}

/// Exercise every operation on an empty store. `other_node` is a second instance over the
/// same storage (another berth process): an upload begun on one must continue on the other.
pub async fn run(store: &dyn BlobStore, other_node: &dyn BlobStore) {
    // Appends accumulate and the observer sees every byte in order.
    store.create_upload("up-1").await.expect("create");
    let mut up = Session::new("up-1");
    let mut seen = Vec::new();
    let appended = store
        .append("up-1", 0, None, body(&[b"hello ", b"wor"]), &mut |c| {
            seen.extend_from_slice(c)
        })
        .await
        .expect("append");
    assert_eq!(appended.len, 9);
    (up.offset, up.state) = (9, appended.state);
    let appended = store
        .append("up-1", 9, up.state.as_deref(), body(&[b"ld"]), &mut |c| {
            seen.extend_from_slice(c)
        })
        .await
        .expect("append");
    assert_eq!(appended.len, 2);
    (up.offset, up.state) = (11, appended.state);
    assert_eq!(seen, b"hello world");
    assert_eq!(up.read(store).await, b"hello world");

    // A body that fails half-way leaves the upload as it was.
    let failing = stream::iter(vec![
        Ok(Bytes::from_static(b"junk")),
        Err(io::Error::other("client went away")),
    ])
    .boxed();
    let err = store
        .append("up-1", 11, up.state.as_deref(), failing, &mut |_| {})
        .await
        .expect_err("body failed");
    assert!(matches!(err, StorageError::Body(_)), "{err:?}");
    assert_eq!(up.read(store).await, b"hello world");

    // An append whose outcome was never recorded (the session row did not move) is
    // superseded by the retry from the recorded offset and state.
    store
        .append(
            "up-1",
            11,
            up.state.as_deref(),
            body(&[b"LOST"]),
            &mut |_| {},
        )
        .await
        .expect("unrecorded append");
    up.append(store, body(&[b"!"])).await;
    assert_eq!(up.read(store).await, b"hello world!");
    let err = store
        .append("up-1", 50, up.state.as_deref(), body(&[b"x"]), &mut |_| {})
        .await
        .expect_err("past the end");
    assert!(
        matches!(err, StorageError::UploadTruncated { .. }),
        "{err:?}"
    );

    // Commit makes the blob readable, by range too.
    let digest = Digest::of(Algorithm::Sha256, b"hello world!");
    assert_eq!(store.stat(&digest).await.expect("stat"), None);
    up.commit(store, &digest).await;
    assert_eq!(store.stat(&digest).await.expect("stat"), Some(12));
    assert_eq!(
        collect(store.open(&digest, 0, 12).await.expect("open")).await,
        b"hello world!"
    );
    assert_eq!(
        collect(store.open(&digest, 6, 3).await.expect("open")).await,
        b"wor"
    );
    assert!(matches!(
        store.read_upload("up-1", 1, up.state.as_deref()).await,
        Err(StorageError::UploadMissing(_))
    ));

    // Committing the same digest again keeps one copy and drops the upload.
    store.create_upload("up-2").await.expect("create");
    let mut again = Session::new("up-2");
    again.append(store, body(&[b"hello world!"])).await;
    again.commit(store, &digest).await;
    assert_eq!(store.stat(&digest).await.expect("stat"), Some(12));
    assert!(matches!(
        store
            .append(
                "up-2",
                12,
                again.state.as_deref(),
                body(&[b"x"]),
                &mut |_| {}
            )
            .await,
        Err(StorageError::UploadMissing(_))
    ));

    // A blob of several megabytes reads back exactly, from any offset.
    let big = pattern(3_000_000, 0);
    let big_digest = Digest::of(Algorithm::Sha256, &big);
    store.create_upload("up-big").await.expect("create");
    let mut up = Session::new("up-big");
    up.append(store, pattern_body(&big, 70_000)).await;
    up.commit(store, &big_digest).await;
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

    // Many small PATCHes (each under S3's 5 MiB part minimum) add up to more than 10 MiB,
    // alternating between two nodes; one body spans a part boundary mid-chunk.
    let many = pattern(11 * 1024 * 1024 + 12_345, 7);
    let many_digest = Digest::of(Algorithm::Sha256, &many);
    store.create_upload("up-many").await.expect("create");
    let mut up = Session::new("up-many");
    for (i, patch) in many.chunks(1_700_000).enumerate() {
        let node = if i % 2 == 0 { store } else { other_node };
        up.append(node, pattern_body(patch, 300_000)).await;
    }
    assert_eq!(up.offset, many.len() as u64);
    up.commit(other_node, &many_digest).await;
    assert_eq!(
        store.stat(&many_digest).await.expect("stat"),
        Some(many.len() as u64)
    );
    let (from, len) = (5 * 1024 * 1024 - 10, 4 * 1024 * 1024 + 20);
    let window = collect(store.open(&many_digest, from, len).await.expect("open")).await;
    assert_eq!(window, many[from as usize..(from + len) as usize]);
    let whole = collect(
        other_node
            .open(&many_digest, 0, many.len() as u64)
            .await
            .expect("open"),
    )
    .await;
    assert!(whole == many, "the 11 MiB blob reads back exactly");

    // One large PATCH (several parts in one request), then an interrupted one, then the
    // retry at the old offset on another node, then a small last PATCH.
    let large = pattern(17 * 1024 * 1024 + 1, 3);
    let large_digest = Digest::of(Algorithm::Sha256, &large);
    store.create_upload("up-large").await.expect("create");
    let mut up = Session::new("up-large");
    let cut = 9 * 1024 * 1024 + 5;
    up.append(store, pattern_body(&large[..cut], 1 << 20)).await;
    let mut interrupted: Vec<io::Result<Bytes>> = large[cut..cut + 7 * 1024 * 1024]
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    interrupted.push(Err(io::Error::other("connection reset")));
    let err = store
        .append(
            "up-large",
            up.offset,
            up.state.as_deref(),
            stream::iter(interrupted).boxed(),
            &mut |_| {},
        )
        .await
        .expect_err("interrupted");
    assert!(matches!(err, StorageError::Body(_)), "{err:?}");
    up.append(
        other_node,
        pattern_body(&large[cut..large.len() - 1], 1 << 20),
    )
    .await;
    up.append(store, pattern_body(&large[large.len() - 1..], 1))
        .await;
    up.commit(store, &large_digest).await;
    let whole = collect(
        store
            .open(&large_digest, 0, large.len() as u64)
            .await
            .expect("open"),
    )
    .await;
    assert!(whole == large, "the 17 MiB blob reads back exactly");

    // An empty blob.
    let empty_digest = Digest::of(Algorithm::Sha256, b"");
    store.create_upload("up-empty").await.expect("create");
    let up = Session::new("up-empty");
    up.commit(store, &empty_digest).await;
    assert_eq!(store.stat(&empty_digest).await.expect("stat"), Some(0));

    // Reads redirect only where the backend says so.
    let url = store
        .redirect_url(&digest, std::time::Duration::from_secs(60))
        .await
        .expect("redirect url");
    assert_eq!(url.is_some(), store.redirects_reads());

    // Deleting is idempotent, and an abandoned upload leaves nothing behind, however far
    // it had got (on S3: a multipart upload with parts, and a staging tail).
    store.create_upload("up-3").await.expect("create");
    store.create_upload("up-4").await.expect("create");
    let mut up = Session::new("up-4");
    up.append(
        store,
        pattern_body(&pattern(6 * 1024 * 1024 + 10, 1), 1 << 20),
    )
    .await;
    // Committed uploads left nothing, but for what up-1's unrecorded append wrote (on S3, a
    // staging tail no recorded state names): that stays for the upload purge, which deletes
    // the area as here.
    store
        .delete_upload("up-1")
        .await
        .expect("purge up-1's debris");
    let mut listed: Vec<String> = store
        .list_uploads()
        .await
        .expect("list")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    listed.sort();
    assert_eq!(listed, vec!["up-3", "up-4"]);
    store.delete_upload("up-3").await.expect("delete upload");
    other_node
        .delete_upload("up-4")
        .await
        .expect("delete upload");
    store
        .delete_upload("up-3")
        .await
        .expect("delete missing upload");
    assert!(store.list_uploads().await.expect("list").is_empty());
    // The orphan sweep's listing names every stored blob; GC deletes them in batches.
    let stored: Vec<Digest> = store
        .list_blobs()
        .await
        .expect("list blobs")
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert!(stored.contains(&digest), "{stored:?}");
    let others: Vec<Digest> = stored.iter().filter(|d| **d != digest).cloned().collect();
    let mut doomed = others.clone();
    doomed.push(Digest::of(berth_core::Algorithm::Sha256, b"never stored"));
    other_node.delete_many(&doomed).await.expect("delete many");
    for gone in &others {
        assert_eq!(store.stat(gone).await.expect("stat"), None);
    }
    let left: Vec<Digest> = store
        .list_blobs()
        .await
        .expect("list blobs")
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(left, vec![digest.clone()]);
    store.delete(&digest).await.expect("delete");
    store.delete(&digest).await.expect("delete missing");
    assert!(matches!(
        store.open(&digest, 0, 1).await,
        Err(StorageError::BlobMissing(_))
    ));

    // An upload area written by the caller as a local file, where the backend has them,
    // commits like an appended one; a backend without them creates nothing.
    let bytes = pattern(300_000, 7);
    let digest = Digest::of(Algorithm::Sha256, &bytes);
    if let Some(mut file) = store.create_upload_file("local-1").await.expect("create") {
        use std::io::Write;
        file.write_all(&bytes).expect("write");
        store
            .commit("local-1", None, &digest)
            .await
            .expect("commit");
        let read = other_node
            .open(&digest, 0, bytes.len() as u64)
            .await
            .expect("open");
        assert!(collect(read).await == bytes);
        store.delete(&digest).await.expect("delete");
    }
    let areas = store.list_uploads().await.expect("list uploads");
    assert!(areas.iter().all(|(id, _)| id != "local-1"), "{areas:?}");
}
