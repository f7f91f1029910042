//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with `Range` support.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::{Digest, ErrorCode, RepositoryName};
use berth_registry::Registry;

use super::header_str;
use crate::ApiError;

pub async fn get(
    registry: &Registry,
    name: &RepositoryName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let size = registry.blob_size(name, digest).await?;
    let range = match header_str(headers, header::RANGE) {
        None => None,
        Some(value) => Some(parse_range(value, size).ok_or_else(|| {
            ApiError::new(
                416,
                ErrorCode::RangeInvalid,
                format!("range {value:?} is not satisfiable for a blob of {size} bytes"),
            )
            .with_header(header::CONTENT_RANGE, &format!("bytes */{size}"))
        })?),
    };
    let (status, start, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    // Object storage serves the bytes itself; berth has checked the client may read them.
    if !head
        && len > 0
        && registry.redirects_blob_reads()
        && let Some(url) = registry.blob_redirect_url(digest).await?
    {
        return Ok(redirect(&url, digest));
    }
    let mut response = if head || len == 0 {
        super::content_response(Body::empty())
    } else {
        super::content_response(Body::from_stream(
            registry.read_blob(digest, start, len).await?,
        ))
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, len.into());
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    super::insert_digest_headers(h, digest);
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = format!("bytes {}-{}/{size}", start, start + len - 1).parse()
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

/// An uncached blob of a proxy-cache project, from its upstream: the whole blob (a `Range`
/// is not honoured on a miss; a 200 is a valid answer to it), streamed as it arrives.
pub fn fetched(
    digest: &Digest,
    size: u64,
    body: Option<super::berth_storage_stream::ByteStream>,
) -> Response {
    let mut response = match body {
        Some(stream) => Response::new(Body::from_stream(stream)),
        None => Response::new(Body::empty()),
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, size.into());
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    super::insert_digest_headers(h, digest);
    response
}

/// `307` to where the blob's bytes are (the client repeats its `Range` there).
fn redirect(url: &str, digest: &Digest) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let h = response.headers_mut();
    if let Ok(v) = url.parse() {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CONTENT_LENGTH, 0.into());
    // The URL expires: nobody may keep the redirect.
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if let Ok(v) = digest.to_string().parse() {
        h.insert(super::DOCKER_CONTENT_DIGEST, v);
    }
    response
}

/// One `bytes=` range, resolved against the blob's size to an inclusive (start, end).
/// Multi-range requests are not supported (`None`, answered 416).
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 {
                return None;
            }
            (size.saturating_sub(n), size - 1)
        }
        (start, "") => (start.parse().ok()?, size - 1),
        (start, end) => (start.parse().ok()?, end.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

pub async fn delete(
    registry: &Registry,
    name: &RepositoryName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    registry.delete_blob(name, digest).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }
}
