//! A small HTTP/1.1 client over hyper for the distribution API: pooled keep-alive connections,
//! streaming request bodies, and helpers for upload `Location`s and status checks.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest as _, Sha256};

use crate::Result;
use crate::data::Blob;

pub type ReqBody = BoxBody<Bytes, Infallible>;

/// Manifest media types a pull accepts (both registries then answer the stored type as is).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, ReqBody>,
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// Sent as `Authorization` with every request.
    authorization: Option<String>,
}

pub fn empty() -> ReqBody {
    Empty::new().boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into()).boxed()
}

impl Http {
    pub fn new(base: &str, authorization: Option<&str>) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Http {
            client,
            base: base.trim_end_matches('/').to_owned(),
            authorization: authorization.map(str::to_owned),
        }
    }

    /// An absolute URL for a path (`/v2/...`) or a `Location` (absolute or relative).
    pub fn url(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        }
    }

    pub async fn send(
        &self,
        method: Method,
        location: &str,
        headers: &[(&str, &str)],
        body: ReqBody,
    ) -> Result<Response<Incoming>> {
        let url = self.url(location);
        let mut builder = Request::builder().method(method.clone()).uri(&url);
        // Only to the registry itself: never to a redirect's storage URL.
        if let Some(authorization) = &self.authorization
            && url.starts_with(&self.base)
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            builder = builder.header("authorization", authorization);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(body)?;
        let began = std::time::Instant::now();
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        record_wait(&method, location, began.elapsed());
        Ok(response)
    }

    /// Send, and fail unless the status is `want` (the error carries the answer's body).
    pub async fn expect(
        &self,
        method: Method,
        location: &str,
        headers: &[(&str, &str)],
        body: ReqBody,
        want: StatusCode,
    ) -> Result<Response<Incoming>> {
        let response = self.send(method.clone(), location, headers, body).await?;
        if response.status() == want {
            return Ok(response);
        }
        let status = response.status();
        let text = collect(response).await.unwrap_or_default();
        Err(format!(
            "{method} {location}: expected {want}, got {status}: {}",
            String::from_utf8_lossy(&text)
        )
        .into())
    }
}

/// Time from sending each request to its answer's head, by kind of request: where a
/// workload's time goes (`images` prints it).
static WAITS: std::sync::Mutex<Vec<(&'static str, f64)>> = std::sync::Mutex::new(Vec::new());

fn request_kind(method: &Method, location: &str) -> &'static str {
    let path = location.split('?').next().unwrap_or_default();
    match (method.as_str(), path) {
        ("HEAD", _) => "head",
        ("POST", _) => "post",
        ("PATCH", _) => "patch",
        ("PUT", p) if p.contains("/manifests/") => "put_manifest",
        ("PUT", _) => "put_blob",
        ("GET", p) if p.contains("/manifests/") => "get_manifest",
        ("GET", p) if p.contains("/blobs/") => "get_blob_head",
        _ => "other",
    }
}

fn record_wait(method: &Method, location: &str, waited: Duration) {
    let kind = request_kind(method, location);
    if let Ok(mut waits) = WAITS.lock() {
        waits.push((kind, waited.as_secs_f64()));
    }
}

/// Take the waits recorded so far: kind → seconds, one entry per request.
pub fn take_waits() -> std::collections::BTreeMap<&'static str, Vec<f64>> {
    let mut by_kind = std::collections::BTreeMap::<&'static str, Vec<f64>>::new();
    let waits = WAITS
        .lock()
        .map(|mut w| std::mem::take(&mut *w))
        .unwrap_or_default();
    for (kind, secs) in waits {
        by_kind.entry(kind).or_default().push(secs);
    }
    by_kind
}

/// The whole answer body.
pub async fn collect(response: Response<Incoming>) -> Result<Bytes> {
    Ok(response.into_body().collect().await?.to_bytes())
}

/// Read the answer body to the end, counting bytes and, if asked, hashing them.
pub async fn drain(response: Response<Incoming>, hash: bool) -> Result<(u64, Option<String>)> {
    let mut body = response.into_body();
    let mut hasher = hash.then(Sha256::new);
    let mut count = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            count += data.len() as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(&data);
            }
        }
    }
    Ok((
        count,
        hasher.map(|h| format!("sha256:{}", hex::encode(h.finalize()))),
    ))
}

/// Read the answer body to the end, checking it is exactly `blob`; returns the bytes read.
pub async fn drain_matching(response: Response<Incoming>, blob: &Blob) -> Result<u64> {
    let mut body = response.into_body();
    let mut count = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if !blob.matches_at(count, &data) {
                return Err(format!(
                    "pulled bytes differ from the pushed blob at or after byte {count}"
                )
                .into());
            }
            count += data.len() as u64;
        }
    }
    if count != blob.size {
        return Err(format!("pulled {count} bytes of a {}-byte blob", blob.size).into());
    }
    Ok(count)
}

/// A header as text.
pub fn header(response: &Response<Incoming>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `Location` of an upload answer.
pub fn location(response: &Response<Incoming>) -> Result<String> {
    header(response, "location").ok_or_else(|| "upload answer without Location".into())
}

/// Add `key=value` to a URL's query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// The target of `Link: <url>; rel="next"`, if any (Harbor's `Link` may name a `prev` first).
pub fn next_link(response: &Response<Incoming>) -> Option<String> {
    next_of(&header(response, "link")?)
}

fn next_of(link: &str) -> Option<String> {
    let mut rest = link;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>')? + start;
        let target = &rest[start + 1..end];
        let params = &rest[end + 1..];
        let params = &params[..params.find('<').unwrap_or(params.len())];
        if params.contains("rel=\"next\"") {
            return Some(target.to_owned());
        }
        rest = &rest[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_urls() {
        assert_eq!(with_query("/u/1", "digest", "d"), "/u/1?digest=d");
        assert_eq!(
            with_query("/u/1?_state=x", "digest", "d"),
            "/u/1?_state=x&digest=d"
        );
        assert_eq!(
            next_of("</v2/_catalog?last=a&n=2>; rel=\"next\"").as_deref(),
            Some("/v2/_catalog?last=a&n=2")
        );
        assert_eq!(
            next_of("</a?page=1>; rel=\"prev\" , </a?page=3>; rel=\"next\"").as_deref(),
            Some("/a?page=3")
        );
        assert_eq!(next_of("</a?page=1>; rel=\"prev\""), None);
        let http = Http::new("http://127.0.0.1:1/", None);
        assert_eq!(http.url("/v2/"), "http://127.0.0.1:1/v2/");
        assert_eq!(http.url("http://h/v2/x"), "http://h/v2/x");
    }
}
