//! The rest of a remote registry's `/v2/` API, for replication: listing repositories, tags
//! and referrers, and writing — blob uploads (streamed, never buffered), cross-repository
//! mounts, manifest pushes and deletes. Authentication is the upstream client's (a token of
//! `pull,push` scope, Basic, or none).

use berth_core::{Digest, media_type};
use bytes::Bytes;
use futures_util::Stream;
use http::{StatusCode, header};

use crate::upstream::{UpstreamClient, UpstreamError, header_text};

/// A manifest that refers to another (Harbor's accessories, OCI's referrers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReferrer {
    pub digest: Digest,
    pub media_type: String,
}

/// What asking to mount a blob gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The blob is in the repository now.
    Mounted,
    /// The registry would not mount it and opened an upload instead, at this location.
    Upload(String),
}

/// Entries per page asked for when listing (registries may answer fewer).
const PAGE: usize = 1000;
/// Pages followed at most: a registry whose `Link` never ends is not followed forever.
const MAX_PAGES: usize = 10_000;

fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The path and query of the next page in a `Link: <…>; rel="next"` header.
fn next_link(value: &str) -> Option<String> {
    let (target, params) = value.split_once(';')?;
    params.contains("rel=\"next\"").then_some(())?;
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    Some(match target.find("/v2/") {
        Some(at) if target.starts_with("http") => target[at..].to_owned(),
        _ => target.to_owned(),
    })
}

impl UpstreamClient {
    /// Every repository the remote's catalog lists (`GET /v2/_catalog`, page by page).
    pub async fn catalog(&self) -> Result<Vec<String>, UpstreamError> {
        self.list_pages(
            &format!("/v2/_catalog?n={PAGE}"),
            "registry:catalog:*",
            "repositories",
            "the catalog",
        )
        .await
    }

    /// A repository's tags; none if the remote does not have it.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, UpstreamError> {
        match self
            .list_pages(
                &format!("/v2/{repository}/tags/list?n={PAGE}"),
                &pull_scope(repository),
                "tags",
                &format!("the tags of {repository}"),
            )
            .await
        {
            Err(UpstreamError::NotFound { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    async fn list_pages(
        &self,
        first: &str,
        scope: &str,
        field: &str,
        what: &str,
    ) -> Result<Vec<String>, UpstreamError> {
        let mut all = Vec::new();
        let mut path = Some(first.to_owned());
        for _ in 0..MAX_PAGES {
            let Some(current) = path.take() else { break };
            let response = self
                .send_with(reqwest::Method::GET, &current, Some(scope), &[], None)
                .await?;
            if !response.status().is_success() {
                return Err(self.status_error(response, what).await);
            }
            path = header_text(response.headers(), header::LINK.as_str()).and_then(next_link);
            let body = response.bytes().await.map_err(|e| self.error(e))?;
            let value: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| self.invalid(&format!("{what} not as JSON")))?;
            // A registry answers `null` for a repository without tags.
            for name in value
                .get(field)
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(name) = name.as_str() {
                    all.push(name.to_owned());
                }
            }
        }
        Ok(all)
    }

    /// The manifests whose subject is `subject`: from the referrers API, or (a registry
    /// without it, registry:2) from the tag schema's index `sha256-<hex>`.
    pub async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
    ) -> Result<Vec<RemoteReferrer>, UpstreamError> {
        let scope = pull_scope(repository);
        let path = format!("/v2/{repository}/referrers/{subject}");
        let accept = [(header::ACCEPT, media_type::OCI_INDEX.to_owned())];
        let response = self
            .send_with(reqwest::Method::GET, &path, Some(&scope), &accept, None)
            .await?;
        // registry:2 answers 404 for the path; an OCI 1.1 registry answers an index.
        let is_index = header_text(response.headers(), header::CONTENT_TYPE.as_str())
            .is_some_and(|t| t.starts_with(media_type::OCI_INDEX));
        let body = if response.status().is_success() && is_index {
            response.bytes().await.map_err(|e| self.error(e))?
        } else {
            // The tag schema: `<algorithm>-<hex>` (the digest with `:` made `-`).
            let tag = subject.to_string().replacen(':', "-", 1);
            let Ok(reference) = tag.parse() else {
                return Ok(Vec::new());
            };
            match self.get_manifest(repository, &reference).await {
                Ok(fetched) => fetched.content,
                Err(UpstreamError::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        };
        Ok(index_entries(&body))
    }

    /// Whether the repository has the blob.
    pub async fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool, UpstreamError> {
        match self.head_blob_for_push(repository, digest).await {
            Ok(()) => Ok(true),
            Err(UpstreamError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn head_blob_for_push(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<(), UpstreamError> {
        // Asked with the push scope: the token fetched here serves the upload that follows.
        let path = format!("/v2/{repository}/blobs/{digest}");
        let scope = push_scope(repository);
        let response = self
            .send_with(reqwest::Method::HEAD, &path, Some(&scope), &[], None)
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(response, &format!("blob {digest}")).await)
        }
    }

    /// Open an upload, mounting the blob from `from` when given and the registry agrees.
    pub async fn start_upload(
        &self,
        repository: &str,
        mount: Option<(&Digest, &str)>,
    ) -> Result<Mount, UpstreamError> {
        let mut path = format!("/v2/{repository}/blobs/uploads/");
        let mut scope = push_scope(repository);
        if let Some((digest, from)) = mount {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from)
                .finish();
            path = format!("{path}?{query}");
            scope = format!("{scope} {}", pull_scope(from));
        }
        let length = [(header::CONTENT_LENGTH, "0".to_owned())];
        let response = self
            .send_with(
                reqwest::Method::POST,
                &path,
                Some(&scope),
                &length,
                Some(Bytes::new()),
            )
            .await?;
        match response.status() {
            StatusCode::CREATED if mount.is_some() => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => header_text(response.headers(), header::LOCATION.as_str())
                .map(|l| Mount::Upload(l.to_owned()))
                .ok_or_else(|| self.invalid("an upload without a Location")),
            _ => Err(self
                .status_error(response, &format!("an upload to {repository}"))
                .await),
        }
    }

    /// Finish the upload at `location` with the whole blob, streamed as it comes.
    pub async fn finish_upload<S>(
        &self,
        repository: &str,
        location: &str,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<(), UpstreamError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let mut url = self.url(location);
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("digest=");
        url.push_str(&digest.to_string());
        let request = self
            .http()
            .put(&url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body));
        let response = self.send_once(request, &push_scope(repository)).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(response, &format!("blob {digest}")).await)
        }
    }

    /// Push a manifest under `reference` (a tag or its digest). Whether the registry
    /// processed its subject (it answered `OCI-Subject`).
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        content: Bytes,
    ) -> Result<bool, UpstreamError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let headers = [(header::CONTENT_TYPE, media_type.to_owned())];
        let response = self
            .send_with(
                reqwest::Method::PUT,
                &path,
                Some(&push_scope(repository)),
                &headers,
                Some(content),
            )
            .await?;
        if response.status().is_success() {
            Ok(response.headers().contains_key("oci-subject"))
        } else {
            Err(self
                .status_error(response, &format!("manifest {repository}:{reference}"))
                .await)
        }
    }

    /// Delete a manifest by digest; done if it is not there.
    pub async fn delete_manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<(), UpstreamError> {
        let path = format!("/v2/{repository}/manifests/{digest}");
        let scope = format!("repository:{repository}:delete,pull,push");
        let response = self
            .send_with(reqwest::Method::DELETE, &path, Some(&scope), &[], None)
            .await?;
        match response.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self
                .status_error(response, &format!("deleting {repository}@{digest}"))
                .await),
        }
    }

    /// Make sure a Harbor (or berth) remote has project `project`, creating it (private)
    /// through its `/api/v2.0` if not: Harbor keeps repositories in projects.
    pub async fn ensure_project(&self, project: &str) -> Result<(), UpstreamError> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("project_name", project)
            .finish();
        let basic: Vec<(header::HeaderName, String)> = self
            .basic_header()
            .map(|value| (header::AUTHORIZATION, value))
            .into_iter()
            .collect();
        let response = self
            .send_with(
                reqwest::Method::HEAD,
                &format!("/api/v2.0/projects?{query}"),
                None,
                &basic,
                None,
            )
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        let body = serde_json::json!({"project_name": project, "metadata": {"public": "false"}});
        let mut headers = basic;
        headers.push((header::CONTENT_TYPE, "application/json".to_owned()));
        let response = self
            .send_with(
                reqwest::Method::POST,
                "/api/v2.0/projects",
                None,
                &headers,
                Some(Bytes::from(body.to_string())),
            )
            .await?;
        match response.status() {
            // 409: another run created it meanwhile.
            s if s.is_success() || s == StatusCode::CONFLICT => Ok(()),
            _ => Err(self
                .status_error(response, &format!("creating project {project}"))
                .await),
        }
    }
}

/// The `manifests` of an image index: digest and media type of each.
pub fn index_entries(body: &[u8]) -> Vec<RemoteReferrer> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    value
        .get("manifests")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            Some(RemoteReferrer {
                digest: entry.get("digest")?.as_str()?.parse().ok()?,
                media_type: entry
                    .get("mediaType")
                    .and_then(|t| t.as_str())
                    .unwrap_or(media_type::OCI_MANIFEST)
                    .to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_header_gives_the_next_page() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r.example/v2/a/tags/list?last=x&n=9>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=9")
        );
        assert_eq!(next_link(r#"</v2/_catalog?last=b>; rel="prev""#), None);
    }

    #[test]
    fn an_index_lists_its_manifests() {
        let digest = Digest::of(berth_core::Algorithm::Sha256, b"x");
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":1}},{{"digest":"bad"}}]}}"#
        );
        assert_eq!(
            index_entries(body.as_bytes()),
            vec![RemoteReferrer {
                digest,
                media_type: media_type::OCI_MANIFEST.into()
            }]
        );
        assert!(index_entries(b"not json").is_empty());
    }
}
