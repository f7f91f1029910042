//! The metrics the binary reads at scrape time ([`berth_metrics::MetricsSource`]s): the data
//! directory's free space and last probe, the blob store's flush rounds, the metadata
//! database's pools and write queue, and storage usage per project from the usage counters.
//! Registered in `main.rs` with `Metrics::add_source`.

use std::sync::Arc;

use async_trait::async_trait;
use berth_metrics::{Exposition, Kind, MetricsSource};
use berth_registry::Registry;
use berth_storage::DataDir;

use crate::Metadata;

/// `berth_data_dir_free_bytes`, `berth_data_dir_size_bytes`, `berth_data_dir_writable`.
pub struct DataDirSource(pub Arc<DataDir>);

#[async_trait]
impl MetricsSource for DataDirSource {
    async fn collect(&self, out: &mut Exposition) {
        let data_dir = self.0.clone();
        // `statvfs` is a syscall that may block on a sick disk: not on the scrape's thread.
        let space = tokio::task::spawn_blocking(move || data_dir.space()).await;
        if let Ok(Ok(space)) = space {
            out.gauge(
                "berth_data_dir_free_bytes",
                "Bytes free for berth in the data directory's filesystem.",
                i64::try_from(space.free).unwrap_or(i64::MAX),
            );
            out.gauge(
                "berth_data_dir_size_bytes",
                "Size of the data directory's filesystem in bytes.",
                i64::try_from(space.total).unwrap_or(i64::MAX),
            );
        }
        out.gauge(
            "berth_data_dir_min_free_bytes",
            "Free bytes below which /readyz fails ([storage] min_free_bytes).",
            i64::try_from(self.0.min_free_bytes()).unwrap_or(i64::MAX),
        );
        out.gauge(
            "berth_data_dir_writable",
            "1 if the last /readyz probe could write to the data directory and found room.",
            i64::from(self.0.last_probe_ok()),
        );
    }
}

/// `berth_blob_flush_rounds_total` and `berth_blob_flushed_total`: how the filesystem store's
/// blob commits share their flushes (none on S3, whose commits are requests).
pub struct BlobFlushSource(pub Arc<dyn berth_storage::BlobStore>);

#[async_trait]
impl MetricsSource for BlobFlushSource {
    async fn collect(&self, out: &mut Exposition) {
        let Some(stats) = self.0.flush_stats() else {
            return;
        };
        out.counter(
            "berth_blob_flush_rounds_total",
            "Flush rounds of committed blob files (one round serves every blob committed at that moment).",
            stats.rounds,
        );
        out.counter(
            "berth_blob_flushed_total",
            "Blob files committed by those rounds.",
            stats.blobs,
        );
    }
}

/// `berth_db_pool_connections{pool,state}` and the SQLite group commit's queue.
pub struct MetadataSource(pub Metadata);

#[async_trait]
impl MetricsSource for MetadataSource {
    async fn collect(&self, out: &mut Exposition) {
        let stats = match &self.0 {
            Metadata::Sqlite(store) => store.stats(),
            Metadata::Postgres(store) => store.stats(),
        };
        out.family(
            "berth_db_pool_connections",
            "Metadata database connections, by pool and state (in_use, idle, max).",
            Kind::Gauge,
        );
        for pool in &stats.pools {
            let in_use = pool.size.saturating_sub(pool.idle);
            for (state, value) in [("in_use", in_use), ("idle", pool.idle), ("max", pool.max)] {
                out.sample(
                    "berth_db_pool_connections",
                    &[("pool", pool.name), ("state", state)],
                    value.into(),
                );
            }
        }
        if let Some(wal) = stats.wal_sync {
            out.gauge(
                "berth_db_commits_waiting_for_sync",
                "Durable commits waiting for the SQLite WAL's group sync now.",
                i64::try_from(wal.waiting).unwrap_or(i64::MAX),
            );
            out.counter(
                "berth_db_wal_syncs_total",
                "Group syncs of the SQLite WAL.",
                wal.rounds,
            );
            out.gauge(
                "berth_db_wal_sync_failed",
                "1 once a WAL sync failed: durable writes are refused until a restart.",
                i64::from(wal.failed),
            );
        }
    }
}

/// `berth_storage_registry_bytes{kind}` and, when `per_project`,
/// `berth_storage_project_bytes{project,kind}`: the usage counters the database keeps (two
/// reads per scrape, no scan). Project names are only published on a metrics listener of
/// its own (`[metrics] addr`): `/metrics` on the registry's port answers anyone, and a
/// private project's name is not anyone's business.
pub struct UsageSource {
    pub registry: Arc<Registry>,
    pub per_project: bool,
}

#[async_trait]
impl MetricsSource for UsageSource {
    async fn collect(&self, out: &mut Exposition) {
        let gauge = |bytes: u64| i128::from(bytes);
        let projects = match self.per_project {
            true => self.registry.usage_by_project().await.ok(),
            false => None,
        };
        if let Some(projects) = projects {
            out.family(
                "berth_storage_project_bytes",
                "Storage a project uses, in bytes: its distinct blobs (each counted once, shared \
                 or not), those only it holds (what deleting it would free), and its manifests.",
                Kind::Gauge,
            );
            for project in projects.iter().filter(|p| !p.namespace.is_empty()) {
                let usage = &project.usage;
                for (kind, bytes) in [
                    ("blobs", usage.blob_bytes),
                    ("unique_blobs", usage.unique_blob_bytes),
                    ("manifests", usage.manifest_bytes),
                ] {
                    out.sample(
                        "berth_storage_project_bytes",
                        &[("project", &project.namespace), ("kind", kind)],
                        gauge(bytes),
                    );
                }
            }
        }
        if let Ok(total) = self.registry.registry_usage().await {
            out.family(
                "berth_storage_registry_bytes",
                "The registry's storage in bytes: distinct blobs some repository links, every \
                 blob stored (unlinked ones wait for garbage collection), and manifests.",
                Kind::Gauge,
            );
            for (kind, bytes) in [
                ("linked_blobs", total.linked_blob_bytes),
                ("stored_blobs", total.stored_blob_bytes),
                ("manifests", total.manifest_bytes),
            ] {
                out.sample(
                    "berth_storage_registry_bytes",
                    &[("kind", kind)],
                    gauge(bytes),
                );
            }
        }
    }
}
