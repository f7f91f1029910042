//! The one behavioural test suite every metadata backend must pass. Backends call [`run`]
//! on a fresh store from their own tests (and [`reopened`] on the same database reopened).

use std::time::Instant;

use berth_core::mgmt::{
    ArtifactFilter, ArtifactKey, ArtifactWith, Order, RepositoryKey, TagFilter, TagKey, TextFilter,
};
use berth_core::{Algorithm, Digest, Reference, RepositoryName, Tag};

use crate::{
    ArtifactDeletion, ArtifactInfo, ArtifactQuery, MetaError, MetaStore, NewManifest, Paged,
    RepositoryQuery, TagAddition, TagQuery, Upload,
};

fn name(s: &str) -> RepositoryName {
    s.parse().expect("valid name")
}

fn digest(s: &str) -> Digest {
    Digest::of(Algorithm::Sha256, s.as_bytes())
}

fn manifest(content: &str, blobs: Vec<Digest>, subject: Option<Digest>) -> NewManifest {
    NewManifest {
        digest: digest(content),
        media_type: berth_core::media_type::OCI_MANIFEST.into(),
        content: content.as_bytes().to_vec(),
        artifact_type: Some("application/x.test".into()),
        config_media_type: Some("application/x.test".into()),
        subject,
        annotations: None,
        blobs,
        manifests: Vec::new(),
        require_manifests: true,
        aliases: Vec::new(),
        immutable_tags: Vec::new(),
    }
}

/// Exercise every operation on an empty store.
pub async fn run(store: &dyn MetaStore) {
    let repo = name("suite/app");
    let other = name("suite/other");
    let layer = digest("layer");

    // Blobs: invisible until linked; linking is per repository; mounting copies a link.
    assert_eq!(
        store.linked_blob_size(&repo, &layer).await.expect("query"),
        None
    );
    store.link_blob(&repo, &layer, 5).await.expect("link");
    store
        .link_blob(&repo, &layer, 5)
        .await
        .expect("linking twice is harmless");
    assert_eq!(
        store.linked_blob_size(&repo, &layer).await.expect("query"),
        Some(5)
    );
    assert_eq!(
        store.linked_blob_size(&other, &layer).await.expect("query"),
        None
    );
    assert_eq!(
        store
            .mount_blob(&other, &repo, &digest("nope"))
            .await
            .expect("mount"),
        None
    );
    assert_eq!(
        store
            .mount_blob(&repo, &other, &layer)
            .await
            .expect("mount"),
        Some(5)
    );
    assert_eq!(
        store.linked_blob_size(&other, &layer).await.expect("query"),
        Some(5)
    );
    assert_eq!(
        store
            .repositories_linking(&layer, 10)
            .await
            .expect("linking"),
        vec!["suite/app", "suite/other"]
    );
    assert_eq!(
        store
            .repositories_linking(&layer, 1)
            .await
            .expect("linking"),
        vec!["suite/app"]
    );
    assert!(
        store
            .repositories_linking(&digest("nope"), 10)
            .await
            .expect("linking")
            .is_empty()
    );
    assert!(store.unlink_blob(&other, &layer).await.expect("unlink"));
    assert!(
        !store
            .unlink_blob(&other, &layer)
            .await
            .expect("unlink again")
    );

    // Catalog in lexical order with pagination.
    assert_eq!(
        store.list_repositories(None, 10).await.expect("list"),
        vec!["suite/app", "suite/other"]
    );
    assert_eq!(
        store
            .list_repositories(Some("suite/app"), 10)
            .await
            .expect("list"),
        vec!["suite/other"]
    );
    assert_eq!(
        store.list_repositories(None, 1).await.expect("list"),
        vec!["suite/app"]
    );

    // Uploads: created, advanced only from the offset they are at, completed into a link.
    let upload = Upload {
        id: "u1".into(),
        repository: repo.clone(),
        offset: 0,
        hash_state: vec![1, 2],
        store_state: None,
        created_at: 7,
    };
    store.create_upload(&upload).await.expect("create");
    assert_eq!(
        store.get_upload("u1").await.expect("get"),
        Some(upload.clone())
    );
    assert!(
        store
            .advance_upload("u1", 0, 10, &[3], Some(b"s3 state"))
            .await
            .expect("advance")
    );
    assert!(
        !store
            .advance_upload("u1", 0, 20, &[4], Some(b"stale"))
            .await
            .expect("stale advance"),
        "stale offset must not move"
    );
    let moved = store.get_upload("u1").await.expect("get").expect("exists");
    assert_eq!(
        (moved.offset, moved.hash_state, moved.store_state),
        (10, vec![3], Some(b"s3 state".to_vec()))
    );
    let blob = digest("uploaded");
    let reservation = store
        .reserve_blob(&blob, 10)
        .await
        .expect("reserve")
        .expect("no tombstone");
    store
        .complete_upload("u1", &repo, &blob, 10, reservation)
        .await
        .expect("complete");
    assert_eq!(store.get_upload("u1").await.expect("get"), None);
    assert_eq!(
        store.linked_blob_size(&repo, &blob).await.expect("query"),
        Some(10)
    );
    store
        .create_upload(&Upload {
            id: "u2".into(),
            ..upload
        })
        .await
        .expect("create");
    // Idle sessions are found by when they last moved (created at 7 here).
    assert_eq!(
        store.uploads_idle_since(8).await.expect("idle"),
        vec!["u2".to_string()]
    );
    assert!(store.uploads_idle_since(7).await.expect("idle").is_empty());
    assert!(store.delete_upload("u2").await.expect("delete"));
    assert!(!store.delete_upload("u2").await.expect("delete again"));

    // Manifests: refused while a reference is missing, stored exactly, tagged.
    let missing = manifest("m-missing", vec![layer.clone(), digest("absent")], None);
    match store.put_manifest(&repo, &missing, &[]).await {
        Err(MetaError::MissingReference {
            digest: d,
            is_manifest: false,
        }) => assert_eq!(d, digest("absent")),
        other => panic!("expected MissingReference, got {other:?}"),
    }
    // The first missing reference in the manifest's order is the one named, blobs before
    // child manifests.
    let mut two_missing = manifest(
        "m-two-missing",
        vec![digest("absent-2"), layer.clone(), digest("absent-1")],
        None,
    );
    two_missing.manifests = vec![digest("absent-child")];
    match store.put_manifest(&repo, &two_missing, &[]).await {
        Err(MetaError::MissingReference {
            digest: d,
            is_manifest: false,
        }) => assert_eq!(d, digest("absent-2")),
        other => panic!("expected MissingReference, got {other:?}"),
    }
    // The same layer twice (docker's empty layers): stored, its reference recorded once.
    let repeated = manifest(
        "m-repeated-layer",
        vec![layer.clone(), blob.clone(), layer.clone()],
        None,
    );
    store
        .put_manifest(&repo, &repeated, &[])
        .await
        .expect("a layer listed twice");
    let image = manifest("m-image", vec![layer.clone(), blob.clone()], None);
    let latest: Tag = "latest".parse().expect("tag");
    store
        .put_manifest(&repo, &image, std::slice::from_ref(&latest))
        .await
        .expect("put");
    store
        .put_manifest(&repo, &image, std::slice::from_ref(&latest))
        .await
        .expect("put again is idempotent");
    let by_tag = store
        .get_manifest(&repo, &Reference::Tag(latest.clone()))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(by_tag.content, b"m-image");
    assert_eq!(by_tag.digest, image.digest);
    let by_digest = Reference::Digest(image.digest.clone());
    assert!(
        store
            .get_manifest(&repo, &by_digest)
            .await
            .expect("get")
            .is_some()
    );
    assert!(
        store
            .get_manifest(&other, &by_digest)
            .await
            .expect("get")
            .is_none()
    );

    // An index needs its children in the same repository.
    let mut index = manifest("m-index", Vec::new(), None);
    index.manifests = vec![image.digest.clone()];
    store
        .put_manifest(&repo, &index, &[])
        .await
        .expect("index with present child");
    assert!(matches!(
        store.put_manifest(&other, &index, &[]).await,
        Err(MetaError::MissingReference {
            is_manifest: true,
            ..
        })
    ));

    // A sparse index may name children the repository lacks; they are still recorded.
    let mut sparse = manifest("m-sparse-index", Vec::new(), None);
    sparse.manifests = vec![image.digest.clone(), digest("absent-child")];
    sparse.require_manifests = false;
    assert_eq!(
        store
            .put_manifest(&other, &sparse, &[])
            .await
            .expect("sparse index"),
        sparse.digest
    );

    // Several tags in one put; bytes already stored under another algorithm's digest
    // keep that digest (pushed by sha512, then by tag).
    let many: Vec<Tag> = ["t1", "t2"]
        .iter()
        .map(|t| t.parse().expect("tag"))
        .collect();
    let mut by_sha512 = manifest("m-sha512", vec![layer.clone()], None);
    by_sha512.digest = Digest::of(Algorithm::Sha512, b"m-sha512");
    store
        .put_manifest(&repo, &by_sha512, &[])
        .await
        .expect("put by sha512");
    let mut by_tag = manifest("m-sha512", vec![layer.clone()], None);
    by_tag.aliases = vec![by_sha512.digest.clone()];
    assert_eq!(
        store
            .put_manifest(&repo, &by_tag, &many)
            .await
            .expect("put by tag"),
        by_sha512.digest
    );
    for tag in &many {
        let found = store
            .get_manifest(&repo, &Reference::Tag(tag.clone()))
            .await
            .expect("get")
            .expect("tagged");
        assert_eq!(found.digest, by_sha512.digest);
    }
    for tag in many {
        assert!(store.delete_tag(&repo, &tag).await.expect("delete tag"));
    }
    assert!(
        store
            .delete_manifest(&repo, &by_sha512.digest)
            .await
            .expect("delete")
    );

    // Tags: moved by a later put, listed with pagination, unknown repository is None.
    let v1: Tag = "v1".parse().expect("tag");
    store
        .put_manifest(&repo, &image, std::slice::from_ref(&v1))
        .await
        .expect("tag v1");
    assert_eq!(
        store.list_tags(&repo, None, 10).await.expect("tags"),
        Some(vec!["latest".into(), "v1".into()])
    );
    assert_eq!(
        store
            .list_tags(&repo, Some("latest"), 10)
            .await
            .expect("tags"),
        Some(vec!["v1".into()])
    );
    assert_eq!(
        store
            .list_tags(&name("suite/none"), None, 10)
            .await
            .expect("tags"),
        None
    );
    assert!(store.delete_tag(&repo, &v1).await.expect("delete tag"));
    assert!(
        store
            .get_manifest(&repo, &Reference::Tag(v1))
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get_manifest(&repo, &by_digest)
            .await
            .expect("get")
            .is_some(),
        "manifest stays"
    );

    // Referrers: by subject, filtered by artifact type; the subject need not exist.
    let subject = digest("no-such-manifest");
    let mut sig = manifest("m-sig", vec![layer.clone()], Some(subject.clone()));
    sig.annotations = Some(serde_json::Map::from_iter([(
        "k".to_string(),
        serde_json::json!("v"),
    )]));
    store
        .put_manifest(&repo, &sig, &[])
        .await
        .expect("referrer");
    let found = store
        .referrers(&repo, &subject, None)
        .await
        .expect("referrers");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, sig.digest);
    assert_eq!(found[0].size, 5);
    assert_eq!(found[0].annotations, sig.annotations);
    assert!(
        store
            .referrers(&repo, &subject, Some("other/type"))
            .await
            .expect("filtered")
            .is_empty()
    );
    assert_eq!(
        store
            .referrers(&repo, &subject, Some("application/x.test"))
            .await
            .expect("filtered")
            .len(),
        1
    );

    // Deleting a manifest takes its tags with it.
    assert!(
        store
            .delete_manifest(&repo, &sig.digest)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_manifest(&repo, &sig.digest)
            .await
            .expect("delete again")
    );
    assert!(
        store
            .delete_manifest(&repo, &index.digest)
            .await
            .expect("delete index")
    );
    assert!(
        store
            .delete_manifest(&repo, &image.digest)
            .await
            .expect("delete image")
    );
    assert!(
        store
            .get_manifest(&repo, &Reference::Tag(latest))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        store.list_tags(&repo, None, 10).await.expect("tags"),
        Some(vec![])
    );
    identity(store).await;
    audit(store).await;
    artifacts(store).await;
    jobs(store).await;
    job_pruning(store).await;
    upstreams(store).await;
    proxy_tag_checks(store).await;
    gc(store).await;
}

/// Usage figures and quotas, on a fresh store (its registry-wide totals are checked as
/// differences, so other data may be there).
pub async fn usage_and_quotas(store: &dyn MetaStore) {
    usage(store).await;
    quotas(store).await;
    usage_after_mixed_work(store).await;
    quota_under_concurrent_pushes(store).await;
}

/// After [`run`] and a reopen of the same database, the data is still there.
pub async fn reopened(store: &dyn MetaStore) {
    let repo = name("suite/app");
    assert_eq!(
        store
            .linked_blob_size(&repo, &digest("layer"))
            .await
            .expect("query"),
        Some(5)
    );
    // suite/app, suite/other, the five the identity cases linked into, audit/app,
    // harbor/app, gc/app, gc/other and gc/reserved.
    assert_eq!(
        store.list_repositories(None, 20).await.expect("list").len(),
        12
    );
    assert!(store.user_by_name("alice").await.expect("get").is_some());
    let (entries, total) = store
        .audit_entries(&crate::AuditQuery::default())
        .await
        .expect("audit");
    assert_eq!(
        (entries.len(), total),
        (2, 2),
        "audit rows survive a reopen"
    );
    let pulls = store
        .repository_pulls(&name("audit/app"))
        .await
        .expect("pulls");
    assert_eq!(pulls, Some(4));
    let harbor = store
        .repository_info(&name("harbor/app"))
        .await
        .expect("info")
        .expect("still there");
    assert_eq!(harbor.description, "the app");
    // Ids outlive a restart, and new ones follow the old.
    let before = store
        .artifact(&harbor.name, &Reference::Tag(tag("again")), WITH_TAGS)
        .await
        .expect("get")
        .expect("tagged");
    let mut newer = manifest("h-after-restart", Vec::new(), None);
    newer.blobs = Vec::new();
    store
        .put_manifest(&harbor.name, &newer, &[tag("restarted")])
        .await
        .expect("put");
    let after = store
        .artifact(&harbor.name, &Reference::Tag(tag("restarted")), WITH_TAGS)
        .await
        .expect("get")
        .expect("tagged");
    assert!(after.id > before.id);
}

/// The audit log and pull statistics.
async fn audit(store: &dyn MetaStore) {
    use crate::{
        AuditBatch, AuditColumn, AuditMatch, AuditQuery, AuditRecord, PullRecord, PullStats,
    };

    let record =
        |at: i64, user: &str, op: &str, resource: &str, project: Option<&str>| AuditRecord {
            op_time_ms: at,
            username: user.into(),
            client: "192.0.2.7".into(),
            operation: op.into(),
            resource_type: "artifact".into(),
            resource: resource.into(),
            project: project.map(str::to_owned),
            success: true,
            reason: String::new(),
            count: 1,
        };
    let repo = name("audit/app");
    let layer = digest("audit-layer");
    store.link_blob(&repo, &layer, 3).await.expect("link");
    let image = manifest("audit-image", vec![layer.clone()], None);
    store
        .put_manifest(&repo, &image, &["v1".parse::<Tag>().expect("tag")])
        .await
        .expect("put");
    assert_eq!(store.repository_pulls(&repo).await.expect("pulls"), Some(0));
    let unpulled = store
        .artifact(&repo, &Reference::Digest(image.digest.clone()), WITH_TAGS)
        .await
        .expect("artifact")
        .expect("stored");
    assert_eq!(unpulled.pulled_at_ms, None);
    assert_eq!(
        store
            .artifact_pulls(&repo, &image.digest)
            .await
            .expect("pulls"),
        None
    );
    assert_eq!(
        store
            .repository_pulls(&name("audit/none"))
            .await
            .expect("pulls"),
        None
    );

    // Nothing to write is no write at all.
    store
        .append_audit(&AuditBatch::default())
        .await
        .expect("empty batch");
    let mut failed = record(1_000, "mallory", "login", "mallory", None);
    failed.resource_type = "login".into();
    failed.success = false;
    failed.reason = "invalid username or password".into();
    failed.count = 4;
    let pull = |n: u64, at: i64, digest: &Digest| PullRecord {
        repository: "audit/app".into(),
        digest: digest.to_string(),
        count: n,
        last_ms: at,
    };
    store
        .append_audit(&AuditBatch {
            entries: vec![
                record(2_000, "alice", "create", "audit/app:v1", Some("audit")),
                record(3_000, "bob", "pull", "audit/app:v1", Some("audit")),
                record(4_000, "alice", "pull", "audit/app@sha256:x", Some("audit")),
                record(5_000, "carol", "delete", "other/app:v2", Some("other")),
                failed.clone(),
            ],
            // A pull of a manifest deleted meanwhile (or never stored) is dropped.
            pulls: vec![
                pull(2, 3_000, &image.digest),
                pull(5, 9_000, &digest("gone")),
            ],
        })
        .await
        .expect("append");
    store
        .append_audit(&AuditBatch {
            entries: Vec::new(),
            pulls: vec![pull(1, 4_000, &image.digest)],
        })
        .await
        .expect("pulls only");
    assert_eq!(
        store
            .artifact_pulls(&repo, &image.digest)
            .await
            .expect("pulls"),
        Some(PullStats {
            count: 3,
            last_ms: 4_000
        })
    );
    assert_eq!(store.repository_pulls(&repo).await.expect("pulls"), Some(3));
    // The artifact's own row carries its latest pull, so a page needs no query per artifact.
    let shown = store
        .artifact(&repo, &Reference::Digest(image.digest.clone()), WITH_TAGS)
        .await
        .expect("artifact")
        .expect("stored");
    assert_eq!(shown.pulled_at_ms, Some(4_000));

    // Newest first by default, every field as written.
    let (all, total) = store
        .audit_entries(&AuditQuery::default())
        .await
        .expect("list");
    assert_eq!(total, 5);
    let times: Vec<i64> = all.iter().map(|e| e.record.op_time_ms).collect();
    assert_eq!(times, [5_000, 4_000, 3_000, 2_000, 1_000]);
    assert_eq!(all[4].record, failed);
    let query = |f: &dyn Fn(&mut AuditQuery)| {
        let mut q = AuditQuery::default();
        f(&mut q);
        q
    };
    let users = |q: AuditQuery| async move {
        let (page, total) = store.audit_entries(&q).await.expect("list");
        let names: Vec<String> = page.into_iter().map(|e| e.record.username).collect();
        (names, total)
    };
    assert_eq!(
        users(query(&|q| q.terms = vec![(
            AuditColumn::Username,
            AuditMatch::Exact("alice".into())
        )]))
        .await,
        (vec!["alice".to_string(), "alice".to_string()], 2)
    );
    assert_eq!(
        users(query(&|q| q.terms = vec![
            (
                AuditColumn::Resource,
                AuditMatch::Contains("@sha256".into())
            ),
            (
                AuditColumn::Operation,
                AuditMatch::AnyOf(vec!["pull".into(), "create".into()])
            ),
        ]))
        .await
        .1,
        1
    );
    assert_eq!(
        users(query(&|q| {
            q.from_ms = Some(2_000);
            q.to_ms = Some(4_000);
            q.sort = vec![(AuditColumn::OpTime, false)];
        }))
        .await
        .0,
        ["alice", "bob", "alice"]
    );
    // Only the projects named; entries without a project are for nobody but "every row".
    assert_eq!(
        users(query(&|q| q.projects = Some(vec!["audit".into()])))
            .await
            .1,
        3
    );
    assert_eq!(users(query(&|q| q.projects = Some(Vec::new()))).await.1, 0);
    // Pages, and the total of all pages.
    assert_eq!(
        users(query(&|q| {
            q.sort = vec![(AuditColumn::Username, false), (AuditColumn::OpTime, true)];
            q.offset = 1;
            q.limit = 2;
        }))
        .await,
        (vec!["alice".to_string(), "bob".to_string()], 5)
    );

    // Retention: the oldest rows go, at most `limit` at a time.
    assert_eq!(
        store.delete_audit_before(4_000, 2).await.expect("delete"),
        2
    );
    assert_eq!(
        store.delete_audit_before(4_000, 10).await.expect("delete"),
        1
    );
    assert_eq!(
        store.delete_audit_before(4_000, 10).await.expect("delete"),
        0
    );
    assert_eq!(users(AuditQuery::default()).await.1, 2);

    // A deleted manifest takes its pull statistics with it; the repository keeps its count.
    let other = manifest("audit-other", vec![layer.clone()], None);
    store.put_manifest(&repo, &other, &[]).await.expect("put");
    store
        .append_audit(&AuditBatch {
            entries: Vec::new(),
            pulls: vec![pull(1, 5_000, &other.digest)],
        })
        .await
        .expect("pull");
    assert!(
        store
            .delete_manifest(&repo, &other.digest)
            .await
            .expect("delete")
    );
    assert_eq!(
        store
            .artifact_pulls(&repo, &other.digest)
            .await
            .expect("pulls"),
        None
    );
    // 3 of the image, 1 of the deleted one: the repository's count is of every pull.
    assert_eq!(store.repository_pulls(&repo).await.expect("pulls"), Some(4));
}

const WITH_TAGS: ArtifactWith = ArtifactWith {
    tags: true,
    accessories: false,
};

const NEWEST: Order<ArtifactKey> = Order {
    key: ArtifactKey::PushTime,
    descending: true,
};

fn tag(s: &str) -> Tag {
    s.parse().expect("valid tag")
}

/// A page of `repository`'s artifacts (all of them, up to 100), with tags and accessories.
async fn page(
    store: &dyn MetaStore,
    repository: &RepositoryName,
    filter: &ArtifactFilter,
) -> Paged<ArtifactInfo> {
    store
        .artifact_page(
            repository,
            &ArtifactQuery {
                filter,
                order: NEWEST,
                with: ArtifactWith {
                    tags: true,
                    accessories: true,
                },
                offset: 0,
                limit: 100,
            },
        )
        .await
        .expect("page")
        .expect("repository exists")
}

fn digests(page: &Paged<ArtifactInfo>) -> Vec<Digest> {
    page.items.iter().map(|a| a.digest.clone()).collect()
}

/// The digests `filter` lists.
async fn filtered(
    store: &dyn MetaStore,
    repository: &RepositoryName,
    filter: ArtifactFilter,
) -> Vec<Digest> {
    digests(&page(store, repository, &filter).await)
}

/// The names of an artifact's tags in `order`.
async fn tag_names(
    store: &dyn MetaStore,
    repository: &RepositoryName,
    artifact: &Digest,
    order: Order<TagKey>,
    name: Option<TextFilter>,
) -> (u64, Vec<String>) {
    let page = store
        .artifact_tags(
            repository,
            artifact,
            &TagQuery {
                name: name.as_ref(),
                order,
                offset: 0,
                limit: 10,
            },
        )
        .await
        .expect("tags");
    (page.total, page.items.into_iter().map(|t| t.name).collect())
}

/// Harbor's view: repositories with counts and descriptions, artifacts with tags, children
/// and accessories, filters, pages, tags added and removed one by one, deep deletes, ids.
async fn artifacts(store: &dyn MetaStore) {
    let project = store
        .create_project("harbor", false, None)
        .await
        .expect("project");
    let repo = name("harbor/app");
    let other = name("harbor/other");
    let layer = digest("h-layer");
    store.link_blob(&repo, &layer, 5).await.expect("link");
    store.link_blob(&other, &layer, 5).await.expect("link");
    let image = |content: &str| {
        let mut m = manifest(content, vec![layer.clone()], None);
        m.config_media_type = Some("application/vnd.oci.image.config.v1+json".into());
        m
    };
    // a (v1) and b: images; c and d: platforms of the index idx (multi), d tagged arm;
    // sig: an accessory of a.
    let a = image("h-a");
    let b = image("h-b");
    let c = image("h-c");
    let d = image("h-d");
    let mut idx = manifest("h-index", Vec::new(), None);
    idx.media_type = berth_core::media_type::OCI_INDEX.into();
    idx.artifact_type = None;
    idx.config_media_type = None;
    idx.manifests = vec![c.digest.clone(), d.digest.clone()];
    let mut sig = manifest("h-sig", vec![layer.clone()], Some(a.digest.clone()));
    sig.artifact_type = Some("application/vnd.cncf.notary.signature".into());
    for (m, tags) in [
        (&a, vec![tag("v1")]),
        (&b, vec![]),
        (&c, vec![]),
        (&d, vec![tag("arm")]),
        (&idx, vec![tag("multi")]),
        (&sig, vec![]),
    ] {
        store.put_manifest(&repo, m, &tags).await.expect("put");
    }

    // The base collection: no untagged child (c), no accessory (sig); newest first.
    let all = ArtifactFilter::default();
    let listed = page(store, &repo, &all).await;
    assert_eq!(listed.total, 4);
    let walked = ArtifactFilter {
        digest: Some(TextFilter::Contains("sha256:".into())),
        ..Default::default()
    };
    assert_eq!(
        page(store, &repo, &walked).await.total,
        4,
        "counted as walked"
    );
    assert_eq!(
        digests(&listed),
        [&idx.digest, &d.digest, &b.digest, &a.digest].map(Clone::clone)
    );
    let ids: Vec<i64> = listed.items.iter().map(|a| a.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "ids follow pushes: {ids:?}"
    );
    let by_digest = |d: &Digest| {
        listed
            .items
            .iter()
            .find(|a| &a.digest == d)
            .expect("listed")
            .clone()
    };
    let (got_a, got_idx) = (by_digest(&a.digest), by_digest(&idx.digest));
    // Sizes: the manifest and its blobs; an index and its children with theirs.
    assert_eq!(got_a.size, 3 + 5);
    assert_eq!(got_idx.size, 7 + (3 + 5) + (3 + 5));
    assert_eq!(
        got_a.config_media_type.as_deref(),
        a.config_media_type.as_deref()
    );
    assert_eq!(
        got_a
            .tags
            .as_ref()
            .map(|t| t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()),
        Some(vec!["v1"])
    );
    let accessories = got_a.accessories.clone().expect("asked for");
    assert_eq!(accessories.len(), 1);
    assert_eq!(accessories[0].digest, sig.digest);
    assert_eq!(accessories[0].size, 5 + 5);
    assert_eq!(
        accessories[0].artifact_type.as_deref(),
        Some("application/vnd.cncf.notary.signature")
    );
    let child_digests: Vec<&Digest> = got_idx.child_ids.iter().map(|(d, _)| d).collect();
    assert_eq!(child_digests.len(), 2);
    assert!(child_digests.contains(&&c.digest) && child_digests.contains(&&d.digest));
    assert!(got_idx.content == idx.content && got_idx.manifest_media_type == idx.media_type);

    // Filters: tags, base, digest, media types; labels match nothing.
    assert_eq!(
        filtered(
            store,
            &repo,
            ArtifactFilter {
                tags: TagFilter::Tagged,
                ..Default::default()
            }
        )
        .await,
        [&idx.digest, &d.digest, &a.digest].map(Clone::clone)
    );
    assert_eq!(
        filtered(
            store,
            &repo,
            ArtifactFilter {
                tags: TagFilter::Untagged,
                ..Default::default()
            }
        )
        .await,
        vec![b.digest.clone()]
    );
    assert_eq!(
        filtered(
            store,
            &repo,
            ArtifactFilter {
                tags: TagFilter::NameContains("ult".into()),
                ..Default::default()
            }
        )
        .await,
        [idx.digest.clone()]
    );
    assert_eq!(
        page(
            store,
            &repo,
            &ArtifactFilter {
                all: true,
                ..Default::default()
            }
        )
        .await
        .total,
        6
    );
    let c_only = TextFilter::Exact(c.digest.to_string());
    assert!(
        filtered(
            store,
            &repo,
            ArtifactFilter {
                digest: Some(c_only.clone()),
                ..Default::default()
            }
        )
        .await
        .is_empty(),
        "an untagged child is not listed"
    );
    assert_eq!(
        filtered(
            store,
            &repo,
            ArtifactFilter {
                digest: Some(c_only),
                all: true,
                ..Default::default()
            }
        )
        .await,
        vec![c.digest.clone()]
    );
    assert_eq!(
        filtered(
            store,
            &repo,
            ArtifactFilter {
                media_type: Some(TextFilter::Exact(idx.media_type.clone())),
                ..Default::default()
            }
        )
        .await,
        [idx.digest.clone()]
    );
    assert_eq!(
        filtered(
            store,
            &repo,
            ArtifactFilter {
                media_type: Some(TextFilter::Contains("image.config".into())),
                ..Default::default()
            }
        )
        .await
        .len(),
        3
    );
    assert_eq!(
        filtered(
            store,
            &repo,
            ArtifactFilter {
                manifest_media_type: Some(TextFilter::Exact(idx.media_type.clone())),
                ..Default::default()
            }
        )
        .await,
        [idx.digest.clone()]
    );
    assert!(
        filtered(
            store,
            &repo,
            ArtifactFilter {
                nothing: true,
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );

    // Pages: offset and limit, either direction, tags only when asked.
    let query = |offset, descending, with| ArtifactQuery {
        filter: &all,
        order: Order {
            key: ArtifactKey::PushTime,
            descending,
        },
        with,
        offset,
        limit: 2,
    };
    let second = store
        .artifact_page(
            &repo,
            &query(
                2,
                true,
                ArtifactWith {
                    tags: false,
                    accessories: false,
                },
            ),
        )
        .await
        .expect("page")
        .expect("exists");
    assert_eq!(
        (second.total, digests(&second)),
        (4, vec![b.digest.clone(), a.digest.clone()])
    );
    assert!(
        second
            .items
            .iter()
            .all(|a| a.tags.is_none() && a.accessories.is_none())
    );
    let oldest = store
        .artifact_page(&repo, &query(0, false, WITH_TAGS))
        .await
        .expect("page")
        .expect("exists");
    assert_eq!(digests(&oldest), [a.digest.clone(), b.digest.clone()]);
    assert!(
        store
            .artifact_page(&name("harbor/none"), &query(0, true, WITH_TAGS))
            .await
            .expect("page")
            .is_none()
    );

    // One artifact by tag or digest.
    let v1 = store
        .artifact(&repo, &Reference::Tag(tag("v1")), WITH_TAGS)
        .await
        .expect("get")
        .expect("found");
    assert_eq!((v1.digest.clone(), v1.id), (a.digest.clone(), got_a.id));
    let untagged = store
        .artifact(&repo, &Reference::Digest(b.digest.clone()), WITH_TAGS)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(untagged.tags, Some(Vec::new()));
    for missing in [
        Reference::Tag(tag("nope")),
        Reference::Digest(digest("nope")),
    ] {
        assert!(
            store
                .artifact(&repo, &missing, WITH_TAGS)
                .await
                .expect("get")
                .is_none()
        );
    }

    // Tags one by one: a repository has a tag once; removal only from its artifact.
    assert_eq!(
        store
            .add_tag(&repo, &a.digest, &tag("v2"))
            .await
            .expect("add"),
        TagAddition::Added
    );
    for (on, name_) in [(&b.digest, "v2"), (&a.digest, "v1")] {
        assert_eq!(
            store.add_tag(&repo, on, &tag(name_)).await.expect("add"),
            TagAddition::Exists
        );
    }
    assert_eq!(
        store
            .add_tag(&repo, &digest("nope"), &tag("x"))
            .await
            .expect("add"),
        TagAddition::NoArtifact
    );
    assert_eq!(
        store
            .add_tag(&name("harbor/none"), &a.digest, &tag("x"))
            .await
            .expect("add"),
        TagAddition::NoArtifact
    );
    assert_eq!(
        tag_names(store, &repo, &a.digest, NEWEST_TAG, None).await,
        (2, vec!["v2".into(), "v1".into()])
    );
    let by_name = Order {
        key: TagKey::Name,
        descending: false,
    };
    let v = Some(TextFilter::Contains("v".into()));
    assert_eq!(
        tag_names(store, &repo, &a.digest, by_name, v).await.1,
        ["v1", "v2"]
    );
    let v2 = Some(TextFilter::Exact("v2".into()));
    assert_eq!(
        tag_names(store, &repo, &a.digest, NEWEST_TAG, v2).await.1,
        ["v2"]
    );
    assert!(
        !store
            .remove_tag_from(&repo, &b.digest, &tag("v2"))
            .await
            .expect("remove")
    );
    assert!(
        store
            .remove_tag_from(&repo, &a.digest, &tag("v2"))
            .await
            .expect("remove")
    );
    // A tag keeps its id when a push moves it.
    let v1_id = v1
        .tags
        .as_ref()
        .and_then(|t| t.first())
        .map(|t| t.id)
        .expect("v1");
    store
        .put_manifest(&repo, &b, &[tag("v1")])
        .await
        .expect("move v1");
    let moved = store
        .artifact(&repo, &Reference::Tag(tag("v1")), WITH_TAGS)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (moved.digest.clone(), moved.tags.expect("tags")[0].id),
        (b.digest.clone(), v1_id)
    );
    store
        .put_manifest(&repo, &a, &[tag("v1")])
        .await
        .expect("move v1 back");

    // Deletes: refused for an index's child; an index takes its untagged children; a
    // subject takes its accessories; ids are never given again.
    assert_eq!(
        store
            .delete_artifact(&repo, &c.digest)
            .await
            .expect("delete"),
        ArtifactDeletion::Referenced(idx.digest.clone())
    );
    assert_eq!(
        store
            .delete_artifact(&repo, &idx.digest)
            .await
            .expect("delete"),
        ArtifactDeletion::Deleted(vec![idx.digest.clone(), c.digest.clone()])
    );
    assert!(
        store
            .artifact(&repo, &Reference::Tag(tag("arm")), WITH_TAGS)
            .await
            .expect("get")
            .is_some(),
        "a tagged child stays"
    );
    assert_eq!(
        store
            .delete_artifact(&repo, &a.digest)
            .await
            .expect("delete"),
        ArtifactDeletion::Deleted(vec![a.digest.clone(), sig.digest.clone()])
    );
    assert_eq!(
        store
            .delete_artifact(&repo, &a.digest)
            .await
            .expect("delete"),
        ArtifactDeletion::NotFound
    );
    let newest_id = page(store, &repo, &all)
        .await
        .items
        .iter()
        .map(|a| a.id)
        .max();
    store
        .put_manifest(&repo, &a, &[tag("again")])
        .await
        .expect("push again");
    let again = store
        .artifact(&repo, &Reference::Tag(tag("again")), WITH_TAGS)
        .await
        .expect("get")
        .expect("found");
    assert!(Some(again.id) > newest_id && again.id != got_a.id);

    // A referrer whose subject is not in the repository is listed (and counted): only an
    // artifact's own accessories hide under it. The default count (taken without a walk)
    // agrees with a filtered walk over the same set.
    let orphans = name("harbor/orphans");
    store.link_blob(&orphans, &layer, 5).await.expect("link");
    let x = image("h-x");
    let mut stray = manifest("h-stray", vec![layer.clone()], Some(digest("nowhere")));
    stray.artifact_type = Some("application/x.sig".into());
    let mut real = manifest("h-real", vec![layer.clone()], Some(x.digest.clone()));
    real.artifact_type = Some("application/x.sig".into());
    for (m, tags) in [(&x, vec![tag("x")]), (&stray, vec![]), (&real, vec![])] {
        store.put_manifest(&orphans, m, &tags).await.expect("put");
    }
    let default = page(store, &orphans, &all).await;
    assert_eq!(
        (default.total, digests(&default)),
        (2, vec![stray.digest.clone(), x.digest.clone()])
    );
    let walked = page(
        store,
        &orphans,
        &ArtifactFilter {
            digest: Some(TextFilter::Contains("sha256:".into())),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(walked.total, default.total);
    let info = store
        .repository_info(&orphans)
        .await
        .expect("info")
        .expect("exists");
    assert_eq!(info.artifact_count, 2);
    // The count stays true through every way manifests go: an artifact deleted with its
    // accessory, a manifest deleted alone.
    let walk_filter = ArtifactFilter {
        digest: Some(TextFilter::Contains("sha256:".into())),
        ..Default::default()
    };
    assert!(matches!(
        store
            .delete_artifact(&orphans, &x.digest)
            .await
            .expect("delete"),
        ArtifactDeletion::Deleted(_)
    ));
    let default = page(store, &orphans, &all).await;
    assert_eq!(
        (default.total, digests(&default)),
        (1, vec![stray.digest.clone()])
    );
    assert_eq!(page(store, &orphans, &walk_filter).await.total, 1);
    assert!(
        store
            .delete_manifest(&orphans, &stray.digest)
            .await
            .expect("delete")
    );
    assert_eq!(page(store, &orphans, &all).await.total, 0);
    assert!(store.delete_repository(&orphans).await.expect("delete"));

    // Repositories: counts, projects, names, order, descriptions, deletes.
    let both = vec!["harbor".to_string()];
    fn by<'a>(
        projects: Option<&'a [String]>,
        name: Option<&'a TextFilter>,
        key: RepositoryKey,
        descending: bool,
    ) -> RepositoryQuery<'a> {
        RepositoryQuery {
            projects,
            name,
            order: Order { key, descending },
            offset: 0,
            limit: 10,
        }
    }
    let listed = store
        .repository_page(&by(Some(&both), None, RepositoryKey::CreationTime, true))
        .await
        .expect("repositories");
    let summary: Vec<(String, u64, Option<i64>)> = listed
        .items
        .iter()
        .map(|r| (r.name.to_string(), r.artifact_count, r.project_id))
        .collect();
    assert_eq!(
        (listed.total, summary),
        (
            2,
            vec![
                ("harbor/other".into(), 0, Some(project)),
                ("harbor/app".into(), 3, Some(project))
            ]
        )
    );
    let names_of = |p: Paged<crate::RepositoryInfo>| {
        p.items
            .into_iter()
            .map(|r| r.name.to_string())
            .collect::<Vec<_>>()
    };
    let by_name = store
        .repository_page(&by(Some(&both), None, RepositoryKey::Name, false))
        .await
        .expect("repositories");
    assert_eq!(names_of(by_name), ["harbor/app", "harbor/other"]);
    let contains = TextFilter::Contains("harbor/oth".into());
    assert_eq!(
        names_of(
            store
                .repository_page(&by(None, Some(&contains), RepositoryKey::Id, true))
                .await
                .expect("repositories")
        ),
        ["harbor/other"]
    );
    let exact = TextFilter::Exact("harbor/app".into());
    assert_eq!(
        names_of(
            store
                .repository_page(&by(None, Some(&exact), RepositoryKey::Id, true))
                .await
                .expect("repositories")
        ),
        ["harbor/app"]
    );
    let nothing = store
        .repository_page(&by(Some(&[]), None, RepositoryKey::Id, true))
        .await
        .expect("repositories");
    assert_eq!((nothing.total, nothing.items.len()), (0, 0));
    let everything = store
        .repository_page(&by(None, None, RepositoryKey::Name, false))
        .await
        .expect("repositories");
    assert!(everything.total >= 2);
    assert!(
        everything
            .items
            .iter()
            .any(|r| r.name.as_str() == "suite/app" && r.project_id.is_none())
    );

    assert!(
        store
            .set_repository_description(&repo, "the app")
            .await
            .expect("describe")
    );
    assert!(
        !store
            .set_repository_description(&name("harbor/none"), "x")
            .await
            .expect("describe")
    );
    let info = store
        .repository_info(&repo)
        .await
        .expect("info")
        .expect("exists");
    assert_eq!(
        (info.description.as_str(), info.artifact_count),
        ("the app", 3)
    );
    assert!(info.updated_at >= info.created_at);
    assert!(store.delete_repository(&other).await.expect("delete"));
    assert!(!store.delete_repository(&other).await.expect("delete again"));
    assert!(store.repository_info(&other).await.expect("info").is_none());
    assert_eq!(store.list_tags(&other, None, 10).await.expect("tags"), None);
}

const NEWEST_TAG: Order<TagKey> = Order {
    key: TagKey::PushTime,
    descending: true,
};

/// Ten thousand artifacts in one repository, listed page by page: each page holds its 100
/// artifacts, newest first, with their tags, and no artifact is on two pages. The time of
/// each page is printed, not asserted (bench/run.sh measures it for real).
pub async fn many_artifacts(store: &dyn MetaStore) {
    const N: usize = 10_000;
    let repo = name("many/artifacts");
    let layer = digest("many-layer");
    store.link_blob(&repo, &layer, 1).await.expect("link");
    let began = Instant::now();
    let mut manifests = (0..N).map(|i| {
        (
            manifest(&format!("many-{i}"), vec![layer.clone()], None),
            tag(&format!("t{i:05}")),
        )
    });
    // Concurrent puts share their durability waits (group commit).
    loop {
        let batch: Vec<_> = manifests.by_ref().take(64).collect();
        if batch.is_empty() {
            break;
        }
        futures_util::future::try_join_all(
            batch
                .iter()
                .map(|(m, t)| store.put_manifest(&repo, m, std::slice::from_ref(t))),
        )
        .await
        .expect("seed");
    }
    eprintln!("seeded {N} artifacts in {:?}", began.elapsed());
    let filter = ArtifactFilter::default();
    let mut times = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut last_id = i64::MAX;
    for page_number in 0..(N / 100) {
        let began = Instant::now();
        let page = store
            .artifact_page(
                &repo,
                &ArtifactQuery {
                    filter: &filter,
                    order: NEWEST,
                    with: WITH_TAGS,
                    offset: (page_number * 100) as u64,
                    limit: 100,
                },
            )
            .await
            .expect("page")
            .expect("exists");
        times.push(began.elapsed());
        assert_eq!((page.total, page.items.len()), (N as u64, 100));
        for artifact in &page.items {
            assert!(artifact.id < last_id, "newest first across pages");
            last_id = artifact.id;
            assert!(seen.insert(artifact.id));
            assert_eq!(artifact.tags.as_ref().map(Vec::len), Some(1));
        }
    }
    let (first, deepest) = (times[0], times[times.len() - 1]);
    times.sort();
    eprintln!(
        "pages of 100 of {N} artifacts: median {:?}, slowest {:?}, first {first:?}, deepest {deepest:?}",
        times[times.len() / 2],
        times[times.len() - 1],
    );
}

/// Users, projects, members, robots and signing keys.
async fn identity(store: &dyn MetaStore) {
    use berth_core::access::RobotAccess;
    use berth_core::{RobotPermission, Role};

    use crate::{NewRobot, NewUser, SigningKey};

    // `library` exists and is public from the start.
    let library = store
        .project_by_name("library")
        .await
        .expect("get")
        .expect("library exists");
    assert!(library.public);

    // Users: unique names, found by name and id, updated, listed by name.
    let alice = NewUser {
        name: "alice".into(),
        email: "alice@example.com".into(),
        password_hash: "$argon2id$not-a-real-hash".into(),
        ..Default::default()
    };
    let alice_id = store.create_user(&alice).await.expect("create");
    assert!(matches!(
        store.create_user(&alice).await,
        Err(MetaError::Conflict(_))
    ));
    let bob_id = store
        .create_user(&NewUser {
            name: "bob".into(),
            password_hash: "h".into(),
            ..Default::default()
        })
        .await
        .expect("create bob");
    let mut stored = store
        .user_by_name("alice")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (stored.id, stored.email.as_str()),
        (alice_id, "alice@example.com")
    );
    assert!(!stored.sysadmin);
    stored.sysadmin = true;
    stored.password_hash = "$argon2id$other".into();
    assert!(store.update_user(&stored).await.expect("update"));
    let reread = store
        .user_by_id(alice_id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (reread.sysadmin, reread.password_hash.as_str()),
        (true, "$argon2id$other")
    );
    let names: Vec<String> = store
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    // Projects: unique names, public flag, members with roles, memberships per user.
    let team = store
        .create_project("team", false, Some(alice_id))
        .await
        .expect("create project");
    assert!(matches!(
        store.create_project("team", true, None).await,
        Err(MetaError::Conflict(_))
    ));
    let mut project = store
        .project_by_id(team)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (project.name.as_str(), project.public, project.owner_id),
        ("team", false, Some(alice_id))
    );
    project.public = true;
    assert!(store.update_project(&project).await.expect("update"));
    assert!(
        store
            .project_by_name("team")
            .await
            .expect("get")
            .expect("found")
            .public
    );
    store
        .set_member(team, bob_id, Role::Guest)
        .await
        .expect("add");
    store
        .set_member(team, bob_id, Role::Developer)
        .await
        .expect("change role");
    store
        .set_member(team, alice_id, Role::ProjectAdmin)
        .await
        .expect("add");
    let members: Vec<(String, Role)> = store
        .members(team)
        .await
        .expect("members")
        .into_iter()
        .map(|m| (m.user_name, m.role))
        .collect();
    assert_eq!(
        members,
        [
            ("alice".to_string(), Role::ProjectAdmin),
            ("bob".to_string(), Role::Developer)
        ]
    );
    let bobs = store.memberships(bob_id).await.expect("memberships");
    assert_eq!(bobs.len(), 1);
    assert_eq!(
        (bobs[0].project.name.as_str(), bobs[0].role),
        ("team", Role::Developer)
    );
    assert!(store.remove_member(team, bob_id).await.expect("remove"));
    assert!(
        !store
            .remove_member(team, bob_id)
            .await
            .expect("remove again")
    );
    assert!(
        store
            .memberships(bob_id)
            .await
            .expect("memberships")
            .is_empty()
    );

    // A project's repositories are those named under it, and no others.
    let layer = digest("layer");
    store
        .link_blob(&name("team/app"), &layer, 5)
        .await
        .expect("link");
    store
        .link_blob(&name("team/a/b"), &layer, 5)
        .await
        .expect("link");
    store
        .link_blob(&name("teamx/app"), &layer, 5)
        .await
        .expect("link");
    assert_eq!(
        store.project_repository_count("team").await.expect("count"),
        2
    );
    assert_eq!(
        store
            .project_repository_count("nothing")
            .await
            .expect("count"),
        0
    );
    let team_only = vec!["team".to_string()];
    assert_eq!(
        store
            .list_repositories_in(&team_only, None, 10)
            .await
            .expect("list"),
        ["team/a/b", "team/app"]
    );
    assert_eq!(
        store
            .list_repositories_in(&team_only, Some("team/a/b"), 10)
            .await
            .expect("list"),
        ["team/app"]
    );
    assert!(
        store
            .list_repositories_in(&[], None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    // Several projects: read range by range, yet in one name order across them ("team-b/"
    // sorts before "team/", "teamx/" belongs to neither), and paged across the ranges.
    for repo in ["team-b/x", "a/z"] {
        store.link_blob(&name(repo), &layer, 5).await.expect("link");
    }
    let three = vec!["team".to_string(), "team-b".to_string(), "a".to_string()];
    assert_eq!(
        store
            .list_repositories_in(&three, None, 10)
            .await
            .expect("list"),
        ["a/z", "team-b/x", "team/a/b", "team/app"]
    );
    assert_eq!(
        store
            .list_repositories_in(&three, None, 2)
            .await
            .expect("list"),
        ["a/z", "team-b/x"]
    );
    assert_eq!(
        store
            .list_repositories_in(&three, Some("team-b/x"), 10)
            .await
            .expect("list"),
        ["team/a/b", "team/app"]
    );
    assert_eq!(
        store
            .list_repositories_in(&three, Some("team/app"), 10)
            .await
            .expect("list"),
        Vec::<String>::new()
    );

    // Robots: unique names, permissions kept as given, update, delete with their project.
    let permissions = vec![RobotPermission {
        kind: "project".into(),
        namespace: "team".into(),
        access: vec![RobotAccess::new("repository", "pull")],
    }];
    let robot = NewRobot {
        name: "robot$team+ci".into(),
        description: "CI".into(),
        project_id: Some(team),
        secret_hash: "$argon2id$secret".into(),
        disabled: false,
        expires_at: Some(4_000_000_000),
        permissions: permissions.clone(),
    };
    let robot_id = store.create_robot(&robot).await.expect("create robot");
    assert!(matches!(
        store.create_robot(&robot).await,
        Err(MetaError::Conflict(_))
    ));
    let mut stored = store
        .robot_by_name("robot$team+ci")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (stored.id, stored.permissions.clone(), stored.expires_at),
        (robot_id, permissions, Some(4_000_000_000))
    );
    stored.disabled = true;
    assert!(store.update_robot(&stored).await.expect("update"));
    assert!(
        store
            .robot_by_id(robot_id)
            .await
            .expect("get")
            .expect("found")
            .disabled
    );
    let system = store
        .create_robot(&NewRobot {
            name: "robot$sync".into(),
            project_id: None,
            ..robot.clone()
        })
        .await
        .expect("system robot");
    assert_eq!(store.list_robots().await.expect("list").len(), 2);

    // Deleting a project takes its members and project robots, not its users.
    assert!(store.delete_project(team).await.expect("delete"));
    assert!(store.project_by_name("team").await.expect("get").is_none());
    assert!(store.robot_by_id(robot_id).await.expect("get").is_none());
    assert!(store.robot_by_id(system).await.expect("get").is_some());
    assert!(
        store
            .memberships(alice_id)
            .await
            .expect("memberships")
            .is_empty()
    );
    assert!(store.delete_robot(system).await.expect("delete robot"));
    assert!(store.delete_user(bob_id).await.expect("delete user"));
    assert!(store.user_by_name("bob").await.expect("get").is_none());

    // Signing keys: added once per kid, retired, forgotten after their tokens expired.
    let key = |kid: &str, created_at| SigningKey {
        kid: kid.into(),
        algorithm: "ES256".into(),
        private_key: vec![1, 2, 3],
        created_at,
        retired_at: None,
    };
    assert!(store.add_signing_key(&key("k1", 10)).await.expect("add"));
    assert!(
        !store
            .add_signing_key(&key("k1", 10))
            .await
            .expect("add again")
    );
    assert!(store.add_signing_key(&key("k2", 20)).await.expect("add"));
    assert!(store.retire_signing_key("k1", 30).await.expect("retire"));
    assert!(
        !store
            .retire_signing_key("k1", 40)
            .await
            .expect("retire again")
    );
    let keys = store.signing_keys().await.expect("keys");
    assert_eq!(
        keys.iter()
            .map(|k| (k.kid.as_str(), k.retired_at))
            .collect::<Vec<_>>(),
        [("k1", Some(30)), ("k2", None)]
    );
    assert!(
        !format!("{:?}", keys[0]).contains("[1, 2, 3]"),
        "keys never print their secret"
    );
    assert_eq!(
        store
            .delete_signing_keys_retired_before(31)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(store.signing_keys().await.expect("keys").len(), 1);
}

/// Jobs: one claim at a time under a lease, taken over when the lease lapses, retried,
/// finished once; scheduled runs enqueued once however many nodes find them due.
async fn jobs(store: &dyn MetaStore) {
    use crate::{JobOutcome, JobState, NewJob, Schedule};
    let job = |kind: &str, key: &str, at: i64| NewJob {
        kind: kind.into(),
        key: key.into(),
        params: serde_json::json!({"key": key}),
        run_after_ms: at,
    };
    const T: i64 = 1_000_000;
    let first = store
        .enqueue_job(&job("sweep", "a", T))
        .await
        .expect("enqueue")
        .expect("new");
    assert_eq!(
        store
            .enqueue_job(&job("sweep", "a", T))
            .await
            .expect("again"),
        None,
        "a key is enqueued once"
    );
    store
        .enqueue_job(&job("sweep", "later", T + 60_000))
        .await
        .expect("enqueue")
        .expect("new");
    // Only kinds the runner knows, only when due.
    assert!(
        store
            .claim_job(&["other"], "node-a", T, T + 1_000)
            .await
            .expect("claim")
            .is_none()
    );
    assert!(
        store
            .claim_job(&["sweep"], "node-a", T - 1, T)
            .await
            .expect("claim")
            .is_none()
    );
    let claimed = store
        .claim_job(&["other", "sweep"], "node-a", T, T + 1_000)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(
        (
            claimed.id,
            claimed.state,
            claimed.attempts,
            claimed.params["key"].as_str()
        ),
        (first, JobState::Running, 1, Some("a"))
    );
    assert_eq!(claimed.lease_owner.as_deref(), Some("node-a"));
    // Held: nobody else gets it while the lease runs.
    assert!(
        store
            .claim_job(&["sweep"], "node-b", T + 500, T + 1_500)
            .await
            .expect("claim")
            .is_none()
    );
    assert!(
        store
            .renew_job(first, "node-a", T + 2_000)
            .await
            .expect("renew")
    );
    assert!(
        store
            .claim_job(&["sweep"], "node-b", T + 1_500, T + 3_000)
            .await
            .expect("claim")
            .is_none()
    );
    // node-a dies: once its lease lapses, node-b takes the job over.
    let taken = store
        .claim_job(&["sweep"], "node-b", T + 2_001, T + 5_000)
        .await
        .expect("claim")
        .expect("lapsed");
    assert_eq!((taken.id, taken.attempts), (first, 2));
    assert!(
        !store
            .renew_job(first, "node-a", T + 9_000)
            .await
            .expect("renew")
    );
    let done = JobOutcome::Succeeded(serde_json::json!({"freed": 3}));
    assert!(
        !store
            .finish_job(first, "node-a", &done, T + 2_500)
            .await
            .expect("finish"),
        "not its job any more"
    );
    assert!(
        store
            .finish_job(first, "node-b", &done, T + 2_600)
            .await
            .expect("finish")
    );
    assert!(
        !store
            .finish_job(first, "node-b", &done, T + 2_700)
            .await
            .expect("finish"),
        "finished once"
    );
    let finished = store.job(first).await.expect("job").expect("stored");
    assert_eq!(
        (
            finished.state,
            finished.result,
            finished.finished_ms,
            finished.lease_owner
        ),
        (
            JobState::Succeeded,
            Some(serde_json::json!({"freed": 3})),
            Some(T + 2_600),
            None
        )
    );
    assert!(
        store
            .claim_job(&["sweep"], "node-b", T + 3_000, T + 4_000)
            .await
            .expect("claim")
            .is_none()
    );

    // A failure is retried after its backoff, then fails for good.
    let later = store
        .claim_job(&["sweep"], "node-a", T + 60_000, T + 61_000)
        .await
        .expect("claim")
        .expect("due now");
    let retry = JobOutcome::Retry {
        error: "store unreachable".into(),
        run_after_ms: T + 70_000,
    };
    assert!(
        store
            .finish_job(later.id, "node-a", &retry, T + 60_500)
            .await
            .expect("retry")
    );
    let queued = store.job(later.id).await.expect("job").expect("stored");
    assert_eq!(
        (queued.state, queued.error.as_deref()),
        (JobState::Queued, Some("store unreachable"))
    );
    assert!(
        store
            .claim_job(&["sweep"], "node-a", T + 69_999, T + 80_000)
            .await
            .expect("claim")
            .is_none()
    );
    let again = store
        .claim_job(&["sweep"], "node-a", T + 70_000, T + 80_000)
        .await
        .expect("claim")
        .expect("backoff over");
    assert_eq!(again.attempts, 2);
    let failed = JobOutcome::Failed("gave up".into());
    assert!(
        store
            .finish_job(again.id, "node-a", &failed, T + 70_100)
            .await
            .expect("fail")
    );
    assert_eq!(
        store
            .job(again.id)
            .await
            .expect("job")
            .expect("stored")
            .state,
        JobState::Failed
    );

    // Schedules: of two nodes finding a run due, one enqueues it.
    let nightly = Schedule {
        kind: "sweep".into(),
        cron: "0 3 * * *".into(),
        params: serde_json::json!({"dry_run": false}),
        next_run_ms: T + 100_000,
    };
    store
        .set_schedule("sweep", Some(&nightly))
        .await
        .expect("schedule");
    assert_eq!(
        store.schedules().await.expect("schedules"),
        vec![nightly.clone()]
    );
    let run = job("sweep", "sweep@100", T + 100_000);
    assert!(
        store
            .advance_schedule(T + 100_000, T + 200_000, &run)
            .await
            .expect("advance")
    );
    assert!(
        !store
            .advance_schedule(T + 100_000, T + 200_000, &run)
            .await
            .expect("second node")
    );
    assert_eq!(
        store.schedules().await.expect("schedules")[0].next_run_ms,
        T + 200_000
    );
    let history = store.jobs(Some("sweep"), 0, 10).await.expect("jobs");
    assert_eq!(history.total, 3);
    assert_eq!(history.items[0].key, "sweep@100", "newest first");
    assert_eq!(
        store
            .jobs(Some("nothing"), 0, 10)
            .await
            .expect("jobs")
            .total,
        0
    );
    assert_eq!(store.jobs(None, 1, 1).await.expect("jobs").items.len(), 1);
    store.set_schedule("sweep", None).await.expect("unschedule");
    assert!(store.schedules().await.expect("schedules").is_empty());
}

/// Pruning the job history: only jobs that ended, only before the cut-off, only the kinds
/// asked for, oldest first and at most the limit.
async fn job_pruning(store: &dyn MetaStore) {
    use crate::{JobOutcome, JobState, NewJob};
    // Before the times of `jobs`, whose jobs may still be there.
    const T: i64 = 100;
    // Ticks that ended at T+1, T+2, T+3 and (failed) T+4, a report that ended at T+4, a
    // tick to retry and one that runs.
    let mut ids = Vec::new();
    for (kind, key) in [
        ("tick", "t1"),
        ("tick", "t2"),
        ("tick", "t3"),
        ("tick", "t4"),
        ("report", "r1"),
        ("tick", "t5"),
        ("tick", "t6"),
    ] {
        let id = store
            .enqueue_job(&NewJob {
                kind: kind.into(),
                key: key.into(),
                params: serde_json::json!({}),
                run_after_ms: T,
            })
            .await
            .expect("enqueue")
            .expect("new");
        ids.push(id);
    }
    for (n, outcome) in [
        (0, JobOutcome::Succeeded(serde_json::json!({}))),
        (1, JobOutcome::Succeeded(serde_json::json!({}))),
        (2, JobOutcome::Succeeded(serde_json::json!({}))),
        (3, JobOutcome::Failed("no".into())),
        (4, JobOutcome::Succeeded(serde_json::json!({}))),
        (
            5,
            JobOutcome::Retry {
                error: "later".into(),
                run_after_ms: T + 100,
            },
        ),
    ] {
        let claimed = store
            .claim_job(&["tick", "report"], "node", T, T + 10_000)
            .await
            .expect("claim")
            .expect("due");
        assert_eq!(claimed.id, ids[n], "claimed in order");
        let finished = T + 1 + i64::try_from(n.min(3)).expect("small");
        assert!(
            store
                .finish_job(claimed.id, "node", &outcome, finished)
                .await
                .expect("finish")
        );
    }
    let running = store
        .claim_job(&["tick"], "node", T + 200, T + 10_000)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(running.id, ids[6]);

    let state = |id: i64| async move { store.job(id).await.expect("job").map(|j| j.state) };
    // Nothing ended before T+1.
    assert_eq!(store.prune_jobs(None, T + 1, 100).await.expect("prune"), 0);
    // The limit: the oldest tick goes first.
    assert_eq!(
        store
            .prune_jobs(Some(&["tick"]), T + 4, 1)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(state(ids[0]).await, None);
    assert_eq!(state(ids[1]).await, Some(JobState::Succeeded));
    // Only ticks: the report that ended at T+1 stays.
    assert_eq!(
        store
            .prune_jobs(Some(&["tick"]), T + 5, 100)
            .await
            .expect("prune"),
        3
    );
    assert_eq!(state(ids[3]).await, None, "failed ones go too");
    assert_eq!(state(ids[4]).await, Some(JobState::Succeeded));
    // Every kind: the report goes; the running and queued jobs never do.
    assert_eq!(store.prune_jobs(None, T + 5, 100).await.expect("prune"), 1);
    assert_eq!(state(ids[4]).await, None);
    assert_eq!(state(ids[5]).await, Some(JobState::Queued));
    assert_eq!(state(ids[6]).await, Some(JobState::Running));
    // A pruned key may be used again.
    assert!(
        store
            .enqueue_job(&NewJob {
                kind: "tick".into(),
                key: "t1".into(),
                params: serde_json::json!({}),
                run_after_ms: T,
            })
            .await
            .expect("enqueue")
            .is_some()
    );
}

/// The proxy cache's records of tags: the latest check wins, pulls only move forward and
/// create nothing, and the ones due for a check come longest unchecked first.
async fn proxy_tag_checks(store: &dyn MetaStore) {
    const T: i64 = 7_000_000;
    assert_eq!(
        store
            .proxy_tag_check("hub/library/nginx", "1")
            .await
            .expect("read"),
        None
    );
    // A pull of a tag never checked creates nothing.
    store
        .record_proxy_pull("hub/library/nginx", "1", T)
        .await
        .expect("pull");
    assert_eq!(
        store
            .proxy_tag_check("hub/library/nginx", "1")
            .await
            .expect("read"),
        None
    );
    store
        .record_proxy_check("hub/library/nginx", "1", "sha256:aa", T + 10)
        .await
        .expect("check");
    let first = store
        .proxy_tag_check("hub/library/nginx", "1")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(
        (
            first.digest.as_str(),
            first.checked_at_ms,
            first.pulled_at_ms
        ),
        ("sha256:aa", T + 10, T + 10)
    );
    // A later answer wins; an earlier one (a slower node) changes nothing.
    store
        .record_proxy_check("hub/library/nginx", "1", "sha256:bb", T + 30)
        .await
        .expect("check");
    store
        .record_proxy_check("hub/library/nginx", "1", "sha256:cc", T + 20)
        .await
        .expect("check");
    store
        .record_proxy_pull("hub/library/nginx", "1", T + 40)
        .await
        .expect("pull");
    store
        .record_proxy_pull("hub/library/nginx", "1", T + 35)
        .await
        .expect("pull");
    let now = store
        .proxy_tag_check("hub/library/nginx", "1")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(
        (now.digest.as_str(), now.checked_at_ms, now.pulled_at_ms),
        ("sha256:bb", T + 30, T + 40)
    );

    // Two more: one checked long ago but not pulled lately, one checked long ago and pulled.
    store
        .record_proxy_check("hub/team/app", "v1", "sha256:dd", T - 1_000)
        .await
        .expect("check");
    store
        .record_proxy_check("hub/team/app", "v2", "sha256:ee", T - 500)
        .await
        .expect("check");
    store
        .record_proxy_pull("hub/team/app", "v2", T + 50)
        .await
        .expect("pull");
    let due = |pulled_since: i64, checked_before: i64, limit: u64| async move {
        store
            .proxy_tags_to_check(pulled_since, checked_before, limit)
            .await
            .expect("due")
            .into_iter()
            .map(|c| format!("{}:{}", c.repository, c.tag))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        due(T - 2_000, T + 100, 10).await,
        ["hub/team/app:v1", "hub/team/app:v2", "hub/library/nginx:1"],
        "longest unchecked first"
    );
    assert_eq!(due(T - 2_000, T + 100, 1).await, ["hub/team/app:v1"]);
    assert_eq!(
        due(T, T + 100, 10).await,
        ["hub/team/app:v2", "hub/library/nginx:1"],
        "not pulled lately: not kept fresh"
    );
    assert_eq!(
        due(T, T + 30, 10).await,
        ["hub/team/app:v2"],
        "checked since: not due"
    );
    store
        .forget_proxy_tag("hub/team/app", "v2")
        .await
        .expect("forget");
    assert_eq!(due(T, T + 100, 10).await, ["hub/library/nginx:1"]);
    assert_eq!(
        store
            .proxy_tag_check("hub/team/app", "v2")
            .await
            .expect("read"),
        None
    );
}

fn upstream(name: &str, credential: Option<crate::StoredCredential>) -> crate::NewUpstream {
    crate::NewUpstream {
        name: name.into(),
        kind: "docker-registry".into(),
        url: format!("https://{name}.example"),
        description: format!("{name} upstream"),
        insecure: false,
        ca_cert: None,
        credential,
    }
}

/// Upstream registries: names unique, fields kept exactly (the sealed secret too), a
/// registry a proxy-cache project uses cannot go, and secret-sealing keys.
async fn upstreams(store: &dyn MetaStore) {
    use crate::{SecretKey, StoredCredential, UpstreamDeletion};
    let credential = StoredCredential {
        kind: "basic".into(),
        access_key: "puller".into(),
        sealed_secret: vec![0, 1, 2, 255],
    };
    let hub = store
        .create_upstream(&upstream("hub", Some(credential.clone())))
        .await
        .expect("create");
    assert!(matches!(
        store.create_upstream(&upstream("hub", None)).await,
        Err(MetaError::Conflict(_))
    ));
    let stored = store
        .upstream_by_id(hub)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.fields, upstream("hub", Some(credential)));

    let mut changed = upstream("hub", None);
    changed.insecure = true;
    changed.ca_cert = Some("PEM".into());
    assert!(store.update_upstream(hub, &changed).await.expect("update"));
    assert!(!store.update_upstream(9999, &changed).await.expect("update"));
    let quay = store
        .create_upstream(&upstream("quay", None))
        .await
        .expect("create");
    assert!(matches!(
        store.update_upstream(quay, &changed).await,
        Err(MetaError::Conflict(_))
    ));
    let all = store.list_upstreams().await.expect("list");
    assert_eq!(
        all.iter().map(|u| u.fields.clone()).collect::<Vec<_>>(),
        vec![changed, upstream("quay", None)]
    );

    let project = store
        .create_project("hub-cache", false, None)
        .await
        .expect("project");
    assert_eq!(
        store.project_upstream("hub-cache").await.expect("read"),
        None
    );
    store
        .set_project_upstream(project, hub)
        .await
        .expect("bind");
    assert_eq!(
        store.project_upstream("hub-cache").await.expect("read"),
        Some(hub)
    );
    assert_eq!(
        store.delete_upstream(hub).await.expect("delete"),
        UpstreamDeletion::InUse
    );
    assert_eq!(
        store.delete_upstream(quay).await.expect("delete"),
        UpstreamDeletion::Deleted
    );
    assert_eq!(
        store.delete_upstream(quay).await.expect("delete"),
        UpstreamDeletion::Missing
    );
    // The project gone, its binding goes with it and the registry may go.
    store.delete_project(project).await.expect("delete project");
    assert_eq!(
        store.delete_upstream(hub).await.expect("delete"),
        UpstreamDeletion::Deleted
    );

    let key = SecretKey {
        kid: "k1".into(),
        key: vec![9; 32],
        created_at: 1_700_000_000,
    };
    assert!(store.add_secret_key(&key).await.expect("add key"));
    assert!(!store.add_secret_key(&key).await.expect("add key twice"));
    assert_eq!(store.secret_keys().await.expect("keys"), vec![key]);
}

/// Garbage collection's steps: what a repository sweep keeps and removes, condemned blobs and
/// their tombstones, reservations and the orphan sweep's condemnation.
async fn gc(store: &dyn MetaStore) {
    use crate::{GcRepository, RepositorySweep, RepositorySwept};

    let repo = name("gc/app");
    let now = crate::now();
    let (past, future) = (now - 3600, now + 3600);
    let blob = |s: &str| digest(&format!("gc-{s}"));
    for layer in ["a", "b", "c", "d", "e", "f", "g"] {
        store.link_blob(&repo, &blob(layer), 3).await.expect("link");
    }
    let repo_ref = &repo;
    let put = move |m: NewManifest, tags: &'static [&'static str]| async move {
        let tags: Vec<Tag> = tags.iter().map(|t| t.parse().expect("tag")).collect();
        store.put_manifest(repo_ref, &m, &tags).await.expect("put");
        m.digest
    };
    let tagged = put(manifest("gc-m1", vec![blob("a")], None), &["v1"]).await;
    let untagged = put(manifest("gc-m2", vec![blob("b")], None), &[]).await;
    let kept_child = put(manifest("gc-c1", vec![blob("c")], None), &[]).await;
    let lost_child = put(manifest("gc-c2", vec![blob("d")], None), &[]).await;
    let index = |content: &str, child: &Digest| {
        let mut m = manifest(content, Vec::new(), None);
        m.manifests = vec![child.clone()];
        m
    };
    let kept_index = put(index("gc-ix1", &kept_child), &["multi"]).await;
    let lost_index = put(index("gc-ix2", &lost_child), &[]).await;
    let kept_referrer = put(
        manifest("gc-r1", vec![blob("e")], Some(tagged.clone())),
        &[],
    )
    .await;
    let lost_referrer = put(
        manifest("gc-r2", vec![blob("f")], Some(untagged.clone())),
        &[],
    )
    .await;
    let sorted = |mut v: Vec<Digest>| {
        v.sort();
        v
    };
    let garbage_manifests = sorted(vec![
        untagged.clone(),
        lost_child.clone(),
        lost_index.clone(),
        lost_referrer.clone(),
    ]);
    let listed = store
        .gc_repositories(0, 10_000)
        .await
        .expect("repositories");
    let repository: GcRepository = listed.into_iter().find(|r| r.name == repo).expect("listed");
    let sweep = |untagged_before, links_before, dry_run| RepositorySweep {
        untagged_before,
        links_before,
        limit: 1000,
        dry_run,
    };
    let swept = |s: RepositorySwept| (sorted(s.manifests), sorted(s.links));

    // A dry run reports what a real run would remove, and removes nothing.
    let dry = store
        .gc_sweep_repository(&repository, &sweep(Some(future), future, true))
        .await
        .expect("dry run");
    assert_eq!(
        swept(dry),
        (
            garbage_manifests.clone(),
            sorted(vec![blob("b"), blob("d"), blob("f"), blob("g")])
        )
    );
    assert!(
        store
            .get_manifest(&repo, &Reference::Digest(untagged.clone()))
            .await
            .expect("get")
            .is_some()
    );
    // Without deleting untagged manifests, only the link nothing references goes; young
    // manifests and links are kept whatever else holds them.
    let only_links = store
        .gc_sweep_repository(&repository, &sweep(None, future, false))
        .await
        .expect("sweep");
    assert_eq!(swept(only_links), (vec![], vec![blob("g")]));
    let young = store
        .gc_sweep_repository(&repository, &sweep(Some(past), past, false))
        .await
        .expect("sweep");
    assert_eq!(swept(young), (vec![], vec![]));
    let real = store
        .gc_sweep_repository(&repository, &sweep(Some(future), future, false))
        .await
        .expect("sweep");
    assert_eq!(
        swept(real),
        (
            garbage_manifests.clone(),
            sorted(vec![blob("b"), blob("d"), blob("f")])
        )
    );
    for kept in [&tagged, &kept_child, &kept_index, &kept_referrer] {
        assert!(
            store
                .get_manifest(&repo, &Reference::Digest(kept.clone()))
                .await
                .expect("get")
                .is_some(),
            "{kept} is kept"
        );
    }
    for gone in &garbage_manifests {
        assert!(
            store
                .get_manifest(&repo, &Reference::Digest(gone.clone()))
                .await
                .expect("get")
                .is_none(),
            "{gone} is deleted"
        );
    }
    assert_eq!(
        store
            .linked_blob_size(&repo, &blob("b"))
            .await
            .expect("size"),
        None
    );
    assert_eq!(
        store
            .linked_blob_size(&repo, &blob("a"))
            .await
            .expect("size"),
        Some(3)
    );

    // Blobs linked nowhere are candidates; condemning re-checks links and age.
    let mine = [blob("a"), blob("b"), blob("d"), blob("f"), blob("g")];
    let unlinked: Vec<Digest> = store
        .gc_unlinked_blobs(future, None, 100_000)
        .await
        .expect("unlinked")
        .into_iter()
        .map(|t| t.digest)
        .filter(|d| mine.contains(d))
        .collect();
    assert_eq!(sorted(unlinked), sorted(mine[1..].to_vec()));
    let counts: Vec<(Digest, u64)> = store
        .gc_link_counts(&[blob("a"), blob("b")], future)
        .await
        .expect("counts")
        .into_iter()
        .map(|(t, links)| (t.digest, links))
        .collect();
    assert_eq!(
        sorted_pairs(counts),
        sorted_pairs(vec![(blob("a"), 1), (blob("b"), 0)])
    );
    assert!(
        store
            .gc_link_counts(&[blob("a")], past)
            .await
            .expect("counts")
            .is_empty()
    );
    assert!(
        store
            .gc_condemn_blobs(&mine, past, "run-1", future)
            .await
            .expect("condemn")
            .is_empty(),
        "young blobs are not condemned"
    );
    let condemned = store
        .gc_condemn_blobs(&mine, future, "run-1", future)
        .await
        .expect("condemn");
    assert_eq!(
        sorted(condemned.iter().map(|t| t.digest.clone()).collect()),
        sorted(mine[1..].to_vec())
    );
    assert!(condemned.iter().all(|t| t.size == 3));
    // While a tombstone stands, the digest can be neither linked nor reserved.
    let other = name("gc/other");
    assert!(matches!(
        store.link_blob(&other, &blob("b"), 3).await,
        Err(MetaError::BlobBeingDeleted(d)) if d == blob("b")
    ));
    assert!(
        store
            .reserve_blob(&blob("b"), 3)
            .await
            .expect("reserve")
            .is_none()
    );
    // A live claim is nobody else's; a lapsed one is taken over.
    let claimed = store
        .gc_claim_tombstones("run-2", future, 100_000)
        .await
        .expect("claim");
    assert!(claimed.iter().all(|t| !mine.contains(&t.digest)));
    let crashed = blob("h");
    store
        .reserve_blob(&crashed, 4)
        .await
        .expect("reserve")
        .expect("reserved");
    let lapsed = store
        .gc_condemn_blobs(std::slice::from_ref(&crashed), future, "run-0", past)
        .await
        .expect("condemn");
    assert_eq!(lapsed.len(), 1);
    let taken = store
        .gc_claim_tombstones("run-2", future, 100_000)
        .await
        .expect("claim");
    assert!(taken.iter().any(|t| t.digest == crashed && t.size == 4));
    // Only the owner forgets its tombstones; then the digests may come back.
    store
        .gc_forget_tombstones("run-2", &mine)
        .await
        .expect("forget");
    assert!(
        store
            .reserve_blob(&blob("b"), 3)
            .await
            .expect("reserve")
            .is_none()
    );
    store
        .gc_forget_tombstones("run-1", &mine)
        .await
        .expect("forget");
    store
        .gc_forget_tombstones("run-2", std::slice::from_ref(&crashed))
        .await
        .expect("forget");
    store
        .link_blob(&other, &blob("b"), 3)
        .await
        .expect("linked again");
    // A reservation makes a blob young again, and creates a missing row.
    let reserved = blob("reserved");
    let epoch = store
        .reserve_blob(&reserved, 9)
        .await
        .expect("reserve")
        .expect("reserved");
    assert!(
        store
            .gc_condemn_blobs(std::slice::from_ref(&reserved), now - 1, "run-3", future)
            .await
            .expect("condemn")
            .is_empty()
    );
    // An upload links only the row it reserved: once GC has deleted it (and maybe its bytes)
    // and another upload has created it again, the first is refused.
    let gone = name("gc/reserved");
    store
        .link_reserved_blob(&gone, &reserved, epoch)
        .await
        .expect("the reserved row links");
    let again = blob("again");
    let first = store
        .reserve_blob(&again, 2)
        .await
        .expect("reserve")
        .expect("reserved");
    let condemned = store
        .gc_condemn_blobs(std::slice::from_ref(&again), future, "run-5", future)
        .await
        .expect("condemn");
    assert_eq!(condemned.len(), 1);
    assert!(matches!(
        store.link_reserved_blob(&gone, &again, first).await,
        Err(MetaError::BlobBeingDeleted(_))
    ));
    store
        .gc_forget_tombstones("run-5", std::slice::from_ref(&again))
        .await
        .expect("forget");
    assert!(matches!(
        store.link_reserved_blob(&gone, &again, first).await,
        Err(MetaError::BlobBeingDeleted(_))
    ));
    let second = store
        .reserve_blob(&again, 2)
        .await
        .expect("reserve")
        .expect("reserved");
    assert!(matches!(
        store.link_reserved_blob(&gone, &again, first).await,
        Err(MetaError::BlobBeingDeleted(_))
    ));
    let concurrent = store
        .reserve_blob(&again, 2)
        .await
        .expect("reserve")
        .expect("reserved");
    assert_eq!(concurrent, second, "uploads of one row share its epoch");
    store
        .link_reserved_blob(&gone, &again, second)
        .await
        .expect("the row reserved again links");
    // The orphan sweep condemns only bytes the database knows nothing of.
    let orphan = blob("orphan");
    let orphans = store
        .gc_condemn_orphans(
            &[orphan.clone(), blob("a"), reserved.clone()],
            "run-4",
            future,
        )
        .await
        .expect("orphans");
    assert_eq!(orphans, vec![orphan.clone()]);
    assert!(
        store
            .reserve_blob(&orphan, 1)
            .await
            .expect("reserve")
            .is_none()
    );
    store
        .gc_forget_tombstones("run-4", &orphans)
        .await
        .expect("forget");
    assert!(
        store
            .reserve_blob(&orphan, 1)
            .await
            .expect("reserve")
            .is_some()
    );
}

fn sorted_pairs(mut pairs: Vec<(Digest, u64)>) -> Vec<(Digest, u64)> {
    pairs.sort();
    pairs
}

fn used(blob: u64, unique: u64, manifests: u64) -> crate::Usage {
    crate::Usage {
        blob_bytes: blob,
        unique_blob_bytes: unique,
        manifest_bytes: manifests,
    }
}

async fn repo_usage(store: &dyn MetaStore, repository: &str) -> crate::Usage {
    store
        .repository_usage(&name(repository))
        .await
        .expect("usage")
        .expect("repository exists")
}

/// Usage per repository, per namespace and registry-wide: a blob counts once per holder,
/// and is unique to a holder while nothing else links it.
async fn usage(store: &dyn MetaStore) {
    let (big, small) = (digest("usage-big"), digest("usage-small"));
    let before = store.registry_usage().await.expect("registry");
    store
        .link_blob(&name("usea/one"), &big, 100)
        .await
        .expect("link");
    store
        .link_blob(&name("usea/one"), &small, 10)
        .await
        .expect("link");
    assert_eq!(repo_usage(store, "usea/one").await, used(110, 110, 0));
    store
        .link_blob(&name("usea/two"), &big, 100)
        .await
        .expect("link");
    assert_eq!(
        repo_usage(store, "usea/one").await,
        used(110, 10, 0),
        "big is shared with usea/two now"
    );
    assert_eq!(repo_usage(store, "usea/two").await, used(100, 0, 0));
    assert_eq!(
        store.namespace_usage("usea").await.expect("usage"),
        used(110, 110, 0),
        "two repositories of one project hold big once, and no other project holds it"
    );
    store
        .mount_blob(&name("usea/one"), &name("useb/one"), &big)
        .await
        .expect("mount")
        .expect("mounted");
    assert_eq!(
        store.namespace_usage("usea").await.expect("usage"),
        used(110, 10, 0)
    );
    assert_eq!(
        store.namespace_usage("useb").await.expect("usage"),
        used(100, 0, 0)
    );
    let image = manifest("usage-image", vec![big.clone(), small.clone()], None);
    let image_size = image.content.len() as u64;
    store
        .put_manifest(&name("usea/one"), &image, &[tag("v1")])
        .await
        .expect("put");
    assert_eq!(
        repo_usage(store, "usea/one").await,
        used(110, 10, image_size)
    );
    let after = store.registry_usage().await.expect("registry");
    assert_eq!(
        after.linked_blob_bytes - before.linked_blob_bytes,
        110,
        "the registry holds each blob once"
    );
    assert_eq!(after.stored_blob_bytes - before.stored_blob_bytes, 110);
    assert_eq!(after.manifest_bytes - before.manifest_bytes, image_size);

    assert!(
        store
            .unlink_blob(&name("useb/one"), &big)
            .await
            .expect("unlink")
    );
    assert_eq!(
        store.namespace_usage("usea").await.expect("usage"),
        used(110, 110, image_size),
        "usea holds big alone again"
    );
    assert_eq!(
        store.namespace_usage("useb").await.expect("usage"),
        used(0, 0, 0)
    );
    assert!(
        store
            .delete_repository(&name("usea/two"))
            .await
            .expect("delete")
    );
    assert_eq!(
        repo_usage(store, "usea/one").await,
        used(110, 110, image_size),
        "big is usea/one's alone once usea/two is gone"
    );
    assert!(
        store
            .delete_manifest(&name("usea/one"), &image.digest)
            .await
            .expect("delete")
    );
    assert_eq!(
        store.namespace_usage("usea").await.expect("usage"),
        used(110, 110, 0)
    );
    let listed = store.all_namespace_usage().await.expect("all");
    assert!(
        listed
            .iter()
            .any(|n| n.namespace == "usea" && n.usage == used(110, 110, 0)),
        "{listed:?}"
    );
    assert_eq!(
        store
            .repository_usage(&name("usea/never"))
            .await
            .expect("usage"),
        None
    );
}

/// A project's storage limit refuses exactly the write that crosses it, and keeps nothing
/// of that write.
async fn quotas(store: &dyn MetaStore) {
    let project = store
        .create_project("quota", false, None)
        .await
        .expect("project");
    let repo = name("quota/app");
    let (first, second) = (digest("quota-first"), digest("quota-second"));
    let quota = store.quota(project).await.expect("quota").expect("project");
    assert_eq!(
        (quota.storage_limit, quota.used),
        (crate::usage::UNLIMITED, 0)
    );
    assert!(
        store
            .set_storage_limit(project, 150)
            .await
            .expect("set limit")
    );
    assert!(
        !store
            .set_storage_limit(project + 10_000, 150)
            .await
            .expect("set limit"),
        "no such project"
    );
    store.link_blob(&repo, &first, 100).await.expect("fits");
    store
        .check_quota(&repo, &second, 60)
        .await
        .expect_err("the advance check sees it would not fit");
    store
        .check_quota(&repo, &first, 100)
        .await
        .expect("a blob the project holds costs nothing");
    let refused = store
        .link_blob(&repo, &second, 60)
        .await
        .expect_err("past the limit");
    assert!(
        matches!(
            refused,
            MetaError::QuotaExceeded {
                used: 100,
                limit: 150,
                needed: 60,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(
        store.linked_blob_size(&repo, &second).await.expect("size"),
        None,
        "nothing of the refused link stays"
    );
    store
        .link_blob(&name("quota/other"), &first, 100)
        .await
        .expect("a blob the project holds already costs nothing");
    store
        .link_blob(&repo, &second, 50)
        .await
        .expect("up to the limit exactly");
    let image = manifest("quota-image", vec![first.clone()], None);
    let refused = store
        .put_manifest(&repo, &image, &[tag("v1")])
        .await
        .expect_err("a manifest counts too");
    assert!(
        matches!(refused, MetaError::QuotaExceeded { .. }),
        "{refused:?}"
    );
    assert!(
        store
            .get_manifest(&repo, &Reference::Tag(tag("v1")))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        store.quota(project).await.expect("quota").map(|q| q.used),
        Some(150)
    );
    store
        .set_storage_limit(project, crate::usage::UNLIMITED)
        .await
        .expect("unlimit");
    store
        .put_manifest(&repo, &image, &[tag("v1")])
        .await
        .expect("no limit");
    let quotas = store.quotas().await.expect("list");
    let listed = quotas
        .iter()
        .find(|q| q.project_id == project)
        .expect("listed");
    assert_eq!(listed.project_name, "quota");
    assert_eq!(listed.used, 150 + image.content.len() as u64);
    assert_eq!(listed.storage_limit, crate::usage::UNLIMITED);

    store
        .set_default_storage_limit(1 << 30)
        .await
        .expect("default");
    let limited = store
        .create_project("quota-default", false, None)
        .await
        .expect("project");
    assert_eq!(
        store
            .quota(limited)
            .await
            .expect("quota")
            .map(|q| q.storage_limit),
        Some(1 << 30),
        "a new project gets the default limit"
    );
    store
        .set_default_storage_limit(crate::usage::UNLIMITED)
        .await
        .expect("default");
}

/// After a long mixed run of links, mounts, unlinks, manifests and deletes, every figure
/// equals what a recount from scratch gives: the sizes of the distinct blobs held, of those
/// held by nothing else, and of the manifests.
async fn usage_after_mixed_work(store: &dyn MetaStore) {
    use std::collections::{BTreeMap, BTreeSet};
    let repos = [
        "mixa/one",
        "mixa/two",
        "mixa/three",
        "mixb/one",
        "mixb/two",
        "mixc/one",
    ];
    let blobs: Vec<(Digest, u64)> = (0..12)
        .map(|i| (digest(&format!("mixed-{i}")), 1000 + i * 37))
        .collect();
    let before = store.registry_usage().await.expect("registry");
    // The model: each repository's blobs and manifests.
    let mut held: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    let mut manifests: BTreeMap<&str, BTreeMap<Digest, u64>> = BTreeMap::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound as u64) as usize
    };
    for step in 0..400 {
        let repo = repos[next(repos.len())];
        let blob = next(blobs.len());
        let (digest_of, size) = &blobs[blob];
        match next(10) {
            0..=3 => {
                store
                    .link_blob(&name(repo), digest_of, *size)
                    .await
                    .expect("link");
                held.entry(repo).or_default().insert(blob);
            }
            4 => {
                let from = repos[next(repos.len())];
                let mounted = store
                    .mount_blob(&name(from), &name(repo), digest_of)
                    .await
                    .expect("mount");
                let had = held.get(from).is_some_and(|b| b.contains(&blob));
                assert_eq!(
                    mounted.is_some(),
                    had,
                    "a mount needs the source to hold the blob"
                );
                if had {
                    held.entry(repo).or_default().insert(blob);
                }
            }
            5 | 6 => {
                store
                    .unlink_blob(&name(repo), digest_of)
                    .await
                    .expect("unlink");
                if let Some(b) = held.get_mut(repo) {
                    b.remove(&blob);
                }
            }
            7 | 8 => {
                let image = manifest(&format!("mixed-image-{step}"), Vec::new(), None);
                store
                    .put_manifest(&name(repo), &image, &[])
                    .await
                    .expect("put");
                manifests
                    .entry(repo)
                    .or_default()
                    .insert(image.digest.clone(), image.content.len() as u64);
            }
            _ => {
                if step % 3 == 0 {
                    store.delete_repository(&name(repo)).await.expect("delete");
                    held.remove(repo);
                    manifests.remove(repo);
                } else if step % 3 == 1 {
                    // A GC step removes every link no manifest references, in one statement
                    // (these manifests reference no blob).
                    let found = store.gc_repositories(0, 1000).await.expect("repositories");
                    if let Some(repository) = found.iter().find(|r| r.name.as_str() == repo) {
                        let sweep = crate::gc::RepositorySweep {
                            untagged_before: None,
                            links_before: i64::MAX,
                            limit: 1000,
                            dry_run: false,
                        };
                        store
                            .gc_sweep_repository(repository, &sweep)
                            .await
                            .expect("sweep");
                        held.remove(repo);
                    }
                } else if let Some(m) = manifests.get_mut(repo)
                    && let Some(first) = m.keys().next().cloned()
                {
                    store
                        .delete_manifest(&name(repo), &first)
                        .await
                        .expect("delete");
                    m.remove(&first);
                }
            }
        }
    }
    let size = |i: &usize| blobs[*i].1;
    let manifest_bytes = |repo: &str| manifests.get(repo).map_or(0, |m| m.values().sum::<u64>());
    for repo in repos {
        let mine = held.get(repo).cloned().unwrap_or_default();
        let alone: u64 = mine
            .iter()
            .filter(|b| {
                held.iter()
                    .all(|(other, theirs)| *other == repo || !theirs.contains(b))
            })
            .map(size)
            .sum();
        let expected = used(mine.iter().map(size).sum(), alone, manifest_bytes(repo));
        match store.repository_usage(&name(repo)).await.expect("usage") {
            Some(actual) => assert_eq!(actual, expected, "{repo}"),
            None => assert_eq!(expected, used(0, 0, 0), "{repo} was deleted"),
        }
    }
    let namespace = |repo: &str| repo.split('/').next().unwrap_or_default().to_owned();
    for ns in ["mixa", "mixb", "mixc"] {
        let holding = |ns: &str| -> BTreeSet<usize> {
            held.iter()
                .filter(|(r, _)| namespace(r) == ns)
                .flat_map(|(_, b)| b.iter().copied())
                .collect()
        };
        let mine = holding(ns);
        let others: BTreeSet<usize> = ["mixa", "mixb", "mixc"]
            .into_iter()
            .filter(|o| *o != ns)
            .flat_map(holding)
            .collect();
        let manifests_here: u64 = repos
            .iter()
            .filter(|r| namespace(r) == ns)
            .map(|r| manifest_bytes(r))
            .sum();
        let expected = used(
            mine.iter().map(size).sum(),
            mine.difference(&others).map(size).sum(),
            manifests_here,
        );
        assert_eq!(
            store.namespace_usage(ns).await.expect("usage"),
            expected,
            "{ns}"
        );
    }
    let all: BTreeSet<usize> = held.values().flatten().copied().collect();
    let after = store.registry_usage().await.expect("registry");
    assert_eq!(
        after.linked_blob_bytes - before.linked_blob_bytes,
        all.iter().map(size).sum::<u64>(),
        "the registry's total is the sum of the distinct blobs linked"
    );
    assert_eq!(
        after.manifest_bytes - before.manifest_bytes,
        repos.iter().map(|r| manifest_bytes(r)).sum::<u64>()
    );
}

/// Pushes racing into one project cannot take it past its limit together: of twenty
/// 100-byte blobs under a 1 000-byte limit, exactly ten are linked.
async fn quota_under_concurrent_pushes(store: &dyn MetaStore) {
    let project = store
        .create_project("race", false, None)
        .await
        .expect("project");
    store.set_storage_limit(project, 1000).await.expect("limit");
    let pushes = (0..20).map(|i| async move {
        let repo = name(&format!("race/app{}", i % 4));
        store
            .link_blob(&repo, &digest(&format!("race-{i}")), 100)
            .await
    });
    let results = futures_util::future::join_all(pushes).await;
    let linked = results.iter().filter(|r| r.is_ok()).count();
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(refused, MetaError::QuotaExceeded { .. }),
            "{refused:?}"
        );
    }
    assert_eq!(linked, 10);
    assert_eq!(
        store.namespace_usage("race").await.expect("usage").used(),
        1000
    );
}

/// Tag immutability: rules kept per project, and a push that would move a tag the caller
/// names immutable is refused in its own transaction, storing nothing.
pub async fn immutable_tags(store: &dyn MetaStore) {
    let project = store
        .create_project("frozen", false, None)
        .await
        .expect("project");
    let selectors =
        r#"{"tag_selectors":[{"kind":"doublestar","decoration":"matches","pattern":"v*"}]}"#;
    let id = store
        .create_immutable_rule(project, false, 0, selectors)
        .await
        .expect("create");
    let rules = store.immutable_rules(project).await.expect("list");
    assert_eq!(rules.len(), 1);
    assert_eq!(
        (rules[0].id, rules[0].disabled, rules[0].selectors.as_str()),
        (id, false, selectors)
    );
    assert_eq!(
        store.immutable_rules_in("frozen").await.expect("list"),
        rules
    );
    assert!(
        store
            .immutable_rules_in("nosuch")
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        store
            .update_immutable_rule(project, id, true, 1, "{}")
            .await
            .expect("update")
    );
    assert!(
        !store
            .update_immutable_rule(project + 1000, id, true, 1, "{}")
            .await
            .expect("update"),
        "another project's rule is not this one's"
    );
    assert!(store.immutable_rules(project).await.expect("list")[0].disabled);

    let repo = name("frozen/app");
    let v1 = tag("v1");
    let mut first = manifest("frozen-first", Vec::new(), None);
    first.immutable_tags = vec![v1.clone()];
    store
        .put_manifest(&repo, &first, std::slice::from_ref(&v1))
        .await
        .expect("a new tag may be pushed");
    store
        .put_manifest(&repo, &first, std::slice::from_ref(&v1))
        .await
        .expect("the same manifest again moves nothing");
    let mut second = manifest("frozen-second", Vec::new(), None);
    second.immutable_tags = vec![v1.clone()];
    let refused = store
        .put_manifest(&repo, &second, &[v1.clone(), tag("other")])
        .await
        .expect_err("v1 would move");
    assert!(
        matches!(&refused, MetaError::TagImmutable(t) if t == "v1"),
        "{refused:?}"
    );
    assert_eq!(
        store
            .get_manifest(&repo, &Reference::Tag(v1.clone()))
            .await
            .expect("get")
            .map(|m| m.digest),
        Some(first.digest.clone())
    );
    assert!(
        store
            .get_manifest(&repo, &Reference::Digest(second.digest.clone()))
            .await
            .expect("get")
            .is_none(),
        "nothing of the refused push is stored"
    );
    assert!(
        store
            .delete_immutable_rule(project, id)
            .await
            .expect("delete")
    );
    assert!(
        store
            .immutable_rules(project)
            .await
            .expect("list")
            .is_empty()
    );
}

/// Retention policies (one per project) and their runs' record.
pub async fn retention_policies(store: &dyn MetaStore) {
    let project = store
        .create_project("kept", false, None)
        .await
        .expect("project");
    let id = store
        .create_retention_policy(project, r#"{"rules":[]}"#)
        .await
        .expect("create");
    let again = store
        .create_retention_policy(project, "{}")
        .await
        .expect_err("one per project");
    assert!(matches!(again, MetaError::Conflict(_)), "{again:?}");
    let row = store
        .retention_policy(id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(
        (row.project_id, row.policy.as_str()),
        (project, r#"{"rules":[]}"#)
    );
    assert!(
        store
            .update_retention_policy(id, "{}")
            .await
            .expect("update")
    );
    assert!(
        !store
            .update_retention_policy(id + 99, "{}")
            .await
            .expect("update")
    );
    assert_eq!(store.retention_policies().await.expect("all").len(), 1);
    let run = crate::RetentionRunRow {
        id: 0,
        policy_id: id,
        dry_run: true,
        trigger: "MANUAL".into(),
        status: "Succeed".into(),
        started_at: 1_000,
        finished_at: 2_000,
        result: r#"{"removed":[]}"#.into(),
    };
    let first = store.record_retention_run(&run).await.expect("record");
    let second = store
        .record_retention_run(&crate::RetentionRunRow {
            dry_run: false,
            ..run.clone()
        })
        .await
        .expect("record");
    let runs = store.retention_runs(id).await.expect("runs");
    assert_eq!(
        runs.iter().map(|r| (r.id, r.dry_run)).collect::<Vec<_>>(),
        [(second, false), (first, true)],
        "newest first"
    );
    assert_eq!(runs[1].result, run.result);
    assert!(store.delete_retention_policy(id).await.expect("delete"));
    assert!(
        store.retention_runs(id).await.expect("runs").is_empty(),
        "runs go with it"
    );
    assert!(store.retention_policy(id).await.expect("get").is_none());
}

/// Replication policies, executions and tasks: names unique, a registry in use stays, a
/// plan is recorded once however often it is planned, counters follow the tasks, a final
/// status is never changed, and a policy with a running execution is not deleted.
pub async fn replication(store: &dyn MetaStore) {
    use crate::{
        ExecutionFilter, NewReplicationPolicy, NewReplicationTask, NewUpstream, PolicyDeletion,
        TaskCounts, UpstreamDeletion,
    };
    let remote = store
        .create_upstream(&NewUpstream {
            name: "remote".into(),
            kind: "docker-registry".into(),
            url: "http://127.0.0.1:5000".into(),
            description: String::new(),
            insecure: false,
            ca_cert: None,
            credential: None,
        })
        .await
        .expect("upstream");
    let policy = NewReplicationPolicy {
        name: "push-all".into(),
        enabled: true,
        src_registry: None,
        dest_registry: Some(remote),
        definition: r#"{"filters":[]}"#.into(),
    };
    let id = store
        .create_replication_policy(&policy)
        .await
        .expect("create");
    let again = store
        .create_replication_policy(&policy)
        .await
        .expect_err("names are unique");
    assert!(matches!(again, MetaError::Conflict(_)), "{again:?}");
    assert_eq!(
        store.delete_upstream(remote).await.expect("delete"),
        UpstreamDeletion::InUse,
        "a policy's registry stays"
    );
    let mut changed = policy.clone();
    changed.enabled = false;
    assert!(
        store
            .update_replication_policy(id, &changed)
            .await
            .expect("update")
    );
    assert!(
        !store
            .update_replication_policy(id + 1000, &changed)
            .await
            .expect("update missing")
    );
    let row = store
        .replication_policy(id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(row.fields, changed);
    assert_eq!(store.replication_policies().await.expect("list").len(), 1);

    let execution = store
        .create_replication_execution(id, "manual", None)
        .await
        .expect("execution");
    assert_eq!(
        store.delete_replication_policy(id).await.expect("delete"),
        PolicyDeletion::Running
    );
    let task = |name: &str| NewReplicationTask {
        resource_type: "artifact".into(),
        src_resource: format!("{name}:[v1]"),
        dst_resource: format!("{name}:[v1]"),
        operation: "copy".into(),
        plan: "{}".into(),
    };
    let planned = store
        .plan_replication_tasks(execution, &[task("a/one"), task("a/two")])
        .await
        .expect("plan");
    assert_eq!(planned.len(), 2);
    assert!(planned.iter().all(|t| t.status == "Pending"));
    let replanned = store
        .plan_replication_tasks(execution, &[task("a/three")])
        .await
        .expect("plan again");
    assert_eq!(replanned, planned, "a plan is recorded once");
    store
        .update_replication_task(planned[0].id, "InProgress", "copying\n")
        .await
        .expect("start");
    store
        .update_replication_task(planned[0].id, "Succeed", "done\n")
        .await
        .expect("finish");
    store
        .update_replication_task(planned[1].id, "Failed", "refused\n")
        .await
        .expect("fail");
    assert_eq!(
        store
            .replication_task_log(execution, planned[0].id)
            .await
            .expect("log")
            .as_deref(),
        Some("copying\ndone\n")
    );
    assert_eq!(
        store
            .replication_task_log(execution + 1, planned[0].id)
            .await
            .expect("log elsewhere"),
        None
    );
    let failed = store
        .replication_tasks(execution, Some("Failed"), 0, 10)
        .await
        .expect("tasks");
    assert_eq!((failed.total, failed.items[0].id), (1, planned[1].id));
    let done = &store
        .replication_tasks(execution, None, 0, 10)
        .await
        .expect("tasks")
        .items[0];
    assert!(done.started_ms.is_some() && done.ended_ms.is_some());

    assert!(
        store
            .stop_replication_execution(execution)
            .await
            .expect("stop")
    );
    store
        .finish_replication_execution(execution, "Failed", "1 of 2 failed")
        .await
        .expect("finish");
    store
        .finish_replication_execution(execution, "Succeed", "")
        .await
        .expect("finish again");
    let row = store
        .replication_execution(execution)
        .await
        .expect("get")
        .expect("there");
    assert_eq!((row.status.as_str(), row.stop_requested), ("Failed", true));
    assert!(row.ended_ms.is_some());
    assert_eq!(
        row.counts,
        TaskCounts {
            total: 2,
            failed: 1,
            succeed: 1,
            in_progress: 0,
            stopped: 0
        }
    );
    assert!(
        !store
            .stop_replication_execution(execution)
            .await
            .expect("stop a finished one")
    );
    let second = store
        .create_replication_execution(id, "event_based", Some(r#"{"repository":"a/one"}"#))
        .await
        .expect("second");
    let listed = store
        .replication_executions(&ExecutionFilter::default(), 0, 10)
        .await
        .expect("list");
    assert_eq!(listed.total, 2);
    assert_eq!(listed.items[0].id, second, "newest first");
    let by_trigger = store
        .replication_executions(
            &ExecutionFilter {
                policy_id: Some(id),
                status: Some("InProgress".into()),
                trigger: Some("event_based".into()),
            },
            0,
            10,
        )
        .await
        .expect("filtered");
    assert_eq!(by_trigger.total, 1);
    assert_eq!(
        by_trigger.items[0].event.as_deref(),
        Some(r#"{"repository":"a/one"}"#)
    );
    store
        .finish_replication_execution(second, "Stopped", "")
        .await
        .expect("finish second");
    assert_eq!(
        store.delete_replication_policy(id).await.expect("delete"),
        PolicyDeletion::Deleted
    );
    assert!(
        store
            .replication_execution(execution)
            .await
            .expect("get")
            .is_none(),
        "a policy's history goes with it"
    );
    assert_eq!(
        store.delete_replication_policy(id).await.expect("delete"),
        PolicyDeletion::Missing
    );
    assert_eq!(
        store.delete_upstream(remote).await.expect("delete"),
        UpstreamDeletion::Deleted
    );
}
