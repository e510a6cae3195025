//! The security questions the node proxy asks of a snapshot, answered by the compiled
//! policies it carries ([`crate::policy::PolicyIndex`]).

use super::{MeshState, Workload};
use crate::policy::{Decision, PeerAuthMode, Request};

impl MeshState {
    /// Whether `req` (a connection when it has no HTTP attributes, else a request) may reach
    /// `dst`, and which policy said so.
    pub fn authorize(&self, dst: &Workload, req: &Request) -> Decision {
        self.policies.authorize(dst, req)
    }

    /// Whether `w` accepts plaintext from other pods (PERMISSIVE, the default) or only mTLS.
    pub fn peer_authentication(&self, w: &Workload) -> PeerAuthMode {
        self.policies.peer_authentication(w)
    }
}
