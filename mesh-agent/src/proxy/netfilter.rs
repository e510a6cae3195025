//! The origin of a connection that iptables, not the datapath, redirected to the proxy
//! (`--capture iptables`, kept to measure what eBPF capture buys).
//!
//! A NAT rule in the node's namespace (`PREROUTING ... -j DNAT --to-destination <proxy>`) leaves
//! the original destination in conntrack, where `SO_ORIGINAL_DST` reads it. Netfilter knows
//! nothing of pods, so the source is named by the peer's address: a pod of this node (its cgroup
//! resolved) with that address. Any other peer, and a socket no rule redirected, is refused.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use mesh_common::Origin;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::origin::{Captured, OriginLookup, original_dst};
use crate::state::MeshState;

pub struct NetfilterOrigin {
    state: watch::Receiver<Arc<MeshState>>,
}

impl NetfilterOrigin {
    pub fn new(state: watch::Receiver<Arc<MeshState>>) -> Self {
        NetfilterOrigin { state }
    }
}

impl OriginLookup for NetfilterOrigin {
    fn lookup(&self, stream: &TcpStream) -> io::Result<Option<Captured>> {
        let local = stream.local_addr()?;
        let Some(dst) = original_dst(stream.as_fd(), local.is_ipv6())? else {
            return Ok(None);
        };
        // Conntrack also answers for a connection no rule rewrote: its original destination is
        // the proxy itself, which is no destination to forward to.
        if dst == local {
            return Ok(None);
        }
        let peer = stream.peer_addr()?;
        let state = self.state.borrow();
        let Some(pod_cgroup_id) = state.workload_by_ip(peer.ip()).and_then(|w| w.cgroup_id) else {
            return Ok(None);
        };
        Ok(Some(Captured {
            original_dst: dst,
            origin: Origin {
                pod_cgroup_id,
                ..Origin::default()
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a NAT rule there is no original destination, whoever the peer is.
    #[tokio::test]
    async fn unredirected_socket_has_no_origin() -> io::Result<()> {
        let (_tx, state) = watch::channel(Arc::new(MeshState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let _client = TcpStream::connect(listener.local_addr()?).await?;
        let (accepted, _) = listener.accept().await?;
        assert_eq!(NetfilterOrigin::new(state).lookup(&accepted)?, None);
        Ok(())
    }
}
