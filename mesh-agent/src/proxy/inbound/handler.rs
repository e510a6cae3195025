//! Streams arriving through the tunnel server: the caller's identity comes from its verified
//! certificate, what the stream carries from the CONNECT request, and admission decides.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tracing::debug;

use super::{Inbound, StreamProtocol};
use crate::identity;
use crate::tunnel::{ConnectHandler, ConnectRequest, Responder};

pub struct TunnelHandler {
    inbound: Arc<Inbound>,
}

impl TunnelHandler {
    pub fn new(inbound: Arc<Inbound>) -> Arc<Self> {
        Arc::new(TunnelHandler { inbound })
    }
}

impl ConnectHandler for TunnelHandler {
    fn handle(&self, request: ConnectRequest, respond: Responder) -> BoxFuture<'static, ()> {
        let inbound = self.inbound.clone();
        Box::pin(async move {
            let peer = request.peer.addr.ip();
            let source = match identity::peer_id(&request.peer.certs) {
                Ok(id) => id,
                Err(e) => {
                    // The TLS layer verified the chain: a certificate without a workload ID
                    // is a peer that is not a node proxy of this mesh.
                    debug!(peer = %peer, error = %e, "tunnel stream without a workload identity");
                    inbound.metrics.inbound_refused("no_identity");
                    return respond.refuse(http::StatusCode::FORBIDDEN);
                }
            };
            let protocol = StreamProtocol::parse(
                request
                    .headers
                    .get(StreamProtocol::HEADER)
                    .map(|v| v.as_bytes()),
            );
            match inbound.admit(&source, Some(peer), request.authority, protocol) {
                Ok(admitted) => match respond.accept() {
                    Ok(stream) => inbound.serve(stream, admitted).await,
                    Err(e) => debug!(peer = %peer, error = %e, "tunnel stream lost before use"),
                },
                Err(refusal) => {
                    inbound.refused(&source, Some(peer), request.authority, &refusal);
                    respond.refuse(refusal.status());
                }
            }
        })
    }
}
