//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::manifest::MAX_MANIFEST_BYTES;
use berth_core::{ErrorCode, Reference, RepositoryName, Tag};
use berth_registry::{Error, Registry};

use super::header_str;
use crate::ApiError;

pub async fn get(
    registry: &Registry,
    name: &RepositoryName,
    reference: &Reference,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let manifest = registry.get_manifest(name, reference).await?;
    serve(manifest, headers, head)
}

/// Answer with `manifest` if the request's `Accept` admits it.
pub fn serve(
    manifest: std::sync::Arc<berth_registry::Manifest>,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    // Clients send one Accept line per media type (docker, skopeo, podman) or one line
    // with a comma-separated list; every line counts.
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if !accepts(accept, &manifest.media_type) {
        return Err(ApiError::new(
            404,
            ErrorCode::ManifestUnknown,
            format!(
                "the manifest is {} but the request's Accept header does not list it",
                manifest.media_type
            ),
        ));
    }
    let len = manifest.content.len();
    let mut response = if head {
        super::content_response(Body::empty())
    } else {
        super::content_response(Body::from(manifest.content.clone()))
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, len.into());
    if let Some(v) = super::content_type(&manifest.media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    super::insert_digest_headers(h, &manifest.digest);
    Ok(response)
}

/// Whether the `Accept` header lines admit `media_type`. No header, a wildcard or plain
/// JSON admits everything; otherwise the type must be listed (as Distribution does for OCI
/// types).
fn accepts<'a>(lines: impl Iterator<Item = &'a str>, media_type: &str) -> bool {
    let mut listed = lines
        .flat_map(|line| line.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .filter(|t| !t.is_empty())
        .peekable();
    if listed.peek().is_none() {
        return true;
    }
    listed.any(|t| t == media_type || t == "*/*" || t == "application/*" || t == "application/json")
}

pub async fn put(
    registry: &Registry,
    name: &RepositoryName,
    reference: &Reference,
    extra_tags: &[Tag],
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let declared_len =
        header_str(headers, header::CONTENT_LENGTH).and_then(|l| l.trim().parse::<usize>().ok());
    if declared_len.is_some_and(|l| l > MAX_MANIFEST_BYTES) {
        return Err(Error::ManifestTooLarge.into());
    }
    let bytes = axum::body::to_bytes(body, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| {
            // to_bytes fails for an oversized body or a broken connection.
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                Error::ManifestTooLarge.into()
            } else {
                ApiError::new(
                    400,
                    ErrorCode::ManifestInvalid,
                    format!("could not read the manifest body: {e}"),
                )
            }
        })?;
    let pushed = registry
        .put_manifest(
            name,
            reference,
            extra_tags,
            header_str(headers, header::CONTENT_TYPE),
            &bytes,
        )
        .await?;
    let location = format!("/v2/{name}/manifests/{}", pushed.digest);
    let mut response = (StatusCode::CREATED, [(header::CONTENT_LENGTH, "0")]).into_response();
    let h = response.headers_mut();
    if let Ok(v) = location.parse() {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = pushed.digest.to_string().parse() {
        h.insert(super::DOCKER_CONTENT_DIGEST, v);
    }
    if let Some(subject) = pushed.subject
        && let Ok(v) = subject.to_string().parse()
    {
        h.insert("oci-subject", v);
    }
    // One header per tag the push created (distribution-spec main); only for `?tag=`, so a
    // plain push by tag answers as registry:2 does.
    if !extra_tags.is_empty() {
        for tag in &pushed.tags {
            if let Ok(v) = tag.as_str().parse() {
                h.append("oci-tag", v);
            }
        }
    }
    Ok(response)
}

pub async fn delete(
    registry: &Registry,
    name: &RepositoryName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    registry.delete_manifest(name, reference).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

#[cfg(test)]
mod tests {
    use berth_core::media_type::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

    fn accepts(lines: &[&str], media_type: &str) -> bool {
        super::accepts(lines.iter().copied(), media_type)
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts(&[], OCI_INDEX));
        assert!(accepts(&["*/*"], OCI_INDEX));
        let listed = format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9");
        assert!(accepts(&[&listed], OCI_MANIFEST));
        assert!(!accepts(&[DOCKER_MANIFEST], OCI_INDEX));
        assert!(accepts(&[""], OCI_INDEX));
        // One line per type with the stored type not first, as docker and skopeo send.
        assert!(accepts(
            &[DOCKER_MANIFEST, OCI_MANIFEST, OCI_INDEX],
            OCI_INDEX
        ));
    }
}
