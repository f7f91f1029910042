//! `/projects/{p}/members`: Harbor's ProjectMemberEntity. A member's id is its user's id
//! (a user is a project's member at most once), so ids are stable and need no table.

use axum::body::Body;
use berth_core::Role;
use berth_core::mgmt::ListQuery;
use berth_meta::Member;
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::response::{self, MgmtApiError, MgmtResult, created, json, page, slice_page};

#[derive(Serialize, Clone)]
struct MemberJson {
    id: i64,
    project_id: i64,
    entity_name: String,
    role_name: &'static str,
    role_id: i64,
    entity_id: i64,
    entity_type: &'static str,
}

fn to_json(member: &Member) -> MemberJson {
    MemberJson {
        id: member.user_id,
        project_id: member.project_id,
        entity_name: member.user_name.clone(),
        role_name: member.role.as_str(),
        role_id: member.role.id(),
        entity_id: member.user_id,
        entity_type: "u",
    }
}

/// Harbor's ProjectMember request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    role_id: i64,
    member_user: Option<UserRef>,
    member_group: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRef {
    user_id: Option<i64>,
    username: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleRequest {
    role_id: i64,
}

fn role(id: i64) -> Result<Role, MgmtApiError> {
    Role::from_id(id).ok_or_else(|| {
        MgmtApiError::bad_request(format!(
            "role_id {id} is not a role: 1 projectAdmin, 2 developer, 3 guest, 4 maintainer, 5 limitedGuest"
        ))
    })
}

async fn members(ctx: &Ctx<'_>) -> Result<Vec<Member>, MgmtApiError> {
    Ok(ctx.identity()?.members(&ctx.project()?.name).await?)
}

async fn member(ctx: &Ctx<'_>, id: i64) -> Result<Member, MgmtApiError> {
    members(ctx)
        .await?
        .into_iter()
        .find(|m| m.user_id == id)
        .ok_or_else(|| MgmtApiError::not_found(format!("member {id} not found")))
}

pub async fn list(ctx: &Ctx<'_>, query: &ListQuery, entity_name: Option<&str>) -> MgmtResult {
    let all: Vec<MemberJson> = members(ctx)
        .await?
        .iter()
        .filter(|m| entity_name.is_none_or(|n| m.user_name.contains(n)))
        .map(to_json)
        .collect();
    let path = format!("/api/v2.0/projects/{}/members", ctx.project()?.name);
    page(
        &slice_page(&all, query),
        all.len() as u64,
        query,
        &path,
        ctx.raw_query(),
    )
}

pub async fn add(ctx: &Ctx<'_>, body: Body) -> MgmtResult {
    let request: AddMember = response::body(body).await?;
    let role = role(request.role_id)?;
    if request.member_group.is_some() {
        return Err(MgmtApiError::bad_request(
            "group members are not supported: add users (member_user)",
        ));
    }
    let who = request
        .member_user
        .ok_or_else(|| MgmtApiError::bad_request("member_user is required"))?;
    let identity = ctx.identity()?;
    let user = match (who.user_id, who.username.as_deref()) {
        (Some(id), _) if id > 0 => identity.user_by_id(id).await?,
        (_, Some(name)) if !name.is_empty() => identity.user(name).await?,
        _ => {
            return Err(MgmtApiError::bad_request(
                "member_user needs user_id or username",
            ));
        }
    };
    let project = ctx.project()?;
    if members(ctx).await?.iter().any(|m| m.user_id == user.id) {
        return Err(MgmtApiError::conflict(format!(
            "{} is already a member of {}",
            user.name, project.name
        )));
    }
    identity.set_member(&project.name, &user.name, role).await?;
    // Location names the project as the request did.
    let segment = ctx
        .parts
        .uri
        .path()
        .strip_prefix("/api/v2.0/projects/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    created(&format!("/api/v2.0/projects/{segment}/members/{}", user.id))
}

pub async fn get(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    json(&to_json(&member(ctx, id).await?))
}

pub async fn update(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let request: RoleRequest = response::body(body).await?;
    let role = role(request.role_id)?;
    let member = member(ctx, id).await?;
    ctx.identity()?
        .set_member(&ctx.project()?.name, &member.user_name, role)
        .await?;
    response::ok()
}

pub async fn delete(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    let member = member(ctx, id).await?;
    ctx.identity()?
        .remove_member(&ctx.project()?.name, &member.user_name)
        .await?;
    response::ok()
}
