//! What every request goes through ([`observe`], the router's one middleware): a request
//! id (the client's `X-Request-Id` when it is sane, else a fresh one) that names a tracing
//! span around the whole request — so every log line the request causes carries it — and is
//! returned in the response's `X-Request-Id`; the request's metrics (endpoint class × status,
//! latency, in flight); the request body's idle timeout; and, inside the span,
//! `error::guarded` (panics answered 500, every 5xx logged).
//!
//! The endpoint class comes from the parsed endpoint: the router that parses a request calls
//! [`classify`] once it knows what the request is. It is carried in a task-local cell, so
//! recording costs a few relaxed atomic adds and nothing is allocated for it.

use std::cell::Cell;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use berth_metrics::{CONNECTIONS, EndpointClass, HTTP};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tracing::Instrument as _;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The class of the request this task is serving, once known.
    static CLASS: Cell<Option<EndpointClass>>;
}

/// Say what kind of request this is (first call wins). Outside [`observe`] it does nothing.
pub fn classify(class: EndpointClass) {
    let _ = CLASS.try_with(|cell| {
        if cell.get().is_none() {
            cell.set(Some(class));
            HTTP.start(class);
        }
    });
}

/// The middleware: request id, span, metrics, body idle timeout.
pub async fn observe(
    State(body_idle_timeout): State<Option<Duration>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers());
    if let Some(timeout) = body_idle_timeout {
        use http_body::Body as _;
        if !request.body().is_end_stream() {
            let (parts, body) = request.into_parts();
            request = Request::from_parts(parts, Body::new(IdleTimeoutBody::new(body, timeout)));
        }
    }
    let span = tracing::info_span!(
        "request",
        id = id.to_str().unwrap_or("-"),
        method = %request.method(),
        path = request.uri().path(),
    );
    CLASS
        .scope(Cell::new(None), async move {
            let handled = crate::error::guarded(request, next);
            // A span nobody records (the log level is above `info`) is not entered at all.
            let mut response = if span.is_disabled() {
                handled.await
            } else {
                handled.instrument(span).await
            };
            let status = response.status().as_u16();
            let elapsed = started.elapsed();
            match CLASS.with(Cell::get) {
                Some(class) => HTTP.finish(class, status, elapsed),
                None => HTTP.record_unclassified(status, elapsed),
            }
            response.headers_mut().insert(X_REQUEST_ID, id);
            response
        })
        .await
}

/// The client's id if it is one a log line can carry as is (1 to 128 of `A-Z a-z 0-9 - _ .
/// : / + = @`), else a new one: 32 hex digits, a random per-process prefix, then the thread's
/// number and its own count (unique within the process, unlikely to collide across nodes, no
/// syscall and no write shared between threads per request).
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(incoming) = headers.get(X_REQUEST_ID) {
        let bytes = incoming.as_bytes();
        let sane = !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b));
        if sane {
            return incoming.clone();
        }
    }
    static PREFIX: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    static THREADS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        // The thread's number in the top 16 bits, its count below: 2^48 ids per thread.
        static NEXT: Cell<u64> = Cell::new(THREADS.fetch_add(1, Ordering::Relaxed) << 48);
    }
    let prefix = PREFIX.get_or_init(|| hex16(uuid::Uuid::new_v4().as_u64_pair().0));
    let mut text = [0u8; 32];
    text[..16].copy_from_slice(prefix);
    text[16..].copy_from_slice(&hex16(NEXT.with(|next| next.replace(next.get() + 1))));
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("-"))
}

/// `n` as 16 lowercase hex digits.
fn hex16(n: u64) -> [u8; 16] {
    let digits = b"0123456789abcdef";
    let mut text = [0u8; 16];
    for (i, slot) in text.iter_mut().enumerate() {
        *slot = digits[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    text
}

/// A request body that fails once the client has sent nothing for `timeout` while the
/// server was waiting for it. Time the server spends elsewhere (writing to disk) does not
/// count, and every byte that arrives starts the wait again: a slow but moving upload is
/// never cut. The upload code sees a body that broke off, so the session stays where its
/// last complete chunk left it, and the client can resume.
pub struct IdleTimeoutBody {
    inner: Body,
    timeout: Duration,
    /// When the current wait for the client began (`None`: not waiting).
    waiting_since: Option<Instant>,
    /// Created on the first wait; may be armed earlier than the current deadline, in which
    /// case it is re-armed when it fires (one timer operation per wait at most, not per
    /// frame).
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleTimeoutBody {
    pub fn new(inner: Body, timeout: Duration) -> IdleTimeoutBody {
        IdleTimeoutBody {
            inner,
            timeout,
            waiting_since: None,
            timer: None,
        }
    }
}

impl http_body::Body for IdleTimeoutBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting_since = None;
            return Poll::Ready(frame);
        }
        let now = Instant::now();
        let deadline = *this.waiting_since.get_or_insert(now) + this.timeout;
        if now >= deadline {
            CONNECTIONS.body_timeouts.inc();
            tracing::warn!(
                timeout_seconds = this.timeout.as_secs(),
                "request body dropped: the client sent nothing for [http] body_idle_timeout"
            );
            return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client sent no byte of the body for {} s",
                    this.timeout.as_secs()
                ),
            )))));
        }
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            // It was armed for an earlier wait: arm it for this one (and register the waker).
            timer.as_mut().reset(deadline);
            let _ = timer.as_mut().poll(cx);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use http_body_util::BodyExt as _;

    #[test]
    fn a_sane_incoming_id_is_kept_and_anything_else_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123:x/y"));
        assert_eq!(request_id(&headers), "abc-123:x/y");
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("has space"));
        let fresh = request_id(&headers);
        assert_eq!(fresh.len(), 32);
        assert_ne!(fresh, request_id(&headers), "ids are unique");
        assert!(fresh.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn ids_made_on_different_threads_differ() {
        // Each thread counts on its own: the thread's number keeps their ids apart.
        let here = request_id(&HeaderMap::new());
        let there = std::thread::spawn(|| request_id(&HeaderMap::new()))
            .join()
            .expect("thread");
        assert_ne!(here, there);
    }

    /// A body fed by a channel: each item is sent after its delay.
    fn trickle(delays: Vec<u64>) -> Body {
        let stream = futures_util::stream::iter(delays).then(|delay| async move {
            tokio::time::sleep(Duration::from_secs(delay)).await;
            Ok::<_, std::io::Error>(Bytes::from_static(b"x"))
        });
        Body::from_stream(stream)
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_moving_body_is_read_to_the_end() {
        let body = IdleTimeoutBody::new(trickle(vec![9, 9, 9, 9, 9, 9]), Duration::from_secs(10));
        let bytes = body
            .collect()
            .await
            .expect("never idle for 10 s")
            .to_bytes();
        assert_eq!(bytes.len(), 6, "54 s in all, but never 10 s without a byte");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_after_the_timeout() {
        let body = IdleTimeoutBody::new(trickle(vec![1, 1, 3600]), Duration::from_secs(10));
        let started = Instant::now();
        let error = body.collect().await.expect_err("stalled");
        assert!(
            error.to_string().contains("no byte of the body for 10 s"),
            "{error}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(12) && waited < Duration::from_secs(13),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_server_spends_elsewhere_does_not_count() {
        let mut body = IdleTimeoutBody::new(trickle(vec![0, 5]), Duration::from_secs(10));
        assert!(body.frame().await.is_some());
        // The server writes to a slow disk for a minute before asking for more.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let next = body.frame().await.expect("a frame").expect("not timed out");
        assert!(next.is_data());
    }
}
