//! A client of one upstream registry's `/v2/` API: the ping, the authentication it asks for
//! (a Bearer token from its realm, Basic, or none), manifests with every media type berth
//! serves in `Accept`, and blobs as streams. Redirects are followed (registry:2 on S3
//! answers blob GETs with a 307); credentials are never logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_core::{Digest, media_type};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, StatusCode, header};

/// How berth reaches one upstream.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// Harbor's type: `docker-hub`, `docker-registry`, `harbor`, …
    pub kind: String,
    /// Base URL, e.g. `https://registry-1.docker.io` (no `/v2`).
    pub url: String,
    pub insecure: bool,
    pub ca_cert: Option<String>,
    /// (username, secret); `None`: anonymous.
    pub credential: Option<(String, String)>,
    /// Connecting, and each wait for response headers or the next piece of a body.
    pub timeout: Duration,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("insecure", &self.insecure)
            .field("user", &self.credential.as_ref().map(|c| &c.0))
            .finish_non_exhaustive()
    }
}

/// What went wrong upstream, as a client of berth will be told.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamError {
    #[error("upstream {url} cannot be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("upstream {url} did not answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    /// The upstream's 429, with its message and `Retry-After`, passed through.
    #[error("upstream {url} answered 429 too many requests: {message}")]
    TooManyRequests {
        url: String,
        message: String,
        retry_after: Option<String>,
    },
    #[error("{what} is not in upstream {url}")]
    NotFound { url: String, what: String },
    #[error("upstream {url} refused berth's credentials ({status}): {message}")]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
    },
    #[error("upstream {url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("upstream {url} sent {what}")]
    Invalid { url: String, what: String },
    /// berth's own side of a fetch failed (its spool).
    #[error("{0}")]
    Local(String),
}

impl UpstreamError {
    /// Whether a cached copy should be served instead (the upstream is down or limited),
    /// rather than the answer believed (the content is gone upstream).
    pub fn is_outage(&self) -> bool {
        !matches!(self, UpstreamError::NotFound { .. })
    }
}

/// A manifest as the upstream sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
}

/// A blob's body on its way; its `size` from `Content-Length`.
pub struct BlobBody {
    pub size: u64,
    pub stream: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>,
}

/// Every manifest type berth serves, as `Accept` lines.
const MANIFEST_ACCEPT: &str = concat!(
    "application/vnd.oci.image.manifest.v1+json, ",
    "application/vnd.oci.image.index.v1+json, ",
    "application/vnd.docker.distribution.manifest.v2+json, ",
    "application/vnd.docker.distribution.manifest.list.v2+json"
);

/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

pub struct UpstreamClient {
    config: UpstreamConfig,
    base: String,
    http: reqwest::Client,
    /// Bearer tokens by scope, until they expire.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The upstream asked for Basic once: send it from the start.
    basic: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The registry API's base for a Harbor registry URL: Docker Hub's web address stands for
/// its registry.
fn api_base(kind: &str, url: &str) -> String {
    let url = url.trim_end_matches('/');
    if kind == "docker-hub"
        && matches!(
            url,
            "https://hub.docker.com" | "https://docker.io" | "https://index.docker.io"
        )
    {
        return "https://registry-1.docker.io".into();
    }
    url.to_owned()
}

/// The repository name upstream: Docker Hub keeps official images under `library/`.
pub fn upstream_repository(kind: &str, name: &str) -> String {
    if kind == "docker-hub" && !name.contains('/') {
        format!("library/{name}")
    } else {
        name.to_owned()
    }
}

impl UpstreamClient {
    pub fn new(config: UpstreamConfig) -> Result<UpstreamClient, String> {
        // Tests and tools may build a client before anything installs a provider; the
        // binary installs ring itself, so this only ever picks the same one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .read_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
        if config.insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(pem) = &config.ca_cert {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("the CA certificate is not PEM: {e}"))?
            {
                builder = builder.tls_certs_merge([cert]);
            }
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(UpstreamClient {
            base: api_base(&config.kind, &config.url),
            config,
            http,
            tokens: Mutex::new(HashMap::new()),
            basic: Default::default(),
        })
    }

    pub fn kind(&self) -> &str {
        &self.config.kind
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn error(&self, e: reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            UpstreamError::Timeout {
                url: self.base.clone(),
                seconds: self.config.timeout.as_secs(),
            }
        } else {
            UpstreamError::Unreachable {
                url: self.base.clone(),
                reason: error_chain(&e),
            }
        }
    }

    /// `GET /v2/`: reachable, and the credentials (if any) accepted.
    pub async fn ping(&self) -> Result<(), UpstreamError> {
        let response = self.send(reqwest::Method::GET, "/v2/", None, None).await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            _ => Err(self.status_error(response, "the registry API").await),
        }
    }

    /// `HEAD` a manifest: its digest and media type, without its bytes.
    pub async fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Digest, String), UpstreamError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self
            .send(
                reqwest::Method::HEAD,
                &path,
                Some(repository),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        if !response.status().is_success() {
            return Err(self
                .status_error(response, &format!("{repository}:{reference}"))
                .await);
        }
        let digest = header_text(response.headers(), "docker-content-digest")
            .and_then(|d| d.parse::<Digest>().ok())
            .ok_or_else(|| UpstreamError::Invalid {
                url: self.base.clone(),
                what: "a manifest HEAD without a valid Docker-Content-Digest".into(),
            })?;
        let media_type = header_text(response.headers(), header::CONTENT_TYPE.as_str())
            .unwrap_or_default()
            .to_owned();
        Ok((digest, media_type))
    }

    /// `GET` a manifest; by digest, its bytes are checked against it.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &berth_core::Reference,
    ) -> Result<FetchedManifest, UpstreamError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self
            .send(
                reqwest::Method::GET,
                &path,
                Some(repository),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        if !response.status().is_success() {
            return Err(self
                .status_error(response, &format!("{repository}:{reference}"))
                .await);
        }
        let media_type = header_text(response.headers(), header::CONTENT_TYPE.as_str())
            .map(|t| t.split(';').next().unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        if response
            .content_length()
            .is_some_and(|n| n > berth_core::manifest::MAX_MANIFEST_BYTES as u64)
        {
            return Err(self.invalid("a manifest over berth's size limit"));
        }
        let content = response.bytes().await.map_err(|e| self.error(e))?;
        if content.len() > berth_core::manifest::MAX_MANIFEST_BYTES {
            return Err(self.invalid("a manifest over berth's size limit"));
        }
        let digest = match reference {
            berth_core::Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &content);
                if &actual != expected {
                    return Err(self.invalid(&format!("{actual} for manifest {expected}")));
                }
                actual
            }
            berth_core::Reference::Tag(_) => Digest::of(berth_core::Algorithm::Sha256, &content),
        };
        let media_type = if media_type.is_empty() || media_type == "application/json" {
            // Older registries answer plain JSON: the manifest names its own type.
            serde_json::from_slice::<serde_json::Value>(&content)
                .ok()
                .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| media_type::OCI_MANIFEST.to_owned())
        } else {
            media_type
        };
        Ok(FetchedManifest {
            digest,
            media_type,
            content,
        })
    }

    /// `HEAD` a blob: its size.
    pub async fn head_blob(&self, repository: &str, digest: &Digest) -> Result<u64, UpstreamError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let response = self
            .send(reqwest::Method::HEAD, &path, Some(repository), None)
            .await?;
        if !response.status().is_success() {
            return Err(self.status_error(response, &format!("blob {digest}")).await);
        }
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or_else(|| self.invalid("a blob HEAD without Content-Length"))
    }

    /// `GET` a blob as a stream (not checked here: the caller hashes what it passes on).
    pub async fn get_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<BlobBody, UpstreamError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let response = self
            .send(reqwest::Method::GET, &path, Some(repository), None)
            .await?;
        if !response.status().is_success() {
            return Err(self.status_error(response, &format!("blob {digest}")).await);
        }
        let size = response
            .content_length()
            .ok_or_else(|| self.invalid("a blob without Content-Length"))?;
        let base = self.base.clone();
        let seconds = self.config.timeout.as_secs();
        let stream = response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| {
                if e.is_timeout() {
                    UpstreamError::Timeout {
                        url: base.clone(),
                        seconds,
                    }
                } else {
                    UpstreamError::Unreachable {
                        url: base.clone(),
                        reason: error_chain(&e),
                    }
                }
            })
        });
        Ok(BlobBody {
            size,
            stream: Box::pin(stream),
        })
    }

    pub(crate) fn invalid(&self, what: &str) -> UpstreamError {
        UpstreamError::Invalid {
            url: self.base.clone(),
            what: what.into(),
        }
    }

    /// Send a request with what this upstream wants for `repository`'s pull scope; on a
    /// 401 challenge, authenticate as it says and send it once more.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        repository: Option<&str>,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let scope = repository.map(|r| format!("repository:{r}:pull"));
        let headers: Vec<(header::HeaderName, String)> = accept
            .map(|a| (header::ACCEPT, a.to_owned()))
            .into_iter()
            .collect();
        self.send_with(method, path, scope.as_deref(), &headers, None)
            .await
    }

    /// Send a request for `scope` (a token scope, or several separated by spaces) with
    /// `headers` and a `body` that can be sent twice; on a 401 challenge, authenticate as it
    /// says and send it once more.
    pub(crate) async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        scope: Option<&str>,
        headers: &[(header::HeaderName, String)],
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = self.url(path);
        let request = |authorization: Option<String>| {
            let mut request = self.http.request(method.clone(), &url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            request
        };
        let known = self.known_authorization(scope);
        let response = request(known.clone())
            .send()
            .await
            .map_err(|e| self.error(e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge =
            header_text(response.headers(), header::WWW_AUTHENTICATE.as_str()).map(str::to_owned);
        let Some(challenge) = challenge else {
            return Ok(response);
        };
        let Some(authorization) = self.authenticate(&challenge, scope).await? else {
            return Ok(response);
        };
        if Some(&authorization) == known.as_ref() {
            return Ok(response);
        }
        request(Some(authorization))
            .send()
            .await
            .map_err(|e| self.error(e))
    }

    /// Send a request whose body can be sent once only (a stream), with the authorization
    /// already known for `scope`: an earlier request of the same scope authenticated.
    pub(crate) async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
        scope: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let request = match self.known_authorization(Some(scope)) {
            Some(value) => request.header(header::AUTHORIZATION, value),
            None => request,
        };
        request.send().await.map_err(|e| self.error(e))
    }

    /// The HTTP client, for requests built by [`UpstreamClient::send_once`]'s callers.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// An absolute URL for `path`, or `path` itself if it is one (an upload's `Location`).
    pub(crate) fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub(crate) fn basic_header(&self) -> Option<String> {
        let (user, secret) = self.config.credential.as_ref()?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
        Some(format!("Basic {encoded}"))
    }

    fn known_authorization(&self, scope: Option<&str>) -> Option<String> {
        if self.basic.load(std::sync::atomic::Ordering::Relaxed) {
            return self.basic_header();
        }
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let (token, until) = tokens.get(scope.unwrap_or(""))?;
        (Instant::now() < *until).then(|| format!("Bearer {token}"))
    }

    /// Answer a `WWW-Authenticate` challenge: the header to send, or `None` when there is
    /// nothing to answer it with (Basic asked, no credential).
    async fn authenticate(
        &self,
        challenge: &str,
        scope: Option<&str>,
    ) -> Result<Option<String>, UpstreamError> {
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            self.basic.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(self.basic_header());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let Some(realm) = params.get("realm") else {
            return Err(self.invalid("a Bearer challenge without a realm"));
        };
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = params.get("service") {
            query.push(("service", service));
        }
        // The scope the challenge names wins (a registry may want more than pull); the
        // token is kept under the scope asked for, where the next request looks.
        let asked = scope;
        let scope = params.get("scope").map(String::as_str).or(scope);
        // Several scopes (a mount's source and destination) are several parameters.
        for scope in scope.into_iter().flat_map(|s| s.split(' ')) {
            query.push(("scope", scope));
        }
        let mut url = realm.clone();
        if !query.is_empty() {
            let encoded = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&query)
                .finish();
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&encoded);
        }
        let mut request = self.http.get(&url);
        if let Some((user, secret)) = &self.config.credential {
            request = request.basic_auth(user, Some(secret));
        }
        let response = request.send().await.map_err(|e| self.error(e))?;
        if !response.status().is_success() {
            return Err(self.status_error(response, "a token").await);
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body = response.bytes().await.map_err(|e| self.error(e))?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| self.invalid("a token answer that is not JSON"))?;
        let token = answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| self.invalid("a token answer without a token"))?;
        // The token spec's default lifetime is 60 s.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).max(20));
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                asked.unwrap_or("").to_owned(),
                (token.clone(), Instant::now() + lifetime - TOKEN_MARGIN),
            );
        Ok(Some(format!("Bearer {token}")))
    }

    /// The error a non-success answer stands for, with the upstream's own message.
    pub(crate) async fn status_error(
        &self,
        response: reqwest::Response,
        what: &str,
    ) -> UpstreamError {
        let status = response.status();
        let retry_after =
            header_text(response.headers(), header::RETRY_AFTER.as_str()).map(str::to_owned);
        let body = response.bytes().await.unwrap_or_default();
        let message = error_message(&body).unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned()
        });
        let url = self.base.clone();
        match status.as_u16() {
            404 => UpstreamError::NotFound {
                url,
                what: what.to_owned(),
            },
            429 => UpstreamError::TooManyRequests {
                url,
                message,
                retry_after,
            },
            401 | 403 => UpstreamError::Unauthorized {
                url,
                status: status.as_u16(),
                message,
            },
            status => UpstreamError::Status {
                url,
                status,
                message,
            },
        }
    }
}

pub(crate) fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The first `message` of a distribution error body, or a short plain-text body.
fn error_message(body: &[u8]) -> Option<String> {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let first = value.get("errors")?.get(0)?;
        let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
        let message = first.get("message").and_then(|m| m.as_str()).unwrap_or("");
        return Some(format!("{code} {message}").trim().to_owned());
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    (!text.is_empty() && text.len() <= 200).then(|| text.to_owned())
}

/// A reqwest error with its causes (the TLS or IO reason is in the source chain).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Bearer realm="…",service="…",scope="…"` → (`Bearer`, parameters).
pub fn parse_challenge(value: &str) -> (String, HashMap<String, String>) {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, val.to_owned());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_owned(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_gives_its_realm_service_and_scope() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(params["scope"], "repository:library/nginx:pull");
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (scheme.as_str(), params["realm"].as_str()),
            ("Basic", "Registry Realm")
        );
    }

    #[test]
    fn docker_hub_names_official_images_under_library() {
        assert_eq!(upstream_repository("docker-hub", "nginx"), "library/nginx");
        assert_eq!(
            upstream_repository("docker-hub", "grafana/loki"),
            "grafana/loki"
        );
        assert_eq!(upstream_repository("docker-registry", "nginx"), "nginx");
        assert_eq!(
            api_base("docker-hub", "https://hub.docker.com/"),
            "https://registry-1.docker.io"
        );
        assert_eq!(
            api_base("harbor", "https://harbor.example/"),
            "https://harbor.example"
        );
    }

    #[test]
    fn an_error_body_gives_the_upstreams_message() {
        let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}"#;
        assert_eq!(
            error_message(body).as_deref(),
            Some("TOOMANYREQUESTS pull rate limit")
        );
        assert_eq!(error_message(b"slow down").as_deref(), Some("slow down"));
    }
}
