//! What the HTTP surfaces tell the audit log: who the caller is, where from, and which
//! `/v2/` requests are audited. Thin by design: build an event, `Audit::record` it (which
//! never blocks); nothing here reads the database or decides anything.

use std::borrow::Cow;

use axum::http::request::Parts;
use axum::response::Response;
use berth_audit::{ANONYMOUS, AuditEvent, Client, Operation, ResourceType};
use berth_auth::access::IssuedToken;
use berth_auth::{AuthFailure, Principal};
use berth_core::{Endpoint, Reference};

use crate::credentials::Peer;
use crate::{ApiError, AppState};

/// The name the audit log gives the caller.
pub fn username(principal: &Principal) -> Cow<'static, str> {
    match principal {
        Principal::Anonymous => Cow::Borrowed(ANONYMOUS),
        Principal::User(name) => Cow::Owned(name.clone()),
        Principal::Account(account) => Cow::Owned(account.name().to_owned()),
        Principal::Bearer(claims) if !claims.sub.is_empty() => Cow::Owned(claims.sub.clone()),
        Principal::Bearer(_) => Cow::Borrowed(ANONYMOUS),
    }
}

/// Where the request came from (through trusted proxies' `X-Forwarded-For`).
pub fn client(state: &AppState, parts: &Parts, peer: Peer) -> Client {
    match state.external.client_ip(&parts.headers, peer.ip) {
        Some(ip) => Client::Addr(ip),
        None => Client::Unknown,
    }
}

/// A password or secret checked (token mode): `user` is the name presented.
pub fn login(
    state: &AppState,
    parts: &Parts,
    peer: Peer,
    user: &str,
    failure: Option<&AuthFailure>,
) {
    if !state.audit.is_on() {
        return;
    }
    let event = AuditEvent::new(
        user.to_owned(),
        client(state, parts, peer),
        Operation::Login,
        ResourceType::Login,
        user,
    );
    state.audit.record(match failure {
        None => event,
        Some(failure) => event.failed(failure.to_string()),
    });
}

/// A token issued by `/service/token` (or refused): the scopes granted are its resource.
pub fn token(
    state: &AppState,
    parts: &Parts,
    peer: Peer,
    account: Option<&str>,
    issued: Result<&IssuedToken, &AuthFailure>,
) {
    if !state.audit.is_on() {
        return;
    }
    let username = account.map_or(Cow::Borrowed(ANONYMOUS), |a| Cow::Owned(a.to_owned()));
    let scope = match issued {
        Ok(token) if !token.scope.is_empty() => token.scope.as_str(),
        _ => "(none)",
    };
    let event = AuditEvent::new(
        username,
        client(state, parts, peer),
        Operation::Token,
        ResourceType::Token,
        scope,
    );
    state.audit.record(match issued {
        Ok(_) => event,
        Err(failure) => event.failed(failure.to_string()),
    });
}

/// A `/v2/` request the audit log records: manifest pulls (GET, as Harbor), pushes and
/// deletes. Blob uploads are not audited one by one: the manifest push is the image.
pub struct Audited {
    operation: Operation,
    resource_type: ResourceType,
    resource: String,
}

fn artifact(name: &impl std::fmt::Display, reference: &Reference) -> String {
    match reference {
        Reference::Tag(tag) => format!("{name}:{tag}"),
        Reference::Digest(digest) => format!("{name}@{digest}"),
    }
}

impl Audited {
    /// What `endpoint` would be recorded as, when the audit log is on.
    pub fn of(state: &AppState, endpoint: &Endpoint) -> Option<Audited> {
        if !state.audit.is_on() {
            return None;
        }
        let (operation, resource_type, resource) = match endpoint {
            Endpoint::GetManifest {
                name,
                reference,
                head: false,
            } => (
                Operation::Pull,
                ResourceType::Artifact,
                artifact(name, reference),
            ),
            Endpoint::PutManifest {
                name, reference, ..
            } => (
                Operation::Create,
                ResourceType::Artifact,
                artifact(name, reference),
            ),
            Endpoint::DeleteManifest { name, reference } => {
                let kind = match reference {
                    Reference::Tag(_) => ResourceType::Tag,
                    Reference::Digest(_) => ResourceType::Artifact,
                };
                (Operation::Delete, kind, artifact(name, reference))
            }
            Endpoint::DeleteBlob { name, digest } => (
                Operation::Delete,
                ResourceType::Blob,
                format!("{name}@{digest}"),
            ),
            _ => return None,
        };
        Some(Audited {
            operation,
            resource_type,
            resource,
        })
    }

    fn event(
        self,
        state: &AppState,
        parts: &Parts,
        peer: Peer,
        principal: &Principal,
    ) -> AuditEvent {
        AuditEvent::new(
            username(principal),
            client(state, parts, peer),
            self.operation,
            self.resource_type,
            self.resource,
        )
    }

    /// Record the handler's outcome. A pull counts only when it served the manifest.
    pub fn finish(
        self,
        state: &AppState,
        parts: &Parts,
        peer: Peer,
        principal: &Principal,
        result: &Result<Response, ApiError>,
    ) {
        let pull = self.operation == Operation::Pull;
        let event = self.event(state, parts, peer, principal);
        let event = match result {
            Ok(response) if pull => {
                let Some(digest) = response
                    .headers()
                    .get(crate::distribution::DOCKER_CONTENT_DIGEST)
                    .and_then(|v| v.to_str().ok())
                else {
                    return;
                };
                event.pulled(digest.to_owned())
            }
            Ok(_) => event,
            // Failed pulls are clients probing (404s): not worth an entry each.
            Err(_) if pull => return,
            Err(error) => event.failed(error.reason()),
        };
        state.audit.record(event);
    }

    /// Record a request the authorizer refused (403).
    pub fn denied(
        self,
        state: &AppState,
        parts: &Parts,
        peer: Peer,
        principal: &Principal,
        reason: &str,
    ) {
        let event = self.event(state, parts, peer, principal).failed(reason);
        state.audit.record(event);
    }
}
