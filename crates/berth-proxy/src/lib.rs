//! Proxy-cache projects: a pull from a project bound to an upstream registry is answered from
//! the cache, or fetched from the upstream once (single flight) while it streams to every
//! client that asked and fills the cache in the same pass. This crate never decides who may
//! do what (`berth-auth` does), and never writes metadata except through the registry
//! service (`berth_registry::Registry`), so what it caches passed the checks of a push.

use foldhash::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::{Digest, Reference, RepositoryName};
use berth_meta::{Upstream, UpstreamStore};
use berth_registry::{Manifest, Registry};
use bytes::Bytes;

pub mod flight;
pub mod remote;
pub mod secrets;
pub mod upstream;

pub use flight::{Flight, FlightKey, Flights};
pub use remote::{Mount, RemoteReferrer};
pub use secrets::{Keyring, SecretError};
pub use upstream::{UpstreamClient, UpstreamConfig, UpstreamError};

/// A body on its way to a client.
pub type ByteStream = futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// What an operator sets (`[proxy]`).
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// A manifest pulled by tag is served from the cache for this long before the upstream
    /// is asked (a `HEAD`) whether the tag moved. By digest, never: content cannot change.
    pub tag_ttl: Duration,
    /// Connecting to an upstream, and each wait for its answer or the next piece of a body.
    pub timeout: Duration,
    /// Where blobs being fetched are spooled when the blob store keeps its upload areas
    /// elsewhere (S3; on local disk: as large as the largest blobs fetched at once). On the
    /// filesystem store a fetch writes the store's upload area itself.
    pub spool_dir: PathBuf,
    /// Transparent mirroring: where pulls without a proxy project's prefix go.
    pub mirrors: Mirrors,
}

/// Transparent mirroring (what Docker's `registry-mirrors` and containerd's `hosts.toml`
/// need): pulls that name no project of this registry, or that carry containerd's
/// `?ns=<upstream host>`, are served by a proxy-cache project.
#[derive(Clone, Debug, Default)]
pub struct Mirrors {
    /// The project for pulls whose first path component names no project here.
    pub default: Option<String>,
    /// Upstream host (lower case, as in `ns`) → project.
    pub by_namespace: Vec<(String, String)>,
}

impl Mirrors {
    /// Every project pulls may be sent to (for a token to cover them all).
    pub fn projects(&self) -> impl Iterator<Item = &str> {
        let mut all: Vec<&str> = self.default.iter().map(String::as_str).collect();
        for (_, project) in &self.by_namespace {
            if !all.contains(&project.as_str()) {
                all.push(project);
            }
        }
        all.into_iter()
    }
}

/// How long which upstream a project proxies is remembered (another node may bind one).
const ROUTE_TTL: Duration = Duration::from_secs(5);

/// A node records a pull of a cached tag in the database at most this often (the
/// revalidation job asks only which tags were pulled lately, not how often).
const PULL_NOTE_INTERVAL: Duration = Duration::from_secs(60);

/// Upstream questions one revalidation run asks at once.
const REVALIDATION_CONCURRENCY: usize = 8;

/// What one revalidation run did (the job's result).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RevalidationReport {
    /// Tags the upstream was asked about.
    pub checked: u64,
    /// Still naming the cached manifest.
    pub unchanged: u64,
    /// Moved upstream: the new manifest is being cached, with its blobs.
    pub moved: u64,
    /// No longer cached here (or no longer in a proxy project): their records went.
    pub forgotten: u64,
    /// The upstream could not answer; asked again by the next run or pull.
    pub failed: u64,
    /// Not asked within the run's time: left to the next run.
    pub deferred: u64,
}

/// Where pulls of a repository in a proxy-cache project go.
#[derive(Clone, Debug)]
pub struct Route {
    pub upstream_id: i64,
    pub client: Arc<UpstreamClient>,
    /// The repository's name upstream (the project prefix dropped, `library/` added for
    /// Docker Hub's official images).
    pub repository: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Registry(#[from] berth_registry::Error),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("upstream registry {0}: {1}")]
    Config(i64, String),
}

/// A client, the row's `updated_at` it was built from, and when that was last checked.
type KnownClient = (i64, Instant, Arc<UpstreamClient>);

type ManifestFlight = Arc<tokio::sync::OnceCell<Result<Fetched, UpstreamError>>>;

/// What asking the upstream about a manifest found.
#[derive(Clone, Debug)]
enum Fetched {
    /// The tag still names the cached digest.
    Unchanged,
    New(upstream::FetchedManifest),
}

pub struct ProxyCache {
    registry: Arc<Registry>,
    store: Arc<dyn UpstreamStore>,
    keyring: Keyring,
    options: ProxyOptions,
    /// Clients by upstream id, with the row's `updated_at` they were built from and when
    /// that was last compared with the database (another node may change the row).
    clients: Mutex<HashMap<i64, KnownClient>>,
    /// Project name → the upstream it proxies (`None`: an ordinary project).
    /// Read on every `/v2/` request of every repository: a read lock.
    routes: std::sync::RwLock<HashMap<String, (Option<i64>, Instant)>>,
    /// Repositories found held here, and when: the default mirror leaves their pulls alone.
    held: Mutex<HashMap<String, Instant>>,
    /// When each (repository, tag) was last found current upstream, as far as this node
    /// knows: its own answers, and those of other nodes and the `proxy_revalidate` job read
    /// from the database (`proxy_tags`) when this one is out of date.
    revalidated: Mutex<HashMap<(String, String), Instant>>,
    /// When this node last recorded a pull of each (repository, tag) in the database (what
    /// the `proxy_revalidate` job keeps fresh): at most once per [`PULL_NOTE_INTERVAL`].
    pulls_noted: Mutex<HashMap<(String, String), Instant>>,
    manifest_flights: Mutex<HashMap<(i64, String, String), ManifestFlight>>,
    /// Manifests fetched and not yet stored (their blobs are being cached), by (repository,
    /// reference).
    pending: PendingManifests,
    pub blob_flights: Arc<Flights>,
    /// Upstream manifest requests (GET or HEAD) made, for tests and metrics.
    pub manifest_requests: std::sync::atomic::AtomicU64,
}

impl ProxyCache {
    /// The cache over `registry`, sealing secrets with `configured_key` or, when none is
    /// configured, with a key kept in the database (generated by the first node to start).
    pub async fn open(
        registry: Arc<Registry>,
        store: Arc<dyn UpstreamStore>,
        configured_key: Option<Vec<u8>>,
        options: ProxyOptions,
    ) -> Result<ProxyCache, String> {
        let mut stored = store.secret_keys().await.map_err(|e| e.to_string())?;
        if stored.is_empty() && configured_key.is_none() {
            let key = secrets::generate_key().map_err(|e| e.to_string())?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let kid = format!("k{now}");
            store
                .add_secret_key(&berth_meta::SecretKey {
                    kid,
                    key,
                    created_at: now,
                })
                .await
                .map_err(|e| e.to_string())?;
            // Another node may have added one at the same time: all of them open.
            stored = store.secret_keys().await.map_err(|e| e.to_string())?;
        }
        let stored: Vec<(String, Vec<u8>)> = stored.into_iter().map(|k| (k.kid, k.key)).collect();
        let keyring =
            Keyring::new(configured_key.as_deref(), &stored).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&options.spool_dir)
            .map_err(|e| format!("{}: {e}", options.spool_dir.display()))?;
        let blob_flights = Arc::new(Flights::new(registry.clone(), options.spool_dir.clone()));
        Ok(ProxyCache {
            registry,
            store,
            keyring,
            options,
            clients: Default::default(),
            routes: Default::default(),
            held: Default::default(),
            revalidated: Default::default(),
            pulls_noted: Default::default(),
            manifest_flights: Default::default(),
            pending: Default::default(),
            blob_flights,
            manifest_requests: Default::default(),
        })
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// A client for a stored upstream (its secret opened).
    pub fn client_for(&self, upstream: &Upstream) -> Result<UpstreamClient, String> {
        let fields = &upstream.fields;
        let credential = match &fields.credential {
            Some(c) => Some((
                c.access_key.clone(),
                self.keyring
                    .open(&c.sealed_secret)
                    .map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        UpstreamClient::new(UpstreamConfig {
            kind: fields.kind.clone(),
            url: fields.url.clone(),
            insecure: fields.insecure,
            ca_cert: fields.ca_cert.clone(),
            credential,
            timeout: self.options.timeout,
        })
    }

    /// Forget what is remembered about projects and upstreams (after a change through this
    /// node; other nodes notice within a few seconds).
    pub fn forget(&self) {
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn mirrors(&self) -> &Mirrors {
        &self.options.mirrors
    }

    /// The repository a pull of `repository` is served from when a mirror takes it: with
    /// containerd's `ns` naming a mapped upstream host, that host's project; else the
    /// default mirror project when this registry holds no repository of that name (its own
    /// repositories win, in any project, `library` too). `None`: served as named.
    pub async fn mirror_target(
        &self,
        repository: &RepositoryName,
        namespace: Option<&str>,
    ) -> Result<Option<RepositoryName>, ProxyError> {
        let mirrors = &self.options.mirrors;
        let name = repository.as_str();
        let by_namespace = namespace.and_then(|ns| {
            let ns = ns.to_ascii_lowercase();
            mirrors
                .by_namespace
                .iter()
                .find(|(host, _)| *host == ns)
                .map(|(_, project)| project.as_str())
        });
        let project = match (by_namespace, &mirrors.default) {
            (Some(project), _) => project,
            (None, Some(default)) => {
                if self.held_here(repository).await? {
                    return Ok(None);
                }
                default.as_str()
            }
            (None, None) => return Ok(None),
        };
        if name
            .strip_prefix(project)
            .is_some_and(|rest| rest.starts_with('/'))
        {
            return Ok(None);
        }
        let rewritten = format!("{project}/{name}");
        // Too long a name for the mirror: served as named (and not found).
        Ok(rewritten.parse().ok())
    }

    /// Whether this registry holds `repository`. Only a yes is remembered (briefly): a
    /// repository pushed a moment ago is served here at once.
    async fn held_here(&self, repository: &RepositoryName) -> Result<bool, ProxyError> {
        let name = repository.as_str();
        let fresh = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .is_some_and(|at| at.elapsed() < ROUTE_TTL);
        if fresh {
            return Ok(true);
        }
        let held = match self.registry.repository(repository).await {
            Ok(_) => true,
            Err(berth_registry::Error::NameUnknown(_)) => false,
            Err(e) => return Err(e.into()),
        };
        if held {
            let mut known = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if known.len() > 10_000 {
                known.retain(|_, at| at.elapsed() < ROUTE_TTL);
            }
            known.insert(name.to_owned(), Instant::now());
        }
        Ok(held)
    }

    /// Where pulls of `repository` go, if its project is a proxy cache.
    pub async fn route(&self, repository: &RepositoryName) -> Result<Option<Route>, ProxyError> {
        let name = repository.as_str();
        let Some((project, rest)) = name.split_once('/') else {
            return Ok(None);
        };
        let known = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(project)
            .filter(|(_, at)| at.elapsed() < ROUTE_TTL)
            .map(|(id, _)| *id);
        let upstream_id = match known {
            Some(id) => id,
            None => {
                let id = self
                    .store
                    .project_upstream(project)
                    .await
                    .map_err(|e| berth_registry::Error::Internal(e.to_string()))?;
                self.routes
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(project.to_owned(), (id, Instant::now()));
                id
            }
        };
        let Some(upstream_id) = upstream_id else {
            return Ok(None);
        };
        let client = self.client(upstream_id).await?;
        Ok(Some(Route {
            upstream_id,
            repository: upstream::upstream_repository(client.kind(), rest),
            client,
        }))
    }

    /// The client of upstream `id`, rebuilt when its row changed (checked every few
    /// seconds); an unchanged client keeps its connections and tokens.
    async fn client(&self, id: i64) -> Result<Arc<UpstreamClient>, ProxyError> {
        let cached = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        if let Some((_, checked, client)) = &cached
            && checked.elapsed() < ROUTE_TTL
        {
            return Ok(client.clone());
        }
        let upstream = self
            .store
            .upstream_by_id(id)
            .await
            .map_err(|e| berth_registry::Error::Internal(e.to_string()))?
            .ok_or_else(|| ProxyError::Config(id, "no longer exists".into()))?;
        let client = match cached {
            Some((updated_at, _, client)) if updated_at == upstream.updated_at => client,
            _ => Arc::new(
                self.client_for(&upstream)
                    .map_err(|e| ProxyError::Config(id, e))?,
            ),
        };
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (upstream.updated_at, Instant::now(), client.clone()));
        Ok(client)
    }

    /// A manifest of a proxied repository: from the cache (by tag while it is fresh, or
    /// when the upstream fails), else from the upstream — served at once and cached in
    /// the background with its blobs.
    pub async fn manifest(
        &self,
        route: &Route,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Arc<Manifest>, ProxyError> {
        let asked_at = Instant::now();
        match self
            .lookup(route, repository, reference, asked_at, true)
            .await?
        {
            Some(manifest) => Ok(manifest),
            // Another caller's upstream answer came in while this one looked in the cache:
            // it is as fresh as this caller needs, so look again rather than ask again.
            None => self
                .lookup(route, repository, reference, asked_at, false)
                .await?
                .ok_or_else(|| UpstreamError::Local("the manifest flight ended".into()).into()),
        }
    }

    /// One look: pending, then cached, then the upstream. On the `first` look, `None`
    /// when the upstream answered for this manifest after `asked_at` while this caller
    /// looked in the cache (the caller then looks once more).
    async fn lookup(
        &self,
        route: &Route,
        repository: &RepositoryName,
        reference: &Reference,
        asked_at: Instant,
        first: bool,
    ) -> Result<Option<Arc<Manifest>>, ProxyError> {
        let freshness_key = (repository.to_string(), reference.to_string());
        // Within the TTL, or revalidated by another caller since this one asked.
        let fresh = || match reference {
            Reference::Digest(_) => true,
            Reference::Tag(_) => self
                .revalidated
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&freshness_key)
                .is_some_and(|at| at.elapsed() < self.options.tag_ttl || *at >= asked_at),
        };
        if let Reference::Tag(_) = reference {
            self.note_pull(&freshness_key);
        }
        // Fetched and being cached: answered from memory rather than fetched again.
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&freshness_key)
            .cloned();
        if let Some(manifest) = pending
            && fresh()
        {
            return Ok(Some(manifest));
        }
        let cached = match self.registry.get_manifest(repository, reference).await {
            Ok(manifest) => Some(manifest),
            Err(berth_registry::Error::ManifestUnknown(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(manifest) = &cached
            && (fresh()
                || self
                    .checked_elsewhere(&freshness_key, &manifest.digest)
                    .await)
        {
            return Ok(Some(manifest.clone()));
        }
        let known = cached.as_ref().map(|m| m.digest.clone());
        match self
            .ask_upstream(
                route,
                repository,
                reference,
                known,
                first.then_some(asked_at),
            )
            .await
        {
            Ok(None) => Ok(None),
            Ok(Some(fetched)) => match (fetched, cached) {
                (Fetched::New(m), _) => Ok(Some(Arc::new(Manifest {
                    digest: m.digest,
                    media_type: m.media_type,
                    content: m.content,
                }))),
                (Fetched::Unchanged, Some(manifest)) => Ok(Some(manifest)),
                (Fetched::Unchanged, None) => {
                    Err(UpstreamError::Local("the cached manifest went away".into()).into())
                }
            },
            Err(e) => match cached {
                Some(manifest) if e.is_outage() => {
                    tracing::warn!(%repository, %reference, error = %e, "upstream failed: serving the cached manifest");
                    Ok(Some(manifest))
                }
                _ => Err(e.into()),
            },
        }
    }

    /// Ask the upstream once for all concurrent callers: a `HEAD` when a digest is cached
    /// (is the tag still there?), else a `GET`. A new manifest is cached in the background.
    /// `None`, asking nothing, when no flight is running but one answered after
    /// `asked_at`: the caller missed it by looking in the cache meanwhile.
    async fn ask_upstream(
        &self,
        route: &Route,
        repository: &RepositoryName,
        reference: &Reference,
        known: Option<Digest>,
        asked_at: Option<Instant>,
    ) -> Result<Option<Fetched>, UpstreamError> {
        let key = (
            route.upstream_id,
            route.repository.clone(),
            reference.to_string(),
        );
        let freshness_key = (repository.to_string(), reference.to_string());
        let cell = {
            let mut flights = self
                .manifest_flights
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !flights.contains_key(&key)
                && let Some(asked_at) = asked_at
                && self
                    .revalidated
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&freshness_key)
                    .is_some_and(|at| *at >= asked_at)
            {
                return Ok(None);
            }
            flights.entry(key.clone()).or_default().clone()
        };
        let result = cell
            .get_or_init(|| async {
                self.manifest_requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let fetched = async {
                    if let Some(known) = &known {
                        let (digest, _) = route
                            .client
                            .head_manifest(&route.repository, &reference.to_string())
                            .await?;
                        if &digest == known {
                            return Ok(Fetched::Unchanged);
                        }
                    }
                    let fetched = route
                        .client
                        .get_manifest(&route.repository, reference)
                        .await?;
                    self.cache_manifest(route, repository, reference, &fetched);
                    Ok(Fetched::New(fetched))
                }
                .await;
                // Recorded before the flight leaves the map, so that a caller arriving
                // after it left sees that it answered (and finds the manifest pending).
                if let Ok(answer) = &fetched {
                    self.revalidated
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(freshness_key.clone(), Instant::now());
                    let digest = match (answer, &known) {
                        (Fetched::New(m), _) => Some(&m.digest),
                        (Fetched::Unchanged, known) => known.as_ref(),
                    };
                    if let (Reference::Tag(_), Some(digest)) = (reference, digest) {
                        self.record_check(&freshness_key, digest);
                    }
                }
                fetched
            })
            .await
            .clone();
        // Later callers ask anew (the next revalidation is its own question).
        let mut flights = self
            .manifest_flights
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if flights.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            flights.remove(&key);
        }
        result.map(Some)
    }

    /// Whether another node, or the revalidation job, found the cached `digest` current
    /// upstream within the TTL (their answers are in the database); remembered if so.
    async fn checked_elsewhere(&self, key: &(String, String), digest: &Digest) -> bool {
        if self.options.tag_ttl.is_zero() {
            return false;
        }
        let check = match self.store.proxy_tag_check(&key.0, &key.1).await {
            Ok(Some(check)) => check,
            Ok(None) => return false,
            Err(e) => {
                tracing::debug!(repository = %key.0, tag = %key.1, error = %e, "proxy tag record unread");
                return false;
            }
        };
        let age = Duration::from_millis(
            u64::try_from(berth_core::time::now_ms() - check.checked_at_ms).unwrap_or(0),
        );
        if check.digest != digest.to_string() || age >= self.options.tag_ttl {
            return false;
        }
        let Some(at) = Instant::now().checked_sub(age) else {
            return false;
        };
        let mut revalidated = self.revalidated.lock().unwrap_or_else(|e| e.into_inner());
        let known = revalidated.entry(key.clone()).or_insert(at);
        *known = (*known).max(at);
        true
    }

    /// Record in the database, in the background, that the upstream named `digest` for the
    /// tag just now (for the other nodes and the revalidation job).
    fn record_check(&self, key: &(String, String), digest: &Digest) {
        let store = self.store.clone();
        let (repository, tag) = key.clone();
        let digest = digest.to_string();
        let at = berth_core::time::now_ms();
        self.pulls_noted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), Instant::now());
        tokio::spawn(async move {
            if let Err(e) = store
                .record_proxy_check(&repository, &tag, &digest, at)
                .await
            {
                tracing::debug!(%repository, %tag, error = %e, "proxy tag check not recorded");
            }
        });
    }

    /// Record a pull of a tag in the database, in the background, unless this node did so
    /// lately: the revalidation job keeps the tags pulled lately fresh.
    fn note_pull(&self, key: &(String, String)) {
        {
            let mut noted = self.pulls_noted.lock().unwrap_or_else(|e| e.into_inner());
            if noted
                .get(key)
                .is_some_and(|at| at.elapsed() < PULL_NOTE_INTERVAL)
            {
                return;
            }
            if noted.len() > 100_000 {
                noted.retain(|_, at| at.elapsed() < PULL_NOTE_INTERVAL);
            }
            noted.insert(key.clone(), Instant::now());
        }
        let store = self.store.clone();
        let (repository, tag) = key.clone();
        let at = berth_core::time::now_ms();
        tokio::spawn(async move {
            if let Err(e) = store.record_proxy_pull(&repository, &tag, at).await {
                tracing::debug!(%repository, %tag, error = %e, "proxy tag pull not recorded");
            }
        });
    }

    /// The `proxy_revalidate` job: ask the upstreams about the cached tags pulled within
    /// `pulled_within` whose last answer will be older than the TTL before the next run
    /// (`lead` from now), at most `limit` of them, longest unasked first, starting none
    /// after `budget` (a slow or dead upstream must not hold the node's job runner). A tag
    /// that moved is fetched anew, with its blobs, as a pull would; pulls of tags kept
    /// fresh never wait for the upstream. With a TTL of zero every pull asks, and this
    /// does nothing.
    pub async fn revalidate_pulled(
        &self,
        pulled_within: Duration,
        lead: Duration,
        limit: u64,
        budget: Duration,
    ) -> Result<RevalidationReport, ProxyError> {
        use futures_util::StreamExt;
        let ttl = self.options.tag_ttl;
        if ttl.is_zero() {
            return Ok(RevalidationReport::default());
        }
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let now = berth_core::time::now_ms();
        let horizon = ttl.saturating_sub(lead).max(ttl / 2);
        let due = self
            .store
            .proxy_tags_to_check(
                now.saturating_sub(millis(pulled_within)),
                now.saturating_sub(millis(horizon)),
                limit,
            )
            .await
            .map_err(|e| berth_registry::Error::Internal(e.to_string()))?;
        let deadline = Instant::now() + budget;
        let total = due.len() as u64;
        let outcomes: Vec<Outcome> = futures_util::stream::iter(due)
            .take_while(|_| std::future::ready(Instant::now() < deadline))
            .map(|check| self.revalidate_one(check))
            .buffer_unordered(REVALIDATION_CONCURRENCY)
            .collect()
            .await;
        let mut report = RevalidationReport::default();
        for outcome in outcomes {
            match outcome {
                Outcome::Unchanged => report.unchanged += 1,
                Outcome::Moved => report.moved += 1,
                Outcome::Forgotten => report.forgotten += 1,
                Outcome::Failed => report.failed += 1,
            }
        }
        report.checked = report.unchanged + report.moved + report.failed;
        report.deferred = total - report.checked - report.forgotten;
        Ok(report)
    }

    async fn revalidate_one(&self, check: berth_meta::ProxyTagCheck) -> Outcome {
        let forget = || async {
            match self
                .store
                .forget_proxy_tag(&check.repository, &check.tag)
                .await
            {
                Ok(()) => Outcome::Forgotten,
                Err(_) => Outcome::Failed,
            }
        };
        let (Ok(repository), Ok(tag)) = (
            check.repository.parse::<RepositoryName>(),
            check.tag.parse::<berth_core::Tag>(),
        ) else {
            return forget().await;
        };
        let route = match self.route(&repository).await {
            Ok(Some(route)) => route,
            Ok(None) => return forget().await,
            Err(e) => {
                tracing::warn!(%repository, %tag, error = %e, "proxy revalidation: no upstream");
                return Outcome::Failed;
            }
        };
        let reference = Reference::Tag(tag);
        let cached = match self.registry.get_manifest(&repository, &reference).await {
            Ok(manifest) => manifest,
            Err(
                berth_registry::Error::ManifestUnknown(_) | berth_registry::Error::NameUnknown(_),
            ) => return forget().await,
            Err(e) => {
                tracing::warn!(%repository, %reference, error = %e, "proxy revalidation: cache unread");
                return Outcome::Failed;
            }
        };
        match self
            .ask_upstream(
                &route,
                &repository,
                &reference,
                Some(cached.digest.clone()),
                None,
            )
            .await
        {
            Ok(Some(Fetched::Unchanged)) | Ok(None) => Outcome::Unchanged,
            Ok(Some(Fetched::New(_))) => Outcome::Moved,
            Err(e) => {
                tracing::warn!(%repository, %reference, error = %e, "proxy revalidation: upstream failed");
                Outcome::Failed
            }
        }
    }

    /// In the background: fetch the manifest's blobs (joining clients' fetches), then
    /// store it through the registry, as a push would. An index is stored without its
    /// children, each cached when pulled.
    fn cache_manifest(
        &self,
        route: &Route,
        repository: &RepositoryName,
        reference: &Reference,
        fetched: &upstream::FetchedManifest,
    ) {
        let registry = self.registry.clone();
        let flights = self.blob_flights.clone();
        let route = route.clone();
        let repository = repository.clone();
        let reference = reference.clone();
        let fetched = fetched.clone();
        let pending = PendingEntry::insert(
            self.pending.clone(),
            (repository.to_string(), reference.to_string()),
            Arc::new(Manifest {
                digest: fetched.digest.clone(),
                media_type: fetched.media_type.clone(),
                content: fetched.content.clone(),
            }),
        );
        tokio::spawn(async move {
            // Whatever the outcome, the entry goes when the task ends.
            let _pending = pending;
            let parsed = match berth_core::manifest::parse(
                Some(&fetched.media_type),
                &fetched.content,
            ) {
                Ok(parsed) => parsed,
                Err(e) => {
                    tracing::warn!(%repository, %reference, error = %e, "upstream manifest not cached");
                    return;
                }
            };
            for digest in &parsed.blobs {
                if registry.blob_size(&repository, digest).await.is_ok() {
                    continue;
                }
                let key = FlightKey {
                    upstream: route.upstream_id,
                    repository: route.repository.clone(),
                    digest: digest.clone(),
                    local: repository.clone(),
                };
                let cached = match flights.join(key, route.client.clone()).await {
                    Ok(flight) => flight.cached().await,
                    Err(e) => {
                        tracing::warn!(%repository, %digest, error = %e, "blob not cached");
                        false
                    }
                };
                if !cached && registry.blob_size(&repository, digest).await.is_err() {
                    return;
                }
            }
            if let Err(e) = registry
                .put_fetched_manifest(
                    &repository,
                    &reference,
                    Some(&fetched.media_type),
                    &fetched.content,
                )
                .await
            {
                tracing::warn!(%repository, %reference, error = %e, "upstream manifest not cached");
            }
        });
    }

    /// A blob's size in a proxied repository: cached, being fetched, or the upstream's.
    pub async fn blob_size(
        &self,
        route: &Route,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64, ProxyError> {
        match self.registry.blob_size(repository, digest).await {
            Ok(size) => return Ok(size),
            Err(berth_registry::Error::BlobUnknown(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(route.client.head_blob(&route.repository, digest).await?)
    }

    /// An uncached blob from the upstream: its size and its bytes, streamed while they
    /// arrive (one fetch however many clients ask), and cached on the way.
    pub async fn fetch_blob(
        &self,
        route: &Route,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(u64, ByteStream), ProxyError> {
        let key = FlightKey {
            upstream: route.upstream_id,
            repository: route.repository.clone(),
            digest: digest.clone(),
            local: repository.clone(),
        };
        let flight = self.blob_flights.join(key, route.client.clone()).await?;
        Ok((flight.size, flight.reader()))
    }
}

/// What revalidating one tag came to.
enum Outcome {
    Unchanged,
    Moved,
    Forgotten,
    Failed,
}

/// Manifests being cached, by (repository, reference): served while their task runs.
type PendingManifests = Arc<Mutex<HashMap<(String, String), Arc<Manifest>>>>;

/// A manifest in `ProxyCache::pending` while its caching task runs.
struct PendingEntry {
    map: PendingManifests,
    key: (String, String),
}

impl PendingEntry {
    fn insert(
        map: PendingManifests,
        key: (String, String),
        manifest: Arc<Manifest>,
    ) -> PendingEntry {
        map.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), manifest);
        PendingEntry { map, key }
    }
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}
