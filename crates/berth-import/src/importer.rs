//! The import: for each repository of the tree, its blobs (streamed, digest-verified), then
//! its manifests (an index's children before the index), then its tags — all through the
//! registry's own services, so what lands in berth passed the checks a push passes.
//!
//! Idempotent: what berth already has is counted as present and not written again, so a
//! second run imports nothing and fails nothing (and a run after registry:2 took more pushes
//! imports only those).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::sync::Arc;

use berth_core::access::project_of;
use berth_core::manifest::{self, MAX_MANIFEST_BYTES, ParsedManifest};
use berth_core::{Digest, Reference, RepositoryName, Tag};
use berth_meta::MetaStore;
use berth_registry::{Error as RegistryError, Registry, RegistryOptions};
use berth_storage::BlobStore;

use crate::layout::{self, blob_data_path};
use crate::report::{Report, Severity};
use crate::source::SourceTree;

/// What to do about a repository whose project (first path component) does not exist.
/// A push in open mode needs no project; in token mode it is refused unless the pusher may
/// create the project. An import is the operator's own act, so it creates them by default,
/// private, so nothing becomes readable to anonymous users by being imported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProjectPolicy {
    #[default]
    CreatePrivate,
    CreatePublic,
    /// Import the repositories without creating projects (only administrators reach them
    /// in token mode until someone creates the projects).
    Leave,
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Report what would be imported; write nothing.
    pub dry_run: bool,
    /// Only these repositories and those below them (`team` takes `team` and `team/app`);
    /// empty: all.
    pub repositories: Vec<String>,
    pub projects: ProjectPolicy,
}

/// Why an import stopped: the tree could not be read at all, or berth's own stores failed
/// (anything the tree holds that berth cannot take is a [`crate::Finding`] instead).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the registry:2 tree: {0}")]
    Source(#[from] io::Error),
    #[error("berth's stores failed: {0}")]
    Target(String),
}

fn target(e: impl std::fmt::Display) -> ImportError {
    ImportError::Target(e.to_string())
}

/// What one run learns that later repositories reuse.
#[derive(Default)]
struct RunState {
    /// Projects already checked (or created).
    projects_seen: HashSet<String>,
    /// Blobs whose source data failed (wrong digest, unreadable), and why: a blob shared by
    /// many repositories is read once, not once per repository.
    bad_blobs: HashMap<Digest, String>,
}

/// A manifest revision read from the tree, its bytes verified against its digest.
struct SourceManifest {
    bytes: Vec<u8>,
    parsed: ParsedManifest,
}

pub struct Importer {
    registry: Registry,
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    options: ImportOptions,
}

impl Importer {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        options: ImportOptions,
    ) -> Importer {
        let registry = Registry::new(
            meta.clone(),
            blobs.clone(),
            RegistryOptions {
                delete_enabled: false,
                // A server may be running on the same database: read what is there.
                read_cache: false,
                // registry:2 kept every index's children; a missing one is a finding.
                sparse_index: false,
            },
        );
        Importer {
            registry,
            meta,
            blobs,
            options,
        }
    }

    fn wanted(&self, name: &str) -> bool {
        self.options.repositories.is_empty()
            || self.options.repositories.iter().any(|prefix| {
                let prefix = prefix.trim_end_matches('/');
                name == prefix
                    || name
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
    }

    /// Import every (selected) repository of the tree.
    pub async fn run(&self, source: &dyn SourceTree) -> Result<Report, ImportError> {
        let mut report = Report {
            source: source.describe(),
            dry_run: self.options.dry_run,
            ..Default::default()
        };
        let mut state = RunState::default();
        for name in layout::repositories(source).await? {
            if !self.wanted(&name) {
                continue;
            }
            tracing::info!(repository = %name, dry_run = self.options.dry_run, "importing");
            report.repositories += 1;
            self.import_repository(source, &name, &mut state, &mut report)
                .await?;
        }
        Ok(report)
    }

    async fn import_repository(
        &self,
        source: &dyn SourceTree,
        name: &str,
        state: &mut RunState,
        report: &mut Report,
    ) -> Result<(), ImportError> {
        let repository: RepositoryName = match name.parse() {
            Ok(repository) => repository,
            Err(e) => {
                report.find(Severity::Error, name, "repository", e.to_string());
                return Ok(());
            }
        };
        let links = layout::repository_links(source, name).await?;
        for bad in links.bad_links {
            report.find(Severity::Error, name, bad.path, bad.reason);
        }

        // Manifests are read first: the blobs they reference are imported even when the
        // repository's _layers links miss one, so every image that registry:2 served works.
        let mut manifests = BTreeMap::new();
        let mut failed: HashMap<Digest, String> = HashMap::new();
        for digest in &links.revisions {
            match read_manifest(source, digest).await? {
                Ok(m) => {
                    manifests.insert(digest.clone(), m);
                }
                Err(reason) => {
                    report.find(Severity::Error, name, format!("manifest {digest}"), &reason);
                    failed.insert(digest.clone(), reason);
                }
            }
        }
        // Each blob, and whether a manifest needs it (then its absence is an error).
        let mut wanted_blobs: BTreeMap<Digest, bool> =
            links.layers.iter().map(|d| (d.clone(), false)).collect();
        for m in manifests.values() {
            for blob in &m.parsed.blobs {
                wanted_blobs.insert(blob.clone(), true);
            }
        }

        if let Some(project) = project_of(&repository)
            && state.projects_seen.insert(project.to_owned())
        {
            self.ensure_project(project, report).await?;
        }

        let mut available = HashSet::new();
        for (digest, needed) in &wanted_blobs {
            if self
                .import_blob(source, &repository, digest, *needed, state, report)
                .await?
            {
                available.insert(digest.clone());
            }
        }

        // Children before their index: repeat passes until nothing more can be decided.
        let mut done = HashSet::new();
        let mut pending: BTreeSet<Digest> = manifests.keys().cloned().collect();
        loop {
            let mut decided = Vec::new();
            for digest in &pending {
                let m = &manifests[digest];
                let missing_blob = m.parsed.blobs.iter().find(|b| !available.contains(*b));
                let lost_child = m
                    .parsed
                    .manifests
                    .iter()
                    .find(|c| failed.contains_key(*c) || !manifests.contains_key(*c));
                if let Some(blob) = missing_blob {
                    decided.push((
                        digest.clone(),
                        Err(format!(
                            "references blob {blob}, which could not be imported"
                        )),
                    ));
                } else if let Some(child) = lost_child {
                    let why = if failed.contains_key(child) {
                        "which was skipped"
                    } else {
                        "which is not a manifest of the repository"
                    };
                    decided.push((
                        digest.clone(),
                        Err(format!("lists manifest {child}, {why}")),
                    ));
                } else if m.parsed.manifests.iter().all(|c| done.contains(c)) {
                    decided.push((digest.clone(), Ok(())));
                }
            }
            if decided.is_empty() {
                break;
            }
            for (digest, verdict) in decided {
                pending.remove(&digest);
                let verdict = match verdict {
                    Ok(()) => {
                        self.import_manifest(&repository, &digest, &manifests[&digest], report)
                            .await?
                    }
                    Err(reason) => Err(reason),
                };
                match verdict {
                    Ok(()) => {
                        done.insert(digest);
                    }
                    Err(reason) => {
                        report.find(Severity::Error, name, format!("manifest {digest}"), &reason);
                        failed.insert(digest, reason);
                    }
                }
            }
        }
        for digest in pending {
            // Content addressing makes a cycle impossible; say so rather than loop if one
            // is ever crafted.
            report.find(
                Severity::Error,
                name,
                format!("manifest {digest}"),
                "its index references form a cycle",
            );
        }

        for (tag, target_digest) in &links.tags {
            let item = format!("tag {tag}");
            let tag: Tag = match tag.parse() {
                Ok(tag) => tag,
                Err(e) => {
                    report.find(Severity::Error, name, item, e.to_string());
                    continue;
                }
            };
            let Some(digest) = target_digest else {
                report.find(
                    Severity::Warning,
                    name,
                    item,
                    "has no current/link (registry:2 does not serve it either)",
                );
                continue;
            };
            if failed.contains_key(digest) {
                report.find(
                    Severity::Error,
                    name,
                    item,
                    format!("points at manifest {digest}, which was skipped"),
                );
                continue;
            }
            let Some(m) = manifests.get(digest) else {
                report.find(
                    Severity::Warning,
                    name,
                    item,
                    format!(
                        "points at {digest}, which is not a manifest of the repository (deleted; registry:2 does not serve it either)"
                    ),
                );
                continue;
            };
            self.import_tag(&repository, &tag, digest, m, report)
                .await?;
        }
        Ok(())
    }

    async fn ensure_project(&self, project: &str, report: &mut Report) -> Result<(), ImportError> {
        if self
            .meta
            .project_by_name(project)
            .await
            .map_err(target)?
            .is_some()
        {
            return Ok(());
        }
        let public = match self.options.projects {
            ProjectPolicy::Leave => {
                report.projects_missing.push(project.to_owned());
                return Ok(());
            }
            ProjectPolicy::CreatePrivate => false,
            ProjectPolicy::CreatePublic => true,
        };
        if !self.options.dry_run {
            match self.meta.create_project(project, public, None).await {
                // Created meanwhile by someone else: theirs stands.
                Ok(_) | Err(berth_meta::MetaError::Conflict(_)) => {}
                Err(e) => return Err(target(e)),
            }
        }
        report.projects_created.push(project.to_owned());
        Ok(())
    }

    /// Bring one blob into the repository; whether it is there (or would be) afterwards.
    async fn import_blob(
        &self,
        source: &dyn SourceTree,
        repository: &RepositoryName,
        digest: &Digest,
        needed: bool,
        state: &mut RunState,
        report: &mut Report,
    ) -> Result<bool, ImportError> {
        let name = repository.as_str();
        let item = format!("blob {digest}");
        if let Some(reason) = state.bad_blobs.get(digest) {
            report.find(Severity::Error, name, item, reason);
            return Ok(false);
        }
        match self.registry.blob_size(repository, digest).await {
            Ok(_) => {
                report.blobs_present += 1;
                return Ok(true);
            }
            Err(RegistryError::BlobUnknown(_)) => {}
            Err(e) => return Err(target(e)),
        }
        if let Some(size) = self.blobs.stat(digest).await.map_err(target)? {
            // Stored once registry-wide and verified when it was: only the link is new. GC
            // may be deleting those bytes: reserve the digest, check they are still there,
            // and link only the reserved row (else import them as if absent).
            if self.options.dry_run {
                report.blobs_linked += 1;
                return Ok(true);
            }
            let reserved = self
                .registry
                .reserve_blob(digest, size)
                .await
                .map_err(target)?;
            if self.blobs.stat(digest).await.map_err(target)?.is_some() {
                self.meta
                    .link_reserved_blob(repository, digest, reserved)
                    .await
                    .map_err(target)?;
                report.blobs_linked += 1;
                return Ok(true);
            }
        }
        let path = blob_data_path(digest);
        let (severity, gone) = if needed {
            (
                Severity::Error,
                "its data is missing from blobs/, and a manifest needs it",
            )
        } else {
            (
                Severity::Warning,
                "linked, but its data is gone from blobs/ (garbage-collected?): registry:2 does not serve it either",
            )
        };
        if self.options.dry_run {
            return Ok(match source.size(&path).await? {
                Some(size) => {
                    report.blobs_copied += 1;
                    report.bytes_copied += size;
                    true
                }
                None => {
                    report.find(severity, name, item, gone);
                    false
                }
            });
        }
        let Some(bytes) = source.open(&path).await? else {
            report.find(severity, name, item, gone);
            return Ok(false);
        };
        match self.registry.put_blob(repository, digest, bytes).await {
            Ok(size) => {
                report.blobs_copied += 1;
                report.bytes_copied += size;
                Ok(true)
            }
            Err(RegistryError::DigestMismatch { actual, .. }) => {
                let reason =
                    format!("its data does not match its digest (the bytes hash to {actual})");
                report.find(Severity::Error, name, item, &reason);
                state.bad_blobs.insert(digest.clone(), reason);
                Ok(false)
            }
            // The source stream failed part-way (the error is the body's).
            Err(RegistryError::UploadInvalid(reason)) => {
                let reason = format!("cannot read {path}: {reason}");
                report.find(Severity::Error, name, item, &reason);
                state.bad_blobs.insert(digest.clone(), reason);
                Ok(false)
            }
            Err(e) => Err(target(e)),
        }
    }

    /// Store one manifest revision (its references are in place); `Err` is why it was not.
    async fn import_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        m: &SourceManifest,
        report: &mut Report,
    ) -> Result<Result<(), String>, ImportError> {
        let reference = Reference::Digest(digest.clone());
        match self.registry.get_manifest(repository, &reference).await {
            Ok(_) => {
                report.manifests_present += 1;
                return Ok(Ok(()));
            }
            Err(RegistryError::ManifestUnknown(_)) => {}
            Err(e) => return Err(target(e)),
        }
        if !self.options.dry_run {
            match self
                .registry
                .put_manifest(repository, &reference, &[], None, &m.bytes)
                .await
            {
                Ok(_) => {}
                Err(RegistryError::Internal(e)) => return Err(ImportError::Target(e)),
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
        report.manifests_imported += 1;
        Ok(Ok(()))
    }

    /// Point a tag at its (imported) manifest, where registry:2 points it.
    async fn import_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
        m: &SourceManifest,
        report: &mut Report,
    ) -> Result<(), ImportError> {
        let moved = match self
            .registry
            .get_manifest(repository, &Reference::Tag(tag.clone()))
            .await
        {
            Ok(current) if &current.digest == digest => {
                report.tags_present += 1;
                return Ok(());
            }
            Ok(_) => true,
            Err(RegistryError::ManifestUnknown(_)) => false,
            Err(e) => return Err(target(e)),
        };
        if !self.options.dry_run {
            match self
                .registry
                .put_manifest(
                    repository,
                    &Reference::Digest(digest.clone()),
                    std::slice::from_ref(tag),
                    None,
                    &m.bytes,
                )
                .await
            {
                Ok(_) => {}
                Err(RegistryError::Internal(e)) => return Err(ImportError::Target(e)),
                Err(e) => {
                    report.find(
                        Severity::Error,
                        repository.as_str(),
                        format!("tag {tag}"),
                        e.to_string(),
                    );
                    return Ok(());
                }
            }
        }
        if moved {
            report.tags_moved += 1;
        } else {
            report.tags_imported += 1;
        }
        Ok(())
    }
}

/// A manifest revision's bytes, checked against its digest and parsed; `Err` says why it
/// cannot be imported.
async fn read_manifest(
    source: &dyn SourceTree,
    digest: &Digest,
) -> Result<Result<SourceManifest, String>, ImportError> {
    let path = blob_data_path(digest);
    let bytes = match source.read_small(&path, MAX_MANIFEST_BYTES as u64).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(Err("its data is missing from blobs/".into())),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Ok(Err(format!(
                "it is larger than the {MAX_MANIFEST_BYTES} bytes berth accepts for a manifest"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let actual = Digest::of(digest.algorithm(), &bytes);
    if &actual != digest {
        return Ok(Err(format!(
            "its data does not match its digest (the bytes hash to {actual})"
        )));
    }
    // registry:2 keeps no Content-Type: the media type comes from the manifest itself, as
    // registry:2 serves it.
    Ok(match manifest::parse(None, &bytes) {
        Ok(parsed) => Ok(SourceManifest { bytes, parsed }),
        Err(e) => Err(e.to_string()),
    })
}
