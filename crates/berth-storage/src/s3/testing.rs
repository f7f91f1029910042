//! Real S3-compatible servers on 127.0.0.1 for tests: `s3s-fs` and `moto_server`, each
//! started on a free port with an empty bucket and stopped when dropped. A server that
//! cannot start fails the test (run `scripts/install-deps.sh`); it is never skipped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::S3Settings;

/// Which server implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3ServerKind {
    /// `s3s-fs` (Rust, crates.io): a bucket is a directory.
    S3sFs,
    /// `moto_server` (Python): AWS's behaviour as the moto project models it.
    Moto,
}

/// A running server with one bucket.
pub struct S3Server {
    pub kind: S3ServerKind,
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    child: Child,
    /// The server's data directory and log file, removed on drop.
    _dir: tempfile::TempDir,
    log: PathBuf,
}

const ACCESS_KEY: &str = "berth-test-access";
const SECRET_KEY: &str = "berth-test-secret-key";
const BUCKET: &str = "berth-test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// `name` on PATH, else in cargo's bin directory.
fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.push("/usr/local/cargo/bin".into());
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

impl S3Server {
    /// Start a server and create its bucket. Panics (failing the test) if it cannot.
    pub fn start(kind: S3ServerKind) -> S3Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("server.log");
        let port = free_port();
        let (program, args): (&str, Vec<String>) = match kind {
            S3ServerKind::S3sFs => {
                let root = dir.path().join("root");
                // s3s-fs serves each sub-directory of its root as a bucket.
                std::fs::create_dir_all(root.join(BUCKET)).expect("bucket directory");
                (
                    "s3s-fs",
                    vec![
                        "--host".into(),
                        "127.0.0.1".into(),
                        "--port".into(),
                        port.to_string(),
                        "--access-key".into(),
                        ACCESS_KEY.into(),
                        "--secret-key".into(),
                        SECRET_KEY.into(),
                        root.display().to_string(),
                    ],
                )
            }
            S3ServerKind::Moto => (
                "moto_server",
                vec![
                    "-H".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.to_string(),
                ],
            ),
        };
        let path = find_program(program)
            .unwrap_or_else(|| panic!("{program} is not installed: run scripts/install-deps.sh"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&path)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let mut server = S3Server {
            kind,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: BUCKET.into(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            child,
            _dir: dir,
            log,
        };
        server.wait_until_listening(SocketAddr::from(([127, 0, 0, 1], port)));
        if kind == S3ServerKind::Moto {
            server.create_moto_bucket();
        }
        server
    }

    fn wait_until_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{:?} exited ({status}) before listening on {addr}:\n{}",
                    self.kind,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{:?} did not listen on {addr} within 60 s:\n{}",
                    self.kind,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// moto accepts an unsigned `PUT /<bucket>`.
    fn create_moto_bucket(&self) {
        let url = format!("{}/{}", self.endpoint, self.bucket);
        let status = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    runtime.block_on(async {
                        reqwest::Client::new()
                            .put(&url)
                            .send()
                            .await
                            .map(|r| r.status())
                    })
                })
                .join()
                .expect("bucket creation thread")
        });
        match status {
            Ok(s) if s.is_success() => {}
            other => panic!("cannot create the moto bucket at {url}: {other:?}"),
        }
    }

    /// Settings for a store on this server's bucket, under `prefix`.
    pub fn settings(&self, prefix: &str) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            bucket: self.bucket.clone(),
            prefix: prefix.into(),
            path_style: true,
            access_key: Some(self.access_key.clone()),
            secret_key: Some(self.secret_key.clone()),
            redirect: true,
            allow_http: true,
            spool_dir: None,
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
