//! `/registries`: the upstream registries proxy-cache projects pull from (Harbor's registry
//! endpoints) — list, create, get, update, delete, ping. Secrets are sealed before they are
//! stored and never answered: a registry's credential shows its type and access key only.

use std::sync::Arc;

use axum::body::Body;
use berth_core::mgmt::ListQuery;
use berth_meta::{NewUpstream, StoredCredential, Upstream, UpstreamDeletion, UpstreamStore};
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::response::{self, MgmtApiError, MgmtResult, created, json, ok, page, slice_page, time};

/// The registry types berth can pull from: every one speaks the distribution API; they
/// differ in where the API is (`docker-hub`) and how names map (`library/`).
const TYPES: &[&str] = &[
    "docker-hub",
    "docker-registry",
    "harbor",
    "github-ghcr",
    "quay",
    "gitlab",
    "jfrog-artifactory",
    "aws-ecr",
    "google-gcr",
    "azure-acr",
];

/// Harbor's Registry model (what berth fills). `access_secret` is never answered.
#[derive(Serialize)]
pub(super) struct RegistryJson {
    id: i64,
    name: String,
    url: String,
    #[serde(rename = "type")]
    kind: String,
    description: String,
    insecure: bool,
    credential: CredentialJson,
    status: &'static str,
    creation_time: String,
    update_time: String,
}

#[derive(Serialize)]
pub(super) struct CredentialJson {
    #[serde(rename = "type")]
    kind: String,
    access_key: String,
}

/// Harbor's RegistryCredential.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CredentialReq {
    #[serde(rename = "type")]
    kind: Option<String>,
    access_key: Option<String>,
    access_secret: Option<String>,
}

/// Harbor's Registry (create), RegistryUpdate (update) and RegistryPing (ping) bodies in
/// one: every field optional here, required ones checked by each handler. `ca_certificate`
/// is berth's (Harbor trusts one CA bundle for all).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RegistryReq {
    id: Option<i64>,
    name: Option<String>,
    url: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    description: Option<String>,
    insecure: Option<bool>,
    credential: Option<CredentialReq>,
    // RegistryUpdate and RegistryPing carry the credential flat.
    credential_type: Option<String>,
    access_key: Option<String>,
    access_secret: Option<String>,
    ca_certificate: Option<String>,
    #[expect(
        dead_code,
        reason = "Harbor's read-only fields, accepted in a PUT of a GET's answer"
    )]
    status: Option<String>,
    #[expect(
        dead_code,
        reason = "Harbor's read-only fields, accepted in a PUT of a GET's answer"
    )]
    creation_time: Option<String>,
    #[expect(
        dead_code,
        reason = "Harbor's read-only fields, accepted in a PUT of a GET's answer"
    )]
    update_time: Option<String>,
}

impl RegistryReq {
    /// The credential fields, nested or flat: (type, access key, secret).
    fn credential(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        let nested = self.credential.as_ref();
        (
            nested
                .and_then(|c| c.kind.as_deref())
                .or(self.credential_type.as_deref()),
            nested
                .and_then(|c| c.access_key.as_deref())
                .or(self.access_key.as_deref()),
            nested
                .and_then(|c| c.access_secret.as_deref())
                .or(self.access_secret.as_deref()),
        )
    }

    /// Apply this request to `fields` (a stored registry's, or defaults for a new one).
    fn apply(&self, ctx: &Ctx<'_>, fields: &mut NewUpstream) -> Result<(), MgmtApiError> {
        if let Some(name) = &self.name {
            fields.name = name.trim().to_owned();
        }
        if let Some(url) = &self.url {
            fields.url = url.trim().trim_end_matches('/').to_owned();
        }
        if let Some(kind) = &self.kind {
            fields.kind = kind.clone();
        }
        if let Some(description) = &self.description {
            fields.description = description.clone();
        }
        if let Some(insecure) = self.insecure {
            fields.insecure = insecure;
        }
        if let Some(ca) = &self.ca_certificate {
            fields.ca_cert = (!ca.trim().is_empty()).then(|| ca.clone());
        }
        let (kind, key, secret) = self.credential();
        match (key, secret) {
            // An empty access key: anonymous from now on.
            (Some(""), _) => fields.credential = None,
            (Some(key), Some(secret)) => {
                let sealed = proxy(ctx)?
                    .keyring()
                    .seal(secret)
                    .map_err(MgmtApiError::internal)?;
                fields.credential = Some(StoredCredential {
                    kind: kind.unwrap_or("basic").to_owned(),
                    access_key: key.to_owned(),
                    sealed_secret: sealed,
                });
            }
            (Some(key), None) => match &mut fields.credential {
                Some(stored) => key.clone_into(&mut stored.access_key),
                None => {
                    return Err(MgmtApiError::bad_request(
                        "credential.access_secret is required with a new access_key",
                    ));
                }
            },
            (None, Some(_)) => {
                return Err(MgmtApiError::bad_request(
                    "credential.access_key is required with an access_secret",
                ));
            }
            (None, None) => {}
        }
        if let (Some(kind), Some(stored)) = (kind, &mut fields.credential) {
            kind.clone_into(&mut stored.kind);
        }
        validate(fields)
    }
}

fn validate(fields: &NewUpstream) -> Result<(), MgmtApiError> {
    if fields.name.is_empty() || fields.name.len() > 255 {
        return Err(MgmtApiError::bad_request(
            "name is required (at most 255 characters)",
        ));
    }
    if !(fields.url.starts_with("http://") || fields.url.starts_with("https://"))
        || fields.url.len() <= "https://".len()
    {
        return Err(MgmtApiError::bad_request(
            "url must be an http:// or https:// URL",
        ));
    }
    if !TYPES.contains(&fields.kind.as_str()) {
        return Err(MgmtApiError::bad_request(format!(
            "type must be one of {}",
            TYPES.join(", ")
        )));
    }
    if let Some(credential) = &fields.credential
        && !matches!(credential.kind.as_str(), "basic" | "oauth" | "secret")
    {
        return Err(MgmtApiError::bad_request(
            "credential.type must be basic, oauth or secret",
        ));
    }
    Ok(())
}

fn store<'a>(ctx: &'a Ctx<'_>) -> Result<&'a Arc<dyn UpstreamStore>, MgmtApiError> {
    ctx.state
        .upstreams
        .as_ref()
        .ok_or_else(|| MgmtApiError::forbidden("upstream registries are not enabled"))
}

fn proxy<'a>(ctx: &'a Ctx<'_>) -> Result<&'a Arc<berth_proxy::ProxyCache>, MgmtApiError> {
    ctx.state
        .proxy
        .as_ref()
        .ok_or_else(|| MgmtApiError::forbidden("upstream registries are not enabled"))
}

pub(super) fn to_json(upstream: &Upstream) -> RegistryJson {
    let fields = &upstream.fields;
    RegistryJson {
        id: upstream.id,
        name: fields.name.clone(),
        url: fields.url.clone(),
        kind: fields.kind.clone(),
        description: fields.description.clone(),
        insecure: fields.insecure,
        credential: match &fields.credential {
            Some(c) => CredentialJson {
                kind: c.kind.clone(),
                access_key: c.access_key.clone(),
            },
            None => CredentialJson {
                kind: String::new(),
                access_key: String::new(),
            },
        },
        // Not probed on every listing: `POST /registries/ping` says.
        status: "unknown",
        creation_time: time(upstream.created_at),
        update_time: time(upstream.updated_at),
    }
}

async fn stored(ctx: &Ctx<'_>, id: i64) -> Result<Upstream, MgmtApiError> {
    store(ctx)?
        .upstream_by_id(id)
        .await?
        .ok_or_else(|| MgmtApiError::not_found(format!("registry {id} not found")))
}

pub async fn list(ctx: &Ctx<'_>, query: &ListQuery, name: Option<&str>) -> MgmtResult {
    let mut all = store(ctx)?.list_upstreams().await?;
    all.retain(|u| {
        name.is_none_or(|n| u.fields.name.contains(n))
            && query.q.iter().all(|t| match t.key.as_str() {
                "name" => t.matcher.matches(&u.fields.name),
                "type" => t.matcher.matches(&u.fields.kind),
                "url" => t.matcher.matches(&u.fields.url),
                _ => true,
            })
    });
    let items: Vec<RegistryJson> = slice_page(&all, query).iter().map(to_json).collect();
    page(
        &items,
        all.len() as u64,
        query,
        ctx.parts.uri.path(),
        ctx.parts.uri.query(),
    )
}

pub async fn create(ctx: &Ctx<'_>, body: Body) -> MgmtResult {
    let request: RegistryReq = response::body(body).await?;
    if request.name.is_none() || request.url.is_none() || request.kind.is_none() {
        return Err(MgmtApiError::bad_request("name, url and type are required"));
    }
    let mut fields = NewUpstream {
        name: String::new(),
        kind: String::new(),
        url: String::new(),
        description: String::new(),
        insecure: false,
        ca_cert: None,
        credential: None,
    };
    request.apply(ctx, &mut fields)?;
    if let Some(ca) = &fields.ca_cert {
        reqwest_free_pem_check(ca)?;
    }
    let id = store(ctx)?.create_upstream(&fields).await?;
    created(&format!("/api/v2.0/registries/{id}"))
}

/// A CA given must at least look like PEM (the client checks it fully when built).
fn reqwest_free_pem_check(ca: &str) -> Result<(), MgmtApiError> {
    if ca.contains("-----BEGIN CERTIFICATE-----") {
        Ok(())
    } else {
        Err(MgmtApiError::bad_request(
            "ca_certificate must be PEM certificates",
        ))
    }
}

pub async fn get(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    json(&to_json(&stored(ctx, id).await?))
}

pub async fn update(ctx: &Ctx<'_>, id: i64, body: Body) -> MgmtResult {
    let request: RegistryReq = response::body(body).await?;
    let mut fields = stored(ctx, id).await?.fields;
    request.apply(ctx, &mut fields)?;
    if !store(ctx)?.update_upstream(id, &fields).await? {
        return Err(MgmtApiError::not_found(format!("registry {id} not found")));
    }
    proxy(ctx)?.forget();
    ok()
}

pub async fn delete(ctx: &Ctx<'_>, id: i64) -> MgmtResult {
    match store(ctx)?.delete_upstream(id).await? {
        UpstreamDeletion::Deleted => {
            proxy(ctx)?.forget();
            ok()
        }
        UpstreamDeletion::Missing => {
            Err(MgmtApiError::not_found(format!("registry {id} not found")))
        }
        UpstreamDeletion::InUse => Err(MgmtApiError::new(
            412,
            "PRECONDITION",
            format!(
                "registry {id} is used by a proxy-cache project or a replication policy: delete those first"
            ),
        )),
    }
}

/// Ping a stored registry (`id`, with any field of the body overriding it) or the one the
/// body describes: 200 when its `/v2/` answers and accepts the credential.
pub async fn ping(ctx: &Ctx<'_>, body: Body) -> MgmtResult {
    let request: RegistryReq = response::body(body).await?;
    let mut upstream = match request.id {
        Some(id) => stored(ctx, id).await?,
        None => Upstream {
            id: 0,
            fields: NewUpstream {
                name: "ping".into(),
                kind: request
                    .kind
                    .clone()
                    .unwrap_or_else(|| "docker-registry".into()),
                url: String::new(),
                description: String::new(),
                insecure: false,
                ca_cert: None,
                credential: None,
            },
            created_at: 0,
            updated_at: 0,
        },
    };
    request.apply(ctx, &mut upstream.fields)?;
    let proxy = proxy(ctx)?;
    let client = proxy
        .client_for(&upstream)
        .map_err(MgmtApiError::bad_request)?;
    match client.ping().await {
        Ok(()) => ok(),
        Err(e) => Err(MgmtApiError::bad_request(format!(
            "failed to ping the registry: {e}"
        ))),
    }
}
