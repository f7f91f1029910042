//! `berth gc`: one garbage collection run (or the orphan sweep) in this process, and its
//! report. Runs started by the schedule or Harbor's API are jobs of the server instead.

use std::sync::Arc;
use std::time::Duration;

use berth_registry::{GcOptions, Registry, RegistryOptions};

#[derive(clap::Args)]
pub struct GcArgs {
    /// Report what a run would free, and free nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also delete untagged manifests that no tag, index or kept subject needs.
    #[arg(long)]
    delete_untagged: bool,
    /// Instead of a run: list the blob store and delete bytes the database has no row for
    /// (slow on a big bucket: for after a crash or a restore, not for every day).
    #[arg(long)]
    orphans: bool,
    /// With --orphans: only bytes written more than this many hours ago.
    #[arg(long, default_value_t = 24)]
    orphan_age_hours: u64,
    /// Seconds an untagged manifest is kept after its push [default: [gc] untagged_grace].
    #[arg(long)]
    untagged_grace: Option<u64>,
    /// Seconds an unreferenced blob or link is kept [default: [gc] blob_grace].
    #[arg(long)]
    blob_grace: Option<u64>,
}

pub async fn command(args: GcArgs, flags: &crate::Flags) -> Result<(), String> {
    let config = flags.load().map_err(|e| e.to_string())?;
    let metadata = crate::open_metadata(&config).await?;
    let blobs = crate::open_blobs(&config)?;
    // No read cache: this process serves nothing, and a server's cache is told by its
    // store's feed (PostgreSQL); see docs/OPERATIONS.md for SQLite.
    let registry = Arc::new(Registry::new(
        metadata.store(),
        blobs,
        RegistryOptions {
            read_cache: false,
            ..RegistryOptions::default()
        },
    ));
    let result = if args.orphans {
        let min_age = Duration::from_secs(args.orphan_age_hours.saturating_mul(3600));
        registry
            .sweep_orphans(min_age, args.dry_run)
            .await
            .map(|report| {
                println!(
                    "orphan sweep{}: {} blobs in the store, {} orphans {} ({} ms)",
                    if report.dry_run { " (dry run)" } else { "" },
                    report.listed,
                    report.orphans,
                    if report.dry_run { "found" } else { "deleted" },
                    report.duration_ms
                );
            })
    } else {
        let options = GcOptions {
            delete_untagged: args.delete_untagged,
            dry_run: args.dry_run,
            untagged_grace: args
                .untagged_grace
                .map_or(config.gc.untagged_grace, Duration::from_secs),
            blob_grace: args
                .blob_grace
                .map_or(config.gc.blob_grace, Duration::from_secs),
            ..GcOptions::default()
        };
        registry.collect_garbage(&options).await.map(|report| {
            for line in &report.log {
                println!("{line}");
            }
        })
    };
    metadata.close().await;
    result.map_err(|e| format!("garbage collection failed: {e}"))
}
