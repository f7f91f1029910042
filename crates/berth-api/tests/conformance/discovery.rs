//! Content discovery: tag listing and the catalog, with `n`/`last` pagination and `Link`.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{OCI_MANIFEST, TestApp};

/// One image in `repo` tagged with each of `tags`.
async fn tagged(app: &TestApp, repo: &str, tags: &[&str]) {
    let manifest = app.image_manifest(repo, "a").await;
    for tag in tags {
        app.push_manifest(repo, tag, OCI_MANIFEST, manifest.clone())
            .await;
    }
}

#[tokio::test]
async fn tags_are_listed_sorted() {
    let app = TestApp::new().await;
    tagged(&app, "repo", &["c", "a", "b"]).await;
    let response = app.get("/v2/repo/tags/list").send().await;
    assert_eq!(
        (response.status, response.json()),
        (
            StatusCode::OK,
            json!({ "name": "repo", "tags": ["a", "b", "c"] })
        )
    );
}

#[tokio::test]
async fn tag_list_is_json() {
    let app = TestApp::new().await;
    tagged(&app, "repo", &["a"]).await;
    let response = app.get("/v2/repo/tags/list").send().await;
    assert_eq!(response.header("content-type"), "application/json");
}

#[tokio::test]
async fn tag_list_without_more_pages_has_no_link() {
    let app = TestApp::new().await;
    tagged(&app, "repo", &["a", "b"]).await;
    let response = app.get("/v2/repo/tags/list?n=2").send().await;
    assert_eq!(response.maybe_header("link"), None);
}

#[tokio::test]
async fn tag_list_n_limits_the_page_and_links_the_next() {
    let app = TestApp::new().await;
    tagged(&app, "repo", &["a", "b", "c", "d"]).await;
    let response = app.get("/v2/repo/tags/list?n=2").send().await;
    assert_eq!(
        (response.json()["tags"].clone(), response.header("link")),
        (
            json!(["a", "b"]),
            r#"</v2/repo/tags/list?n=2&last=b>; rel="next""#
        )
    );
}

#[tokio::test]
async fn tag_list_last_continues_after_that_tag() {
    let app = TestApp::new().await;
    tagged(&app, "repo", &["a", "b", "c", "d"]).await;
    let response = app.get("/v2/repo/tags/list?n=2&last=b").send().await;
    assert_eq!(response.json()["tags"], json!(["c", "d"]));
}

#[tokio::test]
async fn tag_list_last_without_n_returns_the_rest() {
    let app = TestApp::new().await;
    tagged(&app, "repo", &["a", "b", "c"]).await;
    let response = app.get("/v2/repo/tags/list?last=a").send().await;
    assert_eq!(response.json()["tags"], json!(["b", "c"]));
}

#[tokio::test]
async fn following_tag_list_links_visits_every_tag_once() {
    let app = TestApp::new().await;
    tagged(&app, "repo", &["e", "d", "c", "b", "a"]).await;
    let mut url = "/v2/repo/tags/list?n=2".to_owned();
    let mut seen = Vec::new();
    loop {
        let response = app.get(&url).send().await;
        for tag in response.json()["tags"].as_array().expect("tags") {
            seen.push(tag.as_str().expect("tag").to_owned());
        }
        match response.maybe_header("link") {
            Some(link) => {
                url = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .expect("link target")
                    .to_owned();
            }
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
}

#[tokio::test]
async fn tag_list_n_zero_is_an_empty_list() {
    let app = TestApp::new().await;
    tagged(&app, "repo", &["a", "b"]).await;
    let response = app.get("/v2/repo/tags/list?n=0").send().await;
    assert_eq!(
        (response.status, response.json()["tags"].clone()),
        (StatusCode::OK, json!([]))
    );
}

#[tokio::test]
async fn tag_list_of_unknown_repository_is_404_name_unknown() {
    let app = TestApp::new().await;
    app.get("/v2/nobody/tags/list")
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn tag_list_with_invalid_n_is_400() {
    let app = TestApp::new().await;
    tagged(&app, "repo", &["a"]).await;
    let response = app.get("/v2/repo/tags/list?n=many").send().await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn catalog_lists_repositories_sorted() {
    let app = TestApp::new().await;
    for repo in ["zeta", "alpha", "mid/dle"] {
        app.push_blob(repo, b"x").await;
    }
    let response = app.get("/v2/_catalog").send().await;
    assert_eq!(
        (response.status, response.json()),
        (
            StatusCode::OK,
            json!({ "repositories": ["alpha", "mid/dle", "zeta"] })
        )
    );
}

#[tokio::test]
async fn catalog_n_limits_the_page_and_links_the_next() {
    let app = TestApp::new().await;
    for repo in ["a", "b", "c"] {
        app.push_blob(repo, b"x").await;
    }
    let response = app.get("/v2/_catalog?n=2").send().await;
    assert_eq!(
        (
            response.json()["repositories"].clone(),
            response.header("link")
        ),
        (
            json!(["a", "b"]),
            r#"</v2/_catalog?n=2&last=b>; rel="next""#
        )
    );
}

#[tokio::test]
async fn catalog_last_continues_after_that_repository() {
    let app = TestApp::new().await;
    for repo in ["a", "b", "c"] {
        app.push_blob(repo, b"x").await;
    }
    let response = app.get("/v2/_catalog?n=2&last=b").send().await;
    assert_eq!(
        (
            response.json()["repositories"].clone(),
            response.maybe_header("link")
        ),
        (json!(["c"]), None)
    );
}

#[tokio::test]
async fn catalog_link_encodes_multi_component_names() {
    let app = TestApp::new().await;
    for repo in ["a/x", "b/y"] {
        app.push_blob(repo, b"x").await;
    }
    let response = app.get("/v2/_catalog?n=1").send().await;
    let link = response.header("link").to_owned();
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .expect("target");
    let page = app.get(next).send().await.json();
    assert_eq!(page["repositories"], json!(["b/y"]));
}

#[tokio::test]
async fn catalog_of_an_empty_registry_is_an_empty_list() {
    let app = TestApp::new().await;
    let response = app.get("/v2/_catalog").send().await;
    assert_eq!(response.json(), json!({ "repositories": [] }));
}

#[tokio::test]
async fn catalog_n_zero_is_an_empty_list() {
    let app = TestApp::new().await;
    app.push_blob("repo", b"x").await;
    let response = app.get("/v2/_catalog?n=0").send().await;
    assert_eq!(
        (response.status, response.json()["repositories"].clone()),
        (StatusCode::OK, json!([]))
    );
}

/// The tag list a client sees follows every push and delete, even straight after it was
/// read (the listing is cached).
#[tokio::test]
async fn tag_list_follows_pushes_and_deletes() {
    let app = TestApp::new().await;
    tagged(&app, "repo", &["a"]).await;
    let tags = |app: &TestApp| {
        let app = app.clone();
        async move { app.get("/v2/repo/tags/list").send().await.json()["tags"].clone() }
    };
    assert_eq!(tags(&app).await, json!(["a"]));
    tagged(&app, "repo", &["b"]).await;
    assert_eq!(tags(&app).await, json!(["a", "b"]));
    let deleted = app.delete("/v2/repo/manifests/a").send().await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    assert_eq!(tags(&app).await, json!(["b"]));
}

/// The catalog a client sees follows every repository made or deleted, even straight after
/// it was read (its pages are cached): a blob pushed, a blob mounted, a repository deleted.
#[tokio::test]
async fn catalog_follows_new_and_deleted_repositories() {
    let app = TestApp::new().await;
    let digest = app.push_blob("a", b"x").await;
    let catalog = |app: &TestApp| {
        let app = app.clone();
        async move {
            let page = app.get("/v2/_catalog?n=10").send().await.json()["repositories"].clone();
            let whole = app.get("/v2/_catalog").send().await.json()["repositories"].clone();
            assert_eq!(page, whole, "two page sizes agree");
            page
        }
    };
    assert_eq!(catalog(&app).await, json!(["a"]));
    app.push_blob("b", b"y").await;
    assert_eq!(catalog(&app).await, json!(["a", "b"]));
    let mounted = app
        .post(format!("/v2/c/blobs/uploads/?mount={digest}&from=a"))
        .send()
        .await;
    assert_eq!(mounted.status, StatusCode::CREATED);
    assert_eq!(catalog(&app).await, json!(["a", "b", "c"]));
    app.registry()
        .delete_repository(&"b".parse().expect("name"))
        .await
        .expect("delete");
    assert_eq!(catalog(&app).await, json!(["a", "c"]));
}
