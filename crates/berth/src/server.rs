//! Serving connections over plain HTTP (TLS is in `tls.rs`), and what both do to a client
//! that opens a connection and never finishes its request headers: the connection is closed
//! after [`HEADER_READ_TIMEOUT`], so idle or stalled sockets cannot pile up (a slowloris
//! would otherwise exhaust the file descriptors). Bodies are not timed here: a slow but
//! moving multi-GiB upload must never be cut.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum_server::accept::NoDelayAcceptor;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;

/// How long a connection may take to send a request's headers, including an idle
/// keep-alive connection's next request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection settings every listener gets.
pub fn harden(builder: &mut Builder<TokioExecutor>) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
}

/// Serve `app` over plain HTTP on `listener` until `shutdown` resolves, then finish the
/// requests in flight.
pub async fn serve_plain(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.await;
            handle.graceful_shutdown(None);
        }
    });
    let mut server = axum_server::Server::from_listener(listener)
        .acceptor(NoDelayAcceptor::new())
        .handle(handle);
    harden(server.http_builder());
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
}
