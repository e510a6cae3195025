//! The tunnel listener: accepts connections, bounds how many are served, and stops gracefully.
//!
//! Each accepted connection runs as its own task (`session.rs`: TLS, HTTP/2, streams), so a
//! slow or hostile peer only ever holds its own task and one of `max_connections` permits.
//! On `stop` the listener closes, every connection sends GOAWAY and finishes its streams, and
//! `serve` returns when they are done or `drain_timeout` has passed (then they are dropped).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::config::ServerConfig;
use super::events::Rejection;
use super::request::ConnectHandler;
use super::session;

/// After a failed `accept` (out of file descriptors, say), wait this long before the next one
/// instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves tunnels on `listener` until `stop` turns true (or its sender is dropped): TLS with
/// `tls` (within `handshake_timeout`), which must negotiate ALPN `h2` and get a client
/// certificate, then `CONNECT` streams, each handed to `handler`. Returns once drained.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: Arc<dyn ConnectHandler>,
    cfg: ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(cfg.max_connections));
    let cfg = Arc::new(cfg);
    let mut sessions = JoinSet::new();
    let local = listener.local_addr().ok();
    tracing::debug!(addr = ?local, "tunnel server listening");
    while !*stop.borrow_and_update() {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(addr = ?local, error = %e, "tunnel server: accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "tunnel connection refused: server full");
                    cfg.events.rejected(peer, Rejection::Overloaded, "max_connections reached");
                    continue;
                };
                let session = session::Session {
                    peer,
                    handler: handler.clone(),
                    cfg: cfg.clone(),
                    stop: stop.clone(),
                    _permit: permit,
                };
                sessions.spawn(session.run(tcp, acceptor.clone()));
            }
            changed = stop.changed() => if changed.is_err() { break },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    tracing::debug!(addr = ?local, open = sessions.len(), "tunnel server stopping");
    let drain = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(cfg.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::debug!(addr = ?local, open = sessions.len(), "tunnel server: drain timed out, dropping connections");
        sessions.shutdown().await;
    }
}
