//! berth's HTTP API. [`app`] builds the whole router; `main` serves it and the tests drive
//! it in-process, so both see the same thing.
//!
//! - `/v2/…`: the OCI distribution API ([`distribution`]).
//! - `/service/token`: the Docker token service, in token mode ([`token`]).
//! - `/api/v2.0/…`: Harbor's management API ([`mgmt`]).
//! - `/healthz`: liveness (the process answers); `/readyz`: readiness (the metadata
//!   database and the blob store answer, the data directory takes a write and has room),
//!   for load balancers and Kubernetes probes.
//! - `/metrics`: Prometheus text ([`berth_metrics`]), unless turned off.
//!
//! Every request first goes through [`observe::observe`]: request id, log span, metrics.
//!
//! Handlers are thin: they translate HTTP into calls on `berth_registry::Registry` and its
//! results back into HTTP. They never decide permissions: [`distribution`] authorizes every
//! request from its parsed endpoint before any handler runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use berth_auth::Authorizer;
use berth_registry::Registry;

pub mod audit;
pub mod credentials;
pub mod distribution;
mod error;
pub mod external_url;
pub mod mgmt;
pub mod observe;
pub mod token;

pub use error::ApiError;
pub use external_url::ExternalUrlConfig;

/// How long a request body may send nothing before it is dropped, unless configured.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub auth: Arc<Authorizer>,
    /// The token service's URL as clients must call it, when configured; otherwise it is
    /// derived from each request ([`AppState::external`]).
    pub token_realm: Option<String>,
    /// How to tell the external base URL of a request (TLS listener, trusted proxies):
    /// `state.external.base_url(uri, headers, extensions)`.
    pub external: Arc<ExternalUrlConfig>,
    /// Accounts, projects, members and robots (token mode): what `/api/v2.0` changes them
    /// through, the same service as the CLI.
    pub identity: Option<berth_auth::IdentityService>,
    /// Where audit events go ([`berth_audit::Audit::off`] records nothing). Recording never
    /// blocks a request.
    pub audit: berth_audit::Audit,
    /// The audit entries as stored, for `/audit-logs` (`None`: nothing to list).
    pub audit_log: Option<Arc<dyn berth_meta::AuditStore>>,
    /// What `/metrics` serves; `None`: `/metrics` is not served on this router (turned off,
    /// or on a listener of its own).
    pub metrics: Option<berth_metrics::Metrics>,
    /// A request body that sends nothing for this long is dropped (`None`: never).
    pub body_idle_timeout: Option<Duration>,
    /// The data directory `/readyz` probes with a write (`None`: not probed).
    pub data_dir: Option<Arc<berth_storage::DataDir>>,
    /// Set when shutdown begins: `/readyz` answers 503 so load balancers stop sending new
    /// requests while those in flight finish.
    pub shutting_down: Arc<AtomicBool>,
    /// The job system's store: garbage collection runs, their history and schedule
    /// (`/api/v2.0/system/gc*`; `None`: those answer 403).
    pub jobs: Option<Arc<dyn berth_meta::JobStore>>,
    /// Proxy-cache projects and their upstream registries (`None`: no proxy caching, and
    /// `/registries` answers nothing).
    pub proxy: Option<Arc<berth_proxy::ProxyCache>>,
    /// The upstream registries as stored, for `/registries`.
    pub upstreams: Option<Arc<dyn berth_meta::UpstreamStore>>,
    /// Replication policies and executions (`/replication/*`; `None`: those answer 403).
    pub replication: Option<Arc<berth_replication::Replicator>>,
    /// A pusher's `HEAD` of a blob another repository it may pull holds links it here
    /// (`cross_repository_links`).
    pub cross_repository_links: bool,
}

impl AppState {
    /// A state for a plain-HTTP listener on `127.0.0.1:5000` without trusted proxies (tests);
    /// `main` sets [`AppState::external`] from the configuration.
    pub fn new(registry: Arc<Registry>, auth: Arc<Authorizer>) -> AppState {
        AppState {
            registry,
            auth,
            token_realm: None,
            identity: None,
            audit: berth_audit::Audit::off(),
            audit_log: None,
            metrics: Some(berth_metrics::Metrics::new()),
            body_idle_timeout: Some(DEFAULT_BODY_IDLE_TIMEOUT),
            data_dir: None,
            shutting_down: Arc::new(AtomicBool::new(false)),
            jobs: None,
            proxy: None,
            upstreams: None,
            replication: None,
            cross_repository_links: true,
            external: Arc::new(ExternalUrlConfig::new(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                5000,
            )))),
        }
    }
}

/// 200 when this node can serve: its metadata database and blob store both answer, and the
/// data directory takes a synced write with room to spare; 503 naming everything that fails
/// (and while shutting down). Nothing is remembered between probes: a node whose disk was
/// full is ready again at the first probe after space is freed.
async fn readiness(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> (axum::http::StatusCode, String) {
    observe::classify(berth_metrics::EndpointClass::Health);
    if state.shutting_down.load(Ordering::Relaxed) {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".into(),
        );
    }
    let mut problems = Vec::new();
    if let Err(reason) = state.registry.ready().await {
        problems.push(reason);
    }
    let mut free = None;
    if let Some(data_dir) = &state.data_dir {
        match data_dir.probe().await {
            Ok(space) => free = Some(space.free),
            Err(reason) => problems.push(reason),
        }
    }
    if problems.is_empty() {
        let body = match free {
            Some(free) => format!("ready\ndata directory: {free} bytes free\n"),
            None => "ready\n".into(),
        };
        return (axum::http::StatusCode::OK, body);
    }
    let reason = problems.join("; ");
    tracing::warn!(%reason, "not ready");
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {reason}\n"),
    )
}

/// Liveness: the process answers.
async fn liveness() -> &'static str {
    observe::classify(berth_metrics::EndpointClass::Health);
    "ok"
}

/// `/metrics`: every metric, in Prometheus' text format.
async fn metrics(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    observe::classify(berth_metrics::EndpointClass::Metrics);
    match &state.metrics {
        Some(metrics) => (
            [(
                axum::http::header::CONTENT_TYPE,
                berth_metrics::CONTENT_TYPE,
            )],
            metrics.render().await,
        )
            .into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// A router that serves only `/metrics`, for a listener of its own (`[metrics] addr`).
pub fn metrics_app(metrics: berth_metrics::Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        berth_metrics::CONTENT_TYPE,
                    )],
                    metrics.render().await,
                )
            }
        }),
    )
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(distribution::dispatch))
        .route("/v2/", any(distribution::dispatch))
        .route("/v2/{*rest}", any(distribution::dispatch))
        .route("/service/token", get(token::get).post(token::post))
        .route("/api/v2.0/openapi.json", get(mgmt::openapi_document))
        .route("/api/v2.0/{*rest}", any(mgmt::dispatch))
        .route("/healthz", get(liveness))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
        // The one middleware (request id, span, metrics, panics, 5xx logs). Its state is only
        // what it needs (a copy), not the whole state: it runs on every request.
        .layer(axum::middleware::from_fn_with_state(
            state.body_idle_timeout,
            observe::observe,
        ))
        // Shared, not cloned: axum hands every request its own copy of the state, and
        // cloning the whole struct (a dozen reference counts) cost more than the routing.
        .with_state(Arc::new(state))
}
