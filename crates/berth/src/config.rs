//! Configuration in two stages (as ripgrep does): [`RawConfig`] is what the user wrote, in
//! any of its sources; [`Config`] is the validated result with defaults resolved.
//!
//! Precedence, lowest first: built-in defaults < config file (TOML) < registry:2 environment
//! names (`REGISTRY_*`, so existing scripts keep working) < `BERTH_*` environment < flags.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use berth_api::external_url::IpNet;
use serde::Deserialize;

mod registry2;

/// Everything a user can set, each optional; one value per source.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on, `host:port`.
    pub addr: Option<String>,
    /// Directory holding the metadata database and the blobs.
    pub data_dir: Option<PathBuf>,
    /// Allow DELETE of manifests, tags and blobs.
    pub delete_enabled: Option<bool>,
    /// Accept anonymous pushes from non-loopback clients when no auth is configured.
    pub anonymous_write: Option<bool>,
    /// A pusher's `HEAD` of a blob another repository it may pull holds links it here.
    pub cross_repository_links: Option<bool>,
    /// htpasswd file (bcrypt entries) enabling HTTP basic auth.
    pub htpasswd: Option<PathBuf>,
    /// Realm named in basic-auth challenges.
    pub realm: Option<String>,
    /// `[validation]`: what pushed manifests must satisfy.
    #[serde(default)]
    pub validation: RawValidation,
    /// `[tls]`: serve HTTPS instead of plain HTTP.
    #[serde(default)]
    pub tls: RawTls,
    /// `[http]`: how requests reach berth.
    #[serde(default)]
    pub http: RawHttp,
    /// `[auth]`: how clients authenticate.
    #[serde(default)]
    pub auth: RawAuth,
    /// `[audit]`: the audit log.
    #[serde(default)]
    pub audit: RawAudit,
    /// `[storage]`: where blob bytes live.
    #[serde(default)]
    pub storage: RawStorage,
    /// `[database]`: where the metadata lives.
    #[serde(default)]
    pub database: RawDatabase,
    /// `[proxy]`: proxy-cache projects.
    #[serde(default)]
    pub proxy: RawProxy,
    /// `[secrets]`: sealing secrets stored in the database (upstream registry credentials).
    #[serde(default)]
    pub secrets: RawSecrets,
    /// `[log]`: how log lines are written.
    #[serde(default)]
    pub log: RawLog,
    /// `[metrics]`: the Prometheus endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[gc]`: garbage collection.
    #[serde(default)]
    pub gc: RawGc,
    /// `[quota]`: projects' storage limits.
    #[serde(default)]
    pub quota: RawQuota,
}

/// The `[proxy]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// Seconds a manifest pulled by tag is served from the cache before the upstream is
    /// asked whether the tag moved.
    pub tag_ttl: Option<u64>,
    /// Seconds: cached tags pulled within this long are revalidated by a job ahead of their
    /// TTL, so that their pulls never wait for the upstream (`0`: only on pulls).
    pub keep_fresh: Option<u64>,
    /// Seconds to wait for an upstream to connect, answer, or send the next piece of a body.
    pub timeout: Option<u64>,
    /// Where blobs being fetched from upstreams are spooled when the blob store is S3 (on the
    /// filesystem store they go straight into its upload area; default: `<data_dir>/proxy-spool`).
    pub spool_dir: Option<PathBuf>,
    /// The proxy-cache project that pulls without a project prefix go to when their first
    /// path component names no project (Docker's `registry-mirrors`).
    pub mirror: Option<String>,
    /// `"<upstream host>=<proxy project>"` entries: pulls carrying containerd's
    /// `?ns=<upstream host>` go to that project.
    pub mirrors: Option<Vec<String>>,
}

/// The `[secrets]` table.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    /// 32 bytes, base64: the key sealing stored secrets. Unset: one is generated and kept in
    /// the database (which then holds both the key and what it seals).
    pub key: Option<String>,
}

impl std::fmt::Debug for RawSecrets {
    /// The key is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSecrets")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The `[log]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` (one human-readable line per event) or `json` (one JSON object per line).
    pub format: Option<String>,
}

/// The `[metrics]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Serve `/metrics` at all.
    pub enabled: Option<bool>,
    /// Serve `/metrics` on this address only (plain HTTP) instead of on the registry's port.
    pub addr: Option<String>,
}

/// The `[gc]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGc {
    /// When GC runs (cron, UTC), once cluster-wide; empty: only when asked.
    pub schedule: Option<String>,
    /// Scheduled runs also delete untagged manifests nothing kept needs.
    pub delete_untagged: Option<bool>,
    /// Seconds an untagged manifest is kept after its push.
    pub untagged_grace: Option<u64>,
    /// Seconds a blob or link nothing references is kept (a push in flight needs it).
    pub blob_grace: Option<u64>,
}

/// The `[quota]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    /// The storage limit a new project gets, in bytes; -1: none.
    pub default_project_bytes: Option<i64>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The `[storage]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// `filesystem` (in the data directory) or `s3`.
    pub backend: Option<String>,
    /// `[storage.s3]`: the bucket, when the backend is `s3`.
    #[serde(default)]
    pub s3: RawS3,
    /// `/readyz` fails while the data directory has fewer free bytes than this.
    pub min_free_bytes: Option<u64>,
}

/// The `[storage.s3]` table. Credentials left out come from the AWS environment variables or
/// the instance profile.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3 {
    /// `http(s)://host:port` of an S3-compatible server; AWS itself when unset.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    /// Key prefix for everything berth stores in the bucket.
    pub prefix: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) rather than virtual-hosted ones.
    pub path_style: Option<bool>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Answer blob GETs with a 307 to a presigned URL (else stream them through berth).
    pub redirect: Option<bool>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: Option<bool>,
}

impl std::fmt::Debug for RawS3 {
    /// The secret key is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawS3")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect", &self.redirect)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// The `[database]` table.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// `postgres://…` (PostgreSQL, shared by several nodes) or `sqlite://PATH`; unset: the
    /// embedded SQLite database in `data_dir`.
    pub url: Option<String>,
    /// PostgreSQL: connections this node keeps open at most.
    pub pool_size: Option<u32>,
    /// PostgreSQL: seconds a statement may run before the server cancels it; 0: no limit.
    pub statement_timeout: Option<u64>,
    /// PostgreSQL: seconds start-up waits for the database to accept connections.
    pub connect_timeout: Option<u64>,
}

/// Never prints the URL's password (a config dump in a bug report must not leak it).
impl std::fmt::Debug for RawDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawDatabase")
            .field(
                "url",
                &self.url.as_deref().map(berth_meta::postgres::redacted_url),
            )
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The `[audit]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Record the audit log (and pull counts).
    pub enabled: Option<bool>,
    /// JSON lines: `stdout`, a file path, or `off`.
    pub jsonl: Option<String>,
    /// Days entries are kept; 0 keeps them forever.
    pub retention_days: Option<u64>,
}

/// The `[auth]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// `none`, `htpasswd` or `token`.
    pub mode: Option<String>,
    /// Token mode: the `service` of challenges and the tokens' audience.
    pub service: Option<String>,
    /// Token mode: the tokens' issuer.
    pub issuer: Option<String>,
    /// Token mode: access token lifetime, seconds.
    pub token_lifetime: Option<u64>,
    /// Token mode: the token service's URL as clients must reach it (else derived per request).
    pub token_realm: Option<String>,
    /// Token mode: who may create a project by pushing into it: off, admins or users.
    pub create_project_on_push: Option<String>,
    /// Token mode: who may create projects through the API: everyone or adminonly.
    pub project_creation_restriction: Option<String>,
}

/// The `[validation]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidation {
    /// Accept image indexes whose child manifests are not all present.
    pub sparse_index: Option<bool>,
}

/// The `[tls]` table: PEM files.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Certificate chain, leaf first.
    pub certificate: Option<PathBuf>,
    /// Private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA certificates that client certificates must chain to (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// The `[http]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Reverse proxies (IPs or CIDR blocks) whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// Seconds a connection may take to send a request's headers (or sit idle between
    /// keep-alive requests) before it is closed.
    pub header_read_timeout: Option<u64>,
    /// Seconds a connection may stay open with no request in flight and no byte moving
    /// (HTTP/2 connections included) before it is closed.
    pub idle_timeout: Option<u64>,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_timeout: Option<u64>,
    /// Seconds a request body may send nothing before the request is dropped (0: never).
    pub body_idle_timeout: Option<u64>,
    /// Connections open at once; more are answered 503 (0: no limit).
    pub max_connections: Option<u64>,
    /// Seconds requests in flight get to finish after SIGTERM or SIGINT.
    pub shutdown_timeout: Option<u64>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub delete_enabled: bool,
    pub anonymous_write: bool,
    pub cross_repository_links: bool,
    pub htpasswd: Option<PathBuf>,
    pub realm: String,
    pub sparse_index: bool,
    pub auth_mode: AuthModeSetting,
    pub token_service: String,
    pub token_issuer: String,
    pub token_lifetime: std::time::Duration,
    pub token_realm: Option<String>,
    pub create_project_on_push: berth_auth::ProjectCreation,
    pub project_creation: berth_auth::ProjectCreation,
    /// HTTPS when set; plain HTTP otherwise.
    pub tls: Option<TlsFiles>,
    pub trusted_proxies: Vec<IpNet>,
    /// Closes connections that stall before a request's headers are in.
    pub header_read_timeout: std::time::Duration,
    /// Closes connections with no request in flight and nothing moving.
    pub idle_timeout: std::time::Duration,
    pub tls_handshake_timeout: std::time::Duration,
    /// Drops request bodies that send nothing this long; `None` never.
    pub body_idle_timeout: Option<std::time::Duration>,
    /// Connections beyond this many are answered 503; `None` no limit.
    pub max_connections: Option<usize>,
    /// How long requests in flight may take to finish at shutdown.
    pub shutdown_timeout: std::time::Duration,
    /// `/readyz` fails below this many free bytes in the data directory.
    pub min_free_bytes: u64,
    pub log_format: LogFormat,
    /// Whether `/metrics` is served.
    pub metrics_enabled: bool,
    /// A listener of its own for `/metrics`; `None`: the registry's port.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether the audit log (and pull counting) runs.
    pub audit_enabled: bool,
    /// Where the audit log's JSON lines go.
    pub audit_jsonl: berth_audit::JsonLines,
    /// How long audit entries are kept; `None` forever.
    pub audit_retention: Option<std::time::Duration>,
    /// The storage limit new projects get, in bytes; -1: none.
    pub quota_default_project_bytes: i64,
    /// Where blob bytes live.
    pub storage: StorageSetting,
    /// Where the metadata lives.
    pub database: Database,
    /// Proxy-cache projects: tag revalidation, upstream timeout, spool directory.
    pub proxy: ProxySetting,
    /// The configured key sealing stored secrets (32 bytes), if any. Never logged.
    pub secret_key: Option<Vec<u8>>,
    /// Garbage collection's schedule and grace windows.
    pub gc: GcSetting,
    /// For `berth config check`: each setting and the source that decided it.
    pub origins: Vec<(&'static str, String, &'static str)>,
    /// Settings of the sources that berth ignores (a registry:2 file's), one line each.
    pub warnings: Vec<String>,
}

/// `[proxy]` resolved.
#[derive(Debug, Clone)]
pub struct ProxySetting {
    pub tag_ttl: std::time::Duration,
    /// Tags pulled within this long are kept fresh by the `proxy_revalidate` job (zero: off).
    pub keep_fresh: std::time::Duration,
    pub timeout: std::time::Duration,
    pub spool_dir: PathBuf,
    /// The default mirror project (`[proxy] mirror`).
    pub mirror: Option<String>,
    /// Upstream host → proxy project (`[proxy] mirrors`).
    pub mirrors: Vec<(String, String)>,
}

/// `[gc]` resolved.
#[derive(Debug, Clone)]
pub struct GcSetting {
    /// `None`: no scheduled runs.
    pub schedule: Option<berth_core::cron::Cron>,
    pub delete_untagged: bool,
    pub untagged_grace: std::time::Duration,
    pub blob_grace: std::time::Duration,
}

/// Which blob store the registry uses.
#[derive(Debug, Clone)]
pub enum StorageSetting {
    /// `blobs/` and `uploads/` in the data directory.
    Filesystem,
    S3(berth_storage::S3Settings),
}

/// The metadata database the configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded database at this path (one process).
    Sqlite(PathBuf),
    /// A PostgreSQL database, which several berth processes may share.
    Postgres(berth_meta::PgOptions),
}

/// Which authentication the registry runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthModeSetting {
    None,
    Htpasswd,
    Token,
}

/// The TLS files named by the configuration (read and checked by `tls::load`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Inconsistent(String),
    #[error("registry:2 config file {path} is invalid: {message}")]
    Yaml { path: String, message: String },
    /// A registry:2 setting berth cannot honour, and must not ignore.
    #[error("{name} is not supported: {reason}")]
    Unsupported { name: String, reason: String },
}

impl RawConfig {
    /// A berth TOML file, or a registry:2 `config.yml` (with a warning for each of its
    /// settings berth ignores).
    pub fn from_file(path: &Path) -> Result<(RawConfig, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if registry2::is_registry2(path, &text) {
            return registry2::from_yaml(&path.display().to_string(), &text);
        }
        let raw = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        Ok((raw, Vec::new()))
    }

    /// Values from environment variables named by `name` (e.g. `BERTH_ADDR` for `addr`).
    pub fn from_env(
        name: impl Fn(&'static str) -> Option<&'static str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RawConfig, ConfigError> {
        let get = |field: &'static str| name(field).and_then(env);
        let flag = |field: &'static str| -> Result<Option<bool>, ConfigError> {
            get(field)
                .map(|v| parse_bool(name(field).unwrap_or(field), &v))
                .transpose()
        };
        let number = |field: &'static str, what: &str| -> Result<Option<u64>, ConfigError> {
            get(field)
                .map(|v| {
                    v.trim().parse().map_err(|_| ConfigError::Invalid {
                        name: name(field).unwrap_or(field),
                        value: v.clone(),
                        reason: format!("expected a number of {what}"),
                    })
                })
                .transpose()
        };
        Ok(RawConfig {
            addr: get("addr"),
            data_dir: get("data_dir").map(PathBuf::from),
            delete_enabled: flag("delete_enabled")?,
            anonymous_write: flag("anonymous_write")?,
            cross_repository_links: flag("cross_repository_links")?,
            htpasswd: get("htpasswd").map(PathBuf::from),
            realm: get("realm"),
            validation: RawValidation {
                sparse_index: flag("validation.sparse_index")?,
            },
            auth: RawAuth {
                mode: get("auth.mode"),
                service: get("auth.service"),
                issuer: get("auth.issuer"),
                token_lifetime: get("auth.token_lifetime")
                    .map(|v| {
                        v.trim().parse().map_err(|_| ConfigError::Invalid {
                            name: name("auth.token_lifetime").unwrap_or("auth.token_lifetime"),
                            value: v.clone(),
                            reason: "expected a number of seconds".into(),
                        })
                    })
                    .transpose()?,
                token_realm: get("auth.token_realm"),
                create_project_on_push: get("auth.create_project_on_push"),
                project_creation_restriction: get("auth.project_creation_restriction"),
            },
            tls: RawTls {
                certificate: get("tls.certificate").map(PathBuf::from),
                key: get("tls.key").map(PathBuf::from),
                client_ca: get("tls.client_ca").map(PathBuf::from),
            },
            quota: RawQuota {
                default_project_bytes: get("quota.default_project_bytes")
                    .map(|v| {
                        v.trim().parse().map_err(|_| ConfigError::Invalid {
                            name: name("quota.default_project_bytes")
                                .unwrap_or("quota.default_project_bytes"),
                            value: v.clone(),
                            reason: "expected a number of bytes, or -1 for none".into(),
                        })
                    })
                    .transpose()?,
            },
            audit: RawAudit {
                enabled: flag("audit.enabled")?,
                jsonl: get("audit.jsonl"),
                retention_days: get("audit.retention_days")
                    .map(|v| {
                        v.trim().parse().map_err(|_| ConfigError::Invalid {
                            name: name("audit.retention_days").unwrap_or("audit.retention_days"),
                            value: v.clone(),
                            reason: "expected a number of days".into(),
                        })
                    })
                    .transpose()?,
            },
            storage: RawStorage {
                backend: get("storage.backend"),
                s3: RawS3 {
                    endpoint: get("storage.s3.endpoint"),
                    region: get("storage.s3.region"),
                    bucket: get("storage.s3.bucket"),
                    prefix: get("storage.s3.prefix"),
                    path_style: flag("storage.s3.path_style")?,
                    access_key: get("storage.s3.access_key"),
                    secret_key: get("storage.s3.secret_key"),
                    redirect: flag("storage.s3.redirect")?,
                    allow_http: flag("storage.s3.allow_http")?,
                },
                min_free_bytes: number("storage.min_free_bytes", "bytes")?,
            },
            database: RawDatabase {
                url: get("database.url"),
                pool_size: number("database.pool_size", "connections")?
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                statement_timeout: number("database.statement_timeout", "seconds")?,
                connect_timeout: number("database.connect_timeout", "seconds")?,
            },
            gc: RawGc {
                schedule: get("gc.schedule"),
                delete_untagged: flag("gc.delete_untagged")?,
                untagged_grace: number("gc.untagged_grace", "seconds")?,
                blob_grace: number("gc.blob_grace", "seconds")?,
            },
            http: RawHttp {
                trusted_proxies: get("http.trusted_proxies").map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(String::from)
                        .collect()
                }),
                header_read_timeout: number("http.header_read_timeout", "seconds")?,
                idle_timeout: number("http.idle_timeout", "seconds")?,
                tls_handshake_timeout: number("http.tls_handshake_timeout", "seconds")?,
                body_idle_timeout: number("http.body_idle_timeout", "seconds")?,
                max_connections: number("http.max_connections", "connections")?,
                shutdown_timeout: number("http.shutdown_timeout", "seconds")?,
            },
            log: RawLog {
                format: get("log.format"),
            },
            metrics: RawMetrics {
                enabled: flag("metrics.enabled")?,
                addr: get("metrics.addr"),
            },
            proxy: RawProxy {
                tag_ttl: number("proxy.tag_ttl", "seconds")?,
                keep_fresh: number("proxy.keep_fresh", "seconds")?,
                timeout: number("proxy.timeout", "seconds")?,
                spool_dir: get("proxy.spool_dir").map(PathBuf::from),
                mirror: get("proxy.mirror"),
                mirrors: get("proxy.mirrors").map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(String::from)
                        .collect()
                }),
            },
            secrets: RawSecrets {
                key: get("secrets.key"),
            },
        })
    }
}

/// `BERTH_*` names.
pub fn berth_env_name(field: &'static str) -> Option<&'static str> {
    Some(match field {
        "addr" => "BERTH_ADDR",
        "data_dir" => "BERTH_DATA_DIR",
        "delete_enabled" => "BERTH_DELETE_ENABLED",
        "anonymous_write" => "BERTH_ANONYMOUS_WRITE",
        "cross_repository_links" => "BERTH_CROSS_REPOSITORY_LINKS",
        "htpasswd" => "BERTH_HTPASSWD",
        "realm" => "BERTH_REALM",
        "validation.sparse_index" => "BERTH_VALIDATION_SPARSE_INDEX",
        "auth.mode" => "BERTH_AUTH_MODE",
        "auth.service" => "BERTH_AUTH_SERVICE",
        "auth.issuer" => "BERTH_AUTH_ISSUER",
        "auth.token_lifetime" => "BERTH_AUTH_TOKEN_LIFETIME",
        "auth.token_realm" => "BERTH_AUTH_TOKEN_REALM",
        "auth.create_project_on_push" => "BERTH_AUTH_CREATE_PROJECT_ON_PUSH",
        "auth.project_creation_restriction" => "BERTH_AUTH_PROJECT_CREATION_RESTRICTION",
        "tls.certificate" => "BERTH_TLS_CERTIFICATE",
        "tls.key" => "BERTH_TLS_KEY",
        "tls.client_ca" => "BERTH_TLS_CLIENT_CA",
        "http.trusted_proxies" => "BERTH_HTTP_TRUSTED_PROXIES",
        "http.header_read_timeout" => "BERTH_HTTP_HEADER_READ_TIMEOUT",
        "http.idle_timeout" => "BERTH_HTTP_IDLE_TIMEOUT",
        "http.tls_handshake_timeout" => "BERTH_HTTP_TLS_HANDSHAKE_TIMEOUT",
        "http.body_idle_timeout" => "BERTH_HTTP_BODY_IDLE_TIMEOUT",
        "http.max_connections" => "BERTH_HTTP_MAX_CONNECTIONS",
        "http.shutdown_timeout" => "BERTH_HTTP_SHUTDOWN_TIMEOUT",
        "storage.min_free_bytes" => "BERTH_STORAGE_MIN_FREE_BYTES",
        "log.format" => "BERTH_LOG_FORMAT",
        "metrics.enabled" => "BERTH_METRICS_ENABLED",
        "metrics.addr" => "BERTH_METRICS_ADDR",
        "audit.enabled" => "BERTH_AUDIT_ENABLED",
        "audit.jsonl" => "BERTH_AUDIT_JSONL",
        "audit.retention_days" => "BERTH_AUDIT_RETENTION_DAYS",
        "quota.default_project_bytes" => "BERTH_QUOTA_DEFAULT_PROJECT_BYTES",
        "storage.backend" => "BERTH_STORAGE_BACKEND",
        "storage.s3.endpoint" => "BERTH_STORAGE_S3_ENDPOINT",
        "storage.s3.region" => "BERTH_STORAGE_S3_REGION",
        "storage.s3.bucket" => "BERTH_STORAGE_S3_BUCKET",
        "storage.s3.prefix" => "BERTH_STORAGE_S3_PREFIX",
        "storage.s3.path_style" => "BERTH_STORAGE_S3_PATH_STYLE",
        "storage.s3.access_key" => "BERTH_STORAGE_S3_ACCESS_KEY",
        "storage.s3.secret_key" => "BERTH_STORAGE_S3_SECRET_KEY",
        "storage.s3.redirect" => "BERTH_STORAGE_S3_REDIRECT",
        "storage.s3.allow_http" => "BERTH_STORAGE_S3_ALLOW_HTTP",
        "database.url" => "BERTH_DATABASE_URL",
        "database.pool_size" => "BERTH_DATABASE_POOL_SIZE",
        "database.statement_timeout" => "BERTH_DATABASE_STATEMENT_TIMEOUT",
        "database.connect_timeout" => "BERTH_DATABASE_CONNECT_TIMEOUT",
        "proxy.tag_ttl" => "BERTH_PROXY_TAG_TTL",
        "proxy.keep_fresh" => "BERTH_PROXY_KEEP_FRESH",
        "proxy.timeout" => "BERTH_PROXY_TIMEOUT",
        "proxy.spool_dir" => "BERTH_PROXY_SPOOL_DIR",
        "proxy.mirror" => "BERTH_PROXY_MIRROR",
        "proxy.mirrors" => "BERTH_PROXY_MIRRORS",
        "secrets.key" => "BERTH_SECRET_KEY",
        "gc.schedule" => "BERTH_GC_SCHEDULE",
        "gc.delete_untagged" => "BERTH_GC_DELETE_UNTAGGED",
        "gc.untagged_grace" => "BERTH_GC_UNTAGGED_GRACE",
        "gc.blob_grace" => "BERTH_GC_BLOB_GRACE",
        _ => return None,
    })
}

/// The registry:2 names users already have in their scripts.
pub fn registry_env_name(field: &'static str) -> Option<&'static str> {
    Some(match field {
        "addr" => "REGISTRY_HTTP_ADDR",
        "data_dir" => "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
        "delete_enabled" => "REGISTRY_STORAGE_DELETE_ENABLED",
        "htpasswd" => "REGISTRY_AUTH_HTPASSWD_PATH",
        "realm" => "REGISTRY_AUTH_HTPASSWD_REALM",
        "auth.mode" => "REGISTRY_AUTH",
        "tls.certificate" => "REGISTRY_HTTP_TLS_CERTIFICATE",
        "tls.key" => "REGISTRY_HTTP_TLS_KEY",
        // registry:2 takes a list of client CA files; berth takes one (a PEM bundle may
        // hold several CAs), so only the first name is read.
        "tls.client_ca" => "REGISTRY_HTTP_TLS_CLIENTCAS_0",
        // registry:2 names its driver `s3` too; its `filesystem` is berth's as well.
        "storage.backend" => "REGISTRY_STORAGE",
        "storage.s3.endpoint" => "REGISTRY_STORAGE_S3_REGIONENDPOINT",
        "storage.s3.region" => "REGISTRY_STORAGE_S3_REGION",
        "storage.s3.bucket" => "REGISTRY_STORAGE_S3_BUCKET",
        "storage.s3.prefix" => "REGISTRY_STORAGE_S3_ROOTDIRECTORY",
        "storage.s3.path_style" => "REGISTRY_STORAGE_S3_FORCEPATHSTYLE",
        "storage.s3.access_key" => "REGISTRY_STORAGE_S3_ACCESSKEY",
        "storage.s3.secret_key" => "REGISTRY_STORAGE_S3_SECRETKEY",
        _ => return None,
    })
}

/// Check the `[storage]` settings that belong together.
fn resolve_storage(
    backend: &str,
    s3: berth_storage::S3Settings,
) -> Result<StorageSetting, ConfigError> {
    match backend.trim() {
        "filesystem" | "" => Ok(StorageSetting::Filesystem),
        "s3" => {
            if s3.bucket.trim().is_empty() {
                return Err(ConfigError::Inconsistent(
                    "storage.backend is s3 but storage.s3.bucket is not set".into(),
                ));
            }
            if let Some(endpoint) = &s3.endpoint {
                let plain = endpoint.starts_with("http://");
                if !plain && !endpoint.starts_with("https://") {
                    return Err(ConfigError::Invalid {
                        name: "storage.s3.endpoint",
                        value: endpoint.clone(),
                        reason: "must be an http(s) URL".into(),
                    });
                }
                if plain && !s3.allow_http {
                    return Err(ConfigError::Invalid {
                        name: "storage.s3.endpoint",
                        value: endpoint.clone(),
                        reason: "plain HTTP needs storage.s3.allow_http = true".into(),
                    });
                }
            }
            if s3.access_key.is_some() != s3.secret_key.is_some() {
                return Err(ConfigError::Inconsistent(
                    "storage.s3.access_key and storage.s3.secret_key go together: set both, or \
                     neither (then the AWS environment or instance profile is used)"
                        .into(),
                ));
            }
            Ok(StorageSetting::S3(s3))
        }
        other => Err(ConfigError::Invalid {
            name: "storage.backend",
            value: other.into(),
            reason: "expected filesystem or s3".into(),
        }),
    }
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name,
            value: value.into(),
            reason: "expected true or false".into(),
        }),
    }
}

impl Config {
    /// Merge sources (lowest precedence first) and validate.
    pub fn resolve(sources: &[(&'static str, RawConfig)]) -> Result<Config, ConfigError> {
        let mut origins = Vec::new();
        // `pick!(field, default)`, or `pick!("table.key", table.key, default)` inside a table.
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                pick!(stringify!($field), $field, $default)
            };
            ($name:expr, $($field:ident).+, $default:expr) => {{
                let mut value = $default;
                let mut origin = "default";
                for (source, raw) in sources {
                    if let Some(v) = raw.$($field).+.clone() {
                        value = Some(v);
                        origin = source;
                    }
                }
                let shown = value
                    .as_ref()
                    .map_or_else(|| "(not set)".to_string(), |v| format!("{v:?}"));
                origins.push(($name, shown, origin));
                value
            }};
        }
        let addr_text = pick!(addr, Some("127.0.0.1:5000".to_string())).unwrap_or_default();
        let data_dir = pick!(data_dir, Some(PathBuf::from("berth-data"))).unwrap_or_default();
        let delete_enabled = pick!(delete_enabled, Some(true)).unwrap_or(true);
        let anonymous_write = pick!(anonymous_write, Some(false)).unwrap_or(false);
        let cross_repository_links = pick!(cross_repository_links, Some(true)).unwrap_or(true);
        let htpasswd = pick!(htpasswd, None::<PathBuf>);
        let realm = pick!(realm, Some("berth".to_string())).unwrap_or_default();
        let sparse_index = pick!(
            "validation.sparse_index",
            validation.sparse_index,
            Some(false)
        )
        .unwrap_or(false);
        let certificate = pick!("tls.certificate", tls.certificate, None::<PathBuf>);
        let key = pick!("tls.key", tls.key, None::<PathBuf>);
        let client_ca = pick!("tls.client_ca", tls.client_ca, None::<PathBuf>);
        let trusted_proxies = pick!(
            "http.trusted_proxies",
            http.trusted_proxies,
            Some(Vec::<String>::new())
        )
        .unwrap_or_default();
        let header_read_timeout = pick!(
            "http.header_read_timeout",
            http.header_read_timeout,
            Some(30u64)
        )
        .unwrap_or(30);
        if !(1..=3600).contains(&header_read_timeout) {
            return Err(ConfigError::Invalid {
                name: "http.header_read_timeout",
                value: header_read_timeout.to_string(),
                reason: "1 to 3600 seconds".into(),
            });
        }
        let seconds_within =
            |name: &'static str, value: u64, range: std::ops::RangeInclusive<u64>| {
                if range.contains(&value) {
                    Ok(std::time::Duration::from_secs(value))
                } else {
                    Err(ConfigError::Invalid {
                        name,
                        value: value.to_string(),
                        reason: format!("{} to {} seconds", range.start(), range.end()),
                    })
                }
            };
        let idle_timeout = pick!("http.idle_timeout", http.idle_timeout, Some(60u64)).unwrap_or(60);
        let idle_timeout = seconds_within("http.idle_timeout", idle_timeout, 1..=86400)?;
        let tls_handshake_timeout = pick!(
            "http.tls_handshake_timeout",
            http.tls_handshake_timeout,
            Some(10u64)
        )
        .unwrap_or(10);
        let tls_handshake_timeout =
            seconds_within("http.tls_handshake_timeout", tls_handshake_timeout, 1..=300)?;
        let body_idle_timeout = pick!(
            "http.body_idle_timeout",
            http.body_idle_timeout,
            Some(60u64)
        )
        .unwrap_or(60);
        let body_idle_timeout = match body_idle_timeout {
            0 => None,
            n => Some(seconds_within("http.body_idle_timeout", n, 1..=86400)?),
        };
        let max_connections =
            pick!("http.max_connections", http.max_connections, Some(4096u64)).unwrap_or(4096);
        let max_connections = match max_connections {
            0 => None,
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let shutdown_timeout =
            pick!("http.shutdown_timeout", http.shutdown_timeout, Some(25u64)).unwrap_or(25);
        let shutdown_timeout = seconds_within("http.shutdown_timeout", shutdown_timeout, 0..=3600)?;
        let min_free_bytes =
            pick!("storage.min_free_bytes", storage.min_free_bytes, Some(0u64)).unwrap_or(0);
        let log_format = match pick!("log.format", log.format, Some("text".to_string()))
            .unwrap_or_default()
            .trim()
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    name: "log.format",
                    value: other.into(),
                    reason: "text or json".into(),
                });
            }
        };
        let metrics_enabled = pick!("metrics.enabled", metrics.enabled, Some(true)).unwrap_or(true);
        let metrics_addr = pick!("metrics.addr", metrics.addr, None::<String>)
            .map(|text| {
                text.trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Invalid {
                        name: "metrics.addr",
                        value: text.clone(),
                        reason: "expected IP:PORT".into(),
                    })
            })
            .transpose()?;

        let tag_ttl = pick!("proxy.tag_ttl", proxy.tag_ttl, Some(300u64)).unwrap_or(300);
        let keep_fresh =
            pick!("proxy.keep_fresh", proxy.keep_fresh, Some(86_400u64)).unwrap_or(86_400);
        let proxy_timeout = pick!("proxy.timeout", proxy.timeout, Some(30u64)).unwrap_or(30);
        if !(1..=3600).contains(&proxy_timeout) {
            return Err(ConfigError::Invalid {
                name: "proxy.timeout",
                value: proxy_timeout.to_string(),
                reason: "1 to 3600 seconds".into(),
            });
        }
        let spool_dir = pick!("proxy.spool_dir", proxy.spool_dir, None::<PathBuf>)
            .unwrap_or_else(|| data_dir.join("proxy-spool"));
        let project_name = |name: &'static str, value: &str| {
            if berth_core::access::valid_project_name(value) {
                Ok(value.to_owned())
            } else {
                Err(ConfigError::Invalid {
                    name,
                    value: value.to_owned(),
                    reason: "a project name (lower-case letters, digits, . _ -)".into(),
                })
            }
        };
        let mirror = pick!("proxy.mirror", proxy.mirror, None::<String>)
            .filter(|m| !m.is_empty())
            .map(|m| project_name("proxy.mirror", &m))
            .transpose()?;
        let mirrors = pick!("proxy.mirrors", proxy.mirrors, Some(Vec::<String>::new()))
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                let Some((host, project)) = entry.split_once('=') else {
                    return Err(ConfigError::Invalid {
                        name: "proxy.mirrors",
                        value: entry.clone(),
                        reason: "\"<upstream host>=<proxy project>\", e.g. \"docker.io=dockerhub\""
                            .into(),
                    });
                };
                let host = host.trim().to_ascii_lowercase();
                if host.is_empty() || host.contains('/') {
                    return Err(ConfigError::Invalid {
                        name: "proxy.mirrors",
                        value: entry.clone(),
                        reason: "a registry host (and port), e.g. docker.io or quay.io".into(),
                    });
                }
                Ok((host, project_name("proxy.mirrors", project.trim())?))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let secret_key_text = pick!("secrets.key", secrets.key, None::<String>);
        if secret_key_text.is_some()
            && let Some(shown) = origins.last_mut()
        {
            shown.1 = "(set, not shown)".into();
        }
        let secret_key = secret_key_text
            .map(|text| {
                berth_proxy::secrets::parse_configured_key(&text).map_err(|e| {
                    ConfigError::Invalid {
                        name: "secrets.key",
                        value: "(not shown)".into(),
                        reason: e.to_string(),
                    }
                })
            })
            .transpose()?;

        let gc_schedule_text =
            pick!("gc.schedule", gc.schedule, Some(String::new())).unwrap_or_default();
        let gc_schedule = match gc_schedule_text.trim() {
            "" | "none" | "off" => None,
            cron => Some(cron.parse().map_err(|e| ConfigError::Invalid {
                name: "gc.schedule",
                value: cron.to_string(),
                reason: format!("{e}"),
            })?),
        };
        let gc = GcSetting {
            schedule: gc_schedule,
            delete_untagged: pick!("gc.delete_untagged", gc.delete_untagged, Some(false))
                .unwrap_or(false),
            untagged_grace: std::time::Duration::from_secs(
                pick!("gc.untagged_grace", gc.untagged_grace, Some(3600u64)).unwrap_or(3600),
            ),
            blob_grace: std::time::Duration::from_secs(
                pick!("gc.blob_grace", gc.blob_grace, Some(3600u64)).unwrap_or(3600),
            ),
        };
        let audit_enabled = pick!("audit.enabled", audit.enabled, Some(true)).unwrap_or(true);
        let audit_jsonl_text =
            pick!("audit.jsonl", audit.jsonl, Some("off".to_string())).unwrap_or_default();
        let audit_retention_days =
            pick!("audit.retention_days", audit.retention_days, Some(90u64)).unwrap_or(90);
        let audit_jsonl = match audit_jsonl_text.trim() {
            "off" | "" => berth_audit::JsonLines::Off,
            "stdout" | "-" => berth_audit::JsonLines::Stdout,
            path => berth_audit::JsonLines::File(PathBuf::from(path)),
        };
        if audit_retention_days > 100 * 365 {
            return Err(ConfigError::Invalid {
                name: "audit.retention_days",
                value: audit_retention_days.to_string(),
                reason: "at most 36500 days (0 keeps entries forever)".into(),
            });
        }
        let audit_retention = (audit_retention_days > 0)
            .then(|| std::time::Duration::from_secs(audit_retention_days * 86_400));
        let quota_default_project_bytes = pick!(
            "quota.default_project_bytes",
            quota.default_project_bytes,
            Some(-1i64)
        )
        .unwrap_or(-1);
        if quota_default_project_bytes < -1 || quota_default_project_bytes == 0 {
            return Err(ConfigError::Invalid {
                name: "quota.default_project_bytes",
                value: quota_default_project_bytes.to_string(),
                reason: "expected a positive number of bytes, or -1 for none".into(),
            });
        }

        let storage = {
            let backend = pick!(
                "storage.backend",
                storage.backend,
                Some("filesystem".to_string())
            )
            .unwrap_or_default();
            let endpoint = pick!("storage.s3.endpoint", storage.s3.endpoint, None::<String>);
            let region = pick!(
                "storage.s3.region",
                storage.s3.region,
                Some("us-east-1".to_string())
            );
            let bucket = pick!("storage.s3.bucket", storage.s3.bucket, None::<String>);
            let prefix = pick!("storage.s3.prefix", storage.s3.prefix, Some(String::new()))
                .unwrap_or_default();
            // S3-compatible servers mostly want path-style requests; AWS virtual-hosted ones.
            let path_style = pick!(
                "storage.s3.path_style",
                storage.s3.path_style,
                Some(endpoint.is_some())
            )
            .unwrap_or(false);
            let access_key = pick!(
                "storage.s3.access_key",
                storage.s3.access_key,
                None::<String>
            );
            let secret_key = pick!(
                "storage.s3.secret_key",
                storage.s3.secret_key,
                None::<String>
            );
            if secret_key.is_some()
                && let Some(shown) = origins.last_mut()
            {
                shown.1 = "(set, not shown)".into();
            }
            let redirect =
                pick!("storage.s3.redirect", storage.s3.redirect, Some(true)).unwrap_or(true);
            let allow_http =
                pick!("storage.s3.allow_http", storage.s3.allow_http, Some(false)).unwrap_or(false);
            resolve_storage(
                &backend,
                berth_storage::S3Settings {
                    endpoint,
                    region,
                    bucket: bucket.unwrap_or_default(),
                    prefix,
                    path_style,
                    access_key,
                    secret_key,
                    redirect,
                    allow_http,
                    spool_dir: None,
                },
            )?
        };

        let database_url = pick!("database.url", database.url, None::<String>);
        // What `berth config` prints must not show the password.
        if let Some(entry) = origins
            .iter_mut()
            .find(|(name, _, _)| *name == "database.url")
            && let Some(url) = &database_url
        {
            entry.1 = format!("{:?}", berth_meta::postgres::redacted_url(url));
        }
        let pool_size = pick!("database.pool_size", database.pool_size, Some(16u32)).unwrap_or(16);
        let statement_timeout = pick!(
            "database.statement_timeout",
            database.statement_timeout,
            Some(30u64)
        )
        .unwrap_or(30);
        let connect_timeout = pick!(
            "database.connect_timeout",
            database.connect_timeout,
            Some(60u64)
        )
        .unwrap_or(60);

        let mode_text = pick!("auth.mode", auth.mode, None::<String>);
        let token_service =
            pick!("auth.service", auth.service, Some("berth".to_string())).unwrap_or_default();
        let token_issuer =
            pick!("auth.issuer", auth.issuer, Some("berth".to_string())).unwrap_or_default();
        let token_lifetime =
            pick!("auth.token_lifetime", auth.token_lifetime, Some(1800u64)).unwrap_or(1800);
        let token_realm = pick!("auth.token_realm", auth.token_realm, None::<String>);
        let creation = pick!(
            "auth.create_project_on_push",
            auth.create_project_on_push,
            Some("off".to_string())
        )
        .unwrap_or_default();
        let restriction = pick!(
            "auth.project_creation_restriction",
            auth.project_creation_restriction,
            Some("everyone".to_string())
        )
        .unwrap_or_default();
        let project_creation = match restriction.trim() {
            "everyone" | "" => berth_auth::ProjectCreation::Users,
            "adminonly" => berth_auth::ProjectCreation::Administrators,
            other => {
                return Err(ConfigError::Invalid {
                    name: "auth.project_creation_restriction",
                    value: other.into(),
                    reason: "expected everyone or adminonly".into(),
                });
            }
        };
        let create_project_on_push = match creation.trim() {
            "off" | "" => berth_auth::ProjectCreation::Nobody,
            "admins" => berth_auth::ProjectCreation::Administrators,
            "users" => berth_auth::ProjectCreation::Users,
            other => {
                return Err(ConfigError::Invalid {
                    name: "auth.create_project_on_push",
                    value: other.into(),
                    reason: "expected off, admins or users".into(),
                });
            }
        };
        let auth_mode = match mode_text.as_deref().map(str::trim) {
            None | Some("") => {
                if htpasswd.is_some() {
                    AuthModeSetting::Htpasswd
                } else {
                    AuthModeSetting::None
                }
            }
            Some("none") => AuthModeSetting::None,
            Some("htpasswd") => AuthModeSetting::Htpasswd,
            Some("token") => AuthModeSetting::Token,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "auth.mode",
                    value: other.into(),
                    reason: "expected none, htpasswd or token".into(),
                });
            }
        };
        if auth_mode == AuthModeSetting::Htpasswd && htpasswd.is_none() {
            return Err(ConfigError::Invalid {
                name: "auth.mode",
                value: "htpasswd".into(),
                reason: "htpasswd mode needs an htpasswd file (htpasswd / BERTH_HTPASSWD / REGISTRY_AUTH_HTPASSWD_PATH)".into(),
            });
        }
        if !(10..=7 * 24 * 3600).contains(&token_lifetime) {
            return Err(ConfigError::Invalid {
                name: "auth.token_lifetime",
                value: token_lifetime.to_string(),
                reason: "between 10 seconds and 7 days".into(),
            });
        }
        for (name, value) in [
            ("auth.service", &token_service),
            ("auth.issuer", &token_issuer),
        ] {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
            {
                return Err(ConfigError::Invalid {
                    name,
                    value: value.clone(),
                    reason:
                        "must be non-empty printable ASCII without spaces, quotes or backslashes"
                            .into(),
                });
            }
        }
        if let Some(realm) = &token_realm
            && !(realm.starts_with("https://") || realm.starts_with("http://"))
        {
            return Err(ConfigError::Invalid {
                name: "auth.token_realm",
                value: realm.clone(),
                reason: "must be an absolute http(s) URL".into(),
            });
        }

        // registry:2 accepts ":5000" meaning every interface.
        let addr_full = if addr_text.starts_with(':') {
            format!("0.0.0.0{addr_text}")
        } else {
            addr_text.clone()
        };
        let addr = addr_full.parse().map_err(|e| ConfigError::Invalid {
            name: "addr",
            value: addr_text,
            reason: format!("{e} (expected host:port, e.g. 127.0.0.1:5000)"),
        })?;
        // The realm goes into a quoted header value.
        if realm.is_empty()
            || !realm
                .chars()
                .all(|c| c == ' ' || (c.is_ascii_graphic() && c != '"' && c != '\\'))
        {
            return Err(ConfigError::Invalid {
                name: "realm",
                value: realm,
                reason: "must be non-empty printable ASCII without quotes or backslashes".into(),
            });
        }
        let tls = match (certificate, key, client_ca) {
            (None, None, None) => None,
            (Some(certificate), Some(key), client_ca) => Some(TlsFiles {
                certificate,
                key,
                client_ca,
            }),
            (Some(_), None, _) => {
                return Err(ConfigError::Inconsistent(
                    "tls.certificate is set but tls.key is not: TLS needs both, or neither".into(),
                ));
            }
            (None, Some(_), _) => {
                return Err(ConfigError::Inconsistent(
                    "tls.key is set but tls.certificate is not: TLS needs both, or neither".into(),
                ));
            }
            (None, None, Some(_)) => {
                return Err(ConfigError::Inconsistent(
                    "tls.client_ca is set but tls.certificate and tls.key are not: client \
                     certificates are only checked over TLS"
                        .into(),
                ));
            }
        };
        let database = match database_url.as_deref().map(str::trim) {
            None | Some("") => Database::Sqlite(data_dir.join("metadata.db")),
            Some(url) if url.starts_with("sqlite://") => {
                Database::Sqlite(PathBuf::from(&url["sqlite://".len()..]))
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                if !(1..=1000).contains(&pool_size) {
                    return Err(ConfigError::Invalid {
                        name: "database.pool_size",
                        value: pool_size.to_string(),
                        reason: "between 1 and 1000 connections".into(),
                    });
                }
                Database::Postgres(berth_meta::PgOptions {
                    url: url.to_owned(),
                    pool_size,
                    statement_timeout: (statement_timeout > 0)
                        .then(|| std::time::Duration::from_secs(statement_timeout)),
                    connect_timeout: std::time::Duration::from_secs(connect_timeout),
                })
            }
            Some(url) => {
                return Err(ConfigError::Invalid {
                    name: "database.url",
                    value: berth_meta::postgres::redacted_url(url),
                    reason: "expected postgres://… or sqlite://PATH (or unset: SQLite in data_dir)"
                        .into(),
                });
            }
        };
        let trusted_proxies = trusted_proxies
            .into_iter()
            .map(|entry| {
                entry.parse().map_err(|reason| ConfigError::Invalid {
                    name: "http.trusted_proxies",
                    value: entry,
                    reason,
                })
            })
            .collect::<Result<Vec<IpNet>, _>>()?;
        Ok(Config {
            addr,
            data_dir,
            delete_enabled,
            anonymous_write,
            cross_repository_links,
            htpasswd,
            realm,
            sparse_index,
            auth_mode,
            token_service,
            token_issuer,
            token_lifetime: std::time::Duration::from_secs(token_lifetime),
            token_realm,
            create_project_on_push,
            project_creation,
            tls,
            trusted_proxies,
            header_read_timeout: std::time::Duration::from_secs(header_read_timeout),
            idle_timeout,
            tls_handshake_timeout,
            body_idle_timeout,
            max_connections,
            shutdown_timeout,
            min_free_bytes,
            log_format,
            metrics_enabled,
            metrics_addr,
            audit_enabled,
            audit_jsonl,
            audit_retention,
            quota_default_project_bytes,
            storage,
            database,
            proxy: ProxySetting {
                tag_ttl: std::time::Duration::from_secs(tag_ttl),
                keep_fresh: std::time::Duration::from_secs(keep_fresh),
                timeout: std::time::Duration::from_secs(proxy_timeout),
                spool_dir,
                mirror,
                mirrors,
            },
            secret_key,
            gc,
            origins,
            warnings: Vec::new(),
        })
    }

    /// A table of every setting, its value and where it came from.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (name, value, origin) in &self.origins {
            let _ = writeln!(out, "{name:<34} {value:<40} ({})", source_of(name, origin));
        }
        out
    }
}

/// Where a setting's value came from, as precisely as the source allows: `default`,
/// `file`, the environment variable, or the flag.
fn source_of(name: &'static str, origin: &'static str) -> String {
    let variable = match origin {
        "BERTH_* environment" => berth_env_name(name),
        "REGISTRY_* environment" => registry_env_name(name),
        "config file" => return "file".into(),
        "flag" => return format!("flag --{}", name.replace(['_', '.'], "-")),
        other => return other.into(),
    };
    variable.map_or_else(|| origin.into(), |v| format!("environment {v}"))
}

// Kept out of the code above: tools that read this file stop at the first `#[cfg(test)]`.
#[cfg(test)]
mod check_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sources_win_and_defaults_fill_in() {
        let file = RawConfig {
            addr: Some("127.0.0.1:6000".into()),
            delete_enabled: Some(false),
            ..Default::default()
        };
        let env = RawConfig {
            addr: Some("127.0.0.1:7000".into()),
            ..Default::default()
        };
        let config = Config::resolve(&[("file", file), ("env", env)]).expect("valid");
        assert_eq!(config.addr.port(), 7000);
        assert!(!config.delete_enabled);
        assert_eq!(config.data_dir, PathBuf::from("berth-data"));
        assert!(config.describe().contains("(env)"));
    }

    #[test]
    fn tables_are_read_from_the_file_and_the_environment() {
        let file: RawConfig = toml::from_str("[validation]\nsparse_index = true\n").expect("toml");
        let config = Config::resolve(&[("file", file)]).expect("valid");
        assert!(config.sparse_index);
        assert!(config.describe().contains("validation.sparse_index"));
        let vars = |k: &str| (k == "BERTH_VALIDATION_SPARSE_INDEX").then(|| "off".to_string());
        let raw = RawConfig::from_env(berth_env_name, &vars).expect("valid");
        assert_eq!(raw.validation.sparse_index, Some(false));
        assert!(!Config::resolve(&[]).expect("defaults").sparse_index);
        assert!(toml::from_str::<RawConfig>("[validation]\nsparse = 1\n").is_err());
    }

    #[test]
    fn registry2_names_are_read() {
        let vars = |k: &str| match k {
            "REGISTRY_HTTP_ADDR" => Some(":5001".to_string()),
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY" => Some("/var/lib/registry".to_string()),
            _ => None,
        };
        let raw = RawConfig::from_env(registry_env_name, &vars).expect("valid");
        let config = Config::resolve(&[("env", raw)]).expect("valid");
        assert_eq!(config.addr.to_string(), "0.0.0.0:5001");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/registry"));
    }

    #[test]
    fn realm_must_fit_a_quoted_header_value() {
        for bad in ["", "say \"hi\"", "new\nline"] {
            let raw = RawConfig {
                realm: Some(bad.into()),
                ..Default::default()
            };
            assert!(Config::resolve(&[("flag", raw)]).is_err(), "{bad:?}");
        }
        let raw = RawConfig {
            realm: Some("My Registry".into()),
            ..Default::default()
        };
        assert!(Config::resolve(&[("flag", raw)]).is_ok());
    }

    #[test]
    fn tls_comes_from_the_file_and_both_environments() {
        let file: RawConfig = toml::from_str(
            "[tls]\ncertificate = \"/etc/berth/cert.pem\"\nkey = \"/etc/berth/key.pem\"\n",
        )
        .expect("toml");
        let config = Config::resolve(&[("file", file)]).expect("valid");
        let tls = config.tls.as_ref().expect("tls");
        assert_eq!(tls.certificate, PathBuf::from("/etc/berth/cert.pem"));
        assert_eq!(tls.client_ca, None);
        let shown = config.describe();
        assert!(shown.contains("tls.certificate"), "{shown}");
        assert!(shown.contains("\"/etc/berth/key.pem\""), "{shown}");

        let vars = |k: &str| match k {
            "REGISTRY_HTTP_TLS_CERTIFICATE" => Some("/r/cert.pem".to_string()),
            "REGISTRY_HTTP_TLS_KEY" => Some("/r/key.pem".to_string()),
            "REGISTRY_HTTP_TLS_CLIENTCAS_0" => Some("/r/ca.pem".to_string()),
            "BERTH_TLS_KEY" => Some("/b/key.pem".to_string()),
            _ => None,
        };
        let registry = RawConfig::from_env(registry_env_name, &vars).expect("valid");
        let berth = RawConfig::from_env(berth_env_name, &vars).expect("valid");
        let config = Config::resolve(&[("registry", registry), ("berth", berth)]).expect("valid");
        let expected = TlsFiles {
            certificate: "/r/cert.pem".into(),
            key: "/b/key.pem".into(),
            client_ca: Some("/r/ca.pem".into()),
        };
        assert_eq!(config.tls, Some(expected));
        assert!(config.describe().contains("(berth)"));
        assert!(Config::resolve(&[]).expect("defaults").tls.is_none());
        assert!(toml::from_str::<RawConfig>("[tls]\ncert = \"x\"\n").is_err());
    }

    #[test]
    fn tls_needs_certificate_and_key_together() {
        let tls =
            |certificate: Option<&str>, key: Option<&str>, client_ca: Option<&str>| RawConfig {
                tls: RawTls {
                    certificate: certificate.map(PathBuf::from),
                    key: key.map(PathBuf::from),
                    client_ca: client_ca.map(PathBuf::from),
                },
                ..Default::default()
            };
        for (raw, names) in [
            (tls(Some("c"), None, None), "tls.key"),
            (tls(None, Some("k"), None), "tls.certificate"),
            (tls(None, None, Some("ca")), "tls.client_ca"),
            (tls(Some("c"), None, Some("ca")), "tls.key"),
        ] {
            let err = Config::resolve(&[("file", raw)]).expect_err("inconsistent");
            assert!(err.to_string().contains(names), "{err}");
        }
        let mutual = Config::resolve(&[("file", tls(Some("c"), Some("k"), Some("ca")))]);
        assert!(mutual.expect("valid").tls.is_some());
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let file: RawConfig =
            toml::from_str("[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n")
                .expect("toml");
        let config = Config::resolve(&[("file", file)]).expect("valid");
        assert_eq!(config.trusted_proxies.len(), 2);
        assert!(config.describe().contains("10.0.0.0/8"));
        assert!(
            Config::resolve(&[])
                .expect("defaults")
                .trusted_proxies
                .is_empty()
        );

        let vars = |k: &str| {
            (k == "BERTH_HTTP_TRUSTED_PROXIES").then(|| " 192.0.2.1 , fd00::/8,".to_string())
        };
        let raw = RawConfig::from_env(berth_env_name, &vars).expect("valid");
        let proxies = raw.http.trusted_proxies.clone().expect("set");
        assert_eq!(proxies, ["192.0.2.1", "fd00::/8"]);
        assert_eq!(
            Config::resolve(&[("env", raw)])
                .expect("valid")
                .trusted_proxies
                .len(),
            2
        );

        let bad = RawConfig {
            http: RawHttp {
                trusted_proxies: Some(vec!["10.0.0.0/40".into()]),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = Config::resolve(&[("file", bad)]).expect_err("invalid");
        assert!(err.to_string().contains("http.trusted_proxies"), "{err}");
        assert!(err.to_string().contains("10.0.0.0/40"), "{err}");
    }

    #[test]
    fn the_header_read_timeout_is_30_seconds_unless_set_within_an_hour() {
        let defaults = Config::resolve(&[]).expect("defaults");
        assert_eq!(
            defaults.header_read_timeout,
            std::time::Duration::from_secs(30)
        );
        let vars = |k: &str| (k == "BERTH_HTTP_HEADER_READ_TIMEOUT").then(|| "5".to_string());
        let env = RawConfig::from_env(berth_env_name, &vars).expect("valid");
        let config = Config::resolve(&[("env", env)]).expect("valid");
        assert_eq!(
            config.header_read_timeout,
            std::time::Duration::from_secs(5)
        );
        for bad in [
            "[http]\nheader_read_timeout = 0\n",
            "[http]\nheader_read_timeout = 86400\n",
        ] {
            let raw: RawConfig = toml::from_str(bad).expect("toml");
            let err = Config::resolve(&[("file", raw)]).expect_err("out of range");
            assert!(
                err.to_string().contains("http.header_read_timeout"),
                "{err}"
            );
        }
    }

    #[test]
    fn audit_settings_come_from_the_file_and_the_environment() {
        let defaults = Config::resolve(&[]).expect("defaults");
        assert!(defaults.audit_enabled);
        assert_eq!(defaults.audit_jsonl, berth_audit::JsonLines::Off);
        assert_eq!(
            defaults.audit_retention,
            Some(std::time::Duration::from_secs(90 * 86_400))
        );
        let file: RawConfig =
            toml::from_str("[audit]\njsonl = \"/var/log/berth/audit.jsonl\"\nretention_days = 0\n")
                .expect("toml");
        let vars = |k: &str| match k {
            "BERTH_AUDIT_ENABLED" => Some("false".to_string()),
            "BERTH_AUDIT_JSONL" => Some("stdout".to_string()),
            _ => None,
        };
        let env = RawConfig::from_env(berth_env_name, &vars).expect("valid");
        let config = Config::resolve(&[("file", file.clone())]).expect("valid");
        assert_eq!(
            config.audit_jsonl,
            berth_audit::JsonLines::File("/var/log/berth/audit.jsonl".into())
        );
        assert_eq!(config.audit_retention, None, "0 keeps entries forever");
        let config = Config::resolve(&[("file", file), ("env", env)]).expect("valid");
        assert!(!config.audit_enabled);
        assert_eq!(config.audit_jsonl, berth_audit::JsonLines::Stdout);
        assert!(config.describe().contains("audit.enabled"));
        let vars = |k: &str| (k == "BERTH_AUDIT_RETENTION_DAYS").then(|| "forever".to_string());
        assert!(RawConfig::from_env(berth_env_name, &vars).is_err());
        assert!(toml::from_str::<RawConfig>("[audit]\nretention = 1\n").is_err());
    }

    #[test]
    fn storage_is_the_filesystem_unless_s3_is_chosen() {
        let defaults = Config::resolve(&[]).expect("defaults");
        assert!(matches!(defaults.storage, StorageSetting::Filesystem));
        let file: RawConfig = toml::from_str(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:9000\"\n\
             bucket = \"images\"\nprefix = \"berth\"\nallow_http = true\n\
             access_key = \"AK\"\nsecret_key = \"do-not-print\"\n",
        )
        .expect("toml");
        let vars = |k: &str| (k == "BERTH_STORAGE_S3_REDIRECT").then(|| "false".to_string());
        let env = RawConfig::from_env(berth_env_name, &vars).expect("valid");
        let config = Config::resolve(&[("file", file.clone()), ("env", env)]).expect("valid");
        let StorageSetting::S3(s3) = &config.storage else {
            panic!("s3 expected");
        };
        assert_eq!(s3.bucket, "images");
        assert!(s3.path_style, "an endpoint implies path-style by default");
        assert!(!s3.redirect);
        let shown = format!("{}{config:?}{file:?}", config.describe());
        assert!(shown.contains("storage.s3.bucket"), "{shown}");
        assert!(
            !shown.contains("do-not-print"),
            "the secret leaked: {shown}"
        );

        let plain_http_refused: RawConfig = toml::from_str(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"b\"\n",
        )
        .expect("toml");
        let err = Config::resolve(&[("file", plain_http_refused)]).expect_err("needs allow_http");
        assert!(err.to_string().contains("allow_http"), "{err}");
        let no_bucket: RawConfig = toml::from_str("[storage]\nbackend = \"s3\"\n").expect("toml");
        assert!(Config::resolve(&[("file", no_bucket)]).is_err());
        let vars = |k: &str| (k == "BERTH_STORAGE_BACKEND").then(|| "tape".to_string());
        let env = RawConfig::from_env(berth_env_name, &vars).expect("valid");
        assert!(Config::resolve(&[("env", env)]).is_err());
        assert!(toml::from_str::<RawConfig>("[storage.s3]\nbuckett = \"x\"\n").is_err());
    }

    #[test]
    fn the_database_comes_from_the_file_and_the_environment_without_its_password() {
        let defaults = Config::resolve(&[]).expect("defaults");
        assert_eq!(
            defaults.database,
            Database::Sqlite(PathBuf::from("berth-data/metadata.db"))
        );
        let file: RawConfig = toml::from_str(
            "[database]\nurl = \"sqlite:///var/lib/berth/meta.db\"\npool_size = 4\n",
        )
        .expect("toml");
        let config = Config::resolve(&[("file", file.clone())]).expect("valid");
        assert_eq!(
            config.database,
            Database::Sqlite(PathBuf::from("/var/lib/berth/meta.db"))
        );
        let vars = |k: &str| match k {
            "BERTH_DATABASE_URL" => Some("postgres://berth:s3cr3t@db:5432/berth".to_string()),
            "BERTH_DATABASE_STATEMENT_TIMEOUT" => Some("0".to_string()),
            "BERTH_DATABASE_CONNECT_TIMEOUT" => Some("5".to_string()),
            _ => None,
        };
        let env = RawConfig::from_env(berth_env_name, &vars).expect("valid");
        let config = Config::resolve(&[("file", file), ("env", env.clone())]).expect("valid");
        let Database::Postgres(options) = &config.database else {
            panic!("expected PostgreSQL, got {:?}", config.database);
        };
        assert_eq!(
            (
                options.pool_size,
                options.statement_timeout,
                options.connect_timeout
            ),
            (4, None, std::time::Duration::from_secs(5))
        );
        for shown in [config.describe(), format!("{config:?}"), format!("{env:?}")] {
            assert!(!shown.contains("s3cr3t"), "the password leaked: {shown}");
        }
        assert!(config.describe().contains("berth:***@db"));
        let bad = RawConfig {
            database: RawDatabase {
                url: Some("mysql://root:pw@db/berth".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = Config::resolve(&[("file", bad)]).expect_err("unsupported");
        assert!(err.to_string().contains("database.url"), "{err}");
        assert!(!err.to_string().contains(":pw@"), "{err}");
        let vars = |k: &str| (k == "BERTH_DATABASE_POOL_SIZE").then(|| "many".to_string());
        assert!(RawConfig::from_env(berth_env_name, &vars).is_err());
    }

    #[test]
    fn connection_limits_logs_and_metrics_have_defaults_that_never_cut_a_moving_upload() {
        let defaults = Config::resolve(&[]).expect("defaults");
        assert_eq!(defaults.idle_timeout, std::time::Duration::from_secs(60));
        assert_eq!(
            defaults.tls_handshake_timeout,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(
            defaults.body_idle_timeout,
            Some(std::time::Duration::from_secs(60)),
            "an idle body is timed, a moving one never"
        );
        assert_eq!(defaults.max_connections, Some(4096));
        assert_eq!(
            defaults.shutdown_timeout,
            std::time::Duration::from_secs(25)
        );
        assert_eq!(defaults.min_free_bytes, 0);
        assert_eq!(defaults.log_format, LogFormat::Text);
        assert!(defaults.metrics_enabled && defaults.metrics_addr.is_none());

        let raw: RawConfig = toml::from_str(
            "[http]\nbody_idle_timeout = 0\nmax_connections = 0\n[log]\nformat = \"json\"\n\
             [metrics]\naddr = \"127.0.0.1:9090\"\n[storage]\nmin_free_bytes = 1048576\n",
        )
        .expect("parses");
        let config = Config::resolve(&[("file", raw)]).expect("valid");
        assert_eq!(config.body_idle_timeout, None, "0 turns it off");
        assert_eq!(config.max_connections, None, "0 is no limit");
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.metrics_addr,
            Some("127.0.0.1:9090".parse().expect("addr"))
        );
        assert_eq!(config.min_free_bytes, 1048576);

        for (bad, name) in [
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[http]\nidle_timeout = 0\n", "http.idle_timeout"),
            ("[metrics]\naddr = \"nowhere\"\n", "metrics.addr"),
        ] {
            let raw: RawConfig = toml::from_str(bad).expect("parses");
            let err = Config::resolve(&[("file", raw)]).expect_err(bad);
            assert!(err.to_string().contains(name), "{err}");
        }
        let env = |name: &str| (name == "BERTH_HTTP_BODY_IDLE_TIMEOUT").then(|| "5".to_string());
        let raw = RawConfig::from_env(berth_env_name, &env).expect("env");
        assert_eq!(raw.http.body_idle_timeout, Some(5));
    }

    #[test]
    fn the_example_config_is_valid() {
        let raw: RawConfig =
            toml::from_str(include_str!("../../../berth.example.toml")).expect("example parses");
        let config = Config::resolve(&[("file", raw)]).expect("example is valid");
        assert!(config.tls.is_none() && config.trusted_proxies.is_empty());
    }

    #[test]
    fn bad_values_are_explained() {
        let raw = RawConfig {
            addr: Some("nonsense".into()),
            ..Default::default()
        };
        let err = Config::resolve(&[("flag", raw)]).expect_err("invalid");
        assert!(err.to_string().contains("addr"), "{err}");
        let vars = |_: &str| Some("maybe".to_string());
        assert!(RawConfig::from_env(berth_env_name, &vars).is_err());
    }
}
