//! `/users`: Harbor's UserResp, creation, the current user and its permissions, search,
//! profile, password and the sysadmin flag.

use axum::body::Body;
use berth_auth::identity::NewAccount;
use berth_core::mgmt::{ListQuery, Resource, Verb};
use berth_meta::User;
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::response::{self, MgmtApiError, MgmtResult, created, json, page, slice_page, time};

#[derive(Serialize, Clone)]
struct UserJson {
    user_id: i64,
    username: String,
    email: String,
    realname: String,
    comment: String,
    creation_time: String,
    update_time: String,
    sysadmin_flag: bool,
    admin_role_in_auth: bool,
}

fn to_json(user: &User) -> UserJson {
    UserJson {
        user_id: user.id,
        username: user.name.clone(),
        email: user.email.clone(),
        realname: user.realname.clone(),
        comment: user.comment.clone(),
        creation_time: time(user.created_at),
        update_time: time(user.updated_at),
        sysadmin_flag: user.sysadmin,
        admin_role_in_auth: false,
    }
}

/// Harbor's UserCreationReq.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    email: Option<String>,
    realname: Option<String>,
    comment: Option<String>,
    password: String,
}

/// Harbor's UserProfile.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    email: Option<String>,
    realname: Option<String>,
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordReq {
    old_password: Option<String>,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SysadminFlag {
    sysadmin_flag: bool,
}

pub async fn list(
    ctx: &Ctx<'_>,
    query: &ListQuery,
    username: Option<&str>,
    email: Option<&str>,
) -> MgmtResult {
    let mut users: Vec<User> = ctx.identity()?.users().await?;
    users.retain(|u| {
        username.is_none_or(|n| u.name.contains(n))
            && email.is_none_or(|e| u.email.contains(e))
            && query.q.iter().all(|t| match t.key.as_str() {
                "username" => t.matcher.matches(&u.name),
                "email" => t.matcher.matches(&u.email),
                "user_id" => t.matcher.matches(&u.id.to_string()),
                _ => true,
            })
    });
    for key in query.sort.iter().rev() {
        match key.field.as_str() {
            "username" => users.sort_by(|a, b| a.name.cmp(&b.name)),
            "user_id" => users.sort_by_key(|u| u.id),
            "creation_time" => users.sort_by_key(|u| u.created_at),
            _ => continue,
        }
        if key.descending {
            users.reverse();
        }
    }
    let items: Vec<UserJson> = slice_page(&users, query).iter().map(to_json).collect();
    page(
        &items,
        users.len() as u64,
        query,
        "/api/v2.0/users",
        ctx.raw_query(),
    )
}

pub async fn create(ctx: &Ctx<'_>, body: Body) -> MgmtResult {
    let request: CreateUser = response::body(body).await?;
    let email = request.email.unwrap_or_default();
    if email.is_empty() {
        return Err(MgmtApiError::bad_request("email is required"));
    }
    let user = ctx
        .identity()?
        .add_user(NewAccount {
            name: request.username,
            password: request.password,
            email,
            realname: request.realname.unwrap_or_default(),
            comment: request.comment.unwrap_or_default(),
            sysadmin: false,
        })
        .await?;
    created(&format!("/api/v2.0/users/{}", user.id))
}

async fn caller(ctx: &Ctx<'_>) -> Result<User, MgmtApiError> {
    let name = ctx.account().ok_or_else(MgmtApiError::unauthorized)?;
    Ok(ctx.identity()?.user(name).await?)
}

pub async fn current(ctx: &Ctx<'_>) -> MgmtResult {
    json(&to_json(&caller(ctx).await?))
}

/// What the caller may do, as Harbor lists it: `{resource, action}` for a scope such as
/// `/project/1` (resources relative to it when `relative`).
pub async fn permissions(ctx: &Ctx<'_>, scope: Option<&str>, relative: bool) -> MgmtResult {
    let Some(scope) = scope else {
        return json(&Vec::<serde_json::Value>::new());
    };
    let project_id = scope
        .strip_prefix("/project/")
        .and_then(|id| id.parse::<i64>().ok())
        .ok_or_else(|| MgmtApiError::bad_request("scope must look like /project/<id>"))?;
    let identity = ctx.identity()?;
    let project = identity
        .projects()
        .await?
        .into_iter()
        .find(|p| p.id == project_id)
        .ok_or_else(|| MgmtApiError::not_found(format!("project {project_id} not found")))?;
    let grants = match (ctx.state.auth.token_auth(), ctx.account()) {
        (Some(auth), Some(account)) => {
            auth.grants(account).await.map_err(MgmtApiError::internal)?
        }
        _ => None,
    };
    let mut out = Vec::new();
    for resource in Resource::ALL {
        for verb in Verb::ALL {
            let allowed = match &grants {
                Some(g) => berth_auth::mgmt::grants_allow(g, &project, resource, verb),
                None => project.public && berth_core::mgmt::public_allows(resource, verb),
            };
            if !allowed {
                continue;
            }
            let name = match resource {
                Resource::Project => String::new(),
                other => other.as_str().to_owned(),
            };
            let resource_path = match (relative, name.is_empty()) {
                (true, _) => name.clone(),
                (false, true) => scope.to_owned(),
                (false, false) => format!("{scope}/{name}"),
            };
            out.push(serde_json::json!({"resource": resource_path, "action": verb.as_str()}));
            // Harbor names repository reads and writes pull and push.
            if resource == Resource::Repository && matches!(verb, Verb::List | Verb::Create) {
                let action = if verb == Verb::List { "pull" } else { "push" };
                out.push(serde_json::json!({"resource": resource_path, "action": action}));
            }
        }
    }
    json(&out)
}

pub async fn search(ctx: &Ctx<'_>, query: &ListQuery, username: &str) -> MgmtResult {
    let found: Vec<serde_json::Value> = ctx
        .identity()?
        .users()
        .await?
        .iter()
        .filter(|u| u.name.contains(username))
        .map(|u| serde_json::json!({"user_id": u.id, "username": u.name}))
        .collect();
    page(
        &slice_page(&found, query),
        found.len() as u64,
        query,
        "/api/v2.0/users/search",
        ctx.raw_query(),
    )
}

pub async fn get(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    json(&to_json(&ctx.identity()?.user_by_id(id).await?))
}

pub async fn update(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let request: Profile = response::body(body).await?;
    ctx.identity()?
        .update_profile(id, request.email, request.realname, request.comment)
        .await?;
    response::ok()
}

pub async fn delete(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    let identity = ctx.identity()?;
    let user = identity.user_by_id(id).await?;
    if ctx.account() == Some(user.name.as_str()) {
        return Err(MgmtApiError::forbidden("you cannot delete yourself"));
    }
    identity.delete_user(&user.name).await?;
    response::ok()
}

pub async fn set_password(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let request: PasswordReq = response::body(body).await?;
    let identity = ctx.identity()?;
    let user = identity.user_by_id(id).await?;
    // Changing one's own password needs the old one; an administrator resets others'.
    if ctx.account() == Some(user.name.as_str()) {
        let old = request.old_password.as_deref().unwrap_or_default();
        if !identity.check_password(&user.name, old).await? {
            return Err(MgmtApiError::forbidden("the old password is wrong"));
        }
        if old == request.new_password {
            return Err(MgmtApiError::bad_request(
                "the new password is the same as the old one",
            ));
        }
    }
    identity
        .set_password(&user.name, &request.new_password)
        .await?;
    response::ok()
}

pub async fn set_sysadmin(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let request: SysadminFlag = response::body(body).await?;
    let identity = ctx.identity()?;
    let user = identity.user_by_id(id).await?;
    identity
        .set_sysadmin(&user.name, request.sysadmin_flag)
        .await?;
    response::ok()
}
