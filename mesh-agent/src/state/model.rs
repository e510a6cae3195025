//! The mesh as the agent sees it: namespaces, nodes, workloads and services.
//!
//! Sources (the local YAML file today, Kubernetes later) build a [`MeshState`]; everything that
//! decides anything (datapath sync, proxy, CLI) only reads it. A snapshot is immutable: a change
//! produces a new snapshot that is published whole, so readers never see half an update.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// Namespace label that enrolls a namespace's pods in the mesh.
pub const MESH_LABEL: &str = "weft.dev/mesh";
pub const MESH_ENABLED: &str = "enabled";
/// Pod label value (under [`MESH_LABEL`]) that opts a single pod out of an enrolled namespace.
pub const MESH_DISABLED: &str = "disabled";

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

impl Namespace {
    pub fn enrolled(&self) -> bool {
        self.labels.get(MESH_LABEL).map(String::as_str) == Some(MESH_ENABLED)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Addresses other node proxies reach this node at.
    pub addresses: Vec<IpAddr>,
}

/// `namespace/name`, the key users type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub key: WorkloadKey,
    /// Stable unique id (the pod UID in Kubernetes); names the datapath pins of this pod.
    pub uid: String,
    pub service_account: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
    pub labels: Labels,
    /// The pod's cgroup v2 directory, when known on this node.
    pub cgroup: Option<PathBuf>,
    /// Inode number of `cgroup`: the id the kernel programs report for the pod's sockets.
    /// Resolved by the agent for the workloads of its own node.
    pub cgroup_id: Option<u64>,
    /// Enrolled in the mesh: its namespace is labelled and the pod did not opt out.
    pub enrolled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: u16,
    pub protocol: Protocol,
    /// Kubernetes `appProtocol`, used by protocol detection.
    pub app_protocol: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub vips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub selector: Labels,
    /// Workloads the selector matches, resolved when the snapshot is built.
    pub endpoints: Vec<WorkloadKey>,
}

impl Service {
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A service port chosen by a connection's original destination, with where it may go.
#[derive(Clone, Debug)]
pub struct ServiceTarget {
    pub service: Arc<Service>,
    pub port: ServicePort,
    /// `endpoint IP : target port` of every endpoint, in a stable order.
    pub endpoints: Vec<SocketAddr>,
}

/// One immutable snapshot of the mesh.
#[derive(Clone, Debug, Default)]
pub struct MeshState {
    pub namespaces: BTreeMap<String, Namespace>,
    pub nodes: BTreeMap<String, Node>,
    pub workloads: BTreeMap<WorkloadKey, Arc<Workload>>,
    pub services: BTreeMap<(String, String), Arc<Service>>,
    /// Derived indexes, rebuilt by [`MeshState::index`].
    pub(crate) by_vip: HashMap<SocketAddr, ServiceTarget>,
    pub(crate) by_cgroup: HashMap<u64, Arc<Workload>>,
    pub(crate) by_ip: HashMap<IpAddr, Arc<Workload>>,
}

impl MeshState {
    /// Rebuilds the derived indexes; sources call it once after filling the maps.
    pub fn index(&mut self) {
        self.by_cgroup = self
            .workloads
            .values()
            .filter_map(|w| w.cgroup_id.map(|id| (id, w.clone())))
            .collect();
        self.by_ip = self
            .workloads
            .values()
            .flat_map(|w| w.ips.iter().map(move |ip| (*ip, w.clone())))
            .collect();
        self.by_vip = HashMap::new();
        for svc in self.services.values() {
            let endpoint_ips: Vec<IpAddr> = svc
                .endpoints
                .iter()
                .filter_map(|k| self.workloads.get(k))
                .flat_map(|w| w.ips.iter().copied())
                .collect();
            for port in svc.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
                let endpoints = endpoint_ips
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, port.target_port))
                    .collect::<Vec<_>>();
                for vip in &svc.vips {
                    let target = ServiceTarget {
                        service: svc.clone(),
                        port: port.clone(),
                        endpoints: endpoints.clone(),
                    };
                    self.by_vip.insert(SocketAddr::new(*vip, port.port), target);
                }
            }
        }
    }

    /// The service port a connection to `dst` (its original destination) addresses, if any.
    pub fn service_for(&self, dst: SocketAddr) -> Option<&ServiceTarget> {
        self.by_vip.get(&canonical(dst))
    }

    /// The workload whose pod cgroup has this id (as the kernel reported it).
    pub fn workload_by_cgroup(&self, cgroup_id: u64) -> Option<&Arc<Workload>> {
        self.by_cgroup.get(&cgroup_id)
    }

    /// The workload that owns this IP address, if any.
    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<&Arc<Workload>> {
        self.by_ip.get(&ip.to_canonical())
    }

    /// Enrolled workloads scheduled on `node`: what that node's datapath must capture.
    pub fn enrolled_on(&self, node: &str) -> impl Iterator<Item = &Arc<Workload>> {
        self.workloads
            .values()
            .filter(move |w| w.node == node && w.enrolled)
    }
}

/// IPv4-mapped IPv6 addresses (from AF_INET6 sockets) index like their IPv4 form.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
