//! registry:2's `config.yml` (Distribution's `version: 0.1` format) read as berth's
//! configuration, so `berth serve --config /etc/docker/registry/config.yml` can replace a
//! registry:2 in place.
//!
//! Every key is accounted for: mapped onto its berth setting, named in a warning when berth
//! has nothing like it (never dropped silently), or refused when serving without it would be
//! less safe than the operator expects (an external token server, Let's Encrypt, a storage
//! driver berth does not have).

use std::path::PathBuf;

use serde_yaml_ng::{Mapping, Value};

use super::{ConfigError, RawConfig};

/// Whether a config file is registry:2's YAML rather than berth's TOML: by its name, or by a
/// first setting `version:`.
pub fn is_registry2(path: &std::path::Path, text: &str) -> bool {
    if matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    ) {
        return true;
    }
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("version:"))
}

/// Why berth ignores a registry:2 setting it has no use for, by key (a prefix of the path).
const IGNORED: &[(&str, &str)] = &[
    (
        "log",
        "berth's log is set with BERTH_LOG (e.g. BERTH_LOG=info,berth=debug)",
    ),
    ("loglevel", "berth's log is set with BERTH_LOG"),
    ("storage.cache", "berth caches lookups in memory by itself"),
    (
        "storage.maintenance.uploadpurging",
        "berth purges upload sessions idle for 7 days, hourly",
    ),
    ("storage.maintenance", "not supported"),
    (
        "http.secret",
        "berth keeps upload state in its database: no secret is needed",
    ),
    (
        "http.host",
        "berth derives its external URL from each request (behind a proxy: [http] trusted_proxies)",
    ),
    ("http.headers", "berth sets its own security headers"),
    (
        "http.debug",
        "berth serves /healthz and /readyz on its own address",
    ),
    ("http.http2", "berth negotiates HTTP/2 by itself"),
    ("http.tls.minimumtls", "berth accepts TLS 1.2 and 1.3"),
    (
        "http.tls.ciphersuites",
        "berth uses rustls' default cipher suites",
    ),
    ("health", "berth serves /healthz and /readyz"),
    ("notifications", "webhooks are not supported"),
    ("redis", "berth needs no Redis"),
    (
        "proxy",
        "berth is not a pull-through cache: it serves what is pushed to it",
    ),
    (
        "validation",
        "berth validates manifests by itself ([validation])",
    ),
    ("compatibility", "not supported"),
    ("reporting", "not supported"),
    ("middleware", "not supported"),
    ("catalog", "berth pages the catalog by itself"),
];

/// Settings that must not be ignored: without them the registry would be less protected
/// than its operator configured.
const REFUSED: &[(&str, &str)] = &[
    (
        "auth.token",
        "an external token server is not supported; berth has its own ([auth] mode = \"token\")",
    ),
    ("auth.silly", "the silly auth method is not supported"),
    (
        "http.tls.letsencrypt",
        "Let's Encrypt is not supported: give http.tls.certificate and http.tls.key",
    ),
    ("http.prefix", "berth serves /v2/ at the root only"),
    (
        "storage.inmemory",
        "only the filesystem and s3 drivers are supported",
    ),
    (
        "storage.azure",
        "only the filesystem and s3 drivers are supported",
    ),
    (
        "storage.gcs",
        "only the filesystem and s3 drivers are supported",
    ),
    (
        "storage.swift",
        "only the filesystem and s3 drivers are supported",
    ),
    (
        "storage.oss",
        "only the filesystem and s3 drivers are supported",
    ),
];

/// What one registry:2 file says, as berth settings, and what berth ignores in it.
pub fn from_yaml(path: &str, text: &str) -> Result<(RawConfig, Vec<String>), ConfigError> {
    let document: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let root = match document {
        Value::Mapping(root) => root,
        Value::Null => Mapping::new(),
        _ => {
            return Err(ConfigError::Yaml {
                path: path.to_owned(),
                message: "expected a mapping of settings at the top level".into(),
            });
        }
    };
    let mut reader = Reader {
        raw: RawConfig::default(),
        warnings: Vec::new(),
    };
    reader.read(root)?;
    // registry:2 refuses deletes unless `storage.delete.enabled` says otherwise.
    reader.raw.delete_enabled.get_or_insert(false);
    Ok((reader.raw, reader.warnings))
}

struct Reader {
    raw: RawConfig,
    warnings: Vec<String>,
}

impl Reader {
    fn read(&mut self, root: Mapping) -> Result<(), ConfigError> {
        for (key, value) in root {
            let key = key_text(&key);
            match key.as_str() {
                "version" => {
                    let version = scalar(&value).unwrap_or_default();
                    if version != "0.1" {
                        self.warnings.push(format!(
                            "version: {version:?} — berth reads registry:2's version 0.1 format"
                        ));
                    }
                }
                "storage" => self.storage(value)?,
                "http" => self.http(value)?,
                "auth" => self.auth(value)?,
                _ => self.unsupported(&key, &value)?,
            }
        }
        Ok(())
    }

    fn storage(&mut self, value: Value) -> Result<(), ConfigError> {
        for (key, value) in mapping("storage", value)? {
            let key = key_text(&key);
            match key.as_str() {
                "filesystem" => {
                    self.raw.storage.backend = Some("filesystem".into());
                    for (key, value) in mapping("storage.filesystem", value)? {
                        match key_text(&key).as_str() {
                            "rootdirectory" => {
                                self.raw.data_dir = Some(PathBuf::from(text(
                                    "storage.filesystem.rootdirectory",
                                    &value,
                                )?))
                            }
                            other => {
                                self.unsupported(&format!("storage.filesystem.{other}"), &value)?
                            }
                        }
                    }
                }
                "s3" => self.s3(value)?,
                "delete" => {
                    for (key, value) in mapping("storage.delete", value)? {
                        match key_text(&key).as_str() {
                            "enabled" => {
                                self.raw.delete_enabled =
                                    Some(boolean("storage.delete.enabled", &value)?)
                            }
                            other => {
                                self.unsupported(&format!("storage.delete.{other}"), &value)?
                            }
                        }
                    }
                }
                "redirect" => {
                    for (key, value) in mapping("storage.redirect", value)? {
                        match key_text(&key).as_str() {
                            "disable" => {
                                self.raw.storage.s3.redirect =
                                    Some(!boolean("storage.redirect.disable", &value)?)
                            }
                            other => {
                                self.unsupported(&format!("storage.redirect.{other}"), &value)?
                            }
                        }
                    }
                }
                other => self.unsupported(&format!("storage.{other}"), &value)?,
            }
        }
        Ok(())
    }

    fn s3(&mut self, value: Value) -> Result<(), ConfigError> {
        self.raw.storage.backend = Some("s3".into());
        for (key, value) in mapping("storage.s3", value)? {
            let key = key_text(&key);
            let name = format!("storage.s3.{key}");
            let s3 = &mut self.raw.storage.s3;
            match key.as_str() {
                "accesskey" => s3.access_key = Some(text(&name, &value)?),
                "secretkey" => s3.secret_key = Some(text(&name, &value)?),
                "region" => s3.region = Some(text(&name, &value)?),
                "regionendpoint" => s3.endpoint = Some(text(&name, &value)?),
                "bucket" => s3.bucket = Some(text(&name, &value)?),
                "rootdirectory" => {
                    s3.prefix = Some(text(&name, &value)?.trim_matches('/').to_owned())
                }
                "forcepathstyle" => s3.path_style = Some(boolean(&name, &value)?),
                // `secure: false` is registry:2's plain-HTTP endpoint.
                "secure" => s3.allow_http = Some(!boolean(&name, &value)?),
                // berth always signs with V4.
                "v4auth" if boolean(&name, &value)? => {}
                _ => self.unsupported(&name, &value)?,
            }
        }
        Ok(())
    }

    fn http(&mut self, value: Value) -> Result<(), ConfigError> {
        for (key, value) in mapping("http", value)? {
            let key = key_text(&key);
            match key.as_str() {
                "addr" => self.raw.addr = Some(text("http.addr", &value)?),
                "net" => {
                    let net = text("http.net", &value)?;
                    if net != "tcp" {
                        return Err(refused("http.net", "berth listens on TCP only"));
                    }
                }
                "tls" => {
                    for (key, value) in mapping("http.tls", value)? {
                        let key = key_text(&key);
                        let name = format!("http.tls.{key}");
                        match key.as_str() {
                            "certificate" => {
                                self.raw.tls.certificate = Some(text(&name, &value)?.into())
                            }
                            "key" => self.raw.tls.key = Some(text(&name, &value)?.into()),
                            "clientcas" => self.raw.tls.client_ca = Some(client_ca(&value)?),
                            _ => self.unsupported(&name, &value)?,
                        }
                    }
                }
                other => self.unsupported(&format!("http.{other}"), &value)?,
            }
        }
        Ok(())
    }

    fn auth(&mut self, value: Value) -> Result<(), ConfigError> {
        for (key, value) in mapping("auth", value)? {
            let key = key_text(&key);
            if key != "htpasswd" {
                self.unsupported(&format!("auth.{key}"), &value)?;
                continue;
            }
            self.raw.auth.mode = Some("htpasswd".into());
            for (key, value) in mapping("auth.htpasswd", value)? {
                match key_text(&key).as_str() {
                    "realm" => self.raw.realm = Some(text("auth.htpasswd.realm", &value)?),
                    "path" => self.raw.htpasswd = Some(text("auth.htpasswd.path", &value)?.into()),
                    other => self.unsupported(&format!("auth.htpasswd.{other}"), &value)?,
                }
            }
        }
        Ok(())
    }

    /// A setting berth does not map: refused if ignoring it would weaken the registry,
    /// otherwise one warning per leaf key, with the reason when one is known.
    fn unsupported(&mut self, path: &str, value: &Value) -> Result<(), ConfigError> {
        let mut leaves = Vec::new();
        leaf_paths(path, value, &mut leaves);
        for leaf in leaves {
            if let Some((_, why)) = REFUSED.iter().find(|(key, _)| covers(key, &leaf)) {
                return Err(refused(&leaf, why));
            }
            let why = IGNORED
                .iter()
                .find(|(key, _)| covers(key, &leaf))
                .map_or("berth has no such setting", |(_, why)| why);
            self.warnings
                .push(format!("{leaf}: registry:2 setting ignored ({why})"));
        }
        Ok(())
    }
}

/// Whether `key` is `path` or one of its parents.
fn covers(key: &str, path: &str) -> bool {
    path == key || path.starts_with(&format!("{key}."))
}

fn leaf_paths(path: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Mapping(map) if !map.is_empty() => {
            for (key, value) in map {
                leaf_paths(&format!("{path}.{}", key_text(key)), value, out);
            }
        }
        _ => out.push(path.to_owned()),
    }
}

fn refused(name: &str, why: &str) -> ConfigError {
    ConfigError::Unsupported {
        name: name.to_owned(),
        reason: why.to_owned(),
    }
}

fn key_text(key: &Value) -> String {
    scalar(key).unwrap_or_else(|| format!("{key:?}"))
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn mapping(name: &str, value: Value) -> Result<Mapping, ConfigError> {
    match value {
        Value::Mapping(map) => Ok(map),
        Value::Null => Ok(Mapping::new()),
        other => Err(ConfigError::Unsupported {
            name: name.to_owned(),
            reason: format!("expected a mapping of settings, found {other:?}"),
        }),
    }
}

fn text(name: &str, value: &Value) -> Result<String, ConfigError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(ConfigError::Unsupported {
            name: name.to_owned(),
            reason: format!("expected a string, found {other:?}"),
        }),
    }
}

fn boolean(name: &str, value: &Value) -> Result<bool, ConfigError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => {
            super::parse_bool("registry:2 setting", s).map_err(|_| ConfigError::Unsupported {
                name: name.to_owned(),
                reason: format!("expected true or false, found {s:?}"),
            })
        }
        other => Err(ConfigError::Unsupported {
            name: name.to_owned(),
            reason: format!("expected true or false, found {other:?}"),
        }),
    }
}

/// registry:2 takes a list of client CA files; berth one PEM file, which may hold several.
fn client_ca(value: &Value) -> Result<PathBuf, ConfigError> {
    let files: Vec<String> = match value {
        Value::Sequence(items) => items
            .iter()
            .map(|item| text("http.tls.clientcas", item))
            .collect::<Result<_, _>>()?,
        other => vec![text("http.tls.clientcas", other)?],
    };
    match files.as_slice() {
        [one] => Ok(PathBuf::from(one)),
        _ => Err(ConfigError::Unsupported {
            name: "http.tls.clientcas".into(),
            reason: format!(
                "berth takes one CA file, found {}: concatenate them into one PEM bundle",
                files.len()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{AuthModeSetting, Config, StorageSetting};

    fn resolve(text: &str) -> (Config, Vec<String>) {
        let (raw, warnings) = from_yaml("config.yml", text).expect("accepted");
        let config = Config::resolve(&[("config file", raw)]).expect("valid");
        (config, warnings)
    }

    #[test]
    fn debians_packaged_config_is_served_as_it_is() {
        let (config, warnings) = resolve(include_str!("testdata/debian-config.yml"));
        assert_eq!(config.addr.to_string(), "0.0.0.0:5000");
        assert_eq!(config.data_dir, Path::new("/var/lib/docker-registry"));
        assert!(config.delete_enabled);
        assert!(matches!(config.storage, StorageSetting::Filesystem));
        assert_eq!(config.auth_mode, AuthModeSetting::Htpasswd);
        assert_eq!(config.realm, "basic-realm");
        assert_eq!(
            config.htpasswd.as_deref(),
            Some(Path::new("/etc/docker/registry"))
        );
        assert_eq!(
            warnings,
            [
                "log.fields.service: registry:2 setting ignored (berth's log is set with BERTH_LOG (e.g. BERTH_LOG=info,berth=debug))",
                "storage.cache.blobdescriptor: registry:2 setting ignored (berth caches lookups in memory by itself)",
                "http.headers.X-Content-Type-Options: registry:2 setting ignored (berth sets its own security headers)",
                "health.storagedriver.enabled: registry:2 setting ignored (berth serves /healthz and /readyz)",
                "health.storagedriver.interval: registry:2 setting ignored (berth serves /healthz and /readyz)",
                "health.storagedriver.threshold: registry:2 setting ignored (berth serves /healthz and /readyz)",
            ]
        );
    }

    #[test]
    fn a_full_config_maps_s3_tls_and_htpasswd_and_names_the_rest() {
        let (config, warnings) = resolve(include_str!("testdata/full-config.yml"));
        assert_eq!(config.addr.to_string(), "0.0.0.0:5443");
        let StorageSetting::S3(s3) = &config.storage else {
            panic!("s3 expected, got {:?}", config.storage);
        };
        assert_eq!(
            (
                s3.bucket.as_str(),
                s3.prefix.as_str(),
                s3.region.as_deref(),
                s3.endpoint.as_deref()
            ),
            (
                "images",
                "registry/v2root",
                Some("eu-west-1"),
                Some("http://minio.internal:9000")
            )
        );
        assert!(s3.path_style && s3.allow_http && !s3.redirect);
        assert_eq!(s3.access_key.as_deref(), Some("AKIAEXAMPLE"));
        let tls = config.tls.as_ref().expect("tls");
        assert_eq!(tls.key, Path::new("/etc/registry/tls/key.pem"));
        assert_eq!(
            tls.client_ca.as_deref(),
            Some(Path::new("/etc/registry/tls/clients.pem"))
        );
        assert_eq!(config.realm, "Registry Realm");
        let shown = format!("{}\n{}", config.describe(), warnings.join("\n"));
        assert!(
            !shown.contains("do-not-print"),
            "the secret leaked: {shown}"
        );
        for ignored in [
            "log.accesslog.disabled",
            "log.level",
            "log.formatter",
            "storage.s3.chunksize",
            "storage.cache.blobdescriptor",
            "storage.maintenance.uploadpurging.age",
            "http.secret",
            "http.host",
            "http.tls.minimumtls",
            "http.debug.addr",
            "notifications.endpoints",
            "redis.addr",
            "health.storagedriver.enabled",
        ] {
            assert!(
                warnings
                    .iter()
                    .any(|w| w.starts_with(&format!("{ignored}: "))),
                "{ignored} is not named in: {warnings:#?}"
            );
        }
        assert_eq!(warnings.len(), 17, "{warnings:#?}");
    }

    #[test]
    fn deletes_are_off_unless_enabled_as_in_registry2() {
        let (config, warnings) =
            resolve("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/registry\n");
        assert!(!config.delete_enabled);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn settings_berth_cannot_honour_safely_are_refused_by_name() {
        for (yaml, name) in [
            (
                "auth:\n  token:\n    realm: https://auth.example.com/token\n",
                "auth.token.realm",
            ),
            ("storage:\n  inmemory:\n", "storage.inmemory"),
            (
                "storage:\n  gcs:\n    bucket: images\n",
                "storage.gcs.bucket",
            ),
            (
                "http:\n  tls:\n    letsencrypt:\n      email: a@example.com\n",
                "http.tls.letsencrypt.email",
            ),
            ("http:\n  net: unix\n", "http.net"),
            (
                "http:\n  tls:\n    clientcas: [/a.pem, /b.pem]\n",
                "http.tls.clientcas",
            ),
            (
                "storage:\n  delete:\n    enabled: maybe\n",
                "storage.delete.enabled",
            ),
        ] {
            let err = from_yaml("config.yml", yaml).expect_err(yaml);
            assert!(
                err.to_string()
                    .starts_with(&format!("{name} is not supported")),
                "{yaml}: {err}"
            );
        }
        let err = from_yaml("config.yml", "storage: [a").expect_err("not YAML");
        assert!(err.to_string().contains("config.yml is invalid"), "{err}");
    }

    #[test]
    fn yaml_is_told_from_toml_by_name_or_first_setting() {
        assert!(is_registry2(
            Path::new("/etc/docker/registry/config.yml"),
            ""
        ));
        assert!(is_registry2(
            Path::new("registry.conf"),
            "# registry\nversion: 0.1\n"
        ));
        assert!(!is_registry2(
            Path::new("berth.toml"),
            "addr = \"127.0.0.1:5000\"\n"
        ));
    }
}
