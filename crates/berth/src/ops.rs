//! The metrics the binary reads at scrape time ([`berth_metrics::MetricsSource`]s): the data
//! directory's free space and last probe, and the metadata database's pools and write queue.
//! Registered in `main.rs`; other subsystems (storage per project from the usage tables, GC)
//! register theirs the same way, with `Metrics::add_source`.

use std::sync::Arc;

use async_trait::async_trait;
use berth_metrics::{Exposition, Kind, MetricsSource};
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
