//! berth's metrics, served as Prometheus text on `/metrics`.
//!
//! Two kinds of value:
//! - **Recorded** as things happen: `static` atomics ([`Counter`], [`Gauge`], [`Histogram`])
//!   grouped by subsystem ([`HTTP`], [`CONNECTIONS`], [`AUTH`], [`STORAGE`], [`GC`]). Recording
//!   is a relaxed atomic add: no lock, no allocation, no label map, so it may sit on the
//!   hottest request path. Label sets are fixed in advance (see `http.rs`).
//! - **Read at scrape time** from whatever owns the truth: a [`MetricsSource`] registered
//!   with [`Metrics::add_source`] at start-up (the database pool, the data directory's free
//!   bytes, storage per project from the usage tables…). A scrape awaits every source, so a
//!   source may query the database; requests never wait for one.
//!
//! A subsystem that wants its own metrics either adds statics here (one line each, rendered
//! in [`Metrics::render`]) or implements [`MetricsSource`] next to its own code and is
//! registered by the binary.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;

mod exposition;
pub mod http;
mod primitives;

pub use exposition::{CONTENT_TYPE, Exposition, Kind};
pub use http::{EndpointClass, HTTP};
pub use primitives::{Counter, Gauge, Histogram, LATENCY_BOUNDS, StripedCounter};

/// Connections as the listener sees them (the binary's acceptor records these).
pub struct ConnectionMetrics {
    /// Connections open now.
    pub open: Gauge,
    pub accepted: Counter,
    /// Connections answered 503 because `[http] max_connections` were open.
    pub rejected: Counter,
    /// Connections closed because nothing moved for `[http] idle_timeout` while no request
    /// was being handled.
    pub idle_closed: Counter,
    /// Connections closed because a request's headers were not in within
    /// `[http] header_read_timeout` of the connection being ready for them.
    pub header_timeouts: Counter,
    /// TLS handshakes that did not finish within `[http] tls_handshake_timeout`.
    pub tls_handshake_timeouts: Counter,
    /// Request bodies dropped because no byte came for `[http] body_idle_timeout`.
    pub body_timeouts: Counter,
    /// Bytes read from and written to client sockets (TLS included).
    pub received_bytes: StripedCounter,
    pub sent_bytes: StripedCounter,
}

pub static CONNECTIONS: ConnectionMetrics = ConnectionMetrics {
    open: Gauge::new(),
    accepted: Counter::new(),
    rejected: Counter::new(),
    idle_closed: Counter::new(),
    header_timeouts: Counter::new(),
    tls_handshake_timeouts: Counter::new(),
    body_timeouts: Counter::new(),
    received_bytes: StripedCounter::new(),
    sent_bytes: StripedCounter::new(),
};

/// Logins and tokens.
pub struct AuthMetrics {
    /// Tokens the token service signed.
    pub tokens_issued: Counter,
    /// Credentials (a password, a robot secret) that did not verify, or were throttled.
    pub login_failures: Counter,
    /// Bearer tokens that did not verify (expired, bad signature, wrong audience).
    pub token_failures: Counter,
    /// Requests refused by the authorization decision (403).
    pub denied: Counter,
}

pub static AUTH: AuthMetrics = AuthMetrics {
    tokens_issued: Counter::new(),
    login_failures: Counter::new(),
    token_failures: Counter::new(),
    denied: Counter::new(),
};

/// The blob store and data directory.
pub struct StorageMetrics {
    /// Writes refused because the storage was full (each answered 507).
    pub full_errors: Counter,
    /// Blobs linked into a repository by a pusher's `HEAD` (cross-repository links): each
    /// an upload the client did not make.
    pub blob_links: Counter,
}

pub static STORAGE: StorageMetrics = StorageMetrics {
    full_errors: Counter::new(),
    blob_links: Counter::new(),
};

/// Garbage collection runs (recorded by the collector).
pub struct GcMetrics {
    pub runs: Counter,
    pub failures: Counter,
    pub duration: Histogram,
    pub bytes_freed: Counter,
    pub blobs_deleted: Counter,
}

pub static GC: GcMetrics = GcMetrics {
    runs: Counter::new(),
    failures: Counter::new(),
    duration: Histogram::new(),
    bytes_freed: Counter::new(),
    blobs_deleted: Counter::new(),
};

/// Something that knows some metrics only when asked: read at every scrape.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Write this source's families into `out` (each with its [`Exposition::family`] header).
    /// A source that cannot read its values now writes what it has and returns; it must not
    /// fail the scrape.
    async fn collect(&self, out: &mut Exposition);
}

/// The scrape: the statics and every registered source. One per process, shared by the
/// router; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    sources: Arc<RwLock<Vec<Arc<dyn MetricsSource>>>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Read `source` at every scrape from now on.
    pub fn add_source(&self, source: Arc<dyn MetricsSource>) {
        if let Ok(mut sources) = self.sources.write() {
            sources.push(source);
        }
    }

    /// The whole scrape, as Prometheus text.
    pub async fn render(&self) -> String {
        let mut out = Exposition::new();
        out.family(
            "berth_build_info",
            "The running berth's version (always 1).",
            Kind::Gauge,
        );
        out.sample(
            "berth_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        HTTP.render(&mut out);
        render_connections(&mut out);
        render_auth(&mut out);
        out.counter(
            "berth_storage_full_errors_total",
            "Writes refused (507) because the registry's storage was full.",
            STORAGE.full_errors.get(),
        );
        out.counter(
            "berth_blob_links_total",
            "Blobs a pusher's HEAD linked from another repository it may pull (uploads saved).",
            STORAGE.blob_links.get(),
        );
        render_gc(&mut out);
        let sources: Vec<Arc<dyn MetricsSource>> = match self.sources.read() {
            Ok(sources) => sources.clone(),
            Err(_) => Vec::new(),
        };
        for source in sources {
            source.collect(&mut out).await;
        }
        out.into_text()
    }
}

fn render_connections(out: &mut Exposition) {
    let c = &CONNECTIONS;
    out.gauge(
        "berth_connections_open",
        "Client connections open now.",
        c.open.get(),
    );
    out.counter(
        "berth_connections_accepted_total",
        "Client connections accepted.",
        c.accepted.get(),
    );
    out.counter(
        "berth_connections_rejected_total",
        "Connections answered 503 because [http] max_connections were open.",
        c.rejected.get(),
    );
    out.counter(
        "berth_connections_idle_closed_total",
        "Connections closed after [http] idle_timeout without a request or a byte.",
        c.idle_closed.get(),
    );
    out.counter(
        "berth_connections_header_timeouts_total",
        "Connections closed because a request's headers took longer than [http] header_read_timeout.",
        c.header_timeouts.get(),
    );
    out.counter(
        "berth_tls_handshake_timeouts_total",
        "TLS handshakes not finished within [http] tls_handshake_timeout.",
        c.tls_handshake_timeouts.get(),
    );
    out.counter(
        "berth_request_body_timeouts_total",
        "Request bodies dropped after [http] body_idle_timeout without a byte.",
        c.body_timeouts.get(),
    );
    out.counter(
        "berth_network_received_bytes_total",
        "Bytes read from client connections (TLS records included).",
        c.received_bytes.get(),
    );
    out.counter(
        "berth_network_sent_bytes_total",
        "Bytes written to client connections (TLS records included).",
        c.sent_bytes.get(),
    );
}

fn render_auth(out: &mut Exposition) {
    out.counter(
        "berth_tokens_issued_total",
        "Bearer tokens signed by the token service.",
        AUTH.tokens_issued.get(),
    );
    out.family(
        "berth_auth_failures_total",
        "Authentication and authorization failures, by kind.",
        Kind::Counter,
    );
    for (kind, counter) in [
        ("credentials", &AUTH.login_failures),
        ("token", &AUTH.token_failures),
        ("denied", &AUTH.denied),
    ] {
        out.sample(
            "berth_auth_failures_total",
            &[("kind", kind)],
            counter.get().into(),
        );
    }
}

fn render_gc(out: &mut Exposition) {
    out.counter(
        "berth_gc_runs_total",
        "Garbage collection runs finished (successful or not).",
        GC.runs.get(),
    );
    out.counter(
        "berth_gc_failures_total",
        "Garbage collection runs that failed.",
        GC.failures.get(),
    );
    out.family(
        "berth_gc_duration_seconds",
        "How long garbage collection runs took.",
        Kind::Histogram,
    );
    out.histogram("berth_gc_duration_seconds", &[], &GC.duration);
    out.counter(
        "berth_gc_freed_bytes_total",
        "Bytes of blobs deleted by garbage collection.",
        GC.bytes_freed.get(),
    );
    out.counter(
        "berth_gc_deleted_blobs_total",
        "Blobs deleted by garbage collection.",
        GC.blobs_deleted.get(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    #[async_trait]
    impl MetricsSource for Fixed {
        async fn collect(&self, out: &mut Exposition) {
            out.family(
                "berth_project_storage_bytes",
                "Bytes per project.",
                Kind::Gauge,
            );
            out.sample("berth_project_storage_bytes", &[("project", "team")], 42);
        }
    }

    #[tokio::test]
    async fn a_scrape_has_the_statics_and_every_registered_source() {
        let metrics = Metrics::new();
        metrics.add_source(Arc::new(Fixed));
        AUTH.tokens_issued.inc();
        let text = metrics.render().await;
        assert!(
            text.contains("# TYPE berth_tokens_issued_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("berth_project_storage_bytes{project=\"team\"} 42\n"),
            "{text}"
        );
        assert!(
            text.contains("berth_gc_duration_seconds_count 0\n"),
            "{text}"
        );
    }
}
