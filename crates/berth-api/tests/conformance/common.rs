//! The test harness: a [`TestApp`] builder over a temporary directory, a request builder
//! that drives the router in-process, and helpers to push blobs and manifests.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use berth_api::AppState;
use berth_audit::{Audit, AuditSettings, JsonLines};
use berth_auth::{AuthMode, Authorizer, IdentityService, TokenAuth, TokenSettings};
use berth_core::{Algorithm, Digest};
use berth_meta::{IdentityStore, SqliteStore};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::{BlobStore, FsBlobStore};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A registry on a temporary directory, served in-process.
#[derive(Clone)]
pub struct TestApp {
    dir: Arc<TempDir>,
    meta: Arc<SqliteStore>,
    /// The services the router calls (for what no HTTP endpoint drives yet).
    registry: Arc<Registry>,
    router: Router,
    /// Headers every request from this handle carries (e.g. `Authorization`).
    default_headers: Vec<(String, String)>,
    /// The client address requests appear to come from; none means in-process (loopback).
    peer: Option<SocketAddr>,
    /// Token mode's state, when the app runs it.
    token_auth: Option<Arc<TokenAuth>>,
    /// The audit log (on unless the builder said otherwise), with JSON lines in the
    /// directory's `audit.jsonl`.
    audit: Audit,
    /// Replication (with proxy-cache projects, whose registry endpoints it uses); its
    /// executions are queued in the jobs table, which tests run by hand.
    replicator: Option<Arc<berth_replication::Replicator>>,
    /// The proxy cache (an app built with `.proxy()`), for the jobs tests run by hand.
    proxy: Option<Arc<berth_proxy::ProxyCache>>,
}

/// How to build a [`TestApp`]: deletes on by default, a fresh directory unless reused.
pub struct TestAppBuilder {
    token_mode: bool,
    token_settings: Option<TokenSettings>,
    delete_enabled: bool,
    sparse_index: bool,
    dir: Option<Arc<TempDir>>,
    auth: Option<AuthMode>,
    audit: bool,
    blobs: Option<Arc<dyn BlobStore>>,
    /// Proxy-cache projects with this tag TTL.
    proxy_tag_ttl: Option<std::time::Duration>,
    proxy_mirrors: berth_proxy::Mirrors,
    /// `/readyz` probes the data directory with this minimum of free bytes.
    probe_data_dir: Option<u64>,
    cross_repository_links: bool,
    /// How long a metadata statement waits for a lock held elsewhere (`SqliteStore::open`'s
    /// 10 s unless set).
    busy_timeout: Option<std::time::Duration>,
}

impl TestAppBuilder {
    /// Metadata statements give up after waiting this long for a lock held elsewhere.
    pub fn busy_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.busy_timeout = Some(timeout);
        self
    }

    pub fn delete_enabled(mut self, enabled: bool) -> Self {
        self.delete_enabled = enabled;
        self
    }

    /// Accept image indexes whose children are not all present.
    pub fn sparse_index(mut self, enabled: bool) -> Self {
        self.sparse_index = enabled;
        self
    }

    /// Token mode: berth's own accounts, projects and roles, Docker token auth.
    pub fn token_mode(mut self) -> Self {
        self.token_mode = true;
        self
    }

    /// Token mode with these settings.
    pub fn token_settings(mut self, settings: TokenSettings) -> Self {
        self.token_mode = true;
        self.token_settings = Some(settings);
        self
    }

    /// Authenticate and authorize with this mode instead of open mode without anonymous writes.
    pub fn auth(mut self, mode: AuthMode) -> Self {
        self.auth = Some(mode);
        self
    }

    /// Run without the audit log (`[audit] enabled = false`).
    pub fn audit(mut self, enabled: bool) -> Self {
        self.audit = enabled;
        self
    }

    /// Keep blob bytes in this store instead of the filesystem in the app's directory.
    pub fn blobs(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Serve proxy-cache projects, revalidating tags after `tag_ttl`.
    pub fn proxy(mut self, tag_ttl: std::time::Duration) -> Self {
        self.proxy_tag_ttl = Some(tag_ttl);
        self
    }

    /// With the proxy cache: transparent mirroring into these projects.
    pub fn proxy_mirrors(mut self, mirrors: berth_proxy::Mirrors) -> Self {
        self.proxy_mirrors = mirrors;
        self
    }

    /// Open the stores on a directory another app used (a restart).
    /// Whether a pusher's `HEAD` links a blob from another repository (on by default).
    pub fn cross_repository_links(mut self, on: bool) -> Self {
        self.cross_repository_links = on;
        self
    }

    /// Let `/readyz` probe the data directory (as the binary does), failing below
    /// `min_free_bytes`.
    pub fn probe_data_dir(mut self, min_free_bytes: u64) -> Self {
        self.probe_data_dir = Some(min_free_bytes);
        self
    }

    pub fn dir(mut self, dir: Arc<TempDir>) -> Self {
        self.dir = Some(dir);
        self
    }

    pub async fn build(self) -> TestApp {
        let dir = self
            .dir
            .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("create tempdir")));
        let meta = Arc::new(
            match self.busy_timeout {
                Some(timeout) => {
                    SqliteStore::open_with_busy_timeout(&dir.path().join("metadata.db"), timeout)
                        .await
                }
                None => SqliteStore::open(&dir.path().join("metadata.db")).await,
            }
            .expect("open metadata store"),
        );
        let blobs = match self.blobs {
            Some(blobs) => blobs,
            None => Arc::new(FsBlobStore::open(dir.path()).expect("open blob store")),
        };
        let registry = Registry::new(
            meta.clone(),
            blobs,
            RegistryOptions {
                delete_enabled: self.delete_enabled,
                // As the binary runs it, so every test also checks cache invalidation.
                read_cache: true,
                sparse_index: self.sparse_index,
            },
        );
        let mut token_auth = None;
        let mode = if self.token_mode {
            let store: Arc<dyn IdentityStore> = meta.clone();
            let auth = Arc::new(
                TokenAuth::open(store, self.token_settings.unwrap_or_default())
                    .await
                    .expect("open token mode"),
            );
            token_auth = Some(auth.clone());
            AuthMode::Token(auth)
        } else {
            self.auth.unwrap_or(AuthMode::Open {
                anonymous_write: false,
            })
        };
        let registry = Arc::new(registry);
        let mut state = AppState::new(registry.clone(), Arc::new(Authorizer::new(mode)));
        let mut replicator_handle = None;
        let mut proxy_handle = None;
        if let Some(tag_ttl) = self.proxy_tag_ttl {
            let upstreams: Arc<dyn berth_meta::UpstreamStore> = meta.clone();
            let proxy = berth_proxy::ProxyCache::open(
                registry.clone(),
                upstreams.clone(),
                None,
                berth_proxy::ProxyOptions {
                    tag_ttl,
                    timeout: std::time::Duration::from_secs(5),
                    spool_dir: dir.path().join("proxy-spool"),
                    mirrors: self.proxy_mirrors.clone(),
                },
            )
            .await
            .expect("open the proxy cache");
            let proxy = Arc::new(proxy);
            let replicator = Arc::new(berth_replication::Replicator::new(
                registry.clone(),
                meta.clone(),
                meta.clone(),
                proxy.clone(),
                self.token_mode,
            ));
            registry.observe(replicator.events());
            state.replication = Some(replicator.clone());
            replicator_handle = Some(replicator);
            proxy_handle = Some(proxy.clone());
            state.proxy = Some(proxy);
            state.upstreams = Some(upstreams);
        }
        if let Some(auth) = &token_auth {
            let store: Arc<dyn IdentityStore> = meta.clone();
            state.identity = Some(IdentityService::new(store).with_caches(auth.clone()));
        }
        let audit = if self.audit {
            let settings = AuditSettings {
                jsonl: JsonLines::File(dir.path().join("audit.jsonl")),
                retention: None,
                ..Default::default()
            };
            Audit::start(meta.clone(), settings)
                .await
                .expect("start the audit log")
        } else {
            Audit::off()
        };
        state.audit = audit.clone();
        state.audit_log = Some(meta.clone());
        if let Some(min_free_bytes) = self.probe_data_dir {
            state.data_dir = Some(Arc::new(berth_storage::DataDir::new(
                dir.path(),
                min_free_bytes,
            )));
        }
        state.jobs = Some(meta.clone());
        state.cross_repository_links = self.cross_repository_links;
        TestApp {
            dir,
            meta,
            registry,
            router: berth_api::app(state),
            default_headers: Vec::new(),
            peer: None,
            token_auth,
            audit,
            replicator: replicator_handle,
            proxy: proxy_handle,
        }
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            token_mode: false,
            token_settings: None,
            delete_enabled: true,
            sparse_index: false,
            dir: None,
            auth: None,
            audit: true,
            blobs: None,
            proxy_tag_ttl: None,
            proxy_mirrors: Default::default(),
            probe_data_dir: None,
            cross_repository_links: true,
            busy_timeout: None,
        }
    }

    pub async fn new() -> TestApp {
        TestApp::builder().build().await
    }

    /// Accounts, projects and robots of this registry (token mode), through the same
    /// service the CLI uses.
    pub fn identity(&self) -> IdentityService {
        let store: Arc<dyn IdentityStore> = self.meta.clone();
        let service = IdentityService::new(store);
        match &self.token_auth {
            Some(auth) => service.with_caches(auth.clone()),
            None => service,
        }
    }

    /// The router, to serve on a socket (an upstream for a proxy cache).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The metadata store underneath, for setting up states the API cannot reach.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn meta(&self) -> &SqliteStore {
        &self.meta
    }

    /// The replication service (an app built with proxy-cache projects).
    pub fn replicator(&self) -> &Arc<berth_replication::Replicator> {
        self.replicator.as_ref().expect("built with .proxy()")
    }

    /// The directory of this app's database and blobs, for a second node on them.
    pub fn shared_dir(&self) -> Arc<TempDir> {
        self.dir.clone()
    }

    /// The proxy cache (an app built with `.proxy()`).
    pub fn proxy_cache(&self) -> &Arc<berth_proxy::ProxyCache> {
        self.proxy.as_ref().expect("built with .proxy()")
    }

    /// A handle whose requests carry HTTP basic credentials.
    pub fn with_basic(&self, user: &str, password: &str) -> TestApp {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.with_header("authorization", format!("Basic {encoded}"))
    }

    /// A handle whose requests carry this bearer token.
    pub fn with_bearer(&self, token: &str) -> TestApp {
        self.with_header("authorization", format!("Bearer {token}"))
    }

    /// The registry's data directory (metadata database, blobs, uploads).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Wait until the audit log has written everything recorded so far.
    pub async fn flush_audit(&self) {
        self.audit.flush().await;
    }

    /// The audit log's JSON lines written so far (after a flush), one value each.
    pub fn audit_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON value per line"))
            .collect()
    }

    /// Stop this registry and start a new one on the same directory.
    pub async fn restart(self) -> TestApp {
        let dir = self.dir.clone();
        self.audit.shutdown().await;
        self.meta.close().await;
        drop(self);
        TestApp::builder().dir(dir).build().await
    }

    /// Stop this registry and start a new one on the same directory with blob bytes in
    /// `blobs` (another node, as far as the blob store can tell).
    pub async fn restart_with_blobs(self, blobs: Arc<dyn BlobStore>) -> TestApp {
        let dir = self.dir.clone();
        self.audit.shutdown().await;
        self.meta.close().await;
        drop(self);
        TestApp::builder().dir(dir).blobs(blobs).build().await
    }

    /// A handle on the same registry whose requests carry no default header (anonymous).
    pub fn without_credentials(&self) -> TestApp {
        let mut app = self.clone();
        app.default_headers.clear();
        app
    }

    /// A handle on the same registry whose requests all carry this header.
    pub fn with_header(&self, name: &str, value: impl Into<String>) -> TestApp {
        let mut app = self.clone();
        app.default_headers.push((name.to_owned(), value.into()));
        app
    }

    /// A handle on the same registry whose requests come from `peer` (as the server's
    /// `ConnectInfo` would say).
    pub fn with_peer(&self, peer: SocketAddr) -> TestApp {
        let mut app = self.clone();
        app.peer = Some(peer);
        app
    }

    pub fn request(&self, method: Method, uri: impl Into<String>) -> TestRequest {
        TestRequest {
            router: self.router.clone(),
            method,
            uri: uri.into(),
            headers: self.default_headers.clone(),
            body: RequestBody::Empty,
            peer: self.peer,
            server_error_expected: false,
        }
    }

    pub fn get(&self, uri: impl Into<String>) -> TestRequest {
        self.request(Method::GET, uri)
    }

    pub fn head(&self, uri: impl Into<String>) -> TestRequest {
        self.request(Method::HEAD, uri)
    }

    pub fn put(&self, uri: impl Into<String>) -> TestRequest {
        self.request(Method::PUT, uri)
    }

    pub fn post(&self, uri: impl Into<String>) -> TestRequest {
        self.request(Method::POST, uri)
    }

    pub fn patch(&self, uri: impl Into<String>) -> TestRequest {
        self.request(Method::PATCH, uri)
    }

    pub fn delete(&self, uri: impl Into<String>) -> TestRequest {
        self.request(Method::DELETE, uri)
    }

    /// Hold the metadata database's write lock from a second connection (as another
    /// process could) until the returned connection runs `ROLLBACK`.
    pub async fn hold_metadata_write_lock(&self) -> sqlx::SqliteConnection {
        use sqlx::Connection;
        let mut other = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new()
                .filename(self.data_dir().join("metadata.db")),
        )
        .await
        .expect("a second connection");
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("holds the write lock");
        other
    }

    /// Open an upload session; returns its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let response = self.post(format!("/v2/{repo}/blobs/uploads/")).send().await;
        assert_eq!(response.status, StatusCode::ACCEPTED, "start upload");
        response.location()
    }

    /// Push a blob with POST then PUT; returns its sha256 digest.
    pub async fn push_blob(&self, repo: &str, content: &[u8]) -> String {
        let digest = sha256(content);
        let location = self.start_upload(repo).await;
        let response = self
            .put(with_digest(&location, &digest))
            .body(content.to_vec())
            .send()
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "push blob");
        digest
    }

    /// PUT a manifest with its media type as Content-Type.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> TestResponse {
        self.put(format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.into())
            .send()
            .await
    }

    /// PUT a manifest that must be accepted; returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> String {
        let response = self.put_manifest(repo, reference, media_type, body).await;
        assert_eq!(response.status, StatusCode::CREATED, "push manifest");
        response.header("docker-content-digest").to_owned()
    }

    /// Push a small OCI image (config and one layer, distinguished by `seed`) under
    /// `reference`; returns the manifest's digest and bytes.
    pub async fn push_image(&self, repo: &str, reference: &str, seed: &str) -> (String, Vec<u8>) {
        let manifest = self.image_manifest(repo, seed).await;
        let digest = self
            .push_manifest(repo, reference, OCI_MANIFEST, manifest.clone())
            .await;
        (digest, manifest)
    }

    /// Push the blobs of a small OCI image and return its manifest's bytes, unpushed.
    pub async fn image_manifest(&self, repo: &str, seed: &str) -> Vec<u8> {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layer = format!("layer bytes for {seed}");
        self.push_blob(repo, config.as_bytes()).await;
        self.push_blob(repo, layer.as_bytes()).await;
        to_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config.as_bytes()),
            "layers": [descriptor(OCI_LAYER, layer.as_bytes())],
        }))
    }
}

enum RequestBody {
    Empty,
    /// Sent with a Content-Length, as HTTP/1.1 clients do.
    Sized(Vec<u8>),
    /// Sent as a stream with `Transfer-Encoding: chunked` and no length.
    Streamed(Vec<Vec<u8>>),
    /// A stream with neither Content-Length nor Transfer-Encoding, as an HTTP/2 request
    /// without a length arrives.
    Unframed(Vec<Vec<u8>>),
}

/// One request, built up and then sent with [`TestRequest::send`].
pub struct TestRequest {
    router: Router,
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: RequestBody,
    peer: Option<SocketAddr>,
    /// The test expects a 5xx (the server's own state, e.g. a full disk), so the harness
    /// lets it through.
    server_error_expected: bool,
}

impl TestRequest {
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Let this request answer a 5xx: the test is about a failure of the server's own (a
    /// full disk), not a client's mistake.
    pub fn server_error_expected(mut self) -> Self {
        self.server_error_expected = true;
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = RequestBody::Sized(body.into());
        self
    }

    /// A body of unknown length, delivered in these pieces.
    pub fn streamed(mut self, pieces: Vec<Vec<u8>>) -> Self {
        self.body = RequestBody::Streamed(pieces);
        self
    }

    /// A body of unknown length without any framing header (HTTP/2).
    pub fn unframed(mut self, pieces: Vec<Vec<u8>>) -> Self {
        self.body = RequestBody::Unframed(pieces);
        self
    }

    /// Send the request. Every response must come from the distribution API (version
    /// header) and none may be a server error.
    pub async fn send(self) -> TestResponse {
        let mut builder = Request::builder().method(self.method).uri(&self.uri);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let body = match self.body {
            RequestBody::Empty => Body::empty(),
            RequestBody::Sized(bytes) => {
                builder = builder.header("content-length", bytes.len().to_string());
                Body::from(bytes)
            }
            RequestBody::Streamed(pieces) => {
                builder = builder.header("transfer-encoding", "chunked");
                stream_body(pieces)
            }
            RequestBody::Unframed(pieces) => stream_body(pieces),
        };
        let mut request = builder.body(body).expect("valid request");
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let response = self
            .router
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("read response body")
            .to_bytes();
        let response = TestResponse {
            status,
            headers,
            body,
        };
        // A client's request never earns a 5xx; readiness reports the server's own state.
        assert!(
            !status.is_server_error() || self.uri == "/readyz" || self.server_error_expected,
            "{} answered {status}: {}",
            self.uri,
            String::from_utf8_lossy(&response.body)
        );
        if self.uri.starts_with("/v2") {
            assert_eq!(
                response.headers.get("docker-distribution-api-version"),
                Some(&"registry/2.0".parse().expect("header value")),
                "{} answered without the API version header",
                self.uri
            );
        }
        response
    }
}

fn stream_body(pieces: Vec<Vec<u8>>) -> Body {
    Body::from_stream(futures_util::stream::iter(
        pieces
            .into_iter()
            .map(|p| Ok::<_, std::io::Error>(Bytes::from(p))),
    ))
}

/// A collected response.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    /// A header that must be present.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("response has no {name} header: {:?}", self.headers))
            .to_str()
            .expect("header is text")
    }

    pub fn maybe_header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> String {
        self.header("location").to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The first error's code.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", String::from_utf8_lossy(&self.body)))
            .to_owned()
    }

    /// Assert the status and the spec error code of an error response.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.error_code().as_str()),
            (status, code),
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

pub fn sha256(content: &[u8]) -> String {
    Digest::of(Algorithm::Sha256, content).to_string()
}

pub fn sha512(content: &[u8]) -> String {
    Digest::of(Algorithm::Sha512, content).to_string()
}

/// Add `digest=` to an upload location, which may already have a query.
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// An OCI descriptor for `content`.
pub fn descriptor(media_type: &str, content: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256(content), "size": content.len() })
}

pub fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialize JSON")
}
