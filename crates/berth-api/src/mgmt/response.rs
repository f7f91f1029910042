//! Harbor's answers: the error body `{"errors":[{"code","message"}]}`, JSON bodies, and
//! paginated lists with `X-Total-Count` and `Link`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::ErrorCode;
use berth_core::mgmt::{ListQuery, MgmtError};

/// An error as Harbor's API answers it. Boxed: it travels in every handler's `Result`.
#[derive(Debug)]
pub struct MgmtApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: HeaderMap,
}

impl MgmtApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> MgmtApiError {
        MgmtApiError(Box::new(Inner {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            headers: HeaderMap::new(),
        }))
    }

    pub fn bad_request(message: impl Into<String>) -> MgmtApiError {
        MgmtApiError::new(400, "BAD_REQUEST", message)
    }

    pub fn not_found(message: impl Into<String>) -> MgmtApiError {
        MgmtApiError::new(404, "NOT_FOUND", message)
    }

    pub fn forbidden(message: impl Into<String>) -> MgmtApiError {
        MgmtApiError::new(403, "FORBIDDEN", message)
    }

    pub fn conflict(message: impl Into<String>) -> MgmtApiError {
        MgmtApiError::new(409, "CONFLICT", message)
    }

    /// 401, with a Basic challenge as Harbor's API sends.
    pub fn unauthorized() -> MgmtApiError {
        let mut e = MgmtApiError::new(401, "UNAUTHORIZED", "unauthorized");
        e.0.headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"berth\""),
        );
        e
    }

    /// A server fault: logged with its cause, answered without it.
    pub fn internal(cause: impl std::fmt::Display) -> MgmtApiError {
        tracing::error!(%cause, "management API request failed");
        MgmtApiError::new(500, "UNKNOWN", "internal server error")
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> MgmtApiError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.headers.insert(name, v);
        }
        self
    }
}

impl From<MgmtError> for MgmtApiError {
    fn from(e: MgmtError) -> Self {
        match e {
            MgmtError::NotFound => MgmtApiError::not_found("no such API endpoint"),
            MgmtError::MethodNotAllowed => {
                MgmtApiError::new(405, "METHOD_NOT_ALLOWED", "method not allowed")
            }
            MgmtError::BadRequest(m) => MgmtApiError::bad_request(m),
            e @ MgmtError::Unprocessable(_) => {
                MgmtApiError::new(422, "UNPROCESSABLE_ENTITY", e.to_string())
            }
        }
    }
}

impl From<berth_auth::IdentityError> for MgmtApiError {
    fn from(e: berth_auth::IdentityError) -> Self {
        use berth_auth::IdentityError as E;
        match e {
            E::NotFound(what) => MgmtApiError::not_found(format!("{what} not found")),
            E::Conflict(what) => MgmtApiError::conflict(format!("{what} already exists")),
            E::Invalid(m) => MgmtApiError::bad_request(m),
            E::Store(inner) if inner.is_busy() => busy(inner),
            E::Store(inner) => MgmtApiError::internal(inner),
        }
    }
}

impl From<berth_registry::Error> for MgmtApiError {
    fn from(e: berth_registry::Error) -> Self {
        use berth_registry::Error as E;
        match e {
            E::Internal(cause) => MgmtApiError::internal(cause),
            e @ E::StorageFull(_) => MgmtApiError::new(507, "INSUFFICIENT_STORAGE", e.to_string()),
            E::StorageUnavailable(cause) => {
                tracing::error!(%cause, "blob storage unavailable");
                MgmtApiError::new(503, "SERVICE_UNAVAILABLE", ErrorCode::Unavailable.message())
            }
            e @ E::MetadataBusy(_) => busy(e),
            e @ E::DeleteDisabled => MgmtApiError::new(405, "METHOD_NOT_ALLOWED", e.to_string()),
            e @ (E::TagExists(_) | E::PolicyExists(_)) => MgmtApiError::conflict(e.to_string()),
            // Harbor's answer to deleting what an immutability rule protects.
            e @ E::TagImmutable(_) => MgmtApiError::new(412, "PRECONDITION", e.to_string()),
            // Harbor's answer to deleting an index's child.
            e @ E::ArtifactReferenced { .. } => {
                MgmtApiError::new(412, "VIOLATE_FOREIGN_KEY_CONSTRAINT", e.to_string())
            }
            other if other.status() == 404 => MgmtApiError::not_found(other.to_string()),
            other => MgmtApiError::bad_request(other.to_string()),
        }
    }
}

impl From<berth_meta::MetaError> for MgmtApiError {
    fn from(e: berth_meta::MetaError) -> Self {
        match e {
            berth_meta::MetaError::Conflict(what) => {
                MgmtApiError::conflict(format!("{what} already exists"))
            }
            other if other.is_busy() => busy(other),
            other => MgmtApiError::internal(other),
        }
    }
}

/// 503 with `Retry-After` for a database that could not take the statement in time: the
/// caller's request was fine and nothing of it was kept.
fn busy(cause: impl std::fmt::Display) -> MgmtApiError {
    tracing::warn!(%cause, "metadata database busy");
    MgmtApiError::new(
        503,
        "SERVICE_UNAVAILABLE",
        "the registry's database is busy: try again",
    )
    .with_header(header::RETRY_AFTER, "1")
}

impl IntoResponse for MgmtApiError {
    fn into_response(self) -> Response {
        let error = *self.0;
        let body = serde_json::json!({"errors": [{"code": error.code, "message": error.message}]});
        let mut response = (error.status, error.headers, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        response
    }
}

pub type MgmtResult = Result<Response, MgmtApiError>;

/// 200 with a JSON body.
pub fn json(body: &impl serde::Serialize) -> MgmtResult {
    json_status(StatusCode::OK, body)
}

pub fn json_status(status: StatusCode, body: &impl serde::Serialize) -> MgmtResult {
    let bytes = serde_json::to_vec(body).map_err(MgmtApiError::internal)?;
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        bytes,
    )
        .into_response())
}

/// 200 with no body.
pub fn ok() -> MgmtResult {
    Ok(StatusCode::OK.into_response())
}

/// 201 with `Location`.
pub fn created(location: &str) -> MgmtResult {
    with_location(StatusCode::CREATED.into_response(), location)
}

/// 201 with `Location` and a JSON body.
pub fn created_json(location: &str, body: &impl serde::Serialize) -> MgmtResult {
    with_location(json_status(StatusCode::CREATED, body)?, location)
}

fn with_location(mut response: Response, location: &str) -> MgmtResult {
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// One page of `items` (already filtered and sorted), with Harbor's `X-Total-Count` and
/// `Link` (`<path?page=N&page_size=M>; rel="prev" , <…>; rel="next"`).
pub fn page<T: serde::Serialize>(
    items: &[T],
    total: u64,
    query: &ListQuery,
    path: &str,
    raw_query: Option<&str>,
) -> MgmtResult {
    let mut response = json(&items)?;
    let h = response.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    let link = |page: u64| {
        let mut params: Vec<(String, String)> = raw_query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        params.retain(|(k, _)| k != "page" && k != "page_size");
        params.push(("page".into(), page.to_string()));
        params.push(("page_size".into(), query.page_size.to_string()));
        params.sort();
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        format!("<{path}?{encoded}>")
    };
    let mut links = Vec::new();
    if query.page > 1 && query.offset().saturating_sub(query.page_size) < total {
        links.push(format!("{}; rel=\"prev\"", link(query.page - 1)));
    }
    if query.page.saturating_mul(query.page_size) < total {
        links.push(format!("{}; rel=\"next\"", link(query.page + 1)));
    }
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(" , "))
    {
        h.insert(header::LINK, v);
    }
    Ok(response)
}

/// The page of an in-memory list (small sets: projects, users, robots, members).
pub fn slice_page<T: Clone>(items: &[T], query: &ListQuery) -> Vec<T> {
    let start = usize::try_from(query.offset()).unwrap_or(usize::MAX);
    items
        .iter()
        .skip(start)
        .take(usize::try_from(query.page_size).unwrap_or(usize::MAX))
        .cloned()
        .collect()
}

/// Unix seconds as Harbor's timestamps (RFC 3339, UTC).
pub fn time(secs: i64) -> String {
    berth_auth::access::rfc3339(secs)
}

/// Read a JSON request body into `T`. Request types list every field of Harbor's model
/// (berth ignores some) and refuse others, so a typo is a 400 rather than silently ignored;
/// wrong types and broken JSON are 400 too.
pub async fn body<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
) -> Result<T, MgmtApiError> {
    let bytes = read_body(body).await?;
    if bytes.is_empty() {
        return Err(MgmtApiError::bad_request("a JSON request body is required"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| MgmtApiError::bad_request(format!("invalid request body: {e}")))
}

/// The whole request body, at most 1 MiB (every request body of this API is a small JSON
/// document).
pub async fn read_body(body: axum::body::Body) -> Result<bytes::Bytes, MgmtApiError> {
    axum::body::to_bytes(body, 1 << 20).await.map_err(|_| {
        MgmtApiError::bad_request("the request body is unreadable or larger than 1 MiB")
    })
}
