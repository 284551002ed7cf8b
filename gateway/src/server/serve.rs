//! The accept loop and one connection's life.

use super::ListenerConfig;
use super::admission::{Admission, Ticket};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` turns true, then drains open connections.
/// Each request carries the client's address as `ConnectInfo<SocketAddr>` (the rate limit
/// keys anonymous clients by IP).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ListenerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(
        max_connections = config.limits.total,
        max_connections_per_ip = config.limits.per_ip,
        header_read_timeout = ?config.header_read_timeout,
        "HTTP listener limits"
    );
    let admission = Admission::new(config.limits);
    // Every connection task holds a receiver; once all are dropped, `closed()` returns.
    let (connections_done, connection_open) = watch::channel(());
    let mut backoff = FIRST_ACCEPT_BACKOFF;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop_asked(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = FIRST_ACCEPT_BACKOFF;
                accepted
            }
            Err(error) => {
                // Typically EMFILE: wait for descriptors to come back instead of spinning.
                tracing::warn!(%error, "HTTP accept failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop_asked(&mut shutdown) => break,
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        // Over a limit: drop the stream, which closes it now (admission logs the episode).
        let Ok(ticket) = admission.admit(peer.ip()) else {
            continue;
        };
        tokio::spawn(serve_connection(
            Connection {
                stream,
                peer,
                ticket,
                open: connection_open.clone(),
            },
            app.clone(),
            config.header_read_timeout,
            shutdown.clone(),
        ));
    }
    drop(listener);
    drop(connection_open);
    if tokio::time::timeout(config.drain_timeout, connections_done.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open = admission.open(),
            "HTTP connections still open after {:?}; closing them",
            config.drain_timeout
        );
    }
}

/// An admitted connection and what it holds until it closes.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    /// Its place under the connection limits.
    ticket: Ticket,
    /// Keeps the drain waiting while the connection is open.
    open: watch::Receiver<()>,
}

async fn serve_connection(
    connection: Connection,
    app: Router,
    header_read_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // Held (not used) until the connection closes: dropping them frees its place.
    let Connection {
        stream,
        peer,
        ticket: _ticket,
        open: _open,
    } = connection;
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "set_nodelay failed");
    }
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let mut served = pin!(
        builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    let result = tokio::select! {
        result = served.as_mut() => result,
        _ = stop_asked(&mut shutdown) => {
            // Finish the request in flight, if any, then close.
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    // A header timeout, a reset or a client that went away: routine, not an error.
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "HTTP connection ended");
    }
}

/// Returns once a stop is asked for (or the sender is gone). Unlike `wait_for` itself it
/// holds no borrow of the value, so a task awaiting it stays `Send`.
async fn stop_asked(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
