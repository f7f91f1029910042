//! `/robots`: Harbor's robot accounts (v2) — list by level, create, get, update, refresh the
//! secret, delete — with Harbor's Robot, RobotCreated and RobotSec JSON.
//!
//! Who may do each was decided before these run (a project's `robot` permission for its
//! project-level robots, a system administrator for system-level ones); what a robot may be
//! (names, permissions, durations, secrets) is `IdentityService`'s, as for the CLI. A
//! secret is answered once, when created or generated, and never stored or shown again.

use axum::body::Body;
use berth_auth::identity::{RobotChanges, RobotSpec, robot_duration_days};
use berth_core::RobotPermission;
use berth_core::access::{ROBOT_PREFIX, RobotName};
use berth_core::mgmt::robots::{LEVEL_PROJECT, LEVEL_SYSTEM};
use berth_core::mgmt::{ListQuery, Matcher, RobotCreate, RobotScope};
use berth_meta::Robot;
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::response::{self, MgmtApiError, MgmtResult, created_json, json, page, slice_page, time};

/// Harbor's Robot model. `secret` is never filled outside creation, so it is left out, as
/// Harbor's API leaves out empty fields.
#[derive(Serialize, Clone)]
struct RobotJson {
    id: i64,
    name: String,
    description: String,
    level: &'static str,
    duration: i64,
    editable: bool,
    disable: bool,
    /// Unix seconds; -1 never.
    expires_at: i64,
    permissions: Vec<RobotPermission>,
    creation_time: String,
    update_time: String,
}

fn level(robot: &Robot) -> &'static str {
    if robot.project_id.is_some() {
        LEVEL_PROJECT
    } else {
        LEVEL_SYSTEM
    }
}

fn to_json(robot: &Robot) -> RobotJson {
    RobotJson {
        id: robot.id,
        name: robot.name.clone(),
        description: robot.description.clone(),
        level: level(robot),
        duration: robot_duration_days(robot),
        editable: true,
        disable: robot.disabled,
        expires_at: robot.expires_at.unwrap_or(-1),
        permissions: robot.permissions.clone(),
        creation_time: time(robot.created_at),
        update_time: time(robot.updated_at),
    }
}

/// Harbor's RobotCreated: the one answer that carries the secret.
#[derive(Serialize)]
struct RobotCreated {
    id: i64,
    name: String,
    secret: String,
    creation_time: String,
    expires_at: i64,
}

/// `PUT /robots/{id}`'s body: Harbor's whole Robot model. The server's own fields (`id`,
/// `editable`, `expires_at`, the times) and `secret` (changed with `PATCH`) are accepted and
/// ignored, as Harbor does; `name` and `level` must be the stored ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "Harbor's read-only fields, accepted in a full Robot and ignored"
)]
struct RobotUpdate {
    id: Option<i64>,
    name: Option<String>,
    description: Option<String>,
    secret: Option<String>,
    level: Option<String>,
    duration: Option<i64>,
    editable: Option<bool>,
    disable: Option<bool>,
    expires_at: Option<i64>,
    #[serde(default)]
    permissions: Vec<RobotPermission>,
    creation_time: Option<String>,
    update_time: Option<String>,
}

/// Harbor's RobotSec: `PATCH /robots/{id}`'s body (an empty secret: generate one) and answer.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RobotSec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

pub async fn list(ctx: &Ctx<'_>, query: &ListQuery, scope: &RobotScope) -> MgmtResult {
    let project_id = match scope {
        RobotScope::System => None,
        RobotScope::Project(_) => Some(ctx.project()?.id),
    };
    let mut robots: Vec<Robot> = ctx.identity()?.robots().await?;
    robots.retain(|r| {
        r.project_id == project_id
            && query.q.iter().all(|t| match t.key.as_str() {
                // Harbor matches its stored name, without `robot$` (`team+ci`); the full
                // name is accepted too where it cannot widen a match (not `~`).
                "name" => {
                    t.matcher
                        .matches(r.name.strip_prefix(ROBOT_PREFIX).unwrap_or(&r.name))
                        || (!matches!(t.matcher, Matcher::Fuzzy(_)) && t.matcher.matches(&r.name))
                }
                "description" => t.matcher.matches(&r.description),
                "id" => t.matcher.matches(&r.id.to_string()),
                "disabled" | "disable" => t.matcher.matches(&r.disabled.to_string()),
                // `Level` and `ProjectID` chose the scope; Harbor ignores unknown keys.
                _ => true,
            })
    });
    // By name unless sorted otherwise.
    for key in query.sort.iter().rev() {
        match key.field.as_str() {
            "name" => robots.sort_by(|a, b| a.name.cmp(&b.name)),
            "id" => robots.sort_by_key(|r| r.id),
            "creation_time" => robots.sort_by_key(|r| r.created_at),
            "update_time" => robots.sort_by_key(|r| r.updated_at),
            "expires_at" => robots.sort_by_key(|r| r.expires_at.unwrap_or(i64::MAX)),
            _ => continue,
        }
        if key.descending {
            robots.reverse();
        }
    }
    let items: Vec<RobotJson> = slice_page(&robots, query).iter().map(to_json).collect();
    page(
        &items,
        robots.len() as u64,
        query,
        "/api/v2.0/robots",
        ctx.raw_query(),
    )
}

pub async fn create(ctx: &Ctx<'_>, request: RobotCreate) -> MgmtResult {
    let name = match &request.scope {
        RobotScope::System => RobotName::System { name: request.name },
        // The project the decision resolved from the permission's namespace.
        RobotScope::Project(_) => RobotName::Project {
            project: ctx.project()?.name.clone(),
            name: request.name,
        },
    };
    let (robot, secret) = ctx
        .identity()?
        .create_robot(RobotSpec {
            name,
            description: request.description,
            duration_days: Some(request.duration.unwrap_or(0)),
            permissions: request.permissions,
            secret: request.secret,
            disabled: request.disable,
        })
        .await?;
    created_json(
        &format!("/api/v2.0/robots/{}", robot.id),
        &RobotCreated {
            id: robot.id,
            name: robot.name.clone(),
            secret,
            creation_time: time(robot.created_at),
            expires_at: robot.expires_at.unwrap_or(-1),
        },
    )
}

pub async fn get(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    json(&to_json(&ctx.identity()?.robot_by_id(id).await?))
}

pub async fn update(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let request: RobotUpdate = response::body(body).await?;
    let identity = ctx.identity()?;
    let stored = identity.robot_by_id(id).await?;
    if request.name.as_deref() != Some(stored.name.as_str())
        || request.level.as_deref() != Some(level(&stored))
    {
        return Err(MgmtApiError::bad_request(format!(
            "the name and level of a robot cannot change: send name {:?} and level {:?}",
            stored.name,
            level(&stored)
        )));
    }
    // A duration equal to the current one keeps the expiry; another counts from creation.
    let duration_days = request
        .duration
        .filter(|days| *days != robot_duration_days(&stored));
    identity
        .update_robot(
            id,
            RobotChanges {
                description: request.description.unwrap_or_default(),
                disabled: request.disable.unwrap_or(false),
                duration_days,
                permissions: request.permissions,
            },
        )
        .await?;
    response::ok()
}

/// A new secret: generated and answered when none is given; a given one must pass the
/// password policy and is not echoed back (`{}`), as Harbor answers.
pub async fn refresh_secret(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let request: RobotSec = response::body(body).await?;
    let given = request.secret.filter(|s| !s.is_empty());
    let echo = given.is_none();
    let identity = ctx.identity()?;
    let robot = identity.robot_by_id(id).await?;
    let secret = identity.refresh_robot_secret(&robot.name, given).await?;
    json(&RobotSec {
        secret: echo.then_some(secret),
    })
}

pub async fn delete(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    let identity = ctx.identity()?;
    let robot = identity.robot_by_id(id).await?;
    identity.delete_robot(&robot.name).await?;
    response::ok()
}
