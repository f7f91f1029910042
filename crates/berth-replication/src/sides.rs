//! The two ends of a replication: this registry (through its registry service, so what is
//! copied in passes a push's checks, quota and immutability included) or a remote one
//! (through its `/v2/` API). Names are the side's own; bodies are streams.

use std::sync::Arc;

use async_trait::async_trait;
use berth_core::endpoint::Page;
use berth_core::{Digest, Reference, RepositoryName};
use berth_proxy::{Mount, UpstreamClient, UpstreamError};
use berth_registry::Registry;
use berth_storage::ByteStream;
use bytes::Bytes;
use futures_util::StreamExt;

/// Why a step failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub message: String,
    pub transient: bool,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl StepError {
    pub fn permanent(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            transient: false,
        }
    }
}

impl From<UpstreamError> for StepError {
    fn from(e: UpstreamError) -> StepError {
        let transient = matches!(
            e,
            UpstreamError::Unreachable { .. }
                | UpstreamError::Timeout { .. }
                | UpstreamError::TooManyRequests { .. }
        ) || matches!(e, UpstreamError::Status { status, .. } if status >= 500);
        StepError {
            message: e.to_string(),
            transient,
        }
    }
}

impl From<berth_registry::Error> for StepError {
    fn from(e: berth_registry::Error) -> StepError {
        let transient = matches!(
            e,
            berth_registry::Error::Internal(_)
                | berth_registry::Error::StorageFull(_)
                | berth_registry::Error::StorageUnavailable(_)
                | berth_registry::Error::BlobBeingDeleted(_)
        );
        StepError {
            message: e.to_string(),
            transient,
        }
    }
}

pub type StepResult<T> = Result<T, StepError>;

/// A manifest's bytes and type.
#[derive(Debug, Clone)]
pub struct ManifestBytes {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
}

/// One end of a replication.
#[async_trait]
pub trait Side: Send + Sync {
    /// How logs name it.
    fn describe(&self) -> String;
    /// Every repository (the caller filters).
    async fn repositories(&self) -> StepResult<Vec<String>>;
    /// A repository's tags; none if it does not exist.
    async fn tags(&self, repository: &str) -> StepResult<Vec<String>>;
    /// A manifest; `None` if it is not there.
    async fn manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> StepResult<Option<ManifestBytes>>;
    /// The digests of the manifests that refer to `subject`.
    async fn referrers(&self, repository: &str, subject: &Digest) -> StepResult<Vec<Digest>>;
    /// A blob's size and bytes.
    async fn blob(&self, repository: &str, digest: &Digest) -> StepResult<(u64, ByteStream)>;
    async fn has_blob(&self, repository: &str, digest: &Digest) -> StepResult<bool>;
    /// Link a blob this side has in `from` into `repository`; whether it did. `from`
    /// `None`: any repository of this side that has it.
    async fn mount(
        &self,
        repository: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> StepResult<bool>;
    /// Store a blob (checked against its digest on the way).
    async fn put_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        body: ByteStream,
    ) -> StepResult<()>;
    /// Store a manifest under a tag or its digest. Whether the side indexed its subject
    /// (false: a registry without the referrers API, which needs the tag schema's index).
    async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &ManifestBytes,
    ) -> StepResult<bool>;
    /// Delete a manifest by digest (done if it is not there).
    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> StepResult<()>;
    /// Make sure the namespace (project) of `repository` exists, where the side has them.
    async fn prepare_namespace(&self, repository: &str) -> StepResult<()>;
}

fn repository_name(name: &str) -> StepResult<RepositoryName> {
    name.parse()
        .map_err(|e| StepError::permanent(format!("invalid repository name {name:?}: {e}")))
}

/// This registry.
pub struct Local {
    pub registry: Arc<Registry>,
    pub projects: Option<Arc<dyn berth_meta::MetaStore>>,
}

#[async_trait]
impl Side for Local {
    fn describe(&self) -> String {
        "this registry".into()
    }

    async fn repositories(&self) -> StepResult<Vec<String>> {
        let mut all = Vec::new();
        let mut last = None;
        loop {
            let page = Page {
                n: Some(1000),
                last: last.take(),
            };
            let listing = self.registry.catalog(&page).await?;
            let more = listing.next_page_size.is_some();
            last = listing.items.last().cloned();
            all.extend(listing.items.iter().cloned());
            if !more || last.is_none() {
                return Ok(all);
            }
        }
    }

    async fn tags(&self, repository: &str) -> StepResult<Vec<String>> {
        let name = repository_name(repository)?;
        let mut all = Vec::new();
        let mut last = None;
        loop {
            let page = Page {
                n: Some(berth_registry::listing::MAX_PAGE),
                last: last.take(),
            };
            let listing = match self.registry.list_tags(&name, &page).await {
                Ok(listing) => listing,
                Err(berth_registry::Error::NameUnknown(_)) => return Ok(all),
                Err(e) => return Err(e.into()),
            };
            let more = listing.next_page_size.is_some();
            last = listing.items.last().cloned();
            all.extend(listing.items.iter().cloned());
            if !more || last.is_none() {
                return Ok(all);
            }
        }
    }

    async fn manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> StepResult<Option<ManifestBytes>> {
        let name = repository_name(repository)?;
        match self.registry.get_manifest(&name, reference).await {
            Ok(m) => Ok(Some(ManifestBytes {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                content: m.content.clone(),
            })),
            Err(
                berth_registry::Error::ManifestUnknown(_) | berth_registry::Error::NameUnknown(_),
            ) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn referrers(&self, repository: &str, subject: &Digest) -> StepResult<Vec<Digest>> {
        let name = repository_name(repository)?;
        Ok(self
            .registry
            .referrers(&name, subject, None)
            .await?
            .into_iter()
            .map(|r| r.digest)
            .collect())
    }

    async fn blob(&self, repository: &str, digest: &Digest) -> StepResult<(u64, ByteStream)> {
        let name = repository_name(repository)?;
        let size = self.registry.blob_size(&name, digest).await?;
        let body = self.registry.read_blob(digest, 0, size).await?;
        Ok((size, body))
    }

    async fn has_blob(&self, repository: &str, digest: &Digest) -> StepResult<bool> {
        let name = repository_name(repository)?;
        match self.registry.blob_size(&name, digest).await {
            Ok(_) => Ok(true),
            Err(berth_registry::Error::BlobUnknown(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn mount(
        &self,
        repository: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> StepResult<bool> {
        let to = repository_name(repository)?;
        let mounted = match from {
            Some(from) => {
                let from = repository_name(from)?;
                self.registry.mount_blob(&from, &to, digest).await?
            }
            // Replication is an administrator's: any repository may lend its blob.
            None => {
                self.registry
                    .mount_blob_from_any(&to, digest, &|_| true)
                    .await?
            }
        };
        Ok(mounted.is_some())
    }

    async fn put_blob(
        &self,
        repository: &str,
        digest: &Digest,
        _size: u64,
        body: ByteStream,
    ) -> StepResult<()> {
        let name = repository_name(repository)?;
        self.registry.put_blob(&name, digest, body).await?;
        Ok(())
    }

    async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &ManifestBytes,
    ) -> StepResult<bool> {
        let name = repository_name(repository)?;
        let reference: Reference = reference
            .parse()
            .map_err(|e| StepError::permanent(format!("invalid reference {reference:?}: {e}")))?;
        self.registry
            .put_manifest(
                &name,
                &reference,
                &[],
                Some(&manifest.media_type),
                &manifest.content,
            )
            .await?;
        Ok(true)
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> StepResult<()> {
        let name = repository_name(repository)?;
        match self
            .registry
            .delete_manifest(&name, &Reference::Digest(digest.clone()))
            .await
        {
            Ok(()) | Err(berth_registry::Error::ManifestUnknown(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn prepare_namespace(&self, repository: &str) -> StepResult<()> {
        let Some(store) = &self.projects else {
            return Ok(());
        };
        let project = repository.split('/').next().unwrap_or(repository);
        let exists = store
            .project_by_name(project)
            .await
            .map_err(|e| StepError {
                message: e.to_string(),
                transient: true,
            })?
            .is_some();
        if !exists {
            match store.create_project(project, false, None).await {
                Ok(_) | Err(berth_meta::MetaError::Conflict(_)) => {}
                Err(e) => {
                    return Err(StepError {
                        message: format!("cannot create project {project}: {e}"),
                        transient: true,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Another registry, through its `/v2/` API.
pub struct Remote {
    pub client: Arc<UpstreamClient>,
}

#[async_trait]
impl Side for Remote {
    fn describe(&self) -> String {
        self.client.base().to_owned()
    }

    async fn repositories(&self) -> StepResult<Vec<String>> {
        Ok(self.client.catalog().await?)
    }

    async fn tags(&self, repository: &str) -> StepResult<Vec<String>> {
        Ok(self.client.tags(repository).await?)
    }

    async fn manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> StepResult<Option<ManifestBytes>> {
        match self.client.get_manifest(repository, reference).await {
            Ok(m) => Ok(Some(ManifestBytes {
                digest: m.digest,
                media_type: m.media_type,
                content: m.content,
            })),
            Err(UpstreamError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn referrers(&self, repository: &str, subject: &Digest) -> StepResult<Vec<Digest>> {
        Ok(self
            .client
            .referrers(repository, subject)
            .await?
            .into_iter()
            .map(|r| r.digest)
            .collect())
    }

    async fn blob(&self, repository: &str, digest: &Digest) -> StepResult<(u64, ByteStream)> {
        let body = self.client.get_blob(repository, digest).await?;
        let stream = body
            .stream
            .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
        Ok((body.size, Box::pin(stream)))
    }

    async fn has_blob(&self, repository: &str, digest: &Digest) -> StepResult<bool> {
        Ok(self.client.has_blob(repository, digest).await?)
    }

    async fn mount(
        &self,
        repository: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> StepResult<bool> {
        let Some(from) = from else {
            return Ok(false);
        };
        match self
            .client
            .start_upload(repository, Some((digest, from)))
            .await?
        {
            Mount::Mounted => Ok(true),
            // An upload opened instead: left to expire (the blob is pushed by a new one).
            Mount::Upload(_) => Ok(false),
        }
    }

    async fn put_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        body: ByteStream,
    ) -> StepResult<()> {
        let location = match self.client.start_upload(repository, None).await? {
            Mount::Upload(location) => location,
            Mount::Mounted => return Ok(()),
        };
        self.client
            .finish_upload(repository, &location, digest, size, body)
            .await?;
        Ok(())
    }

    async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &ManifestBytes,
    ) -> StepResult<bool> {
        Ok(self
            .client
            .put_manifest(
                repository,
                reference,
                &manifest.media_type,
                manifest.content.clone(),
            )
            .await?)
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> StepResult<()> {
        Ok(self.client.delete_manifest(repository, digest).await?)
    }

    async fn prepare_namespace(&self, repository: &str) -> StepResult<()> {
        // Harbor (and berth) keep repositories in projects: create the project first.
        if self.client.kind() != "harbor" {
            return Ok(());
        }
        let project = repository.split('/').next().unwrap_or(repository);
        Ok(self.client.ensure_project(project).await?)
    }
}
