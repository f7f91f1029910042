//! The jobs this binary runs through `berth-jobs`, and their schedules.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_jobs::{JobError, JobHandler, Runner};
use berth_registry::Registry;
use serde_json::{Value, json};

/// Sessions idle this long are abandoned (registry:2's default purge age).
const UPLOAD_MAX_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Upload areas without a session are debris after this long.
const ORPHAN_AREA_MAX_IDLE: Duration = Duration::from_secs(3600);
/// When abandoned uploads are reclaimed: hourly, as before the job system.
const PURGE_UPLOADS_SCHEDULE: &str = "0 * * * *";

/// Reclaim abandoned upload sessions and upload areas no session owns.
pub struct PurgeUploads {
    pub registry: Arc<Registry>,
}

#[async_trait]
impl JobHandler for PurgeUploads {
    fn kind(&self) -> &'static str {
        "purge_uploads"
    }

    async fn run(&self, _params: &Value) -> Result<Value, JobError> {
        let (sessions, areas) = self
            .registry
            .purge_uploads(UPLOAD_MAX_IDLE, ORPHAN_AREA_MAX_IDLE)
            .await
            .map_err(|e| JobError::transient(e.to_string()))?;
        Ok(json!({"sessions": sessions, "areas": areas}))
    }
}

/// This node's runner with every job berth has, scheduled, and started; a purge is also
/// queued for now, as a start-up always did.
pub async fn start(
    store: Arc<dyn berth_meta::JobStore>,
    registry: Arc<Registry>,
) -> Result<Arc<Runner>, String> {
    let runner = Runner::new(store, berth_jobs::RunnerOptions::default())
        .handle(Arc::new(PurgeUploads { registry }));
    let schedule = PURGE_UPLOADS_SCHEDULE.parse().map_err(|e| format!("{e}"))?;
    runner
        .schedule("purge_uploads", Some(&schedule), json!({}))
        .await
        .map_err(|e| format!("cannot schedule the upload purge: {e}"))?;
    let key = format!("start-{}", runner.owner());
    runner
        .enqueue_now("purge_uploads", &key, json!({}))
        .await
        .map_err(|e| format!("cannot queue the start-up upload purge: {e}"))?;
    let runner = Arc::new(runner);
    runner.clone().spawn();
    Ok(runner)
}
