//! The accept loop: HTTP/1.1 connections served by hyper with a timer, so a
//! client that sends headers slowly, or sits idle between requests, is
//! closed instead of holding a descriptor forever (slowloris).
//!
//! `axum::serve` offers no header-read timeout; this loop is the few lines
//! of it Hearth needs, plus the timer. Each connection is one task, tracked
//! so that shutdown waits for the requests in flight.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long a connection may take over the parts of a request hyper reads.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Until a request's headers are complete, counted from the connection's
    /// start or the end of the previous response: it also bounds an idle
    /// keep-alive connection and a WebSocket handshake that never finishes.
    pub header_read: Duration,
}

/// How long to wait before accepting again after `accept` failed (e.g. out of
/// file descriptors), as `axum::serve` does, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, asks every open connection to finish its request in flight and
/// close, and waits for them. Upgraded connections (WebSockets) have left
/// hyper by then and are the cable engine's to close.
pub async fn run(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    // One task per connection; the tracker lets shutdown wait for all of them.
    let connections = TaskTracker::new();
    // Cancelled at shutdown: each connection task then closes gracefully.
    let draining = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Chat frames are small and latency matters: without TCP_NODELAY,
        // Nagle's algorithm and delayed ACKs held frames back by 40 ms
        // (BENCHMARKS.md). The session loop already gathers queued frames
        // into one write.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        // The router, with the peer address in every request as
        // `ConnectInfo`, as `into_make_service_with_connect_info` provides it.
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let draining = draining.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => return log_end(result),
                () = draining.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            log_end(connection.await);
        });
    }
    drop(listener);
    draining.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

fn log_end(result: hyper::Result<()>) {
    if let Err(error) = result {
        // Timeouts, resets and malformed requests: the client's doing.
        tracing::debug!(%error, "connection ended with an error");
    }
}
