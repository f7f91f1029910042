//! The `berth` binary: command-line parsing, configuration and wiring. No registry logic
//! lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use berth_auth::{AuthMode, Authorizer, Htpasswd};
use berth_registry::{Registry, RegistryOptions};
use clap::{Parser, Subcommand};

mod admin;
mod config;
mod df;
mod gc;
mod import;
mod jobs;
mod logging;
mod migrate;
mod ops;
mod server;
mod tls;

/// jemalloc rather than glibc's malloc. A cached GET of a manifest makes ~43 allocations
/// (most in hyper, axum and tower); glibc spends ~210 instructions per malloc/free pair on
/// them (its per-thread cache holds 7 blocks of a size, the rest goes through its bins),
/// jemalloc about half: 11 % fewer instructions per request (callgrind, token mode). It
/// also hands memory back after a burst of pushes, where glibc kept its peak. The cost is
/// ~1 MiB more RSS at idle (its arenas' metadata). Figures in docs/BENCHMARKS.md.
///
/// Its built-in options are set where it is built, in `.cargo/config.toml`
/// (`JEMALLOC_SYS_WITH_MALLOC_CONF`; `_RJEM_MALLOC_CONF` in the environment overrides them):
/// `percpu_arena`, one arena per CPU used by whichever thread runs there, instead of four
/// per CPU handed to threads in turn. The async workers are one per CPU anyway, and fewer
/// arenas hold fewer half-empty slabs: idle RSS 0.5 MiB lower, the same instructions per
/// request, the same peak under a burst of pushes (86–107 MiB either way; Session 19).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use config::{AuthModeSetting, Config, RawConfig, berth_env_name, registry_env_name};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A container image registry in one binary."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve(Flags),
    /// Check the configuration and print every setting with where it came from
    /// (`berth config check`; plain `berth config` does the same).
    Config {
        #[command(subcommand)]
        action: Option<ConfigAction>,
        #[command(flatten)]
        flags: Flags,
    },
    /// Manage users (token mode): add, passwd, admin, list, delete.
    User {
        #[command(subcommand)]
        command: admin::UserCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Manage projects: create, public, list, delete.
    Project {
        #[command(subcommand)]
        command: admin::ProjectCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Manage project members and their roles: add, list, remove.
    Member {
        #[command(subcommand)]
        command: admin::MemberCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Manage robot accounts: create, list, delete, refresh, disable.
    Robot {
        #[command(subcommand)]
        command: admin::RobotCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Token signing keys: rotate, list.
    Keys {
        #[command(subcommand)]
        command: admin::KeysCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Background jobs: their history and schedules.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Garbage collection now, in this process: what it frees (or, dry, would free).
    Gc {
        #[command(flatten)]
        args: gc::GcArgs,
        #[command(flatten)]
        flags: Flags,
    },
    /// Storage usage: per project (or per repository of PROJECT) and the registry's total.
    Df {
        /// One project: its usage and each repository's.
        project: Option<String>,
        /// Exact byte counts instead of KiB/MiB/GiB.
        #[arg(long)]
        bytes: bool,
        #[command(flatten)]
        flags: Flags,
    },
    /// Import another registry's storage without re-pushing: registry2.
    Import {
        #[command(subcommand)]
        command: import::ImportCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Copy a whole registry (metadata with its ids, and blobs) to another database and blob
    /// store, e.g. SQLite and the filesystem to PostgreSQL and S3, then verify the copy.
    /// Stop the source first. Exits non-zero if the copy differs from the source.
    Migrate(migrate::MigrateArgs),
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate the configuration (file, environment, flags), the TLS files it names too,
    /// and print the effective value of every setting with its source; exit non-zero,
    /// naming the setting, if `berth serve` would refuse it.
    Check,
}

/// Flags override every other source. Environment: BERTH_* (and REGISTRY_* from registry:2).
#[derive(clap::Args)]
pub struct Flags {
    /// Config file: berth's TOML, or a registry:2 config.yml (env BERTH_CONFIG).
    #[arg(long, env = "BERTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:5000].
    #[arg(long, global = true)]
    addr: Option<String>,
    /// Data directory (metadata database and blobs) [default: ./berth-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Allow deletes of manifests, tags and blobs [default: true].
    #[arg(long, global = true)]
    delete_enabled: Option<bool>,
    /// Accept anonymous writes from other machines when no auth is set [default: false].
    #[arg(long, global = true)]
    anonymous_write: Option<bool>,
    /// htpasswd file (bcrypt) enabling basic auth.
    #[arg(long, global = true)]
    htpasswd: Option<PathBuf>,
    /// Authentication: none, htpasswd or token [default: htpasswd if a file is set, else none].
    #[arg(long, global = true)]
    auth_mode: Option<String>,
}

impl Flags {
    fn load(&self) -> Result<Config, config::ConfigError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut sources = Vec::new();
        let mut warnings = Vec::new();
        if let Some(path) = &self.config {
            let (raw, ignored) = RawConfig::from_file(path)?;
            warnings.extend(
                ignored
                    .into_iter()
                    .map(|w| format!("{}: {w}", path.display())),
            );
            sources.push(("config file", raw));
        }
        sources.push((
            "REGISTRY_* environment",
            RawConfig::from_env(registry_env_name, &env)?,
        ));
        sources.push((
            "BERTH_* environment",
            RawConfig::from_env(berth_env_name, &env)?,
        ));
        sources.push((
            "flag",
            RawConfig {
                addr: self.addr.clone(),
                data_dir: self.data_dir.clone(),
                delete_enabled: self.delete_enabled,
                anonymous_write: self.anonymous_write,
                cross_repository_links: None,
                htpasswd: self.htpasswd.clone(),
                realm: None,
                validation: Default::default(),
                auth: config::RawAuth {
                    mode: self.auth_mode.clone(),
                    ..Default::default()
                },
                tls: Default::default(),
                http: Default::default(),
                audit: Default::default(),
                storage: Default::default(),
                database: Default::default(),
                proxy: Default::default(),
                secrets: Default::default(),
                log: Default::default(),
                metrics: Default::default(),
                gc: Default::default(),
                quota: Default::default(),
            },
        ));
        let mut config = Config::resolve(&sources)?;
        config.warnings = warnings;
        Ok(config)
    }
}

fn main() -> ExitCode {
    // ring is the only crypto provider built in; make it the process default before anything
    // could ask for one. (An error means one is installed already.)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // `serve` logs as its configuration says; the operator commands in text.
    if !matches!(cli.command, Command::Serve(_)) {
        logging::init(config::LogFormat::Text);
    }
    let result = match cli.command {
        Command::Serve(flags) => flags.load().map_err(|e| e.to_string()).and_then(|config| {
            logging::init(config.log_format);
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
            serve(config)
        }),
        Command::Config {
            action: None | Some(ConfigAction::Check),
            flags,
        } => flags.load().map_err(|e| e.to_string()).and_then(|config| {
            // The TLS files are checked too: `berth config` answers "would serve start?".
            if let Some(files) = &config.tls {
                tls::load(files).map_err(|e| e.to_string())?;
            }
            if let Some(path) = &flags.config {
                println!("config file: {}", path.display());
            }
            for warning in &config.warnings {
                println!("warning: {warning}");
            }
            print!("{}", config.describe());
            Ok(())
        }),
        Command::User { command, flags } => block_on(admin::user(command, &flags)),
        Command::Project { command, flags } => block_on(admin::project(command, &flags)),
        Command::Member { command, flags } => block_on(admin::member(command, &flags)),
        Command::Robot { command, flags } => block_on(admin::robot(command, &flags)),
        Command::Keys { command, flags } => block_on(admin::keys(command, &flags)),
        Command::Import { command, flags } => block_on(import::import(command, &flags)),
        Command::Jobs { command, flags } => block_on(jobs::command(command, &flags)),
        // Blobs are hashed as they are copied: more than one core helps.
        Command::Migrate(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))
            .and_then(|runtime| runtime.block_on(migrate::command(args))),
        Command::Gc { args, flags } => block_on(gc::command(args, &flags)),
        Command::Df {
            project,
            bytes,
            flags,
        } => block_on(df::command(project, bytes, &flags)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("berth: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Run an admin command on a small runtime.
fn block_on(command: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(command)
}

/// The metadata store the configuration names, open.
#[derive(Clone)]
pub enum Metadata {
    Sqlite(berth_meta::SqliteStore),
    Postgres(berth_meta::PgStore),
}

impl Metadata {
    /// The store, as the services take it (each narrower trait is an upcast of this).
    pub fn store(&self) -> Arc<dyn berth_meta::MetaStore> {
        match self {
            Metadata::Sqlite(store) => Arc::new(store.clone()),
            Metadata::Postgres(store) => Arc::new(store.clone()),
        }
    }

    pub async fn close(&self) {
        match self {
            Metadata::Sqlite(store) => store.close().await,
            Metadata::Postgres(store) => store.close().await,
        }
    }
}

/// Open (creating if needed) the metadata database the configuration names: SQLite in the
/// data directory unless `[database] url` says otherwise.
pub async fn open_metadata(config: &Config) -> Result<Metadata, String> {
    match &config.database {
        config::Database::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
            }
            berth_meta::SqliteStore::open(path)
                .await
                .map(Metadata::Sqlite)
                .map_err(|e| format!("cannot open the metadata database {}: {e}", path.display()))
        }
        config::Database::Postgres(options) => berth_meta::PgStore::connect(options)
            .await
            .map(Metadata::Postgres)
            .map_err(|e| {
                format!(
                    "cannot open the metadata database {}: {e}",
                    berth_meta::postgres::redacted_url(&options.url)
                )
            }),
    }
}

/// The blob store the configuration names: the data directory's `blobs/`, or S3.
pub fn open_blobs(config: &Config) -> Result<Arc<dyn berth_storage::BlobStore>, String> {
    let data_dir = &config.data_dir;
    Ok(match &config.storage {
        config::StorageSetting::Filesystem => Arc::new(
            berth_storage::FsBlobStore::open(data_dir)
                .map_err(|e| format!("cannot open blob storage in {}: {e}", data_dir.display()))?,
        ),
        config::StorageSetting::S3(settings) => {
            // Spool files for uploads on their way to S3 stay next to the database.
            let spool_dir = data_dir.join("s3-spool");
            std::fs::create_dir_all(&spool_dir)
                .map_err(|e| format!("cannot create {}: {e}", spool_dir.display()))?;
            let settings = berth_storage::S3Settings {
                spool_dir: Some(spool_dir),
                ..settings.clone()
            };
            tracing::info!(
                endpoint = settings.endpoint.as_deref().unwrap_or("AWS"),
                bucket = %settings.bucket,
                prefix = %settings.prefix,
                redirect = settings.redirect,
                "blobs are stored in S3"
            );
            Arc::new(
                berth_storage::S3BlobStore::new(settings)
                    .map_err(|e| format!("cannot set up S3 blob storage: {e}"))?,
            )
        }
    })
}

fn serve(config: Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> Result<(), String> {
    // Before anything else: a bad certificate should not leave a half-started server.
    let tls = match &config.tls {
        Some(files) => Some((files.clone(), tls::load(files).map_err(|e| e.to_string())?)),
        None => None,
    };
    let data_dir = &config.data_dir;
    // registry:2's rootdirectory as berth's data_dir (its config.yml, or
    // REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY): berth keeps its own files beside the old
    // tree, and serves none of it until it is imported.
    let old_tree = data_dir.join("docker/registry/v2");
    if old_tree.is_dir() {
        tracing::warn!(
            tree = %old_tree.display(),
            "the data directory holds a registry:2 storage tree, which berth does not serve: import it once with `berth import registry2 {}`",
            data_dir.display()
        );
    }
    let metadata = open_metadata(&config).await?;
    let meta = metadata.store();
    let blobs = open_blobs(&config)?;
    let mut identity = None;
    let auth = match (config.auth_mode, &config.htpasswd) {
        (AuthModeSetting::Htpasswd, Some(path)) => AuthMode::Htpasswd {
            realm: config.realm.clone(),
            passwords: Htpasswd::load(path).map_err(|e| e.to_string())?,
        },
        (AuthModeSetting::Token, _) => {
            let token_auth = start_token_mode(&config, meta.clone()).await?;
            let store: Arc<dyn berth_meta::IdentityStore> = meta.clone();
            identity =
                Some(berth_auth::IdentityService::new(store).with_caches(token_auth.clone()));
            AuthMode::Token(token_auth)
        }
        _ => AuthMode::Open {
            anonymous_write: config.anonymous_write,
        },
    };
    if matches!(
        auth,
        AuthMode::Open {
            anonymous_write: false
        }
    ) && !config.addr.ip().is_loopback()
    {
        tracing::warn!(
            addr = %config.addr,
            "no authentication configured: other machines may pull but not push (set up htpasswd, or BERTH_ANONYMOUS_WRITE=true)"
        );
    }
    if !matches!(auth, AuthMode::Open { .. })
        && config.tls.is_none()
        && config.trusted_proxies.is_empty()
        && !config.addr.ip().is_loopback()
    {
        tracing::warn!(
            addr = %config.addr,
            "passwords and tokens travel in clear: serve over TLS ([tls]) or behind a TLS proxy ([http] trusted_proxies)"
        );
    }
    let registry = Registry::new(
        meta.clone(),
        blobs.clone(),
        RegistryOptions {
            delete_enabled: config.delete_enabled,
            // Exact with SQLite (this process is the only writer); with PostgreSQL kept
            // current by the other nodes' notifications, and off while they cannot arrive.
            read_cache: true,
            sparse_index: config.sparse_index,
        },
    );
    let registry = Arc::new(registry);
    meta.set_default_storage_limit(config.quota_default_project_bytes)
        .await
        .map_err(|e| format!("cannot set the default project quota: {e}"))?;
    let audit_log: Arc<dyn berth_meta::AuditStore> = meta.clone();
    let audit = if config.audit_enabled {
        berth_audit::Audit::start(
            audit_log.clone(),
            berth_audit::AuditSettings {
                jsonl: config.audit_jsonl.clone(),
                retention: config.audit_retention,
                ..Default::default()
            },
        )
        .await?
    } else {
        berth_audit::Audit::off()
    };
    let upstreams: Arc<dyn berth_meta::UpstreamStore> = meta.clone();
    let proxy = berth_proxy::ProxyCache::open(
        registry.clone(),
        upstreams.clone(),
        config.secret_key.clone(),
        berth_proxy::ProxyOptions {
            tag_ttl: config.proxy.tag_ttl,
            timeout: config.proxy.timeout,
            spool_dir: config.proxy.spool_dir.clone(),
            mirrors: berth_proxy::Mirrors {
                default: config.proxy.mirror.clone(),
                by_namespace: config.proxy.mirrors.clone(),
            },
        },
    )
    .await
    .map_err(|e| format!("proxy cache: {e}"))?;
    let proxy = Arc::new(proxy);
    let (runner, replicator) = jobs::start(
        meta.clone(),
        registry.clone(),
        config.gc.clone(),
        audit.clone(),
        jobs::ReplicationSetup {
            proxy: proxy.clone(),
            projects: identity.is_some(),
        },
        config.proxy.keep_fresh,
    )
    .await?;
    let metrics = berth_metrics::Metrics::new();
    let data_dir_probe = Arc::new(berth_storage::DataDir::new(
        data_dir.clone(),
        config.min_free_bytes,
    ));
    metrics.add_source(Arc::new(ops::DataDirSource(data_dir_probe.clone())));
    metrics.add_source(Arc::new(ops::MetadataSource(metadata.clone())));
    metrics.add_source(Arc::new(ops::BlobFlushSource(blobs.clone())));
    metrics.add_source(Arc::new(ops::UsageSource {
        registry: registry.clone(),
        per_project: config.metrics_addr.is_some(),
    }));
    let mut state = berth_api::AppState::new(registry, Arc::new(Authorizer::new(auth)));
    // `/metrics` on the registry's port, unless it is off or has a listener of its own.
    state.metrics =
        (config.metrics_enabled && config.metrics_addr.is_none()).then(|| metrics.clone());
    state.body_idle_timeout = config.body_idle_timeout;
    state.data_dir = Some(data_dir_probe);
    state.proxy = Some(proxy);
    state.replication = Some(replicator);
    state.cross_repository_links = config.cross_repository_links;
    state.upstreams = Some(upstreams);
    let shutting_down = state.shutting_down.clone();
    state.token_realm = config.token_realm.clone();
    state.identity = identity;
    state.audit = audit.clone();
    state.audit_log = Some(audit_log);
    // Jobs queued through the API (a GC or retention run now) start at once on this node.
    state.jobs = Some(runner.waking_store());
    state.external = Arc::new(berth_api::ExternalUrlConfig {
        tls: tls.is_some(),
        trusted_proxies: config.trusted_proxies.clone(),
        listen_addr: config.addr,
    });
    let app = berth_api::app(state);
    let limits = server::Limits {
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
        tls_handshake_timeout: config.tls_handshake_timeout,
        shutdown_timeout: config.shutdown_timeout,
    };

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    // One signal, every listener: `/readyz` turns 503 first, then the listeners stop.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let deadline = config.shutdown_timeout;
        async move {
            shutdown_signal().await;
            shutting_down.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                deadline_seconds = deadline.as_secs(),
                "shutting down: no new connections; requests in flight may finish"
            );
            let _ = stop.send(true);
        }
    });
    let stop_signal = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    if config.metrics_enabled
        && let Some(metrics_addr) = config.metrics_addr
    {
        let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .map_err(|e| format!("cannot listen on {metrics_addr} ([metrics] addr): {e}"))?;
        tracing::info!(addr = %metrics_addr, "serving /metrics");
        tokio::spawn(server::serve_plain(
            metrics_listener,
            berth_api::metrics_app(metrics.clone()),
            limits,
            stop_signal(),
        ));
    }
    match tls {
        None => {
            tracing::info!(addr = %config.addr, data_dir = %data_dir.display(), "berth is serving");
            server::serve_plain(listener, app, limits, stop_signal())
                .await
                .map_err(|e| format!("server failed: {e}"))?;
        }
        Some((files, server_config)) => {
            tracing::info!(
                addr = %config.addr,
                data_dir = %data_dir.display(),
                certificate = %files.certificate.display(),
                client_certificates = files.client_ca.is_some(),
                "berth is serving HTTPS"
            );
            tls::serve(
                listener,
                app,
                files,
                server_config,
                tls::RELOAD_POLL,
                limits,
                stop_signal(),
            )
            .await
            .map_err(|e| format!("server failed: {e}"))?;
        }
    }
    // What was recorded until the last request is written before the database closes.
    audit.shutdown().await;
    metadata.close().await;
    tracing::info!("berth stopped");
    Ok(())
}

/// Token mode: open the token service and, on first start, create `admin` (password from
/// `BERTH_ADMIN_PASSWORD`, else generated and printed once).
async fn start_token_mode(
    config: &Config,
    meta: Arc<dyn berth_meta::MetaStore>,
) -> Result<Arc<berth_auth::TokenAuth>, String> {
    let store: Arc<dyn berth_meta::IdentityStore> = meta;
    let settings = berth_auth::TokenSettings {
        service: config.token_service.clone(),
        issuer: config.token_issuer.clone(),
        token_lifetime: config.token_lifetime,
        create_project_on_push: config.create_project_on_push,
        project_creation: config.project_creation,
        ..Default::default()
    };
    let token_auth = Arc::new(berth_auth::TokenAuth::open(store.clone(), settings).await?);
    let identity = berth_auth::IdentityService::new(store).with_caches(token_auth.clone());
    let password = std::env::var("BERTH_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    match identity.bootstrap_admin(password).await {
        Ok(Some(generated)) => {
            // Printed once, to the operator's terminal, never through the log.
            eprintln!(
                "\nberth: created the system administrator `admin` with password:\n\n    {generated}\n\n\
                 Change it with `berth user passwd admin`. It is not shown again.\n"
            );
        }
        Ok(None) => {}
        Err(e) => return Err(format!("cannot create the admin account: {e}")),
    }
    tracing::info!(service = %config.token_service, "token authentication is on");
    Ok(token_auth)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
