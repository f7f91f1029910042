//! `deploy/kubernetes/`: the plain manifests parse, wire together (Secrets, ConfigMap,
//! Service, Ingress, PDB all match the Deployment) and set what berth and registry traffic need.

use std::collections::BTreeSet;

use crate::{Value, at, find_key, known_env_names, repo_root, text_at, yaml_documents};

/// Every manifest file, relative to the repository root (the top directory and `dev-deps/`).
fn manifest_files() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["deploy/kubernetes", "deploy/kubernetes/dev-deps"] {
        let entries = std::fs::read_dir(repo_root().join(dir)).expect("deploy/kubernetes");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".yaml") || name.ends_with(".yml") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    files.sort();
    files
}

/// The objects of the main directory (what `kubectl apply -f deploy/kubernetes/` applies).
fn main_objects() -> Vec<Value> {
    manifest_files()
        .iter()
        .filter(|f| !f.contains("dev-deps/"))
        .flat_map(|f| yaml_documents(f))
        .collect()
}

fn all_objects() -> Vec<Value> {
    manifest_files()
        .iter()
        .flat_map(|f| yaml_documents(f))
        .collect()
}

fn one_of_kind(objects: &[Value], kind: &str) -> Value {
    let found: Vec<_> = objects
        .iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} in deploy/kubernetes/");
    found[0].clone()
}

fn deployment() -> Value {
    one_of_kind(&main_objects(), "Deployment")
}

fn container(deployment: &Value) -> Value {
    let containers = at(deployment, &["spec", "template", "spec", "containers"])
        .and_then(Value::as_sequence)
        .expect("containers");
    assert_eq!(containers.len(), 1, "one berth container");
    containers[0].clone()
}

fn pod_labels(deployment: &Value) -> Value {
    at(deployment, &["spec", "template", "metadata", "labels"])
        .cloned()
        .expect("pod labels")
}

/// Whether every `selector` entry is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let (Some(selector), Some(_)) = (selector.as_mapping(), labels.as_mapping()) else {
        return false;
    };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The container port a probe's `port` names (by name or number).
fn probe_port(container: &Value, port: &Value) -> u64 {
    let ports = container["ports"].as_sequence().expect("container ports");
    ports
        .iter()
        .find(|p| p.get("name") == Some(port) || p.get("containerPort") == Some(port))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("probe port {port:?} is not a container port"))
}

#[test]
fn every_manifest_parses_and_names_its_kind() {
    let files = manifest_files();
    assert!(files.len() >= 7, "manifests: {files:?}");
    for object in all_objects() {
        for key in ["apiVersion", "kind"] {
            assert!(object.get(key).is_some(), "{key} missing in {object:?}");
        }
        assert!(at(&object, &["metadata", "name"]).is_some(), "{object:?}");
    }
    let kinds: BTreeSet<_> = main_objects()
        .iter()
        .filter_map(|o| o["kind"].as_str().map(String::from))
        .collect();
    for kind in [
        "Namespace",
        "Secret",
        "ConfigMap",
        "Deployment",
        "Service",
        "Ingress",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/kubernetes/");
    }
}

#[test]
fn objects_live_in_the_namespace_the_manifests_create() {
    let namespace = text_at(
        &one_of_kind(&main_objects(), "Namespace"),
        &["metadata", "name"],
    );
    for object in all_objects() {
        if object["kind"].as_str() != Some("Namespace") {
            assert_eq!(
                text_at(&object, &["metadata", "namespace"]),
                namespace,
                "{:?}",
                object["metadata"]["name"]
            );
        }
    }
}

#[test]
fn deployment_runs_several_replicas_and_never_drops_below_them_in_a_rollout() {
    let d = deployment();
    let replicas = at(&d, &["spec", "replicas"]).and_then(Value::as_u64);
    assert!(replicas >= Some(2), "replicas: {replicas:?}");
    assert_eq!(
        text_at(&d, &["spec", "strategy", "rollingUpdate", "maxUnavailable"]),
        "0"
    );
    assert!(selects(
        &d["spec"]["selector"]["matchLabels"],
        &pod_labels(&d)
    ));
}

#[test]
fn probes_hit_readyz_and_healthz_on_the_container_port() {
    let c = container(&deployment());
    let addr = env_value(&deployment(), "BERTH_ADDR");
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        assert_eq!(text_at(&c, &[probe, "httpGet", "path"]), path, "{probe}");
        let port = probe_port(&c, &c[probe]["httpGet"]["port"]);
        assert!(
            addr.ends_with(&format!(":{port}")),
            "{probe} port {port} but BERTH_ADDR={addr}"
        );
    }
}

/// An environment variable's value, from the container's `env` or its ConfigMap.
fn env_value(deployment: &Value, name: &str) -> String {
    let c = container(deployment);
    if let Some(e) = c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"].as_str() == Some(name))
    {
        return text_at(e, &["value"]);
    }
    for cm in config_maps_of(&c) {
        if let Some(v) = at(&cm, &["data", name]) {
            return v.as_str().unwrap_or_default().to_string();
        }
    }
    panic!("{name} is not set for the berth container")
}

fn config_maps_of(container: &Value) -> Vec<Value> {
    let objects = main_objects();
    container["envFrom"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|e| e["configMapRef"]["name"].as_str())
        .map(|name| {
            objects
                .iter()
                .find(|o| {
                    o["kind"].as_str() == Some("ConfigMap")
                        && o["metadata"]["name"].as_str() == Some(name)
                })
                .cloned()
                .unwrap_or_else(|| panic!("envFrom names ConfigMap {name}, not in the manifests"))
        })
        .collect()
}

#[test]
fn every_environment_name_is_one_berth_reads() {
    let known = known_env_names();
    let c = container(&deployment());
    let mut names: Vec<String> = c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| text_at(e, &["name"]))
        .collect();
    for cm in config_maps_of(&c) {
        let data = cm["data"].as_mapping().expect("ConfigMap data");
        names.extend(data.keys().filter_map(|k| k.as_str().map(String::from)));
    }
    assert!(names.len() > 10, "{names:?}");
    let unknown: Vec<_> = names.iter().filter(|n| !known.contains(*n)).collect();
    assert!(unknown.is_empty(), "berth reads no {unknown:?}");
}

#[test]
fn berth_runs_on_postgresql_and_s3_in_token_mode() {
    let d = deployment();
    assert_eq!(env_value_or_secret(&d, "BERTH_STORAGE_BACKEND"), "s3");
    assert_eq!(env_value_or_secret(&d, "BERTH_AUTH_MODE"), "token");
    assert!(env_value_or_secret(&d, "BERTH_DATABASE_URL").starts_with("postgres://"));
    assert!(!env_value(&d, "BERTH_HTTP_TRUSTED_PROXIES").is_empty());
}

/// A variable's value, following a `secretKeyRef` into the Secret manifest.
fn env_value_or_secret(deployment: &Value, name: &str) -> String {
    let c = container(deployment);
    let from_secret = c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"].as_str() == Some(name))
        .and_then(|e| at(e, &["valueFrom", "secretKeyRef"]));
    match from_secret {
        Some(r) => secret_value(
            &all_objects(),
            &text_at(r, &["name"]),
            &text_at(r, &["key"]),
        )
        .unwrap_or_else(|| panic!("{name}: {r:?} is not in a Secret manifest")),
        None => env_value(deployment, name),
    }
}

fn secret_value(objects: &[Value], name: &str, key: &str) -> Option<String> {
    let secret = objects.iter().find(|o| {
        o["kind"].as_str() == Some("Secret") && o["metadata"]["name"].as_str() == Some(name)
    })?;
    // stringData as written; data would be base64 (not used in these manifests).
    secret["stringData"][key].as_str().map(String::from)
}

#[test]
fn every_secret_key_referenced_exists_and_is_marked_as_an_example() {
    let objects = all_objects();
    let mut refs = Vec::new();
    for object in &objects {
        find_key(object, "secretKeyRef", &mut refs);
    }
    assert!(refs.len() >= 4, "secretKeyRefs: {refs:?}");
    for r in refs {
        let (name, key) = (text_at(r, &["name"]), text_at(r, &["key"]));
        assert!(
            secret_value(&objects, &name, &key).is_some(),
            "secret {name} has no key {key}"
        );
    }
    for secret in objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("Secret"))
    {
        let values = secret["stringData"].as_mapping().expect("stringData");
        assert!(
            values
                .values()
                .any(|v| v.as_str().is_some_and(|s| s.contains("EXAMPLE"))),
            "{:?}: example secrets must say EXAMPLE",
            secret["metadata"]["name"]
        );
    }
}

#[test]
fn pods_run_non_root_on_a_read_only_root_with_the_data_dir_on_an_empty_dir() {
    let d = deployment();
    let pod = &d["spec"]["template"]["spec"];
    let c = container(&d);
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    let data_dir = env_value(&d, "BERTH_DATA_DIR");
    let mount = c["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"].as_str() == Some(&data_dir))
        .unwrap_or_else(|| panic!("nothing mounted at BERTH_DATA_DIR={data_dir}"));
    let volume = pod["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the data dir's volume");
    assert!(volume.get("emptyDir").is_some(), "{volume:?}");
    for key in ["requests", "limits"] {
        assert!(c["resources"].get(key).is_some(), "resources.{key}");
    }
}

#[test]
fn a_stopping_pod_has_longer_than_the_proxy_timeout_to_finish_uploads() {
    let d = deployment();
    let grace = at(
        &d,
        &["spec", "template", "spec", "terminationGracePeriodSeconds"],
    )
    .and_then(Value::as_u64)
    .expect("terminationGracePeriodSeconds");
    let ingress = one_of_kind(&main_objects(), "Ingress");
    let timeout: u64 = text_at(
        &ingress,
        &[
            "metadata",
            "annotations",
            "nginx.ingress.kubernetes.io/proxy-read-timeout",
        ],
    )
    .parse()
    .expect("a number of seconds");
    assert!(
        grace > timeout,
        "grace {grace} s <= proxy timeout {timeout} s"
    );
    assert!(at(&container(&d), &["lifecycle", "preStop"]).is_some());
}

#[test]
fn ingress_lets_registry_traffic_through() {
    let ingress = one_of_kind(&main_objects(), "Ingress");
    let annotation = |name: &str| {
        text_at(
            &ingress,
            &[
                "metadata",
                "annotations",
                &format!("nginx.ingress.kubernetes.io/{name}"),
            ],
        )
    };
    assert_eq!(annotation("proxy-body-size"), "0");
    assert_eq!(annotation("proxy-request-buffering"), "off");
    assert_eq!(annotation("proxy-buffering"), "off");
    for timeout in ["proxy-read-timeout", "proxy-send-timeout"] {
        let seconds: u64 = annotation(timeout).parse().expect("seconds");
        assert!(seconds >= 900, "{timeout}: {seconds}");
    }
}

#[test]
fn service_ingress_and_pdb_point_at_the_deployment() {
    let objects = main_objects();
    let d = deployment();
    let labels = pod_labels(&d);
    let service = one_of_kind(&objects, "Service");
    assert!(selects(&service["spec"]["selector"], &labels));
    let service_port = &service["spec"]["ports"][0];
    probe_port(&container(&d), &service_port["targetPort"]);

    let pdb = one_of_kind(&objects, "PodDisruptionBudget");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], &labels));

    let ingress = one_of_kind(&objects, "Ingress");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], service["metadata"]["name"]);
    assert_eq!(backend["port"]["name"], service_port["name"]);
}
