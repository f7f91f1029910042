//! A registry with a row in every table `berth migrate` copies, for the copy's tests here
//! and in the binary (feature `test-postgres`): users, a deleted one and a project, members,
//! a robot, a signing key, images, an index with its children, a referrer, tags, pulls,
//! audit entries, jobs, a schedule, and an upload in flight (which is not copied). Deletes
//! leave gaps in the ids, so a copy that renumbers shows.

use berth_core::access::RobotAccess;
use berth_core::{Algorithm, Digest, RepositoryName, RobotPermission, Role, Tag};
use serde_json::json;

use crate::{
    AuditBatch, AuditRecord, JobOutcome, MetaStore, NewJob, NewManifest, NewRobot, NewUpstream,
    NewUser, PullRecord, Schedule, SecretKey, SigningKey, StoredCredential, Upload,
};

fn name(s: &str) -> RepositoryName {
    s.parse().expect("valid name")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("valid tag")
}

fn manifest(media_type: &str, content: String, blobs: &[&Digest]) -> NewManifest {
    NewManifest {
        digest: Digest::of(Algorithm::Sha256, content.as_bytes()),
        media_type: media_type.into(),
        content: content.into_bytes(),
        artifact_type: None,
        config_media_type: Some("application/vnd.oci.image.config.v1+json".into()),
        subject: None,
        annotations: None,
        blobs: blobs.iter().map(|d| (*d).clone()).collect(),
        manifests: Vec::new(),
        require_manifests: true,
        aliases: Vec::new(),
        immutable_tags: Vec::new(),
    }
}

/// An image manifest of `config` and `layer` (their digests and sizes).
fn image(config: &(Digest, Vec<u8>), layer: &(Digest, Vec<u8>), note: &str) -> NewManifest {
    let content = json!({
        "schemaVersion": 2,
        "mediaType": berth_core::media_type::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.0.to_string(), "size": config.1.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer.0.to_string(), "size": layer.1.len()}],
        "annotations": {"note": note},
    })
    .to_string();
    manifest(
        berth_core::media_type::OCI_MANIFEST,
        content,
        &[&config.0, &layer.0],
    )
}

fn blob(content: &str) -> (Digest, Vec<u8>) {
    let bytes = content.as_bytes().to_vec();
    (Digest::of(Algorithm::Sha256, &bytes), bytes)
}

/// Fill `store`; returns the blobs it linked, whose bytes a caller with a blob store writes.
pub async fn fill(store: &dyn MetaStore) -> Vec<(Digest, Vec<u8>)> {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    let mut users = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let id = store
            .create_user(&NewUser {
                name: user.into(),
                email: format!("{user}@example.com"),
                password_hash: hash.into(),
                sysadmin: user == "alice",
                ..Default::default()
            })
            .await
            .expect("user");
        users.push(id);
    }
    assert!(store.delete_user(users[1]).await.expect("delete user"));
    let team = store
        .create_project("team", false, Some(users[0]))
        .await
        .expect("project");
    let gone = store
        .create_project("gone", true, None)
        .await
        .expect("project");
    assert!(store.delete_project(gone).await.expect("delete project"));
    // A quota, a tag immutability rule and a retention policy with a run (migrations 9–11).
    assert!(store.set_storage_limit(team, 1 << 30).await.expect("quota"));
    store
        .create_immutable_rule(team, false, 0, r#"{"tag_selectors":[{"pattern":"v*"}]}"#)
        .await
        .expect("immutable rule");
    let policy = store
        .create_retention_policy(team, r#"{"rules":[]}"#)
        .await
        .expect("retention policy");
    store
        .record_retention_run(&crate::RetentionRunRow {
            id: 0,
            policy_id: policy,
            dry_run: true,
            trigger: "MANUAL".into(),
            status: "Succeed".into(),
            started_at: 1_700_000_000_000,
            finished_at: 1_700_000_001_000,
            result: "[]".into(),
        })
        .await
        .expect("retention run");
    store
        .set_member(team, users[2], Role::Developer)
        .await
        .expect("member");
    store
        .create_robot(&NewRobot {
            name: "robot$team+ci".into(),
            description: "pushes from CI".into(),
            project_id: Some(team),
            secret_hash: hash.into(),
            disabled: false,
            expires_at: Some(4_102_444_800),
            permissions: vec![RobotPermission {
                kind: "project".into(),
                namespace: "team".into(),
                access: vec![RobotAccess::new("repository", "push")],
            }],
        })
        .await
        .expect("robot");
    store
        .add_signing_key(&SigningKey {
            kid: "ABCD:EFGH".into(),
            algorithm: "ES256".into(),
            private_key: vec![0x30, 0x81, 0x87, 0, 1, 2, 255],
            created_at: 1_700_000_000,
            retired_at: None,
        })
        .await
        .expect("key");

    // An upstream, one deleted before it (a gap in the ids), and a proxy-cache project.
    let gone = store
        .create_upstream(&NewUpstream {
            name: "gone".into(),
            kind: "docker-registry".into(),
            url: "http://127.0.0.1:1".into(),
            description: String::new(),
            insecure: false,
            ca_cert: None,
            credential: None,
        })
        .await
        .expect("upstream");
    store.delete_upstream(gone).await.expect("delete upstream");
    let hub = store
        .create_upstream(&NewUpstream {
            name: "hub".into(),
            kind: "docker-hub".into(),
            url: "https://hub.docker.com".into(),
            description: "Docker Hub".into(),
            insecure: true,
            ca_cert: Some("-----BEGIN CERTIFICATE-----\n".into()),
            credential: Some(StoredCredential {
                kind: "basic".into(),
                access_key: "puller".into(),
                sealed_secret: vec![1, 2, 3, 0, 255],
            }),
        })
        .await
        .expect("upstream");
    let cache = store
        .create_project("hub-cache", true, None)
        .await
        .expect("proxy project");
    store
        .set_project_upstream(cache, hub)
        .await
        .expect("proxy binding");
    // A replication policy (one deleted before it), an execution and its tasks (migration 13).
    let policy = |name: &str| crate::NewReplicationPolicy {
        name: name.into(),
        enabled: true,
        src_registry: None,
        dest_registry: Some(hub),
        definition: r#"{"filters":[],"trigger":{"type":"manual"}}"#.into(),
    };
    let dropped = store
        .create_replication_policy(&policy("dropped"))
        .await
        .expect("policy");
    store
        .delete_replication_policy(dropped)
        .await
        .expect("delete policy");
    let push = store
        .create_replication_policy(&policy("to-hub"))
        .await
        .expect("policy");
    let execution = store
        .create_replication_execution(push, "manual", Some(r#"{"repository":"team/app"}"#))
        .await
        .expect("execution");
    let task = |name: &str| crate::NewReplicationTask {
        resource_type: "artifact".into(),
        src_resource: format!("{name}:[v1]"),
        dst_resource: format!("{name}:[v1]"),
        operation: "copy".into(),
        plan: format!(r#"{{"repository":"{name}"}}"#),
    };
    let tasks = store
        .plan_replication_tasks(execution, &[task("team/app"), task("library/busybox")])
        .await
        .expect("tasks");
    store
        .update_replication_task(tasks[0].id, "Succeed", "copied team/app:v1\n")
        .await
        .expect("task");
    store
        .finish_replication_execution(execution, "Failed", "1 of 2 tasks failed")
        .await
        .expect("finish");
    store
        .add_secret_key(&SecretKey {
            kid: "k1".into(),
            key: vec![7; 32],
            created_at: 1_700_000_000,
        })
        .await
        .expect("secret key");

    let blobs: Vec<(Digest, Vec<u8>)> = ["config one", "layer one", "config two", "layer two"]
        .into_iter()
        .map(blob)
        .collect();
    let (app, lib) = (name("team/app"), name("library/busybox"));
    for repository in [&app, &lib] {
        for (digest, bytes) in &blobs {
            store
                .link_blob(repository, digest, bytes.len() as u64)
                .await
                .expect("link");
        }
    }
    let first = image(&blobs[0], &blobs[1], "amd64");
    let second = image(&blobs[2], &blobs[3], "arm64");
    let dropped = image(&blobs[0], &blobs[3], "dropped");
    for m in [&first, &second, &dropped] {
        store.put_manifest(&app, m, &[]).await.expect("image");
    }
    store
        .delete_manifest(&app, &dropped.digest)
        .await
        .expect("delete manifest");
    let index_content = json!({
        "schemaVersion": 2,
        "mediaType": berth_core::media_type::OCI_INDEX,
        "manifests": [
            {"mediaType": berth_core::media_type::OCI_MANIFEST, "digest": first.digest.to_string(),
             "size": first.content.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": berth_core::media_type::OCI_MANIFEST, "digest": second.digest.to_string(),
             "size": second.content.len(), "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    })
    .to_string();
    let mut index = manifest(berth_core::media_type::OCI_INDEX, index_content, &[]);
    index.config_media_type = None;
    index.manifests = vec![first.digest.clone(), second.digest.clone()];
    store
        .put_manifest(&app, &index, &[tag("v1"), tag("latest")])
        .await
        .expect("index");
    let mut signature = image(&blobs[0], &blobs[1], "signature");
    signature.subject = Some(first.digest.clone());
    signature.artifact_type = Some("application/vnd.dev.cosign.artifact.sig.v1+json".into());
    signature.annotations = Some(
        json!({"signed": "yes"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    store
        .put_manifest(&app, &signature, &[])
        .await
        .expect("referrer");
    store
        .put_manifest(&lib, &first, &[tag("1.36"), tag("stale")])
        .await
        .expect("library image");
    store
        .delete_tag(&lib, &tag("stale"))
        .await
        .expect("delete tag");
    store
        .add_tag(&lib, &first.digest, &tag("1"))
        .await
        .expect("add tag");
    store
        .set_repository_description(&app, "the app, with ünïcode")
        .await
        .expect("description");
    let scratch = name("team/scratch");
    store
        .put_manifest(&scratch, &image(&blobs[0], &blobs[1], "x"), &[])
        .await
        .expect_err("blobs are not linked in scratch");
    store
        .link_blob(&scratch, &blobs[0].0, 10)
        .await
        .expect("link");
    store
        .delete_repository(&scratch)
        .await
        .expect("delete repository");

    store
        .append_audit(&AuditBatch {
            entries: vec![
                AuditRecord {
                    op_time_ms: 1_700_000_000_123,
                    username: "alice".into(),
                    client: "127.0.0.1".into(),
                    operation: "create".into(),
                    resource_type: "artifact".into(),
                    resource: "team/app:v1".into(),
                    project: Some("team".into()),
                    success: true,
                    reason: String::new(),
                    count: 1,
                },
                AuditRecord {
                    op_time_ms: 1_700_000_000_456,
                    username: "anonymous".into(),
                    client: String::new(),
                    operation: "login".into(),
                    resource_type: "user".into(),
                    resource: "mallory".into(),
                    project: None,
                    success: false,
                    reason: "wrong password".into(),
                    count: 3,
                },
            ],
            pulls: vec![PullRecord {
                repository: app.to_string(),
                digest: index.digest.to_string(),
                count: 7,
                last_ms: 1_700_000_001_000,
            }],
        })
        .await
        .expect("audit");

    for key in ["one", "two"] {
        store
            .enqueue_job(&NewJob {
                kind: "purge_uploads".into(),
                key: key.into(),
                params: json!({"older_than_days": 7}),
                run_after_ms: 0,
            })
            .await
            .expect("job");
    }
    let claimed = store
        .claim_job(&["purge_uploads"], "node-a", 1, 60_000)
        .await
        .expect("claim")
        .expect("a job");
    store
        .finish_job(
            claimed.id,
            "node-a",
            &JobOutcome::Succeeded(json!({"purged": 2})),
            2,
        )
        .await
        .expect("finish");
    store
        .set_schedule(
            "purge_uploads",
            Some(&Schedule {
                kind: "purge_uploads".into(),
                cron: "0 * * * *".into(),
                params: json!({}),
                next_run_ms: 1_800_000_000_000,
            }),
        )
        .await
        .expect("schedule");
    store
        .create_upload(&Upload {
            id: "in-flight".into(),
            repository: app.clone(),
            offset: 0,
            hash_state: vec![1, 2, 3],
            store_state: None,
            created_at: 1_700_000_000,
        })
        .await
        .expect("upload");
    blobs
}
