//! The one behavioural test suite every metadata backend must pass. Backends call [`run`]
//! on a fresh store from their own tests (and [`reopened`] on the same database reopened).

use berth_core::{Algorithm, Digest, Reference, RepositoryName, Tag};

use crate::{MetaError, MetaStore, NewManifest, Upload};

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
        subject,
        annotations: None,
        blobs,
        manifests: Vec::new(),
        require_manifests: true,
        aliases: Vec::new(),
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
        created_at: 7,
    };
    store.create_upload(&upload).await.expect("create");
    assert_eq!(
        store.get_upload("u1").await.expect("get"),
        Some(upload.clone())
    );
    assert!(
        store
            .advance_upload("u1", 0, 10, &[3])
            .await
            .expect("advance")
    );
    assert!(
        !store
            .advance_upload("u1", 0, 20, &[4])
            .await
            .expect("stale advance"),
        "stale offset must not move"
    );
    let moved = store.get_upload("u1").await.expect("get").expect("exists");
    assert_eq!((moved.offset, moved.hash_state), (10, vec![3]));
    let blob = digest("uploaded");
    store
        .complete_upload("u1", &repo, &blob, 10)
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
    // suite/app, suite/other, the three the identity cases linked into, and audit/app.
    assert_eq!(
        store.list_repositories(None, 10).await.expect("list").len(),
        6
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
