//! The services' error: one variant per way a request can fail, each mapped to the spec's
//! error code and status. Only [`Error::Internal`] is the registry's fault.

use berth_core::{Digest, ErrorCode};
use berth_meta::MetaError;
use berth_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob {0} is not in this repository")]
    BlobUnknown(Digest),
    #[error("upload session unknown: it may have completed, been cancelled or expired")]
    UploadUnknown,
    #[error("{0}")]
    UploadInvalid(String),
    /// A chunk that does not start where the upload is (out of order, or a retry).
    #[error("chunk does not start at the upload's current offset {offset}")]
    RangeInvalid { offset: u64 },
    #[error("digest mismatch: the client said {expected}, the content is {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("manifest references {0}, which is not in this repository: push it first")]
    ManifestBlobUnknown(Digest),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest {0} is not in this repository")]
    ManifestUnknown(String),
    #[error("repository {0} is not known to this registry")]
    NameUnknown(String),
    #[error("manifest is larger than the {limit} bytes this registry accepts", limit = berth_core::manifest::MAX_MANIFEST_BYTES)]
    ManifestTooLarge,
    #[error("{0}")]
    SizeInvalid(String),
    #[error("deletes are disabled on this registry")]
    DeleteDisabled,
    /// Harbor's API: a tag of that name is in the repository already.
    #[error("tag {0} already exists in the repository")]
    TagExists(String),
    /// Harbor's API: the tag is not on that artifact.
    #[error("tag {tag} is not attached to artifact {artifact}")]
    TagUnknown { tag: String, artifact: String },
    /// Harbor's API: an index lists the artifact, so it cannot be deleted alone.
    #[error("the artifact {digest} is referenced by the index {parent}: delete the index first")]
    ArtifactReferenced { digest: Digest, parent: Digest },
    /// The blob store or the database has no space left. Not the client's fault and not a
    /// bug: the operator must free space; the write can be retried after that.
    #[error("the registry's storage is full: {0}")]
    StorageFull(String),
    /// The blob store cannot be reached (S3 down, timing out, refusing the credentials).
    /// Retriable; the cause is for the log.
    #[error("the registry's blob storage is unavailable: {0}")]
    StorageUnavailable(String),
    /// The metadata database could not take the statement in time (a lock held too long,
    /// no connection free). Nothing was written; retriable. The cause is for the log.
    #[error("the registry's database is busy: try again")]
    MetadataBusy(String),
    /// Garbage collection is deleting this digest's bytes; pushing it again succeeds once
    /// that is over (seconds).
    #[error("blob {0} is being deleted by garbage collection: push it again")]
    BlobBeingDeleted(Digest),
    /// A tag immutability rule protects the tag: it may not move or go.
    #[error(
        "tag {0} is immutable: a tag immutability rule of its project forbids overwriting or deleting it"
    )]
    TagImmutable(String),
    /// Harbor's API: no retention policy has that id.
    #[error("retention policy {0} not found")]
    PolicyUnknown(i64),
    /// Harbor's API: the project has a retention policy already (one per project).
    #[error("project {0} has a retention policy already")]
    PolicyExists(i64),
    /// Harbor's API: a rule that does not say what Harbor's rules say.
    #[error("{0}")]
    RuleInvalid(String),
    /// The push would take its project past its storage quota (the message says how far).
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BlobUnknown(_) => ErrorCode::BlobUnknown,
            Error::UploadUnknown => ErrorCode::BlobUploadUnknown,
            Error::UploadInvalid(_) => ErrorCode::BlobUploadInvalid,
            Error::RangeInvalid { .. } => ErrorCode::RangeInvalid,
            Error::DigestMismatch { .. } => ErrorCode::DigestInvalid,
            Error::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            Error::ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            Error::ManifestUnknown(_) => ErrorCode::ManifestUnknown,
            Error::NameUnknown(_) => ErrorCode::NameUnknown,
            Error::ManifestTooLarge | Error::SizeInvalid(_) => ErrorCode::SizeInvalid,
            Error::DeleteDisabled => ErrorCode::Unsupported,
            // Only the management API meets these; its answers are Harbor's.
            Error::TagExists(_) => ErrorCode::TagInvalid,
            Error::TagUnknown { .. } => ErrorCode::ManifestUnknown,
            Error::ArtifactReferenced { .. } => ErrorCode::Denied,
            Error::StorageFull(_) => ErrorCode::StorageFull,
            Error::StorageUnavailable(_) | Error::MetadataBusy(_) => ErrorCode::Unavailable,
            Error::BlobBeingDeleted(_) => ErrorCode::Toomanyrequests,
            Error::QuotaExceeded(_) | Error::TagImmutable(_) => ErrorCode::Denied,
            Error::RuleInvalid(_) | Error::PolicyExists(_) => ErrorCode::Unsupported,
            Error::PolicyUnknown(_) => ErrorCode::NameUnknown,
            // Never shown as a spec code to the client; the HTTP layer answers 500.
            Error::Internal(_) => ErrorCode::Unsupported,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::ManifestTooLarge => 413,
            Error::DeleteDisabled => 405,
            Error::TagExists(_) => 409,
            Error::ArtifactReferenced { .. } => 412,
            // 507 Insufficient Storage (RFC 4918): this write cannot be stored now, while
            // reads go on. 503 would say the whole service is down.
            Error::StorageFull(_) => 507,
            // Retriable: clients retry a blob upload that met a 503.
            Error::BlobBeingDeleted(_) => 503,
            Error::RuleInvalid(_) => 400,
            Error::PolicyExists(_) => 409,
            Error::PolicyUnknown(_) => 404,
            Error::Internal(_) => 500,
            other => other.code().default_status(),
        }
    }
}

impl From<MetaError> for Error {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::MissingReference { digest, .. } => Error::ManifestBlobUnknown(digest),
            e if e.is_storage_full() => Error::StorageFull(e.to_string()),
            e if e.is_busy() => Error::MetadataBusy(e.to_string()),
            MetaError::BlobBeingDeleted(digest) => Error::BlobBeingDeleted(digest),
            e @ MetaError::QuotaExceeded { .. } => Error::QuotaExceeded(e.to_string()),
            MetaError::TagImmutable(tag) => Error::TagImmutable(tag),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Body(e) => Error::UploadInvalid(format!("request body ended early: {e}")),
            StorageError::UploadMissing(_) => Error::UploadUnknown,
            e if e.is_full() => Error::StorageFull(e.to_string()),
            StorageError::Unavailable(cause) => Error::StorageUnavailable(cause),
            e @ StorageError::UploadTruncated { .. } => {
                tracing::warn!(error = %e, "upload lost data it had acknowledged; the client must restart it");
                Error::UploadInvalid(
                    "the upload lost data in a crash; start the upload again".into(),
                )
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_are_named_with_their_own_status() {
        let unreachable: Error = StorageError::Unavailable("connection refused".into()).into();
        assert_eq!(
            (unreachable.status(), unreachable.code()),
            (503, ErrorCode::Unavailable)
        );
        let full: Error = StorageError::Io(std::io::ErrorKind::StorageFull.into()).into();
        assert_eq!((full.status(), full.code()), (507, ErrorCode::StorageFull));
        let bug: Error = StorageError::Io(std::io::Error::other("a bug")).into();
        assert_eq!(bug.status(), 500);
    }
}
