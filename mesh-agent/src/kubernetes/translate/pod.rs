//! Pods: the workload (with its node and identity) and the named container ports that
//! services' named `targetPort`s resolve to.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{Record, Translated, ips, port};
use crate::state::{Protocol, Workload, WorkloadKey};

/// A pod of the mesh. `workload.enrolled` is decided when the snapshot is built (it depends on
/// the namespace); the rest is final.
#[derive(Clone, Debug, PartialEq)]
pub(in crate::kubernetes) struct PodRecord {
    pub workload: Arc<Workload>,
    /// `status.hostIPs`: where other node proxies reach the pod's node.
    pub host_ips: Vec<IpAddr>,
    pub ports: Vec<ContainerPort>,
}

/// A named container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::kubernetes) struct ContainerPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// Pods without an address yet, finished pods (`Succeeded`, `Failed`: their address may
/// already belong to another pod) and host-network pods (their address is the node's, so it
/// identifies no pod) are not workloads.
pub(in crate::kubernetes) fn pod(pod: Pod) -> Translated {
    let Pod {
        metadata,
        spec,
        status,
    } = pod;
    let status = status.unwrap_or_default();
    let spec = spec.unwrap_or_default();
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
        || spec.host_network == Some(true)
    {
        return Ok(None);
    }
    let pod_ips = match status.pod_ips.as_deref() {
        Some(list) if !list.is_empty() => ips("status.podIPs", list.iter().map(|p| p.ip.as_str()))?,
        _ => ips("status.podIP", status.pod_ip.iter().map(String::as_str))?,
    };
    if pod_ips.is_empty() {
        return Ok(None);
    }
    let host_ips = match status.host_ips.as_deref() {
        Some(list) if !list.is_empty() => {
            ips("status.hostIPs", list.iter().map(|h| h.ip.as_str()))?
        }
        _ => ips("status.hostIP", status.host_ip.iter().map(String::as_str))?,
    };
    let node = spec
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("spec.nodeName: missing on a pod that has an IP")?;
    let uid = metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or("metadata.uid: missing")?;
    let key = WorkloadKey {
        namespace: metadata.namespace.clone().unwrap_or_default(),
        name: metadata.name.clone().unwrap_or_default(),
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let workload = Workload {
        key,
        uid,
        service_account: spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
        node,
        ips: pod_ips,
        labels: metadata.labels.unwrap_or_default(),
        qos_class: status.qos_class,
        cgroup: None,
        cgroup_id: None,
        cgroup_unresolved: None,
        enrolled: false,
    };
    Ok(Some(Record::Pod(PodRecord {
        workload: Arc::new(workload),
        host_ips,
        ports: containers.flat_map(named_ports).collect(),
    })))
}

/// The named TCP and UDP ports of a container (SCTP has no place in the model).
fn named_ports(container: &Container) -> impl Iterator<Item = ContainerPort> + '_ {
    container.ports.iter().flatten().filter_map(|p| {
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some(_) => return None,
        };
        Some(ContainerPort {
            name: p.name.clone().filter(|n| !n.is_empty())?,
            port: port(p.container_port)?,
            protocol,
        })
    })
}
