//! Retention runs: a project's artifacts (each repository's listed artifacts with their tags,
//! push and latest pull times) planned by `berth_core::retention::plan` and, unless it is a
//! dry run, deleted as Harbor's artifact delete does. The plan is made from one reading of
//! the project, so a dry run lists exactly what the real run on the same state removes;
//! immutable tags are never removed (the plan skips them, and the delete refuses them).
//! What a run deletes is unlinked: the next garbage collection frees its blobs.

use berth_core::immutable::{ImmutableRule, Selector};
use berth_core::mgmt::{ArtifactFilter, ArtifactKey, ArtifactWith, Order};
use berth_core::retention::{Candidate, RetentionRule, Template, plan};
use berth_core::time::now_ms;
use berth_core::{Digest, Reference, RepositoryName};
use berth_meta::ArtifactQuery;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

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

/// A recorded run: its id, and the artifacts it removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionExecution {
    pub run_id: i64,
    pub removed: Vec<Removal>,
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
        let mut pending = Vec::new();
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
            } else {
                pending.push(removal);
            }
        }
        // An index of the same run may still list a planned artifact: delete in passes, so
        // that it goes once the index has (and the run removes what the dry run listed).
        loop {
            let mut referenced = Vec::new();
            let before = pending.len();
            for removal in pending {
                let reference = Reference::Digest(removal.digest.clone());
                match self.delete_artifact(&removal.repository, &reference).await {
                    Ok(_) => outcome.removed.push(removal),
                    Err(e @ Error::ArtifactReferenced { .. }) => referenced.push((removal, e)),
                    Err(e @ (Error::ManifestUnknown(_) | Error::TagImmutable(_))) => {
                        outcome.skipped.push((removal, e.to_string()))
                    }
                    Err(e) => return Err(e),
                }
            }
            if referenced.is_empty() || referenced.len() == before {
                outcome
                    .skipped
                    .extend(referenced.into_iter().map(|(r, e)| (r, e.to_string())));
                break;
            }
            pending = referenced.into_iter().map(|(r, _)| r).collect();
        }
        outcome.removed.sort_by(|a, b| {
            (a.repository.as_str(), a.digest.to_string())
                .cmp(&(b.repository.as_str(), b.digest.to_string()))
        });
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

/// Harbor's RetentionPolicy JSON, the parts berth reads.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PolicyJson {
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub rules: Vec<RuleJson>,
    #[serde(default)]
    pub trigger: Option<Value>,
    pub scope: PolicyScope,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PolicyScope {
    pub level: String,
    #[serde(rename = "ref")]
    pub reference: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RuleJson {
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub action: Option<String>,
    pub template: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub tag_selectors: Vec<SelectorJson>,
    #[serde(default)]
    pub scope_selectors: ScopeJson,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ScopeJson {
    #[serde(default)]
    pub repository: Vec<SelectorJson>,
}

/// A selector with Harbor's `extras` (`{"untagged": true}` as a JSON string).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SelectorJson {
    pub kind: String,
    pub decoration: String,
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<String>,
}

impl SelectorJson {
    fn selector(&self) -> Selector {
        Selector {
            kind: self.kind.clone(),
            decoration: self.decoration.clone(),
            pattern: self.pattern.clone(),
        }
    }

    fn untagged(&self) -> bool {
        self.extras
            .as_deref()
            .and_then(|e| serde_json::from_str::<Value>(e).ok())
            .and_then(|e| e.get("untagged").and_then(Value::as_bool))
            .unwrap_or(false)
    }
}

impl PolicyJson {
    /// The schedule its trigger names (`trigger.settings.cron`), if any.
    pub fn cron(&self) -> Option<&str> {
        self.trigger
            .as_ref()
            .and_then(|t| t.pointer("/settings/cron"))
            .and_then(Value::as_str)
            .filter(|c| !c.trim().is_empty())
    }

    /// The rules, checked as Harbor checks them.
    pub fn rules(&self) -> Result<Vec<RetentionRule>> {
        let invalid = |m: String| Error::RuleInvalid(m);
        if self.scope.level != "project" {
            return Err(invalid(
                "a retention policy's scope level is \"project\"".into(),
            ));
        }
        if self.algorithm.as_deref().is_some_and(|a| a != "or") {
            return Err(invalid("a retention policy's algorithm is \"or\"".into()));
        }
        self.rules
            .iter()
            .map(|rule| {
                if rule.action.as_deref().is_some_and(|a| a != "retain") {
                    return Err(invalid("a retention rule's action is \"retain\"".into()));
                }
                let param = rule.params.get(&rule.template).and_then(Value::as_u64);
                let template = Template::parse(&rule.template, param).map_err(invalid)?;
                let tag_selectors: Vec<Selector> = rule
                    .tag_selectors
                    .iter()
                    .map(SelectorJson::selector)
                    .collect();
                let repository_selectors: Vec<Selector> = rule
                    .scope_selectors
                    .repository
                    .iter()
                    .map(SelectorJson::selector)
                    .collect();
                // The same selector grammar as immutability rules.
                ImmutableRule {
                    disabled: rule.disabled,
                    tag_selectors: tag_selectors.clone(),
                    repository_selectors: repository_selectors.clone(),
                }
                .validate()
                .map_err(|e| invalid(e.0))?;
                Ok(RetentionRule {
                    disabled: rule.disabled,
                    template,
                    untagged: rule.tag_selectors.iter().any(SelectorJson::untagged),
                    tag_selectors,
                    repository_selectors,
                })
            })
            .collect()
    }
}

/// A policy as stored, parsed.
#[derive(Debug, Clone)]
pub struct StoredPolicy {
    pub id: i64,
    pub project_id: i64,
    pub policy: PolicyJson,
}

fn parse_policy(text: &str) -> Result<PolicyJson> {
    serde_json::from_str(text).map_err(|e| Error::RuleInvalid(format!("retention policy: {e}")))
}

impl Registry {
    /// Validate and store a project's policy; its id.
    pub async fn create_retention_policy(&self, policy: &PolicyJson) -> Result<i64> {
        policy.rules()?;
        if self
            .meta
            .project_by_id(policy.scope.reference)
            .await?
            .is_none()
        {
            return Err(Error::RuleInvalid(format!(
                "scope.ref: project {} not found",
                policy.scope.reference
            )));
        }
        let text = serde_json::to_string(policy).map_err(|e| Error::Internal(e.to_string()))?;
        match self
            .meta
            .create_retention_policy(policy.scope.reference, &text)
            .await
        {
            Err(berth_meta::MetaError::Conflict(_)) => {
                Err(Error::PolicyExists(policy.scope.reference))
            }
            other => Ok(other?),
        }
    }

    /// Every policy (what the scheduler looks through).
    pub async fn retention_policies(&self) -> Result<Vec<StoredPolicy>> {
        self.meta
            .retention_policies()
            .await?
            .into_iter()
            .map(|row| {
                Ok(StoredPolicy {
                    id: row.id,
                    project_id: row.project_id,
                    policy: parse_policy(&row.policy)?,
                })
            })
            .collect()
    }

    pub async fn retention_policy(&self, id: i64) -> Result<Option<StoredPolicy>> {
        let Some(row) = self.meta.retention_policy(id).await? else {
            return Ok(None);
        };
        Ok(Some(StoredPolicy {
            id: row.id,
            project_id: row.project_id,
            policy: parse_policy(&row.policy)?,
        }))
    }

    /// Whether it exists (now changed). Its project stays.
    pub async fn update_retention_policy(&self, id: i64, policy: &PolicyJson) -> Result<bool> {
        policy.rules()?;
        let Some(stored) = self.retention_policy(id).await? else {
            return Ok(false);
        };
        let mut policy = policy.clone();
        policy.scope.reference = stored.project_id;
        let text = serde_json::to_string(&policy).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(self.meta.update_retention_policy(id, &text).await?)
    }

    pub async fn delete_retention_policy(&self, id: i64) -> Result<bool> {
        Ok(self.meta.delete_retention_policy(id).await?)
    }

    /// Run a policy now, dry or not, and record the run (also when it fails); the run's id
    /// and what it removed (nothing when dry).
    pub async fn execute_retention(
        &self,
        id: i64,
        dry_run: bool,
        trigger: &str,
    ) -> Result<RetentionExecution> {
        let stored = self
            .retention_policy(id)
            .await?
            .ok_or(Error::PolicyUnknown(id))?;
        let started_at = now_ms();
        let outcome = async {
            let project = self
                .meta
                .project_by_id(stored.project_id)
                .await?
                .ok_or_else(|| Error::NameUnknown(format!("project {}", stored.project_id)))?;
            let rules = stored.policy.rules()?;
            self.run_retention(&project.name, &rules, started_at / 1000, dry_run)
                .await
        }
        .await;
        let (status, result) = match &outcome {
            Ok(outcome) => ("Succeed", outcome_json(outcome)),
            Err(e) => ("Error", json!({"error": e.to_string()})),
        };
        let run = berth_meta::RetentionRunRow {
            id: 0,
            policy_id: id,
            dry_run,
            trigger: trigger.to_owned(),
            status: status.to_owned(),
            started_at,
            finished_at: now_ms(),
            result: result.to_string(),
        };
        let run_id = self.meta.record_retention_run(&run).await?;
        outcome.map(|outcome| RetentionExecution {
            run_id,
            removed: if dry_run { Vec::new() } else { outcome.removed },
        })
    }

    pub async fn retention_runs(&self, id: i64) -> Result<Vec<berth_meta::RetentionRunRow>> {
        Ok(self.meta.retention_runs(id).await?)
    }
}

/// What a run records: how many artifacts it looked at, what it removed, what it skipped.
fn outcome_json(outcome: &RetentionOutcome) -> Value {
    let removal = |r: &Removal| json!({"repository": r.repository.as_str(), "digest": r.digest.to_string(), "tags": r.tags});
    json!({
        "considered": outcome.considered,
        "removed": outcome.removed.iter().map(removal).collect::<Vec<_>>(),
        "skipped": outcome.skipped.iter().map(|(r, why)| {
            let mut entry = removal(r);
            entry["reason"] = json!(why);
            entry
        }).collect::<Vec<_>>(),
    })
}
