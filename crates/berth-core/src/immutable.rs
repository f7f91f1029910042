//! Tag immutability rules as Harbor writes them: per project, each rule selects repositories
//! and tags with `doublestar` patterns (`*`, `**`, `?`, `[a-z]`, `{a,b}`), to include
//! (`repoMatches`, `matches`) or exclude (`repoExcludes`, `excludes`). A tag is immutable when
//! an enabled rule selects both its repository (named without its project) and its name.
//! Pure: a function of the rules and the names.

use serde::{Deserialize, Serialize};

/// One selector of a rule (Harbor's `ImmutableSelector`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// `doublestar`, the only kind Harbor's immutability rules use.
    pub kind: String,
    /// `matches`/`excludes` for tags, `repoMatches`/`repoExcludes` for repositories.
    pub decoration: String,
    pub pattern: String,
}

/// The part of a rule that decides (Harbor's `ImmutableRule` without its bookkeeping).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImmutableRule {
    pub disabled: bool,
    pub tag_selectors: Vec<Selector>,
    pub repository_selectors: Vec<Selector>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

impl Selector {
    fn check(&self, decorations: [&str; 2]) -> Result<(), RuleError> {
        if self.kind != "doublestar" {
            return Err(RuleError(format!(
                "selector kind {:?} is not supported: use \"doublestar\"",
                self.kind
            )));
        }
        if !decorations.contains(&self.decoration.as_str()) {
            return Err(RuleError(format!(
                "selector decoration {:?} is not one of {decorations:?}",
                self.decoration
            )));
        }
        if self.pattern.is_empty() {
            return Err(RuleError("a selector's pattern is empty".into()));
        }
        Ok(())
    }

    /// Whether it selects `name`: a match, or for an exclusion, no match.
    fn selects(&self, name: &str) -> bool {
        let matched = doublestar_match(&self.pattern, name);
        match self.decoration.as_str() {
            "excludes" | "repoExcludes" => !matched,
            _ => matched,
        }
    }
}

impl ImmutableRule {
    /// Harbor's validation: one or more selectors of each sort, all doublestar.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.tag_selectors.is_empty() || self.repository_selectors.is_empty() {
            return Err(RuleError(
                "a rule needs tag_selectors and scope_selectors.repository".into(),
            ));
        }
        for selector in &self.tag_selectors {
            selector.check(["matches", "excludes"])?;
        }
        for selector in &self.repository_selectors {
            selector.check(["repoMatches", "repoExcludes"])?;
        }
        Ok(())
    }

    /// Whether the rule makes `tag` of `repository` (named without its project) immutable.
    pub fn protects(&self, repository: &str, tag: &str) -> bool {
        !self.disabled
            && self
                .repository_selectors
                .iter()
                .all(|s| s.selects(repository))
            && self.tag_selectors.iter().all(|s| s.selects(tag))
    }
}

/// Whether any of `rules` makes the tag immutable. `repository` is the full name
/// (`project/rest`); rules see it without the project, as Harbor's do.
pub fn is_immutable(rules: &[ImmutableRule], repository: &str, tag: &str) -> bool {
    let within = repository
        .split_once('/')
        .map_or(repository, |(_, rest)| rest);
    rules.iter().any(|rule| rule.protects(within, tag))
}

/// Harbor's `doublestar` patterns: `*` is any run of characters but `/`, `**` any run at all,
/// `?` one character but `/`, `[...]` a class (`!` or `^` negates, `a-z` ranges), `{a,b}`
/// alternatives (nested too), and `\` makes the next character literal.
pub fn doublestar_match(pattern: &str, name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    expand_braces(pattern).iter().any(|alternative| {
        let pattern: Vec<char> = alternative.chars().collect();
        glob(&pattern, &name)
    })
}

/// Every pattern `{a,b}` alternations stand for, braces gone (unbalanced ones stay literal).
fn expand_braces(pattern: &str) -> Vec<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut depth = 0;
    let mut open = None;
    let mut commas = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '{' => {
                if depth == 0 {
                    open = Some(i);
                    commas.clear();
                }
                depth += 1;
            }
            ',' if depth == 1 => commas.push(i),
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0
                    && let Some(start) = open
                {
                    let prefix: String = chars[..start].iter().collect();
                    let suffix: String = chars[i + 1..].iter().collect();
                    let mut bounds = vec![start];
                    bounds.extend(&commas);
                    bounds.push(i);
                    let mut out = Vec::new();
                    for pair in bounds.windows(2) {
                        let option: String = chars[pair[0] + 1..pair[1]].iter().collect();
                        out.extend(expand_braces(&format!("{prefix}{option}{suffix}")));
                    }
                    return out;
                }
            }
            _ => {}
        }
        i += 1;
    }
    vec![pattern.to_owned()]
}

fn glob(pattern: &[char], name: &[char]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some('*') if pattern.get(1) == Some(&'*') => {
            // `**` also stands for a whole path component: `a/**/b` matches `a/b`.
            let rest = &pattern[2..];
            if rest.first() == Some(&'/') && glob(&rest[1..], name) {
                return true;
            }
            (0..=name.len()).any(|skip| glob(rest, &name[skip..]))
        }
        Some('*') => {
            let rest = &pattern[1..];
            for skip in 0..=name.len() {
                if glob(rest, &name[skip..]) {
                    return true;
                }
                if name.get(skip) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some('?') => name.first().is_some_and(|&c| c != '/') && glob(&pattern[1..], &name[1..]),
        Some('[') => match class(&pattern[1..], name.first().copied()) {
            Some((true, used)) => glob(&pattern[1 + used..], &name[1..]),
            Some((false, _)) => false,
            // No closing bracket: a literal '['.
            None => name.first() == Some(&'[') && glob(&pattern[1..], &name[1..]),
        },
        Some('\\') if pattern.len() > 1 => {
            name.first() == Some(&pattern[1]) && glob(&pattern[2..], &name[1..])
        }
        Some(&literal) => name.first() == Some(&literal) && glob(&pattern[1..], &name[1..]),
    }
}

/// A `[...]` class after its `[`: whether `c` is in it and how many pattern characters it
/// took (with its `]`); `None` if it never closes.
fn class(pattern: &[char], c: Option<char>) -> Option<(bool, usize)> {
    let negated = matches!(pattern.first(), Some('!' | '^'));
    let mut i = usize::from(negated);
    let mut found = false;
    let mut first = true;
    while i < pattern.len() {
        if pattern[i] == ']' && !first {
            let matched = c.is_some_and(|c| c != '/') && found != negated;
            return Some((matched, i + 1));
        }
        first = false;
        let low = pattern[i];
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&h| h != ']') {
            let high = pattern[i + 2];
            found |= c.is_some_and(|c| low <= c && c <= high);
            i += 3;
        } else {
            found |= c == Some(low);
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doublestar_patterns_match_as_harbor_documents() {
        let cases = [
            ("**", "anything/at/all", true),
            ("*", "v1.0", true),
            ("*", "team/app", false),
            ("v*", "v1.2.3", true),
            ("v*", "latest", false),
            ("release-?", "release-1", true),
            ("release-?", "release-10", false),
            ("{latest,stable}", "stable", true),
            ("{latest,stable}", "beta", false),
            ("v{1,2}.*", "v2.9", true),
            ("v{1,{2,3}}", "v3", true),
            ("[0-9]*", "1.0", true),
            ("[!0-9]*", "1.0", false),
            ("[^0-9]*", "x1", true),
            ("app/**", "app/web/api", true),
            ("**/api", "app/web/api", true),
            ("app/**/api", "app/api", true),
            ("app/*", "app/web/api", false),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("{a,b", "{a,b", true),
            ("[abc", "[abc", true),
            ("", "", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(doublestar_match(pattern, name), want, "{pattern} vs {name}");
        }
    }

    fn selector(decoration: &str, pattern: &str) -> Selector {
        Selector {
            kind: "doublestar".into(),
            decoration: decoration.into(),
            pattern: pattern.into(),
        }
    }

    #[test]
    fn a_rule_protects_the_tags_of_the_repositories_it_selects() {
        let rule = ImmutableRule {
            disabled: false,
            tag_selectors: vec![selector("matches", "v*")],
            repository_selectors: vec![selector("repoMatches", "app*")],
        };
        let rules = [rule.clone()];
        assert!(is_immutable(&rules, "team/app", "v1"));
        assert!(is_immutable(&rules, "team/app-web", "v2"));
        assert!(!is_immutable(&rules, "team/app", "latest"));
        assert!(!is_immutable(&rules, "team/db", "v1"));
        let excluding = ImmutableRule {
            disabled: false,
            tag_selectors: vec![selector("excludes", "latest")],
            repository_selectors: vec![selector("repoExcludes", "scratch/**")],
        };
        assert!(excluding.protects("app", "v1"));
        assert!(!excluding.protects("app", "latest"));
        assert!(!excluding.protects("scratch/tmp", "v1"));
        let disabled = ImmutableRule {
            disabled: true,
            ..rule
        };
        assert!(!is_immutable(&[disabled], "team/app", "v1"));
    }

    #[test]
    fn rules_are_validated_as_harbor_does() {
        let good = ImmutableRule {
            disabled: false,
            tag_selectors: vec![selector("matches", "**")],
            repository_selectors: vec![selector("repoMatches", "**")],
        };
        assert!(good.validate().is_ok());
        let mut wrong_kind = good.clone();
        wrong_kind.tag_selectors[0].kind = "regexp".into();
        assert!(wrong_kind.validate().is_err());
        let mut wrong_decoration = good.clone();
        wrong_decoration.repository_selectors[0].decoration = "matches".into();
        assert!(wrong_decoration.validate().is_err());
        let no_tags = ImmutableRule {
            tag_selectors: Vec::new(),
            ..good
        };
        assert!(no_tags.validate().is_err());
    }
}
