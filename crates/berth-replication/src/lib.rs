//! Replication between registries (Harbor's policies and executions): push policies copy
//! from this registry to a remote one, pull policies from a remote one into this registry.
//! An execution is planned into tasks (one per repository) recorded in the database, and run
//! as a job of the job system, so it runs once across nodes and a run cut short (a crash, a
//! restart) is taken over and resumes at its first unfinished task, skipping whatever the
//! destination already has.
//!
//! This crate never decides who may do what (replication is administrators' business, decided
//! in `berth-auth`), and never writes this registry's metadata except through the registry
//! service (`berth_registry::Registry`, so copies pass a push's checks) and its own rows.

use berth_core::time::now_ms;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::{Digest, RepositoryName, Tag};
use berth_meta::{
    ExecutionFilter, JobStore, MetaError, MetaStore, NewJob, NewReplicationTask,
    ReplicationExecutionRow, ReplicationPolicyRow,
};
use berth_proxy::ProxyCache;
use berth_registry::{Registry, RegistryEvents};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub mod copy;
pub mod policy;
pub mod sides;

use copy::{Copier, TaskPlan};
use policy::Definition;
use sides::{Local, Remote, Side, StepError, StepResult};

/// The job kind that runs executions.
pub const REPLICATION_JOB: &str = "replication";

/// Harbor's id for "this registry" in a policy's `src_registry` / `dest_registry`.
pub const LOCAL_REGISTRY_ID: i64 = 0;

/// How long the event-based policies are remembered (another node may change them).
const EVENT_POLICY_TTL: Duration = Duration::from_secs(5);
/// Tries of a step that failed for a reason that may pass (the remote down, a timeout).
const ATTEMPTS: u32 = 3;
/// The first retry's delay, quadrupled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Tasks (repositories) of one execution copied at once.
const TASKS_AT_ONCE: usize = 4;
/// How often a running execution looks whether it was asked to stop.
const STOP_POLL: Duration = Duration::from_secs(2);

/// What an event-based execution replicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub repository: String,
    /// Tags and digests.
    pub references: Vec<String>,
    /// `copy` or `deletion`.
    pub operation: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("replication policy {0} not found")]
    PolicyUnknown(i64),
    #[error("replication policy {0} is disabled")]
    Disabled(i64),
    #[error("replication policy {0} has an execution in progress and allows one at a time")]
    Busy(i64),
    #[error("replication policy {id} is not valid: {reason}")]
    Invalid { id: i64, reason: String },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// One node's replication service.
pub struct Replicator {
    registry: Arc<Registry>,
    store: Arc<dyn MetaStore>,
    jobs: Arc<dyn JobStore>,
    proxy: Arc<ProxyCache>,
    /// Whether this registry keeps repositories in projects (token mode): a pull creates
    /// the project it copies into.
    projects: bool,
    event_policies: Mutex<Option<(Instant, EventPolicies)>>,
}

/// The enabled event-based push policies: id and definition.
type EventPolicies = Arc<Vec<(i64, Definition)>>;

fn meta_error(e: MetaError) -> StepError {
    StepError {
        message: e.to_string(),
        transient: true,
    }
}

impl Replicator {
    pub fn new(
        registry: Arc<Registry>,
        store: Arc<dyn MetaStore>,
        jobs: Arc<dyn JobStore>,
        proxy: Arc<ProxyCache>,
        projects: bool,
    ) -> Replicator {
        Replicator {
            registry,
            store,
            jobs,
            proxy,
            projects,
            event_policies: Mutex::new(None),
        }
    }

    /// The metadata store its policies, executions and tasks are in.
    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    /// The policy's definition, as stored.
    pub fn definition(policy: &ReplicationPolicyRow) -> Result<Definition, ReplicationError> {
        serde_json::from_str(&policy.fields.definition).map_err(|e| ReplicationError::Invalid {
            id: policy.id,
            reason: e.to_string(),
        })
    }

    /// Policies changed: look again before the next event.
    pub fn forget(&self) {
        *self
            .event_policies
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Record an execution of `policy_id` and queue the job that runs it; its id.
    pub async fn start(
        &self,
        policy_id: i64,
        trigger: &str,
        event: Option<&Event>,
    ) -> Result<i64, ReplicationError> {
        let policy = self
            .store
            .replication_policy(policy_id)
            .await?
            .ok_or(ReplicationError::PolicyUnknown(policy_id))?;
        if !policy.fields.enabled {
            return Err(ReplicationError::Disabled(policy_id));
        }
        let definition = Self::definition(&policy)?;
        if definition.single_active_replication && self.running(policy_id).await? {
            return Err(ReplicationError::Busy(policy_id));
        }
        let event = event.map(|e| serde_json::to_string(e).unwrap_or_default());
        let id = self
            .store
            .create_replication_execution(policy_id, trigger, event.as_deref())
            .await?;
        self.enqueue(id).await?;
        Ok(id)
    }

    async fn running(&self, policy_id: i64) -> Result<bool, MetaError> {
        let filter = ExecutionFilter {
            policy_id: Some(policy_id),
            status: Some("InProgress".into()),
            trigger: None,
        };
        Ok(self
            .store
            .replication_executions(&filter, 0, 1)
            .await?
            .total
            > 0)
    }

    async fn enqueue(&self, execution_id: i64) -> Result<(), MetaError> {
        self.jobs
            .enqueue_job(&NewJob {
                kind: REPLICATION_JOB.into(),
                key: format!("execution-{execution_id}"),
                params: json!({"execution_id": execution_id}),
                run_after_ms: now_ms(),
            })
            .await?;
        Ok(())
    }

    /// A scheduled run of `policy_id` that came due at `due` (Unix seconds): the execution
    /// the schedule started at or after then, or a new one (a job retried after a crash
    /// continues its execution rather than starting another).
    pub async fn scheduled_execution(&self, policy_id: i64, due: i64) -> StepResult<Option<i64>> {
        let filter = ExecutionFilter {
            policy_id: Some(policy_id),
            status: None,
            trigger: Some("scheduled".into()),
        };
        let latest = self
            .store
            .replication_executions(&filter, 0, 1)
            .await
            .map_err(meta_error)?;
        if let Some(execution) = latest.items.first()
            && execution.started_ms >= due * 1000
        {
            return Ok(Some(execution.id));
        }
        let policy = match self.store.replication_policy(policy_id).await {
            Ok(Some(policy)) if policy.fields.enabled => policy,
            Ok(_) => return Ok(None),
            Err(e) => return Err(meta_error(e)),
        };
        let definition =
            Self::definition(&policy).map_err(|e| StepError::permanent(e.to_string()))?;
        if definition.single_active_replication
            && self.running(policy_id).await.map_err(meta_error)?
        {
            return Ok(None);
        }
        let id = self
            .store
            .create_replication_execution(policy_id, "scheduled", None)
            .await
            .map_err(meta_error)?;
        Ok(Some(id))
    }

    /// Ask an execution to stop (Harbor's `PUT /replication/executions/{id}`).
    pub async fn stop(&self, execution_id: i64) -> Result<bool, MetaError> {
        self.store.stop_replication_execution(execution_id).await
    }

    /// One end of a policy: this registry, or a stored registry endpoint.
    async fn side(&self, registry: Option<i64>) -> StepResult<Box<dyn Side>> {
        match registry {
            None | Some(LOCAL_REGISTRY_ID) => Ok(Box::new(Local {
                registry: self.registry.clone(),
                projects: self.projects.then(|| self.store.clone()),
            })),
            Some(id) => {
                let upstream = self
                    .store
                    .upstream_by_id(id)
                    .await
                    .map_err(meta_error)?
                    .ok_or_else(|| StepError::permanent(format!("registry {id} not found")))?;
                let client = self
                    .proxy
                    .client_for(&upstream)
                    .map_err(StepError::permanent)?;
                Ok(Box::new(Remote {
                    client: Arc::new(client),
                }))
            }
        }
    }

    /// Run (or resume) execution `execution_id`: the job's work. Failed tasks fail the
    /// execution, not the job; an error here is the database's (the job is retried).
    pub async fn run(&self, execution_id: i64) -> StepResult<Value> {
        let Some(execution) = self
            .store
            .replication_execution(execution_id)
            .await
            .map_err(meta_error)?
        else {
            return Err(StepError::permanent(format!(
                "replication execution {execution_id} not found"
            )));
        };
        if berth_meta::replication::is_final(&execution.status) {
            return Ok(json!({"execution": execution_id, "status": execution.status}));
        }
        let (status, text) = match self.execute(&execution).await {
            Ok(outcome) => outcome,
            Err(e) if e.transient => return Err(e),
            Err(e) => ("Failed", e.message),
        };
        self.store
            .finish_replication_execution(execution_id, status, &text)
            .await
            .map_err(meta_error)?;
        tracing::info!(execution = execution_id, status, %text, "replication execution finished");
        Ok(json!({"execution": execution_id, "status": status, "status_text": text}))
    }

    async fn execute(
        &self,
        execution: &ReplicationExecutionRow,
    ) -> StepResult<(&'static str, String)> {
        let Some(policy) = self
            .store
            .replication_policy(execution.policy_id)
            .await
            .map_err(meta_error)?
        else {
            return Ok(("Failed", "the policy was deleted".into()));
        };
        let definition =
            Self::definition(&policy).map_err(|e| StepError::permanent(e.to_string()))?;
        let src = self.side(policy.fields.src_registry).await?;
        let dst = self.side(policy.fields.dest_registry).await?;
        let plans = match self.plan(execution, &definition, src.as_ref()).await {
            Ok(plans) => plans,
            Err(e) => return Ok(("Failed", format!("listing the source failed: {e}"))),
        };
        let tasks = self
            .store
            .plan_replication_tasks(execution.id, &plans)
            .await
            .map_err(meta_error)?;
        let stop = AtomicBool::new(execution.stop_requested);
        let copier = Copier::new(
            src.as_ref(),
            dst.as_ref(),
            definition.bytes_per_second(),
            definition.r#override,
            &stop,
        );
        let failed = AtomicUsize::new(0);
        let (copier, stop_flag, counter) = (&copier, &stop, &failed);
        // Owned items and `move` futures: the stream must be `Send` for any lifetime.
        let work =
            futures_util::stream::iter(tasks.clone())
                .map(move |task| async move {
                    self.run_planned(copier, &task, stop_flag, counter).await
                })
                .buffer_unordered(TASKS_AT_ONCE)
                .collect::<Vec<StepResult<()>>>();
        let watch = async {
            loop {
                tokio::time::sleep(STOP_POLL).await;
                if let Ok(Some(now)) = self.store.replication_execution(execution.id).await
                    && now.stop_requested
                {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        };
        let results = tokio::select! {
            results = work => results,
            () = watch => unreachable!("the watch never ends"),
        };
        results.into_iter().collect::<StepResult<Vec<()>>>()?;
        let failed = failed.load(Ordering::Relaxed);
        Ok(if stop.load(Ordering::Relaxed) {
            ("Stopped", "stopped by request".into())
        } else if failed > 0 {
            (
                "Failed",
                format!("{failed} of {} tasks failed", tasks.len()),
            )
        } else {
            ("Succeed", String::new())
        })
    }

    /// Run one planned task unless it finished before (a run taken over) or the execution
    /// is stopping, and record how it went.
    async fn run_planned(
        &self,
        copier: &Copier<'_>,
        task: &berth_meta::ReplicationTaskRow,
        stop: &AtomicBool,
        failed: &AtomicUsize,
    ) -> StepResult<()> {
        if berth_meta::replication::is_final(&task.status) {
            if task.status == "Failed" {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        if stop.load(Ordering::Relaxed) {
            return self
                .store
                .update_replication_task(task.id, "Stopped", "stopped before it began\n")
                .await
                .map_err(meta_error);
        }
        let plan: TaskPlan = serde_json::from_str(&task.task.plan)
            .map_err(|e| StepError::permanent(format!("task {}: {e}", task.id)))?;
        self.store
            .update_replication_task(task.id, "InProgress", "")
            .await
            .map_err(meta_error)?;
        let (log, result) = self.run_task(copier, &plan).await;
        let status = match &result {
            Ok(()) => "Succeed",
            Err(_) if stop.load(Ordering::Relaxed) => "Stopped",
            Err(_) => {
                failed.fetch_add(1, Ordering::Relaxed);
                "Failed"
            }
        };
        self.store
            .update_replication_task(task.id, status, &log)
            .await
            .map_err(meta_error)
    }

    /// A task, tried again with backoff while it fails for a passing reason; its log.
    async fn run_task(&self, copier: &Copier<'_>, plan: &TaskPlan) -> (String, StepResult<()>) {
        let mut log = String::new();
        let mut delay = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let (report, result) = copier.run(plan).await;
            log.push_str(&report.log);
            match result {
                Err(e) if e.transient && attempt < ATTEMPTS => {
                    log.push_str(&format!(
                        "attempt {attempt} of {ATTEMPTS} failed; trying again in {} s\n",
                        delay.as_secs()
                    ));
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                other => return (log, other),
            }
        }
        (log, Err(StepError::permanent("no attempt left")))
    }

    /// What an execution copies: the event's artifacts, or every selected tag of every
    /// selected repository at the source, one task per repository.
    async fn plan(
        &self,
        execution: &ReplicationExecutionRow,
        definition: &Definition,
        src: &dyn Side,
    ) -> StepResult<Vec<NewReplicationTask>> {
        if let Some(event) = &execution.event {
            let event: Event = serde_json::from_str(event)
                .map_err(|e| StepError::permanent(format!("the event is not valid: {e}")))?;
            return Ok(vec![task(TaskPlan {
                dst: definition.destination(&event.repository),
                src: event.repository,
                references: event.references,
                operation: event.operation,
            })]);
        }
        let repositories = match definition.literal_repository() {
            Some(name) => vec![name.to_owned()],
            None => retrying(|| src.repositories()).await?,
        };
        let mut plans = Vec::new();
        for repository in repositories {
            if !definition.selects_repository(&repository) {
                continue;
            }
            let tags: Vec<String> = retrying(|| src.tags(&repository))
                .await?
                .into_iter()
                .filter(|t| definition.selects_tag(t))
                .collect();
            if tags.is_empty() {
                continue;
            }
            plans.push(task(TaskPlan {
                dst: definition.destination(&repository),
                src: repository,
                references: tags,
                operation: "copy".into(),
            }));
        }
        Ok(plans)
    }

    /// The enabled event-based push policies, as recently read.
    async fn event_policies(&self) -> Result<EventPolicies, MetaError> {
        if let Some((at, policies)) = &*self
            .event_policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < EVENT_POLICY_TTL
        {
            return Ok(policies.clone());
        }
        let policies: Vec<(i64, Definition)> = self
            .store
            .replication_policies()
            .await?
            .into_iter()
            .filter(|p| {
                p.fields.enabled
                    && p.fields
                        .src_registry
                        .is_none_or(|id| id == LOCAL_REGISTRY_ID)
            })
            .filter_map(|p| Some((p.id, Self::definition(&p).ok()?)))
            .filter(|(_, d)| d.trigger.kind == "event_based")
            .collect();
        let policies = Arc::new(policies);
        *self
            .event_policies
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), policies.clone()));
        Ok(policies)
    }

    /// Start an execution of every event-based policy that selects what happened.
    async fn on_event(&self, repository: String, references: Vec<String>, operation: &str) {
        let policies = match self.event_policies().await {
            Ok(policies) => policies,
            Err(e) => {
                tracing::warn!(error = %e, "replication: cannot read the event-based policies");
                return;
            }
        };
        for (id, definition) in policies.iter() {
            if operation == "deletion" && !definition.replicate_deletion {
                continue;
            }
            if !definition.selects_repository(&repository) {
                continue;
            }
            // Tags go through the tag filter; digests (referrers, deletes by digest) do not.
            let selected: Vec<String> = references
                .iter()
                .filter(|r| r.contains(':') || definition.selects_tag(r))
                .cloned()
                .collect();
            if selected.is_empty() {
                continue;
            }
            let event = Event {
                repository: repository.clone(),
                references: selected,
                operation: operation.to_owned(),
            };
            match self.start(*id, "event_based", Some(&event)).await {
                Ok(execution) => {
                    tracing::info!(policy = id, execution, %repository, operation, "replication event queued")
                }
                Err(e) => tracing::warn!(policy = id, error = %e, "replication event not queued"),
            }
        }
    }

    /// What tells this replicator of pushes and deletes (`Registry::observe`).
    pub fn events(self: &Arc<Self>) -> Arc<dyn RegistryEvents> {
        Arc::new(Events {
            replicator: self.clone(),
        })
    }
}

fn task(plan: TaskPlan) -> NewReplicationTask {
    let shown = |name: &str| {
        if plan.references.len() == 1 {
            let reference = &plan.references[0];
            let separator = if reference.contains(':') { "@" } else { ":" };
            format!("{name}{separator}{reference}")
        } else {
            format!("{name}:[{}]", plan.references.join(","))
        }
    };
    NewReplicationTask {
        resource_type: "artifact".into(),
        src_resource: shown(&plan.src),
        dst_resource: shown(&plan.dst),
        operation: plan.operation.clone(),
        plan: serde_json::to_string(&plan).unwrap_or_default(),
    }
}

/// `step`, tried again with backoff while it fails for a passing reason.
async fn retrying<T, F, Fut>(mut step: F) -> StepResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StepResult<T>>,
{
    let mut delay = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match step().await {
            Err(e) if e.transient && attempt < ATTEMPTS => {
                tokio::time::sleep(delay).await;
                delay *= 4;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The registry's events, handed to the replicator off the request's path.
struct Events {
    replicator: Arc<Replicator>,
}

impl RegistryEvents for Events {
    fn pushed(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        tags: &[Tag],
        subject: Option<&Digest>,
    ) {
        // A manifest pushed by digest alone travels with what lists it (its index, or the
        // tag pushed next), unless it refers to something (a signature, an SBOM).
        let references: Vec<String> = if tags.is_empty() {
            if subject.is_none() {
                return;
            }
            vec![digest.to_string()]
        } else {
            tags.iter().map(|t| t.to_string()).collect()
        };
        let replicator = self.replicator.clone();
        let repository = repository.to_string();
        tokio::spawn(async move { replicator.on_event(repository, references, "copy").await });
    }

    fn deleted(&self, repository: &RepositoryName, reference: &berth_core::Reference) {
        let replicator = self.replicator.clone();
        let repository = repository.to_string();
        let references = vec![reference.to_string()];
        tokio::spawn(async move {
            replicator
                .on_event(repository, references, "deletion")
                .await
        });
    }
}
