//! `deploy/compose/`: the compose file (checked by `docker-compose config` too), its
//! `.env.example`, and the nginx config in front of the nodes (checked by `nginx -t` too).

use std::collections::BTreeSet;
use std::process::Command;

use crate::{Value, at, known_env_names, read, repo_root, text_at, yaml_document};

const COMPOSE: &str = "deploy/compose/docker-compose.yml";
const NGINX: &str = "deploy/compose/nginx.conf";
const ENV_EXAMPLE: &str = "deploy/compose/.env.example";

fn compose() -> Value {
    yaml_document(COMPOSE)
}

/// The names of services running the berth image.
fn berth_services(compose: &Value) -> Vec<String> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("berth:")))
        .filter_map(|(name, _)| name.as_str().map(String::from))
        .collect()
}

fn service_env(compose: &Value, service: &str) -> Value {
    at(compose, &["services", service, "environment"])
        .cloned()
        .unwrap_or_else(|| panic!("{service} has no environment mapping"))
}

#[test]
fn compose_runs_two_berth_nodes_on_postgresql_and_minio_behind_nginx() {
    let c = compose();
    let image = |s: &str| text_at(&c, &["services", s, "image"]);
    assert!(image("postgres").starts_with("postgres:15"));
    assert!(image("minio").starts_with("minio/minio"));
    assert!(image("createbucket").starts_with("minio/mc"));
    assert!(image("nginx").starts_with("nginx"));
    let nodes = berth_services(&c);
    assert!(nodes.len() >= 2, "berth nodes: {nodes:?}");
    for node in &nodes {
        let env = service_env(&c, node);
        assert_eq!(text_at(&env, &["BERTH_STORAGE_BACKEND"]), "s3", "{node}");
        assert_eq!(text_at(&env, &["BERTH_AUTH_MODE"]), "token", "{node}");
        assert!(text_at(&env, &["BERTH_DATABASE_URL"]).starts_with("postgres://"));
        assert_eq!(text_at(&env, &["BERTH_STORAGE_S3_PATH_STYLE"]), "true");
        let depends = c["services"][node.as_str()]["depends_on"]
            .as_mapping()
            .expect("depends_on with conditions");
        assert_eq!(
            text_at(&depends["createbucket"], &["condition"]),
            "service_completed_successfully"
        );
        assert_eq!(
            text_at(&depends["postgres"], &["condition"]),
            "service_healthy"
        );
    }
    let published = c["services"]["nginx"]["ports"]
        .as_sequence()
        .expect("ports");
    assert_eq!(published.len(), 1, "only nginx is published");
    for (name, service) in c["services"].as_mapping().expect("services") {
        if name.as_str() != Some("nginx") {
            assert!(service.get("ports").is_none(), "{name:?} publishes a port");
        }
    }
}

#[test]
fn every_berth_environment_name_is_one_berth_reads() {
    let c = compose();
    let known = known_env_names();
    for node in berth_services(&c) {
        let env = service_env(&c, &node);
        let names: Vec<_> = env
            .as_mapping()
            .expect("environment as a mapping")
            .keys()
            .filter_map(|k| k.as_str())
            .collect();
        let unknown: Vec<_> = names.iter().filter(|n| !known.contains(**n)).collect();
        assert!(unknown.is_empty(), "{node}: berth reads no {unknown:?}");
    }
}

#[test]
fn healthchecks_ask_readyz_and_nginx_waits_for_healthy_nodes() {
    let c = compose();
    for node in berth_services(&c) {
        let test = format!("{:?}", c["services"][node.as_str()]["healthcheck"]["test"]);
        assert!(test.contains("/readyz"), "{node}: {test}");
        let nginx_deps = &c["services"]["nginx"]["depends_on"][node.as_str()];
        assert_eq!(text_at(nginx_deps, &["condition"]), "service_healthy");
    }
    for service in ["postgres", "minio", "nginx"] {
        assert!(at(&c, &["services", service, "healthcheck", "test"]).is_some());
    }
}

/// `${NAME...}` references in `text` (compose interpolation; `$$` is a literal dollar).
fn interpolated_names(text: &str) -> BTreeSet<String> {
    let text = text.replace("$$", "");
    text.split("${")
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn secrets_come_from_env_and_every_one_is_in_env_example() {
    let compose_text = read(COMPOSE);
    let used = interpolated_names(&compose_text);
    let example = read(ENV_EXAMPLE);
    let defined: BTreeSet<String> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .collect();
    let missing: Vec<_> = used.difference(&defined).collect();
    assert!(missing.is_empty(), "not in .env.example: {missing:?}");
    for (name, value) in example.lines().filter_map(|l| l.split_once('=')) {
        if name.contains("PASSWORD") || name.contains("SECRET") {
            assert!(
                value.contains("change-me"),
                "{name} looks like a real secret"
            );
            assert!(
                compose_text.contains(&format!("${{{name}:?")),
                "{name} should be required (${{{name}:?...}}) in the compose file"
            );
        }
    }
    let ignore = read("deploy/compose/.gitignore");
    assert!(
        ignore.lines().any(|l| l.trim() == ".env"),
        ".env git-ignored"
    );
}

fn docker_compose(args: &[&str]) -> std::process::Output {
    Command::new("docker-compose")
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["--project-directory", "deploy/compose", "-f", COMPOSE])
        .args(args)
        .output()
        .expect("docker-compose is missing: scripts/install-deps.sh installs it")
}

#[test]
fn docker_compose_accepts_the_file_with_the_example_env() {
    let out = docker_compose(&["--env-file", ENV_EXAMPLE, "config", "--quiet"]);
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docker_compose_refuses_to_start_without_the_secrets() {
    let empty = std::env::temp_dir().join(format!("berth-empty-env-{}", std::process::id()));
    std::fs::write(&empty, "").expect("write an empty env file");
    let out = docker_compose(&[
        "--env-file",
        empty.to_str().expect("a UTF-8 temp path"),
        "config",
        "--quiet",
    ]);
    let _ = std::fs::remove_file(&empty);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted without secrets");
    assert!(stderr.contains("in .env"), "{stderr}");
}

/// nginx.conf as a list of directives (words up to `;` or `{`), comments removed.
fn nginx_directives(text: &str) -> Vec<Vec<String>> {
    let mut directives = Vec::new();
    let mut words = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let spaced = line
            .replace(';', " ; ")
            .replace('{', " { ")
            .replace('}', " } ");
        for word in spaced.split_whitespace() {
            match word {
                ";" | "{" => directives.push(std::mem::take(&mut words)),
                "}" => {}
                w => words.push(w.to_string()),
            }
        }
    }
    directives
}

fn nginx_directive(directives: &[Vec<String>], name: &str) -> Vec<String> {
    let found: Vec<_> = directives.iter().filter(|d| d[0] == name).collect();
    assert_eq!(found.len(), 1, "{name} should be set once in {NGINX}");
    found[0][1..].to_vec()
}

#[test]
fn nginx_streams_unlimited_bodies_to_every_node_with_long_timeouts() {
    let d = nginx_directives(&read(NGINX));
    assert_eq!(nginx_directive(&d, "client_max_body_size"), ["0"]);
    assert_eq!(nginx_directive(&d, "proxy_request_buffering"), ["off"]);
    assert_eq!(nginx_directive(&d, "proxy_buffering"), ["off"]);
    assert_eq!(nginx_directive(&d, "proxy_http_version"), ["1.1"]);
    for timeout in [
        "proxy_read_timeout",
        "proxy_send_timeout",
        "client_body_timeout",
    ] {
        let value = nginx_directive(&d, timeout)[0].clone();
        let seconds: u64 = value.trim_end_matches('s').parse().expect("seconds");
        assert!(seconds >= 900, "{timeout} {value}");
    }
    let host = d
        .iter()
        .find(|d| d[0] == "proxy_set_header" && d[1] == "Host")
        .expect("proxy_set_header Host");
    assert!(
        ["$http_host", "$host:$server_port"].contains(&host[2].as_str()),
        "Host must keep the port the client used: {host:?}"
    );
    let servers: BTreeSet<String> = d
        .iter()
        .filter(|d| d[0] == "server" && d.len() > 1)
        .map(|d| d[1].clone())
        .collect();
    let nodes: BTreeSet<String> = berth_services(&compose())
        .into_iter()
        .map(|n| format!("{n}:5000"))
        .collect();
    assert_eq!(
        servers, nodes,
        "the upstream should be exactly the berth nodes"
    );
}

#[test]
fn nginx_trusts_its_own_address_in_berths_trusted_proxies() {
    let c = compose();
    let address = text_at(
        &c,
        &["services", "nginx", "networks", "berth", "ipv4_address"],
    );
    for node in berth_services(&c) {
        let trusted = text_at(&service_env(&c, &node), &["BERTH_HTTP_TRUSTED_PROXIES"]);
        assert!(
            trusted
                .split(',')
                .any(|p| p.trim() == format!("{address}/32") || p.trim() == address),
            "{node}: {trusted} does not name nginx ({address})"
        );
    }
}

#[test]
fn nginx_accepts_the_config() {
    // nginx -t resolves upstream names: the nodes become 127.0.0.1 in a copy.
    let dir = std::env::temp_dir().join(format!("berth-nginx-t-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut conf = read(NGINX);
    for node in berth_services(&compose()) {
        conf = conf.replace(&format!("{node}:5000"), "127.0.0.1:5000");
    }
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf copy");
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&path)
        .output()
        .expect("nginx is missing: scripts/install-deps.sh installs it");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
