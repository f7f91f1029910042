//! berth's domain types: everything about the OCI distribution and image specs that can be
//! decided without IO — digests and hashing, repository names and tags, manifest parsing and
//! validation, the spec's error codes, parsing a `/v2/` request into a typed [`Endpoint`] and an
//! `/api/v2.0` request into a typed [`mgmt::MgmtEndpoint`], and what Harbor's API reads from a
//! manifest ([`artifact`]).
//!
//! Nothing here touches the network, the disk or a runtime; every function is a pure function
//! of its input, which is what makes it easy to test and to fuzz.

pub mod access;
pub mod artifact;
pub mod cron;
pub mod digest;
pub mod endpoint;
pub mod error;
pub mod immutable;
pub mod manifest;
pub mod media_type;
pub mod mgmt;
pub mod name;
pub mod retention;
pub mod time;

pub use access::{RobotName, RobotPermission, Role};
pub use digest::{Algorithm, Digest, DigestHasher};
pub use endpoint::{Access, Action, Endpoint, Reference};
pub use error::ErrorCode;
pub use name::{RepositoryName, Tag};
