//! Tag immutability: a project's rules (Harbor's, stored by `berth_meta::immutable`), what
//! they protect (`berth_core::immutable`), and the refusals — a push that would move a
//! protected tag (decided by the store inside the push's transaction), a delete of a
//! protected tag, and a delete of a manifest that carries one. Pushing a new tag that a rule
//! protects is allowed: it is immutable from then on.

use berth_core::immutable::{ImmutableRule, Selector, is_immutable};
use berth_core::mgmt::ArtifactWith;
use berth_core::{Digest, Reference, RepositoryName, Tag};
use berth_meta::ImmutableRuleRow;
use serde::{Deserialize, Serialize};

use crate::{Error, Registry, Result};

/// Harbor's selectors of a rule, as stored (`ImmutableRuleRow::selectors`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Selectors {
    #[serde(default)]
    pub tag_selectors: Vec<Selector>,
    #[serde(default)]
    pub scope_selectors: ScopeSelectors,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScopeSelectors {
    #[serde(default)]
    pub repository: Vec<Selector>,
}

/// A rule as the management API shows it.
#[derive(Debug, Clone)]
pub struct StoredRule {
    pub id: i64,
    pub project_id: i64,
    pub disabled: bool,
    pub priority: i64,
    pub selectors: Selectors,
}

impl StoredRule {
    fn of(row: ImmutableRuleRow) -> Result<StoredRule> {
        let selectors = serde_json::from_str(&row.selectors)
            .map_err(|e| Error::Internal(format!("immutable rule {}: {e}", row.id)))?;
        Ok(StoredRule {
            id: row.id,
            project_id: row.project_id,
            disabled: row.disabled,
            priority: row.priority,
            selectors,
        })
    }

    pub fn rule(&self) -> ImmutableRule {
        ImmutableRule {
            disabled: self.disabled,
            tag_selectors: self.selectors.tag_selectors.clone(),
            repository_selectors: self.selectors.scope_selectors.repository.clone(),
        }
    }
}

/// What a repository's rules protect, read once for a listing's tags.
#[derive(Debug, Clone, Default)]
pub struct TagProtection {
    repository: String,
    rules: Vec<ImmutableRule>,
}

impl TagProtection {
    /// Whether the tag is immutable (Harbor's Tag `immutable`).
    pub fn protects(&self, tag: &str) -> bool {
        is_immutable(&self.rules, &self.repository, tag)
    }
}

impl Registry {
    /// The repository's rules, to tell which of its tags are immutable.
    pub async fn tag_protection(&self, repository: &RepositoryName) -> Result<TagProtection> {
        Ok(TagProtection {
            repository: repository.as_str().to_owned(),
            rules: self.rules_for(repository).await?,
        })
    }

    pub async fn immutable_rules(&self, project_id: i64) -> Result<Vec<StoredRule>> {
        self.meta
            .immutable_rules(project_id)
            .await?
            .into_iter()
            .map(StoredRule::of)
            .collect()
    }

    /// Validate and store a rule; its id.
    pub async fn create_immutable_rule(
        &self,
        project_id: i64,
        disabled: bool,
        priority: i64,
        selectors: &Selectors,
    ) -> Result<i64> {
        let text = validated(disabled, selectors)?;
        Ok(self
            .meta
            .create_immutable_rule(project_id, disabled, priority, &text)
            .await?)
    }

    /// Whether the project has the rule (now changed).
    pub async fn update_immutable_rule(
        &self,
        project_id: i64,
        id: i64,
        disabled: bool,
        priority: i64,
        selectors: &Selectors,
    ) -> Result<bool> {
        let text = validated(disabled, selectors)?;
        Ok(self
            .meta
            .update_immutable_rule(project_id, id, disabled, priority, &text)
            .await?)
    }

    pub async fn delete_immutable_rule(&self, project_id: i64, id: i64) -> Result<bool> {
        Ok(self.meta.delete_immutable_rule(project_id, id).await?)
    }

    /// The enabled rules of the repository's project.
    async fn rules_for(&self, repository: &RepositoryName) -> Result<Vec<ImmutableRule>> {
        if repository.namespace().is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.meta.immutable_rules_in(repository.namespace()).await?;
        rows.into_iter()
            .filter(|row| !row.disabled)
            .map(|row| StoredRule::of(row).map(|rule| rule.rule()))
            .collect()
    }

    /// Of `tags`, those the repository's rules make immutable (what a push may not move).
    pub(crate) async fn immutable_among(
        &self,
        repository: &RepositoryName,
        tags: &[Tag],
    ) -> Result<Vec<Tag>> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let rules = self.rules_for(repository).await?;
        Ok(tags
            .iter()
            .filter(|tag| is_immutable(&rules, repository.as_str(), tag.as_str()))
            .cloned()
            .collect())
    }

    /// Refuse deleting `tag` when a rule protects it.
    pub(crate) async fn refuse_immutable_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<()> {
        match self
            .immutable_among(repository, std::slice::from_ref(tag))
            .await?
            .first()
        {
            Some(tag) => Err(Error::TagImmutable(tag.to_string())),
            None => Ok(()),
        }
    }

    /// Refuse deleting the manifest `digest` when a rule protects one of its tags.
    pub(crate) async fn refuse_immutable_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<()> {
        let rules = self.rules_for(repository).await?;
        if rules.is_empty() {
            return Ok(());
        }
        let with_tags = ArtifactWith {
            tags: true,
            accessories: false,
        };
        let Some(info) = self
            .meta
            .artifact(repository, &Reference::Digest(digest.clone()), with_tags)
            .await?
        else {
            return Ok(());
        };
        match info
            .tags
            .unwrap_or_default()
            .into_iter()
            .find(|tag| is_immutable(&rules, repository.as_str(), &tag.name))
        {
            Some(tag) => Err(Error::TagImmutable(tag.name)),
            None => Ok(()),
        }
    }
}

/// A rule's selectors checked as Harbor checks them, as the JSON to store.
fn validated(disabled: bool, selectors: &Selectors) -> Result<String> {
    let rule = ImmutableRule {
        disabled,
        tag_selectors: selectors.tag_selectors.clone(),
        repository_selectors: selectors.scope_selectors.repository.clone(),
    };
    rule.validate().map_err(|e| Error::RuleInvalid(e.0))?;
    serde_json::to_string(selectors).map_err(|e| Error::Internal(e.to_string()))
}
