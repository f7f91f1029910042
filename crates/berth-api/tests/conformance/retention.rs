//! Retention runs over what real pushes left: a dry run lists exactly what the real run then
//! removes, immutable tags are never removed, and what is removed is gone from `/v2/`.

use axum::http::StatusCode;
use berth_core::immutable::Selector;
use berth_core::retention::{RetentionRule, Template};
use serde_json::{Value, json};

use crate::common::OCI_MANIFEST;
use crate::mgmt::{app, as_user, create_project, send_json};

fn selector(decoration: &str, pattern: &str) -> Selector {
    Selector {
        kind: "doublestar".into(),
        decoration: decoration.into(),
        pattern: pattern.into(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[tokio::test]
async fn a_dry_run_lists_what_the_run_removes_and_immutable_tags_stay() {
    let app = app().await;
    create_project(&app, "root", "team", false).await;
    let root = as_user(&app, "root");
    // v1 is immutable; v1..v4 pushed a second apart (push times are in seconds); one
    // untagged manifest; a repository no rule selects.
    let rule = json!({"tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v1"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}});
    let created = send_json(
        &root,
        "POST",
        "/api/v2.0/projects/team/immutabletagrules",
        rule,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let mut digests = Vec::new();
    for version in 1..=4 {
        let (digest, _) = root
            .push_image(
                "team/app",
                &format!("v{version}"),
                &format!("seed-{version}"),
            )
            .await;
        digests.push(digest);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let untagged = root.image_manifest("team/app", "untagged").await;
    let untagged = root
        .push_manifest(
            "team/app",
            &crate::common::sha256(&untagged),
            OCI_MANIFEST,
            untagged,
        )
        .await;
    root.push_image("team/kept", "v1", "elsewhere").await;

    let keep_two = RetentionRule {
        disabled: false,
        template: Template::LatestPushed(2),
        tag_selectors: vec![selector("matches", "**")],
        untagged: false,
        repository_selectors: vec![selector("repoMatches", "app")],
    };
    let registry = app.registry();
    let dry = registry
        .run_retention("team", std::slice::from_ref(&keep_two), now(), true)
        .await
        .expect("dry run");
    let mut planned: Vec<String> = dry.removed.iter().map(|r| r.digest.to_string()).collect();
    planned.sort();
    // v4 and v3 are the latest two, v1 is immutable: v2 and the untagged one go.
    let mut expected = vec![digests[1].clone(), untagged.clone()];
    expected.sort();
    assert_eq!(planned, expected);
    assert_eq!(dry.considered, 6);
    let ran = registry
        .run_retention("team", &[keep_two], now(), false)
        .await
        .expect("run");
    assert_eq!(
        ran.removed, dry.removed,
        "the real run removes what the dry run listed"
    );
    assert!(ran.skipped.is_empty());
    for digest in &expected {
        root.get(format!("/v2/team/app/manifests/{digest}"))
            .send()
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
    for tag in ["v1", "v3", "v4"] {
        assert_eq!(
            root.get(format!("/v2/team/app/manifests/{tag}"))
                .send()
                .await
                .status,
            StatusCode::OK,
            "{tag} stays"
        );
    }
    assert_eq!(
        root.get("/v2/team/kept/manifests/v1").send().await.status,
        StatusCode::OK
    );
}

/// The same through Harbor's `/retentions`: a policy, a dry execution, a real one; both
/// recorded, the dry one listing what the real one removed.
#[tokio::test]
async fn retention_through_harbors_api_records_each_run() {
    let app = app().await;
    let project = create_project(&app, "root", "team", false).await;
    let root = as_user(&app, "root");
    let (release, _) = root.push_image("team/app", "v1", "release").await;
    let (dev, _) = root.push_image("team/app", "dev-1", "dev").await;
    let frozen = json!({"tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "keep-*"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}});
    send_json(
        &root,
        "POST",
        "/api/v2.0/projects/team/immutabletagrules",
        frozen,
    )
    .await;
    let (kept, _) = root.push_image("team/app", "keep-me", "frozen").await;
    let policy = json!({
        "algorithm": "or",
        "rules": [{"disabled": false, "action": "retain", "template": "always", "params": {},
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v*", "extras": "{\"untagged\":false}"}],
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}}],
        "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
        "scope": {"level": "project", "ref": project},
    });
    let created = send_json(&root, "POST", "/api/v2.0/retentions", policy.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let path = created.location();
    let again = send_json(&root, "POST", "/api/v2.0/retentions", policy).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "one policy per project");
    let shown = root.get(&path).send().await.json();
    assert_eq!(shown["rules"][0]["template"], "always");
    assert_eq!(shown["scope"]["ref"], project);

    let dry = send_json(
        &root,
        "POST",
        &format!("{path}/executions"),
        json!({"dry_run": true}),
    )
    .await;
    assert_eq!(dry.status, StatusCode::CREATED, "{:?}", dry.body);
    assert_eq!(
        root.get(format!("/v2/team/app/manifests/{dev}"))
            .send()
            .await
            .status,
        StatusCode::OK,
        "a dry run removes nothing"
    );
    let real = send_json(
        &root,
        "POST",
        &format!("{path}/executions"),
        json!({"dry_run": false}),
    )
    .await;
    assert_eq!(real.status, StatusCode::CREATED);
    let runs = root.get(format!("{path}/executions")).send().await;
    assert_eq!(runs.header("x-total-count"), "2");
    let runs = runs.json();
    assert_eq!(
        (runs[0]["dry_run"].as_bool(), runs[1]["dry_run"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(runs[0]["status"], "Succeed");
    assert_eq!(
        runs[0]["removed"], runs[1]["removed"],
        "the dry run listed what the run removed"
    );
    assert_eq!(runs[0]["removed"][0]["digest"], dev.as_str());
    assert_eq!(runs[0]["removed"].as_array().map(Vec::len), Some(1));
    for (digest, status) in [(&release, 200), (&kept, 200)] {
        assert_eq!(
            root.get(format!("/v2/team/app/manifests/{digest}"))
                .send()
                .await
                .status
                .as_u16(),
            status
        );
    }
    root.get(format!("/v2/team/app/manifests/{dev}"))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    app.flush_audit().await;
    let logs = root
        .get("/api/v2.0/audit-logs?page_size=100")
        .send()
        .await
        .json();
    let runs_logged = logs
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["resource_type"] == "retention" && e["operation"] == "create")
                .filter(|e| {
                    e["resource"]
                        .as_str()
                        .is_some_and(|r| r.contains("/execution/"))
                })
                // Identical events of a batch are folded into one entry with a count.
                .map(|e| e["count"].as_u64().unwrap_or(1))
                .sum::<u64>()
        })
        .unwrap_or_default();
    assert_eq!(runs_logged, 2, "each run is in the audit log: {logs}");
    // What the real run removed is in it too, as deleted by who ran it; the dry run's not.
    let deleted: Vec<&Value> = logs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["operation"] == "delete" && e["resource_type"] == "artifact")
        .collect();
    assert_eq!(deleted.len(), 1, "{logs}");
    assert_eq!(deleted[0]["resource"], format!("team/app@{dev}"));
    assert_eq!(deleted[0]["username"], "root");
    assert_eq!(root.delete(&path).send().await.status, StatusCode::OK);
    assert_eq!(root.get(&path).send().await.status, StatusCode::NOT_FOUND);
}

/// Retention is a project's business, as in Harbor (`tag-retention`): its maintainers and
/// administrators create, change, run and delete its policy; every member reads it and its
/// runs; a maintainer of another project can do nothing with it, and cannot tell it exists.
#[tokio::test]
async fn a_projects_maintainers_manage_its_retention_and_nobody_else() {
    let app = app().await;
    let team = create_project(&app, "root", "team", false).await;
    let elsewhere = create_project(&app, "root", "elsewhere", false).await;
    let root = as_user(&app, "root");
    // role ids: 1 project admin, 2 developer, 3 guest, 4 maintainer.
    for (project, user, role) in [
        (team, "maint", 4),
        (team, "dev", 2),
        (team, "guest", 3),
        (elsewhere, "other", 4),
    ] {
        let added = send_json(
            &root,
            "POST",
            &format!("/api/v2.0/projects/{project}/members"),
            json!({"role_id": role, "member_user": {"username": user}}),
        )
        .await;
        assert_eq!(added.status, StatusCode::CREATED, "{user}");
    }
    root.push_image("team/app", "v1", "one").await;
    let policy = |project: i64| {
        json!({
            "algorithm": "or",
            "rules": [{"disabled": false, "action": "retain", "template": "always", "params": {},
                "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
                "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}}],
            "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
            "scope": {"level": "project", "ref": project},
        })
    };
    let (maint, dev, guest, other) = (
        as_user(&app, "maint"),
        as_user(&app, "dev"),
        as_user(&app, "guest"),
        as_user(&app, "other"),
    );
    for refused in [&dev, &guest, &other] {
        let created = send_json(refused, "POST", "/api/v2.0/retentions", policy(team)).await;
        assert_eq!(created.status, StatusCode::FORBIDDEN, "{:?}", created.body);
    }
    let created = send_json(&maint, "POST", "/api/v2.0/retentions", policy(team)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let path = created.location();

    for reader in [&maint, &dev, &guest] {
        assert_eq!(reader.get(&path).send().await.status, StatusCode::OK);
    }
    assert_eq!(other.get(&path).send().await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        other.get("/api/v2.0/retentions/999999").send().await.status,
        StatusCode::FORBIDDEN,
        "a missing policy looks like one it may not see"
    );
    assert_eq!(
        root.get("/api/v2.0/retentions/999999").send().await.status,
        StatusCode::NOT_FOUND
    );
    let run = |who: &crate::common::TestApp| {
        let (who, path) = (who.clone(), path.clone());
        async move {
            send_json(
                &who,
                "POST",
                &format!("{path}/executions"),
                json!({"dry_run": true}),
            )
            .await
            .status
        }
    };
    assert_eq!(run(&dev).await, StatusCode::FORBIDDEN);
    assert_eq!(run(&other).await, StatusCode::FORBIDDEN);
    assert_eq!(run(&maint).await, StatusCode::CREATED);
    let runs = guest.get(format!("{path}/executions")).send().await;
    assert_eq!(runs.status, StatusCode::OK);
    assert_eq!(runs.header("x-total-count"), "1");
    assert_eq!(
        send_json(&other, "PUT", &path, policy(elsewhere))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send_json(&maint, "PUT", &path, policy(team)).await.status,
        StatusCode::OK
    );
    // What a member may do is listed as Harbor lists it.
    let permissions = maint
        .get(format!(
            "/api/v2.0/users/current/permissions?scope=/project/{team}&relative=true"
        ))
        .send()
        .await
        .json();
    assert!(
        permissions
            .as_array()
            .is_some_and(|p| p.contains(&json!({"resource": "tag-retention", "action": "update"}))),
        "{permissions}"
    );
    assert_eq!(dev.delete(&path).send().await.status, StatusCode::FORBIDDEN);
    assert_eq!(maint.delete(&path).send().await.status, StatusCode::OK);
}
