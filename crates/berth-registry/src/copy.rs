//! Copying an artifact between repositories (Harbor's `POST …/artifacts?from=`): links
//! blobs, never copies their bytes, and stores each manifest through the same validated
//! push a client's would take.

use std::collections::HashSet;

use berth_core::manifest;
use berth_core::{Digest, Reference, RepositoryName, Tag};

use crate::{Error, Registry, Result};

/// At most this many manifests (the artifact, its children, their accessories) in a copy.
const MAX_COPIED_MANIFESTS: usize = 10_000;

/// A manifest to copy, read from the source.
struct Source {
    digest: Digest,
    media_type: String,
    content: Vec<u8>,
    blobs: Vec<Digest>,
}

impl Registry {
    /// Copy the artifact `reference` of `from` into `to` with its children (an index's
    /// platforms), the accessories of everything copied (signatures, SBOMs) and the tags of
    /// the artifact itself. Children are stored before their index and a subject before
    /// its accessories, so the destination is complete at every step. Returns the digest.
    pub async fn copy_artifact(
        &self,
        from: &RepositoryName,
        reference: &Reference,
        to: &RepositoryName,
    ) -> Result<Digest> {
        let root = self.get_manifest(from, reference).await?.digest.clone();
        let tags: Vec<Tag> = self
            .meta
            .artifact(
                from,
                &Reference::Digest(root.clone()),
                berth_core::mgmt::ArtifactWith {
                    tags: true,
                    accessories: false,
                },
            )
            .await?
            .and_then(|info| info.tags)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.name.parse().ok())
            .collect();
        for source in self.copy_order(from, &root).await? {
            for blob in &source.blobs {
                if self.mount_blob(from, to, blob).await?.is_none() {
                    return Err(Error::ManifestBlobUnknown(blob.clone()));
                }
            }
            let tags: &[Tag] = if source.digest == root { &tags } else { &[] };
            self.put_manifest(
                to,
                &Reference::Digest(source.digest.clone()),
                tags,
                Some(&source.media_type),
                &source.content,
            )
            .await?;
        }
        Ok(root)
    }

    /// The manifests to copy, each after everything it needs: a depth-first walk where a
    /// manifest follows its children and precedes its accessories.
    async fn copy_order(&self, from: &RepositoryName, root: &Digest) -> Result<Vec<Source>> {
        enum Step {
            Enter(Digest),
            Store(Source),
        }
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![Step::Enter(root.clone())];
        while let Some(step) = stack.pop() {
            let digest = match step {
                Step::Store(source) => {
                    // Its accessories come after it (pushed now, popped next).
                    for referrer in self.referrers(from, &source.digest, None).await? {
                        stack.push(Step::Enter(referrer.digest));
                    }
                    order.push(source);
                    continue;
                }
                Step::Enter(digest) => digest,
            };
            if !seen.insert(digest.clone()) {
                continue;
            }
            if seen.len() > MAX_COPIED_MANIFESTS {
                return Err(Error::ManifestInvalid(format!(
                    "the artifact has more than {MAX_COPIED_MANIFESTS} manifests with its accessories: copy refused"
                )));
            }
            let stored = match self
                .get_manifest(from, &Reference::Digest(digest.clone()))
                .await
            {
                Ok(stored) => stored,
                // A sparse index's absent platform stays absent in the copy too.
                Err(Error::ManifestUnknown(_)) if self.options.sparse_index && &digest != root => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let parsed =
                manifest::parse(Some(&stored.media_type), &stored.content).map_err(|e| {
                    Error::Internal(format!("stored manifest {digest} is invalid: {e}"))
                })?;
            let children = parsed.manifests.clone();
            stack.push(Step::Store(Source {
                digest,
                media_type: stored.media_type.clone(),
                content: stored.content.to_vec(),
                blobs: parsed.blobs,
            }));
            // Children are popped (and stored) before their index's `Store`.
            for child in children.into_iter().rev() {
                stack.push(Step::Enter(child));
            }
        }
        Ok(order)
    }
}
