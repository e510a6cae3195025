//! The labels of an outbound connection (the source side's report): the calling workload and
//! its identity from the kernel's attestation, the destination from the endpoint chosen.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::identity::SpiffeId;
use crate::state::{MeshState, Workload};
use crate::telemetry::{ConnLabels, Peer, Reporter, Resolver, UNKNOWN};

use super::connection::Outcome;

/// The labels before the destination is known.
pub(super) fn source_labels(
    source: Option<&Workload>,
    id: Option<&SpiffeId>,
    service: &str,
) -> ConnLabels {
    ConnLabels {
        reporter: Reporter::Source,
        source: Peer::of(source, id),
        destination: Peer::unknown(),
        service: if service.is_empty() {
            UNKNOWN.to_owned()
        } else {
            service.to_owned()
        },
        protocol: "tcp",
        mtls: false,
    }
}

/// The workload at `endpoint`, and whether the connection to it goes under the caller's
/// identity (as `proxy::dial` decides: a meshed caller to an enrolled pod).
pub(super) fn destination(
    state: &MeshState,
    id: Option<&SpiffeId>,
    endpoint: SocketAddr,
) -> (Peer, bool) {
    let workload = state.workload_by_ip(endpoint.ip());
    let dst_id = match (id, workload) {
        (Some(id), Some(w)) if w.enrolled => Some(SpiffeId::of(id.trust_domain(), w)),
        _ => None,
    };
    let mtls = dst_id.is_some();
    (Peer::of(workload.map(|w| &**w), dst_id.as_ref()), mtls)
}

/// Names each HTTP request's endpoint from the state current when the request ends.
pub(super) fn resolver(
    state: watch::Receiver<Arc<MeshState>>,
    id: Option<Arc<SpiffeId>>,
) -> Box<Resolver> {
    Box::new(move |endpoint| {
        let snapshot = state.borrow().clone();
        destination(&snapshot, id.as_deref(), endpoint).0
    })
}

/// The response flag of how a connection ended.
pub(super) const fn flag(outcome: Outcome) -> &'static str {
    use crate::telemetry::flags;
    match outcome {
        Outcome::Ok | Outcome::Shutdown => flags::NONE,
        Outcome::ConnectError | Outcome::ConnectTimeout => flags::UF,
        Outcome::IdleTimeout => flags::SI,
        Outcome::IoError => flags::UC,
        Outcome::HttpError => flags::DPE,
        Outcome::CircuitOpen => flags::UO,
        Outcome::Denied => flags::UAEX,
    }
}
