//! In-process conformance suite for the OCI distribution spec v1.1: every endpoint and its
//! error paths, driven through `berth_api::app` with `tower::ServiceExt::oneshot`.
//!
//! Behaviour is pinned to the spec text; where the spec is silent or ambiguous the tests
//! follow what CNCF Distribution does, and say so.

mod common;

mod artifacts;
mod audit;
mod auth;
mod authz;
mod base;
mod blob_links;
mod concurrency;
mod deletes;
mod discovery;
mod gc;
mod immutable;
mod malformed;
mod manifests;
mod mgmt;
mod names;
mod ops;
mod proxy;
mod pull;
mod push;
mod quotas;
mod referrers;
mod replication;
mod restart;
mod retention;
mod robots;
mod s3;
mod sparse_index;
mod tag_params;
mod tokens;
