//! The TLS server in-process on 127.0.0.1:0 with the real router, certificates made by the
//! `openssl` command line, and a rustls client: HTTP/2 by ALPN, reload of a certificate
//! swapped on disk, mutual TLS, and the start-up errors for unusable files.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use berth_api::{AppState, ExternalUrlConfig};
use berth_auth::{AuthMode, Authorizer};
use berth_registry::{Registry, RegistryOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::*;

/// How often the test server polls its files (the binary uses [`RELOAD_POLL`]).
const TEST_POLL: Duration = Duration::from_millis(50);

/// A directory of keys and certificates made with `openssl`: CAs, and certificates they
/// sign, each as `<name>.crt` + `<name>.key`.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Run `openssl` in the directory; `args` is split at spaces (names here have none).
    fn openssl(&self, args: &str) {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl (is it installed?)");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A self-signed CA: `<name>.crt`, `<name>.key`.
    fn ca(&self, name: &str) -> &Pki {
        self.openssl(&format!(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
             -subj /CN={name} -keyout {name}.key -out {name}.crt \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ));
        self
    }

    /// A certificate signed by `ca`: for the server (127.0.0.1 and localhost) or a client.
    fn issue(&self, ca: &str, name: &str, client: bool, serial: u32) -> &Pki {
        let usage = if client { "clientAuth" } else { "serverAuth" };
        std::fs::write(
            self.path(&format!("{name}.ext")),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            ),
        )
        .expect("write extensions");
        self.openssl(&format!(
            "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN={name} \
             -keyout {name}.key -out {name}.csr"
        ));
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -set_serial {serial} -days 2 \
             -extfile {name}.ext -out {name}.crt"
        ));
        self
    }

    fn files(&self, name: &str, client_ca: Option<&str>) -> TlsFiles {
        TlsFiles {
            certificate: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
            client_ca: client_ca.map(|ca| self.path(&format!("{ca}.crt"))),
        }
    }

    /// The DER of the first certificate in `<name>.crt`.
    fn der(&self, name: &str) -> Vec<u8> {
        CertificateDer::pem_file_iter(self.path(&format!("{name}.crt")))
            .expect("open")
            .next()
            .expect("one certificate")
            .expect("valid")
            .to_vec()
    }

    /// Replace `<to>.crt` and `<to>.key` with `<from>`'s, each by an atomic rename (as
    /// certificate managers do).
    fn swap(&self, from: &str, to: &str) {
        for ext in ["crt", "key"] {
            let tmp = self.path(&format!("{to}.{ext}.tmp"));
            std::fs::copy(self.path(&format!("{from}.{ext}")), &tmp).expect("copy");
            std::fs::rename(&tmp, self.path(&format!("{to}.{ext}"))).expect("rename");
        }
    }
}

/// berth's whole router over TLS on 127.0.0.1:0; stopped when dropped.
struct Server {
    addr: SocketAddr,
    _data: TempDir,
    _stop: oneshot::Sender<()>,
}

async fn start(files: TlsFiles) -> Server {
    let data = tempfile::tempdir().expect("tempdir");
    let meta = berth_meta::SqliteStore::open(&data.path().join("metadata.db"))
        .await
        .expect("open metadata");
    let blobs = berth_storage::FsBlobStore::open(data.path()).expect("open blobs");
    let registry = Registry::new(Arc::new(meta), Arc::new(blobs), RegistryOptions::default());
    start_router(files, data, |addr| {
        let mut state = AppState::new(
            Arc::new(registry),
            Arc::new(Authorizer::new(AuthMode::Open {
                anonymous_write: false,
            })),
        );
        state.external = Arc::new(ExternalUrlConfig {
            tls: true,
            trusted_proxies: Vec::new(),
            listen_addr: addr,
        });
        berth_api::app(state)
    })
    .await
}

/// Any router, built for its listen address, served over TLS.
async fn start_router(
    files: TlsFiles,
    data: TempDir,
    app: impl FnOnce(SocketAddr) -> Router,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let initial = load(&files).expect("load TLS files");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        app(addr),
        files,
        initial,
        TEST_POLL,
        crate::server::Limits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        _data: data,
        _stop: stop,
    }
}

/// A client trusting `ca`, offering `h2` and `http/1.1`, with an optional client certificate.
fn connector(pki: &Pki, ca: &str, identity: Option<&str>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(pki.path(&format!("{ca}.crt"))).expect("ca") {
        roots.add(certificate.expect("valid")).expect("add root");
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let chain = CertificateDer::pem_file_iter(pki.path(&format!("{name}.crt")))
                .expect("chain")
                .collect::<Result<Vec<_>, _>>()
                .expect("valid chain");
            let key = PrivateKeyDer::from_pem_file(pki.path(&format!("{name}.key"))).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

async fn connect(addr: SocketAddr, connector: &TlsConnector) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

fn request() -> Request<Empty<Bytes>> {
    Request::get("https://localhost/v2/")
        .body(Empty::new())
        .expect("request")
}

/// `GET /v2/` over HTTP/2 on an established connection.
async fn get_v2_h2(stream: TlsStream<TcpStream>) -> Result<StatusCode, String> {
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("{e:?}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request())
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(response.status())
}

/// Connect and `GET /v2/` over HTTP/2: the status, or why it failed (handshake included;
/// with TLS 1.3 a refused client certificate shows up after the client's handshake ends).
async fn try_get_v2(addr: SocketAddr, connector: &TlsConnector) -> Result<StatusCode, String> {
    let stream = connect(addr, connector).await.map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), get_v2_h2(stream))
        .await
        .map_err(|_| "timed out".to_string())?
}

/// The leaf certificate the server presents now.
async fn served_certificate(addr: SocketAddr, connector: &TlsConnector) -> Vec<u8> {
    let stream = connect(addr, connector).await.expect("handshake");
    let (_, connection) = stream.get_ref();
    connection.peer_certificates().expect("server certificate")[0].to_vec()
}

async fn wait_for_certificate(addr: SocketAddr, connector: &TlsConnector, expected: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if served_certificate(addr, connector).await == expected {
            return true;
        }
        tokio::time::sleep(TEST_POLL).await;
    }
    false
}

#[tokio::test]
async fn get_v2_over_tls_negotiates_http2() {
    let pki = Pki::new();
    pki.ca("ca").issue("ca", "server", false, 1);
    let server = start(pki.files("server", None)).await;

    let stream = connect(server.addr, &connector(&pki, "ca", None, BOTH))
        .await
        .expect("handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(get_v2_h2(stream).await, Ok(StatusCode::OK));
}

#[tokio::test]
async fn an_http1_only_client_is_served_too() {
    let pki = Pki::new();
    pki.ca("ca").issue("ca", "server", false, 1);
    let server = start(pki.files("server", None)).await;

    let client = connector(&pki, "ca", None, &[b"http/1.1"]);
    let stream = connect(server.addr, &client).await.expect("handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1.1");
    tokio::spawn(connection);
    let mut request = request();
    request
        .headers_mut()
        .insert("host", "localhost".parse().expect("host"));
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
}

/// The loopback rule for anonymous writes needs the peer address: it must reach the router
/// over TLS as it does over plain HTTP.
#[tokio::test]
async fn the_peer_address_reaches_the_router() {
    let pki = Pki::new();
    pki.ca("ca").issue("ca", "server", false, 1);
    let router = |_| {
        Router::new().route(
            "/v2/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.to_string()
            }),
        )
    };
    let data = tempfile::tempdir().expect("tempdir");
    let server = start_router(pki.files("server", None), data, router).await;

    let stream = connect(server.addr, &connector(&pki, "ca", None, BOTH))
        .await
        .expect("handshake");
    let client_addr = stream.get_ref().0.local_addr().expect("local addr");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2");
    tokio::spawn(connection);
    let response = sender.send_request(request()).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, client_addr.to_string());
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_fails_the_handshake() {
    let pki = Pki::new();
    pki.ca("ca").ca("other-ca").issue("ca", "server", false, 1);
    let server = start(pki.files("server", None)).await;

    let err = connect(server.addr, &connector(&pki, "other-ca", None, BOTH))
        .await
        .expect_err("untrusted");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // The server is still fine for everyone else.
    let ok = try_get_v2(server.addr, &connector(&pki, "ca", None, BOTH)).await;
    assert_eq!(ok, Ok(StatusCode::OK));
}

#[tokio::test]
async fn a_certificate_swapped_on_disk_is_served_without_restart() {
    let pki = Pki::new();
    pki.ca("ca")
        .issue("ca", "server", false, 1)
        .issue("ca", "renewed", false, 2);
    let server = start(pki.files("server", None)).await;
    let client = connector(&pki, "ca", None, BOTH);
    let first = pki.der("server");
    assert_eq!(served_certificate(server.addr, &client).await, first);

    pki.swap("renewed", "server");
    let renewed = pki.der("renewed");
    assert_ne!(renewed, first);
    assert!(
        wait_for_certificate(server.addr, &client, &renewed).await,
        "the renewed certificate was not served within 10 s"
    );
    assert_eq!(try_get_v2(server.addr, &client).await, Ok(StatusCode::OK));
}

#[tokio::test]
async fn a_broken_file_on_disk_keeps_the_previous_certificate() {
    let pki = Pki::new();
    pki.ca("ca")
        .issue("ca", "server", false, 1)
        .issue("ca", "renewed", false, 2);
    let server = start(pki.files("server", None)).await;
    let client = connector(&pki, "ca", None, BOTH);
    let first = pki.der("server");

    std::fs::write(
        pki.path("server.crt"),
        "-----BEGIN CERTIFICATE-----\ntruncated\n",
    )
    .expect("write");
    // A key that does not match the certificate is refused as well.
    std::fs::copy(pki.path("renewed.key"), pki.path("server.key")).expect("copy");
    tokio::time::sleep(TEST_POLL * 10).await;
    assert_eq!(served_certificate(server.addr, &client).await, first);
    assert_eq!(try_get_v2(server.addr, &client).await, Ok(StatusCode::OK));

    // Fixed on disk: picked up, so the watcher survived the failure.
    pki.swap("renewed", "server");
    assert!(wait_for_certificate(server.addr, &client, &pki.der("renewed")).await);
}

#[tokio::test]
async fn mutual_tls_accepts_only_clients_with_a_certificate_from_the_client_ca() {
    let pki = Pki::new();
    pki.ca("ca")
        .ca("clients")
        .ca("stranger-ca")
        .issue("ca", "server", false, 1)
        .issue("clients", "alice", true, 10)
        .issue("stranger-ca", "mallory", true, 11);
    let server = start(pki.files("server", Some("clients"))).await;

    let anonymous = try_get_v2(server.addr, &connector(&pki, "ca", None, BOTH)).await;
    let err = anonymous.expect_err("no client certificate");
    assert!(err.contains("CertificateRequired"), "{err}");
    let stranger = try_get_v2(server.addr, &connector(&pki, "ca", Some("mallory"), BOTH)).await;
    let err = stranger.expect_err("certificate from another CA");
    assert!(
        err.contains("UnknownCA") || err.contains("BadCertificate"),
        "{err}"
    );

    let alice = try_get_v2(server.addr, &connector(&pki, "ca", Some("alice"), BOTH)).await;
    assert_eq!(alice, Ok(StatusCode::OK));
}

fn load_error(files: &TlsFiles) -> String {
    load(files).expect_err("must not load").to_string()
}

#[test]
fn unusable_files_are_named_in_the_error() {
    let pki = Pki::new();
    pki.ca("ca")
        .issue("ca", "server", false, 1)
        .issue("ca", "other", false, 2);
    let good = pki.files("server", Some("ca"));
    assert!(load(&good).is_ok());
    let with = |f: &dyn Fn(&mut TlsFiles)| {
        let mut files = good.clone();
        f(&mut files);
        files
    };
    let shown = |p: &Path| p.display().to_string();

    let missing = with(&|f| f.certificate = pki.path("missing.crt"));
    let err = load_error(&missing);
    assert!(
        err.contains("cannot read the TLS certificate file")
            && err.contains(&shown(&missing.certificate)),
        "{err}"
    );

    // A key where the certificate belongs: no certificate in it.
    let swapped = with(&|f| f.certificate = pki.path("server.key"));
    let err = load_error(&swapped);
    assert!(
        err.contains("no PEM certificate") && err.contains(&shown(&swapped.certificate)),
        "{err}"
    );

    let no_key = with(&|f| f.key = pki.path("server.crt"));
    let err = load_error(&no_key);
    assert!(
        err.contains("no PEM private key") && err.contains(&shown(&no_key.key)),
        "{err}"
    );

    let mismatch = with(&|f| f.key = pki.path("other.key"));
    let err = load_error(&mismatch);
    assert!(
        err.contains("not the private key of the first certificate")
            && err.contains(&shown(&mismatch.key)),
        "{err}"
    );

    std::fs::write(
        pki.path("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\n!!secret!!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let bad_ca = with(&|f| f.client_ca = Some(pki.path("garbage.pem")));
    let err = load_error(&bad_ca);
    assert!(
        err.contains("client CA") && err.contains("garbage.pem"),
        "{err}"
    );
    assert!(
        !err.contains("secret"),
        "the file's content must not be quoted: {err}"
    );

    let no_ca = with(&|f| f.client_ca = Some(pki.path("missing-ca.crt")));
    assert!(load_error(&no_ca).contains("missing-ca.crt"));
}
