//! `/service/token`: the Docker registry token service (distribution's token-auth spec, as
//! Harbor serves it) in token mode.
//!
//! - `GET /service/token?service=…&scope=…&scope=…[&account=…][&offline_token=true]` with
//!   Basic credentials or none (anonymous): a JWT whose `access` is the intersection of the
//!   scopes asked and what the account may do.
//! - `POST /service/token` (OAuth2 form): `grant_type=password` (username, password) or
//!   `grant_type=refresh_token` (refresh_token), with `scope`, `service`, `client_id`, and
//!   `access_type=offline` for a refresh token.
//!
//! This is authentication, not authorization: nothing here is refused for lack of a
//! permission; a scope the account may not have is simply not granted.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_auth::{AuthFailure, ResourceActions, TokenAuth};
use berth_core::ErrorCode;

use crate::credentials::{Peer, Presented, failure_response, presented};
use crate::{ApiError, AppState};

/// Largest form body accepted by the POST flavour.
const MAX_FORM_BYTES: usize = 64 * 1024;

fn token_auth(state: &AppState) -> Result<&TokenAuth, ApiError> {
    state.auth.token_auth().map(|a| a.as_ref()).ok_or_else(|| {
        ApiError::new(
            404,
            ErrorCode::Unsupported,
            "this registry does not run a token service (auth mode is not token)",
        )
    })
}

/// Every `scope` parameter; each may hold several scopes separated by spaces. A pull of
/// a repository that a mirror may serve (`[proxy] mirror`, `mirrors`) also asks to pull
/// it in each mirror project: the client names `library/nginx`, the registry reads
/// `<mirror>/library/nginx`, and the token must cover what is read. What the account may
/// not pull there is not granted, as always.
fn scopes<'a>(state: &AppState, values: impl Iterator<Item = &'a str>) -> Vec<ResourceActions> {
    let mut asked: Vec<ResourceActions> = values
        .flat_map(|v| v.split(' '))
        .filter(|s| !s.is_empty())
        .filter_map(ResourceActions::parse_scope)
        .collect();
    let Some(proxy) = &state.proxy else {
        return asked;
    };
    let mut mirrored = Vec::new();
    for scope in &asked {
        if scope.kind != "repository" || !scope.actions.iter().any(|a| a == "pull" || a == "*") {
            continue;
        }
        for project in proxy.mirrors().projects() {
            let in_mirror = scope
                .name
                .strip_prefix(project)
                .is_some_and(|rest| rest.starts_with('/'));
            let name = format!("{project}/{}", scope.name);
            if !in_mirror && name.parse::<berth_core::RepositoryName>().is_ok() {
                mirrored.push(ResourceActions {
                    kind: "repository".into(),
                    name,
                    actions: vec!["pull".into()],
                });
            }
        }
    }
    asked.extend(mirrored);
    asked
}

fn check_service(auth: &TokenAuth, service: Option<&str>) -> Result<(), ApiError> {
    match service {
        Some(s) if s != auth.settings().service => Err(ApiError::new(
            400,
            ErrorCode::Unsupported,
            format!(
                "unknown service {s:?}: this token service issues tokens for {:?}",
                auth.settings().service
            ),
        )),
        _ => Ok(()),
    }
}

fn json(body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::from(berth_registry::Error::Internal(e.to_string())).into_response(),
    }
}

async fn authenticated(
    state: &AppState,
    request: &Parts,
    auth: &TokenAuth,
    user: &str,
    password: &str,
    peer: Peer,
) -> Result<String, ApiError> {
    let outcome = auth.authenticate_basic(user, password, peer.ip).await;
    crate::audit::login(state, request, peer, user, outcome.as_ref().err());
    outcome
        .map(|account| account.name().to_owned())
        .map_err(|failure| token_failure(state, request, failure))
}

/// The token service answers bad credentials with a Basic challenge: it is the place that
/// takes passwords.
fn token_failure(state: &AppState, request: &Parts, failure: AuthFailure) -> ApiError {
    crate::credentials::count_failure(&failure);
    match failure {
        AuthFailure::InvalidCredentials | AuthFailure::InvalidToken(_) => {
            ApiError::new(401, ErrorCode::Unauthorized, failure.to_string()).with_header(
                header::WWW_AUTHENTICATE,
                &format!(
                    "Basic realm=\"{}\"",
                    crate::credentials::token_realm(state, request)
                ),
            )
        }
        other => failure_response(state, request, other),
    }
}

pub async fn get(State(state): State<std::sync::Arc<AppState>>, request: Request) -> Response {
    crate::observe::classify(berth_metrics::EndpointClass::Token);
    respond(get_token(&state, request).await)
}

pub async fn post(State(state): State<std::sync::Arc<AppState>>, request: Request) -> Response {
    crate::observe::classify(berth_metrics::EndpointClass::Token);
    respond(post_token(&state, request).await)
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn get_token(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let auth = token_auth(state)?;
    let (request, _) = request.into_parts();
    let peer = Peer::of(&request.extensions);
    let headers = &request.headers;
    let query: Vec<(String, String)> = request
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    check_service(auth, param("service"))?;
    let account = match presented(headers) {
        Presented::Basic { user, password } => {
            if let Some(asked) = param("account")
                && asked != user
            {
                return Err(ApiError::new(
                    400,
                    ErrorCode::Unsupported,
                    "the account parameter does not match the credentials",
                ));
            }
            Some(authenticated(state, &request, auth, &user, &password, peer).await?)
        }
        _ => None,
    };
    let requested = scopes(
        state,
        query
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    let offline = param("offline_token").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let issued = auth.issue(account.as_deref(), &requested, offline).await;
    crate::audit::token(state, &request, peer, account.as_deref(), issued.as_ref());
    let issued = issued.map_err(|f| token_failure(state, &request, f))?;
    berth_metrics::AUTH.tokens_issued.inc();
    tracing::debug!(account = account.as_deref().unwrap_or("<anonymous>"), scope = %issued.scope, "issued a token");
    Ok(json(&GetAnswer {
        token: &issued.token,
        access_token: &issued.access_token,
        expires_in: issued.expires_in,
        issued_at: &issued.issued_at,
        refresh_token: issued.refresh_token.as_deref(),
    }))
}

#[derive(serde::Serialize)]
struct GetAnswer<'a> {
    token: &'a str,
    access_token: &'a str,
    expires_in: u64,
    issued_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct PostAnswer<'a> {
    access_token: &'a str,
    scope: &'a str,
    expires_in: u64,
    issued_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

async fn post_token(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let auth = token_auth(state)?;
    let (parts, body) = request.into_parts();
    let peer = Peer::of(&parts.extensions);
    let body: Bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| bad_form("the form is unreadable or larger than 64 KiB"))?;
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    check_service(auth, field("service"))?;
    let account = match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return Err(bad_form("grant_type=password needs username and password"));
            };
            authenticated(state, &parts, auth, user, password, peer).await?
        }
        Some("refresh_token") => {
            let Some(refresh) = field("refresh_token") else {
                return Err(bad_form("grant_type=refresh_token needs refresh_token"));
            };
            let redeemed = auth.redeem_refresh_token(refresh).await;
            if let Err(failure) = &redeemed {
                crate::audit::token(state, &parts, peer, None, Err(failure));
            }
            redeemed.map_err(|f| token_failure(state, &parts, f))?
        }
        Some(other) => {
            return Err(bad_form(&format!(
                "unsupported grant_type {other:?}: use password or refresh_token"
            )));
        }
        None => return Err(bad_form("grant_type is required")),
    };
    let requested = scopes(
        state,
        form.iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    let offline = field("access_type") == Some("offline");
    let issued = auth.issue(Some(&account), &requested, offline).await;
    crate::audit::token(state, &parts, peer, Some(&account), issued.as_ref());
    let issued = issued.map_err(|f| token_failure(state, &parts, f))?;
    berth_metrics::AUTH.tokens_issued.inc();
    Ok(json(&PostAnswer {
        access_token: &issued.access_token,
        scope: &issued.scope,
        expires_in: issued.expires_in,
        issued_at: &issued.issued_at,
        refresh_token: issued.refresh_token.as_deref(),
    }))
}

fn bad_form(detail: &str) -> ApiError {
    ApiError::new(400, ErrorCode::Unsupported, detail)
}
