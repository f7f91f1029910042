//! Harbor's repositories, artifacts and tags: the metadata store's pages, with what each
//! manifest says about itself (type, media type, an index's platforms, an image's
//! attributes from its config); tags added and removed one by one; repository and artifact
//! deletes. Every write invalidates the read cache, as `/v2/`'s do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_core::artifact::{self, Platform};
use berth_core::mgmt::ArtifactWith;
use berth_core::{Digest, Reference, RepositoryName, Tag};
use berth_meta::{
    ArtifactDeletion, ArtifactInfo, ArtifactQuery, Paged, RepositoryInfo, RepositoryQuery,
    TagAddition, TagInfo, TagQuery,
};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::{Error, Registry, Result};

/// Configs larger than this are not read for their attributes (real ones are a few KiB).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// When the attribute cache holds this many configs, it starts over.
const MAX_CACHED_CONFIGS: usize = 4096;

/// An artifact as Harbor shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub info: ArtifactInfo,
    /// Harbor's `type`: `IMAGE`, `CHART`, … or `UNKNOWN`.
    pub kind: String,
    /// Harbor's `media_type`: the config's, or an index's own.
    pub media_type: String,
    /// An index's children, in the index's order.
    pub references: Vec<ChildReference>,
    /// An image's attributes from its config (architecture, os, …); empty otherwise.
    pub extra_attrs: Arc<Map<String, Value>>,
}

/// A child of an index.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildReference {
    pub digest: Digest,
    /// Its artifact id; `None` when a sparse index names a manifest the repository lacks.
    pub id: Option<i64>,
    pub platform: Option<Platform>,
    pub annotations: Option<Map<String, Value>>,
    pub urls: Vec<String>,
}

/// Image attributes by config digest. Exact forever: a digest names one content.
#[derive(Default)]
pub(crate) struct ConfigAttributes {
    entries: Mutex<HashMap<Digest, Arc<Map<String, Value>>>>,
}

impl ConfigAttributes {
    fn get(&self, digest: &Digest) -> Option<Arc<Map<String, Value>>> {
        self.lock().get(digest).cloned()
    }

    fn put(&self, digest: Digest, attributes: Arc<Map<String, Value>>) {
        let mut entries = self.lock();
        if entries.len() >= MAX_CACHED_CONFIGS {
            entries.clear();
        }
        entries.insert(digest, attributes);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Map<String, Value>>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Registry {
    /// A page of repositories with their artifact counts.
    pub async fn repositories(&self, query: &RepositoryQuery<'_>) -> Result<Paged<RepositoryInfo>> {
        Ok(self.meta.repository_page(query).await?)
    }

    /// The id of the project a repository's name starts with, if that project exists.
    pub async fn project_id_of(&self, repository: &RepositoryName) -> Result<Option<i64>> {
        let Some((project, _)) = repository.as_str().split_once('/') else {
            return Ok(None);
        };
        Ok(self.meta.project_by_name(project).await?.map(|p| p.id))
    }

    pub async fn repository(&self, name: &RepositoryName) -> Result<RepositoryInfo> {
        self.meta
            .repository_info(name)
            .await?
            .ok_or_else(|| Error::NameUnknown(name.to_string()))
    }

    pub async fn describe_repository(
        &self,
        name: &RepositoryName,
        description: &str,
    ) -> Result<()> {
        if self
            .meta
            .set_repository_description(name, description)
            .await?
        {
            Ok(())
        } else {
            Err(Error::NameUnknown(name.to_string()))
        }
    }

    /// Delete a repository and everything in it: manifests, tags, blob links. Its blobs'
    /// bytes stay for garbage collection.
    pub async fn delete_repository(&self, name: &RepositoryName) -> Result<()> {
        self.check_delete_enabled()?;
        let deleted = self.meta.delete_repository(name).await;
        // Even on an error: the delete may have committed before its durability wait failed.
        self.cache.invalidate(name);
        if deleted? {
            Ok(())
        } else {
            Err(Error::NameUnknown(name.to_string()))
        }
    }

    /// A page of a repository's artifacts.
    pub async fn artifacts(
        &self,
        repository: &RepositoryName,
        query: &ArtifactQuery<'_>,
    ) -> Result<Paged<Artifact>> {
        let page = self
            .meta
            .artifact_page(repository, query)
            .await?
            .ok_or_else(|| Error::NameUnknown(repository.to_string()))?;
        // Configs are read a few at a time; most come from the cache.
        let items = futures_util::stream::iter(page.items)
            .map(|info| self.describe(info))
            .buffered(8)
            .collect()
            .await;
        Ok(Paged {
            total: page.total,
            items,
        })
    }

    /// One artifact by tag or digest.
    pub async fn artifact(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        with: ArtifactWith,
    ) -> Result<Artifact> {
        let info = self
            .meta
            .artifact(repository, reference, with)
            .await?
            .ok_or_else(|| Error::ManifestUnknown(reference.to_string()))?;
        Ok(self.describe(info).await)
    }

    /// The artifact's id and a page of its tags.
    pub async fn artifact_tags(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        query: &TagQuery<'_>,
    ) -> Result<(ArtifactInfo, Paged<TagInfo>)> {
        let info = self.artifact_info(repository, reference).await?;
        let tags = self
            .meta
            .artifact_tags(repository, &info.digest, query)
            .await?;
        Ok((info, tags))
    }

    /// Tag an artifact; refused if the repository has the tag already, on any artifact.
    pub async fn add_tag(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        tag: &Tag,
    ) -> Result<()> {
        let info = self.artifact_info(repository, reference).await?;
        let added = self.meta.add_tag(repository, &info.digest, tag).await;
        self.cache.invalidate(repository);
        match added? {
            TagAddition::Added => {
                if let Some(events) = self.events.get() {
                    events.pushed(repository, &info.digest, std::slice::from_ref(tag), None);
                }
                Ok(())
            }
            TagAddition::Exists => Err(Error::TagExists(tag.to_string())),
            TagAddition::NoArtifact => Err(Error::ManifestUnknown(reference.to_string())),
        }
    }

    /// Remove a tag from the artifact it is on; a tag elsewhere (or nowhere) is unknown here.
    pub async fn remove_tag(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        tag: &Tag,
    ) -> Result<()> {
        self.check_delete_enabled()?;
        let info = self.artifact_info(repository, reference).await?;
        self.refuse_immutable_tag(repository, tag).await?;
        let removed = self
            .meta
            .remove_tag_from(repository, &info.digest, tag)
            .await;
        self.cache.invalidate(repository);
        if removed? {
            self.deleted(repository, &Reference::Tag(tag.clone()));
            Ok(())
        } else {
            Err(Error::TagUnknown {
                tag: tag.to_string(),
                artifact: info.digest.to_string(),
            })
        }
    }

    /// Delete an artifact with its tags, the children only it kept and its accessories
    /// (Harbor's delete); refused while an index lists it. The manifests deleted.
    pub async fn delete_artifact(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Vec<Digest>> {
        self.check_delete_enabled()?;
        let info = self.artifact_info(repository, reference).await?;
        self.refuse_immutable_manifest(repository, &info.digest)
            .await?;
        let deleted = self.meta.delete_artifact(repository, &info.digest).await;
        self.cache.invalidate(repository);
        match deleted? {
            ArtifactDeletion::Deleted(digests) => {
                self.deleted(repository, &Reference::Digest(info.digest));
                Ok(digests)
            }
            ArtifactDeletion::NotFound => Err(Error::ManifestUnknown(reference.to_string())),
            ArtifactDeletion::Referenced(parent) => Err(Error::ArtifactReferenced {
                digest: info.digest,
                parent,
            }),
        }
    }

    /// The artifact a reference names, without tags or accessories.
    async fn artifact_info(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<ArtifactInfo> {
        let bare = ArtifactWith {
            tags: false,
            accessories: false,
        };
        self.meta
            .artifact(repository, reference, bare)
            .await?
            .ok_or_else(|| Error::ManifestUnknown(reference.to_string()))
    }

    /// What Harbor shows of a stored manifest besides the store's facts.
    async fn describe(&self, info: ArtifactInfo) -> Artifact {
        let media_type =
            artifact::media_type(&info.manifest_media_type, info.config_media_type.as_deref())
                .to_owned();
        let kind = artifact::kind(&info.manifest_media_type, &media_type);
        let facts = artifact::facts(&info.manifest_media_type, &info.content);
        let ids: HashMap<&Digest, i64> = info.child_ids.iter().map(|(d, id)| (d, *id)).collect();
        let references = facts
            .children
            .into_iter()
            .map(|child| ChildReference {
                id: ids.get(&child.digest).copied(),
                digest: child.digest,
                platform: child.platform,
                annotations: child.annotations,
                urls: child.urls,
            })
            .collect();
        let extra_attrs = match &facts.config {
            Some((digest, _)) if kind == "IMAGE" => self.image_attributes(digest).await,
            _ => Arc::default(),
        };
        Artifact {
            info,
            kind,
            media_type,
            references,
            extra_attrs,
        }
    }

    /// An image config's attributes, read once per config digest. A config that cannot be
    /// read shows none: the listing must not fail for it.
    async fn image_attributes(&self, config: &Digest) -> Arc<Map<String, Value>> {
        if let Some(found) = self.configs.get(config) {
            return found;
        }
        let attributes = match self.read_small_blob(config).await {
            Ok(Some(bytes)) => Arc::new(artifact::image_attributes(&bytes)),
            Ok(None) => return Arc::default(),
            Err(e) => {
                tracing::warn!(digest = %config, error = %e, "cannot read an image config for its attributes");
                return Arc::default();
            }
        };
        self.configs.put(config.clone(), attributes.clone());
        attributes
    }

    /// A blob's bytes if it is stored and at most [`MAX_CONFIG_BYTES`] long.
    async fn read_small_blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let Some(size) = self.blobs.stat(digest).await? else {
            return Ok(None);
        };
        if size > MAX_CONFIG_BYTES {
            return Ok(None);
        }
        let mut stream = self.blobs.open(digest, 0, size).await?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(|e| Error::Internal(e.to_string()))?);
        }
        Ok(Some(bytes))
    }
}
