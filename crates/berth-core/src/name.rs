//! Repository names and tags, validated against the distribution spec's grammar.
//!
//! Name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
//! Tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.

use std::fmt;
use std::str::FromStr;

/// Longest repository name accepted. The spec leaves the limit to registries; 255 is what
/// Distribution and most clients use (name plus hostname must fit a reference).
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid repository name {name:?}: {reason}")]
pub struct NameError {
    pub name: String,
    pub reason: &'static str,
}

impl RepositoryName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The project the repository belongs to: its first path component, or `""` for a
    /// name without a `/` (which no project holds). Usage and quotas are counted per
    /// namespace (the metadata schema computes the same column).
    pub fn namespace(&self) -> &str {
        self.0.split_once('/').map_or("", |(first, _)| first)
    }
}

impl FromStr for RepositoryName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| NameError {
            name: s.chars().take(300).collect(),
            reason,
        };
        if s.is_empty() {
            return Err(fail("name is empty"));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(fail("name is longer than 255 characters"));
        }
        for component in s.split('/') {
            valid_component(component).map_err(fail)?;
        }
        Ok(RepositoryName(s.to_owned()))
    }
}

/// One path component: lowercase alphanumeric runs joined by `.`, `_`, `__` or any number
/// of `-`.
fn valid_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component");
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("components must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run; the next byte after it must be alphanumeric (checked by the
        // end-of-component rule and the loop).
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err("only lowercase letters, digits and the separators . _ __ - are allowed");
        }
    }
    Ok(())
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for RepositoryName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tag {0:?}: tags are 1-128 of [A-Za-z0-9_.-] and do not start with . or -")]
pub struct TagError(pub String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 128
            && word(bytes[0])
            && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(TagError(s.chars().take(200).collect()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_the_first_path_component_or_nothing() {
        let name = |s: &str| s.parse::<RepositoryName>().expect("valid");
        assert_eq!(name("team/web/api").namespace(), "team");
        assert_eq!(name("team/app").namespace(), "team");
        assert_eq!(name("alpine").namespace(), "");
    }

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "library/ubuntu",
            "a.b/c_d/e__f/g---h",
            "0/1/2",
            "my-org/team.app",
        ] {
            assert!(ok.parse::<RepositoryName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        let long = "a".repeat(256);
        for bad in [
            "", "A", "a//b", "/a", "a/", "..", "a/../b", "a..b", "a___b", "-a", "a-", "a b", &long,
        ] {
            assert!(bad.parse::<RepositoryName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags() {
        assert!("v1.0_rc-1".parse::<Tag>().is_ok());
        assert!("_x".parse::<Tag>().is_ok());
        assert!(".x".parse::<Tag>().is_err());
        assert!("-x".parse::<Tag>().is_err());
        assert!("".parse::<Tag>().is_err());
        assert!("a".repeat(129).parse::<Tag>().is_err());
        assert!("a".repeat(128).parse::<Tag>().is_ok());
        assert!("sha256:ab".parse::<Tag>().is_err());
    }
}
