//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, single request, or mount), and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::{Algorithm, Digest, ErrorCode, RepositoryName};
use berth_registry::{ContentRange, Error, Registry};

use super::{body_stream, header_str};
use crate::ApiError;

fn upload_location(name: &RepositoryName, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// `Range: 0-<last byte>` as Distribution answers it (`0-0` for an empty session).
fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// 202/204 answer describing an open session.
fn session_response(status: StatusCode, name: &RepositoryName, id: &str, offset: u64) -> Response {
    let mut response = (status, [(header::CONTENT_LENGTH, "0")]).into_response();
    let h = response.headers_mut();
    for (key, value) in [
        ("location", upload_location(name, id)),
        ("range", range_value(offset)),
        ("docker-upload-uuid", id.to_owned()),
    ] {
        if let Ok(v) = value.parse() {
            h.insert(key, v);
        }
    }
    response
}

/// 201 for a blob that is now in the repository.
fn blob_created(name: &RepositoryName, digest: &Digest) -> Response {
    let mut response = (StatusCode::CREATED, [(header::CONTENT_LENGTH, "0")]).into_response();
    let h = response.headers_mut();
    if let Ok(v) = format!("/v2/{name}/blobs/{digest}").parse() {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = digest.to_string().parse() {
        h.insert(super::DOCKER_CONTENT_DIGEST, v);
    }
    response
}

/// Errors on an open session answer with where the session stands.
fn session_error(error: Error, name: &RepositoryName, id: &str) -> ApiError {
    match error {
        Error::RangeInvalid { offset } => ApiError::from(error)
            .with_header(header::LOCATION, &upload_location(name, id))
            .with_header(header::RANGE, &range_value(offset))
            .with_header(
                "docker-upload-uuid".parse().expect("static header name"),
                id,
            ),
        other => other.into(),
    }
}

fn content_range(headers: &HeaderMap) -> Result<Option<ContentRange>, ApiError> {
    match header_str(headers, header::CONTENT_RANGE) {
        None => Ok(None),
        Some(value) => ContentRange::parse(value).map(Some).ok_or_else(|| {
            ApiError::new(
                416,
                ErrorCode::RangeInvalid,
                format!("Content-Range {value:?} is not of the form <start>-<end>"),
            )
        }),
    }
}

/// What `POST .../blobs/uploads/` asks for.
pub struct StartUpload {
    pub digest: Option<Digest>,
    pub mount: Option<Digest>,
    pub from: Option<RepositoryName>,
    pub digest_algorithm: Algorithm,
}

/// How a `POST` to the uploads endpoint ended.
pub enum Started {
    /// A mount without `from` linked the blob from another repository the caller may pull
    /// (a cross-repository link: counted and audited by the caller).
    Linked(Response),
    /// Anything else: a mount from `from`, a monolithic upload, or a new session.
    Other(Response),
}

/// `may_pull` is the authorizer's answer for other repositories (for a mount without
/// `from`); the handler asks it, never decides.
pub async fn start(
    registry: &Registry,
    name: &RepositoryName,
    request: StartUpload,
    may_pull: &(dyn Fn(&RepositoryName) -> bool + Sync),
    body: Body,
) -> Result<Started, ApiError> {
    let StartUpload {
        digest,
        mount,
        from,
        digest_algorithm,
    } = request;
    if let Some(mount) = &mount {
        let mounted = match &from {
            Some(from) => registry.mount_blob(from, name, mount).await?.map(|_| false),
            None => registry
                .mount_blob_from_any(name, mount, may_pull)
                .await?
                .map(|_| true),
        };
        match mounted {
            Some(true) => return Ok(Started::Linked(blob_created(name, mount))),
            Some(false) => return Ok(Started::Other(blob_created(name, mount))),
            None => {}
        }
    }
    // A mount that cannot be served falls back to an ordinary session (spec).
    if mount.is_none()
        && let Some(digest) = digest
    {
        registry.put_blob(name, &digest, body_stream(body)).await?;
        return Ok(Started::Other(blob_created(name, &digest)));
    }
    let id = registry.start_upload(name, digest_algorithm).await?;
    Ok(Started::Other(session_response(
        StatusCode::ACCEPTED,
        name,
        &id,
        0,
    )))
}

pub async fn status(
    registry: &Registry,
    name: &RepositoryName,
    id: &str,
) -> Result<Response, ApiError> {
    let offset = registry.upload_offset(name, id).await?;
    Ok(session_response(StatusCode::NO_CONTENT, name, id, offset))
}

pub async fn patch(
    registry: &Registry,
    name: &RepositoryName,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let range = content_range(headers)?;
    let offset = registry
        .patch_upload(name, id, range, body_stream(body))
        .await
        .map_err(|e| session_error(e, name, id))?;
    Ok(session_response(StatusCode::ACCEPTED, name, id, offset))
}

pub async fn complete(
    registry: &Registry,
    name: &RepositoryName,
    id: &str,
    digest: &Digest,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let range = content_range(headers)?;
    // Ask the body, not the headers: an HTTP/2 request streams its last chunk with neither
    // Content-Length nor Transfer-Encoding.
    let body = (!axum::body::HttpBody::is_end_stream(&body)).then(|| body_stream(body));
    registry
        .complete_upload(name, id, digest, range, body)
        .await
        .map_err(|e| session_error(e, name, id))?;
    Ok(blob_created(name, digest))
}

pub async fn cancel(
    registry: &Registry,
    name: &RepositoryName,
    id: &str,
) -> Result<Response, ApiError> {
    registry.cancel_upload(name, id).await?;
    Ok((StatusCode::NO_CONTENT, [(header::CONTENT_LENGTH, "0")]).into_response())
}
