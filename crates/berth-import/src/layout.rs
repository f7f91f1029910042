//! The registry:2 (Distribution 2.x) storage layout, read through a [`SourceTree`]:
//!
//! ```text
//! blobs/<alg>/<first 2 hex>/<hex>/data                       every blob and manifest, once
//! repositories/<name>/_layers/<alg>/<hex>/link                 blobs the repository may serve
//! repositories/<name>/_manifests/revisions/<alg>/<hex>/link    its manifests
//! repositories/<name>/_manifests/tags/<tag>/current/link       its tags (index/ is history)
//! repositories/<name>/_uploads/                                unfinished uploads (ignored)
//! ```
//!
//! A deleted manifest keeps its directory but loses its `link` file; a deleted tag loses its
//! whole directory. Names nest (`a/b/c`), so a repository is any directory under
//! `repositories/` that holds `_manifests` or `_layers`; the walk goes on below it, because
//! `a` and `a/b` can both be repositories.

use std::io;

use berth_core::Digest;

use crate::source::SourceTree;

/// A link file holds one digest string; anything much longer is not a link.
const MAX_LINK_BYTES: u64 = 256;

/// The blob data path of a digest.
pub fn blob_data_path(digest: &Digest) -> String {
    let hex = digest.hex();
    format!(
        "blobs/{}/{}/{hex}/data",
        digest.algorithm().as_str(),
        &hex[..2]
    )
}

/// A link that could not be read as a digest: reported, never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLink {
    pub path: String,
    pub reason: String,
}

/// Every repository name in the tree, sorted.
pub async fn repositories(source: &dyn SourceTree) -> io::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![String::new()];
    while let Some(name) = pending.pop() {
        let dir = if name.is_empty() {
            "repositories".to_owned()
        } else {
            format!("repositories/{name}")
        };
        let children = source.subdirectories(&dir).await?;
        if !name.is_empty() && children.iter().any(|c| c == "_manifests" || c == "_layers") {
            found.push(name.clone());
        }
        for child in children.into_iter().filter(|c| !c.starts_with('_')) {
            pending.push(if name.is_empty() {
                child
            } else {
                format!("{name}/{child}")
            });
        }
    }
    found.sort();
    Ok(found)
}

/// The digests linked under `dir` (`<dir>/<alg>/<hex>/link`), in path order. A directory
/// without a `link` file is a deleted entry and is left out.
async fn linked_digests(
    source: &dyn SourceTree,
    dir: &str,
) -> io::Result<(Vec<Digest>, Vec<BadLink>)> {
    let mut digests = Vec::new();
    let mut bad = Vec::new();
    for algorithm in source.subdirectories(dir).await? {
        for hex in source.subdirectories(&format!("{dir}/{algorithm}")).await? {
            let path = format!("{dir}/{algorithm}/{hex}/link");
            match read_link(source, &path).await? {
                None => {}
                Some(Ok(digest)) if digest.to_string() == format!("{algorithm}:{hex}") => {
                    digests.push(digest)
                }
                Some(Ok(digest)) => bad.push(BadLink {
                    path,
                    reason: format!("names {digest}, not the digest of its directory"),
                }),
                Some(Err(reason)) => bad.push(BadLink { path, reason }),
            }
        }
    }
    Ok((digests, bad))
}

/// A link file's digest; `None` if there is no such file.
async fn read_link(
    source: &dyn SourceTree,
    path: &str,
) -> io::Result<Option<Result<Digest, String>>> {
    let bytes = match source.read_small(path, MAX_LINK_BYTES).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Ok(Some(Err("is too large to be a link".into())));
        }
        Err(e) => return Err(e),
    };
    Ok(Some(match std::str::from_utf8(&bytes) {
        Ok(text) => text
            .trim()
            .parse::<Digest>()
            .map_err(|e| format!("does not hold a digest: {e}")),
        Err(_) => Err("is not text".into()),
    }))
}

/// What one repository of the tree links: blobs, manifest revisions and tags.
#[derive(Debug, Default)]
pub struct RepositoryLinks {
    pub layers: Vec<Digest>,
    pub revisions: Vec<Digest>,
    /// Tag name and the digest its `current/link` names; `None` when that link is missing.
    pub tags: Vec<(String, Option<Digest>)>,
    pub bad_links: Vec<BadLink>,
}

pub async fn repository_links(source: &dyn SourceTree, name: &str) -> io::Result<RepositoryLinks> {
    let root = format!("repositories/{name}");
    let (layers, mut bad_links) = linked_digests(source, &format!("{root}/_layers")).await?;
    let (revisions, bad) = linked_digests(source, &format!("{root}/_manifests/revisions")).await?;
    bad_links.extend(bad);
    let mut tags = Vec::new();
    for tag in source
        .subdirectories(&format!("{root}/_manifests/tags"))
        .await?
    {
        let path = format!("{root}/_manifests/tags/{tag}/current/link");
        match read_link(source, &path).await? {
            None => tags.push((tag, None)),
            Some(Ok(digest)) => tags.push((tag, Some(digest))),
            Some(Err(reason)) => bad_links.push(BadLink { path, reason }),
        }
    }
    Ok(RepositoryLinks {
        layers,
        revisions,
        tags,
        bad_links,
    })
}
