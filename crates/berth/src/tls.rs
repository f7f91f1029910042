//! HTTPS: the certificate chain, key and optional client CA are read from PEM files into a
//! rustls `ServerConfig` (ring provider, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`); the
//! router is served over it with axum-server; the files are polled and reloaded when they
//! change, without a restart. A file that fails to load keeps the previous certificate in
//! service.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// How often the files are checked for changes (modification time, size, inode).
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// ALPN, in the server's order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("the TLS {what} file {path} is not usable: {reason}")]
    Content {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("the TLS certificate {certificate} and key {key} do not work together: {reason}")]
    Pair {
        certificate: String,
        key: String,
        reason: String,
    },
}

/// The crypto provider: ring, and nothing else is compiled in.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read and check the files; the result is ready to serve.
pub fn load(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let certificates = read_certificates("certificate", &files.certificate)?;
    let key = read_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| pair_error(files, e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let content_error = |reason: String| TlsError::Content {
                what: "client CA",
                path: path.display().to_string(),
                reason,
            };
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates("client CA", path)? {
                roots
                    .add(certificate)
                    .map_err(|e| content_error(format!("not a usable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| content_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certificates, key).map_err(|e| {
        let reason = match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                "the key is not the private key of the first certificate".to_string()
            }
            e => e.to_string(),
        };
        pair_error(files, reason)
    })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn pair_error(files: &TlsFiles, reason: String) -> TlsError {
    TlsError::Pair {
        certificate: files.certificate.display().to_string(),
        key: files.key.display().to_string(),
        reason,
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// Every `CERTIFICATE` section of a PEM file, in order (leaf first for a chain).
fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let content_error = |reason: String| TlsError::Content {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certificates = CertificateDer::pem_slice_iter(&read(what, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content_error(describe_pem_error(&e)))?;
    if certificates.is_empty() {
        return Err(content_error(
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certificates)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read("key", path)?).map_err(|e| TlsError::Content {
        what: "key",
        path: path.display().to_string(),
        reason: match e {
            pem::Error::NoItemsFound => "no PEM private key in it (expected -----BEGIN PRIVATE \
                                         KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
                .into(),
            e => describe_pem_error(&e),
        },
    })
}

/// What went wrong, without quoting the file's content (it may be a key).
fn describe_pem_error(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64".into(),
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => "nothing of the expected kind in it".into(),
        pem::Error::SectionTooLarge => "a PEM section is too large".into(),
        _ => "not valid PEM".into(),
    }
}

/// Serve `app` over TLS on `listener` until `shutdown` resolves, then let the requests in
/// flight finish for up to `limits.shutdown_timeout`. The files are checked every `poll`
/// and reloaded when they change. Connections live under `limits` (`server.rs`); a
/// handshake must finish within `limits.tls_handshake_timeout`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    files: TlsFiles,
    initial: ServerConfig,
    poll: Duration,
    limits: crate::server::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = RustlsConfig::from_config(Arc::new(initial));
    let watcher = tokio::spawn(reload_on_change(files, config.clone(), poll));
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.await;
            handle.graceful_shutdown(Some(limits.shutdown_timeout));
        }
    });
    let acceptor = RustlsAcceptor::new(config)
        .handshake_timeout(limits.tls_handshake_timeout)
        .acceptor(crate::server::ConnectionAcceptor::new(&limits));
    let mut server = axum_server::Server::from_listener(listener)
        .acceptor(acceptor)
        .handle(handle);
    crate::server::harden(server.http_builder());
    let result = server
        .accept_error_handler(|peer: Option<&SocketAddr>, error| match peer {
            // A client that does not trust the certificate, has no client certificate, or
            // speaks plain HTTP to the TLS port: its problem, not the server's.
            Some(peer) if error.kind() == std::io::ErrorKind::TimedOut => {
                berth_metrics::CONNECTIONS.tls_handshake_timeouts.inc();
                tracing::debug!(%peer, "TLS handshake timed out ([http] tls_handshake_timeout)");
            }
            Some(peer) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            None => tracing::warn!(%error, "cannot accept a connection"),
        })
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await;
    watcher.abort();
    result
}

/// What identifies a version of a file without reading it.
type Stamp = Option<(Option<SystemTime>, u64, u64)>;

async fn stamps(files: &TlsFiles) -> Vec<Stamp> {
    let mut out = Vec::with_capacity(3);
    let paths = [
        Some(&files.certificate),
        Some(&files.key),
        files.client_ca.as_ref(),
    ];
    for path in paths.into_iter().flatten() {
        out.push(
            tokio::fs::metadata(path)
                .await
                .ok()
                .map(|m| (m.modified().ok(), m.len(), m.ino())),
        );
    }
    out
}

/// Poll the files; when any changed, load them all and swap the served configuration in one
/// step (connections already open keep theirs). A failed load is logged and the old
/// configuration stays; the next change is tried again.
///
/// The first poll always reloads: the files may have changed between the start-up load and
/// this task's first run, and a stamp taken only now would hide that change for good. Later
/// stamps are taken before each load, so a change during a load is seen at the next poll.
async fn reload_on_change(files: TlsFiles, config: RustlsConfig, poll: Duration) {
    let mut seen: Vec<Stamp> = Vec::new();
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = stamps(&files).await;
        if now == seen {
            continue;
        }
        let first = seen.is_empty();
        seen = now;
        let to_load = files.clone();
        match tokio::task::spawn_blocking(move || load(&to_load)).await {
            Ok(Ok(new)) => {
                config.reload_from_config(Arc::new(new));
                if first {
                    tracing::debug!("TLS files re-read after start-up");
                } else {
                    tracing::info!(
                        certificate = %files.certificate.display(),
                        "TLS files changed: reloaded"
                    );
                }
            }
            Ok(Err(error)) => tracing::warn!(
                %error,
                "TLS files changed but cannot be used; still serving the previous certificate"
            ),
            Err(error) => tracing::warn!(%error, "TLS reload failed"),
        }
    }
}

#[cfg(test)]
mod tests;
