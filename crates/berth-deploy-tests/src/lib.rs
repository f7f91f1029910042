//! Checks that keep `deploy/` (the compose file and its nginx config, the Kubernetes
//! manifests, the Helm chart) in step with berth: every setting they pass is one berth reads,
//! probes hit berth's health routes, proxies let registry traffic through. No cluster, Docker
//! engine or `helm` is needed; `docker-compose config` and `nginx -t` run as real parsers.
//!
//! This file holds the shared readers; the checks are in the test modules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use serde_yaml_ng::Value;

#[cfg(test)]
mod compose;
#[cfg(test)]
mod helm;
#[cfg(test)]
mod kubernetes;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A file under the repository root, as text; panics naming the file if it cannot be read.
pub fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML file, with `<<` merge keys applied.
pub fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{relative}: bad merge key: {e}"));
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The one document of a YAML file.
pub fn yaml_document(relative: &str) -> Value {
    let mut docs = yaml_documents(relative);
    assert_eq!(docs.len(), 1, "{relative} should hold one YAML document");
    docs.remove(0)
}

/// `BERTH_*` names that appear as string literals in `text`.
pub fn berth_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("BERTH_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !preceded_by_word {
            names.insert(tail[..len].trim_end_matches('_').to_string());
        }
        rest = &tail[len..];
    }
    names
}

/// The `BERTH_*` names berth's binary reads: string literals in `crates/berth/src/*.rs`
/// outside `#[cfg(test)]` modules (which start a file's test section in this code base).
pub fn berth_names_in_source() -> BTreeSet<String> {
    let dir = repo_root().join("crates/berth/src");
    let mut names = BTreeSet::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for literal in code.split('"').skip(1).step_by(2) {
                names.extend(berth_names_in(literal).into_iter().filter(|n| n == literal));
            }
        }
    }
    names
}

/// What deploy files may set: the names berth's source reads.
pub fn known_env_names() -> BTreeSet<String> {
    berth_names_in_source()
}

/// `value[a][b]...`, `None` where a step is missing.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

/// `value[a][b]...` as text (strings, numbers and booleans), panicking if absent.
pub fn text_at(value: &Value, path: &[&str]) -> String {
    match at(value, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        other => panic!("{} should be a scalar, is {other:?}", path.join(".")),
    }
}

/// Every mapping anywhere under `value` that has `key`, with that key's value.
pub fn find_key<'a>(value: &'a Value, key: &str, found: &mut Vec<&'a Value>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                if k.as_str() == Some(key) {
                    found.push(v);
                }
                find_key(v, key, found);
            }
        }
        Value::Sequence(seq) => seq.iter().for_each(|v| find_key(v, key, found)),
        Value::Tagged(tagged) => find_key(&tagged.value, key, found),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berth_names_are_read_from_berth_source() {
        let names = berth_names_in_source();
        for expected in [
            "BERTH_ADDR",
            "BERTH_HTTP_TRUSTED_PROXIES",
            "BERTH_ADMIN_PASSWORD",
        ] {
            assert!(
                names.contains(expected),
                "{expected} not found in {names:?}"
            );
        }
        assert!(names.iter().all(|n| n.starts_with("BERTH_") && n.len() > 6));
    }

    #[test]
    fn names_in_text_stop_at_non_name_characters() {
        let names = berth_names_in("x BERTH_A_B=1 ${BERTH_C:?} NOT_BERTH_D BERTH_E_");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["BERTH_A_B", "BERTH_C", "BERTH_E"]
        );
    }
}
