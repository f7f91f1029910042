//! `/system/gc*`: Harbor's garbage collection API over berth's job system. A run is a `gc`
//! job (run now: `POST /system/gc/schedule` with type `Manual`), its history is the jobs of
//! that kind, its schedule the job schedule of that kind (cron, once cluster-wide). What a
//! run frees and its log are the job's result (`berth_registry::GcReport`).

use berth_core::cron::Cron;
use berth_core::mgmt::ListQuery;
use berth_core::time::now_ms;
use berth_meta::{Job, JobState, JobStore, NewJob, Schedule};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Ctx;
use super::response::{MgmtApiError, MgmtResult, body, created, json, ok, page};

/// The job kind GC runs as (`crates/berth/src/jobs.rs` handles it).
pub const GC_JOB: &str = "gc";

/// Harbor's presets, as five-field cron in UTC.
const HOURLY: &str = "0 * * * *";
const DAILY: &str = "0 0 * * *";
const WEEKLY: &str = "0 0 * * 0";

fn jobs<'a>(ctx: &'a Ctx<'_>) -> Result<&'a dyn JobStore, MgmtApiError> {
    ctx.state.jobs.as_deref().ok_or_else(|| {
        MgmtApiError::forbidden(
            "garbage collection runs through the job system, which this server does not run",
        )
    })
}

/// Harbor's `ScheduleObj`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ScheduleObj {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_scheduled_time: Option<String>,
}

/// Harbor's `Schedule` as a request body. Clients send back the whole object they read
/// (with its `id`, `status` and times), which berth does not need: unknown fields pass.
#[derive(Debug, Deserialize)]
struct ScheduleRequest {
    schedule: ScheduleObj,
    #[serde(default)]
    parameters: Option<Value>,
}

/// A run's parameters as stored with its job: Harbor's names.
fn parameters(given: Option<&Value>) -> Result<Value, MgmtApiError> {
    let given = given.cloned().unwrap_or_else(|| json!({}));
    let Some(fields) = given.as_object() else {
        return Err(MgmtApiError::bad_request("parameters must be an object"));
    };
    let flag = |name: &str| match fields.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(MgmtApiError::bad_request(format!(
            "parameters.{name} must be true or false, not {other}"
        ))),
    };
    let workers = match fields.get("workers") {
        None | Some(Value::Null) => 1,
        Some(n) => n
            .as_u64()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| MgmtApiError::bad_request("parameters.workers must be 1 to 5"))?,
    };
    Ok(json!({
        "delete_untagged": flag("delete_untagged")?,
        "dry_run": flag("dry_run")?,
        "workers": workers,
    }))
}

/// Harbor's cron has six fields (seconds first); berth's five. Either is accepted.
fn cron_of(schedule: &ScheduleObj) -> Result<Option<Cron>, MgmtApiError> {
    let text = match schedule.kind.as_str() {
        "None" => return Ok(None),
        "Hourly" => HOURLY.to_owned(),
        "Daily" => DAILY.to_owned(),
        "Weekly" => WEEKLY.to_owned(),
        "Custom" => {
            let given = schedule.cron.as_deref().unwrap_or("").trim();
            let fields: Vec<&str> = given.split_whitespace().collect();
            match fields.len() {
                5 => given.to_owned(),
                6 if fields[0] == "0" => fields[1..].join(" "),
                6 => {
                    return Err(MgmtApiError::bad_request(
                        "cron: berth schedules whole minutes (the seconds field must be 0)",
                    ));
                }
                _ => {
                    return Err(MgmtApiError::bad_request(format!(
                        "cron {given:?}: expected five or six fields"
                    )));
                }
            }
        }
        other => {
            return Err(MgmtApiError::bad_request(format!(
                "schedule type {other:?}: expected Manual, Hourly, Daily, Weekly, Custom or None"
            )));
        }
    };
    text.parse()
        .map(Some)
        .map_err(|e| MgmtApiError::bad_request(format!("cron {text:?}: {e}")))
}

fn millis_time(ms: i64) -> String {
    berth_core::time::rfc3339_millis(ms)
}

/// How Harbor shows a schedule: its type (a preset or `Custom`) and six-field cron.
fn schedule_json(schedule: Option<&Schedule>) -> Value {
    let Some(schedule) = schedule else {
        return json!({"type": "None"});
    };
    let kind = match schedule.cron.as_str() {
        HOURLY => "Hourly",
        DAILY => "Daily",
        WEEKLY => "Weekly",
        _ => "Custom",
    };
    json!({
        "type": kind,
        "cron": format!("0 {}", schedule.cron),
        "next_scheduled_time": millis_time(schedule.next_run_ms),
    })
}

fn status(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "Pending",
        JobState::Running => "Running",
        JobState::Succeeded => "Success",
        JobState::Failed => "Error",
    }
}

/// Harbor's `GCHistory`, with what the run freed (`result`) when it has finished.
fn history_json(job: &Job) -> Value {
    let manual = job.key.starts_with("manual-");
    let mut entry = json!({
        "id": job.id,
        "job_name": "GARBAGE_COLLECTION",
        "job_kind": if manual { "MANUAL" } else { "SCHEDULE" },
        "job_parameters": job.params.to_string(),
        "schedule": {"type": if manual { "Manual" } else { "Custom" }},
        "job_status": status(job.state),
        "deleted": false,
        "creation_time": millis_time(job.created_ms),
        "update_time": millis_time(job.finished_ms.or(job.started_ms).unwrap_or(job.created_ms)),
    });
    if let Some(result) = &job.result {
        let mut result = result.clone();
        if let Some(fields) = result.as_object_mut() {
            fields.remove("log");
        }
        entry["result"] = result;
    }
    entry
}

async fn gc_job(ctx: &Ctx<'_>, id: i64) -> Result<Job, MgmtApiError> {
    jobs(ctx)?
        .job(id)
        .await?
        .filter(|job| job.kind == GC_JOB)
        .ok_or_else(|| MgmtApiError::not_found(format!("garbage collection {id} not found")))
}

pub async fn list(ctx: &Ctx<'_>, query: &ListQuery) -> MgmtResult {
    let page_of = jobs(ctx)?
        .jobs(Some(GC_JOB), query.offset(), query.page_size)
        .await?;
    let items: Vec<Value> = page_of.items.iter().map(history_json).collect();
    page(
        &items,
        page_of.total,
        query,
        "/api/v2.0/system/gc",
        ctx.raw_query(),
    )
}

pub async fn get(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    json(&history_json(&gc_job(ctx, id).await?))
}

/// The run's log as text: its lines when it finished, its error when it failed.
pub async fn log(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    use axum::response::IntoResponse;

    let job = gc_job(ctx, id).await?;
    let mut text = String::new();
    if let Some(lines) = job
        .result
        .as_ref()
        .and_then(|r| r.get("log"))
        .and_then(Value::as_array)
    {
        for line in lines.iter().filter_map(Value::as_str) {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some(error) = &job.error {
        text.push_str(&format!("error: {error}\n"));
    }
    if text.is_empty() {
        text = format!("garbage collection {id} is {}\n", status(job.state));
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub async fn get_schedule(ctx: &Ctx<'_>) -> MgmtResult {
    let schedules = jobs(ctx)?.schedules().await?;
    let schedule = schedules.iter().find(|s| s.kind == GC_JOB);
    json(&json!({
        "schedule": schedule_json(schedule),
        "parameters": schedule.map_or_else(|| json!({}), |s| s.params.clone()),
    }))
}

/// `POST`: `Manual` queues a run now (201, its history entry in `Location`); any other
/// type sets the schedule, as `PUT` does.
pub async fn create_schedule(ctx: &Ctx<'_>, request: axum::body::Body) -> MgmtResult {
    let request: ScheduleRequest = body(request).await?;
    let params = parameters(request.parameters.as_ref())?;
    if request.schedule.kind == "Manual" {
        let key = format!("manual-{}", uuid::Uuid::new_v4());
        let id = jobs(ctx)?
            .enqueue_job(&NewJob {
                kind: GC_JOB.to_owned(),
                key,
                params,
                run_after_ms: now_ms(),
            })
            .await?
            .ok_or_else(|| MgmtApiError::internal("a fresh job key was taken"))?;
        return created(&format!("/api/v2.0/system/gc/{id}"));
    }
    set_schedule(ctx, &request.schedule, params).await?;
    created("/api/v2.0/system/gc/schedule")
}

pub async fn update_schedule(ctx: &Ctx<'_>, request: axum::body::Body) -> MgmtResult {
    let request: ScheduleRequest = body(request).await?;
    let params = parameters(request.parameters.as_ref())?;
    if request.schedule.kind == "Manual" {
        return Err(MgmtApiError::bad_request(
            "a Manual run is started with POST /system/gc/schedule",
        ));
    }
    set_schedule(ctx, &request.schedule, params).await?;
    ok()
}

async fn set_schedule(
    ctx: &Ctx<'_>,
    schedule: &ScheduleObj,
    params: Value,
) -> Result<(), MgmtApiError> {
    let store = jobs(ctx)?;
    let Some(cron) = cron_of(schedule)? else {
        store.set_schedule(GC_JOB, None).await?;
        return Ok(());
    };
    let next = cron
        .next_after(now_ms() / 1000)
        .ok_or_else(|| MgmtApiError::bad_request(format!("cron {cron} never fires")))?;
    store
        .set_schedule(
            GC_JOB,
            Some(&Schedule {
                kind: GC_JOB.to_owned(),
                cron: cron.to_string(),
                params,
                next_run_ms: next * 1000,
            }),
        )
        .await?;
    Ok(())
}
