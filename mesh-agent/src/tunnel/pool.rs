//! Tunnel connections shared by streams, per (source identity, destination identity, node).
//!
//! The key holds both identities because the connection's TLS session is bound to them: the
//! client certificate is the source's and the server certificate must be the destination's.
//! Streams fill the first connection of a key with room (so the others can go idle and close);
//! another connection is dialed only when every open one is at `max_streams_per_conn`, up to
//! `max_conns_per_key`, and then `connect` waits for a stream to end. Concurrent connects that
//! need a new connection share one dial, which runs on its own task so a caller giving up does
//! not stall the others (the pattern of `proxy/http/upstream.rs`). `dial.rs` makes and drives
//! connections; a connection that ends, idles out or fails a stream leaves the pool. The
//! bookkeeping itself is in `pool_state.rs`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use tokio::sync::futures::Notified;
use tokio::time::Instant;

use super::config::PoolConfig;
use super::dial::{self, OpenError};
use super::pool_state::{Conn, Inner, Lease, Step};
use super::{TunnelError, TunnelStream};
use crate::identity::SpiffeId;

/// A stream that failed on a connection that then proved unusable is tried again this many
/// times in all (nothing was exchanged on it yet).
const ATTEMPTS: usize = 3;

/// Which connections a stream may share.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The workload the stream comes from (the client certificate presented).
    pub source: SpiffeId,
    /// The workload it goes to (the server name asked for and verified).
    pub dest: SpiffeId,
    /// The peer node's tunnel address (`ip:15008`).
    pub node: SocketAddr,
}

/// Client-side tunnel connections. Cheap to clone (shared).
#[derive(Clone)]
pub struct TunnelPool {
    inner: Arc<Inner>,
}

impl TunnelPool {
    pub fn new(cfg: PoolConfig) -> Self {
        TunnelPool {
            inner: Arc::new(Inner::new(cfg)),
        }
    }

    /// Opens a `CONNECT` stream to `authority` (the destination pod's `ip:port`) through a
    /// pooled connection for `key`, dialing one with `tls` (which must present the source's
    /// certificate and offer ALPN `h2`) and the server name `key.dest.server_name()` if needed.
    /// Waits for the response head: 2xx gives the stream, another status `Refused(status)`.
    /// Bounded by `connect_timeout` except for the wait for the response head, which is the
    /// peer's (it connects to the pod meanwhile): wrap the call in a timeout if needed.
    pub async fn connect(
        &self,
        key: &PoolKey,
        tls: Arc<rustls::ClientConfig>,
        authority: SocketAddr,
        headers: http::HeaderMap,
    ) -> Result<TunnelStream, TunnelError> {
        let deadline = Instant::now() + self.inner.cfg.connect_timeout;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let (conn, lease) = self.checkout(key, &tls, deadline).await?;
            match dial::open_stream(&conn, authority, headers.clone(), lease).await {
                Ok(stream) => return Ok(stream),
                Err(OpenError::Fail(e)) => return Err(e),
                Err(OpenError::Retry(e)) => {
                    tracing::debug!(node = %key.node, dest = %key.dest, error = %e, "tunnel connection unusable, retrying on another");
                    conn.state.dead.store(true, SeqCst);
                    self.inner.remove(key, conn.id);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| TunnelError::Connect(format!("{}: no attempt", key.node))))
    }

    /// Open tunnel connections (sockets), in the pool or draining out of it.
    pub fn connections(&self) -> usize {
        self.inner.open.load(SeqCst)
    }

    /// A connection for `key` with room for one more stream, and that stream's lease.
    async fn checkout(
        &self,
        key: &PoolKey,
        tls: &Arc<rustls::ClientConfig>,
        deadline: Instant,
    ) -> Result<(Arc<Conn>, Lease), TunnelError> {
        let mut waiter: Option<Pin<Box<Notified<'_>>>> = None;
        let mut waiting = WaitCount {
            inner: &self.inner,
            counted: false,
        };
        loop {
            match self.inner.step(key, tls) {
                Step::Ready(conn, lease) => return Ok((conn, lease)),
                Step::Dial(dialing) => match tokio::time::timeout_at(deadline, dialing).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(self.timed_out(key, "a tunnel connection")),
                },
                // Register for the wake-up before looking again, so a stream ending in between
                // is not missed; then wait.
                Step::Full => match waiter.take() {
                    None => {
                        let mut notified = Box::pin(self.inner.freed.notified());
                        notified.as_mut().enable();
                        waiting.start();
                        waiter = Some(notified);
                    }
                    Some(notified) => {
                        if tokio::time::timeout_at(deadline, notified).await.is_err() {
                            return Err(self.timed_out(key, "a free stream"));
                        }
                    }
                },
            }
        }
    }

    fn timed_out(&self, key: &PoolKey, what: &str) -> TunnelError {
        let cfg = &self.inner.cfg;
        TunnelError::Connect(format!(
            "{} ({}): no {what} within {:?} (at most {} connections of {} streams)",
            key.node,
            key.dest,
            cfg.connect_timeout,
            cfg.max_conns_per_key,
            cfg.max_streams_per_conn
        ))
    }
}
/// Counts a `checkout` among the waiters from `start` until it returns.
struct WaitCount<'a> {
    inner: &'a Inner,
    counted: bool,
}

impl WaitCount<'_> {
    fn start(&mut self) {
        if !self.counted {
            self.counted = true;
            self.inner.waiting.fetch_add(1, SeqCst);
        }
    }
}

impl Drop for WaitCount<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.inner.waiting.fetch_sub(1, SeqCst);
        }
    }
}
