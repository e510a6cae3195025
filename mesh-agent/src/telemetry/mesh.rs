//! Series of the mesh side of the node proxy: tunnel connections served and refused, inbound
//! streams refused at admission.

use std::net::SocketAddr;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tracing::{debug, warn};

use crate::tunnel::{Rejection, ServerEvents};

/// Why an inbound stream was refused (see `proxy::inbound::Refusal`).
pub const INBOUND_REFUSALS: [&str; 5] = [
    "not_here",
    "wrong_peer",
    "unknown_node",
    "denied",
    "no_identity",
];

pub struct MeshMetrics {
    inbound_refused: IntCounterVec,
    tunnel_rejected: IntCounterVec,
    tunnel_open: IntGauge,
}

impl MeshMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let inbound_refused = IntCounterVec::new(
            Opts::new(
                "weft_inbound_refused_streams_total",
                "Streams to this node's pods refused at admission, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(inbound_refused.clone()))?;
        for reason in INBOUND_REFUSALS {
            inbound_refused.with_label_values(&[reason]);
        }
        let tunnel_rejected = IntCounterVec::new(
            Opts::new(
                "weft_tunnel_rejected_connections_total",
                "Connections to the tunnel port closed before serving, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(tunnel_rejected.clone()))?;
        for why in Rejection::ALL {
            tunnel_rejected.with_label_values(&[why.as_str()]);
        }
        let tunnel_open = IntGauge::new(
            "weft_tunnel_server_connections",
            "Tunnel connections from other node proxies being served.",
        )?;
        registry.register(Box::new(tunnel_open.clone()))?;
        Ok(MeshMetrics {
            inbound_refused,
            tunnel_rejected,
            tunnel_open,
        })
    }

    pub fn inbound_refused(&self, reason: &str) {
        self.inbound_refused.with_label_values(&[reason]).inc();
    }
}

impl ServerEvents for MeshMetrics {
    fn rejected(&self, peer: SocketAddr, why: Rejection, detail: &str) {
        self.tunnel_rejected
            .with_label_values(&[why.as_str()])
            .inc();
        match why {
            // Probes and port scans look like this; not worth a warning each.
            Rejection::Tls | Rejection::HandshakeTimeout => {
                debug!(peer = %peer, reason = why.as_str(), detail, "tunnel connection refused");
            }
            _ => warn!(peer = %peer, reason = why.as_str(), detail, "tunnel connection refused"),
        }
    }

    fn opened(&self, _: SocketAddr) {
        self.tunnel_open.inc();
    }

    fn closed(&self, _: SocketAddr) {
        self.tunnel_open.dec();
    }
}
