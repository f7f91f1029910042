//! Tag immutability rules as stored: per project, Harbor's selectors kept as the JSON the
//! API took (what they mean is `berth_core::immutable`). The rule that no immutable tag moves
//! is enforced by the store itself: [`crate::NewManifest::immutable_tags`] is checked in the
//! transaction that would move them.

use async_trait::async_trait;

use crate::Result;

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableRuleRow {
    pub id: i64,
    pub project_id: i64,
    pub disabled: bool,
    pub priority: i64,
    /// `{"tag_selectors": [...], "scope_selectors": {"repository": [...]}}`.
    pub selectors: String,
}

#[async_trait]
pub trait ImmutableRuleStore: Send + Sync {
    /// A project's rules, by id.
    async fn immutable_rules(&self, project_id: i64) -> Result<Vec<ImmutableRuleRow>>;
    /// The rules of the project a repository's namespace names (none for a namespace no
    /// project has).
    async fn immutable_rules_in(&self, namespace: &str) -> Result<Vec<ImmutableRuleRow>>;
    /// The new rule's id.
    async fn create_immutable_rule(
        &self,
        project_id: i64,
        disabled: bool,
        priority: i64,
        selectors: &str,
    ) -> Result<i64>;
    /// Whether the project has that rule (and it now reads so).
    async fn update_immutable_rule(
        &self,
        project_id: i64,
        id: i64,
        disabled: bool,
        priority: i64,
        selectors: &str,
    ) -> Result<bool>;
    async fn delete_immutable_rule(&self, project_id: i64, id: i64) -> Result<bool>;
}
