//! Proxy-cache projects: a project bound to an upstream registry (another berth, served on
//! 127.0.0.1) answers pulls from its cache or from the upstream — once per blob however many
//! clients miss it together — keeps answering from the cache when the upstream is gone or
//! rate-limits, names the upstream's problem for what it has not cached, and refuses pushes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use berth_auth::identity::NewAccount;
use berth_meta::UpstreamStore as _;
use serde_json::{Value, json};

use crate::common::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, TestApp};

const PASSWORD: &str = "Passw0rd-proxy";

/// The upstream answers every request with a 429 (else it serves them).
const RATE_LIMITED: u8 = 1;

/// A registry on a socket, recording every request it is sent.
pub(crate) struct Upstream {
    pub(crate) app: TestApp,
    pub(crate) url: String,
    requests: Arc<Mutex<Vec<String>>>,
    mode: Arc<AtomicU8>,
    server: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Upstream {
        Upstream::start_with(TestApp::new().await).await
    }

    pub(crate) async fn start_with(app: TestApp) -> Upstream {
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let mode: Arc<AtomicU8> = Arc::default();
        let (seen, how) = (requests.clone(), mode.clone());
        let router = app.router().layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let (seen, how) = (seen.clone(), how.clone());
                async move {
                    let line = format!("{} {}", request.method(), request.uri().path());
                    seen.lock().expect("lock").push(line);
                    if how.load(Ordering::SeqCst) == RATE_LIMITED {
                        let body =
                            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
                        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], body)
                            .into_response();
                    }
                    next.run(request).await
                }
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service).await;
        });
        Upstream {
            app,
            url,
            requests,
            mode,
            server,
        }
    }

    /// How many requests were `METHOD path`.
    pub(crate) fn count(&self, line: &str) -> usize {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| *l == line)
            .count()
    }
}

/// A token-mode berth serving proxy-cache projects, and its administrator.
async fn proxy(tag_ttl: Duration) -> TestApp {
    let app = TestApp::builder().token_mode().proxy(tag_ttl).build().await;
    as_root(&app).await
}

/// A handle of `app` with the credentials of a new system administrator, root.
pub(crate) async fn as_root(app: &TestApp) -> TestApp {
    app.identity()
        .add_user(NewAccount {
            name: "root".into(),
            password: PASSWORD.into(),
            email: "root@example.com".into(),
            sysadmin: true,
            ..Default::default()
        })
        .await
        .expect("user");
    app.with_basic("root", PASSWORD)
}

pub(crate) async fn send_json(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Value,
) -> crate::common::TestResponse {
    app.request(method.parse().expect("method"), path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .send()
        .await
}

/// Register `upstream` and make project `cache` a proxy cache of it.
async fn bind(app: &TestApp, upstream: &Upstream) -> i64 {
    let created = send_json(
        app,
        "POST",
        "/api/v2.0/registries",
        json!({"name": "up", "type": "docker-registry", "url": upstream.url,
               "credential": {"type": "basic", "access_key": "puller", "access_secret": "s3cret-pw"}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id: i64 = created
        .location()
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("registry id in Location");
    let project = send_json(
        app,
        "POST",
        "/api/v2.0/projects",
        json!({"project_name": "cache", "registry_id": id, "metadata": {"public": "true"}}),
    )
    .await;
    assert_eq!(project.status, StatusCode::CREATED, "{:?}", project.body);
    let shown = app.get("/api/v2.0/projects/cache").send().await;
    assert_eq!(shown.json()["registry_id"], id);
    id
}

/// The blobs an image manifest names.
fn blobs_of(manifest: &[u8]) -> Vec<String> {
    let value: Value = serde_json::from_slice(manifest).expect("json");
    let mut digests = vec![
        value["config"]["digest"]
            .as_str()
            .expect("config")
            .to_owned(),
    ];
    for layer in value["layers"].as_array().expect("layers") {
        digests.push(layer["digest"].as_str().expect("layer").to_owned());
    }
    digests
}

/// Wait until the proxy has cached `reference` (the background fill finishes after the pull).
async fn cached(app: &TestApp, reference: &str) {
    for _ in 0..100 {
        let listed = app
            .get("/api/v2.0/projects/cache/repositories/lib%252Fapp/artifacts")
            .send()
            .await;
        if listed.status == StatusCode::OK
            && listed.json().as_array().is_some_and(|a| {
                a.iter().any(|artifact| {
                    artifact["digest"] == reference
                        || artifact["tags"]
                            .as_array()
                            .is_some_and(|tags| tags.iter().any(|t| t["name"] == reference))
                })
            })
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{reference} was never cached");
}

/// A `/metrics` scrape.
async fn scrape(app: &TestApp) -> String {
    String::from_utf8_lossy(&app.get("/metrics").send().await.body).into_owned()
}

#[tokio::test]
async fn a_pull_through_a_proxy_project_is_fetched_once_then_served_with_the_upstream_gone() {
    let upstream = Upstream::start().await;
    let (digest, manifest) = upstream.app.push_image("lib/app", "v1", "one").await;
    let app = proxy(Duration::from_secs(3600)).await;
    let id = bind(&app, &upstream).await;

    // The secret is sealed and never answered; the access key is.
    let shown = app.get(format!("/api/v2.0/registries/{id}")).send().await;
    assert_eq!(shown.json()["credential"]["access_key"], "puller");
    assert!(!String::from_utf8_lossy(&shown.body).contains("s3cret"));

    let pulled = app
        .get("/v2/cache/lib/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await;
    assert_eq!(pulled.status, StatusCode::OK, "{:?}", pulled.body);
    assert_eq!(pulled.body.as_ref(), manifest.as_slice());
    assert_eq!(pulled.header("docker-content-digest"), digest);
    // Pulled again while it is being cached: answered without asking the upstream again.
    let soon = app.get("/v2/cache/lib/app/manifests/v1").send().await;
    assert_eq!(soon.body.as_ref(), manifest.as_slice());
    for blob in blobs_of(&manifest) {
        let got = app
            .get(format!("/v2/cache/lib/app/blobs/{blob}"))
            .send()
            .await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.header("docker-content-digest"), blob);
    }
    cached(&app, "v1").await;
    assert_eq!(upstream.count("GET /v2/lib/app/manifests/v1"), 1);
    for blob in blobs_of(&manifest) {
        assert_eq!(
            upstream.count(&format!("GET /v2/lib/app/blobs/{blob}")),
            1,
            "{blob}"
        );
    }

    upstream.server.abort();
    let _ = upstream.server.await;
    // From here on only the proxy answers: its pulls go through the observe middleware and
    // are counted under their endpoint class like any pull.
    let before = scrape(&app).await;
    let again = app
        .get("/v2/cache/lib/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body.as_ref(), manifest.as_slice());
    let by_digest = app
        .get(format!("/v2/cache/lib/app/manifests/{digest}"))
        .send()
        .await;
    assert_eq!(by_digest.status, StatusCode::OK);
    for blob in blobs_of(&manifest) {
        let got = app
            .get(format!("/v2/cache/lib/app/blobs/{blob}"))
            .send()
            .await;
        assert_eq!(got.status, StatusCode::OK);
    }
    // What was never cached names the upstream's problem.
    let missing = app.get("/v2/cache/lib/app/manifests/v2").send().await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "MANIFEST_UNKNOWN");
    assert!(
        missing.json()["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&upstream.url))
    );
    let after = scrape(&app).await;
    let count = |text: &str, series: &str| {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    let blobs = blobs_of(&manifest).len() as f64;
    for (series, pulls) in [
        (
            r#"berth_http_requests_total{endpoint="manifest_get",status="200"}"#,
            2.0,
        ),
        (
            r#"berth_http_requests_total{endpoint="blob_get",status="200"}"#,
            blobs,
        ),
        (
            r#"berth_http_requests_total{endpoint="manifest_get",status="404"}"#,
            1.0,
        ),
    ] {
        assert_eq!(
            count(&after, series) - count(&before, series),
            pulls,
            "{series}:\n{after}"
        );
    }
}

#[tokio::test]
async fn an_upstream_answering_429_leaves_cached_tags_served_and_names_the_limit_for_the_rest() {
    let upstream = Upstream::start().await;
    let (_, manifest) = upstream.app.push_image("lib/app", "v1", "one").await;
    upstream.app.push_image("lib/app", "v2", "two").await;
    // Every pull by tag asks the upstream whether the tag moved.
    let app = proxy(Duration::ZERO).await;
    bind(&app, &upstream).await;
    let first = app.get("/v2/cache/lib/app/manifests/v1").send().await;
    assert_eq!(first.status, StatusCode::OK);
    cached(&app, "v1").await;

    upstream.mode.store(RATE_LIMITED, Ordering::SeqCst);
    let stale = app.get("/v2/cache/lib/app/manifests/v1").send().await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body.as_ref(), manifest.as_slice());
    let limited = app.get("/v2/cache/lib/app/manifests/v2").send().await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.error_code(), "TOOMANYREQUESTS");
    assert_eq!(limited.header("retry-after"), "7");
    assert!(
        limited.json()["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("slow down"))
    );
}

#[tokio::test]
async fn concurrent_cold_pulls_make_one_upstream_request_per_blob_and_manifest() {
    let upstream = Upstream::start().await;
    // A layer of several spool pieces, so the clients overlap with the fetch.
    let layer: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer_digest = upstream.app.push_blob("lib/app", &layer).await;
    let config_digest = upstream.app.push_blob("lib/app", config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len()}],
    }))
    .expect("json");
    upstream
        .app
        .push_manifest("lib/app", "v1", OCI_MANIFEST, manifest)
        .await;
    let app = proxy(Duration::from_secs(3600)).await;
    bind(&app, &upstream).await;

    let manifests = (0..20).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { app.get("/v2/cache/lib/app/manifests/v1").send().await })
    });
    for pull in manifests.collect::<Vec<_>>() {
        assert_eq!(pull.await.expect("task").status, StatusCode::OK);
    }
    let pulls = (0..20).map(|_| {
        let app = app.clone();
        let path = format!("/v2/cache/lib/app/blobs/{layer_digest}");
        tokio::spawn(async move { app.get(path).send().await })
    });
    for pull in pulls.collect::<Vec<_>>() {
        let got = pull.await.expect("task");
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body.len(), layer.len());
        assert!(got.body.as_ref() == layer.as_slice());
    }
    cached(&app, "v1").await;
    assert_eq!(upstream.count("GET /v2/lib/app/manifests/v1"), 1);
    assert_eq!(
        upstream.count(&format!("GET /v2/lib/app/blobs/{layer_digest}")),
        1
    );
    assert_eq!(
        upstream.count(&format!("GET /v2/lib/app/blobs/{config_digest}")),
        1
    );
}

#[tokio::test]
async fn pushes_into_a_proxy_project_are_refused_and_its_registry_cannot_go() {
    let upstream = Upstream::start().await;
    let app = proxy(Duration::from_secs(3600)).await;
    let id = bind(&app, &upstream).await;
    let push = app.post("/v2/cache/lib/app/blobs/uploads/").send().await;
    assert_eq!(push.status, StatusCode::FORBIDDEN);
    assert_eq!(push.error_code(), "DENIED");
    assert!(
        push.json()["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("proxy cache"))
    );
    let manifest = app
        .put("/v2/cache/lib/app/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body(b"{}".to_vec())
        .send()
        .await;
    assert_eq!(manifest.status, StatusCode::FORBIDDEN);

    let delete = app
        .delete(format!("/api/v2.0/registries/{id}"))
        .send()
        .await;
    assert_eq!(delete.status, StatusCode::PRECONDITION_FAILED);
    let listed = app.get("/api/v2.0/registries?q=name%3D~u").send().await;
    assert_eq!(listed.header("x-total-count"), "1");
    let ping = send_json(&app, "POST", "/api/v2.0/registries/ping", json!({"id": id})).await;
    assert_eq!(ping.status, StatusCode::OK, "{:?}", ping.body);
    let unreachable = send_json(
        &app,
        "POST",
        "/api/v2.0/registries/ping",
        json!({"type": "docker-registry", "url": "http://127.0.0.1:1"}),
    )
    .await;
    assert_eq!(unreachable.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_private_upstream_in_token_mode_is_pulled_with_a_token_from_its_realm() {
    // The upstream: a berth in token mode, its project private, so every pull needs a token
    // the proxy gets from the realm of the challenge with the stored credential.
    let upstream = Upstream::start_with(TestApp::builder().token_mode().build().await).await;
    upstream
        .app
        .identity()
        .add_user(NewAccount {
            name: "puller".into(),
            password: PASSWORD.into(),
            email: "puller@example.com".into(),
            sysadmin: true,
            ..Default::default()
        })
        .await
        .expect("user");
    let owner = upstream.app.with_basic("puller", PASSWORD);
    let project = send_json(
        &owner,
        "POST",
        "/api/v2.0/projects",
        json!({"project_name": "lib", "metadata": {"public": "false"}}),
    )
    .await;
    assert_eq!(project.status, StatusCode::CREATED);
    let (digest, manifest) = owner.push_image("lib/app", "v1", "private").await;

    let app = proxy(Duration::from_secs(3600)).await;
    let created = send_json(
        &app,
        "POST",
        "/api/v2.0/registries",
        json!({"name": "private", "type": "harbor", "url": upstream.url,
               "credential": {"type": "basic", "access_key": "puller", "access_secret": PASSWORD}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id: i64 = created
        .location()
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("id");
    let bound = send_json(
        &app,
        "POST",
        "/api/v2.0/projects",
        json!({"project_name": "cache", "registry_id": id}),
    )
    .await;
    assert_eq!(bound.status, StatusCode::CREATED);

    let pulled = app.get("/v2/cache/lib/app/manifests/v1").send().await;
    assert_eq!(pulled.status, StatusCode::OK, "{:?}", pulled.body);
    assert_eq!(pulled.header("docker-content-digest"), digest);
    for blob in blobs_of(&manifest) {
        let got = app
            .get(format!("/v2/cache/lib/app/blobs/{blob}"))
            .send()
            .await;
        assert_eq!(got.status, StatusCode::OK);
    }
    assert!(
        upstream.count("GET /service/token") >= 1,
        "a token was fetched"
    );

    // Without the credential the upstream refuses, and the client is told so.
    let anonymous = send_json(
        &app,
        "PUT",
        &format!("/api/v2.0/registries/{id}"),
        json!({"credential": {"access_key": ""}}),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::OK);
    let refused = app.get("/v2/cache/lib/app/manifests/other").send().await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert!(
        refused.json()["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused")),
        "{:?}",
        refused.body
    );
}

/// Transparent mirroring: with a default mirror project, `library/app` and `user/tool`
/// (names Docker sends a `registry-mirrors` target) are pulled through the proxy project
/// with no prefix — `library` is a project here too, but holds no `library/app` — while
/// this registry's own `team/own` is served as always; with containerd's `?ns=docker.io`
/// mapped to the project, the upstream's `team/own` is. An anonymous client's token for
/// `library/app` covers the mirror's repository.
#[tokio::test]
async fn a_default_mirror_serves_unprefixed_pulls_and_ns_routes_to_its_upstream() {
    let upstream = Upstream::start().await;
    let (library, _) = upstream.app.push_image("library/app", "v1", "lib").await;
    let (user, _) = upstream.app.push_image("user/tool", "v1", "user").await;
    let (remote_team, _) = upstream.app.push_image("team/own", "v1", "remote").await;
    let base = TestApp::builder()
        .token_mode()
        .proxy(Duration::from_secs(3600))
        .proxy_mirrors(berth_proxy::Mirrors {
            default: Some("cache".into()),
            by_namespace: vec![("docker.io".into(), "cache".into())],
        })
        .build()
        .await;
    let app = as_root(&base).await;
    bind(&app, &upstream).await;
    let created = send_json(
        &app,
        "POST",
        "/api/v2.0/projects",
        json!({"project_name": "team", "metadata": {"public": "false"}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let (own, _) = app.push_image("team/own", "v1", "local").await;

    for (path, digest) in [
        ("/v2/library/app/manifests/v1", &library),
        ("/v2/user/tool/manifests/v1", &user),
        ("/v2/team/own/manifests/v1", &own),
        ("/v2/team/own/manifests/v1?ns=docker.io", &remote_team),
        ("/v2/library/app/manifests/v1?ns=docker.io", &library),
        ("/v2/cache/library/app/manifests/v1", &library),
    ] {
        let got = app.get(path).header("accept", OCI_MANIFEST).send().await;
        assert_eq!(got.status, StatusCode::OK, "{path}: {:?}", got.body);
        assert_eq!(
            got.header("docker-content-digest"),
            digest.as_str(),
            "{path}"
        );
    }
    assert_ne!(own, remote_team);
    assert_eq!(
        upstream.count("GET /v2/team/own/manifests/v1"),
        1,
        "asked upstream only with ns"
    );
    // The layer of a mirrored image, by the name the client knows.
    let manifest: Value = serde_json::from_slice(
        &app.get("/v2/library/app/manifests/v1")
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .body,
    )
    .expect("manifest json");
    let layer = manifest["layers"][0]["digest"].as_str().expect("layer");
    let blob = app
        .get(format!("/v2/library/app/blobs/{layer}"))
        .send()
        .await;
    assert_eq!(blob.status, StatusCode::OK);
    // Pushes are never mirrored: into library (a project here) it is an ordinary push,
    // into user (none) it is refused as any push into a missing project.
    let push = app.post("/v2/library/app/blobs/uploads/").send().await;
    assert_eq!(push.status, StatusCode::ACCEPTED);
    let push = app.post("/v2/user/tool/blobs/uploads/").send().await;
    assert!(push.status.is_client_error(), "{:?}", push.status);
    assert!(
        !String::from_utf8_lossy(&push.body).contains("proxy cache"),
        "{:?}",
        push.body
    );

    // The mirror project is public: an anonymous pull needs no token; Docker, which asks
    // one anyway, gets one for library/app that reads the mirror's repository.
    let anonymous = base
        .get("/v2/library/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await;
    assert_eq!(anonymous.status, StatusCode::OK);
    let token = base
        .get("/service/token?service=berth&scope=repository:library/app:pull")
        .send()
        .await;
    assert_eq!(token.status, StatusCode::OK, "{:?}", token.body);
    let token = token.json()["token"].as_str().expect("token").to_owned();
    let claims: Value = {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).expect("a JWT");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("claims")
    };
    assert!(
        claims["access"].as_array().is_some_and(|a| a
            .iter()
            .any(|e| e["name"] == "cache/library/app" && e["actions"] == json!(["pull"]))),
        "the token covers the mirror's repository: {claims}"
    );
    let pulled = base
        .with_bearer(&token)
        .get("/v2/library/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await;
    assert_eq!(pulled.status, StatusCode::OK, "{:?}", pulled.body);
    // The same token reads nothing of the private team project.
    let private = base
        .with_bearer(&token)
        .get("/v2/team/own/manifests/v1")
        .send()
        .await;
    assert!(private.status.is_client_error());
}

/// What nodes hear from the upstream about a cached tag is shared through the database,
/// and the `proxy_revalidate` job asks ahead of the TTL about the tags pulled lately: a
/// second node serves a tag the first just checked without asking, a pull after the TTL
/// of the last pull's answer does not wait for the upstream when the job asked since, a tag
/// that moved upstream is fetched by the job, and a tag no longer cached is forgotten.
#[tokio::test]
async fn revalidation_is_shared_by_nodes_and_run_ahead_of_pulls_by_the_job() {
    const TTL: Duration = Duration::from_secs(2);
    // Everything checked more than a second ago is due (the run's horizon is TTL/2).
    const LEAD: Duration = TTL;
    let upstream = Upstream::start().await;
    let (first_digest, first) = upstream.app.push_image("lib/app", "v1", "one").await;
    let node_a = proxy(TTL).await;
    bind(&node_a, &upstream).await;
    let node_b = TestApp::builder()
        .token_mode()
        .proxy(TTL)
        .dir(node_a.shared_dir())
        .build()
        .await
        .with_basic("root", PASSWORD);
    let revalidate = |app: &TestApp| {
        let proxy = app.proxy_cache().clone();
        async move {
            proxy
                .revalidate_pulled(
                    Duration::from_secs(3600),
                    LEAD,
                    100,
                    Duration::from_secs(10),
                )
                .await
                .expect("revalidation run")
        }
    };
    let pull = |app: &TestApp| {
        let app = app.clone();
        async move {
            let got = app
                .get("/v2/cache/lib/app/manifests/v1")
                .header("accept", OCI_MANIFEST)
                .send()
                .await;
            assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
            got.body.to_vec()
        }
    };
    let heads = || upstream.count("HEAD /v2/lib/app/manifests/v1");
    let gets = || upstream.count("GET /v2/lib/app/manifests/v1");

    assert_eq!(pull(&node_a).await, first);
    cached(&node_a, "v1").await;
    // Node A's answer is recorded in the background: wait for it.
    for _ in 0..50 {
        if node_a
            .meta()
            .proxy_tag_check("cache/lib/app", "v1")
            .await
            .expect("read")
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        pull(&node_b).await,
        first,
        "served by node B from the cache"
    );
    assert_eq!((gets(), heads()), (1, 0), "node B asked nothing");

    // Past the horizon, the job asks (a HEAD) and finds the tag unchanged.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let report = revalidate(&node_a).await;
    assert_eq!((report.checked, report.unchanged), (1, 1), "{report:?}");
    assert_eq!((gets(), heads()), (1, 1));
    // Past the TTL of node B's only knowledge (node A's first answer): the job's answer is
    // fresh, so node B still asks nothing.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(pull(&node_b).await, first);
    assert_eq!((gets(), heads()), (1, 1), "node B used the job's answer");

    // The tag moves upstream: the next run fetches it, and pulls get it without asking.
    let (moved_digest, moved) = upstream.app.push_image("lib/app", "v1", "two").await;
    assert_ne!(moved_digest, first_digest);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let report = revalidate(&node_a).await;
    assert_eq!((report.checked, report.moved), (1, 1), "{report:?}");
    assert_eq!((gets(), heads()), (2, 2));
    cached(&node_a, &moved_digest).await;
    assert_eq!(pull(&node_a).await, moved);
    assert_eq!((gets(), heads()), (2, 2), "the pull asked nothing");

    // A run finds nothing due before the horizon.
    let report = revalidate(&node_a).await;
    assert_eq!(report.checked, 0, "{report:?}");

    // The repository deleted here: its tag's record goes at the next run.
    let deleted = node_a
        .delete("/api/v2.0/projects/cache/repositories/lib%252Fapp")
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.body);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let report = revalidate(&node_a).await;
    assert_eq!((report.checked, report.forgotten), (0, 1), "{report:?}");
    assert_eq!((gets(), heads()), (2, 2));
    assert_eq!(
        node_a
            .meta()
            .proxy_tag_check("cache/lib/app", "v1")
            .await
            .expect("read"),
        None
    );
}
