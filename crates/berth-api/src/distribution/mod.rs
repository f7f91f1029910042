//! The OCI distribution API under `/v2/`.
//!
//! Every request goes through [`dispatch`]: parse the path into a typed `Endpoint` (once),
//! authenticate, authorize the endpoint's required accesses, then call the one handler for
//! that endpoint. Every response carries `Docker-Distribution-API-Version: registry/2.0`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_auth::{Challenge, Decision, Principal};
use berth_core::{Endpoint, ErrorCode, RepositoryName};
use berth_metrics::EndpointClass;

use crate::audit::Audited;
use crate::credentials::{Peer, authenticate, unauthorized};
use crate::{ApiError, AppState};

mod blobs;
mod listing;
mod manifests;
mod uploads;

pub async fn dispatch(State(state): State<std::sync::Arc<AppState>>, request: Request) -> Response {
    let mut response = match route(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response.headers_mut().insert(
        const { header::HeaderName::from_static("docker-distribution-api-version") },
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn route(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let peer = Peer::of(&parts.extensions);
    // Parsing is pure; it comes first only so that the request's metrics know its class.
    let mut parsed = Endpoint::parse(parts.method.as_str(), parts.uri.path(), parts.uri.query());
    if let Ok(endpoint) = &mut parsed {
        // Before authorization: a mirrored pull is decided on the repository it reads.
        mirror(state, endpoint, parts.uri.query()).await?;
    }
    crate::observe::classify(match &parsed {
        Ok(endpoint) => endpoint_class(endpoint),
        Err(_) => EndpointClass::V2Invalid,
    });
    let principal = match authenticate(state, &parts, peer).await {
        Ok(principal) => principal,
        Err(error) => return Err(refuse_after_reading(body, error).await),
    };
    // Credentials come first, as in registry:2: a client without them learns nothing,
    // not even that its path was malformed.
    let required = match &parsed {
        Ok(endpoint) => endpoint.required_access(),
        Err(error) => error.required_access(),
    };
    match state
        .auth
        .decide(&principal, peer.is_loopback, &required)
        .await
    {
        Decision::Allow => {}
        Decision::Challenge(challenge) => {
            let detail = match &challenge {
                Challenge::Bearer {
                    error: Some("insufficient_scope"),
                    ..
                } => "the token does not grant this access: request one that does",
                _ => "",
            };
            let error = unauthorized(state, &parts, &challenge, detail);
            return Err(refuse_after_reading(body, error).await);
        }
        Decision::Deny(reason) => {
            berth_metrics::AUTH.denied.inc();
            if let Some(audited) = parsed.as_ref().ok().and_then(|e| Audited::of(state, e)) {
                audited.denied(state, &parts, peer, &principal, &reason);
            }
            let error = ApiError::new(403, ErrorCode::Denied, reason.clone()).with_message(reason);
            return Err(refuse_after_reading(body, error).await);
        }
    }
    let endpoint = parsed?;
    if let Some(refusal) = refuse_push_into_proxy(state, &endpoint).await {
        return Err(refuse_after_reading(body, refusal).await);
    }
    let audited = Audited::of(state, &endpoint);
    let result = handle(state, &principal, peer, &parts.headers, endpoint, body).await;
    if let Some(audited) = audited {
        audited.finish(state, &parts, peer, &principal, &result);
    }
    result
}

/// The metrics label of an endpoint.
fn endpoint_class(endpoint: &Endpoint) -> EndpointClass {
    match endpoint {
        Endpoint::Base => EndpointClass::Base,
        Endpoint::Catalog { .. } => EndpointClass::Catalog,
        Endpoint::ListTags { .. } => EndpointClass::TagsList,
        Endpoint::Referrers { .. } => EndpointClass::Referrers,
        Endpoint::GetManifest { head: false, .. } => EndpointClass::ManifestGet,
        Endpoint::GetManifest { head: true, .. } => EndpointClass::ManifestHead,
        Endpoint::PutManifest { .. } => EndpointClass::ManifestPut,
        Endpoint::DeleteManifest { .. } => EndpointClass::ManifestDelete,
        Endpoint::GetBlob { head: false, .. } => EndpointClass::BlobGet,
        Endpoint::GetBlob { head: true, .. } => EndpointClass::BlobHead,
        Endpoint::DeleteBlob { .. } => EndpointClass::BlobDelete,
        Endpoint::StartUpload { .. } => EndpointClass::UploadStart,
        Endpoint::UploadStatus { .. } => EndpointClass::UploadStatus,
        Endpoint::PatchUpload { .. } => EndpointClass::UploadPatch,
        Endpoint::CompleteUpload { .. } => EndpointClass::UploadComplete,
        Endpoint::CancelUpload { .. } => EndpointClass::UploadCancel,
    }
}

/// Refused bodies at most this long are read before the refusal is sent.
const REFUSED_BODY_READ: usize = 256 * 1024;

/// Read (and drop) a small body before refusing its request. A client, or a proxy that
/// streams bodies (nginx with `proxy_request_buffering off`), still sending it when the
/// answer comes and the connection closes sees a broken pipe (a 502 at the proxy) instead of
/// the 401 that tells it to authenticate. A larger body is not waited for.
async fn refuse_after_reading(body: Body, error: ApiError) -> ApiError {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut read = 0usize;
    let draining = async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > REFUSED_BODY_READ {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), draining).await;
    error
}

/// Transparent mirroring: a pull that a mirror takes (see [`berth_proxy::Mirrors`]) reads
/// the mirror project's repository instead, with containerd's `?ns=` naming the upstream.
async fn mirror(
    state: &AppState,
    endpoint: &mut Endpoint,
    query: Option<&str>,
) -> Result<(), ApiError> {
    let Some(proxy) = &state.proxy else {
        return Ok(());
    };
    let Some(name) = endpoint.pulled_repository_mut() else {
        return Ok(());
    };
    let namespace = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "ns")
            .map(|(_, v)| v.into_owned())
    });
    if let Some(target) = proxy
        .mirror_target(name, namespace.as_deref())
        .await
        .map_err(|e| proxy_error(e, ErrorCode::NameUnknown))?
    {
        *name = target;
    }
    Ok(())
}

/// A proxy-cache project holds only what its upstream has: pushes into it are refused
/// (Harbor does the same), for every caller, before any handler runs.
async fn refuse_push_into_proxy(state: &AppState, endpoint: &Endpoint) -> Option<ApiError> {
    let name = match endpoint {
        Endpoint::StartUpload { name, .. }
        | Endpoint::PatchUpload { name, .. }
        | Endpoint::CompleteUpload { name, .. }
        | Endpoint::PutManifest { name, .. } => name,
        _ => return None,
    };
    let proxy = state.proxy.as_ref()?;
    match proxy.route(name).await {
        Ok(None) => None,
        Ok(Some(route)) => {
            let project = name.as_str().split('/').next().unwrap_or_default();
            let reason = format!(
                "project {project} is a proxy cache of {}: pushes into it are refused",
                route.client.base()
            );
            Some(ApiError::new(403, ErrorCode::Denied, reason.clone()).with_message(reason))
        }
        Err(e) => Some(proxy_error(e, ErrorCode::NameUnknown)),
    }
}

/// The proxy cache and the route of `name`, if its project is a proxy cache.
async fn proxied(
    state: &AppState,
    name: &RepositoryName,
) -> Result<Option<(std::sync::Arc<berth_proxy::ProxyCache>, berth_proxy::Route)>, ApiError> {
    let Some(proxy) = &state.proxy else {
        return Ok(None);
    };
    let route = proxy
        .route(name)
        .await
        .map_err(|e| proxy_error(e, ErrorCode::NameUnknown))?;
    Ok(route.map(|route| (proxy.clone(), route)))
}

/// A proxy cache's failure as the client sees it: the upstream's problem named (its 429
/// passed through with `Retry-After`). Anything else the upstream did (not found, down,
/// timed out, refused berth's credentials) is a 404 with `not_found`'s code and the
/// upstream's problem as the message: docker and containers/image show an error body's
/// message only for a 4xx (a 503 prints as "unexpected HTTP status"), and to the client
/// the content is indeed not available here.
fn proxy_error(error: berth_proxy::ProxyError, not_found: ErrorCode) -> ApiError {
    use berth_proxy::{ProxyError, UpstreamError};
    let message = error.to_string();
    match error {
        ProxyError::Registry(e) => e.into(),
        ProxyError::Upstream(UpstreamError::TooManyRequests { retry_after, .. }) => {
            let error = ApiError::new(429, ErrorCode::Toomanyrequests, message.clone())
                .with_message(message);
            match retry_after {
                Some(after) => error.with_header(header::RETRY_AFTER, &after),
                None => error,
            }
        }
        ProxyError::Upstream(_) | ProxyError::Config(..) => {
            ApiError::new(404, not_found, message.clone()).with_message(message)
        }
    }
}

/// The one handler of each endpoint.
async fn handle(
    state: &AppState,
    principal: &Principal,
    peer: Peer,
    headers: &HeaderMap,
    endpoint: Endpoint,
    body: Body,
) -> Result<Response, ApiError> {
    let registry = &state.registry;
    match endpoint {
        Endpoint::Base => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response()),
        Endpoint::Catalog { page } => {
            let visible = state.auth.visibility(principal).await;
            listing::catalog(registry, &page, &visible).await
        }
        Endpoint::ListTags { name, page } => listing::tags(registry, &name, &page).await,
        Endpoint::Referrers {
            name,
            digest,
            artifact_type,
        } => listing::referrers(registry, &name, &digest, artifact_type.as_deref()).await,
        Endpoint::GetManifest {
            name,
            reference,
            head,
        } => {
            if let Some((proxy, route)) = proxied(state, &name).await? {
                let manifest = proxy
                    .manifest(&route, &name, &reference)
                    .await
                    .map_err(|e| proxy_error(e, ErrorCode::ManifestUnknown))?;
                return manifests::serve(manifest, headers, head);
            }
            manifests::get(registry, &name, &reference, headers, head).await
        }
        Endpoint::PutManifest {
            name,
            reference,
            tags,
        } => manifests::put(registry, &name, &reference, &tags, headers, body).await,
        Endpoint::DeleteManifest { name, reference } => {
            manifests::delete(registry, &name, &reference).await
        }
        Endpoint::GetBlob { name, digest, head } => {
            if let Some((proxy, route)) = proxied(state, &name).await? {
                match registry.blob_size(&name, &digest).await {
                    // Cached: served like any blob.
                    Ok(_) => {}
                    Err(berth_registry::Error::BlobUnknown(_)) => {
                        let blob_error = |e| proxy_error(e, ErrorCode::BlobUnknown);
                        if head {
                            let size = proxy
                                .blob_size(&route, &name, &digest)
                                .await
                                .map_err(blob_error)?;
                            return Ok(blobs::fetched(&digest, size, None));
                        }
                        let (size, stream) = proxy
                            .fetch_blob(&route, &name, &digest)
                            .await
                            .map_err(blob_error)?;
                        return Ok(blobs::fetched(&digest, size, Some(stream)));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match blobs::get(registry, &name, &digest, headers, head).await {
                Err(e) if head && e.is_blob_unknown() && state.cross_repository_links => {
                    link_known_blob(state, principal, peer, &name, &digest).await?;
                    blobs::get(registry, &name, &digest, headers, head).await
                }
                answer => answer,
            }
        }
        Endpoint::DeleteBlob { name, digest } => blobs::delete(registry, &name, &digest).await,
        Endpoint::StartUpload {
            name,
            digest,
            mount,
            from,
            digest_algorithm,
        } => {
            // A mount without `from` is a cross-repository link, like a pusher's `HEAD`: it
            // may take the blob from any repository the caller may pull (the authorizer
            // says which), and only while such links are switched on.
            let visible = if mount.is_some() && from.is_none() && state.cross_repository_links {
                Some(state.auth.visibility(principal).await)
            } else {
                None
            };
            let may_pull = |repository: &RepositoryName| {
                visible.as_ref().is_some_and(|v| v.may_pull(repository))
            };
            let linked = mount.clone();
            let request = uploads::StartUpload {
                digest,
                mount,
                from,
                digest_algorithm,
            };
            match uploads::start(registry, &name, request, &may_pull, body).await? {
                uploads::Started::Linked(response) => {
                    if let Some(digest) = &linked {
                        record_link(state, principal, &name, digest);
                    }
                    Ok(response)
                }
                uploads::Started::Other(response) => Ok(response),
            }
        }
        Endpoint::UploadStatus { name, id } => uploads::status(registry, &name, &id).await,
        Endpoint::PatchUpload { name, id } => {
            uploads::patch(registry, &name, &id, headers, body).await
        }
        Endpoint::CompleteUpload { name, id, digest } => {
            uploads::complete(registry, &name, &id, &digest, headers, body).await
        }
        Endpoint::CancelUpload { name, id } => uploads::cancel(registry, &name, &id).await,
    }
}

/// A pusher's `HEAD` of a blob this repository does not hold: link it from another
/// repository, so the client skips the upload — only if the caller may push here and may
/// pull a repository that holds it (the authorizer says both). Otherwise the blob stays
/// unknown, and the answer is the same 404 whether it exists elsewhere or not.
async fn link_known_blob(
    state: &AppState,
    principal: &Principal,
    peer: Peer,
    name: &RepositoryName,
    digest: &berth_core::Digest,
) -> Result<(), ApiError> {
    let unknown = || ApiError::from(berth_registry::Error::BlobUnknown(digest.clone()));
    let push = [berth_core::Access {
        repository: Some(name.clone()),
        action: berth_core::Action::Push,
    }];
    if !matches!(
        state.auth.decide(principal, peer.is_loopback, &push).await,
        Decision::Allow
    ) {
        return Err(unknown());
    }
    let visible = state.auth.visibility(principal).await;
    let may_pull = |repository: &RepositoryName| visible.may_pull(repository);
    if state
        .registry
        .mount_blob_from_any(name, digest, &may_pull)
        .await?
        .is_none()
    {
        return Err(unknown());
    }
    record_link(state, principal, name, digest);
    Ok(())
}

/// Count a cross-repository link (an upload saved) and put it in the audit log.
fn record_link(
    state: &AppState,
    principal: &Principal,
    name: &RepositoryName,
    digest: &berth_core::Digest,
) {
    berth_metrics::STORAGE.blob_links.inc();
    if state.audit.is_on() {
        let event = berth_audit::AuditEvent::new(
            crate::audit::username(principal).into_owned(),
            berth_audit::Client::Unknown,
            berth_audit::Operation::Create,
            berth_audit::ResourceType::Blob,
            format!("{name}@{digest}"),
        );
        state.audit.record(event);
    }
}

/// Turn a request body into the byte stream the stores take.
fn body_stream(body: Body) -> berth_storage_stream::ByteStream {
    use futures_util::TryStreamExt;
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

/// `berth_storage::ByteStream`, named without depending on the storage crate.
mod berth_storage_stream {
    pub type ByteStream = futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;
}

/// `Docker-Content-Digest`.
pub(crate) const DOCKER_CONTENT_DIGEST: header::HeaderName =
    header::HeaderName::from_static("docker-content-digest");

/// The headers of a response that answers with content: a map sized for all of them (the
/// handler's, the version header and the request id), so none of them makes it grow.
fn content_response(body: Body) -> Response {
    let mut response = Response::new(body);
    *response.headers_mut() = HeaderMap::with_capacity(8);
    response
}

/// `Docker-Content-Digest` and `ETag` (the digest quoted), both views of one buffer.
fn insert_digest_headers(h: &mut HeaderMap, digest: &berth_core::Digest) {
    let algorithm = digest.algorithm().as_str();
    let mut quoted = Vec::with_capacity(algorithm.len() + digest.hex().len() + 3);
    quoted.push(b'"');
    quoted.extend_from_slice(algorithm.as_bytes());
    quoted.push(b':');
    quoted.extend_from_slice(digest.hex().as_bytes());
    quoted.push(b'"');
    let quoted = axum::body::Bytes::from(quoted);
    if let Ok(v) = HeaderValue::from_maybe_shared(quoted.slice(1..quoted.len() - 1)) {
        h.insert(DOCKER_CONTENT_DIGEST, v);
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(quoted) {
        h.insert(header::ETAG, v);
    }
}

/// `Content-Type` for a media type: the common ones without an allocation.
fn content_type(media_type: &str) -> Option<HeaderValue> {
    use berth_core::media_type::*;
    let known = [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ];
    match known.iter().find(|known| **known == media_type) {
        Some(known) => Some(HeaderValue::from_static(known)),
        None => media_type.parse().ok(),
    }
}

/// Header value as text, if present and valid.
fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
