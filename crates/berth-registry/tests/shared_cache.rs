//! Two nodes sharing one PostgreSQL database, each registry with its read cache on: another
//! node's write reaches the cache, and a lost notification connection empties it.

use std::sync::Arc;
use std::time::Duration;

use berth_core::{Algorithm, Digest, Reference, RepositoryName, Tag};
use berth_meta::{BlobIndex, ManifestStore, NewManifest, PgOptions, PgStore};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::FsBlobStore;

fn image(content: &str, layer: &Digest) -> NewManifest {
    NewManifest {
        digest: Digest::of(Algorithm::Sha256, content.as_bytes()),
        media_type: berth_core::media_type::OCI_MANIFEST.into(),
        content: content.as_bytes().to_vec(),
        artifact_type: None,
        config_media_type: None,
        subject: None,
        annotations: None,
        blobs: vec![layer.clone()],
        manifests: Vec::new(),
        require_manifests: true,
        aliases: Vec::new(),
        immutable_tags: Vec::new(),
    }
}

/// Point `v1` at `digest` behind berth's back: no node is told.
async fn retag_silently(database: &sqlx::PgPool, digest: &Digest) {
    sqlx::query("UPDATE tags SET manifest_digest = $1 WHERE name = 'v1'")
        .bind(digest.to_string())
        .execute(database)
        .await
        .expect("retag");
}

/// Retag `v1` behind berth's back until `registry` answers from its cache with the old
/// manifest (its cache is on and holds `v1`); then (cached, in the database).
async fn make_stale(
    registry: &Registry,
    repo: &RepositoryName,
    database: &sqlx::PgPool,
    [one, two]: [&NewManifest; 2],
) -> (Digest, Digest) {
    let v1 = Reference::Tag("v1".parse::<Tag>().expect("tag"));
    for _ in 0..50 {
        let first = registry
            .get_manifest(repo, &v1)
            .await
            .expect("get")
            .digest
            .clone();
        let other = if first == one.digest {
            &two.digest
        } else {
            &one.digest
        };
        retag_silently(database, other).await;
        // Notifications of earlier writes arrive meanwhile: the test waits for a quiet spell.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if registry.get_manifest(repo, &v1).await.expect("get").digest == first {
            return (first, other.clone());
        }
    }
    panic!("the read cache never came on");
}

/// Wait (up to 10 s) until `v1` on `registry` names `digest`.
async fn until_served(registry: &Registry, repo: &RepositoryName, digest: &Digest) {
    let v1 = Reference::Tag("v1".parse::<Tag>().expect("tag"));
    for _ in 0..500 {
        let served = registry.get_manifest(repo, &v1).await.expect("get");
        if &served.digest == digest {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("v1 never became {digest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_write_reaches_the_read_cache() {
    let db = berth_meta::postgres::testing::database().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Arc::new(FsBlobStore::open(dir.path()).expect("blobs"));
    let here = PgStore::connect(&PgOptions::new(db.url.clone()))
        .await
        .expect("node a");
    let there = PgStore::connect(&PgOptions::new(db.url.clone()))
        .await
        .expect("node b");
    let registry = Registry::new(
        Arc::new(here.clone()),
        blobs,
        RegistryOptions {
            read_cache: true,
            ..Default::default()
        },
    );
    let behind_the_back = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let repo: RepositoryName = "shared/app".parse().expect("name");
    let layer = Digest::of(Algorithm::Sha256, b"shared-layer");
    let (one, two) = (image("one", &layer), image("two", &layer));
    there.link_blob(&repo, &layer, 5).await.expect("link");
    let v1: Tag = "v1".parse().expect("tag");
    there
        .put_manifest(&repo, &one, std::slice::from_ref(&v1))
        .await
        .expect("put");
    there.put_manifest(&repo, &two, &[]).await.expect("put");

    // The cache comes on once the notifications are listened for: from then on a change
    // made behind berth's back is not seen.
    let (_, current) = make_stale(&registry, &repo, &behind_the_back, [&one, &two]).await;

    // Another node's write into the repository empties this node's cache of it.
    let other: Tag = "other".parse().expect("tag");
    there
        .put_manifest(&repo, &two, &[other])
        .await
        .expect("put");
    until_served(&registry, &repo, &current).await;

    // Losing the listening connection empties (and suspends) the cache: what changed
    // meanwhile is seen once it listens again.
    let (_, current) = make_stale(&registry, &repo, &behind_the_back, [&one, &two]).await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&behind_the_back)
    .await
    .expect("terminate");
    assert_eq!(terminated, [true], "one node listens");
    until_served(&registry, &repo, &current).await;

    // A repository another node creates shows in this node's (cached) catalog.
    let everything = berth_core::endpoint::Page::default();
    let listed = registry.catalog(&everything).await.expect("catalog");
    assert_eq!(listed.items, ["shared/app"]);
    there
        .link_blob(&"shared/new".parse().expect("name"), &layer, 5)
        .await
        .expect("link");
    let mut seen = false;
    for _ in 0..500 {
        let listed = registry.catalog(&everything).await.expect("catalog");
        if listed.items == ["shared/app", "shared/new"] {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen,
        "another node's new repository never reached the catalog"
    );

    behind_the_back.close().await;
    here.close().await;
    there.close().await;
}
