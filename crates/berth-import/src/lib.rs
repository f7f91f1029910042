//! Imports a registry:2 (CNCF Distribution 2.x) storage tree into berth without re-pushing:
//! every repository, blob, manifest and tag, with the same digests. It never writes to the
//! source tree — the source is only ever read, through [`SourceTree`].
//!
//! - [`source`]: the read-only view of a tree: [`FsSource`] for the filesystem driver,
//!   [`S3Source`] for the s3 driver's bucket (`s3://bucket/rootdirectory`).
//! - [`layout`]: Distribution's paths and link files.
//! - [`importer`]: the import itself, through the registry's services, and its [`Report`].
//!
//! Every blob's bytes are streamed into berth's blob store and their digest verified in the
//! same pass ([`berth_registry::Registry::put_blob`]); manifests are validated by
//! [`berth_registry::Registry::put_manifest`] as if pushed. Anything the tree holds that
//! cannot be imported is reported and skipped, never fatal for the rest.

pub mod importer;
pub mod layout;
mod report;
pub mod source;

#[cfg(test)]
mod tests;

pub use importer::{ImportError, ImportOptions, Importer, ProjectPolicy};
pub use report::{Finding, Report, Severity};
pub use source::{FsSource, S3Source, SourceTree};
