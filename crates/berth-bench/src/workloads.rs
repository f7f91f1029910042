//! The measured workloads, one function per subcommand: each prepares its data (digests are
//! computed before the clock starts), runs, and prints one JSON line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::Result;
use crate::client::{self, Http};
use crate::data::Blob;
use crate::ops::{self, Image};
use crate::stats::{emit, gib_per_s, latency};

/// Poll `GET /v2/` until it answers 200 (1 ms between attempts); the time it took.
pub async fn wait_ready(http: &Http, timeout: Duration) -> Result<Duration> {
    let began = Instant::now();
    loop {
        if let Ok(response) = http.send(Method::GET, "/v2/", &[], client::empty()).await {
            let ok = response.status() == StatusCode::OK;
            let _ = client::collect(response).await;
            if ok {
                return Ok(began.elapsed());
            }
        }
        if began.elapsed() > timeout {
            return Err(format!("{}/v2/ not answering 200 after {timeout:?}", http.base).into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn digest_of_blob(blob: &Blob) -> Result<String> {
    let blob = blob.clone();
    Ok(tokio::task::spawn_blocking(move || blob.digest()).await?)
}

pub async fn push_blob(
    http: &Http,
    repo: &str,
    size: u64,
    chunk: Option<u64>,
    seed: u64,
) -> Result<()> {
    let blob = Blob::new(seed, size);
    let digest = digest_of_blob(&blob).await?;
    let began = Instant::now();
    let patches = match chunk {
        None => {
            ops::push_monolithic(http, repo, &blob, &digest).await?;
            None
        }
        Some(chunk) => Some(ops::push_chunked(http, repo, &blob, &digest, chunk).await?),
    };
    let secs = began.elapsed().as_secs_f64();
    emit(
        json!({
            "op": "push-blob",
            "mode": if chunk.is_some() { "chunked" } else { "monolithic" },
            "bytes": size,
            "chunk": chunk,
            "secs": secs,
            "gib_s": gib_per_s(size, secs),
            "repo": repo,
            "digest": digest,
        }),
        json!({ "patch": patches.as_deref().map(latency) }),
    );
    Ok(())
}

pub async fn pull_blob(http: &Http, repo: &str, digest: &str, verify: bool) -> Result<()> {
    let began = Instant::now();
    let (bytes, got) = ops::pull_blob(http, repo, digest, verify).await?;
    let secs = began.elapsed().as_secs_f64();
    if let Some(got) = got
        && got != digest
    {
        return Err(format!("pulled {repo}@{digest} hashes to {got}").into());
    }
    emit(
        json!({
            "op": "pull-blob",
            "bytes": bytes,
            "secs": secs,
            "gib_s": gib_per_s(bytes, secs),
            "verified": verify,
        }),
        json!({}),
    );
    Ok(())
}

pub async fn push_one_image(
    http: &Http,
    repo: &str,
    tag: &str,
    layers: usize,
    layer_size: u64,
    seed: u64,
) -> Result<()> {
    let image =
        tokio::task::spawn_blocking(move || Image::generate(seed, layers, layer_size)).await?;
    ops::push_image(http, repo, tag, &image).await?;
    emit(
        json!({
            "op": "push-image",
            "repo": repo,
            "tag": tag,
            "manifest_digest": image.manifest_digest,
            "config_digest": image.config_digest,
            "layer_digests": image.layers.iter().map(|(_, d)| d).collect::<Vec<_>>(),
        }),
        json!({}),
    );
    Ok(())
}

pub struct ImagesSpec {
    pub clients: usize,
    pub count: usize,
    pub layers: usize,
    pub layer_size: u64,
    pub repo_prefix: String,
    pub seed: u64,
    /// Told `enable` / `disable` around the measured run (`perf record --control`).
    pub perf_control: Option<std::path::PathBuf>,
}

/// `clients` tasks; image `i` belongs to client `i % clients`, which pushes it to its own
/// repository (tag `i<i>`) and then pulls it back, verifying every digest.
pub async fn images(http: &Http, spec: ImagesSpec) -> Result<()> {
    let clients = spec.clients.max(1);
    let stride = spec.layers as u64 + 1;
    let mut prepared = Vec::with_capacity(spec.count);
    for chunk in (0..spec.count).collect::<Vec<_>>().chunks(8) {
        let jobs = chunk.iter().map(|&i| {
            let seed = spec.seed.wrapping_add(i as u64 * stride);
            let (layers, size) = (spec.layers, spec.layer_size);
            tokio::task::spawn_blocking(move || Image::generate(seed, layers, size))
        });
        for image in futures_util::future::join_all(jobs).await {
            prepared.push(image?);
        }
    }
    let prepared = Arc::new(prepared);
    let run = spec.seed % 1_000_000;
    client::take_waits();
    perf_control(spec.perf_control.as_deref(), "enable")?;
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let http = http.clone();
        let prepared = Arc::clone(&prepared);
        let repo = format!("{}-{run}/c{c}", spec.repo_prefix);
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for i in (c..prepared.len()).step_by(clients) {
                let tag = format!("i{i}");
                let t0 = Instant::now();
                ops::push_image(&http, &repo, &tag, &prepared[i]).await?;
                let t1 = Instant::now();
                ops::pull_image(&http, &repo, &tag, &prepared[i]).await?;
                let t2 = Instant::now();
                times.push(((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64()));
            }
            Result::Ok(times)
        }));
    }
    let mut push = Vec::new();
    let mut pull = Vec::new();
    for task in tasks {
        for (a, b) in task.await?? {
            push.push(a);
            pull.push(b);
        }
    }
    let secs = began.elapsed().as_secs_f64();
    perf_control(spec.perf_control.as_deref(), "disable")?;
    let total: Vec<f64> = push.iter().zip(&pull).map(|(a, b)| a + b).collect();
    let bytes = spec.count as u64 * spec.layers as u64 * spec.layer_size * 2;
    // Per kind of request: latency to the answer's head, and the total wait in seconds.
    let waits: serde_json::Map<String, serde_json::Value> = client::take_waits()
        .into_iter()
        .map(|(kind, secs)| {
            let mut entry = latency(&secs);
            entry["total_s"] = json!((secs.iter().sum::<f64>() * 1000.0).round() / 1000.0);
            (kind.to_owned(), entry)
        })
        .collect();
    emit(
        json!({
            "op": "images",
            "clients": clients,
            "count": spec.count,
            "layers": spec.layers,
            "layer_size": spec.layer_size,
            "secs": secs,
            "images_per_s": spec.count as f64 / secs,
            "gib_s": gib_per_s(bytes, secs),
        }),
        json!({
            "push": latency(&push),
            "pull": latency(&pull),
            "image": latency(&total),
            "requests": waits,
        }),
    );
    Ok(())
}

/// Send `command` to a `perf record --control fifo:` FIFO, if there is one. Opening a FIFO
/// for writing waits for its reader: perf has it open from its start.
fn perf_control(fifo: Option<&std::path::Path>, command: &str) -> Result<()> {
    if let Some(fifo) = fifo {
        std::fs::write(fifo, format!("{command}\n"))
            .map_err(|e| format!("perf control FIFO {}: {e}", fifo.display()))?;
    }
    Ok(())
}

/// Run `jobs` futures `concurrency` at a time, failing on the first error.
pub(crate) async fn run_concurrently<F>(jobs: Vec<F>, concurrency: usize) -> Result<()>
where
    F: Future<Output = Result<()>>,
{
    let mut results = stream::iter(jobs).buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// The tiny image every seeded repository or tag points at (fixed seed: same digests always).
fn seed_image() -> Image {
    Image::generate(1, 1, 1024)
}

/// `n` repositories `<prefix>00000…`, each with one tag `v1`: the blobs are pushed once, then
/// mounted into every other repository.
pub async fn seed_repos(http: &Http, prefix: &str, n: usize, concurrency: usize) -> Result<()> {
    let width = n.saturating_sub(1).max(1).to_string().len();
    let name = |i: usize| format!("{prefix}{i:0width$}");
    let image = seed_image();
    let began = Instant::now();
    let first = name(0);
    ops::push_image(http, &first, "v1", &image).await?;
    let (layer, layer_digest) = &image.layers[0];
    let layer_bytes = layer.pattern.slice(..layer.size as usize);
    let jobs = (1..n)
        .map(|i| {
            let repo = name(i);
            let (image, first, layer_bytes) = (&image, &first, &layer_bytes);
            async move {
                ops::mount_or_push(http, &repo, first, layer_digest, layer_bytes).await?;
                ops::mount_or_push(http, &repo, first, &image.config_digest, &image.config).await?;
                ops::put_manifest(http, &repo, "v1", &image.manifest, &image.manifest_digest).await
            }
        })
        .collect();
    run_concurrently(jobs, concurrency).await?;
    let secs = began.elapsed().as_secs_f64();
    emit(
        json!({ "op": "seed", "repos": n, "secs": secs, "per_s": n as f64 / secs }),
        json!({}),
    );
    Ok(())
}

/// `n` tags `t00000…` in `repo`, all on one manifest.
pub async fn seed_tags(http: &Http, repo: &str, n: usize, concurrency: usize) -> Result<()> {
    let width = n.saturating_sub(1).max(1).to_string().len();
    let image = seed_image();
    let began = Instant::now();
    ops::push_image(http, repo, &format!("t{:0width$}", 0), &image).await?;
    let jobs = (1..n)
        .map(|i| {
            let image = &image;
            async move {
                let tag = format!("t{i:0width$}");
                ops::put_manifest(http, repo, &tag, &image.manifest, &image.manifest_digest).await
            }
        })
        .collect();
    run_concurrently(jobs, concurrency).await?;
    let secs = began.elapsed().as_secs_f64();
    emit(
        json!({ "op": "seed", "tags": n, "secs": secs, "per_s": n as f64 / secs }),
        json!({}),
    );
    Ok(())
}

/// `n` artifacts in `repo`: one image, pushed once, under `n` manifests that differ by an
/// annotation, tagged `a00000…`.
pub async fn seed_artifacts(http: &Http, repo: &str, n: usize, concurrency: usize) -> Result<()> {
    let width = n.saturating_sub(1).max(1).to_string().len();
    let image = seed_image();
    let variants = (1..n)
        .map(|i| image.variant(i))
        .collect::<Result<Vec<_>>>()?;
    let began = Instant::now();
    ops::push_image(http, repo, &format!("a{:0width$}", 0), &image).await?;
    let jobs = variants
        .iter()
        .enumerate()
        .map(|(i, (manifest, digest))| async move {
            let tag = format!("a{:0width$}", i + 1);
            ops::put_manifest(http, repo, &tag, manifest, digest).await
        })
        .collect();
    run_concurrently(jobs, concurrency).await?;
    let secs = began.elapsed().as_secs_f64();
    emit(
        json!({ "op": "seed", "artifacts": n, "secs": secs, "per_s": n as f64 / secs }),
        json!({}),
    );
    Ok(())
}

/// How a listing pages: `n` for `/v2/` (`_catalog`, `tags/list`), `page_size` for Harbor's
/// `/api/v2.0` lists.
pub enum Paging {
    Distribution,
    Harbor,
}

/// Walk a listing (`_catalog`, `tags/list` or a Harbor list) by its `Link` headers,
/// `rounds` times. With `pair`, a second registry's same listing is walked right after or
/// right before each walk of the first (in turns), so that both meet the machine in the same state (on a shared
/// machine, one walk's time drifts by tens of percent from one minute to the next); its
/// figures are reported as `pair_page` and `pair_walk`.
pub async fn list(
    http: &Http,
    pair: Option<&Http>,
    path: &str,
    paging: Paging,
    n: Option<usize>,
    rounds: usize,
) -> Result<()> {
    let first_url = match n {
        Some(n) => {
            let size_key = match paging {
                Paging::Distribution => "n",
                Paging::Harbor => "page_size",
            };
            client::with_query(path, size_key, &n.to_string())
        }
        None => path.to_owned(),
    };
    let mut timed = Timed::default();
    let mut pair_timed = Timed::default();
    let (mut pages_per_walk, mut items_per_walk) = (0, 0);
    for round in 0..rounds.max(1) {
        // Who walks first takes turns: the first walk after a pause may pay for it.
        if let Some(pair) = pair
            && round % 2 == 1
        {
            walk(pair, &first_url, &mut pair_timed).await?;
        }
        (pages_per_walk, items_per_walk) = walk(http, &first_url, &mut timed).await?;
        if let Some(pair) = pair
            && round % 2 == 0
        {
            let (pages, items) = walk(pair, &first_url, &mut pair_timed).await?;
            if items != items_per_walk {
                return Err(format!(
                    "{path}: the pair listed {items} items in {pages} pages, the first {items_per_walk}"
                )
                .into());
            }
        }
    }
    let mut figures = json!({ "page": latency(&timed.pages), "walk": latency(&timed.walks) });
    if pair.is_some() {
        figures["pair_page"] = latency(&pair_timed.pages);
        figures["pair_walk"] = latency(&pair_timed.walks);
    }
    emit(
        json!({
            "op": "list",
            "path": path,
            "n": n,
            "rounds": rounds,
            "paired": pair.is_some(),
            "pages_per_walk": pages_per_walk,
            "items_per_walk": items_per_walk,
        }),
        figures,
    );
    Ok(())
}

/// Seconds each page and each whole walk took.
#[derive(Default)]
struct Timed {
    pages: Vec<f64>,
    walks: Vec<f64>,
}

/// One walk from `first_url` by `Link` headers: its pages and items.
async fn walk(http: &Http, first_url: &str, timed: &mut Timed) -> Result<(usize, usize)> {
    const MAX_PAGES: usize = 1_000_000;
    let mut next = Some(first_url.to_owned());
    let (mut count, mut items) = (0, 0);
    let walk_began = Instant::now();
    while let Some(url) = next.take() {
        let began = Instant::now();
        let response = http
            .expect(
                Method::GET,
                &url,
                &[("accept", "application/json")],
                client::empty(),
                StatusCode::OK,
            )
            .await?;
        next = client::next_link(&response);
        let body = client::collect(response).await?;
        timed.pages.push(began.elapsed().as_secs_f64());
        let value: serde_json::Value = serde_json::from_slice(&body)?;
        items += match value.as_array() {
            // Harbor lists are arrays.
            Some(list) => list.len(),
            None => ["repositories", "tags"]
                .iter()
                .filter_map(|k| value[*k].as_array())
                .map(Vec::len)
                .sum::<usize>(),
        };
        count += 1;
        if count >= MAX_PAGES {
            return Err(format!("{first_url}: more than {MAX_PAGES} pages").into());
        }
    }
    timed.walks.push(walk_began.elapsed().as_secs_f64());
    Ok((count, items))
}

/// Resident set size of a process in KiB (`VmRSS` or `VmHWM`).
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Spawn `cmd`, time until `/v2/` answers `ready_status` (200, or 401 with auth), wait
/// `settle`, read VmRSS, then stop it (SIGTERM, then SIGKILL after 5 s).
pub async fn coldstart(
    http: &Http,
    cmd: &[String],
    timeout: Duration,
    settle: Duration,
    ready_status: u16,
) -> Result<()> {
    let (program, args) = cmd.split_first().ok_or("no command given")?;
    let began = Instant::now();
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let pid = child.id();
    let ready = loop {
        if let Ok(response) = http.send(Method::GET, "/v2/", &[], client::empty()).await {
            let ok = response.status().as_u16() == ready_status;
            let _ = client::collect(response).await;
            if ok {
                break Ok(began.elapsed());
            }
        }
        if let Some(status) = child.try_wait()? {
            break Err(format!("{program} exited with {status} before answering"));
        }
        if began.elapsed() > timeout {
            break Err(format!(
                "{program}: no {ready_status} on /v2/ after {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    // Of the resident set, most is the binary's code mapped from the page cache (shared,
    // and given back under memory pressure); `RssAnon` is what the process holds alone.
    let (idle, idle_anon) = if ready.is_ok() {
        tokio::time::sleep(settle).await;
        (
            proc_status_kib(pid, "VmRSS"),
            proc_status_kib(pid, "RssAnon"),
        )
    } else {
        (None, None)
    };
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stop_began = Instant::now();
    while child.try_wait()?.is_none() {
        if stop_began.elapsed() > Duration::from_secs(5) {
            child.kill()?;
            child.wait()?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready = ready?;
    emit(
        json!({
            "op": "coldstart",
            "ms": (ready.as_secs_f64() * 1e6).round() / 1e3,
            "idle_rss_kib": idle,
            "idle_rss_anon_kib": idle_anon,
        }),
        json!({}),
    );
    Ok(())
}

/// `repos` × `tags` images that share `base_layers` layers of `base_size` bytes, each with
/// one layer of its own of `own_size` bytes (setup for the replication figure): repository
/// `<prefix><r>`, tag `t<t>`, pushed by `concurrency` clients.
pub struct SharedImagesSpec {
    pub seed: u64,
    pub prefix: String,
    pub repos: usize,
    pub tags: usize,
    pub base_layers: usize,
    pub base_size: u64,
    pub own_size: u64,
    pub concurrency: usize,
}

pub async fn shared_images(http: &Http, spec: SharedImagesSpec) -> Result<()> {
    let SharedImagesSpec {
        seed,
        ref prefix,
        repos,
        tags,
        base_layers,
        base_size,
        own_size,
        concurrency,
    } = spec;
    let base: Arc<Vec<(Blob, String)>> = Arc::new(
        (0..base_layers as u64)
            .map(|i| {
                let blob = Blob::new(seed.wrapping_add(i), base_size);
                let digest = blob.digest();
                (blob, digest)
            })
            .collect(),
    );
    let began = Instant::now();
    let jobs: Vec<(String, String, u64)> = (0..repos)
        .flat_map(|r| {
            (0..tags).map(move |t| {
                let own = seed.wrapping_add(1000 + (r * tags + t) as u64);
                (format!("{prefix}{r}"), format!("t{t}"), own)
            })
        })
        .collect();
    let pushed = futures_util::stream::iter(jobs)
        .map(|(repo, tag, own)| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let image =
                    tokio::task::spawn_blocking(move || Image::on_base(own, &base, own_size))
                        .await?;
                ops::push_image(&http, &repo, &tag, &image).await
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    for result in pushed {
        result?;
    }
    emit(
        json!({"op": "shared-images", "images": repos * tags}),
        json!({"secs": began.elapsed().as_secs_f64()}),
    );
    Ok(())
}
