//! How the node proxy reaches an endpoint, for the opaque path and the HTTP pools alike.
//!
//! - The endpoint is not an enrolled pod (or mTLS is off, or the caller has no identity): a
//!   plain TCP connection.
//! - It is an enrolled pod on another node: a stream of an HBONE tunnel to that node's proxy
//!   (`tunnel`), presenting the calling workload's certificate and expecting the destination
//!   workload's.
//! - It is an enrolled pod on this node: handed in-process to this node's inbound side, which
//!   applies the same admission and authorization as for a tunnelled stream, without the
//!   network hop or TLS.
//!
//! The caller says what the stream carries ([`StreamProtocol`]) so that the destination knows
//! whether to apply HTTP authorization per request or opaque-TCP authorization once.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::inbound::{Inbound, StreamProtocol};
use crate::identity::{Identities, SpiffeId};
use crate::state::{MeshState, Workload};
use crate::tunnel::{PoolKey, TunnelError, TunnelPool, TunnelStream};

/// Why no stream to an endpoint could be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DialError {
    #[error("{0}")]
    Connect(String),
    #[error("connect timed out")]
    Timeout,
    /// The destination refused the stream (authorization, identity): the caller resets its
    /// client rather than reporting an upstream failure.
    #[error("refused by the destination: {0}")]
    Refused(String),
}

/// The mesh side of dialling: present when the agent has a CA and so identities.
pub struct MeshDial {
    /// This node's name: destinations on it are handed to `inbound`.
    pub node: String,
    pub trust_domain: String,
    pub state: watch::Receiver<Arc<MeshState>>,
    pub identities: Identities,
    pub pool: TunnelPool,
    pub inbound: Arc<Inbound>,
    /// Port of the other node proxies' tunnel listeners.
    pub tunnel_port: u16,
}

pub struct Dialer {
    connect_timeout: Duration,
    mesh: Option<MeshDial>,
}

impl Dialer {
    /// Plain TCP to every endpoint (no mTLS).
    pub fn plain(connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Dialer {
            connect_timeout,
            mesh: None,
        })
    }

    /// Tunnels to meshed pods, as described in the module docs.
    pub fn mesh(connect_timeout: Duration, mesh: MeshDial) -> Arc<Self> {
        Arc::new(Dialer {
            connect_timeout,
            mesh: Some(mesh),
        })
    }

    /// Whether connections to meshed pods go through tunnels.
    pub fn mtls(&self) -> bool {
        self.mesh.is_some()
    }

    /// The identity `workload`'s connections go out with; `None` without mTLS.
    pub fn identity_of(&self, workload: &Workload) -> Option<Arc<SpiffeId>> {
        let mesh = self.mesh.as_ref()?;
        Some(Arc::new(SpiffeId::of(&mesh.trust_domain, workload)))
    }

    /// A stream to `endpoint`, as `source` (the calling workload's identity, when it has one).
    pub async fn dial(
        &self,
        source: Option<&SpiffeId>,
        endpoint: SocketAddr,
        protocol: StreamProtocol,
    ) -> Result<UpstreamIo, DialError> {
        let (Some(mesh), Some(source)) = (&self.mesh, source) else {
            return self.direct(endpoint).await;
        };
        let state = mesh.state.borrow().clone();
        let Some(dst) = state.workload_by_ip(endpoint.ip()).filter(|w| w.enrolled) else {
            return self.direct(endpoint).await;
        };
        if dst.node == mesh.node {
            return mesh
                .inbound
                .handoff(source.clone(), endpoint, protocol)
                .map(UpstreamIo::Local)
                .map_err(|refusal| DialError::Refused(refusal.to_string()));
        }
        let node_ip = state
            .nodes
            .get(&dst.node)
            .and_then(|n| n.addresses.first())
            .ok_or_else(|| DialError::Connect(format!("node {} has no address", dst.node)))?;
        let tls = mesh
            .identities
            .client_config(source)
            .ok_or_else(|| DialError::Connect(format!("no certificate for {source} yet")))?;
        let key = PoolKey {
            source: source.clone(),
            dest: SpiffeId::of(source.trust_domain(), dst),
            node: SocketAddr::new(*node_ip, mesh.tunnel_port),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            StreamProtocol::HEADER,
            HeaderValue::from_static(protocol.as_str()),
        );
        let connect = mesh.pool.connect(&key, tls, endpoint, headers);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => Ok(UpstreamIo::Tunnel(stream)),
            Ok(Err(TunnelError::Refused(status))) => Err(DialError::Refused(format!(
                "{} answered {status} for {endpoint}",
                key.node
            ))),
            Ok(Err(e)) => Err(DialError::Connect(format!("tunnel to {}: {e}", key.node))),
            Err(_) => Err(DialError::Timeout),
        }
    }

    async fn direct(&self, endpoint: SocketAddr) -> Result<UpstreamIo, DialError> {
        match tokio::time::timeout(self.connect_timeout, TcpStream::connect(endpoint)).await {
            Ok(Ok(stream)) => {
                // Proxied protocols are often request/response: no Nagle delay on small writes.
                let _ = stream.set_nodelay(true);
                Ok(UpstreamIo::Tcp(stream))
            }
            Ok(Err(e)) => Err(DialError::Connect(format!("{endpoint}: {e}"))),
            Err(_) => Err(DialError::Timeout),
        }
    }
}

/// A stream to an endpoint, however it was reached.
pub enum UpstreamIo {
    Tcp(TcpStream),
    Tunnel(TunnelStream),
    Local(DuplexStream),
}

impl UpstreamIo {
    /// Which way the stream goes, for logs.
    pub fn via(&self) -> &'static str {
        match self {
            UpstreamIo::Tcp(_) => "direct",
            UpstreamIo::Tunnel(_) => "tunnel",
            UpstreamIo::Local(_) => "local",
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            UpstreamIo::Tcp($s) => $e,
            UpstreamIo::Tunnel($s) => $e,
            UpstreamIo::Local($s) => $e,
        }
    };
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Tcp(s) => s.is_write_vectored(),
            UpstreamIo::Tunnel(s) => s.is_write_vectored(),
            UpstreamIo::Local(s) => s.is_write_vectored(),
        }
    }
}

/// For hyper-util's pooling client: nothing to report about the connection.
impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}
