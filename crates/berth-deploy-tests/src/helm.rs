//! `deploy/helm/berth/` without `helm`: Chart.yaml and values.yaml parse, every `.Values`
//! path the templates use exists (and every value is used), actions balance, and the
//! templates set only environment names berth reads, probes and proxy annotations included.

use std::collections::BTreeSet;

use crate::{Value, at, berth_names_in, known_env_names, read, repo_root, text_at, yaml_document};

const CHART: &str = "deploy/helm/berth";

/// Every template file (name, text), `_helpers.tpl` and `NOTES.txt` included.
fn templates() -> Vec<(String, String)> {
    let dir = repo_root().join(CHART).join("templates");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("templates/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|name| {
            let text = read(&format!("{CHART}/templates/{name}"));
            (name, text)
        })
        .collect()
}

fn values() -> Value {
    yaml_document(&format!("{CHART}/values.yaml"))
}

/// The inside of each `{{ ... }}` action, trim markers and surrounding spaces removed.
fn actions(name: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .unwrap_or_else(|| panic!("{name}: `{{{{` without `}}}}`"));
        let inner = &after[..close];
        assert!(!inner.contains("{{"), "{name}: nested `{{{{` in {inner:?}");
        found.push(
            inner
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim()
                .to_string(),
        );
        rest = &after[close + 2..];
    }
    assert!(!rest.contains("}}"), "{name}: `}}}}` without `{{{{`");
    found
}

/// Checks that block actions (if, range, with, define, block) each have their `end`.
fn check_blocks(name: &str, text: &str) {
    let mut open: Vec<String> = Vec::new();
    for action in actions(name, text) {
        if action.starts_with("/*") {
            assert!(
                action.ends_with("*/"),
                "{name}: unclosed comment {action:?}"
            );
            continue;
        }
        let word = action.split_whitespace().next().unwrap_or_default();
        match word {
            "if" | "range" | "with" | "define" | "block" => open.push(action.clone()),
            "end" => {
                open.pop()
                    .unwrap_or_else(|| panic!("{name}: `end` without a block"));
            }
            "else" => {
                let inner = open.last().map(|a| a.split_whitespace().next());
                assert!(
                    matches!(inner, Some(Some("if" | "range" | "with"))),
                    "{name}: `else` outside if/range/with"
                );
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "{name}: blocks never ended: {open:?}");
}

/// Every `.Values.a.b` path in `text`, as ["a", "b"].
fn values_paths(text: &str) -> BTreeSet<Vec<String>> {
    let mut paths = BTreeSet::new();
    for (i, _) in text.match_indices(".Values.") {
        let tail = &text[i + ".Values.".len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(tail.len());
        let path: Vec<String> = tail[..end]
            .split('.')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if !path.is_empty() {
            paths.insert(path);
        }
    }
    paths
}

fn used_values_paths() -> BTreeSet<Vec<String>> {
    templates()
        .iter()
        .flat_map(|(_, text)| values_paths(text))
        .collect()
}

/// Paths to every leaf of values.yaml (an empty map or list is a leaf).
fn leaf_paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value.as_mapping() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                prefix.push(k.as_str().expect("string keys").to_string());
                leaf_paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

#[test]
fn chart_yaml_is_a_v2_application_chart() {
    let chart = yaml_document(&format!("{CHART}/Chart.yaml"));
    assert_eq!(text_at(&chart, &["apiVersion"]), "v2");
    assert_eq!(text_at(&chart, &["name"]), "berth");
    assert_eq!(text_at(&chart, &["type"]), "application");
    for key in ["version", "appVersion", "description"] {
        assert!(!text_at(&chart, &[key]).is_empty(), "{key}");
    }
}

#[test]
fn values_run_several_nodes_on_s3_in_token_mode_without_secrets_in_the_file() {
    let v = values();
    assert!(v["replicaCount"].as_u64() >= Some(2));
    assert_eq!(text_at(&v, &["auth", "mode"]), "token");
    for secret in [
        &["database", "url"][..],
        &["storage", "s3", "accessKey"],
        &["storage", "s3", "secretKey"],
        &["auth", "adminPassword"],
        &["existingSecret"],
    ] {
        assert_eq!(
            text_at(&v, secret),
            "",
            "{secret:?} must be empty by default"
        );
    }
    for key in [
        "database",
        "storage",
        "auth",
        "ingress",
        "resources",
        "replicaCount",
    ] {
        assert!(v.get(key).is_some(), "values.yaml has no {key}");
    }
}

#[test]
fn templates_balance_their_actions_and_blocks() {
    let templates = templates();
    let names: BTreeSet<_> = templates.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "_helpers.tpl",
        "NOTES.txt",
        "deployment.yaml",
        "service.yaml",
        "ingress.yaml",
        "secret.yaml",
        "pdb.yaml",
    ] {
        assert!(names.contains(expected), "no templates/{expected}");
    }
    for (name, text) in &templates {
        check_blocks(name, text);
    }
}

#[test]
fn block_check_catches_a_missing_end() {
    let result = std::panic::catch_unwind(|| {
        check_blocks(
            "t",
            "{{- if .Values.a }}\n{{- range .Values.b }}x{{- end }}",
        )
    });
    assert!(result.is_err());
    check_blocks("t", "{{- if .Values.a }}{{ else if .Values.b }}{{- end }}");
}

#[test]
fn every_values_path_in_the_templates_exists_in_values_yaml() {
    let v = values();
    let used = used_values_paths();
    assert!(used.len() > 20, "{used:?}");
    let missing: Vec<_> = used
        .iter()
        .filter(|p| at(&v, &p.iter().map(String::as_str).collect::<Vec<_>>()).is_none())
        .map(|p| p.join("."))
        .collect();
    assert!(missing.is_empty(), "not in values.yaml: {missing:?}");
}

#[test]
fn every_value_is_used_by_a_template() {
    let used = used_values_paths();
    let mut leaves = Vec::new();
    leaf_paths(&values(), &mut Vec::new(), &mut leaves);
    let unused: Vec<_> = leaves
        .iter()
        .filter(|leaf| !used.iter().any(|u| leaf.starts_with(u)))
        .map(|l| l.join("."))
        .collect();
    assert!(unused.is_empty(), "values no template reads: {unused:?}");
}

#[test]
fn every_environment_name_in_the_templates_is_one_berth_reads() {
    let known = known_env_names();
    let deployment = read(&format!("{CHART}/templates/deployment.yaml"));
    let set: BTreeSet<String> = deployment
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .filter(|n| n.starts_with("BERTH_"))
        .map(String::from)
        .collect();
    assert!(set.len() > 10, "{set:?}");
    for (name, text) in templates() {
        let unknown: Vec<_> = berth_names_in(&text)
            .into_iter()
            .filter(|n| !known.contains(n))
            .collect();
        assert!(unknown.is_empty(), "{name}: berth reads no {unknown:?}");
    }
}

#[test]
fn deployment_template_probes_health_routes_and_rolls_without_losing_capacity() {
    let text = read(&format!("{CHART}/templates/deployment.yaml"));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let probe_path = |probe: &str| {
        let at = lines
            .iter()
            .position(|l| *l == format!("{probe}:"))
            .unwrap_or_else(|| panic!("no {probe}"));
        lines[at..]
            .iter()
            .find_map(|l| l.strip_prefix("path: "))
            .map(String::from)
    };
    assert_eq!(probe_path("readinessProbe").as_deref(), Some("/readyz"));
    assert_eq!(probe_path("livenessProbe").as_deref(), Some("/healthz"));
    for expected in [
        "maxUnavailable: 0",
        "containerPort: 5000",
        "value: \"0.0.0.0:5000\"",
        "port: http",
        "- name: BERTH_STORAGE_BACKEND",
        "value: s3",
    ] {
        assert!(
            lines.contains(&expected),
            "deployment.yaml lacks {expected:?}"
        );
    }
    let grace = values()["terminationGracePeriodSeconds"].as_u64();
    let timeout = values()["ingress"]["timeoutSeconds"].as_u64();
    assert!(
        grace > timeout,
        "grace {grace:?} <= ingress timeout {timeout:?}"
    );
}

#[test]
fn ingress_template_lets_registry_traffic_through() {
    let text = read(&format!("{CHART}/templates/ingress.yaml"));
    for expected in [
        "nginx.ingress.kubernetes.io/proxy-body-size: \"0\"",
        "nginx.ingress.kubernetes.io/proxy-request-buffering: \"off\"",
        "nginx.ingress.kubernetes.io/proxy-buffering: \"off\"",
        "nginx.ingress.kubernetes.io/proxy-read-timeout: {{ .Values.ingress.timeoutSeconds | quote }}",
        "nginx.ingress.kubernetes.io/proxy-send-timeout: {{ .Values.ingress.timeoutSeconds | quote }}",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == expected),
            "ingress.yaml lacks {expected:?}"
        );
    }
    assert!(values()["ingress"]["timeoutSeconds"].as_u64() >= Some(900));
}

#[test]
fn secret_template_is_skipped_for_an_existing_secret_and_holds_the_keys_the_deployment_reads() {
    let secret = read(&format!("{CHART}/templates/secret.yaml"));
    assert!(
        secret
            .trim_start()
            .starts_with("{{- if not .Values.existingSecret }}")
    );
    let deployment = read(&format!("{CHART}/templates/deployment.yaml"));
    for key in deployment
        .lines()
        .filter_map(|l| l.trim().strip_prefix("key: "))
    {
        assert!(
            secret.contains(&format!("  {key}: ")),
            "secret.yaml has no {key}"
        );
    }
}
