//! `berth-bench`: the load generator behind `bench/run.sh`. It drives any OCI distribution
//! registry (berth or registry:2) over HTTP/1.1 and prints one JSON line per measurement.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

mod client;
mod data;
mod housekeeping;
mod ops;
mod stats;
mod throttle;
mod workloads;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser)]
#[command(
    name = "berth-bench",
    about = "Load generator for registry benchmarks (JSON lines out)."
)]
struct Cli {
    /// Registry base URL.
    #[arg(long, env = "BENCH_URL", default_value = "http://127.0.0.1:5000")]
    url: String,
    /// An `Authorization` header value sent with every request (e.g. `Basic …`).
    #[arg(long, env = "BENCH_AUTHORIZATION", hide_env_values = true)]
    authorization: Option<String>,
    #[command(subcommand)]
    command: Command,
}

fn size(s: &str) -> std::result::Result<u64, String> {
    data::parse_size(s)
}

#[derive(Subcommand)]
enum Command {
    /// Wait until `GET /v2/` answers 200.
    Ping {
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Push one generated blob: monolithic (POST + one PUT) or chunked (POST + PATCHes + PUT).
    PushBlob {
        #[arg(long, default_value = "bench/blob")]
        repo: String,
        #[arg(long, value_parser = size, default_value = "1GiB")]
        size: u64,
        /// Chunk size for a chunked upload; monolithic without it.
        #[arg(long, value_parser = size)]
        chunk: Option<u64>,
        /// Data seed (default: from the clock, so every run pushes new bytes).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Pull one blob and count (optionally hash) its bytes.
    PullBlob {
        #[arg(long, default_value = "bench/blob")]
        repo: String,
        #[arg(long)]
        digest: String,
        /// Also hash the bytes and compare (costs client CPU).
        #[arg(long)]
        verify: bool,
    },
    /// Push one small image (setup for the manifest and HEAD-blob figures).
    PushImage {
        #[arg(long, default_value = "bench/small")]
        repo: String,
        #[arg(long, default_value = "latest")]
        tag: String,
        #[arg(long, default_value_t = 1)]
        layers: usize,
        #[arg(long, value_parser = size, default_value = "4KiB")]
        layer_size: u64,
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Concurrent clients each pushing, then pulling back, distinct images.
    Images {
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Images in total (spread over the clients).
        #[arg(long, default_value_t = 128)]
        count: usize,
        #[arg(long, default_value_t = 3)]
        layers: usize,
        #[arg(long, value_parser = size, default_value = "10MiB")]
        layer_size: u64,
        #[arg(long, default_value = "bench-img")]
        repo_prefix: String,
        #[arg(long)]
        seed: Option<u64>,
        /// A `perf record --control fifo:PATH` FIFO: `enable` is written to it when the
        /// clock starts and `disable` when it stops, so that a profile started with `-D -1`
        /// holds the measured run only, not the preparation of the images before it.
        #[arg(long)]
        perf_control: Option<std::path::PathBuf>,
    },
    /// Push `--repos` × `--tags` images sharing `--base-layers` base layers, each with one
    /// layer of its own (setup for the replication figure).
    SharedImages {
        #[arg(long, default_value = "rep/r")]
        prefix: String,
        #[arg(long, default_value_t = 20)]
        repos: usize,
        #[arg(long, default_value_t = 5)]
        tags: usize,
        #[arg(long, default_value_t = 3)]
        base_layers: usize,
        #[arg(long, value_parser = size, default_value = "8MiB")]
        base_size: u64,
        #[arg(long, value_parser = size, default_value = "512KiB")]
        own_size: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Create many repositories (`--repos`), many tags in one repository on one manifest
    /// (`--tags`), or many artifacts (tagged manifests) in one repository (`--artifacts`).
    Seed {
        #[arg(long)]
        repos: Option<usize>,
        #[arg(long)]
        tags: Option<usize>,
        #[arg(long)]
        artifacts: Option<usize>,
        /// Repository name prefix (`--repos`) or the repository (`--tags`, `--artifacts`).
        #[arg(long, default_value = "catalog/r")]
        name: String,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Walk `_catalog`, a tag list, or Harbor's artifact list (`/api/v2.0`) page by page,
    /// timing each page.
    List {
        #[arg(long, conflicts_with_all = ["tags", "artifacts"])]
        catalog: bool,
        /// Repository whose tags to list.
        #[arg(long, conflicts_with = "artifacts")]
        tags: Option<String>,
        /// `project/repository` whose artifacts to list through Harbor's API.
        #[arg(long)]
        artifacts: Option<String>,
        /// Page size (`n`, or `page_size` for Harbor); the registry's default without it.
        #[arg(long)]
        n: Option<usize>,
        /// Whole walks to time.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// A second registry holding the same listing: each walk of `--url` is followed by
        /// one of it, and its figures are `pair_page` and `pair_walk`.
        #[arg(long)]
        pair_url: Option<String>,
        /// The `Authorization` value for `--pair-url` (none if unset).
        #[arg(long, requires = "pair_url")]
        pair_authorization: Option<String>,
    },
    /// berth: push `--repos` × `--manifests` small images of `--blobs` blobs each, then
    /// delete every `--garbage-every`-th manifest (its blobs become garbage).
    SeedGarbage {
        #[arg(long, default_value = "gc/r")]
        prefix: String,
        #[arg(long, default_value_t = 100)]
        repos: usize,
        #[arg(long, default_value_t = 100)]
        manifests: usize,
        #[arg(long, default_value_t = 5)]
        blobs: usize,
        #[arg(long, value_parser = size, default_value = "1KiB")]
        blob_size: u64,
        #[arg(long, default_value_t = 5)]
        garbage_every: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// berth: run garbage collection through `/api/v2.0/system/gc` (a system
    /// administrator's `--authorization`) and report the run's mark and sweep times; with
    /// `--for-secs`, run it back to back that long.
    Gc {
        #[arg(long, default_value_t = 0)]
        for_secs: u64,
    },
    /// Time sequential `GET`s of JSON answers (`--path`, repeatable).
    ApiLatency {
        #[arg(long = "path", required = true)]
        paths: Vec<String>,
        #[arg(long, default_value_t = 200)]
        rounds: usize,
    },
    /// Relay TCP from `--listen` to `--upstream`, the upstream's bytes (all connections
    /// together) at `--mib-per-sec`: a wide-area link in front of a local registry.
    Throttle {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        upstream: String,
        #[arg(long)]
        mib_per_sec: f64,
    },
    /// Start a registry command, time until `/v2/` answers 200, read its idle RSS, stop it.
    Coldstart {
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
        /// Wait this long after the first 200 before reading VmRSS.
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
        /// The status of `/v2/` that means "ready" (401 for a registry that requires auth).
        #[arg(long, default_value_t = 200)]
        ready_status: u16,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let http = client::Http::new(
        &cli.url,
        cli.authorization.as_deref().filter(|a| !a.is_empty()),
    );
    match cli.command {
        Command::Ping { timeout_secs } => {
            workloads::wait_ready(&http, Duration::from_secs(timeout_secs)).await?;
            Ok(())
        }
        Command::PushBlob {
            repo,
            size,
            chunk,
            seed,
        } => workloads::push_blob(&http, &repo, size, chunk, seed.unwrap_or_else(clock_seed)).await,
        Command::Throttle {
            listen,
            upstream,
            mib_per_sec,
        } => throttle::run(&listen, &upstream, mib_per_sec).await,
        Command::PullBlob {
            repo,
            digest,
            verify,
        } => workloads::pull_blob(&http, &repo, &digest, verify).await,
        Command::PushImage {
            repo,
            tag,
            layers,
            layer_size,
            seed,
        } => {
            let seed = seed.unwrap_or_else(clock_seed);
            workloads::push_one_image(&http, &repo, &tag, layers, layer_size, seed).await
        }
        Command::Images {
            clients,
            count,
            layers,
            layer_size,
            repo_prefix,
            seed,
            perf_control,
        } => {
            let spec = workloads::ImagesSpec {
                clients,
                count,
                layers,
                layer_size,
                repo_prefix,
                seed: seed.unwrap_or_else(clock_seed),
                perf_control,
            };
            workloads::images(&http, spec).await
        }
        Command::SharedImages {
            prefix,
            repos,
            tags,
            base_layers,
            base_size,
            own_size,
            concurrency,
        } => {
            let spec = workloads::SharedImagesSpec {
                seed: clock_seed(),
                prefix,
                repos,
                tags,
                base_layers,
                base_size,
                own_size,
                concurrency,
            };
            workloads::shared_images(&http, spec).await
        }
        Command::Seed {
            repos,
            tags,
            artifacts,
            name,
            concurrency,
        } => match (repos, tags, artifacts) {
            (Some(n), None, None) => workloads::seed_repos(&http, &name, n, concurrency).await,
            (None, Some(n), None) => workloads::seed_tags(&http, &name, n, concurrency).await,
            (None, None, Some(n)) => workloads::seed_artifacts(&http, &name, n, concurrency).await,
            _ => Err("give exactly one of --repos N, --tags N or --artifacts N".into()),
        },
        Command::List {
            catalog,
            tags,
            artifacts,
            n,
            rounds,
            pair_url,
            pair_authorization,
        } => {
            use workloads::Paging;
            let (path, paging) = match (catalog, tags, artifacts) {
                (true, None, None) => ("/v2/_catalog".to_owned(), Paging::Distribution),
                (false, Some(repo), None) => {
                    (format!("/v2/{repo}/tags/list"), Paging::Distribution)
                }
                (false, None, Some(name)) => {
                    let (project, repo) = name
                        .split_once('/')
                        .ok_or("--artifacts takes project/repository")?;
                    // Harbor's clients encode the repository name twice.
                    let repo = repo.replace('/', "%252F");
                    (
                        format!("/api/v2.0/projects/{project}/repositories/{repo}/artifacts"),
                        Paging::Harbor,
                    )
                }
                _ => return Err("give --catalog, --tags REPO or --artifacts PROJECT/REPO".into()),
            };
            let pair = pair_url
                .as_deref()
                .map(|url| client::Http::new(url, pair_authorization.as_deref()));
            workloads::list(&http, pair.as_ref(), &path, paging, n, rounds).await
        }
        Command::SeedGarbage {
            prefix,
            repos,
            manifests,
            blobs,
            blob_size,
            garbage_every,
            concurrency,
        } => {
            let spec = housekeeping::GarbageSpec {
                prefix,
                repos,
                manifests,
                blobs,
                blob_size: blob_size as usize,
                garbage_every,
                concurrency,
            };
            housekeeping::seed_garbage(&http, spec).await
        }
        Command::Gc { for_secs } => housekeeping::gc(&http, for_secs).await,
        Command::ApiLatency { paths, rounds } => {
            housekeeping::api_latency(&http, &paths, rounds).await
        }
        Command::Coldstart {
            timeout_secs,
            settle_ms,
            ready_status,
            cmd,
        } => {
            workloads::coldstart(
                &http,
                &cmd,
                Duration::from_secs(timeout_secs),
                Duration::from_millis(settle_ms),
                ready_status,
            )
            .await
        }
    }
}
