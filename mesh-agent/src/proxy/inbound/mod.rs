//! The inbound side: streams for the pods of this node, arriving through HBONE tunnels from
//! other node proxies (port 15008, `tunnel`) or handed over in-process by this node's outbound
//! side.
//!
//! Each stream is admitted once ([`Inbound::admit`]): the destination must be an enrolled pod
//! of this node, and the caller's identity one the state model places on the calling node. A
//! stream then goes to the pod either as opaque TCP (`tcp.rs`, authorized once, at admission) or
//! as HTTP (`http.rs`, authorized per request, the caller's identity passed to the application in
//! `x-forwarded-client-cert`). `handler.rs` connects the tunnel server to this.

mod handler;
mod http;
mod labels;
mod pod;
mod tcp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::watch;
use tracing::{info, warn};

pub use handler::TunnelHandler;

use crate::identity::SpiffeId;
use crate::policy::{self, Layer};
use crate::proxy::HttpConfig;
use crate::state::{MeshState, Workload};
use crate::telemetry::{ConnRecorder, Metrics};

/// Buffer of an in-process (same-node) stream, each way.
const LOCAL_BUFFER: usize = 64 * 1024;

/// What a stream carries, as the calling proxy detected it. Sent in the CONNECT request's
/// [`StreamProtocol::HEADER`]; a missing or unknown value means opaque TCP, the stricter reading
/// for authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamProtocol {
    Tcp,
    Http1,
    Http2,
}

impl StreamProtocol {
    pub const HEADER: &'static str = "x-weft-app-protocol";

    pub const fn as_str(self) -> &'static str {
        match self {
            StreamProtocol::Tcp => "tcp",
            StreamProtocol::Http1 => "http1",
            StreamProtocol::Http2 => "http2",
        }
    }

    pub fn parse(value: Option<&[u8]>) -> Self {
        match value {
            Some(b"http1") => StreamProtocol::Http1,
            Some(b"http2") => StreamProtocol::Http2,
            _ => StreamProtocol::Tcp,
        }
    }
}

/// Why a stream was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} is not an enrolled pod of this node")]
    NotHere(SocketAddr),
    #[error("{id} is not the identity of a workload on the calling node {node}")]
    WrongPeer { id: String, node: String },
    #[error("the calling address {0} is not a node of the mesh")]
    UnknownNode(IpAddr),
    #[error("denied by {0}")]
    Denied(Arc<str>),
}

impl Refusal {
    pub fn status(&self) -> ::http::StatusCode {
        match self {
            Refusal::NotHere(_) => ::http::StatusCode::NOT_FOUND,
            _ => ::http::StatusCode::FORBIDDEN,
        }
    }

    const fn reason(&self) -> &'static str {
        match self {
            Refusal::NotHere(_) => "not_here",
            Refusal::WrongPeer { .. } => "wrong_peer",
            Refusal::UnknownNode(_) => "unknown_node",
            Refusal::Denied(_) => "denied",
        }
    }
}

/// A stream let in: for whom, from whom, carrying what.
pub struct Admitted {
    pub dst: Arc<Workload>,
    pub dst_id: SpiffeId,
    pub source: SpiffeId,
    pub addr: SocketAddr,
    pub protocol: StreamProtocol,
    /// The node the stream comes from (this one for same-node streams).
    pub calling_node: String,
}

#[derive(Clone, Copy, Debug)]
pub struct InboundConfig {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub http: HttpConfig,
}

pub struct Inbound {
    node: String,
    trust_domain: String,
    state: watch::Receiver<Arc<MeshState>>,
    metrics: Arc<Metrics>,
    config: InboundConfig,
    /// Turned true when the shutdown grace period is over: streams still open end.
    abort: watch::Receiver<bool>,
}

impl Inbound {
    pub fn new(
        node: &str,
        trust_domain: &str,
        state: watch::Receiver<Arc<MeshState>>,
        metrics: Arc<Metrics>,
        config: InboundConfig,
        abort: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Inbound {
            node: node.to_owned(),
            trust_domain: trust_domain.to_owned(),
            state,
            metrics,
            config,
            abort,
        })
    }

    /// Admission of a stream from `source` calling from `peer_node` (`None`: this node) to
    /// `addr`. Opaque TCP is authorized here; HTTP per request.
    pub fn admit(
        &self,
        source: &SpiffeId,
        peer: Option<IpAddr>,
        addr: SocketAddr,
        protocol: StreamProtocol,
    ) -> Result<Admitted, Refusal> {
        let state = self.state.borrow().clone();
        let dst = state
            .workload_by_ip(addr.ip())
            .filter(|w| w.enrolled && w.node == self.node)
            .ok_or(Refusal::NotHere(addr))?
            .clone();
        let calling_node = match peer {
            None => self.node.clone(),
            Some(ip) => state
                .node_at(ip)
                .ok_or(Refusal::UnknownNode(ip))?
                .to_owned(),
        };
        let hosted =
            state.hosts_identity(&calling_node, source.namespace(), source.service_account());
        if source.trust_domain() != self.trust_domain || !hosted {
            return Err(Refusal::WrongPeer {
                id: source.to_string(),
                node: calling_node,
            });
        }
        if protocol == StreamProtocol::Tcp {
            let request = policy::Request {
                source: policy::Source { id: Some(source) },
                port: addr.port(),
                http: None,
            };
            let decision = state.authorize(&dst, &request);
            self.metrics.authz().decision(&decision, Layer::L4);
            if !decision.allow {
                return Err(Refusal::Denied(decision.policy));
            }
        }
        let dst_id = SpiffeId::of(&self.trust_domain, &dst);
        Ok(Admitted {
            dst,
            dst_id,
            source: source.clone(),
            addr,
            protocol,
            calling_node,
        })
    }

    /// Same-node streams: admitted here, served by a task, the caller's end returned.
    pub fn handoff(
        self: &Arc<Self>,
        source: SpiffeId,
        addr: SocketAddr,
        protocol: StreamProtocol,
    ) -> Result<DuplexStream, Refusal> {
        let admitted = self
            .admit(&source, None, addr, protocol)
            .inspect_err(|refusal| {
                self.refused(&source, None, addr, refusal);
            })?;
        let (ours, theirs) = tokio::io::duplex(LOCAL_BUFFER);
        tokio::spawn(self.clone().serve(ours, admitted));
        Ok(theirs)
    }

    /// Serves an admitted stream until it ends.
    pub async fn serve<S>(self: Arc<Self>, stream: S, admitted: Admitted)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match admitted.protocol {
            StreamProtocol::Tcp => self.serve_tcp(stream, admitted).await,
            StreamProtocol::Http1 | StreamProtocol::Http2 => {
                self.serve_http(stream, Arc::new(admitted)).await;
            }
        }
    }

    fn refused(&self, source: &SpiffeId, peer: Option<IpAddr>, addr: SocketAddr, why: &Refusal) {
        self.metrics.inbound_refused(why.reason());
        warn!(
            source = %source,
            peer = %peer.map(|p| p.to_string()).unwrap_or_else(|| "local".into()),
            dst = %addr,
            reason = %why,
            "inbound stream refused"
        );
    }

    /// The telemetry of an admitted stream.
    fn recorder(&self, admitted: &Admitted) -> Arc<ConnRecorder> {
        let state = self.state.borrow().clone();
        self.metrics
            .connection(labels::destination_labels(&state, admitted))
    }

    /// Resolves when the shutdown grace period is over.
    async fn aborted(&self) {
        let mut abort = self.abort.clone();
        if abort.wait_for(|aborted| *aborted).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    fn log_stream(&self, admitted: &Admitted, outcome: &str, sent: u64, received: u64) {
        info!(
            source = %admitted.source,
            dst_workload = %admitted.dst.key,
            dst = %admitted.addr,
            protocol = admitted.protocol.as_str(),
            outcome,
            bytes_sent = sent,
            bytes_received = received,
            "inbound stream"
        );
    }
}

#[cfg(test)]
mod tests;
