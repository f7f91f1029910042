//! Error responses. On `/v2/` every error is the spec's JSON:
//! `{"errors":[{"code":"…","message":"…","detail":…}]}`. Converting an error to a response
//! has no side effects; [`guarded`] logs 5xx (never the client's 4xx).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_core::ErrorCode;
use berth_core::endpoint::EndpointError;
use berth_registry::Error;

/// An error as the client will see it. Boxed: it travels in every handler's `Result`.
#[derive(Debug)]
pub struct ApiError(Box<ErrorResponse>);

#[derive(Debug)]
struct ErrorResponse {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    detail: serde_json::Value,
    headers: HeaderMap,
    /// What went wrong inside, for the log only (5xx).
    internal: Option<String>,
}

/// Carried from an error response to the logging middleware.
#[derive(Clone)]
struct InternalError(String);

impl ApiError {
    pub fn new(status: u16, code: ErrorCode, detail: impl Into<String>) -> ApiError {
        let detail = detail.into();
        ApiError(Box::new(ErrorResponse {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: code.message().to_owned(),
            detail: if detail.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(detail)
            },
            headers: HeaderMap::new(),
            internal: None,
        }))
    }

    /// Replace the code's generic message with a specific one. Docker and containers/image
    /// print `code: message` and never show `detail`, so a reason the user must read (why a
    /// push is denied) belongs here too.
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// What went wrong, in one line for the audit log: the specific detail when there is
    /// one, else the code's message (never a 5xx's internal cause).
    pub fn reason(&self) -> String {
        match &self.0.detail {
            serde_json::Value::String(detail) if !self.0.status.is_server_error() => detail.clone(),
            _ => self.0.message.clone(),
        }
    }

    /// Whether this is the spec's `BLOB_UNKNOWN` (a blob the repository does not hold).
    pub fn is_blob_unknown(&self) -> bool {
        self.0.code == ErrorCode::BlobUnknown
    }

    pub fn with_message(mut self, message: impl Into<String>) -> ApiError {
        self.0.message = message.into();
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> ApiError {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.0.headers.insert(name, value);
        }
        self
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        if let Error::Internal(inner) = &e {
            let mut err = ApiError::new(500, ErrorCode::Unsupported, "internal server error");
            err.0.message = "internal server error".into();
            err.0.internal = Some(inner.clone());
            return err;
        }
        if let Error::StorageUnavailable(inner) = &e {
            // As for a full disk: what happened for the client, the cause for the log.
            let mut err = ApiError::new(503, ErrorCode::Unavailable, "");
            err.0.internal = Some(inner.clone());
            return err;
        }
        if let Error::MetadataBusy(inner) = &e {
            // Clients retry a 503; `Retry-After` says how soon is sensible.
            let mut err = ApiError::new(503, ErrorCode::Unavailable, e.to_string())
                .with_header(header::RETRY_AFTER, "1");
            err.0.internal = Some(inner.clone());
            return err;
        }
        if let Error::StorageFull(inner) = &e {
            // The message (what docker prints) says what happened; the cause (which file,
            // which errno) is for the log only.
            let mut err = ApiError::new(507, ErrorCode::StorageFull, "");
            err.0.internal = Some(inner.clone());
            return err;
        }
        let error = ApiError::new(e.status(), e.code(), e.to_string());
        match e {
            // Clients print `code: message`: the used and limit figures must be in it.
            Error::QuotaExceeded(message) => error.with_message(message),
            e @ Error::TagImmutable(_) => error.with_message(e.to_string()),
            _ => error,
        }
    }
}

impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> Self {
        let (code, status) = e.code_and_status();
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = *self.0;
        let body = serde_json::json!({
            "errors": [{ "code": error.code.as_str(), "message": error.message, "detail": error.detail }]
        });
        let mut response = (error.status, error.headers, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(internal) = error.internal {
            response.extensions_mut().insert(InternalError(internal));
        }
        response
    }
}

/// Run the rest of the router for `request`: a panicking handler is answered with a logged
/// 500 instead of a dropped connection, and every 5xx is logged with the request that caused
/// it. Called by `observe` (inside the request's span), so it costs no middleware layer of
/// its own; the method and URI are kept by reference count, not copied.
pub(crate) async fn guarded(request: Request, next: Next) -> Response {
    use futures_util::FutureExt;
    let method = request.method().clone();
    let uri = request.uri().clone();
    let path = uri.path();
    let response = match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(%method, path, panic = what, "handler panicked");
            let mut err = ApiError::new(500, ErrorCode::Unsupported, "internal server error");
            err.0.message = "internal server error".into();
            err.into_response()
        }
    };
    if response.status().is_server_error() {
        let cause = response
            .extensions()
            .get::<InternalError>()
            .map(|e| e.0.as_str())
            .unwrap_or("-");
        let status = response.status().as_u16();
        if response.status() == StatusCode::INSUFFICIENT_STORAGE {
            berth_metrics::STORAGE.full_errors.inc();
            tracing::error!(%method, path, status, cause, "request failed: the registry's storage is full; free space (see /readyz)");
        } else {
            tracing::error!(%method, path, status, cause, "request failed");
        }
    }
    response
}
