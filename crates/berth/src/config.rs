//! Configuration in two stages (as ripgrep does): [`RawConfig`] is what the user wrote, in
//! any of its sources; [`Config`] is the validated result with defaults resolved.
//!
//! Precedence, lowest first: built-in defaults < config file (TOML) < registry:2 environment
//! names (`REGISTRY_*`, so existing scripts keep working) < `BERTH_*` environment < flags.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// htpasswd file (bcrypt entries) enabling HTTP basic auth.
    pub htpasswd: Option<PathBuf>,
    /// Realm named in basic-auth challenges.
    pub realm: Option<String>,
    /// `[validation]`: what pushed manifests must satisfy.
    #[serde(default)]
    pub validation: RawValidation,
    /// `[auth]`: how clients authenticate.
    #[serde(default)]
    pub auth: RawAuth,
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
}

/// The `[validation]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidation {
    /// Accept image indexes whose child manifests are not all present.
    pub sparse_index: Option<bool>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub delete_enabled: bool,
    pub anonymous_write: bool,
    pub htpasswd: Option<PathBuf>,
    pub realm: String,
    pub sparse_index: bool,
    pub auth_mode: AuthModeSetting,
    pub token_service: String,
    pub token_issuer: String,
    pub token_lifetime: std::time::Duration,
    pub token_realm: Option<String>,
    /// For `berth config check`: each setting and the source that decided it.
    pub origins: Vec<(&'static str, String, &'static str)>,
}

/// Which authentication the registry runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthModeSetting {
    None,
    Htpasswd,
    Token,
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
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
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
        Ok(RawConfig {
            addr: get("addr"),
            data_dir: get("data_dir").map(PathBuf::from),
            delete_enabled: flag("delete_enabled")?,
            anonymous_write: flag("anonymous_write")?,
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
        "htpasswd" => "BERTH_HTPASSWD",
        "realm" => "BERTH_REALM",
        "validation.sparse_index" => "BERTH_VALIDATION_SPARSE_INDEX",
        "auth.mode" => "BERTH_AUTH_MODE",
        "auth.service" => "BERTH_AUTH_SERVICE",
        "auth.issuer" => "BERTH_AUTH_ISSUER",
        "auth.token_lifetime" => "BERTH_AUTH_TOKEN_LIFETIME",
        "auth.token_realm" => "BERTH_AUTH_TOKEN_REALM",
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
        _ => return None,
    })
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
        let htpasswd = pick!(htpasswd, None::<PathBuf>);
        let realm = pick!(realm, Some("berth".to_string())).unwrap_or_default();
        let sparse_index = pick!(
            "validation.sparse_index",
            validation.sparse_index,
            Some(false)
        )
        .unwrap_or(false);

        let mode_text = pick!("auth.mode", auth.mode, None::<String>);
        let token_service =
            pick!("auth.service", auth.service, Some("berth".to_string())).unwrap_or_default();
        let token_issuer =
            pick!("auth.issuer", auth.issuer, Some("berth".to_string())).unwrap_or_default();
        let token_lifetime =
            pick!("auth.token_lifetime", auth.token_lifetime, Some(1800u64)).unwrap_or(1800);
        let token_realm = pick!("auth.token_realm", auth.token_realm, None::<String>);
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
        Ok(Config {
            addr,
            data_dir,
            delete_enabled,
            anonymous_write,
            htpasswd,
            realm,
            sparse_index,
            auth_mode,
            token_service,
            token_issuer,
            token_lifetime: std::time::Duration::from_secs(token_lifetime),
            token_realm,
            origins,
        })
    }

    /// A table of every setting, its value and where it came from.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (name, value, origin) in &self.origins {
            let _ = writeln!(out, "{name:<24} {value:<40} ({origin})");
        }
        out
    }
}

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
