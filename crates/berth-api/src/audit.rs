//! What the HTTP surfaces tell the audit log: who the caller is, where from, and which
//! `/v2/` requests are audited. Thin by design: build an event, `Audit::record` it (which
//! never blocks); nothing here reads the database or decides anything.

use std::borrow::Cow;

use axum::http::request::Parts;
use axum::response::Response;
use berth_audit::{ANONYMOUS, AuditEvent, Client, Operation, ResourceType};
use berth_auth::access::IssuedToken;
use berth_auth::{AuthFailure, Principal};
use berth_core::{Endpoint, Reference, RepositoryName};

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

fn artifact(name: &RepositoryName, reference: &Reference) -> String {
    // Appended, not `format!`ed: this runs on every pull, and the formatting machinery was
    // a quarter of what the audit log cost a cached GET. (A tag is at most 128 characters,
    // a digest 7 + 128.)
    let mut resource = String::with_capacity(name.as_str().len() + 136);
    resource.push_str(name.as_str());
    match reference {
        Reference::Tag(tag) => {
            resource.push(':');
            resource.push_str(tag.as_str());
        }
        Reference::Digest(digest) => {
            resource.push('@');
            resource.push_str(digest.algorithm().as_str());
            resource.push(':');
            resource.push_str(digest.hex());
        }
    }
    resource
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_is_named_as_its_reference_prints() {
        let name: RepositoryName = "team/app".parse().expect("name");
        for reference in [
            "v1.2",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let reference: Reference = reference.parse().expect("reference");
            let separator = if matches!(reference, Reference::Tag(_)) {
                ':'
            } else {
                '@'
            };
            assert_eq!(
                artifact(&name, &reference),
                format!("{name}{separator}{reference}")
            );
        }
    }
}
