//! Content discovery: `_catalog`, `tags/list` and `referrers`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_auth::Visibility;
use berth_core::endpoint::Page;
use berth_core::media_type::OCI_INDEX;
use berth_core::{Digest, RepositoryName};
use berth_registry::{Listing, Registry};
use serde_json::json;

use crate::ApiError;

fn to_json(body: &impl serde::Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(body)
        .map_err(|e| berth_registry::Error::Internal(format!("serializing a listing: {e}")).into())
}

fn json_ok(bytes: impl Into<axum::body::Body>, content_type: &'static str) -> Response {
    let body: axum::body::Body = bytes.into();
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn json_response(body: &impl serde::Serialize, content_type: &'static str) -> Response {
    match to_json(body) {
        Ok(bytes) => json_ok(bytes, content_type),
        Err(e) => e.into_response(),
    }
}

/// The listing's JSON body, serialized on first use and kept with the (cached) page.
fn rendered_response(listing: &Listing, body: &impl serde::Serialize) -> Response {
    let bytes = match listing.rendered.get() {
        Some(bytes) => bytes.clone(),
        None => match to_json(body) {
            Ok(bytes) => listing.rendered.get_or_init(|| bytes.into()).clone(),
            Err(e) => return e.into_response(),
        },
    };
    json_ok(bytes, "application/json")
}

/// `_catalog` body, serialized straight from the listing (no intermediate JSON tree).
#[derive(serde::Serialize)]
struct Catalog<'a> {
    repositories: &'a [String],
}

/// `tags/list` body.
#[derive(serde::Serialize)]
struct TagList<'a> {
    name: &'a RepositoryName,
    tags: &'a [String],
}

/// `Link: </v2/...?n=N&last=LAST>; rel="next"` when another page follows.
fn add_next_link(response: &mut Response, path: &str, listing: &Listing) {
    if let (Some(n), Some(last)) = (listing.next_page_size, listing.items.last()) {
        let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
        if let Ok(v) = HeaderValue::from_str(&format!("<{path}?n={n}&last={last}>; rel=\"next\"")) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
}

/// `_catalog`, showing only the repositories the caller may see.
pub async fn catalog(
    registry: &Registry,
    page: &Page,
    visible: &Visibility,
) -> Result<Response, ApiError> {
    let listing = match visible {
        Visibility::All => registry.catalog(page).await?,
        Visibility::Projects(projects) => {
            let mut projects: Vec<String> = projects.iter().cloned().collect();
            projects.sort_unstable();
            registry.catalog_in(&projects, page).await?
        }
    };
    let mut response = rendered_response(
        &listing,
        &Catalog {
            repositories: &listing.items,
        },
    );
    add_next_link(&mut response, "/v2/_catalog", &listing);
    Ok(response)
}

pub async fn tags(
    registry: &Registry,
    name: &RepositoryName,
    page: &Page,
) -> Result<Response, ApiError> {
    let listing = registry.list_tags(name, page).await?;
    let mut response = rendered_response(
        &listing,
        &TagList {
            name,
            tags: &listing.items,
        },
    );
    add_next_link(&mut response, &format!("/v2/{name}/tags/list"), &listing);
    Ok(response)
}

pub async fn referrers(
    registry: &Registry,
    name: &RepositoryName,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Response, ApiError> {
    let found = registry.referrers(name, subject, artifact_type).await?;
    let manifests: Vec<_> = found
        .into_iter()
        .map(|r| {
            let mut descriptor =
                json!({ "mediaType": r.media_type, "digest": r.digest, "size": r.size });
            if let Some(t) = r.artifact_type {
                descriptor["artifactType"] = json!(t);
            }
            if let Some(a) = r.annotations {
                descriptor["annotations"] = json!(a);
            }
            descriptor
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut response = json_response(&index, OCI_INDEX);
    if artifact_type.is_some() {
        response.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}
