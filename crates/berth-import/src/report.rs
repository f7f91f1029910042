//! What an import did, and what it had to leave behind and why.

use std::fmt;

/// How bad a skipped item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Nothing registry:2 could serve is lost: a tag or link that already pointed at
    /// nothing (a deleted manifest, a garbage-collected blob).
    Warning,
    /// Something the tree holds, or claims to hold, is not in berth: corrupt or missing
    /// data, a manifest berth cannot accept. The import exits non-zero.
    Error,
}

/// One skipped item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The repository, or the tree path when there is none.
    pub repository: String,
    /// What was skipped: `blob sha256:…`, `manifest sha256:…`, `tag v1`, a link's path.
    pub item: String,
    pub reason: String,
}

/// Counts of what was (or, in a dry run, would be) imported, and the findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub source: String,
    pub dry_run: bool,
    pub repositories: u64,
    /// Projects created for the repositories' first path components.
    pub projects_created: Vec<String>,
    /// Projects that do not exist and were not created (`ProjectPolicy::Leave`).
    pub projects_missing: Vec<String>,
    /// Blobs whose bytes were copied, and how many bytes.
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    /// Blobs berth already stored for another repository: linked, not copied again.
    pub blobs_linked: u64,
    /// Blobs the repository already had in berth.
    pub blobs_present: u64,
    pub manifests_imported: u64,
    pub manifests_present: u64,
    pub tags_imported: u64,
    /// Tags berth had on another manifest, now pointed where registry:2 points them.
    pub tags_moved: u64,
    pub tags_present: u64,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether anything registry:2 held was left out (the import should exit non-zero).
    pub fn failed(&self) -> bool {
        self.errors() > 0
    }

    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    pub(crate) fn find(
        &mut self,
        severity: Severity,
        repository: &str,
        item: impl Into<String>,
        reason: impl Into<String>,
    ) {
        let finding = Finding {
            severity,
            repository: repository.to_owned(),
            item: item.into(),
            reason: reason.into(),
        };
        // At debug only: the summary lists every finding once, at the end.
        tracing::debug!(
            repository = %finding.repository, item = %finding.item, reason = %finding.reason,
            severity = ?finding.severity, "skipped"
        );
        self.findings.push(finding);
    }
}

/// Decimal megabytes with one digit, as operators compare them with `du -h --si`.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (done, create) = if self.dry_run {
            ("would be ", "would create")
        } else {
            ("", "created")
        };
        writeln!(
            f,
            "registry:2 import from {}{}",
            self.source,
            if self.dry_run {
                " (dry run: nothing written, blob digests not verified)"
            } else {
                ""
            }
        )?;
        writeln!(f, "repositories: {}", self.repositories)?;
        if !self.projects_created.is_empty() {
            writeln!(
                f,
                "projects:     {create} {}",
                self.projects_created.join(", ")
            )?;
        }
        if !self.projects_missing.is_empty() {
            writeln!(
                f,
                "projects:     not created (only administrators reach their repositories in token mode): {}",
                self.projects_missing.join(", ")
            )?;
        }
        writeln!(
            f,
            "blobs:        {} {done}copied ({}), {} {done}linked (already stored), {} already present",
            self.blobs_copied,
            megabytes(self.bytes_copied),
            self.blobs_linked,
            self.blobs_present
        )?;
        writeln!(
            f,
            "manifests:    {} {done}imported, {} already present",
            self.manifests_imported, self.manifests_present
        )?;
        writeln!(
            f,
            "tags:         {} {done}imported, {} {done}moved, {} already present",
            self.tags_imported, self.tags_moved, self.tags_present
        )?;
        writeln!(
            f,
            "skipped:      {} errors, {} warnings",
            self.errors(),
            self.warnings()
        )?;
        let mut findings: Vec<&Finding> = self.findings.iter().collect();
        // Errors first; a stable sort keeps each severity in the order found.
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        for finding in findings {
            let severity = match finding.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            writeln!(
                f,
                "  {severity:<7} {} {}: {}",
                finding.repository, finding.item, finding.reason
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_summary_says_what_would_happen_errors_first() {
        let mut report = Report {
            source: "/srv/registry/docker/registry/v2".into(),
            dry_run: true,
            repositories: 2,
            projects_created: vec!["team".into()],
            blobs_copied: 3,
            bytes_copied: 2_500_000,
            blobs_linked: 1,
            manifests_imported: 2,
            tags_imported: 2,
            ..Default::default()
        };
        report.find(Severity::Warning, "team/a", "tag old", "points at nothing");
        report.find(
            Severity::Error,
            "team/b",
            "blob sha256:ab",
            "data is corrupt",
        );

        assert_eq!(
            report.to_string(),
            "registry:2 import from /srv/registry/docker/registry/v2 (dry run: nothing written, blob digests not verified)\n\
             repositories: 2\n\
             projects:     would create team\n\
             blobs:        3 would be copied (2.5 MB), 1 would be linked (already stored), 0 already present\n\
             manifests:    2 would be imported, 0 already present\n\
             tags:         2 would be imported, 0 would be moved, 0 already present\n\
             skipped:      1 errors, 1 warnings\n\
             \x20 error   team/b blob sha256:ab: data is corrupt\n\
             \x20 warning team/a tag old: points at nothing\n"
        );
        assert!(report.failed());
    }
}
