//! The background writer: takes the queue every interval (or when woken early), folds a
//! batch's identical events into one entry with a count and its pulls into per-manifest
//! counts, writes JSON lines, then the batch in one transaction; expires old entries. It is
//! the only place audit data reaches the database, and it never runs inside a request.

use foldhash::HashMap;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use berth_core::time::rfc3339_millis;
use berth_meta::{AuditBatch, AuditRecord, AuditStore, PullRecord};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::{
    AuditEvent, Client, Control, JsonLines, Operation, ResourceType, Shard, Signals, now_ms,
    project_of,
};

/// How often entries past the retention are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per statement, so the writer connection is never held for long.
const DELETE_CHUNK: u64 = 10_000;

/// Where JSON lines are written.
pub(crate) enum Sink {
    Off,
    Stdout(tokio::io::Stdout),
    File(tokio::fs::File),
}

impl Sink {
    pub(crate) async fn open(jsonl: &JsonLines) -> Result<Sink, String> {
        Ok(match jsonl {
            JsonLines::Off => Sink::Off,
            JsonLines::Stdout => Sink::Stdout(tokio::io::stdout()),
            JsonLines::File(path) => Sink::File(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot open the audit JSON lines file {}: {e}",
                            path.display()
                        )
                    })?,
            ),
        })
    }

    fn is_off(&self) -> bool {
        matches!(self, Sink::Off)
    }

    async fn write(&mut self, text: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Off => Ok(()),
            Sink::Stdout(out) => {
                out.write_all(text).await?;
                out.flush().await
            }
            Sink::File(file) => {
                file.write_all(text).await?;
                file.flush().await
            }
        }
    }
}

pub(crate) struct Writer {
    pub(crate) store: Arc<dyn AuditStore>,
    pub(crate) sink: Sink,
    pub(crate) shards: Arc<[Shard]>,
    pub(crate) commands: mpsc::UnboundedReceiver<Control>,
    pub(crate) signals: Arc<Signals>,
    pub(crate) interval: Duration,
    pub(crate) retention: Option<Duration>,
}

/// What makes two events the same entry.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    username: Cow<'static, str>,
    client: Client,
    operation: Operation,
    resource_type: ResourceType,
    resource: String,
    failure: Option<String>,
}

/// A batch of events as entries (identical events folded, in order of first occurrence)
/// and pulls per manifest.
pub fn fold(events: Vec<AuditEvent>) -> AuditBatch {
    let mut folder = Folder::default();
    for event in events {
        folder.add(event);
    }
    folder.finish()
}

/// Events folded as they are recorded: identical events into one entry with a count, pulls
/// into counts per manifest. A repeated event costs a lookup, not memory.
#[derive(Default)]
pub struct Folder {
    /// Entry → (order of first occurrence, first time, count).
    entries: HashMap<Key, (usize, i64, u64)>,
    /// Repository → digest → (count, last time).
    pulls: HashMap<String, HashMap<String, (u64, i64)>>,
    /// Distinct entries and pulled manifests held: what the folder's memory grows with (a
    /// repeated event adds to a count, not to this; 0 when nothing was folded in).
    pub(crate) held: usize,
}

impl Key {
    /// The event's entry, the manifest it pulled (for a pull), and its time.
    fn of(mut event: AuditEvent) -> (Key, Option<String>, i64) {
        let digest = match event.operation {
            Operation::Pull => event.digest.take(),
            _ => None,
        };
        let key = Key {
            username: event.username,
            client: event.client,
            operation: event.operation,
            resource_type: event.resource_type,
            resource: event.resource,
            failure: event.failure,
        };
        (key, digest, event.time_ms)
    }

    /// The repository of the entry's resource (repository names hold neither ':' nor '@').
    fn repository(&self) -> &str {
        self.resource.split([':', '@']).next().unwrap_or_default()
    }
}

impl Folder {
    pub fn add(&mut self, event: AuditEvent) {
        let (key, digest, time_ms) = Key::of(event);
        if let Some(digest) = digest {
            self.count_pulls(key.repository(), digest, 1, time_ms);
        }
        self.count_entry(key, time_ms, 1);
    }

    /// Fold `event` only into what is held already (its entry and, for a pull, its
    /// manifest's count); `false`, and nothing changed, if it would hold something new.
    pub fn add_if_held(&mut self, event: AuditEvent) -> bool {
        let (key, digest, time_ms) = Key::of(event);
        let Some((_, first, count)) = self.entries.get_mut(&key) else {
            return false;
        };
        if let Some(digest) = digest {
            let Some(counted) = self
                .pulls
                .get_mut(key.repository())
                .and_then(|digests| digests.get_mut(&digest))
            else {
                return false;
            };
            counted.0 += 1;
            counted.1 = counted.1.max(time_ms);
        }
        *first = (*first).min(time_ms);
        *count += 1;
        true
    }

    /// Fold `other` (taken later, or from another thread) into this one.
    pub fn merge(&mut self, other: Folder) {
        let mut entries: Vec<_> = other.entries.into_iter().collect();
        entries.sort_by_key(|(_, (order, _, _))| *order);
        for (key, (_, time_ms, count)) in entries {
            self.count_entry(key, time_ms, count);
        }
        for (repository, digests) in other.pulls {
            for (digest, (count, last_ms)) in digests {
                self.count_pulls(&repository, digest, count, last_ms);
            }
        }
    }

    /// Add `count` occurrences of an entry, first seen at `time_ms`.
    fn count_entry(&mut self, key: Key, time_ms: i64, count: u64) {
        let order = self.entries.len();
        self.entries
            .entry(key)
            .and_modify(|(_, first, total)| {
                *first = (*first).min(time_ms);
                *total += count;
            })
            .or_insert_with(|| {
                self.held += 1;
                (order, time_ms, count)
            });
    }

    /// Add `count` pulls of a manifest, the latest at `last_ms`.
    fn count_pulls(&mut self, repository: &str, digest: String, count: u64, last_ms: i64) {
        let per_digest = match self.pulls.get_mut(repository) {
            Some(found) => found,
            None => self.pulls.entry(repository.to_owned()).or_default(),
        };
        let counted = per_digest.entry(digest).or_insert_with(|| {
            self.held += 1;
            (0, last_ms)
        });
        counted.0 += count;
        counted.1 = counted.1.max(last_ms);
    }

    /// The entries in order of first occurrence, and the pulls.
    pub fn finish(self) -> AuditBatch {
        let Folder { entries, pulls, .. } = self;
        let mut ordered: Vec<(Key, (usize, i64, u64))> = entries.into_iter().collect();
        ordered.sort_by_key(|(_, (order, _, _))| *order);
        let entries = ordered
            .into_iter()
            .map(|(key, (_, first, count))| AuditRecord {
                op_time_ms: first,
                username: key.username.into_owned(),
                client: key.client.to_string(),
                operation: key.operation.as_str().to_owned(),
                resource_type: key.resource_type.as_str().to_owned(),
                project: project_of(key.resource_type, &key.resource).map(str::to_owned),
                resource: key.resource,
                success: key.failure.is_none(),
                reason: key.failure.unwrap_or_default(),
                count,
            })
            .collect();
        let pulls = pulls
            .into_iter()
            .flat_map(|(repository, digests)| {
                digests
                    .into_iter()
                    .map(move |(digest, (count, last_ms))| PullRecord {
                        repository: repository.clone(),
                        digest,
                        count,
                        last_ms,
                    })
            })
            .collect();
        AuditBatch { entries, pulls }
    }
}

/// One entry as a JSON line.
pub fn json_line(entry: &AuditRecord) -> String {
    let mut line = serde_json::json!({
        "time": rfc3339_millis(entry.op_time_ms),
        "username": entry.username,
        "client": entry.client,
        "operation": entry.operation,
        "resource_type": entry.resource_type,
        "resource": entry.resource,
        "result": if entry.success { "success" } else { "failure" },
        "count": entry.count,
    });
    if let Some(project) = &entry.project {
        line["project"] = project.as_str().into();
    }
    if !entry.success {
        line["reason"] = entry.reason.as_str().into();
    }
    let mut text = line.to_string();
    text.push('\n');
    text
}

impl Writer {
    pub(crate) async fn run(mut self) {
        let mut reported_drops = 0;
        let mut expired_at: Option<Instant> = None;
        loop {
            let command = tokio::select! {
                _ = tokio::time::sleep(self.interval) => None,
                _ = self.signals.early.notified() => None,
                command = self.commands.recv() => Some(command),
            };
            // Before taking the queue: a request that fills it again wakes us again.
            self.signals.woken.store(false, Ordering::Release);
            if let Some(Some(Control::Shutdown(_))) = &command {
                // Under each shard's lock, before it is taken: no event is added after.
                self.signals.closed.store(true, Ordering::Release);
            }
            self.write_queued().await;
            let dropped = self.signals.dropped.load(Ordering::Relaxed);
            if dropped > reported_drops {
                tracing::warn!(
                    dropped = dropped - reported_drops,
                    total = dropped,
                    "the audit queue was full: events were dropped"
                );
                reported_drops = dropped;
            }
            if let Some(keep) = self.retention
                && expired_at.is_none_or(|at| at.elapsed() >= RETENTION_EVERY)
            {
                expired_at = Some(Instant::now());
                self.expire(keep).await;
            }
            match command {
                Some(Some(Control::Flush(done))) => {
                    let _ = done.send(());
                }
                Some(Some(Control::Shutdown(done))) => {
                    let _ = done.send(());
                    return;
                }
                // Every handle is gone: nothing more can come.
                Some(None) => return,
                None => {}
            }
        }
    }

    /// Write everything queued now, every shard's events in one transaction: a batch costs
    /// the database (and the WAL sync it waits for) about the same whatever its size.
    async fn write_queued(&mut self) {
        let mut folded = Folder::default();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock());
            if taken.held > 0 {
                folded.merge(taken);
            }
        }
        if folded.held > 0 {
            self.write(folded.finish()).await;
        }
    }

    async fn write(&mut self, batch: AuditBatch) {
        if !self.sink.is_off() && !batch.entries.is_empty() {
            let text: String = batch.entries.iter().map(json_line).collect();
            if let Err(e) = self.sink.write(text.as_bytes()).await {
                tracing::warn!(error = %e, entries = batch.entries.len(), "cannot write audit JSON lines");
            }
        }
        if let Err(e) = self.store.append_audit(&batch).await {
            tracing::error!(
                error = %e,
                entries = batch.entries.len(),
                pulls = batch.pulls.len(),
                "cannot store audit entries and pull counts"
            );
        }
    }

    async fn expire(&self, keep: Duration) {
        let before = now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let mut deleted = 0;
        loop {
            match self.store.delete_audit_before(before, DELETE_CHUNK).await {
                Ok(n) => {
                    deleted += n;
                    if n < DELETE_CHUNK {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete expired audit entries");
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "deleted audit entries past the retention");
        }
    }
}
