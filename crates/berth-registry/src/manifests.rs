//! Manifests: validation on push, reference checks, tags, deletes and referrers.

use berth_core::manifest::{self, MAX_MANIFEST_BYTES, ManifestError};
use berth_core::{Algorithm, Digest, Reference, RepositoryName, Tag};
use berth_meta::{NewManifest, Referrer};

use std::sync::Arc;

use crate::cache::Manifest;

use crate::{Error, Registry, Result};

/// What a successful manifest push reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedManifest {
    /// The digest the manifest is stored (and its tags answer) under.
    pub digest: Digest,
    /// Set when the manifest has a `subject` (answered as the `OCI-Subject` header).
    pub subject: Option<Digest>,
    /// Every tag the push pointed at the manifest (answered as `OCI-Tag` headers).
    pub tags: Vec<Tag>,
}

impl Registry {
    /// Validate and store a pushed manifest, exactly as its bytes came, and point the
    /// reference's tag and every one of `extra_tags` (`?tag=`) at it, all in one transaction.
    pub async fn put_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<PushedManifest> {
        self.store_manifest(repository, reference, extra_tags, content_type, body, false)
            .await
    }

    /// Store a manifest a proxy cache fetched from its upstream, exactly as it came, with
    /// the checks of a push — except that an index's children may be missing: each is
    /// cached when a client asks for it. An image manifest still needs every blob.
    /// Tag immutability rules do not hold a cache back: the cache follows its upstream
    /// (rules still guard deletes). Its blobs count toward the project's quota, as pushes do.
    pub async fn put_fetched_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<PushedManifest> {
        self.store_manifest(repository, reference, &[], content_type, body, true)
            .await
    }

    async fn store_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: &[u8],
        fetched: bool,
    ) -> Result<PushedManifest> {
        // A push needs an index's children (unless sparse indexes are allowed); a cache fill
        // does not, and is not held back by immutability rules.
        let require_manifests = !fetched && !self.options.sparse_index;
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(Error::ManifestTooLarge);
        }
        let parsed = manifest::parse(content_type, body).map_err(|e| match e {
            ManifestError::Schema1 | ManifestError::Invalid(_) => {
                Error::ManifestInvalid(e.to_string())
            }
        })?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), body);
                if &actual != expected {
                    return Err(Error::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, body),
        };
        let mut tags = extra_tags.to_vec();
        // Pushed by tag, the bytes may already be here under a sha512 digest (pushed by
        // digest first): then the tag answers with that digest, not with their sha256.
        let mut aliases = Vec::new();
        if let Reference::Tag(tag) = reference {
            tags.insert(0, tag.clone());
            aliases.push(Digest::of(Algorithm::Sha512, body));
        }
        let record = NewManifest {
            digest: digest.clone(),
            media_type: parsed.media_type,
            content: body.to_vec(),
            artifact_type: parsed.artifact_type,
            config_media_type: parsed.config_media_type,
            subject: parsed.subject.clone(),
            annotations: parsed.annotations,
            blobs: parsed.blobs,
            manifests: parsed.manifests,
            require_manifests,
            aliases,
            immutable_tags: if fetched {
                Vec::new()
            } else {
                self.immutable_among(repository, &tags).await?
            },
        };
        let stored = self.meta.put_manifest(repository, &record, &tags).await;
        self.cache.invalidate(repository);
        let pushed = PushedManifest {
            digest: stored?,
            subject: parsed.subject,
            tags,
        };
        if !fetched {
            self.pushed(repository, &pushed);
        }
        Ok(pushed)
    }

    pub async fn get_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Arc<Manifest>> {
        let ticket = match self.cache.manifest(repository, reference) {
            Ok(manifest) => return Ok(manifest),
            Err(ticket) => ticket,
        };
        let stored = self
            .meta
            .get_manifest(repository, reference)
            .await?
            .ok_or_else(|| Error::ManifestUnknown(reference.to_string()))?;
        let manifest = Arc::new(Manifest {
            digest: stored.digest,
            media_type: stored.media_type,
            content: stored.content.into(),
        });
        self.cache
            .store_manifest(ticket, repository, reference, &manifest);
        Ok(manifest)
    }

    /// By digest: delete the manifest and its tags. By tag: delete only the tag.
    pub async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        self.check_delete_enabled()?;
        match reference {
            Reference::Digest(digest) => self.refuse_immutable_manifest(repository, digest).await?,
            Reference::Tag(tag) => self.refuse_immutable_tag(repository, tag).await?,
        }
        let deleted = match reference {
            Reference::Digest(digest) => self.meta.delete_manifest(repository, digest).await,
            Reference::Tag(tag) => self.meta.delete_tag(repository, tag).await,
        };
        // Even on an error: the delete may have committed before its durability wait failed.
        self.cache.invalidate(repository);
        if deleted? {
            self.deleted(repository, reference);
            Ok(())
        } else {
            Err(Error::ManifestUnknown(reference.to_string()))
        }
    }

    /// Manifests whose subject is `subject`; empty (not an error) when there are none.
    pub async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        Ok(self
            .meta
            .referrers(repository, subject, artifact_type)
            .await?)
    }
}
