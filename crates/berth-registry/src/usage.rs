//! Storage usage and quotas as the management API, the CLI and `/metrics` ask for them:
//! each answer is one read of counters the metadata store keeps exact (see
//! `berth_meta::usage`), whatever the registry's size.

use berth_core::RepositoryName;
use berth_meta::{NamespaceUsage, Quota, RegistryUsage, Usage};

use crate::{Error, Registry, Result};

impl Registry {
    /// `None` if the repository is unknown.
    pub async fn repository_usage(&self, repository: &RepositoryName) -> Result<Option<Usage>> {
        Ok(self.meta.repository_usage(repository).await?)
    }

    /// A project's usage (zero for one that holds nothing).
    pub async fn project_usage(&self, project: &str) -> Result<Usage> {
        Ok(self.meta.namespace_usage(project).await?)
    }

    /// Every project's usage (and `""`'s: repositories outside any project), by name. What
    /// `/metrics` exports per project.
    pub async fn usage_by_project(&self) -> Result<Vec<NamespaceUsage>> {
        Ok(self.meta.all_namespace_usage().await?)
    }

    pub async fn registry_usage(&self) -> Result<RegistryUsage> {
        Ok(self.meta.registry_usage().await?)
    }

    pub async fn quotas(&self) -> Result<Vec<Quota>> {
        Ok(self.meta.quotas().await?)
    }

    pub async fn quota(&self, project_id: i64) -> Result<Option<Quota>> {
        Ok(self.meta.quota(project_id).await?)
    }

    /// Set a project's storage limit: bytes, or -1 for none (Harbor's values). Whether the
    /// project exists.
    pub async fn set_storage_limit(&self, project_id: i64, storage_limit: i64) -> Result<bool> {
        if storage_limit < berth_meta::usage::UNLIMITED {
            return Err(Error::SizeInvalid(format!(
                "a storage limit is a number of bytes, or -1 for none, not {storage_limit}"
            )));
        }
        Ok(self
            .meta
            .set_storage_limit(project_id, storage_limit)
            .await?)
    }
}
