//! Serving connections over plain HTTP (TLS is in `tls.rs`), and what both do to a client
//! that opens a connection and never finishes its request headers: the connection is closed
//! after `[http] header_read_timeout` (30 s by default), so idle or stalled sockets cannot
//! pile up (a slowloris would otherwise exhaust the file descriptors). Bodies are not timed
//! here: a slow but moving multi-GiB upload must never be cut.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum_server::accept::NoDelayAcceptor;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;

/// The connection settings every listener gets: `header_read_timeout` is how long a
/// connection may take to send a request's headers, an idle keep-alive connection's next
/// request included.
pub fn harden(builder: &mut Builder<TokioExecutor>, header_read_timeout: Duration) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
}

/// Serve `app` over plain HTTP on `listener` until `shutdown` resolves, then finish the
/// requests in flight.
pub async fn serve_plain(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
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
    harden(server.http_builder(), header_read_timeout);
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
}
