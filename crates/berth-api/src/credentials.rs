//! Reading who a request is from (the `Authorization` header, per the configured mode) and
//! answering 401s with the challenge that mode uses. Deciding what the caller may do is not
//! here: that is `berth_auth::Authorizer::decide`, asked by each surface's dispatcher.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use berth_auth::{AuthFailure, AuthMode, Challenge, Principal, ResourceActions};
use berth_core::ErrorCode;

use crate::{ApiError, AppState};

/// Where a request came from, as far as authentication cares.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub ip: Option<IpAddr>,
    pub is_loopback: bool,
}

impl Peer {
    pub fn of(extensions: &axum::http::Extensions) -> Peer {
        // Without connection info (in-process tests) the caller is this process. A
        // dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`: canonicalize first.
        let ip = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_canonical());
        Peer {
            ip,
            is_loopback: ip.is_none_or(|ip| ip.is_loopback()),
        }
    }
}

/// Credentials as sent (a bearer token borrowed from the request: it is only looked up).
pub enum Presented<'a> {
    None,
    Basic { user: String, password: String },
    Bearer(&'a str),
}

pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    // UTF-8, not `to_str`'s visible ASCII: a token's characters are checked when it is
    // verified (or compared whole with one that was), and this runs on every request.
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
    else {
        return Presented::None;
    };
    let Some((scheme, rest)) = value.trim().split_once(' ') else {
        return Presented::None;
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        return Presented::Bearer(rest.trim());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Presented::None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok());
    match decoded.as_deref().and_then(|t| t.split_once(':')) {
        Some((user, password)) => Presented::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        },
        None => Presented::None,
    }
}

/// Who the request is from, per the configured auth mode. Wrong credentials are a 401 (the
/// same for an unknown user and a wrong password); a throttled caller gets a 429.
pub async fn authenticate(
    state: &AppState,
    request: &Parts,
    peer: Peer,
) -> Result<Principal, ApiError> {
    let headers = &request.headers;
    match state.auth.mode() {
        AuthMode::Open { .. } => Ok(Principal::Anonymous),
        AuthMode::Htpasswd { realm, passwords } => {
            let Presented::Basic { user, password } = presented(headers) else {
                return Ok(Principal::Anonymous);
            };
            let ok = match passwords.verify_cached(&user, &password) {
                Some(ok) => ok,
                None => {
                    let auth = state.auth.clone();
                    let (u, p) = (user.clone(), password);
                    tokio::task::spawn_blocking(move || match auth.mode() {
                        AuthMode::Htpasswd { passwords, .. } => passwords.verify(&u, &p),
                        _ => false,
                    })
                    .await
                    .unwrap_or(false)
                }
            };
            if ok {
                Ok(Principal::User(user))
            } else {
                Err(unauthorized(
                    state,
                    request,
                    &Challenge::Basic {
                        realm: realm.clone(),
                    },
                    "invalid username or password",
                ))
            }
        }
        AuthMode::Token(auth) => match presented(headers) {
            Presented::None => Ok(Principal::Anonymous),
            Presented::Basic { user, password } => {
                let outcome = auth.authenticate_basic(&user, &password, peer.ip).await;
                crate::audit::login(state, request, peer, &user, outcome.as_ref().err());
                match outcome {
                    Ok(account) => Ok(Principal::Account(account)),
                    Err(failure) => Err(failure_response(state, request, failure)),
                }
            }
            Presented::Bearer(token) => match auth.authenticate_bearer(token).await {
                Ok(claims) => Ok(Principal::Bearer(claims)),
                Err(failure) => Err(failure_response(state, request, failure)),
            },
        },
    }
}

/// The error answer to a failed authentication.
pub fn failure_response(state: &AppState, request: &Parts, failure: AuthFailure) -> ApiError {
    count_failure(&failure);
    match failure {
        AuthFailure::Throttled { retry_after_secs } => {
            ApiError::new(429, ErrorCode::Toomanyrequests, failure.to_string())
                .with_message(failure.to_string())
                .with_header(header::RETRY_AFTER, &retry_after_secs.to_string())
        }
        AuthFailure::Store(inner) => ApiError::from(berth_registry::Error::Internal(format!(
            "authentication: {inner}"
        ))),
        AuthFailure::InvalidToken(_) => unauthorized(
            state,
            request,
            &Challenge::Bearer {
                scope: Vec::new(),
                error: Some("invalid_token"),
            },
            &failure.to_string(),
        ),
        AuthFailure::InvalidCredentials => unauthorized(
            state,
            request,
            &Challenge::Bearer {
                scope: Vec::new(),
                error: None,
            },
            &failure.to_string(),
        ),
    }
}

/// Count a failed authentication in `berth_auth_failures_total` (never with what was sent).
pub fn count_failure(failure: &AuthFailure) {
    match failure {
        AuthFailure::InvalidCredentials | AuthFailure::Throttled { .. } => {
            berth_metrics::AUTH.login_failures.inc()
        }
        AuthFailure::InvalidToken(_) => berth_metrics::AUTH.token_failures.inc(),
        AuthFailure::Store(_) => {}
    }
}

/// A 401 with the challenge's `WWW-Authenticate` header.
pub fn unauthorized(
    state: &AppState,
    request: &Parts,
    challenge: &Challenge,
    detail: &str,
) -> ApiError {
    ApiError::new(401, ErrorCode::Unauthorized, detail).with_header(
        header::WWW_AUTHENTICATE,
        &challenge_header(state, request, challenge),
    )
}

/// `Basic realm="…"`, or `Bearer realm="<token URL>",service="…",scope="…",error="…"` as
/// the distribution token-auth spec has it.
pub fn challenge_header(state: &AppState, request: &Parts, challenge: &Challenge) -> String {
    match challenge {
        Challenge::Basic { realm } => format!("Basic realm=\"{realm}\""),
        Challenge::Bearer { scope, error } => {
            let service = state
                .auth
                .token_auth()
                .map(|a| a.settings().service.clone())
                .unwrap_or_default();
            let mut value = format!(
                "Bearer realm=\"{}\",service=\"{service}\"",
                token_realm(state, request)
            );
            if !scope.is_empty() {
                let scopes: Vec<String> = scope.iter().map(ResourceActions::scope).collect();
                value.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
            }
            if let Some(error) = error {
                value.push_str(&format!(",error=\"{error}\""));
            }
            value
        }
    }
}

/// The absolute URL of `/service/token` as this client reaches the registry: the configured
/// realm, else the request's own scheme and host (from trusted proxies' `X-Forwarded-*`).
pub fn token_realm(state: &AppState, request: &Parts) -> String {
    if let Some(realm) = &state.token_realm {
        return realm.clone();
    }
    let base = state
        .external
        .base_url(&request.uri, &request.headers, &request.extensions);
    format!("{base}/service/token")
}
