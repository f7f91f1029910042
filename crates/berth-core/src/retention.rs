//! Tag retention as Harbor decides it (`algorithm: "or"`): each enabled rule selects
//! repositories and, in them, artifacts by tag (and untagged ones when it says so), then
//! retains some of those by its template; every artifact of a selected repository that no
//! rule retains is removed — except one carrying an immutable tag, which retention never
//! touches. Pure: the plan is a function of the rules, the artifacts and the time, so a dry
//! run and the real run that follows agree.

use crate::immutable::{Selector, doublestar_match};

/// What a rule keeps of the artifacts it selects (Harbor's rule templates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// `latestPushedK`: the K most recently pushed.
    LatestPushed(u64),
    /// `nDaysSinceLastPush`: pushed within the last N days.
    PushedWithinDays(u64),
    /// `nDaysSinceLastPull`: pulled within the last N days.
    PulledWithinDays(u64),
    /// `always`: every one.
    Always,
}

impl Template {
    /// Harbor's template name and its parameter, as its JSON carries them.
    pub fn parse(template: &str, param: Option<u64>) -> Result<Template, String> {
        let needed = || param.ok_or_else(|| format!("template {template} needs its parameter"));
        Ok(match template {
            "latestPushedK" => Template::LatestPushed(needed()?),
            "nDaysSinceLastPush" => Template::PushedWithinDays(needed()?),
            "nDaysSinceLastPull" => Template::PulledWithinDays(needed()?),
            "always" => Template::Always,
            other => return Err(format!("retention template {other:?} is not supported")),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    pub disabled: bool,
    pub template: Template,
    /// `matches`/`excludes` doublestar selectors of tags.
    pub tag_selectors: Vec<Selector>,
    /// Whether untagged artifacts are among what the rule selects (Harbor's `untagged`
    /// extra); if no rule selects them, untagged artifacts are removed.
    pub untagged: bool,
    /// `repoMatches`/`repoExcludes` selectors of repositories (named without the project).
    pub repository_selectors: Vec<Selector>,
}

/// An artifact as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The full name, `project/rest`.
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// Unix seconds.
    pub pushed_at: i64,
    /// Unix seconds; `None` if never pulled.
    pub pulled_at: Option<i64>,
}

fn selects(selectors: &[Selector], name: &str) -> bool {
    selectors.iter().all(|s| {
        let matched = doublestar_match(&s.pattern, name);
        match s.decoration.as_str() {
            "excludes" | "repoExcludes" => !matched,
            _ => matched,
        }
    })
}

impl RetentionRule {
    fn selects_repository(&self, repository: &str) -> bool {
        let within = repository
            .split_once('/')
            .map_or(repository, |(_, rest)| rest);
        !self.disabled && selects(&self.repository_selectors, within)
    }

    fn selects_artifact(&self, candidate: &Candidate) -> bool {
        if candidate.tags.is_empty() {
            return self.untagged;
        }
        candidate
            .tags
            .iter()
            .any(|t| selects(&self.tag_selectors, t))
    }

    /// The indexes (into `candidates`, one repository's) this rule retains.
    fn retained(&self, candidates: &[&Candidate], now: i64) -> Vec<usize> {
        let mut selected: Vec<usize> = (0..candidates.len())
            .filter(|&i| self.selects_artifact(candidates[i]))
            .collect();
        let within = |days: u64, at: Option<i64>| {
            at.is_some_and(|at| at >= now.saturating_sub(days.saturating_mul(86_400) as i64))
        };
        match self.template {
            Template::Always => selected,
            Template::LatestPushed(k) => {
                // Newest first; ties broken by digest so the choice never depends on order.
                selected.sort_by(|&a, &b| {
                    (candidates[b].pushed_at, &candidates[a].digest)
                        .cmp(&(candidates[a].pushed_at, &candidates[b].digest))
                });
                selected.truncate(usize::try_from(k).unwrap_or(usize::MAX));
                selected
            }
            Template::PushedWithinDays(days) => selected
                .into_iter()
                .filter(|&i| within(days, Some(candidates[i].pushed_at)))
                .collect(),
            Template::PulledWithinDays(days) => selected
                .into_iter()
                .filter(|&i| within(days, candidates[i].pulled_at))
                .collect(),
        }
    }
}

/// Why an artifact of a selected repository stays although no rule retains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Retained,
    Immutable,
}

/// Which candidates to remove: indexes into `candidates`, in order. Only repositories some
/// enabled rule selects are touched; in them an artifact goes unless a rule retains it or
/// `immutable(repository, tag)` says one of its tags is immutable.
pub fn plan(
    rules: &[RetentionRule],
    candidates: &[Candidate],
    now: i64,
    immutable: &dyn Fn(&str, &str) -> bool,
) -> Vec<usize> {
    let mut repositories: Vec<&str> = candidates.iter().map(|c| c.repository.as_str()).collect();
    repositories.sort_unstable();
    repositories.dedup();
    let mut removed = Vec::new();
    for repository in repositories {
        let in_scope: Vec<&RetentionRule> = rules
            .iter()
            .filter(|r| r.selects_repository(repository))
            .collect();
        if in_scope.is_empty() {
            continue;
        }
        let indexes: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].repository == repository)
            .collect();
        let own: Vec<&Candidate> = indexes.iter().map(|&i| &candidates[i]).collect();
        let mut kept = vec![false; own.len()];
        for rule in in_scope {
            for i in rule.retained(&own, now) {
                kept[i] = true;
            }
        }
        for (position, candidate) in own.iter().enumerate() {
            let protected = candidate.tags.iter().any(|t| immutable(repository, t));
            if !kept[position] && !protected {
                removed.push(indexes[position]);
            }
        }
    }
    removed.sort_unstable();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(decoration: &str, pattern: &str) -> Selector {
        Selector {
            kind: "doublestar".into(),
            decoration: decoration.into(),
            pattern: pattern.into(),
        }
    }

    fn rule(template: Template, tags: &str, untagged: bool) -> RetentionRule {
        RetentionRule {
            disabled: false,
            template,
            tag_selectors: vec![selector("matches", tags)],
            untagged,
            repository_selectors: vec![selector("repoMatches", "**")],
        }
    }

    fn artifact(
        repository: &str,
        digest: &str,
        tags: &[&str],
        pushed: i64,
        pulled: Option<i64>,
    ) -> Candidate {
        Candidate {
            repository: repository.into(),
            digest: digest.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            pushed_at: pushed,
            pulled_at: pulled,
        }
    }

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_000 * DAY;

    fn none(_: &str, _: &str) -> bool {
        false
    }

    #[test]
    fn the_latest_pushed_are_kept_and_untagged_ones_go() {
        let candidates = [
            artifact("team/app", "a", &["v1"], NOW - 5 * DAY, None),
            artifact("team/app", "b", &["v2"], NOW - 4 * DAY, None),
            artifact("team/app", "c", &["v3"], NOW - 3 * DAY, None),
            artifact("team/app", "d", &[], NOW - DAY, None),
        ];
        let rules = [rule(Template::LatestPushed(2), "**", false)];
        assert_eq!(plan(&rules, &candidates, NOW, &none), [0, 3]);
        let keeping_untagged = [rule(Template::LatestPushed(2), "**", true)];
        assert_eq!(
            plan(&keeping_untagged, &candidates, NOW, &none),
            [0, 1],
            "untagged ones compete for the two places"
        );
    }

    #[test]
    fn rules_are_or_ed_and_each_keeps_what_it_selects() {
        let candidates = [
            artifact(
                "team/app",
                "old-release",
                &["release-1"],
                NOW - 90 * DAY,
                None,
            ),
            artifact(
                "team/app",
                "pulled",
                &["dev-1"],
                NOW - 90 * DAY,
                Some(NOW - DAY),
            ),
            artifact(
                "team/app",
                "stale",
                &["dev-2"],
                NOW - 90 * DAY,
                Some(NOW - 30 * DAY),
            ),
        ];
        let rules = [
            rule(Template::Always, "release-*", false),
            rule(Template::PulledWithinDays(7), "**", false),
        ];
        assert_eq!(plan(&rules, &candidates, NOW, &none), [2]);
        let recent = [rule(Template::PushedWithinDays(100), "**", false)];
        assert!(plan(&recent, &candidates, NOW, &none).is_empty());
    }

    #[test]
    fn immutable_tags_and_unselected_repositories_are_never_touched() {
        let candidates = [
            artifact("team/app", "frozen", &["v1"], NOW - 9 * DAY, None),
            artifact("team/app", "newest", &["v2"], NOW, None),
            artifact("team/other", "elsewhere", &["x"], NOW - 9 * DAY, None),
        ];
        let mut only_app = rule(Template::LatestPushed(1), "**", false);
        only_app.repository_selectors = vec![selector("repoMatches", "app")];
        let frozen = |_: &str, tag: &str| tag == "v1";
        assert!(plan(std::slice::from_ref(&only_app), &candidates, NOW, &frozen).is_empty());
        assert_eq!(plan(&[only_app.clone()], &candidates, NOW, &none), [0]);
        let disabled = RetentionRule {
            disabled: true,
            ..only_app
        };
        assert!(plan(&[disabled], &candidates, NOW, &none).is_empty());
    }

    #[test]
    fn templates_parse_from_harbors_names() {
        assert_eq!(
            Template::parse("latestPushedK", Some(3)),
            Ok(Template::LatestPushed(3))
        );
        assert_eq!(Template::parse("always", None), Ok(Template::Always));
        assert!(Template::parse("latestPushedK", None).is_err());
        assert!(Template::parse("latestActiveK", Some(1)).is_err());
    }
}
