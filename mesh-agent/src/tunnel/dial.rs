//! One client tunnel connection: dialing it, driving it, and opening streams on it.
//!
//! A connection counts as made only after a first HTTP/2 PING round trip: with TLS 1.3 the
//! client's handshake completes before the server has checked the client certificate, so a
//! rejected certificate would otherwise surface later as a failed stream. Each connection has a
//! driver task (the h2 connection, its PING probe, its idle timer) that takes it out of the pool
//! (`pool.rs`) when it ends.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use h2::{Ping, PingPong, Reason};
use http::uri::{Authority, Parts};
use http::{HeaderMap, Method, Request, Uri};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::pool::PoolKey;
use super::pool_state::{Conn, ConnState, Inner, Lease};
use super::{ALPN_H2, TunnelError, TunnelStream, keepalive};

/// How long a connection leaving the pool gets to send its GOAWAY and close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type H2Connection = h2::client::Connection<TlsStream<TcpStream>, Bytes>;

/// Why a stream was not opened on a connection.
pub(crate) enum OpenError {
    /// The connection is unusable and nothing was exchanged: another one may be tried.
    Retry(TunnelError),
    /// The answer for this stream (refused, reset, bad request).
    Fail(TunnelError),
}

/// Dials connection `id` for `key` and adds it to the pool (the task a checkout waits on).
pub(crate) async fn dial(
    pool: Arc<Inner>,
    key: PoolKey,
    tls: Arc<rustls::ClientConfig>,
    id: u64,
) -> Result<(), TunnelError> {
    let deadline = Instant::now() + pool.cfg.connect_timeout;
    match establish(&pool, &key, tls, id, deadline).await {
        Ok(conn) => {
            tracing::debug!(node = %key.node, source = %key.source, dest = %key.dest, "tunnel connection open");
            pool.dialed(&key, id, Some(conn));
            Ok(())
        }
        Err(e) => {
            tracing::debug!(node = %key.node, source = %key.source, dest = %key.dest, error = %e, "tunnel connection failed");
            pool.dialed(&key, id, None);
            Err(e)
        }
    }
}

async fn establish(
    pool: &Arc<Inner>,
    key: &PoolKey,
    tls: Arc<rustls::ClientConfig>,
    id: u64,
    deadline: Instant,
) -> Result<Arc<Conn>, TunnelError> {
    let node = key.node;
    if !tls.alpn_protocols.iter().any(|p| p == ALPN_H2) {
        return Err(TunnelError::Tls(
            "the client TLS configuration does not offer ALPN h2".into(),
        ));
    }
    let tcp = timeout_at(deadline, TcpStream::connect(node))
        .await
        .map_err(|_| TunnelError::Connect(format!("{node}: TCP connect timed out")))?
        .map_err(|e| TunnelError::Connect(format!("{node}: {e}")))?;
    // Small writes (request heads, interactive traffic) must not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let tls = timeout_at(
        deadline,
        TlsConnector::from(tls).connect(key.dest.server_name(), tcp),
    )
    .await
    .map_err(|_| TunnelError::Tls(format!("{node}: TLS handshake timed out")))?
    .map_err(|e| TunnelError::Tls(format!("{node} as {}: {e}", key.dest)))?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
        return Err(TunnelError::Tls(format!(
            "{node}: the peer did not negotiate ALPN h2"
        )));
    }
    let (sender, conn) = timeout_at(deadline, pool.cfg.h2_builder().handshake(tls))
        .await
        .map_err(|_| TunnelError::Connect(format!("{node}: HTTP/2 handshake timed out")))?
        .map_err(|e| TunnelError::Connect(format!("{node}: HTTP/2 handshake: {e}")))?;
    let state = Arc::new(ConnState::default());
    let (ready_tx, ready_rx) = oneshot::channel();
    pool.opened();
    let driver = Driver {
        pool: Arc::downgrade(pool),
        key: key.clone(),
        id,
        state: state.clone(),
    };
    tokio::spawn(driver.run(conn, ready_tx, deadline));
    ready_rx.await.unwrap_or_else(|_| {
        Err(TunnelError::Connect(format!(
            "{node}: connection task ended"
        )))
    })?;
    Ok(Arc::new(Conn { id, sender, state }))
}

/// The task that keeps one connection going.
struct Driver {
    pool: Weak<Inner>,
    key: PoolKey,
    id: u64,
    state: Arc<ConnState>,
}

impl Driver {
    async fn run(
        self,
        mut conn: H2Connection,
        ready: oneshot::Sender<Result<(), TunnelError>>,
        deadline: Instant,
    ) {
        let mut ping_pong = conn.ping_pong();
        let mut conn = std::pin::pin!(conn);
        let node = self.key.node;
        let first = tokio::select! {
            end = conn.as_mut() => Err(TunnelError::Tls(format!(
                "{node}: the peer closed the connection during the handshake ({})", ended(end)
            ))),
            pong = first_ping(ping_pong.as_mut(), deadline) => pong.map_err(|e| match e {
                Some(e) => TunnelError::Tls(format!("{node}: the peer closed the connection during the handshake ({e})")),
                None => TunnelError::Connect(format!("{node}: no answer to the first PING")),
            }),
        };
        let ok = first.is_ok();
        let _ = ready.send(first);
        if ok {
            let why = self.serve(conn.as_mut(), ping_pong).await;
            tracing::debug!(node = %node, dest = %self.key.dest, reason = %why, "tunnel connection closed");
        }
        self.state.dead.store(true, SeqCst);
        if let Some(pool) = self.pool.upgrade() {
            pool.remove(&self.key, self.id);
            pool.closed();
        }
    }

    /// Runs the connection until it ends, its probe fails or it idles out; returns why.
    async fn serve(
        &self,
        mut conn: std::pin::Pin<&mut H2Connection>,
        ping_pong: Option<PingPong>,
    ) -> String {
        let Some(cfg) = self.pool.upgrade().map(|p| p.cfg.clone()) else {
            return "pool dropped".into();
        };
        tokio::select! {
            end = conn.as_mut() => ended(end),
            why = keepalive::probe(ping_pong, cfg.keepalive_interval, cfg.keepalive_timeout) => why,
            () = self.idle(cfg.idle_timeout) => {
                // Out of the pool with no stream: h2 sends GOAWAY and closes by itself.
                let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
                format!("idle for {:?}", cfg.idle_timeout)
            }
        }
    }

    /// Returns once the connection has been without streams for `timeout` and left the pool.
    async fn idle(&self, timeout: Duration) {
        loop {
            while self.state.streams.load(SeqCst) > 0 {
                self.state.idle.notified().await;
            }
            let uses = self.state.uses.load(SeqCst);
            tokio::time::sleep(timeout).await;
            let Some(pool) = self.pool.upgrade() else {
                return;
            };
            if pool.remove_if_idle(&self.key, self.id, uses) {
                return;
            }
        }
    }
}

/// The first PING round trip: `Err(Some)` if the connection failed, `Err(None)` on timeout.
async fn first_ping(
    ping_pong: Option<&mut PingPong>,
    deadline: Instant,
) -> Result<(), Option<h2::Error>> {
    let Some(ping_pong) = ping_pong else {
        return Ok(());
    };
    match timeout_at(deadline, ping_pong.ping(Ping::opaque())).await {
        Ok(Ok(_pong)) => Ok(()),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

fn ended(end: Result<(), h2::Error>) -> String {
    match end {
        Ok(()) => "closed".into(),
        Err(e) => e.to_string(),
    }
}

/// Opens one `CONNECT` stream on `conn` and waits for the response head.
pub(crate) async fn open_stream(
    conn: &Conn,
    authority: SocketAddr,
    headers: HeaderMap,
    lease: Lease,
) -> Result<TunnelStream, OpenError> {
    let request = connect_request(authority, headers).map_err(OpenError::Fail)?;
    let mut sender =
        conn.sender.clone().ready().await.map_err(|e| {
            OpenError::Retry(TunnelError::Connect(format!("tunnel connection: {e}")))
        })?;
    let (response, send) = sender.send_request(request, false).map_err(classify)?;
    let response = response.await.map_err(classify)?;
    let status = response.status();
    if !status.is_success() {
        return Err(OpenError::Fail(TunnelError::Refused(status)));
    }
    Ok(TunnelStream::new(response.into_body(), send, Some(lease)))
}

/// `CONNECT` with `:authority` = `ip:port` (IPv6 in brackets) and no `:scheme`/`:path`
/// (RFC 9113 §8.5; h2 leaves them out for a CONNECT).
fn connect_request(authority: SocketAddr, headers: HeaderMap) -> Result<Request<()>, TunnelError> {
    let bad = |e: &dyn std::fmt::Display| TunnelError::Connect(format!("{authority}: {e}"));
    let mut parts = Parts::default();
    parts.authority = Some(Authority::try_from(authority.to_string()).map_err(|e| bad(&e))?);
    let mut request = Request::new(());
    *request.method_mut() = Method::CONNECT;
    *request.uri_mut() = Uri::from_parts(parts).map_err(|e| bad(&e))?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Whether a stream's failure means its connection is gone (retry elsewhere) or is its own.
fn classify(e: h2::Error) -> OpenError {
    let text = e.to_string();
    if e.is_go_away() || e.is_io() || e.reason() == Some(Reason::REFUSED_STREAM) {
        OpenError::Retry(TunnelError::Reset(text))
    } else if e.reason().is_some() {
        OpenError::Fail(TunnelError::Reset(text))
    } else {
        // h2 refused what we asked of it (for example connection-specific headers).
        OpenError::Fail(TunnelError::Connect(format!("tunnel request: {text}")))
    }
}
