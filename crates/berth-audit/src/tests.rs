//! The writer against an in-memory store: a full queue never blocks, batches fold identical
//! events and count pulls, JSON lines carry one entry each, retention deletes.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::{Digest, RepositoryName};
use berth_meta::{AuditBatch, AuditEntry, AuditQuery, AuditStore, PullStats};

use super::*;

#[derive(Default)]
struct MemoryStore {
    batches: Mutex<Vec<AuditBatch>>,
    deletes: Mutex<Vec<i64>>,
    /// Every append waits forever (a stuck disk).
    stuck: bool,
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(&self, batch: &AuditBatch) -> berth_meta::Result<()> {
        if self.stuck {
            std::future::pending::<()>().await;
        }
        self.batches.lock().expect("lock").push(batch.clone());
        Ok(())
    }
    async fn audit_entries(&self, _: &AuditQuery) -> berth_meta::Result<(Vec<AuditEntry>, u64)> {
        Ok((Vec::new(), 0))
    }
    async fn delete_audit_before(&self, before_ms: i64, _: u64) -> berth_meta::Result<u64> {
        self.deletes.lock().expect("lock").push(before_ms);
        Ok(0)
    }
    async fn artifact_pulls(
        &self,
        _: &RepositoryName,
        _: &Digest,
    ) -> berth_meta::Result<Option<PullStats>> {
        Ok(None)
    }
    async fn repository_pulls(&self, _: &RepositoryName) -> berth_meta::Result<Option<u64>> {
        Ok(None)
    }
}

fn pull(user: &'static str, resource: &str, digest: &str) -> AuditEvent {
    AuditEvent::new(
        user,
        Client::Addr(IpAddr::from([192, 0, 2, 1])),
        Operation::Pull,
        ResourceType::Artifact,
        resource,
    )
    .pulled(digest.to_owned())
}

fn settings() -> AuditSettings {
    AuditSettings {
        retention: None,
        interval: Duration::from_secs(3600),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_and_never_waits() {
    let store = Arc::new(MemoryStore {
        stuck: true,
        ..Default::default()
    });
    let audit = Audit::start(
        store.clone(),
        AuditSettings {
            queue: 8,
            batch: 4,
            ..settings()
        },
    )
    .await
    .expect("start");
    // Let the writer take a first batch and hang in the store, as on a stuck disk.
    for i in 0..4 {
        audit.record(pull("alice", &format!("team/app:v{i}"), "sha256:a"));
    }
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    let started = Instant::now();
    for i in 0..10_000 {
        audit.record(pull("alice", &format!("team/app:w{i}"), "sha256:a"));
    }
    assert!(started.elapsed() < Duration::from_secs(1), "record waited");
    // At most the queue's 8 entries fit; everything else is counted as dropped.
    assert!(audit.dropped() >= 10_000 - 8, "{}", audit.dropped());
    assert!(store.batches.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn a_batch_folds_identical_events_and_counts_pulls_per_manifest() {
    let store = Arc::new(MemoryStore::default());
    let audit = Audit::start(store.clone(), settings())
        .await
        .expect("start");
    for _ in 0..5 {
        audit.record(pull("alice", "team/app:v1", "sha256:a"));
    }
    audit.record(pull("bob", "team/app@sha256:a", "sha256:a"));
    audit.record(pull("bob", "other/x:latest", "sha256:b"));
    audit.record(
        AuditEvent::new(
            "mallory",
            Client::Unknown,
            Operation::Login,
            ResourceType::Login,
            "mallory",
        )
        .failed("invalid username or password"),
    );
    audit.flush().await;
    let batches = store.batches.lock().expect("lock").clone();
    assert_eq!(batches.len(), 1, "one transaction");
    let batch = &batches[0];
    let entries: Vec<(&str, &str, u64, Option<&str>, bool)> = batch
        .entries
        .iter()
        .map(|e| {
            (
                e.username.as_str(),
                e.resource.as_str(),
                e.count,
                e.project.as_deref(),
                e.success,
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("alice", "team/app:v1", 5, Some("team"), true),
            ("bob", "team/app@sha256:a", 1, Some("team"), true),
            ("bob", "other/x:latest", 1, Some("other"), true),
            ("mallory", "mallory", 1, None, false),
        ]
    );
    assert_eq!(batch.entries[0].client, "192.0.2.1");
    assert_eq!(batch.entries[3].reason, "invalid username or password");
    let mut pulls: Vec<(&str, &str, u64)> = batch
        .pulls
        .iter()
        .map(|p| (p.repository.as_str(), p.digest.as_str(), p.count))
        .collect();
    pulls.sort();
    assert_eq!(
        pulls,
        [("other/x", "sha256:b", 1), ("team/app", "sha256:a", 6)]
    );
    // Nothing new: a flush writes nothing.
    audit.flush().await;
    assert_eq!(store.batches.lock().expect("lock").len(), 1);
    audit.shutdown().await;
    audit.record(pull("late", "team/app:v1", "sha256:a"));
    audit.flush().await;
    assert_eq!(store.batches.lock().expect("lock").len(), 1, "shut down");
}

#[tokio::test]
async fn many_waiting_events_wake_the_writer_before_its_interval() {
    let store = Arc::new(MemoryStore::default());
    let audit = Audit::start(
        store.clone(),
        AuditSettings {
            batch: 16,
            ..settings()
        },
    )
    .await
    .expect("start");
    for i in 0..16 {
        audit.record(pull("alice", &format!("team/app:v{i}"), "sha256:a"));
    }
    // The interval is an hour: only the early wake-up writes this.
    tokio::time::timeout(Duration::from_secs(5), async {
        while store.batches.lock().expect("lock").is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("written early");
}

#[tokio::test]
async fn identical_events_fold_without_filling_the_queue_or_waking_the_writer() {
    let store = Arc::new(MemoryStore::default());
    let audit = Audit::start(
        store.clone(),
        AuditSettings {
            // At most two entries a shard (on two cores or more), and one pull holds two:
            // the queue is full after the first event. Waking the writer takes four.
            queue: 8,
            batch: 256,
            ..settings()
        },
    )
    .await
    .expect("start");
    for _ in 0..10_000 {
        audit.record(pull("alice", "team/app:v1", "sha256:a"));
    }
    // One entry and one pulled manifest wait: no early wake-up (the interval is an hour).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        store.batches.lock().expect("lock").is_empty(),
        "woken early"
    );
    assert_eq!(audit.dropped(), 0);
    audit.flush().await;
    let batches = store.batches.lock().expect("lock").clone();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].entries.len(), 1);
    assert_eq!(batches[0].entries[0].count, 10_000);
    assert_eq!(batches[0].pulls[0].count, 10_000);
}

#[tokio::test]
async fn json_lines_hold_one_entry_each_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let store = Arc::new(MemoryStore::default());
    let audit = Audit::start(
        store.clone(),
        AuditSettings {
            jsonl: JsonLines::File(path.clone()),
            ..settings()
        },
    )
    .await
    .expect("start");
    audit.record(pull("alice", "team/app:v1", "sha256:a"));
    audit.record(
        AuditEvent::new(
            "robot$team+ci",
            Client::Cli,
            Operation::Delete,
            ResourceType::Robot,
            "robot$team+ci",
        )
        .failed("not found"),
    );
    audit.flush().await;
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON value per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["username"], "alice");
    assert_eq!(lines[0]["operation"], "pull");
    assert_eq!(lines[0]["resource_type"], "artifact");
    assert_eq!(lines[0]["resource"], "team/app:v1");
    assert_eq!(lines[0]["project"], "team");
    assert_eq!(lines[0]["result"], "success");
    assert_eq!(lines[0]["client"], "192.0.2.1");
    assert!(lines[0]["time"].as_str().expect("time").ends_with('Z'));
    assert_eq!(lines[1]["result"], "failure");
    assert_eq!(lines[1]["reason"], "not found");
    assert_eq!(lines[1]["client"], "cli");
    assert_eq!(lines[1]["project"], "team");
    // Appended, never truncated: a second writer on the same file adds to it.
    audit.shutdown().await;
    let again = Audit::start(
        store,
        AuditSettings {
            jsonl: JsonLines::File(path.clone()),
            ..settings()
        },
    )
    .await
    .expect("start");
    again.record(pull("bob", "team/app:v1", "sha256:a"));
    again.flush().await;
    assert_eq!(
        std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count(),
        3
    );
}

#[tokio::test]
async fn entries_past_the_retention_are_deleted_at_start() {
    let store = Arc::new(MemoryStore::default());
    let audit = Audit::start(
        store.clone(),
        AuditSettings {
            retention: Some(Duration::from_secs(86_400)),
            ..settings()
        },
    )
    .await
    .expect("start");
    audit.flush().await;
    let deletes = store.deletes.lock().expect("lock").clone();
    assert_eq!(deletes.len(), 1);
    let cutoff = now_ms() - 86_400_000;
    assert!((cutoff - deletes[0]).abs() < 60_000, "{deletes:?}");
}

#[test]
fn entries_belong_to_the_project_their_resource_names() {
    let of = project_of;
    assert_eq!(of(ResourceType::Artifact, "team/app:v1"), Some("team"));
    assert_eq!(of(ResourceType::Artifact, "busybox:latest"), None);
    assert_eq!(of(ResourceType::Member, "team/alice"), Some("team"));
    assert_eq!(of(ResourceType::Project, "team"), Some("team"));
    assert_eq!(of(ResourceType::Robot, "robot$team+ci"), Some("team"));
    assert_eq!(of(ResourceType::Robot, "robot$ci"), None);
    assert_eq!(of(ResourceType::User, "alice"), None);
    assert_eq!(of(ResourceType::Token, "repository:team/app:pull"), None);
}

#[test]
fn audit_off_records_nothing() {
    let audit = Audit::off();
    assert!(!audit.is_on());
    audit.record(pull("alice", "team/app:v1", "sha256:a"));
    assert_eq!(audit.dropped(), 0);
}

#[tokio::test]
async fn events_from_many_threads_are_all_written() {
    let store = Arc::new(MemoryStore::default());
    let audit = Audit::start(store.clone(), settings())
        .await
        .expect("start");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let audit = audit.clone();
            std::thread::spawn(move || {
                for _ in 0..1_000 {
                    audit.record(pull("alice", "team/app:v1", "sha256:a"));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    audit.flush().await;
    let batches = store.batches.lock().expect("lock").clone();
    let entries: u64 = batches
        .iter()
        .flat_map(|b| &b.entries)
        .map(|e| e.count)
        .sum();
    let pulls: u64 = batches.iter().flat_map(|b| &b.pulls).map(|p| p.count).sum();
    assert_eq!((entries, pulls), (8_000, 8_000));
    assert_eq!(audit.dropped(), 0);
    // Every thread's shard went into one transaction, folded into one entry and one count.
    assert_eq!(batches.len(), 1);
    assert_eq!((batches[0].entries.len(), batches[0].pulls.len()), (1, 1));
}
