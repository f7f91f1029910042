//! Retention runs: a project's artifacts (each repository's listed artifacts with their tags,
//! push and latest pull times) planned by `berth_core::retention::plan` and, unless it is a
//! dry run, deleted as Harbor's artifact delete does. The plan is made from one reading of
//! the project, so a dry run lists exactly what the real run on the same state removes;
//! immutable tags are never removed (the plan skips them, and the delete refuses them).
//! What a run deletes is unlinked: the next garbage collection frees its blobs.

use berth_core::mgmt::{ArtifactFilter, ArtifactKey, ArtifactWith, Order};
use berth_core::retention::{Candidate, RetentionRule, plan};
use berth_core::{Digest, Reference, RepositoryName};
use berth_meta::ArtifactQuery;

use crate::immutable::TagProtection;
use crate::{Error, Registry, Result};

/// Repositories of a project a run reads at most.
const MAX_REPOSITORIES: usize = 100_000;
/// Artifacts read per page.
const PAGE: u64 = 500;

/// One artifact a run removes (or, dry, would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub repository: RepositoryName,
    pub digest: Digest,
    pub tags: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    /// Artifacts looked at.
    pub considered: usize,
    /// Removed (or, dry, to remove), in repository order.
    pub removed: Vec<Removal>,
    /// Planned removals that did not happen, with why (an index lists it, it went meanwhile).
    pub skipped: Vec<(Removal, String)>,
}

impl Registry {
    /// Apply `rules` to the project's artifacts at `now` (Unix seconds).
    pub async fn run_retention(
        &self,
        project: &str,
        rules: &[RetentionRule],
        now: i64,
        dry_run: bool,
    ) -> Result<RetentionOutcome> {
        let names = self
            .meta
            .list_repositories_in(&[project.to_owned()], None, MAX_REPOSITORIES)
            .await?;
        let mut candidates = Vec::new();
        let mut protections: Vec<(String, TagProtection)> = Vec::new();
        for name in names {
            let Ok(repository) = name.parse::<RepositoryName>() else {
                continue;
            };
            protections.push((name.clone(), self.tag_protection(&repository).await?));
            candidates.extend(self.candidates(&repository).await?);
        }
        let immutable = |repository: &str, tag: &str| {
            protections
                .iter()
                .any(|(name, protection)| name == repository && protection.protects(tag))
        };
        let planned = plan(rules, &candidates, now, &immutable);
        let mut outcome = RetentionOutcome {
            considered: candidates.len(),
            ..Default::default()
        };
        for index in planned {
            let candidate = &candidates[index];
            let removal = Removal {
                repository: candidate
                    .repository
                    .parse()
                    .map_err(|e| Error::Internal(format!("repository name: {e}")))?,
                digest: candidate
                    .digest
                    .parse()
                    .map_err(|e| Error::Internal(format!("digest: {e}")))?,
                tags: candidate.tags.clone(),
            };
            if dry_run {
                outcome.removed.push(removal);
                continue;
            }
            let reference = Reference::Digest(removal.digest.clone());
            match self.delete_artifact(&removal.repository, &reference).await {
                Ok(_) => outcome.removed.push(removal),
                Err(
                    e @ (Error::ArtifactReferenced { .. }
                    | Error::ManifestUnknown(_)
                    | Error::TagImmutable(_)),
                ) => outcome.skipped.push((removal, e.to_string())),
                Err(e) => return Err(e),
            }
        }
        Ok(outcome)
    }

    /// A repository's listed artifacts (Harbor's base collection) as retention sees them.
    async fn candidates(&self, repository: &RepositoryName) -> Result<Vec<Candidate>> {
        let filter = ArtifactFilter::default();
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let page = self
                .meta
                .artifact_page(
                    repository,
                    &ArtifactQuery {
                        filter: &filter,
                        order: Order {
                            key: ArtifactKey::PushTime,
                            descending: true,
                        },
                        with: ArtifactWith {
                            tags: true,
                            accessories: false,
                        },
                        offset,
                        limit: PAGE,
                    },
                )
                .await?;
            let Some(page) = page else { break };
            let count = page.items.len() as u64;
            out.extend(page.items.into_iter().map(|info| {
                Candidate {
                    repository: repository.to_string(),
                    digest: info.digest.to_string(),
                    tags: info
                        .tags
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| t.name)
                        .collect(),
                    pushed_at: info.pushed_at,
                    pulled_at: info.pulled_at_ms.map(|ms| ms / 1000),
                }
            }));
            offset += count;
            if count < PAGE {
                break;
            }
        }
        Ok(out)
    }
}
