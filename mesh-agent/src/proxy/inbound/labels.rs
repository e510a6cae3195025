//! The labels of an inbound stream (the destination side's report). The caller is known by its
//! verified identity; its workload is named when exactly one workload of the calling node runs
//! under that identity (streams of workloads sharing a service account share a tunnel, so the
//! identity is all the stream can tell). The service is the one whose endpoints include the pod
//! on the addressed port.

use crate::state::{MeshState, Workload};
use crate::telemetry::{ConnLabels, Peer, Reporter, UNKNOWN};

use super::{Admitted, StreamProtocol};

pub(super) fn destination_labels(state: &MeshState, admitted: &Admitted) -> ConnLabels {
    let source = source_workload(state, admitted);
    ConnLabels {
        reporter: Reporter::Destination,
        source: Peer::of(source, Some(&admitted.source)),
        destination: Peer::of(Some(&admitted.dst), Some(&admitted.dst_id)),
        service: service_of(state, &admitted.dst, admitted.addr.port()),
        protocol: match admitted.protocol {
            StreamProtocol::Tcp => "tcp",
            StreamProtocol::Http1 | StreamProtocol::Http2 => "http",
        },
        mtls: true,
    }
}

fn source_workload<'s>(state: &'s MeshState, admitted: &Admitted) -> Option<&'s Workload> {
    let id = &admitted.source;
    let mut matching = state
        .enrolled_on(&admitted.calling_node)
        .filter(|w| w.key.namespace == id.namespace() && w.service_account == id.service_account());
    let first = matching.next()?;
    matching.next().is_none().then_some(&**first)
}

fn service_of(state: &MeshState, dst: &Workload, target_port: u16) -> String {
    state
        .services
        .values()
        .find(|s| {
            s.endpoints.contains(&dst.key) && s.ports.iter().any(|p| p.target_port == target_port)
        })
        .map_or_else(|| UNKNOWN.to_owned(), |s| s.display_name())
}
