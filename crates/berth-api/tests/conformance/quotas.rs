//! Usage and quotas through both APIs: a push that would take a project past its storage
//! limit is refused with `DENIED` at the blob or manifest that crosses it, leaving nothing
//! behind; Harbor's `/quotas`, the project summary's `quota` and the repositories' `usage`
//! show the figures the database keeps.

use axum::http::StatusCode;
use berth_meta::UsageStore;
use serde_json::{Value, json};

use crate::common::{
    OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, TestApp, descriptor, sha256, to_bytes, with_digest,
};
use crate::mgmt::{app, as_user, assert_harbor_error, send_json};

/// A project created by `root` with a storage limit; its id.
async fn limited_project(app: &TestApp, name: &str, limit: i64) -> i64 {
    let created = send_json(
        &as_user(app, "root"),
        "POST",
        "/api/v2.0/projects",
        json!({"project_name": name, "storage_limit": limit}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created
        .location()
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("id")
}

async fn summary(app: &TestApp, project: &str) -> Value {
    as_user(app, "root")
        .get(format!("/api/v2.0/projects/{project}/summary"))
        .send()
        .await
        .json()
}

#[tokio::test]
async fn a_push_past_the_quota_is_denied_at_the_blob_that_crosses_it() {
    let app = app().await;
    limited_project(&app, "team", 1000).await;
    let root = as_user(&app, "root");
    root.push_blob("team/app", &[1u8; 600]).await;
    // A blob of 500 more bytes: the upload is refused at its last PUT, and cleaned up.
    let big = vec![2u8; 500];
    let location = root.start_upload("team/app").await;
    let refused = root
        .put(with_digest(&location, &sha256(&big)))
        .body(big.clone())
        .send()
        .await;
    refused.assert_error(403, "DENIED");
    let message = refused.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with("quota exceeded: used 600 B of 1000 B in project team"),
        "{message}"
    );
    root.get(&location)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    let absent = root
        .head(format!("/v2/team/app/blobs/{}", sha256(&big)))
        .send()
        .await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND);
    // A monolithic upload is refused the same way.
    let monolithic = root
        .post(format!(
            "/v2/team/app/blobs/uploads/?digest={}",
            sha256(&big)
        ))
        .body(big.clone())
        .send()
        .await;
    monolithic.assert_error(403, "DENIED");
    // What fits still goes in, and a blob the project holds already costs nothing.
    root.push_blob("team/app", &[3u8; 400]).await;
    root.push_blob("team/other", &[1u8; 600]).await;
    assert_eq!(
        summary(&app, "team").await["quota"]["used"]["storage"],
        1000
    );
}

#[tokio::test]
async fn a_manifest_that_crosses_the_quota_is_denied_and_not_stored() {
    let app = app().await;
    let root = as_user(&app, "root");
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = vec![7u8; 300];
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(OCI_LAYER, &layer)],
    }));
    // Exactly the blobs fit; the manifest's own bytes do not.
    let limit = (config.len() + layer.len()) as i64;
    limited_project(&app, "team", limit).await;
    root.push_blob("team/app", &config).await;
    root.push_blob("team/app", &layer).await;
    let refused = root
        .put_manifest("team/app", "v1", OCI_MANIFEST, manifest.clone())
        .await;
    refused.assert_error(403, "DENIED");
    root.get("/v2/team/app/manifests/v1")
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    // Raised through Harbor's API, the same push goes in.
    let id = as_user(&app, "root")
        .get("/api/v2.0/projects/team")
        .send()
        .await
        .json()["project_id"]
        .as_i64()
        .expect("id");
    let raised = send_json(
        &root,
        "PUT",
        &format!("/api/v2.0/quotas/{id}"),
        json!({"hard": {"storage": limit + manifest.len() as i64}}),
    )
    .await;
    assert_eq!(raised.status, StatusCode::OK, "{:?}", raised.body);
    root.push_manifest("team/app", "v1", OCI_MANIFEST, manifest)
        .await;
}

#[tokio::test]
async fn quotas_are_listed_read_and_changed_as_harbor_shows_them() {
    let app = app().await;
    let id = limited_project(&app, "team", 1 << 20).await;
    let root = as_user(&app, "root");
    root.push_image("team/app", "v1", "quota").await;
    let listed = root
        .get(format!(
            "/api/v2.0/quotas?reference=project&reference_id={id}"
        ))
        .send()
        .await;
    assert_eq!(listed.header("x-total-count"), "1");
    let quota = &listed.json()[0];
    assert_eq!(quota["id"], id);
    assert_eq!(quota["ref"]["name"], "team");
    assert_eq!(quota["ref"]["owner_name"], "root");
    assert_eq!(quota["hard"]["storage"], 1 << 20);
    let used = quota["used"]["storage"].as_u64().expect("used");
    assert!(used > 0);
    assert!(quota["creation_time"].is_string() && quota["update_time"].is_string());
    let one = root
        .get(format!("/api/v2.0/quotas/{id}"))
        .send()
        .await
        .json();
    assert_eq!(one["used"]["storage"], used);
    // The summary shows the same quota; the repository its usage.
    let summary = summary(&app, "team").await;
    assert_eq!(summary["quota"]["hard"]["storage"], 1 << 20);
    assert_eq!(summary["quota"]["used"]["storage"], used);
    assert_eq!(summary["usage"]["used"], used);
    let repository = root
        .get("/api/v2.0/projects/team/repositories/app")
        .send()
        .await
        .json();
    assert_eq!(repository["usage"]["used"], used);
    // Bad limits and unknown quotas get Harbor's 4xx.
    for bad in [
        json!({"hard": {"storage": 0}}),
        json!({"hard": {"storage": -2}}),
        json!({"hard": {}}),
    ] {
        let answer = send_json(&root, "PUT", &format!("/api/v2.0/quotas/{id}"), bad).await;
        assert_harbor_error(&answer, 400, "BAD_REQUEST");
    }
    let missing = send_json(
        &root,
        "PUT",
        "/api/v2.0/quotas/9999",
        json!({"hard": {"storage": -1}}),
    )
    .await;
    assert_harbor_error(&missing, 404, "NOT_FOUND");
    assert_harbor_error(
        &root.get("/api/v2.0/quotas/9999").send().await,
        404,
        "NOT_FOUND",
    );
    let unlimited = send_json(
        &root,
        "PUT",
        &format!("/api/v2.0/quotas/{id}"),
        json!({"hard": {"storage": -1}}),
    )
    .await;
    assert_eq!(unlimited.status, StatusCode::OK);
    assert_eq!(
        root.get(format!("/api/v2.0/quotas/{id}"))
            .send()
            .await
            .json()["hard"]["storage"],
        -1
    );
    let bad_create = send_json(
        &root,
        "POST",
        "/api/v2.0/projects",
        json!({"project_name": "zero", "storage_limit": 0}),
    )
    .await;
    assert_harbor_error(&bad_create, 400, "BAD_REQUEST");
}

/// After pushes into two projects that share a layer, a mount, and a repository deleted,
/// every usage figure equals the sum of the sizes of the blobs it should count.
#[tokio::test]
async fn usage_after_a_mixed_workload_equals_the_sum_of_the_blobs_sizes() {
    let app = app().await;
    limited_project(&app, "one", -1).await;
    limited_project(&app, "two", -1).await;
    let root = as_user(&app, "root");
    let shared = vec![1u8; 1000];
    let only_one = vec![2u8; 300];
    let only_two = vec![3u8; 70];
    let gone = vec![4u8; 5000];
    root.push_blob("one/a", &shared).await;
    root.push_blob("one/a", &only_one).await;
    root.push_blob("one/b", &shared).await;
    root.push_blob("one/doomed", &gone).await;
    let mounted = root
        .post(format!(
            "/v2/two/a/blobs/uploads/?mount={}&from=one/a",
            sha256(&shared)
        ))
        .send()
        .await;
    assert_eq!(mounted.status, StatusCode::CREATED);
    root.push_blob("two/a", &only_two).await;
    let deleted = root
        .delete("/api/v2.0/projects/one/repositories/doomed")
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::OK);

    let usage = |summary: Value| summary["usage"].clone();
    assert_eq!(
        usage(summary(&app, "one").await),
        json!({"used": 1300, "unique": 300, "shared": 1000})
    );
    assert_eq!(
        usage(summary(&app, "two").await),
        json!({"used": 1070, "unique": 70, "shared": 1000})
    );
    let repository = |name: &str| {
        let root = root.clone();
        let path = format!("/api/v2.0/projects/one/repositories/{name}");
        async move { root.get(path).send().await.json()["usage"].clone() }
    };
    assert_eq!(
        repository("a").await,
        json!({"used": 1300, "unique": 300, "shared": 1000})
    );
    assert_eq!(
        repository("b").await,
        json!({"used": 1000, "unique": 0, "shared": 1000})
    );
    let registry = app.meta().registry_usage().await.expect("registry usage");
    assert_eq!(registry.linked_blob_bytes, 1000 + 300 + 70);
    assert_eq!(
        registry.stored_blob_bytes,
        1000 + 300 + 70 + 5000,
        "until GC"
    );
}
