//! `berth import registry2 PATH|s3://…`: the command line over `berth_import`, on the data dir
//! `serve` would use. It only ever reads the source tree, never modifies it.

use std::path::{Path, PathBuf};

use berth_import::{FsSource, ImportOptions, Importer, ProjectPolicy, S3Source, SourceTree};
use clap::{Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import a registry:2 (Distribution 2.x) storage tree without re-pushing: every
    /// repository, blob, manifest and tag, same digests. PATH is the filesystem driver's
    /// `rootdirectory` (holding docker/registry/v2) or that v2 directory, or
    /// `s3://bucket[/rootdirectory]` for the s3 driver (endpoint, region and credentials from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Running it
    /// again imports only what is new. Exits non-zero if anything was skipped as an error.
    Registry2 {
        path: PathBuf,
        /// Report what would be imported; write nothing (blob digests are not verified).
        #[arg(long)]
        dry_run: bool,
        /// Only this repository and those below it (`team` takes team/app); repeatable.
        #[arg(long = "repository", value_name = "PREFIX")]
        repositories: Vec<String>,
        /// Create the projects (first name components) that do not exist.
        #[arg(long, value_enum, default_value_t = CreateProjects::Private)]
        create_projects: CreateProjects,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CreateProjects {
    /// Private: only administrators (and members added later) may pull.
    Private,
    /// Public: anyone may pull.
    Public,
    /// Leave them missing: in token mode only administrators reach those repositories.
    No,
}

pub async fn import(command: ImportCommand, flags: &crate::Flags) -> Result<(), String> {
    let ImportCommand::Registry2 {
        path,
        dry_run,
        repositories,
        create_projects,
    } = command;
    let config = flags.load().map_err(|e| e.to_string())?;
    let text = path.to_string_lossy().into_owned();
    let source: Box<dyn SourceTree> = if text.starts_with("s3://") {
        Box::new(S3Source::open(&text).map_err(|e| e.to_string())?)
    } else if text.contains("://") {
        return Err(format!(
            "{text}: a registry:2 tree is a directory or s3://bucket[/rootdirectory]"
        ));
    } else {
        // registry:2's own REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY also names berth's data
        // dir: left set from the old deployment, it would make berth write into the tree it
        // reads.
        if overlapping(&path, &config.data_dir) {
            return Err(format!(
                "the data directory {} and the registry:2 tree {} overlap: berth would write into the tree it imports (set --data-dir elsewhere)",
                config.data_dir.display(),
                path.display()
            ));
        }
        Box::new(FsSource::open(&path).map_err(|e| e.to_string())?)
    };
    let meta = crate::open_metadata(&config).await?;
    let blobs = crate::open_blobs(&config)?;
    let options = ImportOptions {
        dry_run,
        repositories,
        projects: match create_projects {
            CreateProjects::Private => ProjectPolicy::CreatePrivate,
            CreateProjects::Public => ProjectPolicy::CreatePublic,
            CreateProjects::No => ProjectPolicy::Leave,
        },
    };
    let importer = Importer::new(meta.store(), blobs, options);
    let result = importer.run(source.as_ref()).await;
    meta.close().await;
    let report = result.map_err(|e| e.to_string())?;
    print!("{report}");
    if report.failed() {
        return Err(format!(
            "{} item(s) of the registry:2 tree could not be imported (the errors above)",
            report.errors()
        ));
    }
    Ok(())
}

/// The absolute form of a path that may not exist yet (its nearest existing ancestor
/// resolved, symlinks included).
fn resolved(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
            }
            _ => return path.to_owned(),
        }
    }
}

/// Whether one directory is the other or inside it.
fn overlapping(a: &Path, b: &Path) -> bool {
    let (a, b) = (resolved(a), resolved(b));
    a.starts_with(&b) || b.starts_with(&a)
}

#[cfg(test)]
mod tests {
    use super::overlapping;

    #[test]
    fn a_data_dir_inside_or_around_the_tree_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("registry");
        std::fs::create_dir_all(tree.join("docker/registry/v2")).expect("mkdir");

        assert!(overlapping(&tree, &tree));
        assert!(overlapping(&tree, &tree.join("berth-data")));
        assert!(overlapping(&tree.join("docker/registry/v2"), dir.path()));
        assert!(!overlapping(&tree, &dir.path().join("berth-data")));
    }
}
