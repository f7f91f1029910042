//! Tag immutability through both APIs: Harbor's `/projects/{p}/immutabletagrules`, and the
//! refusals — overwriting or deleting a protected tag, deleting an artifact that carries
//! one — while pushing a new protected tag is allowed.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{OCI_MANIFEST, TestApp};
use crate::mgmt::{app, as_user, assert_harbor_error, create_project, send_json};

fn rule(tags: &str, repositories: &str) -> Value {
    json!({
        "disabled": false,
        "action": "immutable",
        "template": "immutable_template",
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": tags}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": repositories}]},
    })
}

/// A project `team` with a rule protecting `v*` tags of every repository; the rule's id.
async fn protected(app: &TestApp) -> i64 {
    create_project(app, "root", "team", false).await;
    let created = send_json(
        &as_user(app, "root"),
        "POST",
        "/api/v2.0/projects/team/immutabletagrules",
        rule("{v*,release-?}", "**"),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created
        .location()
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("rule id")
}

#[tokio::test]
async fn rules_are_listed_changed_and_deleted_in_harbors_json() {
    let app = app().await;
    let id = protected(&app).await;
    let root = as_user(&app, "root");
    let listed = root
        .get("/api/v2.0/projects/team/immutabletagrules")
        .send()
        .await;
    assert_eq!(listed.header("x-total-count"), "1");
    let first = &listed.json()[0];
    assert_eq!(first["id"], id);
    assert_eq!(first["action"], "immutable");
    assert_eq!(first["template"], "immutable_template");
    assert_eq!(first["tag_selectors"][0]["pattern"], "{v*,release-?}");
    assert_eq!(
        first["scope_selectors"]["repository"][0]["decoration"],
        "repoMatches"
    );
    let mut disabled = rule("v*", "**");
    disabled["disabled"] = json!(true);
    let path = format!("/api/v2.0/projects/team/immutabletagrules/{id}");
    assert_eq!(
        send_json(&root, "PUT", &path, disabled).await.status,
        StatusCode::OK
    );
    let listed = root
        .get("/api/v2.0/projects/team/immutabletagrules")
        .send()
        .await
        .json();
    assert_eq!(listed[0]["disabled"], true);
    let bad = json!({"tag_selectors": [{"kind": "regexp", "decoration": "matches", "pattern": "v.*"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}});
    assert_harbor_error(
        &send_json(
            &root,
            "POST",
            "/api/v2.0/projects/team/immutabletagrules",
            bad,
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    assert_harbor_error(
        &send_json(
            &root,
            "PUT",
            "/api/v2.0/projects/team/immutabletagrules/999",
            rule("v*", "**"),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_eq!(root.delete(&path).send().await.status, StatusCode::OK);
    assert_harbor_error(&root.delete(&path).send().await, 404, "NOT_FOUND");
}

#[tokio::test]
async fn a_protected_tag_is_pushed_once_and_never_overwritten_or_deleted() {
    let app = app().await;
    let id = protected(&app).await;
    let root = as_user(&app, "root");
    let (first, _) = root.push_image("team/app", "v1", "first").await;
    // The same manifest again moves nothing: allowed.
    let again = root.image_manifest("team/app", "first").await;
    root.push_manifest("team/app", "v1", OCI_MANIFEST, again)
        .await;
    let other = root.image_manifest("team/app", "second").await;
    let refused = root
        .put_manifest("team/app", "v1", OCI_MANIFEST, other.clone())
        .await;
    refused.assert_error(403, "DENIED");
    assert!(
        refused.json()["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("tag v1 is immutable")),
        "{:?}",
        refused.body
    );
    let v1 = root.get("/v2/team/app/manifests/v1").send().await;
    assert_eq!(v1.header("docker-content-digest"), first);
    let tags = root
        .get(format!(
            "/api/v2.0/projects/team/repositories/app/artifacts/{first}/tags"
        ))
        .send()
        .await
        .json();
    assert_eq!(tags[0]["name"], "v1");
    assert_eq!(tags[0]["immutable"], true, "Harbor's Tag says so");
    // A tag no rule selects moves freely; a new protected one may be pushed.
    root.push_manifest("team/app", "latest", OCI_MANIFEST, other.clone())
        .await;
    root.push_manifest(
        "team/app",
        "latest",
        OCI_MANIFEST,
        root.image_manifest("team/app", "first").await,
    )
    .await;
    root.push_manifest("team/app", "release-2", OCI_MANIFEST, other)
        .await;
    // Deletes: the tag, the manifest by digest (/v2/), the tag and the artifact (Harbor's API).
    root.delete("/v2/team/app/manifests/v1")
        .send()
        .await
        .assert_error(403, "DENIED");
    root.delete(format!("/v2/team/app/manifests/{first}"))
        .send()
        .await
        .assert_error(403, "DENIED");
    let artifact = format!("/api/v2.0/projects/team/repositories/app/artifacts/{first}");
    assert_harbor_error(
        &root.delete(format!("{artifact}/tags/v1")).send().await,
        412,
        "PRECONDITION",
    );
    assert_harbor_error(&root.delete(&artifact).send().await, 412, "PRECONDITION");
    // Disabled, the rule protects nothing.
    let mut disabled = rule("v*", "**");
    disabled["disabled"] = json!(true);
    send_json(
        &root,
        "PUT",
        &format!("/api/v2.0/projects/team/immutabletagrules/{id}"),
        disabled,
    )
    .await;
    assert_eq!(
        root.delete("/v2/team/app/manifests/v1").send().await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn who_may_change_the_rules() {
    let app = app().await;
    protected(&app).await;
    let ids = app.identity();
    ids.set_member("team", "dev", berth_core::Role::Developer)
        .await
        .expect("member");
    ids.set_member("team", "maint", berth_core::Role::Maintainer)
        .await
        .expect("member");
    let path = "/api/v2.0/projects/team/immutabletagrules";
    assert_eq!(
        as_user(&app, "dev").get(path).send().await.status,
        StatusCode::OK
    );
    assert_harbor_error(
        &send_json(&as_user(&app, "dev"), "POST", path, rule("x*", "**")).await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        send_json(&as_user(&app, "maint"), "POST", path, rule("x*", "**"))
            .await
            .status,
        StatusCode::CREATED
    );
}
