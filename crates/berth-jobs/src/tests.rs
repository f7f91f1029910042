//! Runners as separate nodes over one store: a due schedule runs once, a dead node's job is
//! taken over when its lease lapses, failures are retried, and jobs survive a restart — on
//! SQLite, and with two connections to one real PostgreSQL database as two nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use berth_meta::{JobState, JobStore, NewJob, PgOptions, PgStore, Schedule, SqliteStore};
use serde_json::{Value, json};

use crate::{JobError, JobHandler, Runner, RunnerOptions, now_ms};

/// Counts its runs; fails (transiently) the first `fail_first` of them.
struct Counting {
    runs: AtomicUsize,
    fail_first: usize,
    delay: Duration,
}

impl Counting {
    fn new(fail_first: usize, delay: Duration) -> Arc<Counting> {
        Arc::new(Counting {
            runs: AtomicUsize::new(0),
            fail_first,
            delay,
        })
    }
}

#[async_trait]
impl JobHandler for Counting {
    fn kind(&self) -> &'static str {
        "count"
    }

    async fn run(&self, params: &Value) -> Result<Value, JobError> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(self.delay).await;
        if run <= self.fail_first {
            return Err(JobError::transient(format!("failure {run}")));
        }
        Ok(json!({"run": run, "params": params}))
    }
}

fn options() -> RunnerOptions {
    RunnerOptions {
        lease: Duration::from_millis(300),
        poll: Duration::from_millis(20),
        max_attempts: 3,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    }
}

async fn store(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    Arc::new(
        SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .expect("store"),
    )
}

#[tokio::test]
async fn a_schedule_due_on_two_nodes_runs_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir).await;
    schedule_due_on_two_nodes_runs_once(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_due_on_two_postgresql_nodes_runs_once() {
    let db = berth_meta::postgres::testing::database().await;
    let (a, b) = two_pg_nodes(&db.url).await;
    schedule_due_on_two_nodes_runs_once(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_postgresql_nodes_job_is_taken_over() {
    let db = berth_meta::postgres::testing::database().await;
    let (a, b) = two_pg_nodes(&db.url).await;
    dead_nodes_job_is_taken_over(a, b).await;
}

/// Two nodes: two stores (pools) on one PostgreSQL database.
async fn two_pg_nodes(url: &str) -> (Arc<dyn JobStore>, Arc<dyn JobStore>) {
    let node = || async { Arc::new(PgStore::connect(&PgOptions::new(url)).await.expect("node")) };
    (node().await, node().await)
}

async fn schedule_due_on_two_nodes_runs_once(
    store_a: Arc<dyn JobStore>,
    store_b: Arc<dyn JobStore>,
) {
    let store = store_a.clone();
    let handler = Counting::new(0, Duration::from_millis(50));
    let node = |store: Arc<dyn JobStore>, name: &str| {
        Runner::new(store, options())
            .with_owner(name)
            .handle(handler.clone())
    };
    let (a, b) = (node(store_a, "node-a"), node(store_b, "node-b"));
    a.schedule(
        "count",
        Some(&"0 3 * * *".parse().expect("cron")),
        json!({"n": 1}),
    )
    .await
    .expect("schedule");
    // Unchanged, the schedule keeps its next run; then make it due now.
    b.schedule(
        "count",
        Some(&"0 3 * * *".parse().expect("cron")),
        json!({"n": 1}),
    )
    .await
    .expect("schedule");
    let mut due = store.schedules().await.expect("schedules").remove(0);
    due.next_run_ms = now_ms() - 1_000;
    store.set_schedule("count", Some(&due)).await.expect("due");
    let (ran_a, ran_b) = tokio::join!(a.tick(), b.tick());
    assert_eq!(ran_a.expect("tick") + ran_b.expect("tick"), 1);
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
    let history = store.jobs(Some("count"), 0, 10).await.expect("jobs");
    assert_eq!(history.total, 1);
    let job = &history.items[0];
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.key, format!("count@{}", due.next_run_ms / 1000));
    assert_eq!(
        job.result.as_ref().expect("result")["params"],
        json!({"n": 1})
    );
    let next: Schedule = store.schedules().await.expect("schedules").remove(0);
    assert!(next.next_run_ms > now_ms(), "moved to the next run");
    // Nothing more to do on either node.
    assert_eq!(
        a.tick().await.expect("tick") + b.tick().await.expect("tick"),
        0
    );
}

#[tokio::test]
async fn a_dead_nodes_job_is_taken_over_when_its_lease_lapses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir).await;
    dead_nodes_job_is_taken_over(store.clone(), store).await;
}

async fn dead_nodes_job_is_taken_over(store: Arc<dyn JobStore>, other: Arc<dyn JobStore>) {
    let id = store
        .enqueue_job(&NewJob {
            kind: "count".into(),
            key: "once".into(),
            params: json!({}),
            run_after_ms: now_ms(),
        })
        .await
        .expect("enqueue")
        .expect("new");
    // node-a claims it and dies (never renews nor finishes).
    let claimed = store
        .claim_job(&["count"], "node-a", now_ms(), now_ms() + 300)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(claimed.id, id);
    let handler = Counting::new(0, Duration::ZERO);
    let b = Runner::new(other, options())
        .with_owner("node-b")
        .handle(handler.clone());
    assert_eq!(b.tick().await.expect("tick"), 0, "held by node-a's lease");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(b.tick().await.expect("tick"), 1, "taken over");
    let job = store.job(id).await.expect("job").expect("stored");
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 2));
}

#[tokio::test]
async fn a_long_job_keeps_its_lease_and_is_not_run_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir).await;
    let handler = Counting::new(0, Duration::from_millis(800));
    let a = Arc::new(
        Runner::new(store.clone(), options())
            .with_owner("node-a")
            .handle(handler.clone()),
    );
    let b = Runner::new(store.clone(), options())
        .with_owner("node-b")
        .handle(handler.clone());
    a.enqueue_now("count", "long", json!({}))
        .await
        .expect("enqueue")
        .expect("new");
    let running = tokio::spawn({
        let a = a.clone();
        async move { a.tick().await }
    });
    // Past several lease lengths: node-a renews, node-b never gets it.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(b.tick().await.expect("tick"), 0);
    }
    assert_eq!(running.await.expect("join").expect("tick"), 1);
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failures_are_retried_with_backoff_then_given_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir).await;
    let flaky = Counting::new(1, Duration::ZERO);
    let runner = Runner::new(store.clone(), options()).handle(flaky.clone());
    let id = runner
        .enqueue_now("count", "flaky", json!({}))
        .await
        .expect("enqueue")
        .expect("new");
    assert_eq!(runner.tick().await.expect("tick"), 1);
    let failed_once = store.job(id).await.expect("job").expect("stored");
    assert_eq!(
        (failed_once.state, failed_once.error.as_deref()),
        (JobState::Queued, Some("failure 1"))
    );
    assert_eq!(runner.tick().await.expect("tick"), 0, "backing off");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(runner.tick().await.expect("tick"), 1);
    assert_eq!(
        store.job(id).await.expect("job").expect("stored").state,
        JobState::Succeeded
    );

    let broken = Counting::new(usize::MAX, Duration::ZERO);
    let runner = Runner::new(store.clone(), options()).handle(broken.clone());
    let id = runner
        .enqueue_now("count", "broken", json!({}))
        .await
        .expect("enqueue")
        .expect("new");
    for _ in 0..3 {
        runner.tick().await.expect("tick");
        tokio::time::sleep(Duration::from_millis(220)).await;
    }
    let given_up = store.job(id).await.expect("job").expect("stored");
    assert_eq!((given_up.state, given_up.attempts), (JobState::Failed, 3));
    assert_eq!(broken.runs.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn queued_jobs_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = {
        let store = store(&dir).await;
        let runner = Runner::new(store.clone(), options()).handle(Counting::new(0, Duration::ZERO));
        let id = runner
            .enqueue_now("count", "after-restart", json!({}))
            .await
            .expect("enqueue")
            .expect("new");
        store.close().await;
        id
    };
    let store = store(&dir).await;
    let handler = Counting::new(0, Duration::ZERO);
    let runner = Runner::new(store.clone(), options()).handle(handler.clone());
    assert_eq!(runner.tick().await.expect("tick"), 1);
    assert_eq!(
        store.job(id).await.expect("job").expect("stored").state,
        JobState::Succeeded
    );
}

/// A job enqueued through the runner's waking store (as the API enqueues an operator's
/// "run now") runs at once, long before the next poll; one enqueued behind its back waits.
#[tokio::test]
async fn a_job_enqueued_through_the_waking_store_runs_before_the_next_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir).await;
    let handler = Counting::new(0, Duration::ZERO);
    let runner = Arc::new(
        Runner::new(
            store.clone(),
            RunnerOptions {
                poll: Duration::from_secs(3600),
                ..options()
            },
        )
        .handle(handler.clone()),
    );
    let waking = runner.waking_store();
    let task = runner.clone().spawn();
    // The first tick is immediate; let it pass with nothing to do.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let job = |key: &str| NewJob {
        kind: "count".into(),
        key: key.into(),
        params: json!({}),
        run_after_ms: now_ms(),
    };
    let quiet = store.enqueue_job(&job("quiet")).await.expect("enqueue");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handler.runs.load(Ordering::SeqCst),
        0,
        "no wake, no poll: not run yet"
    );
    let woken = waking.enqueue_job(&job("woken")).await.expect("enqueue");
    let mut waited = Duration::ZERO;
    while handler.runs.load(Ordering::SeqCst) < 2 && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    task.abort();
    assert_eq!(
        handler.runs.load(Ordering::SeqCst),
        2,
        "both ran once woken"
    );
    for id in [quiet, woken] {
        let id = id.expect("a new job");
        let job = store.job(id).await.expect("job").expect("exists");
        assert_eq!(job.state, JobState::Succeeded);
    }
}
