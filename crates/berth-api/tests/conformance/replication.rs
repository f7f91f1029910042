//! Replication through Harbor's `/replication/*` API between two registries on sockets (this
//! berth and another one served on 127.0.0.1): push and pull policies copy every platform of
//! an index and its referrers, skip what the destination has, rename into a namespace, follow
//! pushes and deletes (event-based), stop on request, and refuse bad policies and callers
//! that are not administrators. Executions are queued as jobs; the tests run them by hand.

use std::time::Duration;

use axum::http::StatusCode;
use berth_auth::AuthMode;
use berth_auth::identity::NewAccount;
use serde_json::{Value, json};

use crate::common::{OCI_INDEX, OCI_MANIFEST, TestApp, descriptor, sha256, to_bytes};
use crate::proxy::{Upstream, as_root, send_json};

/// A token-mode berth with replication, as its administrator.
async fn berth() -> TestApp {
    let app = TestApp::builder()
        .token_mode()
        .proxy(Duration::from_secs(60))
        .build()
        .await;
    as_root(&app).await
}

/// Another registry anyone may push to, on a socket.
async fn remote() -> Upstream {
    let app = TestApp::builder()
        .auth(AuthMode::Open {
            anonymous_write: true,
        })
        .build()
        .await;
    Upstream::start_with(app).await
}

fn id_of(location: &str) -> i64 {
    location
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("id in Location")
}

async fn add_registry(app: &TestApp, url: &str) -> i64 {
    let created = send_json(
        app,
        "POST",
        "/api/v2.0/registries",
        json!({"name": "remote", "type": "docker-registry", "url": url}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    id_of(&created.location())
}

async fn add_policy(app: &TestApp, policy: Value) -> i64 {
    let created = send_json(app, "POST", "/api/v2.0/replication/policies", policy).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json());
    id_of(&created.location())
}

/// Start a policy by hand, run its execution as the job would, and return the execution.
async fn run_policy(app: &TestApp, policy: i64) -> Value {
    let started = send_json(
        app,
        "POST",
        "/api/v2.0/replication/executions",
        json!({"policy_id": policy}),
    )
    .await;
    assert_eq!(started.status, StatusCode::CREATED, "{:?}", started.json());
    run_execution(app, id_of(&started.location())).await
}

async fn run_execution(app: &TestApp, id: i64) -> Value {
    app.replicator().run(id).await.expect("the execution runs");
    let shown = app
        .get(format!("/api/v2.0/replication/executions/{id}"))
        .send()
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    shown.json()
}

/// A two-platform index tagged `tag`, an SBOM that refers to it, and a signature of the
/// SBOM; (index digest, sbom digest, signature digest).
async fn push_index_with_referrers(
    app: &TestApp,
    repo: &str,
    tag: &str,
) -> (String, String, String) {
    let amd = app.image_manifest(repo, "amd64").await;
    let arm = app.image_manifest(repo, "arm64").await;
    let amd_digest = app
        .push_manifest(repo, &sha256(&amd), OCI_MANIFEST, amd.clone())
        .await;
    let arm_digest = app
        .push_manifest(repo, &sha256(&arm), OCI_MANIFEST, arm.clone())
        .await;
    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd_digest, "size": amd.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm_digest, "size": arm.len(), "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }));
    let index_digest = app.push_manifest(repo, tag, OCI_INDEX, index.clone()).await;
    app.push_blob(repo, b"{}").await;
    app.push_blob(repo, b"an sbom").await;
    let sbom = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": [descriptor("application/spdx+json", b"an sbom")],
        "subject": descriptor(OCI_INDEX, &index),
    }));
    let sbom_digest = app
        .push_manifest(repo, &sha256(&sbom), OCI_MANIFEST, sbom.clone())
        .await;
    let signature = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": [descriptor("application/vnd.dev.cosign.simplesigning.v1+json", b"a signature")],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sbom_digest, "size": sbom.len()},
    }));
    app.push_blob(repo, b"a signature").await;
    let signature_digest = app
        .push_manifest(repo, &sha256(&signature), OCI_MANIFEST, signature)
        .await;
    (index_digest, sbom_digest, signature_digest)
}

fn referrer_digests(app_response: &Value) -> Vec<String> {
    app_response["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| m["digest"].as_str().expect("digest").to_owned())
        .collect()
}

#[tokio::test]
async fn a_push_policy_copies_an_index_its_platforms_and_referrers_then_only_what_changed() {
    let app = berth().await;
    let remote = remote().await;
    app.identity()
        .create_project("team", false, None)
        .await
        .expect("project");
    let (index, sbom, signature) = push_index_with_referrers(&app, "team/app", "v1").await;
    app.push_image("team/app", "v2", "second").await;
    app.push_image("team/other", "latest", "other").await;
    let registry = add_registry(&app, &remote.url).await;
    let policy = add_policy(
        &app,
        json!({"name": "to-remote", "dest_registry": {"id": registry},
               "filters": [{"type": "name", "value": "team/app"}, {"type": "tag", "value": "v*"}],
               "trigger": {"type": "manual"}}),
    )
    .await;

    let execution = run_policy(&app, policy).await;
    assert_eq!(execution["status"], "Succeed", "{execution}");
    assert_eq!(
        (execution["total"].as_i64(), execution["succeed"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(execution["trigger"], "manual");
    let there = remote.app.get("/v2/team/app/manifests/v1").send().await;
    assert_eq!(there.header("docker-content-digest"), index);
    let children: Vec<String> = referrer_digests(&there.json());
    for child in children {
        let pulled = remote
            .app
            .get(format!("/v2/team/app/manifests/{child}"))
            .send()
            .await;
        assert_eq!(pulled.status, StatusCode::OK, "platform {child} copied");
    }
    let referrers = remote
        .app
        .get(format!("/v2/team/app/referrers/{index}"))
        .send()
        .await;
    assert_eq!(referrer_digests(&referrers.json()), vec![sbom.clone()]);
    let signatures = remote
        .app
        .get(format!("/v2/team/app/referrers/{sbom}"))
        .send()
        .await;
    assert_eq!(referrer_digests(&signatures.json()), vec![signature]);
    assert_eq!(
        remote
            .app
            .get("/v2/team/app/manifests/v2")
            .send()
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        remote
            .app
            .get("/v2/team/other/manifests/latest")
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND,
        "the name filter leaves team/other"
    );

    // The task, its log, and a second run that finds everything there.
    let tasks = app
        .get(format!(
            "/api/v2.0/replication/executions/{}/tasks",
            execution["id"]
        ))
        .send()
        .await;
    assert_eq!(tasks.header("x-total-count"), "1");
    let task = &tasks.json()[0];
    assert_eq!(task["src_resource"], "team/app:[v1,v2]");
    assert_eq!(task["status"], "Succeed");
    assert_eq!(task["operation"], "copy");
    let log = app
        .get(format!(
            "/api/v2.0/replication/executions/{}/tasks/{}/log",
            execution["id"], task["id"]
        ))
        .send()
        .await;
    assert_eq!(log.status, StatusCode::OK);
    let log = String::from_utf8_lossy(&log.body).into_owned();
    assert!(log.contains("done:"), "{log}");
    let uploads_before = remote.count("POST /v2/team/app/blobs/uploads/");
    let again = run_policy(&app, policy).await;
    assert_eq!(again["status"], "Succeed", "{again}");
    assert_eq!(
        remote.count("POST /v2/team/app/blobs/uploads/"),
        uploads_before,
        "nothing uploaded twice"
    );
    let listed = app
        .get(format!(
            "/api/v2.0/replication/executions?policy_id={policy}"
        ))
        .send()
        .await;
    assert_eq!(listed.header("x-total-count"), "2");
    assert_eq!(listed.json()[0]["id"], again["id"], "newest first");
    // The policy and each run are in the audit log, by the administrator.
    app.flush_audit().await;
    let logged: Vec<(String, String, String)> = app
        .audit_lines()
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (s("username"), s("operation"), s("resource"))
        })
        .collect();
    for resource in [
        format!("replication/policy/{policy}"),
        format!("replication/execution/{}", execution["id"]),
        format!("replication/execution/{}", again["id"]),
    ] {
        assert!(
            logged
                .iter()
                .any(|(u, o, r)| u == "root" && o == "create" && *r == resource),
            "{resource} in {logged:?}"
        );
    }
}

#[tokio::test]
async fn a_pull_policy_copies_into_a_namespace_it_creates() {
    let app = berth().await;
    let remote = remote().await;
    let (index, sbom, _) = push_index_with_referrers(&remote.app, "lib/app", "v1").await;
    let registry = add_registry(&app, &remote.url).await;
    let policy = add_policy(
        &app,
        json!({"name": "from-remote", "src_registry": {"id": registry}, "dest_registry": null,
               "dest_namespace": "mirror", "dest_namespace_replace_count": 0,
               "filters": [{"type": "name", "value": "lib/**"}]}),
    )
    .await;
    let shown = app
        .get(format!("/api/v2.0/replication/policies/{policy}"))
        .send()
        .await
        .json();
    assert_eq!(shown["src_registry"]["id"], registry);
    assert_eq!(
        shown["dest_registry"]["id"], 0,
        "this registry is Harbor's id 0"
    );
    assert_eq!(shown["override"], true);
    let execution = run_policy(&app, policy).await;
    assert_eq!(execution["status"], "Succeed", "{execution}");
    let copied = app.get("/v2/mirror/lib/app/manifests/v1").send().await;
    assert_eq!(copied.status, StatusCode::OK, "{:?}", copied.json());
    assert_eq!(copied.header("docker-content-digest"), index);
    let referrers = app
        .get(format!("/v2/mirror/lib/app/referrers/{index}"))
        .send()
        .await;
    assert_eq!(referrer_digests(&referrers.json()), vec![sbom]);
    let project = app.get("/api/v2.0/projects/mirror").send().await;
    assert_eq!(project.status, StatusCode::OK, "the namespace was created");
}

/// Wait for an event-based execution of `policy` beyond the first `seen`, then run it.
async fn next_event_execution(app: &TestApp, policy: i64, seen: usize) -> Value {
    for _ in 0..100 {
        let listed = app
            .get(format!(
                "/api/v2.0/replication/executions?policy_id={policy}&trigger=event_based"
            ))
            .send()
            .await
            .json();
        let all = listed.as_array().expect("a list");
        if all.len() > seen {
            let id = all[0]["id"].as_i64().expect("id");
            return run_execution(app, id).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no event-based execution of policy {policy} appeared");
}

#[tokio::test]
async fn event_based_policies_follow_pushes_and_deletes() {
    let app = berth().await;
    let remote = remote().await;
    app.identity()
        .create_project("team", false, None)
        .await
        .expect("project");
    let registry = add_registry(&app, &remote.url).await;
    let policy = add_policy(
        &app,
        json!({"name": "follow", "dest_registry": {"id": registry}, "replicate_deletion": true,
               "filters": [{"type": "tag", "value": "release-*"}],
               "trigger": {"type": "event_based"}}),
    )
    .await;
    let (digest, _) = app.push_image("team/app", "release-1", "one").await;
    let execution = next_event_execution(&app, policy, 0).await;
    assert_eq!(execution["status"], "Succeed", "{execution}");
    let there = remote
        .app
        .get("/v2/team/app/manifests/release-1")
        .send()
        .await;
    assert_eq!(there.header("docker-content-digest"), digest);
    // A tag the filter leaves does not start an execution.
    app.push_image("team/app", "dev", "dev").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listed = app
        .get(format!(
            "/api/v2.0/replication/executions?policy_id={policy}"
        ))
        .send()
        .await;
    assert_eq!(listed.header("x-total-count"), "1");
    // Deleting the artifact deletes it at the destination.
    let deleted = app
        .delete(format!("/v2/team/app/manifests/{digest}"))
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    let execution = next_event_execution(&app, policy, 1).await;
    assert_eq!(execution["status"], "Succeed", "{execution}");
    assert_eq!(
        remote
            .app
            .get(format!("/v2/team/app/manifests/{digest}"))
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_stopped_execution_copies_nothing_more() {
    let app = berth().await;
    let remote = remote().await;
    app.identity()
        .create_project("team", false, None)
        .await
        .expect("project");
    app.push_image("team/app", "v1", "one").await;
    let registry = add_registry(&app, &remote.url).await;
    let policy = add_policy(
        &app,
        json!({"name": "p", "dest_registry": {"id": registry}}),
    )
    .await;
    let started = send_json(
        &app,
        "POST",
        "/api/v2.0/replication/executions",
        json!({"policy_id": policy}),
    )
    .await;
    let id = id_of(&started.location());
    let stop = app
        .put(format!("/api/v2.0/replication/executions/{id}"))
        .send()
        .await;
    assert_eq!(stop.status, StatusCode::OK);
    let execution = run_execution(&app, id).await;
    assert_eq!(execution["status"], "Stopped", "{execution}");
    assert_eq!(execution["stopped"], 1);
    assert_eq!(
        remote
            .app
            .get("/v2/team/app/manifests/v1")
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Deleting a policy with a run in progress is refused; its registry stays meanwhile.
    let running = send_json(
        &app,
        "POST",
        "/api/v2.0/replication/executions",
        json!({"policy_id": policy}),
    )
    .await;
    assert_eq!(running.status, StatusCode::CREATED);
    app.delete(format!("/api/v2.0/replication/policies/{policy}"))
        .send()
        .await
        .assert_error(412, "PRECONDITION");
    app.delete(format!("/api/v2.0/registries/{registry}"))
        .send()
        .await
        .assert_error(412, "PRECONDITION");
    run_execution(&app, id_of(&running.location())).await;
    let gone = app
        .delete(format!("/api/v2.0/replication/policies/{policy}"))
        .send()
        .await;
    assert_eq!(gone.status, StatusCode::OK);
    assert_eq!(
        app.get(format!("/api/v2.0/replication/executions/{id}"))
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND,
        "its history went with it"
    );
}

#[tokio::test]
async fn bad_policies_and_requests_are_refused_with_harbor_errors() {
    let app = berth().await;
    let remote = remote().await;
    let registry = add_registry(&app, &remote.url).await;
    let post = |body: Value| send_json(&app, "POST", "/api/v2.0/replication/policies", body);
    for (body, why) in [
        (json!({"dest_registry": {"id": registry}}), "no name"),
        (json!({"name": "x"}), "no remote registry"),
        (
            json!({"name": "x", "src_registry": {"id": registry}, "dest_registry": {"id": registry}}),
            "two remote registries",
        ),
        (
            json!({"name": "x", "dest_registry": {"id": 999}}),
            "an unknown registry",
        ),
        (
            json!({"name": "x", "dest_registry": {"id": registry},
                   "trigger": {"type": "scheduled", "trigger_settings": {"cron": "every day"}}}),
            "a bad cron",
        ),
        (
            json!({"name": "x", "src_registry": {"id": registry}, "trigger": {"type": "event_based"}}),
            "events on a pull policy",
        ),
        (
            json!({"name": "x", "dest_registry": {"id": registry}, "filters": [{"type": "size", "value": "1"}]}),
            "an unknown filter",
        ),
        (
            json!({"name": "x", "dest_registry": {"id": registry}, "colour": "blue"}),
            "an unknown field",
        ),
    ] {
        let refused = post(body).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{why}: {:?}",
            refused.json()
        );
        assert!(
            refused.json()["errors"][0]["message"].is_string(),
            "{why}: Harbor's error body"
        );
    }
    let policy = add_policy(
        &app,
        json!({"name": "ok", "dest_registry": {"id": registry}}),
    )
    .await;
    post(json!({"name": "ok", "dest_registry": {"id": registry}}))
        .await
        .assert_error(409, "CONFLICT");
    app.get("/api/v2.0/replication/policies/999")
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
    send_json(
        &app,
        "POST",
        "/api/v2.0/replication/executions",
        json!({"policy_id": 999}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    send_json(&app, "POST", "/api/v2.0/replication/executions", json!({}))
        .await
        .assert_error(400, "BAD_REQUEST");
    app.get("/api/v2.0/replication/executions?status=Bogus")
        .send()
        .await
        .assert_error(400, "BAD_REQUEST");
    app.get("/api/v2.0/replication/executions/999/tasks")
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
    app.get("/api/v2.0/replication/executions/1/tasks/999/log")
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
    let disabled = send_json(
        &app,
        "PUT",
        &format!("/api/v2.0/replication/policies/{policy}"),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK);
    send_json(
        &app,
        "POST",
        "/api/v2.0/replication/executions",
        json!({"policy_id": policy}),
    )
    .await
    .assert_error(400, "BAD_REQUEST");
    let adapters = app
        .get("/api/v2.0/replication/adapters")
        .send()
        .await
        .json();
    assert!(
        adapters
            .as_array()
            .expect("list")
            .contains(&json!("docker-registry"))
    );
    let info = app
        .get(format!("/api/v2.0/registries/{registry}/info"))
        .send()
        .await
        .json();
    assert!(
        info["supported_triggers"]
            .as_array()
            .expect("triggers")
            .contains(&json!("event_based"))
    );

    // Only system administrators: a user is forbidden, an anonymous caller unauthorized.
    app.identity()
        .add_user(NewAccount {
            name: "dev".into(),
            password: "Passw0rd-dev1".into(),
            email: "dev@example.com".into(),
            ..Default::default()
        })
        .await
        .expect("user");
    let user = app.without_credentials().with_basic("dev", "Passw0rd-dev1");
    let anonymous = app.without_credentials();
    for path in [
        "/api/v2.0/replication/policies".to_owned(),
        format!("/api/v2.0/replication/policies/{policy}"),
        "/api/v2.0/replication/executions".to_owned(),
        "/api/v2.0/replication/adapters".to_owned(),
        format!("/api/v2.0/registries/{registry}/info"),
    ] {
        user.get(&path).send().await.assert_error(403, "FORBIDDEN");
        anonymous
            .get(&path)
            .send()
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    send_json(
        &user,
        "POST",
        "/api/v2.0/replication/executions",
        json!({"policy_id": policy}),
    )
    .await
    .assert_error(403, "FORBIDDEN");
}
