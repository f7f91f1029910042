//! The PostgreSQL backend against a real server (see `testing`): the shared suite, the
//! migrations, and several nodes writing one repository at once.

use std::sync::Arc;

use berth_core::{Algorithm, Digest, RepositoryName, Tag};

use super::testing::{self, TestDatabase};
use super::{PgOptions, PgStore, redacted_url};
use crate::{
    ArtifactStore, BlobIndex, ManifestStore, MetaError, NewManifest, ProjectStore, Reference,
    RepositoryStore, TagAddition, Upload, UploadStore,
};

async fn node(db: &TestDatabase) -> PgStore {
    PgStore::connect(&PgOptions::new(db.url.clone()))
        .await
        .expect("connects")
}

fn name(s: &str) -> RepositoryName {
    s.parse().expect("valid name")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("valid tag")
}

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

#[test]
fn passwords_never_reach_the_log() {
    assert_eq!(
        redacted_url("postgres://berth:s3cr3t@db.example:5432/berth?sslmode=disable"),
        "postgres://berth:***@db.example:5432/berth?sslmode=disable"
    );
    // An '@' inside the password does not end the credentials early.
    assert_eq!(
        redacted_url("postgres://berth:p@ss@db/berth"),
        "postgres://berth:***@db/berth"
    );
    assert_eq!(
        redacted_url("postgres://db/berth?user=berth&password=s3cr3t"),
        "postgres://db/berth?user=berth&password=***"
    );
    assert_eq!(
        redacted_url("postgres://berth@db/berth"),
        "postgres://berth@db/berth"
    );
}

#[tokio::test]
async fn postgres_passes_the_metadata_suite() {
    let db = testing::database().await;
    let store = node(&db).await;
    crate::suite::run(&store).await;
    store.close().await;
    // Reconnecting applies no migration twice and keeps the data.
    let store = node(&db).await;
    crate::suite::reopened(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_keeps_immutable_tags() {
    let db = testing::database().await;
    let store = node(&db).await;
    crate::suite::immutable_tags(&store).await;
    crate::suite::retention_policies(&store).await;
    crate::suite::replication(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_keeps_usage_and_quotas() {
    let db = testing::database().await;
    let store = node(&db).await;
    crate::suite::usage_and_quotas(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_lists_many_artifacts_page_by_page() {
    let db = testing::database().await;
    let store = node(&db).await;
    crate::suite::many_artifacts(&store).await;
    store.close().await;
}

/// Nodes starting at once against an empty database: one migrates, the others wait for it
/// and find nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_together_migrate_exactly_once() {
    let db = testing::database().await;
    let nodes = futures_util::future::try_join_all(
        (0..4).map(|_| async { PgStore::connect(&PgOptions::new(db.url.clone())).await }),
    )
    .await
    .expect("every node starts");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&nodes[0].pool)
            .await
            .expect("versions");
    let expected: Vec<i64> = (1..=super::MIGRATIONS.len() as i64).collect();
    assert_eq!(versions, expected);
    // Migration 2's `library` row exists once, not once per node.
    let projects = nodes[0].list_projects().await.expect("projects");
    assert_eq!(projects.len(), 1);
    for node in nodes {
        node.close().await;
    }
}

/// Start-up waits for a database that is not there yet, up to its deadline, and says so.
#[tokio::test]
async fn an_unreachable_database_fails_after_the_deadline() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut options = PgOptions::new(format!("postgres://berth:secret@127.0.0.1:{port}/berth"));
    options.connect_timeout = std::time::Duration::from_millis(1_500);
    let began = std::time::Instant::now();
    let error = PgStore::connect(&options)
        .await
        .expect_err("nothing listens");
    assert!(
        began.elapsed() >= std::time::Duration::from_millis(700),
        "it retried"
    );
    let message = error.to_string();
    assert!(message.contains("attempt"), "{message}");
    assert!(
        !message.contains("secret"),
        "the password leaked: {message}"
    );
}

/// Two nodes on one database race writes into the same repository; every decision SQLite
/// makes with its single writer must come out the same: one winner, no errors, no
/// duplicates. Without the repository lock, racing tag writes fail with unique violations
/// and a stale upload offset can win.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_racing_on_one_repository_agree() {
    const RACERS: usize = 16;
    let db = testing::database().await;
    let nodes = [Arc::new(node(&db).await), Arc::new(node(&db).await)];
    let node = |i: usize| nodes[i % 2].clone();
    let repo = name("race/app");
    let layer = Digest::of(Algorithm::Sha256, b"race-layer");

    // Both nodes create the repository with their first link at once: one repository.
    let links = (0..RACERS).map(|i| {
        let (store, repo, layer) = (node(i), repo.clone(), layer.clone());
        tokio::spawn(async move { store.link_blob(&repo, &layer, 5).await })
    });
    for outcome in futures_util::future::join_all(links).await {
        outcome.expect("task").expect("link");
    }
    assert_eq!(
        nodes[0].list_repositories(None, 10).await.expect("list"),
        ["race/app"]
    );

    // One upload advanced from the same offset by every racer: exactly one moves it.
    nodes[0]
        .create_upload(&Upload {
            id: "race".into(),
            repository: repo.clone(),
            offset: 0,
            hash_state: Vec::new(),
            store_state: None,
            created_at: 1,
        })
        .await
        .expect("create");
    let advances = (0..RACERS).map(|i| {
        let store = node(i);
        tokio::spawn(async move {
            store
                .advance_upload("race", 0, 10 + i as u64, &[i as u8], Some(&[i as u8]))
                .await
        })
    });
    let moved: Vec<usize> = futures_util::future::join_all(advances)
        .await
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.expect("task").expect("advance").then_some(i))
        .collect();
    assert_eq!(moved.len(), 1, "exactly one writer advances: {moved:?}");
    let upload = nodes[1]
        .get_upload("race")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (upload.offset, upload.hash_state),
        (10 + moved[0] as u64, vec![moved[0] as u8])
    );

    // Different manifests pushed under one tag at once: all succeed, the tag exists once
    // and names one of them.
    let manifests: Vec<NewManifest> = (0..RACERS)
        .map(|i| image(&format!("race-{i}"), &layer))
        .collect();
    let pushes = manifests.iter().enumerate().map(|(i, m)| {
        let (store, repo, m) = (node(i), repo.clone(), m.clone());
        tokio::spawn(async move { store.put_manifest(&repo, &m, &[tag("latest")]).await })
    });
    for outcome in futures_util::future::join_all(pushes).await {
        outcome.expect("task").expect("a racing push succeeds");
    }
    assert_eq!(
        nodes[0].list_tags(&repo, None, 10).await.expect("tags"),
        Some(vec!["latest".to_string()])
    );
    let latest = nodes[1]
        .get_manifest(&repo, &Reference::Tag(tag("latest")))
        .await
        .expect("get")
        .expect("tagged");
    assert!(manifests.iter().any(|m| m.digest == latest.digest));

    // The same manifest pushed by every racer at once: stored once, with one id.
    let same = image("race-same", &layer);
    let pushes = (0..RACERS).map(|i| {
        let (store, repo, m) = (node(i), repo.clone(), same.clone());
        tokio::spawn(async move {
            store
                .put_manifest(&repo, &m, &[tag(&format!("s{i}"))])
                .await
        })
    });
    for outcome in futures_util::future::join_all(pushes).await {
        outcome.expect("task").expect("a racing push succeeds");
    }
    let stored = nodes[0]
        .artifact(
            &repo,
            &Reference::Digest(same.digest.clone()),
            berth_core::mgmt::ArtifactWith {
                tags: true,
                accessories: false,
            },
        )
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.tags.map(|t| t.len()), Some(RACERS));

    // One tag added to different artifacts at once: one is Added, every other Exists.
    let additions = manifests.iter().enumerate().map(|(i, m)| {
        let (store, repo, digest) = (node(i), repo.clone(), m.digest.clone());
        tokio::spawn(async move { store.add_tag(&repo, &digest, &tag("release")).await })
    });
    let outcomes: Vec<TagAddition> = futures_util::future::join_all(additions)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("add_tag answers"))
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == TagAddition::Added)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, TagAddition::Added | TagAddition::Exists))
    );

    // Pushes racing the repository's deletion: each push lands wholly before or after it
    // (then it finds its blob gone), never half-way into a foreign-key error.
    for round in 0..8 {
        let racer = name(&format!("race/deleted-{round}"));
        nodes[0].link_blob(&racer, &layer, 5).await.expect("link");
        let push = {
            let (store, racer, m) = (node(0), racer.clone(), image(&format!("d-{round}"), &layer));
            tokio::spawn(async move { store.put_manifest(&racer, &m, &[tag("v1")]).await })
        };
        let delete = {
            let (store, racer) = (node(1), racer.clone());
            tokio::spawn(async move { store.delete_repository(&racer).await })
        };
        match push.await.expect("task") {
            Ok(_) | Err(MetaError::MissingReference { .. }) => {}
            Err(e) => panic!("a push racing a delete failed half-way: {e}"),
        }
        delete.await.expect("task").expect("delete");
    }
    for node in nodes {
        node.close().await;
    }
}

/// The feed's next message, or a failure after 10 s.
async fn next(
    feed: &mut tokio::sync::mpsc::Receiver<crate::Invalidation>,
) -> Option<crate::Invalidation> {
    tokio::time::timeout(std::time::Duration::from_secs(10), feed.recv())
        .await
        .expect("in time")
}

/// What one node changes reaches another node's feed; the feed starts with `All` (nothing
/// is known before it listens) and ends when the store closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_changes_arrive_as_invalidations() {
    use crate::Invalidation;

    let db = testing::database().await;
    let (reader, writer) = (node(&db).await, node(&db).await);
    let mut feed = reader.invalidations().expect("PostgreSQL has a feed");
    assert_eq!(next(&mut feed).await, Some(Invalidation::All));
    let repo = name("feed/app");
    let layer = Digest::of(Algorithm::Sha256, b"feed-layer");
    // A link that creates the repository changes the catalog: one notification.
    writer.link_blob(&repo, &layer, 5).await.expect("link");
    assert_eq!(
        next(&mut feed).await,
        Some(Invalidation::Repository("feed/app".into()))
    );
    // Another link into it changes no cached answer: no notification (the feed's end,
    // below, finds nothing left over).
    let other_layer = Digest::of(Algorithm::Sha256, b"feed-layer-2");
    writer
        .link_blob(&repo, &other_layer, 5)
        .await
        .expect("link");
    writer
        .put_manifest(&repo, &image("feed-1", &layer), &[tag("v1")])
        .await
        .expect("put");
    assert_eq!(
        next(&mut feed).await,
        Some(Invalidation::Repository("feed/app".into()))
    );
    // A write that changes nothing (rolled back by an error) notifies nobody.
    let mut missing = image("feed-2", &layer);
    missing.blobs.push(Digest::of(Algorithm::Sha256, b"absent"));
    assert!(writer.put_manifest(&repo, &missing, &[]).await.is_err());
    assert!(writer.delete_tag(&repo, &tag("v1")).await.expect("delete"));
    assert_eq!(
        next(&mut feed).await,
        Some(Invalidation::Repository("feed/app".into()))
    );
    assert!(writer.delete_repository(&repo).await.expect("delete"));
    assert_eq!(
        next(&mut feed).await,
        Some(Invalidation::Repository("feed/app".into()))
    );
    reader.close().await;
    assert_eq!(next(&mut feed).await, None, "the feed ends with its store");
    writer.close().await;
}

/// Every usage figure the triggers keep, each paired with a recount from the links: rows
/// where the two differ.
const USAGE_DRIFT: &str = "
    SELECT 'repository ' || r.name FROM repositories r
    WHERE r.blob_bytes <> (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs l
                           JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = r.id)
       OR r.unique_blob_bytes <> (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs l
                                  JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = r.id
                                  AND (SELECT COUNT(*) FROM repository_blobs o WHERE o.digest = l.digest) = 1)
    UNION ALL
    SELECT 'blob ' || b.digest FROM blobs b
    WHERE b.repository_links <> (SELECT COUNT(*) FROM repository_blobs l WHERE l.digest = b.digest)
       OR b.namespace_holders <> (SELECT COUNT(DISTINCT r.namespace) FROM repository_blobs l
                                  JOIN repositories r ON r.id = l.repository_id WHERE l.digest = b.digest)
    UNION ALL
    SELECT 'namespace link ' || n.namespace || ' ' || n.digest FROM namespace_blobs n
    WHERE n.links <> (SELECT COUNT(*) FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
                      WHERE r.namespace = n.namespace AND l.digest = n.digest)
    UNION ALL
    SELECT 'namespace ' || u.namespace FROM namespace_usage u
    WHERE u.blob_bytes <> (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE EXISTS (
                             SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
                             WHERE r.namespace = u.namespace AND l.digest = b.digest))
       OR u.unique_blob_bytes <> (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE EXISTS (
                             SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
                             WHERE r.namespace = u.namespace AND l.digest = b.digest)
                             AND NOT EXISTS (
                             SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
                             WHERE r.namespace <> u.namespace AND l.digest = b.digest))
    UNION ALL
    SELECT 'registry' FROM registry_usage
    WHERE linked_blob_bytes <> (SELECT COALESCE(SUM(size), 0) FROM blobs WHERE repository_links > 0)";

/// The figures that differ from a recount (see [`USAGE_DRIFT`]).
async fn usage_drift(database: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(USAGE_DRIFT)
        .fetch_all(database)
        .await
        .expect("recount")
}

/// Link deletes are counted per statement (migration 14): deletes of many links at once,
/// the same blob in several repositories and namespaces in one statement among them, leave
/// every figure equal to a recount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_after_deleting_many_links_at_once_equals_a_recount() {
    let db = testing::database().await;
    let store = node(&db).await;
    let direct = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let repos = ["na/one", "na/two", "nb/one", "nb/two", "nc/one"];
    let layers: Vec<Digest> = (0..8)
        .map(|i| Digest::of(Algorithm::Sha256, format!("many-{i}").as_bytes()))
        .collect();
    // Each statement deletes a different shape of link set (`$1`: blobs it names); links
    // are made again between.
    let all_blobs: Vec<String> = layers.iter().map(Digest::to_string).collect();
    let statements: [(&'static str, &[String]); 6] = [
        // One blob everywhere.
        ("DELETE FROM repository_blobs WHERE digest = ANY($1)", &all_blobs[..1]),
        // Two blobs, from two namespaces' repositories, leaving a third namespace alone.
        (
            "DELETE FROM repository_blobs WHERE digest = ANY($1) AND repository_id IN
             (SELECT id FROM repositories WHERE namespace IN ('na', 'nb'))",
            &all_blobs[1..3],
        ),
        // One repository's links (a repository delete's first step).
        (
            "DELETE FROM repository_blobs WHERE cardinality($1::text[]) >= 0 AND
             repository_id = (SELECT id FROM repositories WHERE name = 'na/two')",
            &[],
        ),
        // Every link but one per blob.
        (
            "DELETE FROM repository_blobs l WHERE cardinality($1::text[]) >= 0 AND
             repository_id <> (SELECT MIN(repository_id) FROM repository_blobs o WHERE o.digest = l.digest)",
            &[],
        ),
        // Nothing.
        ("DELETE FROM repository_blobs WHERE digest = ANY($1)", &[]),
        // Everything.
        ("DELETE FROM repository_blobs WHERE cardinality($1::text[]) >= 0", &[]),
    ];
    for (round, (statement, named)) in statements.iter().enumerate() {
        for (r, repo) in repos.iter().enumerate() {
            for (i, layer) in layers.iter().enumerate() {
                // A pattern that differs per round: some blobs shared, some held alone.
                if (i + r + round) % 3 != 0 {
                    store
                        .link_blob(&name(repo), layer, 100 + i as u64)
                        .await
                        .expect("link");
                }
            }
        }
        let drift = usage_drift(&direct).await;
        assert!(drift.is_empty(), "before {statement}: {drift:?}");
        sqlx::query(*statement)
            .bind(named.to_vec())
            .execute(&direct)
            .await
            .expect("delete");
        let drift = usage_drift(&direct).await;
        assert!(drift.is_empty(), "after {statement}: {drift:?}");
    }
    direct.close().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_refreshes_statistics_left_behind_by_a_bulk_import() {
    use crate::gc::GcStore;
    let db = testing::database().await;
    let store = node(&db).await;
    let direct = sqlx::PgPool::connect(&db.url).await.expect("connect");
    // Autovacuum would analyze the table itself sooner or later: this test is about GC not
    // waiting for it.
    sqlx::query("ALTER TABLE repository_blobs SET (autovacuum_enabled = false)")
        .execute(&direct)
        .await
        .expect("autovacuum off");
    let analyzed = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT analyze_count + autoanalyze_count FROM pg_stat_user_tables
             WHERE relname = 'repository_blobs'",
        )
        .fetch_one(&direct)
        .await
        .expect("stats")
    };
    let refreshes_links = || async {
        store
            .gc_refresh_statistics()
            .await
            .expect("refresh")
            .contains(&"repository_blobs".to_owned())
    };
    let before = analyzed().await;
    // Fresh statistics: nothing to do.
    assert!(!refreshes_links().await);
    for i in 0..200 {
        let layer = Digest::of(Algorithm::Sha256, format!("import-{i}").as_bytes());
        store
            .link_blob(&name("bulk/import"), &layer, 10)
            .await
            .expect("link");
    }
    // Backends report their row counts to the statistics within a second or so of going
    // idle, each pool connection on its own: wait for all 200, so that none arrives after
    // the `ANALYZE` and makes the table stale again.
    let modified = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'repository_blobs'",
        )
        .fetch_one(&direct)
        .await
        .expect("stats")
    };
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while modified().await < 200 {
        assert!(
            std::time::Instant::now() < give_up,
            "the links never reached the statistics"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refreshes_links().await, "repository_blobs was not analyzed");
    assert_eq!(analyzed().await, before + 1);
    // Analyzed now: the next run leaves it alone.
    assert!(!refreshes_links().await);
    direct.close().await;
    store.close().await;
}
