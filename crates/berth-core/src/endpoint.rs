//! Parsing a `/v2/` request (method, path, query) into a typed [`Endpoint`].
//!
//! Repository names contain slashes, so no router pattern can match them; the path is parsed
//! here once, from its end, and everything after this point works with typed values. The
//! endpoint's [`Endpoint::required_access`] is the only input to authorization.
//!
//! # Malformed references and digests
//!
//! One rule, as the released conformance suite (v1.1.1) and registry:2 expect:
//!
//! - A request that *reads or deletes* something named by a reference that cannot exist (a
//!   manifest reference that is neither a valid tag nor a valid digest, a blob digest that
//!   does not parse) is **not found**: 404 `MANIFEST_UNKNOWN` or `BLOB_UNKNOWN`, exactly as
//!   for a well-formed name nobody pushed. It still needs the access the valid request would
//!   need ([`EndpointError::required_access`]), so authorization runs first and a caller
//!   without access learns nothing.
//! - A request that *creates* something under a bad name is the client's mistake: 400 with
//!   `TAG_INVALID` (a manifest PUT's tag, or a `?tag=`) or `DIGEST_INVALID` (a manifest PUT
//!   by digest, `?digest=` on an upload), before anything is stored.
//! - The referrers listing takes a subject digest as input rather than naming stored
//!   content, so a malformed one is 400 `DIGEST_INVALID`.

use std::str::FromStr;

use crate::digest::{Algorithm, Digest, DigestError};
use crate::error::ErrorCode;
use crate::name::{NameError, RepositoryName, Tag};

/// What a path names that cannot exist (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    Manifest,
    Blob,
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            s.parse()
                .map(Reference::Digest)
                .map_err(EndpointError::Digest)
        } else {
            s.parse()
                .map(Reference::Tag)
                .map_err(|e| EndpointError::Tag(e.to_string()))
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// Pagination parameters of the catalog and tag listings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub n: Option<usize>,
    pub last: Option<String>,
}

/// Every operation of the distribution API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v2/`: API version check.
    Base,
    Catalog {
        page: Page,
    },
    ListTags {
        name: RepositoryName,
        page: Page,
    },
    GetManifest {
        name: RepositoryName,
        reference: Reference,
        head: bool,
    },
    /// `PUT .../manifests/<reference>`, with the extra tags of `?tag=` (only with a digest
    /// reference; distribution-spec main, end-7b).
    PutManifest {
        name: RepositoryName,
        reference: Reference,
        tags: Vec<Tag>,
    },
    DeleteManifest {
        name: RepositoryName,
        reference: Reference,
    },
    GetBlob {
        name: RepositoryName,
        digest: Digest,
        head: bool,
    },
    DeleteBlob {
        name: RepositoryName,
        digest: Digest,
    },
    /// `POST .../blobs/uploads/`, optionally a single-request upload (`digest`) or a
    /// cross-repository mount (`mount`, `from`).
    /// `from` is optional: without it, a mount may take the blob from any repository the
    /// caller may pull (spec: "The registry MAY treat the from parameter as optional").
    /// `digest_algorithm` (end-4c) is what a session hashes with (sha256 if not given).
    StartUpload {
        name: RepositoryName,
        digest: Option<Digest>,
        mount: Option<Digest>,
        from: Option<RepositoryName>,
        digest_algorithm: Algorithm,
    },
    UploadStatus {
        name: RepositoryName,
        id: String,
    },
    PatchUpload {
        name: RepositoryName,
        id: String,
    },
    CompleteUpload {
        name: RepositoryName,
        id: String,
        digest: Digest,
    },
    CancelUpload {
        name: RepositoryName,
        id: String,
    },
    Referrers {
        name: RepositoryName,
        digest: Digest,
        artifact_type: Option<String>,
    },
}

/// What an endpoint needs to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
    /// List every repository (`_catalog`).
    Catalog,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Catalog => "catalog",
        }
    }

    /// Whether the action changes the registry.
    pub fn writes(self) -> bool {
        matches!(self, Action::Push | Action::Delete)
    }
}

/// One permission an endpoint requires: an action, on a repository where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub repository: Option<RepositoryName>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("invalid digest: {0}")]
    Digest(DigestError),
    #[error("{0}")]
    Tag(String),
    #[error("query parameter {param}: {reason}")]
    Query { param: &'static str, reason: String },
    /// A read or delete of a manifest or blob under a reference that cannot exist.
    #[error("{reference:?} is not a valid {}, so nothing is stored under it", match kind { Unknown::Manifest => "tag or digest", Unknown::Blob => "digest" })]
    Unknown {
        kind: Unknown,
        reference: String,
        /// What the same request with a valid reference would need.
        access: Access,
    },
}

impl EndpointError {
    /// The spec's error code and status for a request that does not parse.
    pub fn code_and_status(&self) -> (ErrorCode, u16) {
        match self {
            EndpointError::NotFound => (ErrorCode::NameUnknown, 404),
            EndpointError::MethodNotAllowed => (ErrorCode::Unsupported, 405),
            EndpointError::Name(_) => (ErrorCode::NameInvalid, 400),
            EndpointError::Digest(_) => (ErrorCode::DigestInvalid, 400),
            EndpointError::Tag(_) => (ErrorCode::TagInvalid, 400),
            EndpointError::Query { .. } => (ErrorCode::Unsupported, 400),
            EndpointError::Unknown {
                kind: Unknown::Manifest,
                ..
            } => (ErrorCode::ManifestUnknown, 404),
            EndpointError::Unknown {
                kind: Unknown::Blob,
                ..
            } => (ErrorCode::BlobUnknown, 404),
        }
    }

    /// What the caller must be allowed before it is told this error: nothing for a path
    /// that names no endpoint, the valid request's access for a reference that cannot
    /// exist (so a 404 is never an answer to someone who may not look).
    pub fn required_access(&self) -> Vec<Access> {
        match self {
            EndpointError::Unknown { access, .. } => vec![access.clone()],
            _ => Vec::new(),
        }
    }
}

impl Endpoint {
    /// Parse a request. `path` is the full request path (starting `/v2/`), still
    /// percent-encoded as received; `query` is the raw query string.
    pub fn parse(method: &str, path: &str, query: Option<&str>) -> Result<Endpoint, EndpointError> {
        let rest = path.strip_prefix("/v2").ok_or(EndpointError::NotFound)?;
        let rest = match rest {
            "" | "/" => return only(method, &["GET", "HEAD"], Endpoint::Base),
            r => r.strip_prefix('/').ok_or(EndpointError::NotFound)?,
        };
        let query = Query::parse(query);

        if rest == "_catalog" {
            let page = query.page()?;
            return only(method, &["GET"], Endpoint::Catalog { page });
        }

        let segments: Vec<&str> = rest.split('/').collect();
        let n = segments.len();
        let name_of = |end: usize| -> Result<RepositoryName, EndpointError> {
            if end == 0 {
                return Err(EndpointError::NotFound);
            }
            // The first `end` segments and the slashes between them, sliced, not joined.
            let len = segments[..end].iter().map(|s| s.len()).sum::<usize>() + end - 1;
            Ok(rest[..len].parse()?)
        };

        // <name>/tags/list
        if n >= 3 && segments[n - 2] == "tags" && segments[n - 1] == "list" {
            let name = name_of(n - 2)?;
            let page = query.page()?;
            return only(method, &["GET"], Endpoint::ListTags { name, page });
        }
        // <name>/manifests/<reference>
        if n >= 3 && segments[n - 2] == "manifests" {
            let name = name_of(n - 2)?;
            let raw = segments[n - 1];
            let action = match method {
                "GET" | "HEAD" => Action::Pull,
                "PUT" => Action::Push,
                "DELETE" => Action::Delete,
                _ => return Err(EndpointError::MethodNotAllowed),
            };
            let reference: Reference = match raw.parse() {
                Ok(reference) => reference,
                // Creating under a bad name is the client's mistake (400)...
                Err(e) if action == Action::Push => return Err(e),
                // ...reading or deleting it finds nothing (404).
                Err(_) => {
                    return Err(EndpointError::Unknown {
                        kind: Unknown::Manifest,
                        reference: raw.chars().take(200).collect(),
                        access: Access {
                            repository: Some(name),
                            action,
                        },
                    });
                }
            };
            return match method {
                "GET" | "HEAD" => Ok(Endpoint::GetManifest {
                    name,
                    reference,
                    head: method == "HEAD",
                }),
                "PUT" => {
                    let tags = query.tags()?;
                    if !tags.is_empty() && matches!(reference, Reference::Tag(_)) {
                        return Err(EndpointError::Tag(
                            "tag= parameters are accepted only on a push by digest".into(),
                        ));
                    }
                    Ok(Endpoint::PutManifest {
                        name,
                        reference,
                        tags,
                    })
                }
                _ => Ok(Endpoint::DeleteManifest { name, reference }),
            };
        }
        // <name>/blobs/uploads/ (trailing slash optional)
        let start_upload = if n >= 4
            && segments[n - 3] == "blobs"
            && segments[n - 2] == "uploads"
            && segments[n - 1].is_empty()
        {
            Some(n - 3)
        } else if n >= 3 && segments[n - 2] == "blobs" && segments[n - 1] == "uploads" {
            Some(n - 2)
        } else {
            None
        };
        if let Some(end) = start_upload {
            let name = name_of(end)?;
            let digest = query.digest("digest")?;
            // Mount arguments that do not parse fall back to an ordinary upload (spec:
            // "If a mount fails due to invalid repository or digest arguments ... 202"), as
            // Distribution does.
            let mount = query.digest("mount").ok().flatten();
            let from = query.get("from").and_then(|f| f.parse().ok());
            let digest_algorithm = match query.get("digest-algorithm") {
                Some(a) => a.parse().map_err(EndpointError::Digest)?,
                None => digest.as_ref().map_or(Algorithm::Sha256, Digest::algorithm),
            };
            return only(
                method,
                &["POST"],
                Endpoint::StartUpload {
                    name,
                    digest,
                    mount,
                    from,
                    digest_algorithm,
                },
            );
        }
        // <name>/blobs/uploads/<id>
        if n >= 4 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" {
            let name = name_of(n - 3)?;
            let id = segments[n - 1].to_owned();
            if !valid_upload_id(&id) {
                return Err(EndpointError::NotFound);
            }
            return match method {
                "GET" => Ok(Endpoint::UploadStatus { name, id }),
                "PATCH" => Ok(Endpoint::PatchUpload { name, id }),
                "PUT" => {
                    let digest = query.digest("digest")?.ok_or(EndpointError::Query {
                        param: "digest",
                        reason: "required to complete an upload".into(),
                    })?;
                    Ok(Endpoint::CompleteUpload { name, id, digest })
                }
                "DELETE" => Ok(Endpoint::CancelUpload { name, id }),
                _ => Err(EndpointError::MethodNotAllowed),
            };
        }
        // <name>/blobs/<digest>
        if n >= 3 && segments[n - 2] == "blobs" {
            let name = name_of(n - 2)?;
            let action = match method {
                "GET" | "HEAD" => Action::Pull,
                "DELETE" => Action::Delete,
                _ => return Err(EndpointError::MethodNotAllowed),
            };
            let digest = segments[n - 1]
                .parse()
                .map_err(|_| EndpointError::Unknown {
                    kind: Unknown::Blob,
                    reference: segments[n - 1].chars().take(200).collect(),
                    access: Access {
                        repository: Some(name.clone()),
                        action,
                    },
                })?;
            return match method {
                "GET" | "HEAD" => Ok(Endpoint::GetBlob {
                    name,
                    digest,
                    head: method == "HEAD",
                }),
                "DELETE" => Ok(Endpoint::DeleteBlob { name, digest }),
                _ => Err(EndpointError::MethodNotAllowed),
            };
        }
        // <name>/referrers/<digest>
        if n >= 3 && segments[n - 2] == "referrers" {
            let name = name_of(n - 2)?;
            let digest = segments[n - 1].parse().map_err(EndpointError::Digest)?;
            let artifact_type = query.get("artifactType").map(str::to_owned);
            return only(
                method,
                &["GET"],
                Endpoint::Referrers {
                    name,
                    digest,
                    artifact_type,
                },
            );
        }
        Err(EndpointError::NotFound)
    }

    /// The permissions this endpoint needs: the only input to authorization.
    pub fn required_access(&self) -> Vec<Access> {
        let on = |name: &RepositoryName, action| Access {
            repository: Some(name.clone()),
            action,
        };
        match self {
            Endpoint::Base => Vec::new(),
            Endpoint::Catalog { .. } => vec![Access {
                repository: None,
                action: Action::Catalog,
            }],
            Endpoint::ListTags { name, .. }
            | Endpoint::GetManifest { name, .. }
            | Endpoint::GetBlob { name, .. }
            | Endpoint::Referrers { name, .. } => vec![on(name, Action::Pull)],
            Endpoint::PutManifest { name, .. }
            | Endpoint::UploadStatus { name, .. }
            | Endpoint::PatchUpload { name, .. }
            | Endpoint::CompleteUpload { name, .. }
            | Endpoint::CancelUpload { name, .. } => vec![on(name, Action::Push)],
            Endpoint::StartUpload {
                name, from, mount, ..
            } => {
                let mut access = vec![on(name, Action::Push)];
                if let (Some(from), Some(_)) = (from, mount) {
                    access.push(on(from, Action::Pull));
                }
                access
            }
            Endpoint::DeleteManifest { name, .. } | Endpoint::DeleteBlob { name, .. } => {
                vec![on(name, Action::Delete)]
            }
        }
    }

    /// The repository the endpoint acts on, if any.
    pub fn repository(&self) -> Option<&RepositoryName> {
        match self {
            Endpoint::Base | Endpoint::Catalog { .. } => None,
            Endpoint::ListTags { name, .. }
            | Endpoint::GetManifest { name, .. }
            | Endpoint::PutManifest { name, .. }
            | Endpoint::DeleteManifest { name, .. }
            | Endpoint::GetBlob { name, .. }
            | Endpoint::DeleteBlob { name, .. }
            | Endpoint::StartUpload { name, .. }
            | Endpoint::UploadStatus { name, .. }
            | Endpoint::PatchUpload { name, .. }
            | Endpoint::CompleteUpload { name, .. }
            | Endpoint::CancelUpload { name, .. }
            | Endpoint::Referrers { name, .. } => Some(name),
        }
    }

    /// The repository of a read a mirror may serve (manifest, blob, tag list, referrers),
    /// to rewrite into the mirror's project; `None` for writes and the rest.
    pub fn pulled_repository_mut(&mut self) -> Option<&mut RepositoryName> {
        match self {
            Endpoint::ListTags { name, .. }
            | Endpoint::GetManifest { name, .. }
            | Endpoint::GetBlob { name, .. }
            | Endpoint::Referrers { name, .. } => Some(name),
            _ => None,
        }
    }
}

fn only(method: &str, allowed: &[&str], endpoint: Endpoint) -> Result<Endpoint, EndpointError> {
    if allowed.contains(&method) {
        Ok(endpoint)
    } else {
        Err(EndpointError::MethodNotAllowed)
    }
}

/// Upload ids are ours (UUIDs), but be strict about what reaches a file name.
fn valid_upload_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// How many `?tag=` a manifest push may carry (the spec asks for at least 10).
pub const MAX_TAGS_PER_PUSH: usize = 100;

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every `tag=` parameter, each a valid tag (else the whole request is refused before
    /// anything is stored), at most [`MAX_TAGS_PER_PUSH`].
    fn tags(&self) -> Result<Vec<Tag>, EndpointError> {
        let mut tags = Vec::new();
        for value in self.get_all("tag") {
            if tags.len() == MAX_TAGS_PER_PUSH {
                return Err(EndpointError::Tag(format!(
                    "at most {MAX_TAGS_PER_PUSH} tag= parameters per push"
                )));
            }
            let tag: Tag = value
                .parse()
                .map_err(|e: crate::name::TagError| EndpointError::Tag(e.to_string()))?;
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        Ok(tags)
    }

    fn digest(&self, key: &'static str) -> Result<Option<Digest>, EndpointError> {
        self.get(key)
            .map(|v| v.parse().map_err(EndpointError::Digest))
            .transpose()
    }

    fn page(&self) -> Result<Page, EndpointError> {
        let n = self
            .get("n")
            .map(|n| {
                n.parse::<usize>().map_err(|_| EndpointError::Query {
                    param: "n",
                    reason: "must be a non-negative integer".into(),
                })
            })
            .transpose()?;
        Ok(Page {
            n,
            last: self.get("last").map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn parse(method: &str, path: &str) -> Result<Endpoint, EndpointError> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        Endpoint::parse(method, path, query)
    }

    fn name(s: &str) -> RepositoryName {
        s.parse().expect("valid name")
    }

    #[test]
    fn base_and_catalog() {
        assert_eq!(parse("GET", "/v2/"), Ok(Endpoint::Base));
        assert_eq!(parse("GET", "/v2"), Ok(Endpoint::Base));
        assert_eq!(
            parse("GET", "/v2/_catalog?n=10&last=a%2Fb"),
            Ok(Endpoint::Catalog {
                page: Page {
                    n: Some(10),
                    last: Some("a/b".into())
                }
            })
        );
        assert!(parse("GET", "/v2/_catalog?n=x").is_err());
    }

    #[test]
    fn names_with_slashes_and_keyword_components() {
        let e = parse("GET", "/v2/a/manifests/b/manifests/latest").expect("parses");
        assert_eq!(
            e,
            Endpoint::GetManifest {
                name: name("a/manifests/b"),
                reference: Reference::Tag("latest".parse().expect("tag")),
                head: false
            }
        );
        let e = parse("GET", "/v2/library/blobs/uploads/blobs/uploads/abc-123").expect("parses");
        assert_eq!(
            e,
            Endpoint::UploadStatus {
                name: name("library/blobs/uploads"),
                id: "abc-123".into()
            }
        );
    }

    #[test]
    fn uploads() {
        assert!(matches!(
            parse("POST", "/v2/a/b/blobs/uploads/"),
            Ok(Endpoint::StartUpload { .. })
        ));
        assert!(matches!(
            parse("POST", "/v2/a/blobs/uploads"),
            Ok(Endpoint::StartUpload { .. })
        ));
        let e = parse("POST", &format!("/v2/a/blobs/uploads/?mount={D}&from=c/d")).expect("parses");
        assert_eq!(
            e.required_access(),
            vec![
                Access {
                    repository: Some(name("a")),
                    action: Action::Push
                },
                Access {
                    repository: Some(name("c/d")),
                    action: Action::Pull
                }
            ]
        );
        assert!(matches!(
            parse("PUT", &format!("/v2/a/blobs/uploads/u1?digest={D}")),
            Ok(Endpoint::CompleteUpload { .. })
        ));
        assert!(parse("PUT", "/v2/a/blobs/uploads/u1").is_err());
        assert_eq!(
            parse("GET", "/v2/a/blobs/uploads/../x"),
            Err(EndpointError::NotFound)
        );
    }

    #[test]
    fn errors_map_to_spec_codes() {
        let bad_name = parse("GET", "/v2/A/tags/list").unwrap_err();
        assert_eq!(bad_name.code_and_status(), (ErrorCode::NameInvalid, 400));
        // Reading under a digest that cannot exist is not found, and needs pull access.
        let bad_digest = parse("GET", "/v2/a/blobs/sha256:zz").unwrap_err();
        assert_eq!(bad_digest.code_and_status(), (ErrorCode::BlobUnknown, 404));
        assert_eq!(
            bad_digest.required_access(),
            vec![Access {
                repository: Some(name("a")),
                action: Action::Pull
            }]
        );
        let bad_reference = parse("DELETE", "/v2/a/manifests/.x").unwrap_err();
        assert_eq!(
            bad_reference.code_and_status(),
            (ErrorCode::ManifestUnknown, 404)
        );
        assert_eq!(
            bad_reference.required_access(),
            vec![Access {
                repository: Some(name("a")),
                action: Action::Delete
            }]
        );
        // Creating under a bad name is the client's mistake.
        let bad_tag = parse("PUT", "/v2/a/manifests/.x").unwrap_err();
        assert_eq!(bad_tag.code_and_status(), (ErrorCode::TagInvalid, 400));
        let bad_extra_tag =
            parse("PUT", &format!("/v2/a/manifests/{D}?tag=ok&tag=-no")).unwrap_err();
        assert_eq!(
            bad_extra_tag.code_and_status(),
            (ErrorCode::TagInvalid, 400)
        );
        let bad_put_digest = parse("PUT", "/v2/a/manifests/sha256:zz").unwrap_err();
        assert_eq!(
            bad_put_digest.code_and_status(),
            (ErrorCode::DigestInvalid, 400)
        );
        assert!(bad_put_digest.required_access().is_empty());
        assert_eq!(
            parse("POST", "/v2/a/tags/list"),
            Err(EndpointError::MethodNotAllowed)
        );
        assert_eq!(parse("GET", "/v2/a/unknown"), Err(EndpointError::NotFound));
        assert!(matches!(
            parse("GET", "/v2/a/../b/tags/list"),
            Err(EndpointError::Name(_))
        ));
    }

    #[test]
    fn never_panics_on_short_or_odd_paths() {
        let parts = [
            "",
            "a",
            "blobs",
            "uploads",
            "manifests",
            "tags",
            "list",
            "referrers",
            "_catalog",
            "..",
            D,
        ];
        for a in parts {
            for b in parts {
                for c in parts {
                    for method in ["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"] {
                        let _ = parse(method, &format!("/v2/{a}/{b}/{c}"));
                        let _ = parse(method, &format!("/v2/{a}/{b}"));
                        let _ = parse(method, &format!("/v2/{a}"));
                    }
                }
            }
        }
    }

    #[test]
    fn referrers_filter() {
        let e = parse(
            "GET",
            &format!("/v2/a/referrers/{D}?artifactType=application%2Fx"),
        )
        .expect("ok");
        assert!(
            matches!(e, Endpoint::Referrers { artifact_type: Some(ref t), .. } if t == "application/x")
        );
    }
}
