//! The audit log: who did what (logins, token issues, pushes, pulls, deletes, changes of
//! projects, members, users and robots), when, from which address, with what result — and
//! the pull counts of artifacts. It must never block, slow or fail a request.
//!
//! A request only calls [`Audit::record`]: no IO, no await, and a lock no other thread
//! wants. The event is folded into its thread's shard of the queue (identical events into
//! one entry with a count, pulls into counts per manifest: [`writer::Folder`]); shards keep
//! requests on different threads off each other's cache lines, which a shared channel did
//! not (a tenth of a cached manifest `GET`'s CPU). The queue is measured in what it holds,
//! distinct entries and pulled manifests, not in events: a flood of the same pull is one
//! entry and one count however long it lasts. When a shard holds its share of the queue
//! the event is dropped and counted ([`Audit::dropped`], and a warning in the log) rather
//! than making the request wait. A background task ([`writer`]) takes the shards every
//! 200 ms (sooner once 8 192 entries wait), and writes them in ONE database transaction
//! (audit rows and pull counts, through `berth_meta::AuditStore`) and as JSON lines to the
//! configured sink. It also deletes entries older than the retention. Waking it by entries,
//! not events, keeps a stream of identical pulls to 5 transactions a second: counted by
//! events it woke ~40 times a second under (a)'s load, each a transaction and a WAL sync on
//! threads that share the cores with the requests (docs/BENCHMARKS.md, Session 19).
//! [`Audit::flush`] waits until everything recorded so far is written (tests, shutdown).

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_meta::AuditStore;
use tokio::sync::{Notify, mpsc, oneshot};
use writer::Folder;

pub mod writer;

/// The name audit entries give a caller without credentials.
pub const ANONYMOUS: &str = "anonymous";

/// Harbor's `operation` of an audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Pull,
    Login,
    Token,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Pull => "pull",
            Operation::Login => "login",
            Operation::Token => "token",
        }
    }
}

/// Harbor's `resource_type` of an audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// A manifest: `team/app:v1` or `team/app@sha256:…`.
    Artifact,
    /// A tag deleted on its own: `team/app:v1`.
    Tag,
    /// A blob unlinked from a repository: `team/app@sha256:…`.
    Blob,
    /// A repository deleted with everything in it: `team/app`.
    Repository,
    /// `team`.
    Project,
    /// A project's member: `team/alice`.
    Member,
    /// `alice`.
    User,
    /// `robot$team+ci`.
    Robot,
    /// A password or secret checked: the account name presented.
    Login,
    /// A token issued: the scopes granted.
    Token,
    /// A retention policy, or a run of it: `retention/1`, `retention/1/execution`.
    Retention,
    /// A replication policy or execution: `replication/policy/1`, `replication/execution/7`.
    Replication,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Artifact => "artifact",
            ResourceType::Tag => "tag",
            ResourceType::Blob => "blob",
            ResourceType::Repository => "repository",
            ResourceType::Project => "project",
            ResourceType::Member => "member",
            ResourceType::User => "user",
            ResourceType::Robot => "robot",
            ResourceType::Login => "login",
            ResourceType::Token => "token",
            ResourceType::Retention => "retention",
            ResourceType::Replication => "replication",
        }
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// Not known (an in-process caller).
    Unknown,
    /// The client's address (behind a trusted proxy, the address the proxy saw).
    Addr(IpAddr),
    /// The operator CLI on the registry's machine.
    Cli,
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Unknown => Ok(()),
            Client::Addr(ip) => write!(f, "{ip}"),
            Client::Cli => f.write_str("cli"),
        }
    }
}

/// One thing that happened. Never holds a password, secret or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unix milliseconds.
    pub time_ms: i64,
    /// The account, or [`ANONYMOUS`].
    pub username: Cow<'static, str>,
    pub client: Client,
    pub operation: Operation,
    pub resource_type: ResourceType,
    pub resource: String,
    /// `None` on success; why it failed otherwise.
    pub failure: Option<String>,
    /// For a pull: the digest of the manifest served, which counts the pull.
    pub digest: Option<String>,
}

/// Unix milliseconds now.
pub use berth_core::time::now_ms;

impl AuditEvent {
    /// A successful event, now.
    pub fn new(
        username: impl Into<Cow<'static, str>>,
        client: Client,
        operation: Operation,
        resource_type: ResourceType,
        resource: impl Into<String>,
    ) -> AuditEvent {
        AuditEvent {
            time_ms: now_ms(),
            username: username.into(),
            client,
            operation,
            resource_type,
            resource: resource.into(),
            failure: None,
            digest: None,
        }
    }

    /// The same event, failed for `reason`.
    pub fn failed(mut self, reason: impl Into<String>) -> AuditEvent {
        self.failure = Some(reason.into());
        self
    }

    /// A pull that served the manifest `digest` (counted in its pull statistics).
    pub fn pulled(mut self, digest: String) -> AuditEvent {
        self.digest = Some(digest);
        self
    }

    /// The project the entry belongs to ([`project_of`]).
    pub fn project(&self) -> Option<&str> {
        project_of(self.resource_type, &self.resource)
    }
}

/// The project an entry about `resource` belongs to, which decides who may read it; `None`
/// for system-wide entries (logins, tokens, users, repositories outside any project).
pub fn project_of(resource_type: ResourceType, resource: &str) -> Option<&str> {
    let first = || resource.split_once('/').map(|(p, _)| p);
    match resource_type {
        ResourceType::Artifact
        | ResourceType::Tag
        | ResourceType::Blob
        | ResourceType::Repository
        | ResourceType::Member => first(),
        ResourceType::Project => Some(resource),
        ResourceType::Robot => resource
            .strip_prefix(berth_core::access::ROBOT_PREFIX)
            .and_then(|rest| rest.split_once('+'))
            .map(|(project, _)| project),
        // Retention is managed by system administrators: their entries are system-wide.
        ResourceType::User
        | ResourceType::Login
        | ResourceType::Token
        | ResourceType::Retention
        | ResourceType::Replication => None,
    }
}

/// Where JSON lines go (one event per line, for Filebeat and the like).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonLines {
    Off,
    Stdout,
    /// Appended to (created if missing).
    File(PathBuf),
}

/// How the audit log is written.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub jsonl: JsonLines,
    /// Entries older than this are deleted (at start and hourly); `None` keeps them.
    pub retention: Option<Duration>,
    /// How often queued events are written.
    pub interval: Duration,
    /// How many entries (identical events folded) and pulled manifests may wait; more
    /// events are dropped (and counted).
    pub queue: usize,
    /// How many waiting entries wake the writer before its interval is up.
    pub batch: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            jsonl: JsonLines::Off,
            retention: Some(Duration::from_secs(90 * 86_400)),
            interval: Duration::from_millis(200),
            queue: 65_536,
            batch: 8_192,
        }
    }
}

/// What a request and the writer share to wake the writer early and count drops.
struct Signals {
    early: Notify,
    /// Set once the writer was woken early, until it has taken the queue.
    woken: AtomicBool,
    dropped: AtomicU64,
    /// Shut down: nothing is recorded any more (read under a shard's lock).
    closed: AtomicBool,
}

/// One shard of the queue, on a cache line of its own.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Folder>);

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Folder> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The shard of the calling thread: threads take the next one as they first record.
fn shard_of_thread(shards: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|index| *index) % shards
}

enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

struct Shared {
    shards: Arc<[Shard]>,
    /// How many entries one shard may hold, and how many wake the writer early.
    shard_capacity: usize,
    shard_batch: usize,
    control: mpsc::UnboundedSender<Control>,
    signals: Arc<Signals>,
}

/// The handle requests record through. Cheap to clone; [`Audit::off`] records nothing.
#[derive(Clone, Default)]
pub struct Audit {
    shared: Option<Arc<Shared>>,
}

impl Audit {
    /// An audit log that records nothing (audit disabled, and tests that do not look).
    pub fn off() -> Audit {
        Audit::default()
    }

    /// Start the writer on this runtime. Fails only if the JSON lines file cannot be opened.
    pub async fn start(
        store: Arc<dyn AuditStore>,
        settings: AuditSettings,
    ) -> Result<Audit, String> {
        let sink = writer::Sink::open(&settings.jsonl).await?;
        // A shard per thread that records, up to twice the cores (tokio's workers and the
        // threads of blocking tasks).
        let count = std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).min(64));
        let shards: Arc<[Shard]> = (0..count).map(|_| Shard::default()).collect();
        let (control, commands) = mpsc::unbounded_channel();
        let signals = Arc::new(Signals {
            early: Notify::new(),
            woken: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(
            writer::Writer {
                store,
                sink,
                shards: shards.clone(),
                commands,
                signals: signals.clone(),
                interval: settings.interval,
                retention: settings.retention,
            }
            .run(),
        );
        Ok(Audit {
            shared: Some(Arc::new(Shared {
                shards,
                shard_capacity: settings.queue.div_ceil(count).max(1),
                shard_batch: settings.batch.div_ceil(count).max(1),
                control,
                signals,
            })),
        })
    }

    /// Whether events are recorded at all (hooks skip building them when not).
    pub fn is_on(&self) -> bool {
        self.shared.is_some()
    }

    /// Queue an event for the writer. Never waits and never fails: when this thread's share
    /// of the queue is full the event is dropped and counted.
    pub fn record(&self, event: AuditEvent) {
        let Some(shared) = &self.shared else { return };
        let signals = &shared.signals;
        let mut shard = shared.shards[shard_of_thread(shared.shards.len())].lock();
        if signals.closed.load(Ordering::Acquire) {
            return;
        }
        if shard.held >= shared.shard_capacity {
            if !shard.add_if_held(event) {
                drop(shard);
                signals.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        shard.add(event);
        let waiting = shard.held;
        drop(shard);
        if waiting >= shared.shard_batch
            && !signals.woken.load(Ordering::Relaxed)
            && !signals.woken.swap(true, Ordering::AcqRel)
        {
            signals.early.notify_one();
        }
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.signals.dropped.load(Ordering::Relaxed))
    }

    /// Wait until every event recorded before this call is written.
    pub async fn flush(&self) {
        self.command(Control::Flush).await;
    }

    /// Write what is queued and stop the writer; later events are ignored.
    pub async fn shutdown(&self) {
        self.command(Control::Shutdown).await;
    }

    async fn command(&self, make: impl FnOnce(oneshot::Sender<()>) -> Control) {
        let Some(shared) = &self.shared else { return };
        let (done, wait) = oneshot::channel();
        if shared.control.send(make(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

#[cfg(test)]
mod tests;
