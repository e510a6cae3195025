//! Connections to upstream endpoints, reused across requests and client connections.
//!
//! HTTP/1.1 goes through hyper-util's pooling client: idle keep-alive connections are kept per
//! endpoint (`ip:port` is the pool key, since requests are addressed to the endpoint) and reused.
//! HTTP/2 (h2c with prior knowledge) keeps one multiplexed connection per endpoint here, so
//! that the request's own `:authority` goes upstream unchanged while the connection is chosen
//! by endpoint. Concurrent first requests to an endpoint share a single connect.
//!
//! Connection slots (`slots.rs`): an HTTP/1.1 request holds its own, so the pool here never
//! sees it; an HTTP/2 connection holds the slot of the request that made it until it closes.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::body::{BodyError, UpstreamBody};
use super::slots::{ConnectionSlot, ServiceLimits};

/// Idle HTTP/2 connections are probed this often, so a vanished endpoint is noticed.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// Above this many remembered HTTP/2 endpoints, closed connections are swept on insert.
const H2_SWEEP_AT: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    /// How long an idle pooled HTTP/1.1 connection is kept.
    pub pool_idle_timeout: Duration,
    pub max_header_bytes: usize,
}

/// Why a request did not get a response from the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, timed out): the request was not sent.
    Connect(String),
    /// The connection failed after the request was (or may have been) sent.
    Reset(String),
    /// The client stopped sending its request body (see [`BodyError::Stalled`]).
    Stalled,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Reset(e) => write!(f, "upstream: {e}"),
            SendError::Stalled => f.write_str("the client's request body stalled"),
        }
    }
}

/// Clients for every upstream endpoint.
pub struct Upstreams {
    h1: Client<HttpConnector, UpstreamBody>,
    h2: H2Pool,
}

impl Upstreams {
    pub fn new(config: UpstreamConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let h1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .http1_max_buf_size(config.max_header_bytes.max(8192))
            .build(connector);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEPALIVE)
            .keep_alive_while_idle(true)
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        Upstreams {
            h1,
            h2: H2Pool {
                builder: h2,
                connect_timeout: config.connect_timeout,
                conns: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Whether a request over h2c to `addr` would share a connection (open or being made)
    /// rather than need a new one.
    pub fn h2_usable(&self, addr: SocketAddr) -> bool {
        let conns = self.h2.conns.lock().unwrap_or_else(PoisonError::into_inner);
        match conns.get(&addr) {
            Some(Slot::Ready(s)) => !s.is_closed(),
            Some(Slot::Connecting(_)) => true,
            None => false,
        }
    }

    /// Sends `request` (whose URI carries the original authority) to the endpoint `addr`, over
    /// h2c when `h2`, else HTTP/1.1. An HTTP/1.1 request holds its connection slot itself. Over
    /// h2c, a new connection holds `slot`, or else a slot free now in `limits`; with neither
    /// the request fails as a connect failure (it was not sent).
    pub async fn send(
        &self,
        addr: SocketAddr,
        h2: bool,
        mut request: Request<UpstreamBody>,
        limits: &Arc<ServiceLimits>,
        slot: Option<ConnectionSlot>,
    ) -> Result<Response<Incoming>, SendError> {
        if h2 {
            *request.version_mut() = Version::HTTP_2;
            let mut sender = self.h2.sender(addr, limits, slot).await?;
            sender
                .ready()
                .await
                .map_err(|e| SendError::Reset(chain(&e)))?;
            return sender
                .send_request(request)
                .await
                .map_err(|e| SendError::Reset(chain(&e)));
        }
        *request.version_mut() = Version::HTTP_11;
        // The pool is keyed by the URI's authority: address the endpoint. The legacy client
        // sends the origin form, and `Host` (set by the caller) keeps the original authority.
        *request.uri_mut() = endpoint_uri(request.uri(), addr)?;
        self.h1.request(request).await.map_err(|e| {
            if e.is_connect() {
                SendError::Connect(chain(&e))
            } else if BodyError::is_stall(&e) {
                SendError::Stalled
            } else {
                SendError::Reset(chain(&e))
            }
        })
    }
}

/// `http://<addr><path and query of uri>`.
fn endpoint_uri(uri: &Uri, addr: SocketAddr) -> Result<Uri, SendError> {
    let mut text = String::with_capacity(48);
    let _ = write!(text, "{addr}");
    let authority =
        Authority::try_from(text).map_err(|e| SendError::Connect(format!("{addr}: {e}")))?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).map_err(|e| SendError::Connect(format!("{addr}: {e}")))
}

/// An error and its causes on one line (hyper's own messages are terse).
pub fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let _ = write!(text, ": {e}");
        source = e.source();
    }
    text
}

type Sender = http2::SendRequest<UpstreamBody>;
type Connecting = Shared<BoxFuture<'static, Result<Sender, SendError>>>;

enum Slot {
    Ready(Sender),
    Connecting(Connecting),
}

/// One h2c connection per endpoint.
struct H2Pool {
    builder: http2::Builder<TokioExecutor>,
    connect_timeout: Duration,
    conns: Mutex<HashMap<SocketAddr, Slot>>,
}

impl H2Pool {
    /// The connection to `addr`, shared, or made holding `slot` (or a slot free in `limits`).
    async fn sender(
        &self,
        addr: SocketAddr,
        limits: &Arc<ServiceLimits>,
        slot: Option<ConnectionSlot>,
    ) -> Result<Sender, SendError> {
        let connecting = {
            let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
            match conns.get(&addr) {
                Some(Slot::Ready(s)) if !s.is_closed() => return Ok(s.clone()),
                Some(Slot::Connecting(c)) => c.clone(),
                _ => {
                    let Some(slot) = slot.or_else(|| limits.try_connection()) else {
                        return Err(SendError::Connect(format!(
                            "{addr}: no connection slot free"
                        )));
                    };
                    // Requests waiting for a slot to reach this endpoint can share this one.
                    slot.wake_waiters();
                    if conns.len() >= H2_SWEEP_AT {
                        conns.retain(|_, slot| match slot {
                            Slot::Ready(s) => !s.is_closed(),
                            Slot::Connecting(_) => true,
                        });
                    }
                    let c = connect_h2(self.builder.clone(), addr, self.connect_timeout, slot)
                        .boxed()
                        .shared();
                    conns.insert(addr, Slot::Connecting(c.clone()));
                    c
                }
            }
        };
        let result = connecting.clone().await;
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Slot::Connecting(c)) = conns.get(&addr)
            && c.ptr_eq(&connecting)
        {
            match &result {
                Ok(sender) => conns.insert(addr, Slot::Ready(sender.clone())),
                Err(_) => conns.remove(&addr),
            };
        }
        result
    }
}

/// Connects to `addr`; the connection keeps `slot` until it ends (a failed connect frees it).
async fn connect_h2(
    builder: http2::Builder<TokioExecutor>,
    addr: SocketAddr,
    timeout: Duration,
    slot: ConnectionSlot,
) -> Result<Sender, SendError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(SendError::Connect(format!("{addr}: {e}"))),
        Err(_) => return Err(SendError::Connect(format!("{addr}: connect timed out"))),
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = builder
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Connect(format!("{addr}: h2 handshake: {}", chain(&e))))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(upstream = %addr, error = %chain(&e), "h2 upstream connection ended");
        }
        drop(slot);
    });
    Ok(sender)
}
