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
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::body::{BodyError, UpstreamBody};
use super::slots::{ConnectionSlot, ServiceLimits};
use crate::identity::SpiffeId;
use crate::proxy::dial::{DialError, Dialer, UpstreamIo};
use crate::proxy::inbound::StreamProtocol;

/// Idle HTTP/2 connections are probed this often, so a vanished endpoint is noticed.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// Above this many remembered HTTP/2 endpoints, closed connections are swept on insert.
const H2_SWEEP_AT: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct UpstreamConfig {
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

/// The calling workload's identity, when connections go through the mesh as it; `None`: plain.
pub type Via = Option<Arc<SpiffeId>>;

type H1Client = Client<MeshConnector, UpstreamBody>;

/// Clients for every upstream endpoint.
pub struct Upstreams {
    dialer: Arc<Dialer>,
    h1_builder: hyper_util::client::legacy::Builder,
    /// One pooling client per calling identity: a pooled connection through a tunnel carries
    /// the identity it was opened with, so identities never share one.
    h1: Mutex<HashMap<Via, H1Client>>,
    h2: H2Pool,
}

impl Upstreams {
    pub fn new(config: UpstreamConfig, dialer: Arc<Dialer>) -> Self {
        let mut h1_builder = Client::builder(TokioExecutor::new());
        h1_builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .http1_max_buf_size(config.max_header_bytes.max(8192));
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEPALIVE)
            .keep_alive_while_idle(true)
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        Upstreams {
            dialer: dialer.clone(),
            h1_builder,
            h1: Mutex::new(HashMap::new()),
            h2: H2Pool {
                builder: h2,
                dialer,
                conns: Mutex::new(HashMap::new()),
            },
        }
    }

    fn h1_client(&self, via: &Via) -> H1Client {
        let mut clients = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(via) {
            return client.clone();
        }
        let connector = MeshConnector {
            dialer: self.dialer.clone(),
            via: via.clone(),
        };
        let client = self.h1_builder.build(connector);
        clients.insert(via.clone(), client.clone());
        client
    }

    /// Whether a request over h2c to `addr` would share a connection (open or being made)
    /// rather than need a new one.
    pub fn h2_usable(&self, via: &Via, addr: SocketAddr) -> bool {
        let conns = self.h2.conns.lock().unwrap_or_else(PoisonError::into_inner);
        match conns.get(&(via.clone(), addr)) {
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
        via: &Via,
        h2: bool,
        mut request: Request<UpstreamBody>,
        limits: &Arc<ServiceLimits>,
        slot: Option<ConnectionSlot>,
    ) -> Result<Response<Incoming>, SendError> {
        if h2 {
            *request.version_mut() = Version::HTTP_2;
            let mut sender = self.h2.sender(via, addr, limits, slot).await?;
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
        self.h1_client(via).request(request).await.map_err(|e| {
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

/// One HTTP/2 connection per endpoint and calling identity.
struct H2Pool {
    builder: http2::Builder<TokioExecutor>,
    dialer: Arc<Dialer>,
    conns: Mutex<HashMap<(Via, SocketAddr), Slot>>,
}

impl H2Pool {
    /// The connection to `addr`, shared, or made holding `slot` (or a slot free in `limits`).
    async fn sender(
        &self,
        via: &Via,
        addr: SocketAddr,
        limits: &Arc<ServiceLimits>,
        slot: Option<ConnectionSlot>,
    ) -> Result<Sender, SendError> {
        let key = (via.clone(), addr);
        let connecting = {
            let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
            match conns.get(&key) {
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
                    let dialer = self.dialer.clone();
                    let c = connect_h2(self.builder.clone(), dialer, via.clone(), addr, slot)
                        .boxed()
                        .shared();
                    conns.insert(key.clone(), Slot::Connecting(c.clone()));
                    c
                }
            }
        };
        let result = connecting.clone().await;
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Slot::Connecting(c)) = conns.get(&key)
            && c.ptr_eq(&connecting)
        {
            match &result {
                Ok(sender) => conns.insert(key, Slot::Ready(sender.clone())),
                Err(_) => conns.remove(&key),
            };
        }
        result
    }
}

/// Connects to `addr`; the connection keeps `slot` until it ends (a failed connect frees it).
async fn connect_h2(
    builder: http2::Builder<TokioExecutor>,
    dialer: Arc<Dialer>,
    via: Via,
    addr: SocketAddr,
    slot: ConnectionSlot,
) -> Result<Sender, SendError> {
    let stream = dialer
        .dial(via.as_deref(), addr, StreamProtocol::Http2)
        .await
        .map_err(|e| SendError::Connect(format!("{addr}: {e}")))?;
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

/// hyper-util's connector for HTTP/1.1 pools: dials the endpoint named by the URI's authority
/// (see [`endpoint_uri`]) as the pool's calling identity.
#[derive(Clone)]
pub struct MeshConnector {
    dialer: Arc<Dialer>,
    via: Via,
}

impl tower_service::Service<Uri> for MeshConnector {
    type Response = TokioIo<UpstreamIo>;
    type Error = DialError;
    type Future = BoxFuture<'static, Result<TokioIo<UpstreamIo>, DialError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), DialError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.dialer.clone();
        let via = self.via.clone();
        Box::pin(async move {
            let addr: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| DialError::Connect(format!("{uri}: not an endpoint address")))?;
            let stream = dialer
                .dial(via.as_deref(), addr, StreamProtocol::Http1)
                .await?;
            Ok(TokioIo::new(stream))
        })
    }
}
