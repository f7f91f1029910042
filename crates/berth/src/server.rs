//! Serving connections (plain HTTP here, TLS in `tls.rs`), and the limits every connection
//! lives under, so that stalled or abandoned sockets cannot pile up (a slowloris would
//! otherwise exhaust the file descriptors):
//!
//! - **header read timeout** ([`ConnectionAcceptor`]): a connection must send a request's
//!   headers within `[http] header_read_timeout` of being ready for one (opened, or done
//!   answering the last request), the TLS handshake and a keep-alive wait included;
//! - **idle timeout** ([`ConnectionAcceptor`]): a connection with no request in flight on
//!   which no byte moves for `[http] idle_timeout` is closed; a response being written moves
//!   bytes, so a slow download is not idle;
//! - **connection cap** ([`ConnectionAcceptor`]): beyond `[http] max_connections` open
//!   connections, each request on a new connection is answered 503 and the connection closed,
//!   with a log line (at most one a second) and `berth_connections_rejected_total`;
//! - **TLS handshake timeout** (`tls.rs`);
//! - **request body idle timeout** (`berth_api::observe`): a body that sends nothing for
//!   `[http] body_idle_timeout` is dropped, the upload stays resumable.
//!
//! No limit is on the total time of a request or on its size: a slow but moving multi-GiB
//! upload is never cut.
//!
//! Shutdown: when the shutdown future resolves, the listener stops accepting, idle
//! connections are closed, and requests in flight get `[http] shutdown_timeout` to finish;
//! then the rest are dropped (an upload cut there stays resumable: its session only ever
//! advances over complete chunks).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum_server::accept::Accept;
use berth_metrics::CONNECTIONS;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The connection limits of a listener (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: Option<usize>,
    pub tls_handshake_timeout: Duration,
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    /// The configuration's defaults.
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: Some(4096),
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(25),
        }
    }
}

/// The connection settings every listener gets. The header read timeout is
/// [`TrackedStream`]'s, not hyper's: hyper's arms a fresh timer for every request, and
/// registering and cancelling it was a tenth of a cached `HEAD`'s CPU; one timer per
/// connection, re-armed only when it fires, does the same for both HTTP versions.
pub fn harden(builder: &mut Builder<TokioExecutor>) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
}

/// Serve `app` over plain HTTP on `listener` until `shutdown` resolves, then let the
/// requests in flight finish for up to `limits.shutdown_timeout`.
pub async fn serve_plain(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.await;
            handle.graceful_shutdown(Some(limits.shutdown_timeout));
        }
    });
    let mut server = axum_server::Server::from_listener(listener)
        .acceptor(ConnectionAcceptor::new(&limits))
        .handle(handle);
    harden(server.http_builder());
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

/// A clock for the connections' last activity, in milliseconds since the process's first
/// connection (an atomic can hold it; an `Instant` cannot).
/// Milliseconds on the coarse monotonic clock (a few ms resolution, read from memory the
/// kernel updates each tick). It is read on every read and write of every connection, where
/// a precise clock read cost more than the rest of the bookkeeping, and idle timeouts of
/// seconds need no finer.
fn now_millis() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1000
        + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000
}

/// Counts connections, caps them, and wraps each one's socket and service so the header
/// read and idle timeouts know when the connection waits for the client.
#[derive(Clone)]
pub struct ConnectionAcceptor {
    timeouts: Timeouts,
    max_connections: Option<usize>,
    open: Arc<AtomicUsize>,
    /// When the last "too many connections" line was logged (seconds of [`now_millis`]).
    last_warning: Arc<AtomicU64>,
}

impl ConnectionAcceptor {
    pub fn new(limits: &Limits) -> ConnectionAcceptor {
        ConnectionAcceptor {
            timeouts: Timeouts {
                header_read: limits.header_read_timeout,
                idle: limits.idle_timeout,
            },
            max_connections: limits.max_connections,
            open: Arc::new(AtomicUsize::new(0)),
            last_warning: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    fn warn_rejected(&self, open: usize, max: usize) {
        let second = now_millis() / 1000;
        let last = self.last_warning.swap(second, Ordering::Relaxed);
        if last != second {
            tracing::warn!(
                open,
                max_connections = max,
                "too many connections: answering new ones 503 ([http] max_connections)"
            );
        }
    }
}

/// How long a connection may wait for its client (see the module documentation).
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    idle: Duration,
}

/// What a connection's socket and its service share (times in [`now_millis`]).
struct ConnectionState {
    /// Requests being handled on this connection now.
    in_flight: AtomicUsize,
    /// When a byte last moved or a request last finished.
    last_activity: AtomicU64,
    /// When the connection last became ready for a request's headers: opened, a request
    /// finished, or a byte of a response was written (a response still being written is
    /// not a wait for the next request).
    ready_since: AtomicU64,
}

impl<S> Accept<TcpStream, S> for ConnectionAcceptor {
    type Stream = TrackedStream;
    type Service = TrackedService<S>;
    type Future = std::future::Ready<io::Result<(TrackedStream, TrackedService<S>)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        if let Err(e) = stream.set_nodelay(true) {
            return std::future::ready(Err(e));
        }
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        CONNECTIONS.open.inc();
        CONNECTIONS.accepted.inc();
        let over_cap = self.max_connections.is_some_and(|max| open > max);
        if over_cap {
            CONNECTIONS.rejected.inc();
            self.warn_rejected(open, self.max_connections.unwrap_or(0));
        }
        let now = now_millis();
        let state = Arc::new(ConnectionState {
            in_flight: AtomicUsize::new(0),
            last_activity: AtomicU64::new(now),
            ready_since: AtomicU64::new(now),
        });
        std::future::ready(Ok((
            TrackedStream {
                inner: stream,
                state: state.clone(),
                timeouts: self.timeouts,
                timer: None,
                write_blocked: false,
                _open: OpenConnection(self.open.clone()),
            },
            TrackedService {
                inner: service,
                state,
                over_cap,
            },
        )))
    }
}

/// One open connection in the count, until it is dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        CONNECTIONS.open.dec();
    }
}

/// A client socket that counts its bytes and closes itself when its client is too slow
/// with a request's headers or idle too long.
pub struct TrackedStream {
    inner: TcpStream,
    state: Arc<ConnectionState>,
    timeouts: Timeouts,
    /// Armed while the connection waits for the client with no request in flight; may fire
    /// early (it is re-armed then), never late.
    timer: Option<Pin<Box<Sleep>>>,
    /// The last write could not go out: the client is not reading a response. Only the
    /// idle timeout applies then; it is not waiting for the client's next request.
    write_blocked: bool,
    _open: OpenConnection,
}

impl TrackedStream {
    fn received(&self) {
        self.state
            .last_activity
            .store(now_millis(), Ordering::Relaxed);
    }

    fn wrote(&mut self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Ready(Ok(written)) if *written > 0 => {
                CONNECTIONS.sent_bytes.add(*written as u64);
                let now = now_millis();
                self.state.last_activity.store(now, Ordering::Relaxed);
                self.state.ready_since.store(now, Ordering::Relaxed);
                self.write_blocked = false;
            }
            Poll::Pending => self.write_blocked = true,
            Poll::Ready(_) => {}
        }
    }

    /// Waiting for the client: an error once it has taken too long to send a request's
    /// headers or been idle too long, else `Pending` with a timer that wakes the connection
    /// at the deadline.
    fn wait_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.in_flight.load(Ordering::Relaxed) > 0 {
            // A request is being handled: its own timers (body idle) decide.
            return Poll::Pending;
        }
        let now = now_millis();
        let left = |since: &AtomicU64, timeout: Duration| {
            let waited = Duration::from_millis(now.saturating_sub(since.load(Ordering::Relaxed)));
            timeout.checked_sub(waited).filter(|d| !d.is_zero())
        };
        let headers_left = if self.write_blocked {
            Some(self.timeouts.idle)
        } else {
            left(&self.state.ready_since, self.timeouts.header_read)
        };
        let Some(headers_left) = headers_left else {
            CONNECTIONS.header_timeouts.inc();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request headers within [http] header_read_timeout",
            )));
        };
        let Some(idle_left) = left(&self.state.last_activity, self.timeouts.idle) else {
            CONNECTIONS.idle_closed.inc();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for [http] idle_timeout",
            )));
        };
        let left = headers_left.min(idle_left);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + left)));
        if timer.as_mut().poll(cx).is_ready() {
            timer.as_mut().reset(Instant::now() + left);
            let _ = timer.as_mut().poll(cx);
        }
        Poll::Pending
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    CONNECTIONS.received_bytes.add(read as u64);
                    this.received();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.wait_idle(cx),
        }
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        this.wrote(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, data);
        this.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A connection's service: counts its requests in flight, or answers 503 to every request
/// when the connection is beyond the cap.
#[derive(Clone)]
pub struct TrackedService<S> {
    inner: S,
    state: Arc<ConnectionState>,
    over_cap: bool,
}

/// A request in flight on its connection, until dropped (its response's headers are out).
struct InFlight(Arc<ConnectionState>);

impl InFlight {
    fn new(state: &Arc<ConnectionState>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The idle time and the wait for the next request start now, not at the last byte
        // before a long request.
        let now = now_millis();
        self.0.last_activity.store(now, Ordering::Relaxed);
        self.0.ready_since.store(now, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S> tower::Service<Request<Incoming>> for TrackedService<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        if self.over_cap {
            return TrackedFuture::Rejected {
                response: Some(too_many_connections()),
            };
        }
        TrackedFuture::Serving {
            inner: self.inner.call(request),
            in_flight: Some(InFlight::new(&self.state)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's answer: the router's, or the cap's 503.
    #[project = TrackedProjection]
    pub enum TrackedFuture<F> {
        Serving { #[pin] inner: F, in_flight: Option<InFlight> },
        Rejected { response: Option<Response<Body>> },
    }
}

impl<F> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            TrackedProjection::Serving { inner, in_flight } => {
                let output = std::task::ready!(inner.poll(cx));
                in_flight.take();
                Poll::Ready(output)
            }
            TrackedProjection::Rejected { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(too_many_connections)))
            }
        }
    }
}

/// The answer on a connection beyond the cap: the spec's JSON error, and the connection
/// closes after it.
fn too_many_connections() -> Response<Body> {
    let mut response = Response::new(Body::from(
        r#"{"errors":[{"code":"UNAVAILABLE","message":"too many connections: try again later","detail":null}]}"#,
    ));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    /// A server whose `/slow` answers after `slow`, under `limits`.
    async fn start(limits: Limits, slow: Duration) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new()
            .route("/fast", get(|| async { "fast" }))
            .route(
                "/slow",
                get(move || async move {
                    tokio::time::sleep(slow).await;
                    "slow"
                }),
            );
        tokio::spawn(serve_plain(listener, app, limits, std::future::pending()));
        addr
    }

    fn limits(idle: Duration) -> Limits {
        Limits {
            idle_timeout: idle,
            ..Limits::default()
        }
    }

    fn get_request(path: &str) -> Request<Empty<Bytes>> {
        Request::get(format!("http://localhost{path}"))
            .body(Empty::new())
            .expect("request")
    }

    #[tokio::test]
    async fn an_idle_http2_connection_is_closed_but_not_while_a_long_request_runs() {
        let addr = start(
            limits(Duration::from_millis(500)),
            Duration::from_millis(1500),
        )
        .await;
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        let closed = tokio::spawn(connection);
        // Three idle timeouts long, but in flight: never cut.
        let response = sender
            .send_request(get_request("/slow"))
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .expect("the idle connection is closed")
            .expect("task")
            .ok();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(400),
            "closed after {waited:?}, too soon"
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_answered_503_and_closed() {
        let addr = start(
            Limits {
                max_connections: Some(1),
                ..Limits::default()
            },
            Duration::ZERO,
        )
        .await;
        let first = TcpStream::connect(addr).await.expect("connect");
        let (mut first_sender, first_connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(first))
                .await
                .expect("handshake");
        tokio::spawn(first_connection);
        let answer = first_sender
            .send_request(get_request("/fast"))
            .await
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::OK);

        let second = TcpStream::connect(addr).await.expect("connect");
        let (mut second_sender, second_connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(second))
                .await
                .expect("handshake");
        tokio::spawn(second_connection);
        let refused = second_sender
            .send_request(get_request("/fast"))
            .await
            .expect("answer");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::CONNECTION], "close");
        assert!(CONNECTIONS.rejected.get() >= 1);
    }
}
