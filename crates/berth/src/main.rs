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
mod import;
mod jobs;
mod server;
mod tls;

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
    /// Check the configuration and print every setting with where it came from.
    Config(Flags),
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
}

/// Flags override every other source. Environment: BERTH_* (and REGISTRY_* from registry:2).
#[derive(clap::Args)]
pub struct Flags {
    /// TOML config file (env BERTH_CONFIG).
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
        if let Some(path) = &self.config {
            sources.push(("config file", RawConfig::from_file(path)?));
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
                quota: Default::default(),
            },
        ));
        Config::resolve(&sources)
    }
}

fn main() -> ExitCode {
    // ring is the only crypto provider built in; make it the process default before anything
    // could ask for one. (An error means one is installed already.)
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journald would get raw escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(flags) => flags.load().map_err(|e| e.to_string()).and_then(serve),
        Command::Config(flags) => flags.load().map_err(|e| e.to_string()).and_then(|config| {
            // The TLS files are checked too: `berth config` answers "would serve start?".
            if let Some(files) = &config.tls {
                tls::load(files).map_err(|e| e.to_string())?;
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
        blobs,
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
    jobs::start(meta.clone(), registry.clone()).await?;
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
    let mut state = berth_api::AppState::new(registry, Arc::new(Authorizer::new(auth)));
    state.token_realm = config.token_realm.clone();
    state.identity = identity;
    state.audit = audit.clone();
    state.audit_log = Some(audit_log);
    state.external = Arc::new(berth_api::ExternalUrlConfig {
        tls: tls.is_some(),
        trusted_proxies: config.trusted_proxies.clone(),
        listen_addr: config.addr,
    });
    let app = berth_api::app(state);

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    match tls {
        None => {
            tracing::info!(addr = %config.addr, data_dir = %data_dir.display(), "berth is serving");
            server::serve_plain(listener, app, config.header_read_timeout, shutdown_signal())
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
                config.header_read_timeout,
                shutdown_signal(),
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
