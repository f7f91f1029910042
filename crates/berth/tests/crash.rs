//! Crash test for blob group commit (issue 13): SIGKILL the real `berth serve` while sixteen
//! clients push images concurrently, restart it on the same data directory, and find every
//! image it acknowledged byte-identical; three kills, one data directory.
//!
//! SIGKILL leaves the page cache alone, so this cannot show what a power cut would lose. It
//! shows what a process dying at any moment can leave behind: a blob name before all its
//! bytes, an answer before the commit it reports, metadata naming a missing or partial blob,
//! or debris that spoils a later push of the same digest.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_core::{Algorithm, Digest};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

/// Clients pushing at once: enough that blob commits meet in the same flush.
const CLIENTS: usize = 16;
/// Kills, each followed by a restart on the same data directory.
const ROUNDS: u64 = 3;
/// A kill waits for at least this many images acknowledged in its round: no round is empty.
const MIN_ACKED_PER_ROUND: usize = 4;
/// Overall, so the test cannot pass by checking next to nothing.
const MIN_ACKED: usize = 10;
/// A live server answers well within this; longer is a hang, and a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_image_survives_sigkill_during_concurrent_pushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Where in a push each kill lands should differ from run to run; printed, so a failing
    // run's timing can be tried again.
    let luck: u64 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos()
        .into();
    println!("kill timing seed {luck}");

    let mut acked: Vec<Pushed> = Vec::new();
    let mut unanswered: Vec<Pushed> = Vec::new();
    let mut resume: Vec<Recipe> = (0..CLIENTS)
        .map(|client| Recipe { client, serial: 0 })
        .collect();
    let mut batched = false;
    let mut commits_cut_off = 0;
    for round in 0..=ROUNDS {
        let began = Instant::now();
        let mut server = Server::start(&data, dir.path().join(format!("berth-{round}.log"))).await;
        let stored = check_survivors(&server, &acked, &unanswered).await;
        if round > 0 {
            println!(
                "round {round}: restarted; {} acknowledged images identical, {stored} of {} \
                 cut-off manifest PUTs stored (identical); {:.1} s",
                acked.len(),
                unanswered.len(),
                began.elapsed().as_secs_f64()
            );
            // The registry still takes pushes after the crash: one more image, from a
            // client of its own, checked now and after every later kill.
            let pushed = Pushed::new(
                Recipe {
                    client: CLIENTS,
                    serial: round,
                },
                round,
            );
            let image = pushed.recipe.generate().await;
            push_image(&server.http, &pushed, &image, &mut false)
                .await
                .unwrap_or_else(|e| panic!("push after restart: {e:?}\n{}", server.log_tail()));
            verify(&server.http, &pushed)
                .await
                .unwrap_or_else(|e| panic!("push after restart: {e}"));
            acked.push(pushed);
        }
        if round == ROUNDS {
            break;
        }

        let killed = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = resume
            .iter()
            .map(|&first| {
                let client = PushingClient {
                    http: server.http.clone(),
                    round,
                    killed: killed.clone(),
                    acked: count.clone(),
                };
                tokio::spawn(client.run(first))
            })
            .collect();
        let pushing = Instant::now();
        tokio::time::sleep(Duration::from_millis(1500 + mix(luck ^ round) % 1500)).await;
        while count.load(Ordering::SeqCst) < MIN_ACKED_PER_ROUND
            && !clients.iter().any(|c| c.is_finished())
        {
            assert!(
                pushing.elapsed() < Duration::from_secs(20),
                "round {round}: only {} images acknowledged in 20 s",
                count.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (flushed, flush_rounds) = server.flush_counters().await;
        batched |= flushed > flush_rounds;
        killed.store(true, Ordering::SeqCst);
        server.sigkill();
        let killed_after = pushing.elapsed();

        let acked_before = acked.len();
        let unanswered_before = unanswered.len();
        let mut cut_off = std::collections::BTreeMap::<&str, usize>::new();
        for (client, task) in clients.into_iter().enumerate() {
            let run = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap_or_else(|_| panic!("client {client} still running 10 s after the kill"))
                .expect("client task");
            let run = run.unwrap_or_else(|e| panic!("client {client}: {e}\n{}", server.log_tail()));
            acked.extend(run.acked);
            unanswered.extend(run.unanswered);
            resume[client] = run.resume;
            if let Some(request) = run.cut_off {
                *cut_off.entry(request).or_default() += 1;
            }
        }
        commits_cut_off += cut_off.get("PUT blob").copied().unwrap_or(0);
        println!(
            "round {round}: killed after {:.2} s: {} images acknowledged, {} manifest PUTs \
             cut off; {flushed} blobs committed in {flush_rounds} flush rounds; requests cut \
             off: {cut_off:?}",
            killed_after.as_secs_f64(),
            acked.len() - acked_before,
            unanswered.len() - unanswered_before,
        );
    }
    assert!(
        acked.len() >= MIN_ACKED,
        "only {} images acknowledged",
        acked.len()
    );
    // The moment that matters most: some kill landed while blobs were being committed.
    assert!(commits_cut_off > 0, "no kill cut off a blob's PUT ?digest=");
    assert!(
        batched,
        "no flush round ever committed two blobs: group commit was not exercised"
    );
}

/// Check everything acknowledged so far, and the images whose manifest PUT a kill cut off
/// (stored or not, either is right; stored means identical). Returns how many of those
/// were stored.
async fn check_survivors(server: &Server, acked: &[Pushed], unanswered: &[Pushed]) -> usize {
    let http = &server.http;
    let checks = acked
        .iter()
        .map(|pushed| (pushed, true))
        .chain(unanswered.iter().map(|pushed| (pushed, false)));
    let outcomes: Vec<_> = futures_util::stream::iter(checks)
        .map(|(pushed, acknowledged)| async move {
            let outcome = if acknowledged {
                verify(http, pushed).await.map(|()| true)
            } else {
                verify_if_stored(http, pushed).await
            };
            outcome.map_err(|e| format!("{}:{}: {e}", pushed.repo, pushed.tag))
        })
        .buffered(8)
        .collect()
        .await;
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} images damaged after the restart, first ones:\n{}\n{}",
        failures.len(),
        outcomes.len(),
        failures
            .iter()
            .take(5)
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        server.log_tail()
    );
    outcomes[acked.len()..]
        .iter()
        .filter(|o| matches!(o, Ok(true)))
        .count()
}

/// The manifest, by tag and by digest, is the exact bytes pushed under the digest pushed,
/// and so is every blob it names.
async fn verify(http: &Http, pushed: &Pushed) -> Result<(), String> {
    let image = pushed.recipe.generate().await;
    let by_tag = get_manifest(http, &pushed.repo, &pushed.tag).await?;
    check_manifest(&by_tag, &image, "by tag")?;
    let by_digest = get_manifest(http, &pushed.repo, &image.manifest.digest).await?;
    check_manifest(&by_digest, &image, "by digest")?;
    for blob in image.layers.iter().chain([&image.config]) {
        let got = http
            .send(
                Method::GET,
                &format!("/v2/{}/blobs/{}", pushed.repo, blob.digest),
                &[],
                Bytes::new(),
            )
            .await
            .map_err(|e| format!("{e:?}"))?;
        if got.status != StatusCode::OK {
            return Err(format!("blob {}: {}", blob.digest, got.status));
        }
        if got.body != blob.bytes {
            return Err(format!(
                "blob {}: {} bytes differ from the {} pushed",
                blob.digest,
                got.body.len(),
                blob.bytes.len()
            ));
        }
    }
    Ok(())
}

/// An image whose manifest PUT got no answer: absent, or else intact. `Ok(true)` if stored.
async fn verify_if_stored(http: &Http, pushed: &Pushed) -> Result<bool, String> {
    let by_tag = get_manifest(http, &pushed.repo, &pushed.tag).await?;
    match by_tag.status {
        StatusCode::NOT_FOUND => Ok(false),
        _ => verify(http, pushed).await.map(|()| true),
    }
}

async fn get_manifest(http: &Http, repo: &str, reference: &str) -> Result<Answer, String> {
    http.send(
        Method::GET,
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("accept", OCI_MANIFEST)],
        Bytes::new(),
    )
    .await
    .map_err(|e| format!("{e:?}"))
}

fn check_manifest(got: &Answer, image: &Image, how: &str) -> Result<(), String> {
    if got.status != StatusCode::OK {
        return Err(format!("manifest {how}: {}", got.status));
    }
    if got.body != image.manifest.bytes {
        return Err(format!("manifest {how}: bytes differ from those pushed"));
    }
    let digest = got.header("docker-content-digest");
    if digest != Some(image.manifest.digest.as_str()) {
        return Err(format!(
            "manifest {how}: Docker-Content-Digest {digest:?}, pushed {}",
            image.manifest.digest
        ));
    }
    Ok(())
}

/// One client's loop of pushes during a round.
struct PushingClient {
    http: Http,
    round: u64,
    /// Set just before the kill: from then on, requests that get no answer are expected.
    killed: Arc<AtomicBool>,
    /// Images acknowledged this round, by every client.
    acked: Arc<AtomicUsize>,
}

/// What a client did in a round.
struct ClientRun {
    acked: Vec<Pushed>,
    /// The image whose manifest PUT the kill cut off, if its push got that far.
    unanswered: Option<Pushed>,
    /// The image to push first next round: the one the kill interrupted, so that its blobs
    /// are pushed again over whatever the kill left of them (under a new tag).
    resume: Recipe,
    /// The kind of request the kill cut off, if any.
    cut_off: Option<&'static str>,
}

impl PushingClient {
    /// Push images one after another until the server is killed. `Err` for anything the
    /// server must not do: a wrong answer at any time, no answer before the kill.
    async fn run(self, first: Recipe) -> Result<ClientRun, String> {
        let mut recipe = first;
        let mut acked = Vec::new();
        loop {
            if self.killed.load(Ordering::SeqCst) {
                return Ok(ClientRun {
                    acked,
                    unanswered: None,
                    resume: recipe,
                    cut_off: None,
                });
            }
            let pushed = Pushed::new(recipe, self.round);
            let image = recipe.generate().await;
            let mut manifest_sent = false;
            match push_image(&self.http, &pushed, &image, &mut manifest_sent).await {
                Ok(()) => {
                    acked.push(pushed);
                    self.acked.fetch_add(1, Ordering::SeqCst);
                    recipe.serial += 1;
                }
                Err(Failure::Transport { request, .. }) if self.killed.load(Ordering::SeqCst) => {
                    return Ok(ClientRun {
                        acked,
                        unanswered: manifest_sent.then_some(pushed),
                        resume: recipe,
                        cut_off: Some(request),
                    });
                }
                Err(Failure::Transport { error, .. }) => {
                    return Err(format!("{error} (before the kill)"));
                }
                Err(Failure::Answer(e)) => return Err(e),
            }
        }
    }
}

/// Push as docker does: per blob `HEAD`, then `POST`, one `PATCH` with the whole blob and
/// `PUT ?digest=` if missing; then the manifest by tag. `Ok` only for the manifest's 201
/// with its digest: the acknowledgement. `manifest_sent` says whether the push got as far
/// as sending the manifest.
async fn push_image(
    http: &Http,
    pushed: &Pushed,
    image: &Image,
    manifest_sent: &mut bool,
) -> Result<(), Failure> {
    let repo = &pushed.repo;
    for blob in image.layers.iter().chain([&image.config]) {
        push_blob(http, repo, blob).await?;
    }
    *manifest_sent = true;
    let what = format!("PUT manifest {repo}:{}", pushed.tag);
    let answer = http
        .send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{}", pushed.tag),
            &[("content-type", OCI_MANIFEST)],
            image.manifest.bytes.clone(),
        )
        .await?
        .want(StatusCode::CREATED, &what)?;
    let digest = answer.header("docker-content-digest");
    if digest != Some(image.manifest.digest.as_str()) {
        return Err(Failure::Answer(format!(
            "{what}: Docker-Content-Digest {digest:?}, pushed {}",
            image.manifest.digest
        )));
    }
    Ok(())
}

async fn push_blob(http: &Http, repo: &str, blob: &Blob) -> Result<(), Failure> {
    let what = format!("{repo}@{}", blob.digest);
    let head = http
        .send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{}", blob.digest),
            &[],
            Bytes::new(),
        )
        .await?;
    match head.status {
        StatusCode::OK => return Ok(()),
        StatusCode::NOT_FOUND => {}
        other => return Err(Failure::Answer(format!("HEAD {what}: {other}"))),
    }
    let started = http
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Bytes::new(),
        )
        .await?
        .want(StatusCode::ACCEPTED, &format!("POST upload for {what}"))?;
    let patched = http
        .send(
            Method::PATCH,
            &started.location()?,
            &[("content-type", "application/octet-stream")],
            blob.bytes.clone(),
        )
        .await?
        .want(StatusCode::ACCEPTED, &format!("PATCH {what}"))?;
    let location = patched.location()?;
    let separator = if location.contains('?') { '&' } else { '?' };
    http.send(
        Method::PUT,
        &format!("{location}{separator}digest={}", blob.digest),
        &[],
        Bytes::new(),
    )
    .await?
    .want(StatusCode::CREATED, &format!("PUT ?digest= {what}"))?;
    Ok(())
}

/// What one image is made of. Its bytes are generated from it again for every check, so
/// the test holds no image in memory between push and check.
#[derive(Clone, Copy, Debug)]
struct Recipe {
    client: usize,
    serial: u64,
}

/// An image pushed (or being pushed): its recipe and where.
#[derive(Clone, Debug)]
struct Pushed {
    recipe: Recipe,
    repo: String,
    tag: String,
}

impl Pushed {
    /// Each client pushes into a repository of its own, every image under a tag of its own
    /// (an interrupted image pushed again next round gets a new one).
    fn new(recipe: Recipe, round: u64) -> Pushed {
        Pushed {
            recipe,
            repo: format!("crash/client-{:02}", recipe.client),
            tag: format!("round{round}-serial{}", recipe.serial),
        }
    }
}

struct Blob {
    bytes: Bytes,
    digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        let digest = Digest::of(Algorithm::Sha256, &bytes).to_string();
        Blob {
            bytes: bytes.into(),
            digest,
        }
    }
}

struct Image {
    layers: Vec<Blob>,
    config: Blob,
    manifest: Blob,
}

impl Recipe {
    /// Generating and hashing some MiB is CPU work: off the runtime's two workers.
    async fn generate(self) -> Image {
        tokio::task::spawn_blocking(move || self.image())
            .await
            .expect("generate image")
    }

    /// Three layers of 256 KiB to 1 MiB, a config and an OCI manifest, all distinct per
    /// recipe except layer 0, which every client's image of the same serial shares: clients
    /// move at about the same pace, so the same digest is committed into different
    /// repositories at nearly the same moment (and the commit that finds it already stored
    /// keeps that copy).
    fn image(self) -> Image {
        let client = self.client as u64;
        let seeds = [
            seed(&[0, self.serial]),
            seed(&[1, client, self.serial]),
            seed(&[2, client, self.serial]),
        ];
        let layers: Vec<Blob> = seeds
            .iter()
            .map(|&s| {
                let len = 256 * 1024 + mix(s) % (768 * 1024);
                Blob::new(noise(s, usize::try_from(len).expect("layer size")))
            })
            .collect();
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "client": client.to_string(), "serial": self.serial.to_string() } },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config = Blob::new(config.to_string().into_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config.digest, "size": config.bytes.len() },
            "layers": layers.iter().map(|l| json!({
                "mediaType": OCI_LAYER, "digest": l.digest, "size": l.bytes.len(),
            })).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(manifest.to_string().into_bytes());
        Image {
            layers,
            config,
            manifest,
        }
    }
}

/// splitmix64's finalizer: a well-spread 64-bit value from any 64-bit value.
fn mix(x: u64) -> u64 {
    let mut x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0, |acc, &part| mix(acc ^ part))
}

/// `len` pseudo-random bytes from `seed` (xorshift64*): incompressible, distinct per seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = mix(seed) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        bytes.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// The real binary, serving one data directory on a free loopback port (open mode, where
/// loopback clients may push).
struct Server {
    child: Child,
    http: Http,
    log: PathBuf,
}

impl Server {
    async fn start(data: &Path, log: PathBuf) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let out = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        // This test's settings only, none from the environment it runs in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BERTH_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("serve")
            .env("BERTH_ADDR", format!("127.0.0.1:{port}"))
            .env("BERTH_DATA_DIR", data)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start berth");
        let mut server = Server {
            child,
            http: Http::new(port),
            log,
        };
        let began = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().expect("berth status") {
                panic!("berth exited at start ({status}):\n{}", server.log_tail());
            }
            let ready = server
                .http
                .send(Method::GET, "/v2/", &[], Bytes::new())
                .await;
            if ready.is_ok_and(|answer| answer.status == StatusCode::OK) {
                return server;
            }
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "berth not ready in 60 s:\n{}",
                server.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), and make sure that is what ended it: a
    /// server that had died by itself would be a failure of its own.
    fn sigkill(&mut self) {
        self.child.kill().expect("kill berth");
        let status = self.child.wait().expect("wait for berth");
        assert_eq!(
            status.signal(),
            Some(9),
            "berth ended by itself ({status}), not by the kill:\n{}",
            self.log_tail()
        );
    }

    /// Blob files committed so far and the flush rounds that committed them (`/metrics`).
    async fn flush_counters(&self) -> (u64, u64) {
        let metrics = self
            .http
            .send(Method::GET, "/metrics", &[], Bytes::new())
            .await
            .and_then(|answer| answer.want(StatusCode::OK, "GET /metrics"))
            .expect("GET /metrics");
        let text = String::from_utf8_lossy(&metrics.body);
        let counter = |name: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        };
        (
            counter("berth_blob_flushed_total"),
            counter("berth_blob_flush_rounds_total"),
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- end of {} ---\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failing test must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a request did not get the answer it wanted.
#[derive(Debug)]
enum Failure {
    /// The server answered, wrongly (or not in time): a failure whether killed or not.
    Answer(String),
    /// No answer at all (refused, reset, cut off): expected once the server is killed.
    Transport {
        /// Which step of a push it was ([`request_kind`]).
        request: &'static str,
        error: String,
    },
}

/// The step of a push a request is, for the report of where kills landed.
fn request_kind(method: &Method, url: &str) -> &'static str {
    match *method {
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT if url.contains("/manifests/") => "PUT manifest",
        Method::PUT => "PUT blob",
        _ => "GET",
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn want(self, want: StatusCode, what: &str) -> Result<Answer, Failure> {
        if self.status == want {
            return Ok(self);
        }
        Err(Failure::Answer(format!(
            "{what}: expected {want}, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        )))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn location(&self) -> Result<String, Failure> {
        self.header("location")
            .map(str::to_owned)
            .ok_or_else(|| Failure::Answer(format!("{} without Location", self.status)))
    }
}

/// HTTP/1.1 to one server, over pooled keep-alive connections.
#[derive(Clone)]
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    fn new(port: u16) -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Send, and read the whole answer. `target` is a path or an upload's `Location`.
    async fn send(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Answer, Failure> {
        let url = if target.starts_with("http://") {
            target.to_owned()
        } else {
            format!("{}{target}", self.base)
        };
        let what = format!("{method} {url}");
        let transport = |error: String| Failure::Transport {
            request: request_kind(&method, &url),
            error,
        };
        let mut request = Request::builder().method(method.clone()).uri(&url);
        if ![Method::GET, Method::HEAD].contains(&method) {
            request = request.header("content-length", body.len());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).expect("request");
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| transport(format!("{what}: {e:?}")))?;
            let (head, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| transport(format!("{what}: answer cut off: {e}")))?
                .to_bytes();
            Ok(Answer {
                status: head.status,
                headers: head.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| Failure::Answer(format!("{what}: no answer in {REQUEST_TIMEOUT:?}")))?
    }
}
