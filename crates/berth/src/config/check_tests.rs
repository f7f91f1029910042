//! `berth config check`'s promises: every setting is in the example file and has a
//! `BERTH_*` name, each value's source is shown precisely, and a bad value is refused
//! with a message naming the setting and what it may be.

use std::collections::BTreeSet;

use super::*;

/// `table.key` for every `key =` line of the example (commented out or not).
fn example_keys() -> BTreeSet<String> {
    let mut table = String::new();
    let mut keys = BTreeSet::new();
    for line in include_str!("../../../../berth.example.toml").lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = format!("{name}.");
        } else if let Some((key, _)) = line.split_once(" = ")
            && !key.is_empty()
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            keys.insert(format!("{table}{key}"));
        }
    }
    keys
}

#[test]
fn the_example_file_shows_every_setting_and_each_has_an_environment_name() {
    let keys = example_keys();
    let settings = Config::resolve(&[]).expect("defaults").origins;
    assert!(settings.len() >= 30);
    for (name, _, _) in settings {
        assert!(
            keys.contains(name),
            "berth.example.toml lacks {name} (add it, commented, with its default)"
        );
        assert!(berth_env_name(name).is_some(), "{name} has no BERTH_* name");
    }
}

#[test]
fn each_value_names_its_source() {
    let file: RawConfig = toml::from_str("realm = \"from the file\"\n").expect("toml");
    let vars = |k: &str| match k {
        "BERTH_ADDR" => Some("127.0.0.1:7000".to_string()),
        "REGISTRY_STORAGE_DELETE_ENABLED" => Some("false".to_string()),
        _ => None,
    };
    let flag = RawConfig {
        data_dir: Some("/srv/berth".into()),
        auth: RawAuth {
            mode: Some("none".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let config = Config::resolve(&[
        ("config file", file),
        (
            "REGISTRY_* environment",
            RawConfig::from_env(registry_env_name, &vars).expect("valid"),
        ),
        (
            "BERTH_* environment",
            RawConfig::from_env(berth_env_name, &vars).expect("valid"),
        ),
        ("flag", flag),
    ])
    .expect("valid");
    let shown = config.describe();
    let source = |name: &str| {
        shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.rsplit_once('('))
            .map(|(_, s)| s.trim_end_matches(')').to_owned())
            .unwrap_or_else(|| panic!("{name} not shown: {shown}"))
    };
    assert_eq!(source("realm"), "file");
    assert_eq!(
        source("delete_enabled"),
        "environment REGISTRY_STORAGE_DELETE_ENABLED"
    );
    assert_eq!(source("addr"), "environment BERTH_ADDR");
    assert_eq!(source("data_dir"), "flag --data-dir");
    assert_eq!(source("auth.mode"), "flag --auth-mode");
    assert_eq!(source("anonymous_write"), "default");
}

#[test]
fn a_bad_value_names_the_setting_and_what_is_allowed() {
    for (toml, expected) in [
        ("addr = \"localhost\"", "addr=\"localhost\" is not valid"),
        (
            "[auth]\nmode = \"ldap\"",
            "expected none, htpasswd or token",
        ),
        (
            "[auth]\ntoken_lifetime = 1",
            "between 10 seconds and 7 days",
        ),
        (
            "[auth]\ncreate_project_on_push = \"maybe\"",
            "expected off, admins or users",
        ),
        ("[storage]\nbackend = \"tape\"", "expected filesystem or s3"),
        ("[http]\nheader_read_timeout = 0", "1 to 3600 seconds"),
        (
            "[audit]\nretention_days = 99999",
            "at most 36500 days (0 keeps entries forever)",
        ),
    ] {
        let raw: RawConfig = toml::from_str(toml).expect("parses");
        let err = Config::resolve(&[("config file", raw)]).expect_err(toml);
        let name = toml
            .lines()
            .last()
            .and_then(|l| l.split_once(" = "))
            .map(|(k, _)| k)
            .unwrap_or_default();
        let message = err.to_string();
        assert!(message.contains(name), "{toml}: {message}");
        assert!(message.contains(expected), "{toml}: {message}");
    }
    // A key berth does not have, or a value of the wrong type, is named by the TOML parser.
    for (toml, expected) in [
        ("adress = \"127.0.0.1:5000\"", "unknown field `adress`"),
        ("delete_enabled = \"yes\"", "delete_enabled"),
    ] {
        let err = toml::from_str::<RawConfig>(toml).expect_err(toml);
        assert!(err.to_string().contains(expected), "{toml}: {err}");
    }
}
