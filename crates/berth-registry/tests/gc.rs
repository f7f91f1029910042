//! Garbage collection against real stores (SQLite + filesystem, PostgreSQL + filesystem,
//! PostgreSQL + S3): what it frees, a dry run's report, an upload racing a sweep step by
//! step, and 16 clients pushing, pulling and deleting while GC runs back to back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_core::{Algorithm, Digest, Reference, RepositoryName, Tag};
use berth_meta::{MetaError, MetaStore, PgOptions, PgStore, SqliteStore};
use berth_registry::gc::{GcHook, GcPoint};
use berth_registry::{Error, GcOptions, Registry, RegistryOptions};
use berth_storage::s3::testing::{S3Server, S3ServerKind};
use berth_storage::{BlobStore, ByteStream, FsBlobStore, S3BlobStore};
use futures_util::{FutureExt, StreamExt};

/// A registry over one pair of stores, and what keeps them alive.
struct Backend {
    registry: Arc<Registry>,
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

fn registry(meta: Arc<dyn MetaStore>, blobs: Arc<dyn BlobStore>) -> Arc<Registry> {
    Arc::new(Registry::new(meta, blobs, RegistryOptions::default()))
}

async fn sqlite_fs() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta: Arc<dyn MetaStore> = Arc::new(
        SqliteStore::open(&dir.path().join("metadata.db"))
            .await
            .expect("meta"),
    );
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path()).expect("blobs"));
    Backend {
        registry: registry(meta.clone(), blobs.clone()),
        meta,
        blobs,
        _keep: vec![Box::new(dir)],
    }
}

async fn postgres(
    blobs: Arc<dyn BlobStore>,
    mut keep: Vec<Box<dyn std::any::Any + Send>>,
) -> Backend {
    let db = berth_meta::postgres::testing::database().await;
    let meta: Arc<dyn MetaStore> = Arc::new(
        PgStore::connect(&PgOptions::new(db.url.clone()))
            .await
            .expect("connects"),
    );
    keep.push(Box::new(db));
    Backend {
        registry: registry(meta.clone(), blobs.clone()),
        meta,
        blobs,
        _keep: keep,
    }
}

async fn postgres_fs() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path()).expect("blobs"));
    postgres(blobs, vec![Box::new(dir)]).await
}

async fn postgres_s3() -> Backend {
    let server = S3Server::start(S3ServerKind::S3sFs);
    let blobs: Arc<dyn BlobStore> =
        Arc::new(S3BlobStore::new(server.settings("gc")).expect("s3 store"));
    postgres(blobs, vec![Box::new(server)]).await
}

fn name(s: &str) -> RepositoryName {
    s.parse().expect("name")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("tag")
}

fn body(bytes: &[u8]) -> ByteStream {
    let chunk = bytes::Bytes::copy_from_slice(bytes);
    futures_util::stream::once(async move { Ok(chunk) }).boxed()
}

async fn read_all(
    registry: &Registry,
    digest: &Digest,
    len: u64,
) -> berth_registry::Result<Vec<u8>> {
    let mut stream = registry.read_blob(digest, 0, len).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|e| Error::Internal(e.to_string()))?);
    }
    Ok(out)
}

fn descriptor(media_type: &str, digest: &Digest, size: usize) -> String {
    format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size}}}"#)
}

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image manifest over `config` and `layers` (their bytes), with an optional subject.
fn image_manifest(config: &[u8], layers: &[&[u8]], subject: Option<(&Digest, usize)>) -> Vec<u8> {
    let config = descriptor(
        "application/vnd.oci.image.config.v1+json",
        &Digest::of(Algorithm::Sha256, config),
        config.len(),
    );
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            descriptor(
                "application/vnd.oci.image.layer.v1.tar",
                &Digest::of(Algorithm::Sha256, l),
                l.len(),
            )
        })
        .collect();
    let subject = subject
        .map(|(d, size)| {
            format!(
                r#","artifactType":"application/x.sig","subject":{}"#,
                descriptor(IMAGE, d, size)
            )
        })
        .unwrap_or_default();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{IMAGE}","config":{config},"layers":[{}]{subject}}}"#,
        layers.join(",")
    )
    .into_bytes()
}

fn index_manifest(children: &[(Digest, usize)]) -> Vec<u8> {
    let manifests: Vec<String> = children
        .iter()
        .enumerate()
        .map(|(i, (d, size))| {
            format!(
                r#"{{"mediaType":"{IMAGE}","digest":"{d}","size":{size},"platform":{{"architecture":"arch{i}","os":"linux"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{}]}}"#,
        manifests.join(",")
    )
    .into_bytes()
}

/// An image as pushed: its manifest and every blob it (and its children) needs.
#[derive(Clone)]
struct Pushed {
    repository: RepositoryName,
    tag: Option<Tag>,
    digest: Digest,
    manifest: Vec<u8>,
    /// Child manifests (of an index) with their bytes.
    children: Vec<(Digest, Vec<u8>)>,
    blobs: Vec<Vec<u8>>,
}

/// Push the blobs of an image, then its manifest (children first for an index).
async fn push_image(
    registry: &Registry,
    repository: &RepositoryName,
    tag: Option<&Tag>,
    config: &[u8],
    layers: &[&[u8]],
    subject: Option<(&Digest, usize)>,
) -> berth_registry::Result<Pushed> {
    for blob in std::iter::once(config).chain(layers.iter().copied()) {
        registry
            .put_blob(repository, &Digest::of(Algorithm::Sha256, blob), body(blob))
            .await?;
    }
    let manifest = image_manifest(config, layers, subject);
    let reference = match tag {
        Some(tag) => Reference::Tag(tag.clone()),
        None => Reference::Digest(Digest::of(Algorithm::Sha256, &manifest)),
    };
    let pushed = registry
        .put_manifest(repository, &reference, &[], Some(IMAGE), &manifest)
        .await?;
    Ok(Pushed {
        repository: repository.clone(),
        tag: tag.cloned(),
        digest: pushed.digest,
        manifest,
        children: Vec::new(),
        blobs: std::iter::once(config)
            .chain(layers.iter().copied())
            .map(<[u8]>::to_vec)
            .collect(),
    })
}

/// Pull an image back and compare every byte; the first difference as an error.
async fn pull_exactly(registry: &Registry, image: &Pushed) -> Result<(), String> {
    let reference = match &image.tag {
        Some(tag) => Reference::Tag(tag.clone()),
        None => Reference::Digest(image.digest.clone()),
    };
    let manifest = registry
        .get_manifest(&image.repository, &reference)
        .await
        .map_err(|e| format!("{}@{reference}: {e}", image.repository))?;
    if manifest.content.as_ref() != image.manifest.as_slice() {
        return Err(format!(
            "{}@{reference}: other manifest bytes",
            image.repository
        ));
    }
    for (digest, bytes) in &image.children {
        let child = registry
            .get_manifest(&image.repository, &Reference::Digest(digest.clone()))
            .await
            .map_err(|e| format!("child {digest}: {e}"))?;
        if child.content.as_ref() != bytes.as_slice() {
            return Err(format!("child {digest}: other bytes"));
        }
    }
    for blob in &image.blobs {
        let digest = Digest::of(Algorithm::Sha256, blob);
        let size = registry
            .blob_size(&image.repository, &digest)
            .await
            .map_err(|e| format!("{} blob {digest}: {e}", image.repository))?;
        let read = read_all(registry, &digest, size)
            .await
            .map_err(|e| format!("{} blob {digest}: {e}", image.repository))?;
        if read != *blob {
            return Err(format!("{} blob {digest}: other bytes", image.repository));
        }
    }
    Ok(())
}

fn stored_set(listed: Vec<(Digest, std::time::SystemTime)>) -> BTreeSet<Digest> {
    listed.into_iter().map(|(d, _)| d).collect()
}

fn zero_grace(delete_untagged: bool, dry_run: bool) -> GcOptions {
    GcOptions {
        delete_untagged,
        dry_run,
        untagged_grace: Duration::ZERO,
        blob_grace: Duration::ZERO,
        batch: 3,
        ..GcOptions::default()
    }
}

/// Deleted manifests, tags and repositories are freed by the next run; a dry run before it
/// reports exactly what it frees; what is kept pulls back whole.
async fn frees_what_deletes_left(backend: Backend) {
    let registry = &backend.registry;
    let (app, gone) = (name("gc/app"), name("gc/gone"));
    let shared: &[u8] = b"shared layer";
    let kept = push_image(
        registry,
        &app,
        Some(&tag("v1")),
        b"cfg-1",
        &[shared, b"only v1"],
        None,
    )
    .await
    .expect("push");
    let deleted = push_image(
        registry,
        &app,
        Some(&tag("v2")),
        b"cfg-2",
        &[shared, b"only v2"],
        None,
    )
    .await
    .expect("push");
    let untagged = push_image(
        registry,
        &app,
        Some(&tag("v3")),
        b"cfg-3",
        &[b"only v3"],
        None,
    )
    .await
    .expect("push");
    let signature = push_image(
        registry,
        &app,
        None,
        b"sig-cfg",
        &[b"signature of v1"],
        Some((&kept.digest, kept.manifest.len())),
    )
    .await
    .expect("push");
    push_image(
        registry,
        &gone,
        Some(&tag("x")),
        b"cfg-gone",
        &[shared, b"only gone"],
        None,
    )
    .await
    .expect("push");
    registry
        .delete_manifest(&app, &Reference::Digest(deleted.digest.clone()))
        .await
        .expect("delete manifest");
    registry
        .delete_manifest(&app, &Reference::Tag(tag("v3")))
        .await
        .expect("delete tag");
    registry
        .delete_repository(&gone)
        .await
        .expect("delete repository");

    let before = stored_set(backend.blobs.list_blobs().await.expect("list"));
    let dry = registry
        .collect_garbage(&zero_grace(true, true))
        .await
        .expect("dry run");
    assert_eq!(
        stored_set(backend.blobs.list_blobs().await.expect("list")),
        before
    );
    let real = registry
        .collect_garbage(&zero_grace(true, false))
        .await
        .expect("run");
    // v2's config and layer, v3's (untagged now), the repository's two: six blobs.
    let freed = [
        &b"cfg-2"[..],
        b"only v2",
        b"cfg-3",
        b"only v3",
        b"cfg-gone",
        b"only gone",
    ];
    assert_eq!(real.blobs_deleted, freed.len() as u64, "{:?}", real.log);
    assert_eq!(
        real.bytes_freed,
        freed.iter().map(|b| b.len() as u64).sum::<u64>()
    );
    assert_eq!(real.manifests_deleted, 1, "v3, untagged");
    assert_eq!(
        (
            dry.manifests_deleted,
            dry.links_removed,
            dry.blobs_deleted,
            dry.bytes_freed
        ),
        (
            real.manifests_deleted,
            real.links_removed,
            real.blobs_deleted,
            real.bytes_freed
        ),
        "a dry run reports what the run frees"
    );
    let after = stored_set(backend.blobs.list_blobs().await.expect("list"));
    let expected: BTreeSet<Digest> = before
        .iter()
        .filter(|d| {
            !freed
                .iter()
                .any(|b| Digest::of(Algorithm::Sha256, b) == **d)
        })
        .cloned()
        .collect();
    assert_eq!(after, expected);
    pull_exactly(registry, &kept).await.expect("v1 intact");
    pull_exactly(registry, &signature)
        .await
        .expect("its signature intact");
    assert!(matches!(
        registry
            .get_manifest(&app, &Reference::Digest(untagged.digest.clone()))
            .await,
        Err(Error::ManifestUnknown(_))
    ));
    // Nothing left to free: a second run frees nothing.
    let again = registry
        .collect_garbage(&zero_grace(true, false))
        .await
        .expect("run");
    assert_eq!((again.manifests_deleted, again.blobs_deleted), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_gc_frees_what_deletes_left() {
    frees_what_deletes_left(sqlite_fs().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gc_frees_what_deletes_left() {
    frees_what_deletes_left(postgres_fs().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_s3_gc_frees_what_deletes_left() {
    frees_what_deletes_left(postgres_s3().await).await;
}

/// The dangerous interleaving, step by step: the sweep deletes a blob's row (T1); an upload
/// of the same digest arrives (its bytes are still there); the sweep deletes the bytes
/// (T2). Without the tombstone the upload would link a blob whose bytes then vanish. With
/// it, the link is refused and the upload waits until T2 is over, then writes its bytes
/// again: the blob ends linked and whole.
async fn an_upload_racing_the_sweep_keeps_its_bytes(backend: Backend) {
    let registry = backend.registry.clone();
    let (old, new) = (name("race/old"), name("race/new"));
    let bytes: &'static [u8] = b"a layer pushed, dropped, and pushed again";
    let digest = Digest::of(Algorithm::Sha256, bytes);
    registry
        .put_blob(&old, &digest, body(bytes))
        .await
        .expect("push");
    registry.delete_repository(&old).await.expect("drop it");

    let during = Arc::new(tokio::sync::Mutex::new(
        None::<tokio::task::JoinHandle<berth_registry::Result<u64>>>,
    ));
    let hook: GcHook = {
        let (registry, meta, blobs, digest, during) = (
            registry.clone(),
            backend.meta.clone(),
            backend.blobs.clone(),
            digest.clone(),
            during.clone(),
        );
        Arc::new(move |point: GcPoint| {
            let (registry, meta, blobs, digest, during) = (
                registry.clone(),
                meta.clone(),
                blobs.clone(),
                digest.clone(),
                during.clone(),
            );
            async move {
                let GcPoint::Condemned(condemned) = point;
                assert_eq!(condemned, vec![digest.clone()]);
                // Between T1 and T2: the bytes are still there, the row is not.
                assert!(blobs.stat(&digest).await.expect("stat").is_some());
                let new = name("race/new");
                assert!(matches!(
                    meta.link_blob(&new, &digest, bytes.len() as u64).await,
                    Err(MetaError::BlobBeingDeleted(_))
                ));
                let upload =
                    tokio::spawn(
                        async move { registry.put_blob(&new, &digest, body(bytes)).await },
                    );
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert!(!upload.is_finished(), "the upload waits for the deletion");
                *during.lock().await = Some(upload);
            }
            .boxed()
        })
    };
    let report = registry
        .collect_garbage_with(&zero_grace(false, false), Some(hook))
        .await
        .expect("run");
    assert_eq!(report.blobs_deleted, 1);
    let upload = during.lock().await.take().expect("the hook ran");
    assert_eq!(
        upload.await.expect("task").expect("the upload succeeds"),
        bytes.len() as u64
    );
    assert_eq!(
        read_all(&registry, &digest, bytes.len() as u64)
            .await
            .expect("read"),
        bytes
    );
    assert_eq!(
        registry.blob_size(&new, &digest).await.expect("linked"),
        bytes.len() as u64
    );
    // Its link is fresh: a run with a grace window leaves it alone.
    let graced = GcOptions {
        blob_grace: Duration::from_secs(3600),
        ..zero_grace(false, false)
    };
    registry.collect_garbage(&graced).await.expect("run");
    assert!(backend.blobs.stat(&digest).await.expect("stat").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_upload_racing_the_sweep_keeps_its_bytes() {
    an_upload_racing_the_sweep_keeps_its_bytes(sqlite_fs().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_upload_racing_the_sweep_keeps_its_bytes() {
    an_upload_racing_the_sweep_keeps_its_bytes(postgres_fs().await).await;
}

/// A tiny deterministic generator: the stress test's choices, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Whether an error means "push again" (GC won a race with an unacknowledged push).
fn retriable(e: &Error) -> bool {
    matches!(
        e,
        Error::BlobBeingDeleted(_) | Error::ManifestBlobUnknown(_)
    )
}

/// What one client pushes in one go: an image, an index of two images, or an image with a
/// referrer of it. Untagged parts (children, the referrer) are pushed first or after, as
/// clients do; GC with a zero untagged grace may take them before the push completes, and
/// the client then pushes everything again.
async fn push_something(
    registry: &Registry,
    client: u64,
    n: u64,
    rng: &mut Rng,
    shared: &[Vec<u8>],
) -> berth_registry::Result<Vec<Pushed>> {
    let repository = name(&format!("stress/r{}", client % 4));
    let shared_layer = shared[rng.below(shared.len() as u64) as usize].as_slice();
    let unique = format!("c{client}-n{n}-layer").into_bytes();
    let config = format!("c{client}-n{n}-config").into_bytes();
    let the_tag = tag(&format!("c{client}-n{n}"));
    match rng.below(3) {
        0 => Ok(vec![
            push_image(
                registry,
                &repository,
                Some(&the_tag),
                &config,
                &[shared_layer, &unique],
                None,
            )
            .await?,
        ]),
        1 => {
            let a = push_image(registry, &repository, None, &config, &[shared_layer], None).await?;
            let b = push_image(registry, &repository, None, &unique, &[shared_layer], None).await?;
            let index = index_manifest(&[
                (a.digest.clone(), a.manifest.len()),
                (b.digest.clone(), b.manifest.len()),
            ]);
            let pushed = registry
                .put_manifest(
                    &repository,
                    &Reference::Tag(the_tag.clone()),
                    &[],
                    Some(INDEX),
                    &index,
                )
                .await?;
            Ok(vec![Pushed {
                repository,
                tag: Some(the_tag),
                digest: pushed.digest,
                manifest: index,
                children: vec![(a.digest, a.manifest), (b.digest, b.manifest)],
                blobs: a.blobs.into_iter().chain(b.blobs).collect(),
            }])
        }
        _ => {
            let subject = push_image(
                registry,
                &repository,
                Some(&the_tag),
                &config,
                &[shared_layer, &unique],
                None,
            )
            .await?;
            let signature = format!("c{client}-n{n}-signature").into_bytes();
            let referrer = push_image(
                registry,
                &repository,
                None,
                b"signature config",
                &[&signature],
                Some((&subject.digest, subject.manifest.len())),
            )
            .await?;
            Ok(vec![subject, referrer])
        }
    }
}

/// 16 clients push (shared and unique layers, indexes, referrers), pull and delete for
/// `duration` while GC runs back to back (untagged grace zero, blob grace `blob_grace`).
/// Then every acknowledged, undeleted image pulls back byte for byte, and (after a last
/// run past the grace window) the store holds exactly the blobs they reference.
async fn sixteen_clients_and_gc(backend: Backend, duration: Duration, blob_grace: Duration) {
    sixteen_clients_and_gc_crashing(backend, duration, blob_grace, false).await;
}

/// [`sixteen_clients_and_gc`]; with `crash`, the first run is killed (its task aborted)
/// between condemning a batch and deleting its bytes, as `kill -9` would, and a later run
/// must finish what it began.
async fn sixteen_clients_and_gc_crashing(
    backend: Backend,
    duration: Duration,
    blob_grace: Duration,
    crash: bool,
) {
    let registry = backend.registry.clone();
    let shared: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..6)
            .map(|i| format!("shared layer {i}").into_bytes())
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU64::new(0));
    let options = GcOptions {
        delete_untagged: true,
        dry_run: false,
        untagged_grace: Duration::ZERO,
        blob_grace,
        batch: 50,
        // A crashed run's tombstones are taken over soon.
        tombstone_claim: Duration::from_secs(2),
        ..GcOptions::default()
    };
    let finished = Arc::new(AtomicU64::new(0));
    let collector = {
        let finished = finished.clone();
        let (registry, stop, runs, options) = (
            registry.clone(),
            stop.clone(),
            runs.clone(),
            options.clone(),
        );
        tokio::spawn(async move {
            let mut freed = 0;
            if crash {
                // Run until a batch is condemned, then die there.
                let condemned = Arc::new(tokio::sync::Notify::new());
                let hook: GcHook = {
                    let condemned = condemned.clone();
                    Arc::new(move |_| {
                        let condemned = condemned.clone();
                        async move {
                            condemned.notify_one();
                            std::future::pending::<()>().await;
                        }
                        .boxed()
                    })
                };
                let give_up = Instant::now() + Duration::from_secs(60);
                loop {
                    assert!(
                        Instant::now() < give_up,
                        "no run condemned anything in a minute"
                    );
                    let mut run = {
                        let (registry, options, hook) =
                            (registry.clone(), options.clone(), hook.clone());
                        tokio::spawn(async move {
                            registry.collect_garbage_with(&options, Some(hook)).await
                        })
                    };
                    tokio::select! {
                        _ = condemned.notified() => {
                            run.abort();
                            break;
                        }
                        ended = &mut run => {
                            ended.expect("task").expect("gc run");
                        }
                    }
                }
            }
            while !stop.load(Ordering::Relaxed) {
                let report = registry.collect_garbage(&options).await.expect("gc run");
                freed += report.blobs_deleted;
                finished.fetch_add(report.blobs_finished, Ordering::Relaxed);
                runs.fetch_add(1, Ordering::Relaxed);
            }
            freed
        })
    };
    let deadline = Instant::now() + duration;
    let clients: Vec<_> = (0..16u64)
        .map(|client| {
            let (registry, shared) = (registry.clone(), shared.clone());
            tokio::spawn(async move {
                let mut rng =
                    Rng(0x9e37_79b9_7f4a_7c15 ^ (client + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                // Acknowledged and not deleted: (image, its referrers).
                let mut live: Vec<Vec<Pushed>> = Vec::new();
                let (mut retries, mut deleted, mut pulls) = (0u64, 0u64, 0u64);
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    match rng.below(4) {
                        0 | 1 => loop {
                            match push_something(&registry, client, n, &mut rng, &shared).await {
                                Ok(pushed) => {
                                    live.push(pushed);
                                    break;
                                }
                                Err(e) if retriable(&e) => retries += 1,
                                Err(e) => panic!("client {client}: push failed: {e}"),
                            }
                        },
                        2 if !live.is_empty() => {
                            let images = &live[rng.below(live.len() as u64) as usize];
                            for image in images {
                                pull_exactly(&registry, image).await.unwrap_or_else(|e| {
                                    panic!("client {client}: pull failed: {e}")
                                });
                            }
                            pulls += 1;
                        }
                        3 if !live.is_empty() => {
                            let images = live.swap_remove(rng.below(live.len() as u64) as usize);
                            registry
                                .delete_manifest(
                                    &images[0].repository,
                                    &Reference::Digest(images[0].digest.clone()),
                                )
                                .await
                                .unwrap_or_else(|e| panic!("client {client}: delete failed: {e}"));
                            deleted += 1;
                        }
                        _ => {}
                    }
                }
                (live, retries, deleted, pulls)
            })
        })
        .collect();
    let mut live = Vec::new();
    let (mut retries, mut deleted, mut pulls) = (0, 0, 0);
    for client in clients {
        let (images, r, d, p) = client.await.expect("client");
        live.extend(images);
        retries += r;
        deleted += d;
        pulls += p;
    }
    stop.store(true, Ordering::Relaxed);
    let freed_during = collector.await.expect("collector");
    // Past the grace window, two more runs take everything the clients left behind.
    tokio::time::sleep(blob_grace.max(options.tombstone_claim) + Duration::from_millis(1100)).await;
    for _ in 0..2 {
        let report = registry.collect_garbage(&options).await.expect("gc run");
        finished.fetch_add(report.blobs_finished, Ordering::Relaxed);
    }
    if crash {
        assert!(
            finished.load(Ordering::Relaxed) > 0,
            "a later run finished the crashed run's deletions"
        );
    }
    let mut referenced = BTreeSet::new();
    for images in &live {
        for image in images {
            pull_exactly(&registry, image)
                .await
                .expect("an acknowledged image pulls back whole");
            for blob in &image.blobs {
                referenced.insert(Digest::of(Algorithm::Sha256, blob));
            }
        }
    }
    let stored = stored_set(backend.blobs.list_blobs().await.expect("list"));
    eprintln!(
        "stress: {} images live, {deleted} deleted, {pulls} pulls, {retries} pushes retried, {} GC runs freed {freed_during} blobs",
        live.len(),
        runs.load(Ordering::Relaxed)
    );
    assert!(
        runs.load(Ordering::Relaxed) >= 2,
        "GC ran while clients worked"
    );
    assert!(freed_during > 0, "GC freed blobs while clients worked");
    let missing: Vec<_> = referenced.difference(&stored).collect();
    let extra: Vec<_> = stored.difference(&referenced).collect();
    assert!(
        missing.is_empty(),
        "referenced blobs without bytes: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "unreferenced blobs left: {} of {}",
        extra.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_fs_sixteen_clients_and_gc() {
    sixteen_clients_and_gc(
        sqlite_fs().await,
        Duration::from_secs(8),
        Duration::from_secs(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_s3_sixteen_clients_and_gc() {
    sixteen_clients_and_gc(
        postgres_s3().await,
        Duration::from_secs(8),
        Duration::from_secs(1),
    )
    .await;
}

/// The same with no blob grace window at all: in-flight pushes lose their links to GC and
/// push again, but no acknowledged image loses a byte (uploads link only the row they
/// reserved).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_fs_sixteen_clients_and_gc_without_any_grace() {
    sixteen_clients_and_gc(sqlite_fs().await, Duration::from_secs(5), Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_fs_sixteen_clients_and_gc_without_any_grace() {
    sixteen_clients_and_gc(postgres_fs().await, Duration::from_secs(5), Duration::ZERO).await;
}

/// A run killed between deleting blob rows and their bytes while 16 clients work: a later
/// run finishes its deletions, and every acknowledged image still pulls back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_fs_sixteen_clients_and_a_run_killed_mid_sweep() {
    sixteen_clients_and_gc_crashing(
        sqlite_fs().await,
        Duration::from_secs(6),
        Duration::from_secs(1),
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_s3_sixteen_clients_and_a_run_killed_mid_sweep() {
    sixteen_clients_and_gc_crashing(
        postgres_s3().await,
        Duration::from_secs(6),
        Duration::from_secs(1),
        true,
    )
    .await;
}
