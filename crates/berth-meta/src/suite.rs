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
    assert_eq!(
        store.list_repositories(None, 10).await.expect("list").len(),
        2
    );
}
