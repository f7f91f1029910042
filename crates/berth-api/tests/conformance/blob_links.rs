//! Cross-repository links: a pusher's `HEAD` of a blob its repository does not hold, but
//! another one does, answers 200 and links it (the client then skips the upload) — only
//! when the caller may push to the repository and may pull one that holds the blob. Any other
//! caller gets the same 404 as for a blob that exists nowhere, and nothing is linked.

use axum::http::StatusCode;
use berth_auth::identity::NewAccount;
use berth_core::{RepositoryName, Role};

use crate::common::{TestApp, sha256};

const PASSWORD: &str = "Passw0rd-links";

async fn user(app: &TestApp, name: &str) -> TestApp {
    app.identity()
        .add_user(NewAccount {
            name: name.into(),
            password: PASSWORD.into(),
            email: format!("{name}@example.com"),
            ..Default::default()
        })
        .await
        .expect("user");
    app.with_basic(name, PASSWORD)
}

/// A token-mode registry: `alice` develops in `team` (push and pull), `guest` may only pull
/// there; `root` keeps a blob in `team/base` and another in `secret/app`, which neither may
/// read.
async fn world(links: bool) -> (TestApp, TestApp, TestApp, String, String) {
    let app = TestApp::builder()
        .token_mode()
        .cross_repository_links(links)
        .build()
        .await;
    let id = app.identity();
    id.add_user(NewAccount {
        name: "root".into(),
        password: PASSWORD.into(),
        email: "root@example.com".into(),
        sysadmin: true,
        ..Default::default()
    })
    .await
    .expect("root");
    let root = app.with_basic("root", PASSWORD);
    for project in ["team", "secret"] {
        id.create_project(project, false, None)
            .await
            .expect("project");
    }
    let alice = user(&app, "alice").await;
    let guest = user(&app, "guest").await;
    id.set_member("team", "alice", Role::Developer)
        .await
        .expect("member");
    id.set_member("team", "guest", Role::Guest)
        .await
        .expect("member");
    let shared = root
        .push_blob("team/base", b"a base layer both may read")
        .await;
    let hidden = root
        .push_blob("secret/app", b"a layer only root may read")
        .await;
    (root, alice, guest, shared, hidden)
}

async fn head(app: &TestApp, repo: &str, digest: &str) -> StatusCode {
    app.head(format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .status
}

async fn holds(app: &TestApp, repo: &str, digest: &str) -> bool {
    let name: RepositoryName = repo.parse().expect("name");
    let digest = digest.parse().expect("digest");
    app.registry().blob_size(&name, &digest).await.is_ok()
}

fn links_counted(app: &TestApp) -> u64 {
    let _ = app;
    berth_metrics::STORAGE.blob_links.get()
}

#[tokio::test]
async fn a_pusher_who_may_read_the_blob_elsewhere_gets_it_linked() {
    let (root, alice, _, shared, _) = world(true).await;
    let before = links_counted(&root);
    assert_eq!(head(&alice, "team/app", &shared).await, StatusCode::OK);
    assert!(
        holds(&root, "team/app", &shared).await,
        "linked into team/app"
    );
    assert!(
        links_counted(&root) > before,
        "berth_blob_links_total counts it"
    );
    // Pulled like any blob of the repository.
    let pulled = alice
        .get(format!("/v2/team/app/blobs/{shared}"))
        .send()
        .await;
    assert_eq!(&pulled.body[..], b"a base layer both may read");
    root.flush_audit().await;
    let linked = format!("team/app@{shared}");
    assert!(
        root.audit_lines().iter().any(|l| l["username"] == "alice"
            && l["operation"] == "create"
            && l["resource_type"] == "blob"
            && l["resource"] == linked.as_str()),
        "the link is in the audit log"
    );
}

#[tokio::test]
async fn without_pull_access_to_a_holder_or_push_access_here_nothing_is_linked() {
    let (root, alice, guest, shared, hidden) = world(true).await;
    // alice may push to team/app but cannot read secret/app: the same 404 as for nothing.
    assert_eq!(
        head(&alice, "team/app", &hidden).await,
        StatusCode::NOT_FOUND
    );
    let nowhere = sha256(b"exists nowhere");
    assert_eq!(
        head(&alice, "team/app", &nowhere).await,
        StatusCode::NOT_FOUND
    );
    assert!(!holds(&root, "team/app", &hidden).await);
    // guest may read team/base but not push to team/app.
    assert_eq!(
        head(&guest, "team/app", &shared).await,
        StatusCode::NOT_FOUND
    );
    assert!(!holds(&root, "team/app", &shared).await);
    // Anonymous: a challenge, never a link.
    let anonymous = root.without_credentials();
    assert_eq!(
        head(&anonymous, "team/app", &shared).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(!holds(&root, "team/app", &shared).await);
}

#[tokio::test]
async fn switched_off_a_head_links_nothing() {
    let (root, alice, _, shared, _) = world(false).await;
    assert_eq!(
        head(&alice, "team/app", &shared).await,
        StatusCode::NOT_FOUND
    );
    assert!(!holds(&root, "team/app", &shared).await);
}

async fn mount(app: &TestApp, repo: &str, digest: &str) -> StatusCode {
    app.post(format!("/v2/{repo}/blobs/uploads/?mount={digest}"))
        .send()
        .await
        .status
}

#[tokio::test]
async fn a_mount_without_from_is_the_same_link_with_the_same_checks() {
    let (root, alice, _, shared, hidden) = world(true).await;
    // Not readable elsewhere: an ordinary upload session, as if the blob existed nowhere.
    assert_eq!(
        mount(&alice, "team/app", &hidden).await,
        StatusCode::ACCEPTED
    );
    assert!(!holds(&root, "team/app", &hidden).await);
    let before = links_counted(&root);
    assert_eq!(
        mount(&alice, "team/app", &shared).await,
        StatusCode::CREATED
    );
    assert!(holds(&root, "team/app", &shared).await);
    assert!(links_counted(&root) > before, "counted as a link");
    root.flush_audit().await;
    let linked = format!("team/app@{shared}");
    assert!(
        root.audit_lines().iter().any(|l| l["username"] == "alice"
            && l["resource_type"] == "blob"
            && l["resource"] == linked.as_str()),
        "the link is in the audit log"
    );
}

#[tokio::test]
async fn switched_off_a_mount_without_from_starts_an_upload() {
    let (root, alice, _, shared, _) = world(false).await;
    assert_eq!(
        mount(&alice, "team/app", &shared).await,
        StatusCode::ACCEPTED
    );
    assert!(!holds(&root, "team/app", &shared).await);
    // A mount that names `from` is the client's own choice and still works.
    let named = alice
        .post(format!(
            "/v2/team/app/blobs/uploads/?mount={shared}&from=team/base"
        ))
        .send()
        .await;
    assert_eq!(named.status, StatusCode::CREATED);
}
