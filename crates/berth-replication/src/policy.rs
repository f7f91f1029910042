//! What a replication policy says, as Harbor's API writes it: which repositories and tags it
//! selects (filters), where their names go (destination namespace and flattening), when it
//! runs (trigger) and how (override, deletions, speed). Pure: no IO.

use berth_core::immutable::doublestar_match;
use serde::{Deserialize, Serialize};

/// Harbor's ReplicationFilter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// `name`, `tag`, `label` or `resource`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A pattern (`name`, `tag`), labels (`label`) or `image`/`artifact` (`resource`).
    #[serde(default)]
    pub value: serde_json::Value,
    /// `matches` (the default) or `excludes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoration: Option<String>,
}

/// Harbor's ReplicationTrigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// `manual`, `scheduled` or `event_based`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub trigger_settings: TriggerSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerSettings {
    #[serde(default)]
    pub cron: String,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            kind: "manual".into(),
            trigger_settings: TriggerSettings::default(),
        }
    }
}

/// The part of a policy stored as its definition: everything but its name, state and
/// registries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub dest_namespace: String,
    /// How many leading components of a source name the namespace replaces: -1 (Harbor's
    /// legacy default) replaces one, 0 none (prefix), n that many (the last one stays).
    #[serde(default = "legacy")]
    pub dest_namespace_replace_count: i32,
    #[serde(default)]
    pub trigger: Trigger,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub replicate_deletion: bool,
    /// Replace a destination tag that points elsewhere (Harbor's default, true).
    #[serde(default = "yes")]
    pub r#override: bool,
    /// KiB/s per task; -1 or 0: unlimited.
    #[serde(default = "unlimited")]
    pub speed: i32,
    #[serde(default)]
    pub copy_by_chunk: bool,
    #[serde(default)]
    pub single_active_replication: bool,
}

fn legacy() -> i32 {
    -1
}

fn yes() -> bool {
    true
}

fn unlimited() -> i32 {
    -1
}

impl Default for Definition {
    fn default() -> Self {
        Definition {
            description: String::new(),
            dest_namespace: String::new(),
            dest_namespace_replace_count: legacy(),
            trigger: Trigger::default(),
            filters: Vec::new(),
            replicate_deletion: false,
            r#override: true,
            speed: unlimited(),
            copy_by_chunk: false,
            single_active_replication: false,
        }
    }
}

/// Why a policy cannot be stored, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(message.into()))
}

impl Definition {
    /// Check what the API took; `push`: the policy copies from this registry.
    pub fn validate(&self, push: bool) -> Result<(), PolicyError> {
        match self.trigger.kind.as_str() {
            "manual" => {}
            "scheduled" => {
                let cron = self.trigger.trigger_settings.cron.trim();
                if cron.is_empty() {
                    return fail(
                        "trigger.trigger_settings.cron is required for a scheduled trigger",
                    );
                }
                cron.parse::<berth_core::cron::Cron>()
                    .map_err(|e| PolicyError(format!("trigger.trigger_settings.cron: {e}")))?;
            }
            "event_based" if push => {}
            "event_based" => {
                return fail(
                    "an event_based trigger needs this registry as the source (a push policy)",
                );
            }
            other => {
                return fail(format!(
                    "trigger.type {other:?} is not one of manual, scheduled, event_based"
                ));
            }
        }
        for filter in &self.filters {
            match filter.kind.as_str() {
                "name" | "tag" => {
                    if !filter.value.is_string() {
                        return fail(format!(
                            "the {} filter's value must be a pattern",
                            filter.kind
                        ));
                    }
                }
                "label" | "resource" => {}
                other => {
                    return fail(format!(
                        "filter type {other:?} is not one of name, tag, label, resource"
                    ));
                }
            }
            if let Some(d) = &filter.decoration
                && !matches!(d.as_str(), "matches" | "excludes" | "")
            {
                return fail(format!(
                    "filter decoration {d:?} is not matches or excludes"
                ));
            }
        }
        if self.dest_namespace_replace_count < -1 {
            return fail("dest_namespace_replace_count must be -1 or more");
        }
        if !self.dest_namespace.is_empty()
            && (self.dest_namespace.starts_with('/')
                || self.dest_namespace.ends_with('/')
                || self.dest_namespace.contains("//"))
        {
            return fail("dest_namespace must be a repository path without empty components");
        }
        Ok(())
    }

    fn patterns<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, bool)> + 'a {
        self.filters
            .iter()
            .filter(move |f| f.kind == kind)
            .filter_map(|f| {
                let pattern = f.value.as_str()?;
                let excludes = f.decoration.as_deref() == Some("excludes");
                Some((pattern, excludes))
            })
    }

    /// Whether the policy selects repository `name` (every name filter agrees).
    pub fn selects_repository(&self, name: &str) -> bool {
        self.patterns("name").all(|(pattern, excludes)| {
            pattern.is_empty() || doublestar_match(pattern, name) != excludes
        }) && self.selects_resources()
    }

    /// Whether the policy selects tag `tag` (every tag filter agrees).
    pub fn selects_tag(&self, tag: &str) -> bool {
        self.patterns("tag").all(|(pattern, excludes)| {
            pattern.is_empty() || doublestar_match(pattern, tag) != excludes
        })
    }

    /// Artifacts carry no labels here: a label filter that wants some selects nothing, one
    /// that excludes some selects everything. A resource filter selects images (artifacts),
    /// never charts.
    fn selects_resources(&self) -> bool {
        self.filters.iter().all(|f| match f.kind.as_str() {
            "label" => {
                let wants_labels = match &f.value {
                    serde_json::Value::Array(labels) => !labels.is_empty(),
                    serde_json::Value::String(label) => !label.is_empty(),
                    _ => false,
                };
                !wants_labels || f.decoration.as_deref() == Some("excludes")
            }
            "resource" => !matches!(f.value.as_str(), Some("chart")),
            _ => true,
        })
    }

    /// A repository name without wildcards the name filter gives, if it gives exactly one
    /// (what a remote without a catalog, such as Docker Hub, can still be asked for).
    pub fn literal_repository(&self) -> Option<&str> {
        let mut names = self.patterns("name");
        let (pattern, excludes) = names.next()?;
        let plain =
            !pattern.is_empty() && !pattern.contains(['*', '?', '[', '{', '\\']) && !excludes;
        (plain && names.next().is_none()).then_some(pattern)
    }

    /// The destination's name for source repository `name`.
    pub fn destination(&self, name: &str) -> String {
        if self.dest_namespace.is_empty() {
            return name.to_owned();
        }
        let components: Vec<&str> = name.split('/').collect();
        let replace = match self.dest_namespace_replace_count {
            -1 => 1,
            n => usize::try_from(n).unwrap_or(0),
        };
        // The image's own name always stays.
        let keep_from = replace.min(components.len() - 1);
        let rest = components[keep_from..].join("/");
        format!("{}/{rest}", self.dest_namespace)
    }

    /// Bytes per second a task may move, if limited.
    pub fn bytes_per_second(&self) -> Option<u64> {
        u64::try_from(self.speed)
            .ok()
            .filter(|&kib| kib > 0)
            .map(|kib| kib * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_filters(filters: serde_json::Value) -> Definition {
        serde_json::from_value(serde_json::json!({ "filters": filters })).expect("definition")
    }

    #[test]
    fn name_and_tag_filters_match_and_exclude() {
        let policy = with_filters(serde_json::json!([
            {"type": "name", "value": "library/**"},
            {"type": "tag", "value": "v*", "decoration": "matches"},
            {"type": "tag", "value": "*-rc", "decoration": "excludes"},
        ]));
        assert!(policy.selects_repository("library/nginx"));
        assert!(policy.selects_repository("library/a/b"));
        assert!(!policy.selects_repository("team/nginx"));
        assert!(policy.selects_tag("v1.2"));
        assert!(!policy.selects_tag("v2-rc"));
        assert!(!policy.selects_tag("latest"));
        assert!(Definition::default().selects_repository("any/thing"));
        assert!(Definition::default().selects_tag("any"));
    }

    #[test]
    fn labels_and_charts_select_nothing_here() {
        let wants = with_filters(serde_json::json!([{"type": "label", "value": ["prod"]}]));
        assert!(!wants.selects_repository("a/b"));
        let excludes = with_filters(serde_json::json!([
            {"type": "label", "value": ["prod"], "decoration": "excludes"}
        ]));
        assert!(excludes.selects_repository("a/b"));
        let charts = with_filters(serde_json::json!([{"type": "resource", "value": "chart"}]));
        assert!(!charts.selects_repository("a/b"));
        let images = with_filters(serde_json::json!([{"type": "resource", "value": "image"}]));
        assert!(images.selects_repository("a/b"));
    }

    #[test]
    fn a_single_plain_name_is_literal() {
        let plain = with_filters(serde_json::json!([{"type": "name", "value": "library/nginx"}]));
        assert_eq!(plain.literal_repository(), Some("library/nginx"));
        let glob = with_filters(serde_json::json!([{"type": "name", "value": "library/*"}]));
        assert_eq!(glob.literal_repository(), None);
        assert_eq!(Definition::default().literal_repository(), None);
    }

    #[test]
    fn destination_names_follow_the_namespace_and_flattening() {
        let mut policy = Definition::default();
        assert_eq!(policy.destination("a/b/c/img"), "a/b/c/img");
        policy.dest_namespace = "ns".into();
        // Harbor's legacy default replaces the first component.
        assert_eq!(policy.destination("a/b/c/img"), "ns/b/c/img");
        assert_eq!(policy.destination("img"), "ns/img");
        policy.dest_namespace_replace_count = 0;
        assert_eq!(policy.destination("a/b/c/img"), "ns/a/b/c/img");
        policy.dest_namespace_replace_count = 2;
        assert_eq!(policy.destination("a/b/c/img"), "ns/c/img");
        policy.dest_namespace_replace_count = 9;
        assert_eq!(policy.destination("a/b/c/img"), "ns/img");
    }

    #[test]
    fn bad_policies_are_named() {
        let scheduled: Definition = serde_json::from_value(serde_json::json!({
            "trigger": {"type": "scheduled", "trigger_settings": {"cron": "not a cron"}}
        }))
        .expect("parses");
        assert!(scheduled.validate(true).is_err());
        let event: Definition = serde_json::from_value(serde_json::json!({
            "trigger": {"type": "event_based"}
        }))
        .expect("parses");
        assert!(event.validate(true).is_ok());
        assert!(
            event.validate(false).is_err(),
            "pull policies have no events"
        );
        let filter = with_filters(serde_json::json!([{"type": "size", "value": "1"}]));
        assert!(filter.validate(true).is_err());
        assert_eq!(Definition::default().bytes_per_second(), None);
        let slow = Definition {
            speed: 100,
            ..Definition::default()
        };
        assert_eq!(slow.bytes_per_second(), Some(102_400));
    }
}
