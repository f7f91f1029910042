//! berth's HTTP API. [`app`] builds the whole router; `main` serves it and the tests drive
//! it in-process, so both see the same thing.
//!
//! - `/v2/…`: the OCI distribution API ([`distribution`]).
//! - `/service/token`: the Docker token service, in token mode ([`token`]).
//! - `/api/v2.0/…`: Harbor's management API ([`mgmt`]).
//! - `/healthz`: liveness (the process answers); `/readyz`: readiness (the metadata
//!   database and the blob store answer too), for load balancers and Kubernetes probes.
//!
//! Handlers are thin: they translate HTTP into calls on `berth_registry::Registry` and its
//! results back into HTTP. They never decide permissions: [`distribution`] authorizes every
//! request from its parsed endpoint before any handler runs.

use std::sync::Arc;

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
pub mod token;

pub use error::ApiError;
pub use external_url::ExternalUrlConfig;

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
    /// The job system's store: garbage collection runs, their history and schedule
    /// (`/api/v2.0/system/gc*`; `None`: those answer 403).
    pub jobs: Option<Arc<dyn berth_meta::JobStore>>,
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
            jobs: None,
            external: Arc::new(ExternalUrlConfig::new(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                5000,
            )))),
        }
    }
}

/// 200 when this node can serve: its metadata database and blob store both answer; 503 naming
/// what does not.
async fn readiness(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (axum::http::StatusCode, String) {
    match state.registry.ready().await {
        Ok(()) => (axum::http::StatusCode::OK, "ready\n".into()),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            )
        }
    }
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
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .layer(axum::middleware::from_fn(error::catch_panics))
        .layer(axum::middleware::from_fn(error::log_server_errors))
        .with_state(state)
}
