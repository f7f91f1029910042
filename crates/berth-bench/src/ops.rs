//! Distribution API operations as a client does them: blob uploads (monolithic or chunked),
//! mounts, blob and manifest pulls, and whole-image push and pull.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use crate::Result;
use crate::client::{self, Http, MANIFEST_ACCEPT, ReqBody};
use crate::data::{Blob, digest_of};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `POST /v2/<repo>/blobs/uploads/`: open a session, return its `Location`.
pub async fn start_upload(http: &Http, repo: &str) -> Result<String> {
    let response = http
        .expect(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[("content-length", "0")],
            client::empty(),
            StatusCode::ACCEPTED,
        )
        .await?;
    let location = client::location(&response)?;
    client::collect(response).await?;
    Ok(location)
}

/// `PUT <location>?digest=` with `body` (possibly empty): close the session.
async fn finish_upload(
    http: &Http,
    location: &str,
    digest: &str,
    len: u64,
    body: ReqBody,
) -> Result<()> {
    let len = len.to_string();
    let response = http
        .expect(
            Method::PUT,
            &client::with_query(location, "digest", digest),
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", &len),
            ],
            body,
            StatusCode::CREATED,
        )
        .await?;
    client::collect(response).await?;
    Ok(())
}

/// Monolithic push: `POST` then one `PUT ?digest=` carrying the whole blob.
pub async fn push_monolithic(http: &Http, repo: &str, blob: &Blob, digest: &str) -> Result<()> {
    let location = start_upload(http, repo).await?;
    let body = blob.body(0, blob.size).boxed();
    finish_upload(http, &location, digest, blob.size, body).await
}

/// Chunked push: `POST`, one `PATCH` per `chunk` bytes (with `Content-Range`), then an empty
/// `PUT ?digest=`. Returns each PATCH's duration in seconds.
pub async fn push_chunked(
    http: &Http,
    repo: &str,
    blob: &Blob,
    digest: &str,
    chunk: u64,
) -> Result<Vec<f64>> {
    let mut location = start_upload(http, repo).await?;
    let mut times = Vec::new();
    let mut start = 0;
    while start < blob.size {
        let end = (start + chunk.max(1)).min(blob.size);
        let range = format!("{start}-{}", end - 1);
        let len = (end - start).to_string();
        let began = std::time::Instant::now();
        let response = http
            .expect(
                Method::PATCH,
                &location,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-range", &range),
                    ("content-length", &len),
                ],
                blob.body(start, end).boxed(),
                StatusCode::ACCEPTED,
            )
            .await?;
        location = client::location(&response)?;
        client::collect(response).await?;
        times.push(began.elapsed().as_secs_f64());
        start = end;
    }
    finish_upload(http, &location, digest, 0, client::empty()).await?;
    Ok(times)
}

/// Push as docker does: `POST`, one `PATCH` with the whole blob, `PUT ?digest=`.
pub async fn push_patch_put(http: &Http, repo: &str, blob: &Blob, digest: &str) -> Result<()> {
    let location = start_upload(http, repo).await?;
    let len = blob.size.to_string();
    let response = http
        .expect(
            Method::PATCH,
            &location,
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", &len),
            ],
            blob.body(0, blob.size).boxed(),
            StatusCode::ACCEPTED,
        )
        .await?;
    let location = client::location(&response)?;
    client::collect(response).await?;
    finish_upload(http, &location, digest, 0, client::empty()).await
}

/// `HEAD /v2/<repo>/blobs/<digest>`: is the blob there?
pub async fn blob_exists(http: &Http, repo: &str, digest: &str) -> Result<bool> {
    let response = http
        .send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            client::empty(),
        )
        .await?;
    let status = response.status();
    client::collect(response).await?;
    match status {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        other => Err(format!("HEAD blob {repo}@{digest}: {other}").into()),
    }
}

/// Cross-repository mount; falls back to uploading `bytes` if the registry opens a session.
pub async fn mount_or_push(
    http: &Http,
    repo: &str,
    from: &str,
    digest: &str,
    bytes: &[u8],
) -> Result<()> {
    let response = http
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
            &[("content-length", "0")],
            client::empty(),
        )
        .await?;
    let status = response.status();
    let location = client::header(&response, "location");
    client::collect(response).await?;
    match (status, location) {
        (StatusCode::CREATED, _) => Ok(()),
        (StatusCode::ACCEPTED, Some(location)) => {
            let len = bytes.len() as u64;
            let body = client::full(bytes.to_vec());
            finish_upload(http, &location, digest, len, body).await
        }
        (other, _) => Err(format!("mount {digest} into {repo}: {other}").into()),
    }
}

/// `GET /v2/<repo>/blobs/<digest>`, answered 200; the body is left to read.
/// A `307` to the storage (a presigned S3 URL) is followed, as clients do.
async fn get_blob(http: &Http, repo: &str, digest: &str) -> Result<Response<Incoming>> {
    let response = http
        .send(
            Method::GET,
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            client::empty(),
        )
        .await?;
    match response.status() {
        StatusCode::OK => Ok(response),
        StatusCode::TEMPORARY_REDIRECT => {
            let target = client::location(&response)?;
            client::drain(response, false).await?;
            http.expect(Method::GET, &target, &[], client::empty(), StatusCode::OK)
                .await
        }
        status => {
            Err(format!("GET /v2/{repo}/blobs/{digest}: expected 200 OK, got {status}").into())
        }
    }
}

/// Pull one blob; returns (bytes, digest if `verify`).
pub async fn pull_blob(
    http: &Http,
    repo: &str,
    digest: &str,
    verify: bool,
) -> Result<(u64, Option<String>)> {
    let response = get_blob(http, repo, digest).await?;
    client::drain(response, verify).await
}

/// One image to push: a small config blob and generated layers, digests known up front.
pub struct Image {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layers: Vec<(Blob, String)>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl Image {
    /// `layers` layers of `layer_size` bytes from seeds `seed`, `seed + 1`, …
    /// (hashes every layer once: call it before timing starts).
    pub fn generate(seed: u64, layers: usize, layer_size: u64) -> Image {
        let layers: Vec<(Blob, String)> = (0..layers as u64)
            .map(|i| {
                let blob = Blob::new(seed.wrapping_add(i), layer_size);
                let digest = blob.digest();
                (blob, digest)
            })
            .collect();
        Image::of_layers(seed, layers)
    }

    /// An image of the `base` layers (shared with other images) and one layer of its own
    /// of `own_size` bytes from `seed`.
    pub fn on_base(seed: u64, base: &[(Blob, String)], own_size: u64) -> Image {
        let own = Blob::new(seed, own_size);
        let digest = own.digest();
        let mut layers = base.to_vec();
        layers.push((own, digest));
        Image::of_layers(seed, layers)
    }

    fn of_layers(seed: u64, layers: Vec<(Blob, String)>) -> Image {
        let diff_ids: Vec<&str> = layers.iter().map(|(_, d)| d.as_str()).collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "berth-bench.seed": seed.to_string() } },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        })
        .to_string()
        .into_bytes();
        let config_digest = digest_of(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len() },
            "layers": layers.iter().map(|(b, d)| json!({
                "mediaType": OCI_LAYER, "digest": d, "size": b.size,
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        let manifest_digest = digest_of(&manifest);
        Image {
            config,
            config_digest,
            layers,
            manifest,
            manifest_digest,
        }
    }

    /// The same image under another manifest digest: its manifest with the annotation
    /// `berth-bench.artifact: <n>` (one more artifact in a repository, no new blob).
    pub fn variant(&self, n: usize) -> Result<(Vec<u8>, String)> {
        let mut manifest: serde_json::Value = serde_json::from_slice(&self.manifest)?;
        manifest["annotations"] = json!({ "berth-bench.artifact": n.to_string() });
        let bytes = manifest.to_string().into_bytes();
        let digest = digest_of(&bytes);
        Ok((bytes, digest))
    }
}

/// `PUT /v2/<repo>/manifests/<reference>`.
pub async fn put_manifest(
    http: &Http,
    repo: &str,
    reference: &str,
    manifest: &[u8],
    digest: &str,
) -> Result<()> {
    let len = manifest.len().to_string();
    let response = http
        .expect(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", OCI_MANIFEST), ("content-length", &len)],
            client::full(manifest.to_vec()),
            StatusCode::CREATED,
        )
        .await?;
    let answered = client::header(&response, "docker-content-digest");
    client::collect(response).await?;
    if answered.as_deref() != Some(digest) {
        return Err(format!("PUT manifest: digest {answered:?}, expected {digest}").into());
    }
    Ok(())
}

/// Push a whole image as docker does: per blob `HEAD`, then `POST`/`PATCH`/`PUT` if missing;
/// then the manifest.
pub async fn push_image(http: &Http, repo: &str, tag: &str, image: &Image) -> Result<()> {
    for (blob, digest) in &image.layers {
        if !blob_exists(http, repo, digest).await? {
            push_patch_put(http, repo, blob, digest).await?;
        }
    }
    if !blob_exists(http, repo, &image.config_digest).await? {
        let location = start_upload(http, repo).await?;
        let len = image.config.len() as u64;
        let body = client::full(image.config.clone());
        finish_upload(http, &location, &image.config_digest, len, body).await?;
    }
    put_manifest(http, repo, tag, &image.manifest, &image.manifest_digest).await
}

/// Pull a whole image by tag, as `docker pull` does (manifest, then config and layers), and
/// check every byte against what was pushed.
///
/// The check compares bytes instead of hashing them again: exact, and several times cheaper.
/// The client shares the machine's cores with the registry it measures, so its own work is
/// kept small (zot's `zb` does not check pulled content at all). Returns the bytes received.
pub async fn pull_image(http: &Http, repo: &str, tag: &str, pushed: &Image) -> Result<u64> {
    let response = http
        .expect(
            Method::GET,
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("accept", MANIFEST_ACCEPT)],
            client::empty(),
            StatusCode::OK,
        )
        .await?;
    let answered = client::header(&response, "docker-content-digest");
    let manifest = client::collect(response).await?;
    if manifest != pushed.manifest {
        return Err(format!("manifest {repo}:{tag} differs from the one pushed").into());
    }
    if answered.as_deref() != Some(pushed.manifest_digest.as_str()) {
        return Err(format!(
            "manifest {repo}:{tag}: Docker-Content-Digest {answered:?}, pushed {}",
            pushed.manifest_digest
        )
        .into());
    }
    let config = pull_small_blob(http, repo, &pushed.config_digest).await?;
    if config != pushed.config {
        return Err(format!(
            "config {repo}@{} differs from the one pushed",
            pushed.config_digest
        )
        .into());
    }
    let mut total = (manifest.len() + config.len()) as u64;
    for (blob, digest) in &pushed.layers {
        let response = get_blob(http, repo, digest).await?;
        total += client::drain_matching(response, blob)
            .await
            .map_err(|e| format!("layer {repo}@{digest}: {e}"))?;
    }
    Ok(total)
}

async fn pull_small_blob(http: &Http, repo: &str, digest: &str) -> Result<bytes::Bytes> {
    client::collect(get_blob(http, repo, digest).await?).await
}
