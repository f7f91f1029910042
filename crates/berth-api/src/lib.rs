//! berth's HTTP API. [`app`] builds the whole router; `main` serves it and the tests drive
//! it in-process, so both see the same thing.
//!
//! - `/v2/…`: the OCI distribution API ([`distribution`]).
//! - `/service/token`: the Docker token service, in token mode ([`token`]).
//! - `/healthz`: liveness.
//!
//! Handlers are thin: they translate HTTP into calls on `berth_registry::Registry` and its
//! results back into HTTP. They never decide permissions: [`distribution`] authorizes every
//! request from its parsed endpoint before any handler runs.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::{any, get};
use berth_auth::Authorizer;
use berth_registry::Registry;

pub mod credentials;
pub mod distribution;
mod error;
pub mod token;

pub use error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub auth: Arc<Authorizer>,
    /// The token service's URL as clients must call it, when configured; otherwise it is
    /// derived from each request (scheme and `Host`).
    pub token_realm: Option<String>,
    /// Whether clients reach this server over TLS (the scheme of derived URLs).
    pub tls: bool,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, auth: Arc<Authorizer>) -> AppState {
        AppState {
            registry,
            auth,
            token_realm: None,
            tls: false,
        }
    }
}

/// `scheme://host[:port]` as the client addressed this server: the scheme this listener
/// speaks and the request's `Host` (a host that is not a plain `name[:port]` is ignored).
pub fn external_base(state: &AppState, headers: &HeaderMap) -> String {
    let scheme = if state.tls { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(distribution::dispatch))
        .route("/v2/", any(distribution::dispatch))
        .route("/v2/{*rest}", any(distribution::dispatch))
        .route("/service/token", get(token::get).post(token::post))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(error::catch_panics))
        .layer(axum::middleware::from_fn(error::log_server_errors))
        .with_state(state)
}
