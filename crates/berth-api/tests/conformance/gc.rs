//! Harbor's `/api/v2.0/system/gc*`: system administrators only; a schedule set and read
//! back in Harbor's shapes; a manual run queued as a `gc` job, listed in the history with
//! what it freed, and its log as text.

use std::sync::Arc;

use axum::http::StatusCode;
use berth_meta::{JobOutcome, JobStore};
use berth_registry::{GcOptions, Registry, RegistryOptions};
use serde_json::json;

use crate::mgmt::{app, as_user, assert_harbor_error, send_json};

#[tokio::test]
async fn gc_endpoints_are_for_system_administrators_only() {
    let app = app().await;
    let schedule = json!({"schedule": {"type": "Manual"}});
    for (caller, status) in [("dev", 403), ("root", 200)] {
        let as_caller = as_user(&app, caller);
        let listed = as_caller.get("/api/v2.0/system/gc").send().await;
        assert_eq!(listed.status.as_u16(), status, "{caller} lists");
        let read = as_caller.get("/api/v2.0/system/gc/schedule").send().await;
        assert_eq!(read.status.as_u16(), status, "{caller} reads the schedule");
    }
    let refused = send_json(
        &as_user(&app, "dev"),
        "POST",
        "/api/v2.0/system/gc/schedule",
        schedule.clone(),
    )
    .await;
    assert_harbor_error(&refused, 403, "FORBIDDEN");
    let anonymous = send_json(&app, "POST", "/api/v2.0/system/gc/schedule", schedule).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/api/v2.0/system/gc").send().await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_schedule_is_set_read_back_and_turned_off_as_harbor_shows_it() {
    let app = app().await;
    let root = as_user(&app, "root");
    let none = root.get("/api/v2.0/system/gc/schedule").send().await;
    assert_eq!(none.json()["schedule"]["type"], "None");
    let set = send_json(
        &root,
        "PUT",
        "/api/v2.0/system/gc/schedule",
        json!({"schedule": {"type": "Custom", "cron": "0 30 3 * * *"}, "parameters": {"delete_untagged": true, "workers": 2}}),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    let read = root.get("/api/v2.0/system/gc/schedule").send().await.json();
    assert_eq!(read["schedule"]["type"], "Custom");
    assert_eq!(read["schedule"]["cron"], "0 30 3 * * *");
    assert!(
        read["schedule"]["next_scheduled_time"]
            .as_str()
            .is_some_and(|t| t.contains("T03:30:00")),
        "{read}"
    );
    assert_eq!(
        read["parameters"],
        json!({"delete_untagged": true, "dry_run": false, "workers": 2})
    );
    let daily = send_json(
        &root,
        "POST",
        "/api/v2.0/system/gc/schedule",
        json!({"schedule": {"type": "Daily"}}),
    )
    .await;
    assert_eq!(daily.status, StatusCode::CREATED);
    let read = root.get("/api/v2.0/system/gc/schedule").send().await.json();
    assert_eq!(
        (
            read["schedule"]["type"].as_str(),
            read["schedule"]["cron"].as_str()
        ),
        (Some("Daily"), Some("0 0 0 * * *"))
    );
    for bad in [
        json!({"schedule": {"type": "Custom", "cron": "every day"}}),
        json!({"schedule": {"type": "Custom", "cron": "30 0 3 * * *"}}),
        json!({"schedule": {"type": "Sometimes"}}),
        json!({"schedule": {"type": "Daily"}, "parameters": {"dry_run": "yes"}}),
        json!({"schedule": {"type": "Manual"}}),
    ] {
        let response = send_json(&root, "PUT", "/api/v2.0/system/gc/schedule", bad.clone()).await;
        assert_harbor_error(&response, 400, "BAD_REQUEST");
    }
    let off = send_json(
        &root,
        "PUT",
        "/api/v2.0/system/gc/schedule",
        json!({"schedule": {"type": "None"}}),
    )
    .await;
    assert_eq!(off.status, StatusCode::OK);
    let read = root.get("/api/v2.0/system/gc/schedule").send().await.json();
    assert_eq!(read["schedule"]["type"], "None");
}

#[tokio::test]
async fn a_manual_run_is_a_job_with_history_what_it_freed_and_a_log() {
    let app = app().await;
    let root = as_user(&app, "root");
    // An image pushed and deleted: its two blobs are garbage.
    let (digest, _) = root.push_image("library/gone", "v1", "gc-api").await;
    let deleted = root
        .delete(format!("/v2/library/gone/manifests/{digest}"))
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);

    let queued = send_json(
        &root,
        "POST",
        "/api/v2.0/system/gc/schedule",
        json!({"schedule": {"type": "Manual"}, "parameters": {"delete_untagged": true, "dry_run": false}}),
    )
    .await;
    assert_eq!(queued.status, StatusCode::CREATED, "{:?}", queued.body);
    let location = queued.location();
    let id: i64 = location
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("id in Location");
    let history = root.get("/api/v2.0/system/gc").send().await;
    assert_eq!(history.header("x-total-count"), "1");
    let entry = &history.json()[0];
    assert_eq!(
        (
            entry["id"].as_i64(),
            entry["job_kind"].as_str(),
            entry["job_status"].as_str()
        ),
        (Some(id), Some("MANUAL"), Some("Pending"))
    );
    assert_eq!(entry["job_name"], "GARBAGE_COLLECTION");
    let parameters: serde_json::Value =
        serde_json::from_str(entry["job_parameters"].as_str().expect("text")).expect("json");
    assert_eq!(parameters["delete_untagged"], true);

    // The server's runner would claim and run it; here the test does, as the binary's
    // handler does (`crates/berth/src/jobs.rs`).
    let meta = Arc::new(app.meta().clone());
    let job = meta
        .claim_job(&["gc"], "test-node", i64::MAX / 2, i64::MAX / 2 + 60_000)
        .await
        .expect("claim")
        .expect("the queued run");
    assert_eq!(job.id, id);
    let blobs = Arc::new(berth_storage::FsBlobStore::open(app.data_dir()).expect("blobs"));
    let registry = Registry::new(
        meta.clone(),
        blobs,
        RegistryOptions {
            read_cache: false,
            ..Default::default()
        },
    );
    let options = GcOptions {
        delete_untagged: true,
        untagged_grace: std::time::Duration::ZERO,
        blob_grace: std::time::Duration::ZERO,
        ..GcOptions::default()
    };
    let report = registry.collect_garbage(&options).await.expect("gc");
    assert_eq!(report.blobs_deleted, 2);
    let result = serde_json::to_value(&report).expect("json");
    assert!(
        meta.finish_job(
            id,
            "test-node",
            &JobOutcome::Succeeded(result),
            i64::MAX / 2
        )
        .await
        .expect("finish")
    );

    let run = root.get(format!("/api/v2.0/system/gc/{id}")).send().await;
    assert_eq!(run.status, StatusCode::OK);
    let run = run.json();
    assert_eq!(run["job_status"], "Success");
    assert_eq!(run["result"]["blobs_deleted"], 2);
    assert!(run["result"]["bytes_freed"].as_u64().is_some_and(|b| b > 0));
    assert!(
        run["result"].get("log").is_none(),
        "the log is its own endpoint"
    );
    let log = root
        .get(format!("/api/v2.0/system/gc/{id}/log"))
        .send()
        .await;
    assert_eq!(log.status, StatusCode::OK);
    assert!(log.header("content-type").starts_with("text/plain"));
    let text = String::from_utf8(log.body.to_vec()).expect("utf-8");
    assert!(
        text.contains("freed: ") && text.contains("2 blobs"),
        "{text}"
    );
    for missing in ["/api/v2.0/system/gc/999", "/api/v2.0/system/gc/999/log"] {
        assert_harbor_error(&root.get(missing).send().await, 404, "NOT_FOUND");
    }
}
