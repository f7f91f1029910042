//! The operations figures (berth only): a registry seeded with many small manifests and a
//! share of garbage, garbage collection runs through Harbor's `/api/v2.0/system/gc`, and
//! the latency of usage and quota answers.

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Result;
use crate::client::{self, Http};
use crate::data::digest_of;
use crate::ops::{self, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use crate::stats::{emit, latency};
use crate::workloads::run_concurrently;

/// What `seed_garbage` builds: `repos` repositories `<prefix>NNN` with `manifests` tagged
/// manifests each, every manifest over `blobs` blobs of its own (a config and `blobs - 1`
/// layers); then every `garbage_every`-th manifest is deleted, leaving its blobs garbage.
pub struct GarbageSpec {
    pub prefix: String,
    pub repos: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub blob_size: usize,
    pub garbage_every: usize,
    pub concurrency: usize,
}

/// One small blob's bytes, distinct for every (prefix, repository, manifest, blob).
fn blob_bytes(prefix: &str, r: usize, m: usize, b: usize, size: usize) -> Vec<u8> {
    let mut bytes = format!("gc bench {prefix} r{r} m{m} b{b} ").into_bytes();
    bytes.resize(size.max(bytes.len()), b'.');
    bytes
}

/// Push one manifest and its blobs (each blob in one `POST ?digest=`); its digest.
async fn push_small_image(
    http: &Http,
    repo: &str,
    r: usize,
    m: usize,
    spec: &GarbageSpec,
) -> Result<String> {
    let mut descriptors = Vec::new();
    for b in 0..spec.blobs.max(1) {
        let bytes = blob_bytes(&spec.prefix, r, m, b, spec.blob_size);
        let digest = digest_of(&bytes);
        let len = bytes.len().to_string();
        let headers = [
            ("content-type", "application/octet-stream"),
            ("content-length", len.as_str()),
        ];
        // One request where the registry takes a monolithic POST (berth); registry:2 opens
        // a session instead, and the bytes follow in a PUT.
        let response = http
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &headers,
                client::full(bytes.clone()),
            )
            .await?;
        let status = response.status();
        let location = client::location(&response).ok();
        client::collect(response).await?;
        match (status, location) {
            (StatusCode::CREATED, _) => {}
            (StatusCode::ACCEPTED, Some(location)) => {
                let response = http
                    .expect(
                        Method::PUT,
                        &client::with_query(&location, "digest", &digest),
                        &headers,
                        client::full(bytes.clone()),
                        StatusCode::CREATED,
                    )
                    .await?;
                client::collect(response).await?;
            }
            (status, _) => return Err(format!("POST blob to {repo}: {status}").into()),
        }
        let media_type = if b == 0 { OCI_CONFIG } else { OCI_LAYER };
        descriptors.push(json!({"mediaType": media_type, "digest": digest, "size": bytes.len()}));
    }
    let config = descriptors.remove(0);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": descriptors,
    }))?;
    let digest = digest_of(&manifest);
    ops::put_manifest(http, repo, &format!("m{m}"), &manifest, &digest).await?;
    Ok(digest)
}

/// `DELETE` a manifest, trying again on a 5xx: registry:2 answers 500 "invalid checksum
/// digest format" now and then when a tag of the same repository is being written — after
/// deleting the manifest, so a 404 on a retry means the first attempt did it.
async fn delete_manifest(http: &Http, repo: &str, digest: &str) -> Result<()> {
    let path = format!("/v2/{repo}/manifests/{digest}");
    for attempt in 1.. {
        let response = http
            .send(Method::DELETE, &path, &[], client::empty())
            .await?;
        let status = response.status();
        let body = client::collect(response).await?;
        match status {
            StatusCode::ACCEPTED => return Ok(()),
            StatusCode::NOT_FOUND if attempt > 1 => return Ok(()),
            s if s.is_server_error() && attempt < 5 => {
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            s => {
                let body = String::from_utf8_lossy(&body);
                return Err(format!("DELETE {path}: {s}: {body}").into());
            }
        }
    }
    unreachable!("the loop returns")
}

pub async fn seed_garbage(http: &Http, spec: GarbageSpec) -> Result<()> {
    let began = Instant::now();
    let spec = &spec;
    let jobs = (0..spec.repos)
        .flat_map(|r| (0..spec.manifests).map(move |m| (r, m)))
        .map(|(r, m)| async move {
            let repo = format!("{}{r:03}", spec.prefix);
            let digest = push_small_image(http, &repo, r, m, spec).await?;
            if spec.garbage_every > 0 && m % spec.garbage_every == 0 {
                delete_manifest(http, &repo, &digest).await?;
            }
            Ok(())
        })
        .collect();
    run_concurrently(jobs, spec.concurrency).await?;
    let manifests = spec.repos * spec.manifests;
    let deleted = if spec.garbage_every > 0 {
        spec.repos * spec.manifests.div_ceil(spec.garbage_every)
    } else {
        0
    };
    let secs = began.elapsed().as_secs_f64();
    emit(
        json!({
            "op": "seed-garbage",
            "manifests": manifests,
            "blobs": manifests * spec.blobs,
            "garbage_blobs": deleted * spec.blobs,
            "secs": secs,
        }),
        json!({}),
    );
    Ok(())
}

async fn get_json(http: &Http, path: &str) -> Result<Value> {
    let response = http
        .expect(Method::GET, path, &[], client::empty(), StatusCode::OK)
        .await?;
    Ok(serde_json::from_slice(&client::collect(response).await?)?)
}

/// One GC run through Harbor's API, from the request to its end: the run's own figures,
/// read from its log line (`… N blobs (B bytes) … mark M ms, sweep S ms, total T ms`).
async fn gc_once(http: &Http, poll: Duration) -> Result<Value> {
    let began = Instant::now();
    let body = json!({"schedule": {"type": "Manual"}, "parameters": {"delete_untagged": false}});
    let response = http
        .expect(
            Method::POST,
            "/api/v2.0/system/gc/schedule",
            &[("content-type", "application/json")],
            client::full(serde_json::to_vec(&body)?),
            StatusCode::CREATED,
        )
        .await?;
    let location = client::location(&response)?;
    client::collect(response).await?;
    let id = location.rsplit('/').next().unwrap_or_default().to_owned();
    let status = loop {
        let run = get_json(http, &format!("/api/v2.0/system/gc/{id}")).await?;
        let status = run["job_status"].as_str().unwrap_or_default().to_owned();
        if !matches!(status.as_str(), "Pending" | "Running" | "Scheduled" | "") {
            break status;
        }
        if began.elapsed() > Duration::from_secs(3600) {
            return Err(format!("gc run {id} still {status} after an hour").into());
        }
        tokio::time::sleep(poll).await;
    };
    let wall_ms = began.elapsed().as_secs_f64() * 1000.0;
    let response = http
        .expect(
            Method::GET,
            &format!("/api/v2.0/system/gc/{id}/log"),
            &[],
            client::empty(),
            StatusCode::OK,
        )
        .await?;
    let log = String::from_utf8_lossy(&client::collect(response).await?).into_owned();
    if status != "Success" {
        return Err(format!("gc run {id} ended {status}: {log}").into());
    }
    let figure = |before: &str, after: &str| -> Option<u64> {
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("mark ") && l.contains("sweep "))?;
        let at = line.rfind(after)?;
        let number = line[..at].trim_end().rsplit(before).next()?;
        number.trim().parse().ok()
    };
    let blobs = figure(", ", " blobs").unwrap_or(0);
    let mark_ms = figure("mark ", " ms, sweep").unwrap_or(0);
    let sweep_ms = figure("sweep ", " ms, total").unwrap_or(0);
    let total_ms = figure("total ", " ms").unwrap_or(0);
    Ok(json!({
        "id": id,
        "blobs_deleted": blobs,
        "mark_ms": mark_ms,
        "sweep_ms": sweep_ms,
        "total_ms": total_ms,
        "wall_ms": wall_ms,
        "sweep_blobs_per_s": if sweep_ms > 0 { blobs as f64 * 1000.0 / sweep_ms as f64 } else { 0.0 },
    }))
}

/// One run (`for_secs` 0), or runs back to back for `for_secs` seconds (load for another
/// workload): one line per run.
pub async fn gc(http: &Http, for_secs: u64) -> Result<()> {
    let poll = Duration::from_millis(20);
    let began = Instant::now();
    let mut runs = 0;
    loop {
        let run = gc_once(http, poll).await?;
        runs += 1;
        emit(json!({"op": "gc", "run": runs}), run);
        if began.elapsed() >= Duration::from_secs(for_secs) {
            return Ok(());
        }
    }
}

/// `rounds` sequential `GET`s of each path (after one warm-up each): latency per path.
pub async fn api_latency(http: &Http, paths: &[String], rounds: usize) -> Result<()> {
    let mut figures = serde_json::Map::new();
    for path in paths {
        get_json(http, path).await?;
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds.max(1) {
            let began = Instant::now();
            get_json(http, path).await?;
            samples.push(began.elapsed().as_secs_f64());
        }
        figures.insert(path.clone(), latency(&samples));
    }
    emit(json!({"op": "api-latency", "paths": figures}), json!({}));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seeded_blob_is_distinct_and_sized() {
        let a = blob_bytes("p/r", 1, 2, 3, 256);
        let b = blob_bytes("p/r", 1, 23, 0, 256);
        assert_eq!(a.len(), 256);
        assert_ne!(a, b);
        assert_ne!(
            blob_bytes("p/r", 12, 3, 0, 10),
            blob_bytes("p/r", 1, 23, 0, 10)
        );
        assert_ne!(
            blob_bytes("p/r", 1, 2, 3, 10),
            blob_bytes("q/r", 1, 2, 3, 10)
        );
    }
}
