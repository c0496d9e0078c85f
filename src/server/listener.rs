//! Accepting connections from clients that may be slow or hostile.
//!
//! `axum::serve` has no header timeout, no idle timeout and no connection cap: 256 clients
//! that send headers and then stall their bodies, or thousands that connect and say
//! nothing, took the server off the air and exhausted its file descriptors. This accept
//! loop gives every connection a deadline for its request headers (which also closes
//! keep-alive connections that stay idle), caps the open connections below the descriptor
//! limit (a connection over the cap waits in the kernel's backlog), and drains connections
//! on shutdown. Request bodies get their own deadline in `middleware::buffer_body`. Every
//! request carries its connection's peer address as `ConnectInfo<SocketAddr>`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Layer;

/// Deadlines and caps of the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, from the connection's start or the
    /// end of the previous response: also the idle timeout of keep-alive connections.
    pub header_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// A quarter of the open-file limit, between 64 and 4,096: the rest stays for archives,
/// upstream connections, logs and the reloader.
fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .unwrap_or(1024);
    (soft / 4).clamp(64, 4096)
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish
/// for at most `limits.drain_timeout`.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a little
                    // instead of spinning, and go on.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer reaches the handlers as `ConnectInfo`, as with axum's own `serve`: the
        // client identity (`client::identify`) starts from it.
        let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(app.clone()));
        let (builder, header_timeout) = (builder.clone(), limits.header_timeout);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The header deadline of the HTTP/1 parser starts with the first byte; a client
            // that connects and sends nothing gets the same deadline here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(header_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                drop(permit);
                return;
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let _ = watcher.watch(connection).await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after the drain timeout were cut off");
    }
}
