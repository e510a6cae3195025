//! The mesh as the agent sees it: namespaces, nodes, workloads, services and the routes attached
//! to services.
//!
//! Sources (the local YAML file today, Kubernetes later) build a [`MeshState`]; everything that
//! decides anything (datapath sync, proxy, CLI) only reads it. A snapshot is immutable: a change
//! produces a new snapshot that is published whole, so readers never see half an update.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::policy::{AuthorizationPolicySpec, Named, PeerAuthenticationSpec, PolicyIndex};
use crate::routing::{RouteIndex, RouteObject};

mod authz;
mod traffic;
pub use traffic::*;

/// Namespace label that enrolls a namespace's pods in the mesh.
pub const MESH_LABEL: &str = "weft.dev/mesh";
pub const MESH_ENABLED: &str = "enabled";
/// Pod label value (under [`MESH_LABEL`]) that opts a single pod out of an enrolled namespace.
pub const MESH_DISABLED: &str = "disabled";

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

impl Namespace {
    pub fn enrolled(&self) -> bool {
        self.labels.get(MESH_LABEL).map(String::as_str) == Some(MESH_ENABLED)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

/// Serialized as `namespace/name`, the form users type and logs print.
impl Serialize for WorkloadKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub key: WorkloadKey,
    /// Stable unique id (the pod UID in Kubernetes); names the datapath pins of this pod.
    pub uid: String,
    pub service_account: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
    pub labels: Labels,
    /// The pod's QoS class in Kubernetes (`Guaranteed`, `Burstable`, `BestEffort`): with `uid`,
    /// it names the kubelet's cgroup of the pod. `None` in local mode, where `cgroup` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
    /// The pod's cgroup v2 directory, when known on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// Inode number of `cgroup`: the id the kernel programs report for the pod's sockets.
    /// Resolved by the agent for the workloads of its own node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    /// Why the cgroup of this node's pod could not be found (Kubernetes mode): the pod is not
    /// captured while it is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_unresolved: Option<crate::discovery::Unresolved>,
    /// Enrolled in the mesh: its namespace is labelled and the pod did not opt out.
    pub enrolled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The Kubernetes spelling: `TCP`, `UDP`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    pub target_port: u16,
    pub protocol: Protocol,
    /// Kubernetes `appProtocol`, used by protocol detection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub vips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub selector: Labels,
    /// Workloads the selector matches, resolved when the snapshot is built.
    pub endpoints: Vec<WorkloadKey>,
    /// How clients balance, limit and retry their requests to this service.
    pub traffic_policy: TrafficPolicy,
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
///
/// Serializes as lists shaped like the state file (`namespaces`, `nodes`, `workloads`,
/// `services`, `routes`, `authorizationPolicies`, `peerAuthentications`), with the resolved
/// fields (`endpoints`, `cgroupId`, `enrolled`) and the traffic-policy defaults filled in.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MeshState {
    #[serde(serialize_with = "map_values")]
    pub namespaces: BTreeMap<String, Namespace>,
    #[serde(serialize_with = "map_values")]
    pub nodes: BTreeMap<String, Node>,
    #[serde(serialize_with = "arc_map_values")]
    pub workloads: BTreeMap<WorkloadKey, Arc<Workload>>,
    #[serde(serialize_with = "arc_map_values")]
    pub services: BTreeMap<(String, String), Arc<Service>>,
    /// HTTPRoutes and GRPCRoutes attached to services, as the source wrote them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteObject>,
    /// `routes` compiled per service port; built by the source together with `routes`.
    #[serde(skip)]
    pub(crate) route_tables: RouteIndex,
    /// Authorization policies and peer authentications, as the source wrote them.
    #[serde(
        rename = "authorizationPolicies",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub authorization_policies: Vec<Named<AuthorizationPolicySpec>>,
    #[serde(rename = "peerAuthentications", skip_serializing_if = "Vec::is_empty")]
    pub peer_authentications: Vec<Named<PeerAuthenticationSpec>>,
    /// Both compiled; built by the source together with them.
    #[serde(skip)]
    pub(crate) policies: PolicyIndex,
    /// Derived indexes, rebuilt by [`MeshState::index`].
    #[serde(skip)]
    pub(crate) by_vip: HashMap<SocketAddr, ServiceTarget>,
    #[serde(skip)]
    pub(crate) by_service_port: HashMap<(String, String), Vec<ServiceTarget>>,
    #[serde(skip)]
    pub(crate) by_cgroup: HashMap<u64, Arc<Workload>>,
    #[serde(skip)]
    pub(crate) by_ip: HashMap<IpAddr, Arc<Workload>>,
    /// Node name by node address: which node a tunnel connection comes from.
    #[serde(skip)]
    pub(crate) node_by_ip: HashMap<IpAddr, String>,
    /// `(node, namespace, service account)` of every enrolled workload: the identities each
    /// node may present.
    #[serde(skip)]
    pub(crate) identities_on: HashSet<(String, String, String)>,
    /// When the source saw the first change this snapshot carries: the start of the time a
    /// change takes to reach the datapath (`weft_state_change_to_datapath_seconds`).
    #[serde(skip)]
    pub changed_at: Option<std::time::Instant>,
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
        self.node_by_ip = self
            .nodes
            .values()
            .flat_map(|n| {
                n.addresses
                    .iter()
                    .map(|ip| (ip.to_canonical(), n.name.clone()))
            })
            .collect();
        self.identities_on = self
            .workloads
            .values()
            .filter(|w| w.enrolled)
            .map(|w| {
                let (ns, sa) = (w.key.namespace.clone(), w.service_account.clone());
                (w.node.clone(), ns, sa)
            })
            .collect();
        self.by_vip = HashMap::new();
        self.by_service_port = HashMap::new();
        for svc in self.services.values() {
            let endpoint_ips: Vec<IpAddr> = svc
                .endpoints
                .iter()
                .filter_map(|k| self.workloads.get(k))
                .flat_map(|w| w.ips.iter().copied())
                .collect();
            let mut targets = Vec::new();
            for port in svc.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
                let endpoints = endpoint_ips
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, port.target_port))
                    .collect::<Vec<_>>();
                let target = ServiceTarget {
                    service: svc.clone(),
                    port: port.clone(),
                    endpoints,
                };
                for vip in &svc.vips {
                    self.by_vip
                        .insert(SocketAddr::new(*vip, port.port), target.clone());
                }
                targets.push(target);
            }
            let key = (svc.namespace.clone(), svc.name.clone());
            self.by_service_port.insert(key, targets);
        }
    }

    /// The service port a connection to `dst` (its original destination) addresses, if any.
    pub fn service_for(&self, dst: SocketAddr) -> Option<&ServiceTarget> {
        self.by_vip.get(&canonical(dst))
    }

    /// A TCP port of a service, by the service's `(namespace, name)` and the port number (not
    /// the target port): where a route's backend reference sends requests.
    pub fn service_port(&self, service: &(String, String), port: u16) -> Option<&ServiceTarget> {
        self.by_service_port
            .get(service)?
            .iter()
            .find(|t| t.port.port == port)
    }

    /// The workload whose pod cgroup has this id (as the kernel reported it).
    pub fn workload_by_cgroup(&self, cgroup_id: u64) -> Option<&Arc<Workload>> {
        self.by_cgroup.get(&cgroup_id)
    }

    /// The workload that owns this IP address, if any.
    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<&Arc<Workload>> {
        self.by_ip.get(&ip.to_canonical())
    }

    /// The node that has address `ip`.
    pub fn node_at(&self, ip: IpAddr) -> Option<&str> {
        self.node_by_ip.get(&ip.to_canonical()).map(String::as_str)
    }

    /// Whether an enrolled workload running as `namespace`/`service_account` is scheduled on
    /// `node`: a node proxy may hold (and present) only such identities.
    pub fn hosts_identity(&self, node: &str, namespace: &str, service_account: &str) -> bool {
        // Three owned strings per lookup keep the set simple; this runs once per stream.
        self.identities_on.contains(&(
            node.to_owned(),
            namespace.to_owned(),
            service_account.to_owned(),
        ))
    }

    /// Enrolled workloads scheduled on `node`: what that node's datapath must capture.
    pub fn enrolled_on(&self, node: &str) -> impl Iterator<Item = &Arc<Workload>> {
        self.workloads
            .values()
            .filter(move |w| w.node == node && w.enrolled)
    }
}

/// A map as the sequence of its values: the keys repeat fields of the values, and tuple keys
/// have no JSON form.
fn map_values<S, K, V>(map: &BTreeMap<K, V>, serializer: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    V: Serialize,
{
    serializer.collect_seq(map.values())
}

/// [`map_values`] for shared values (serde's `Arc` support is behind a feature we do not need).
fn arc_map_values<S, K, V>(map: &BTreeMap<K, Arc<V>>, serializer: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    V: Serialize,
{
    serializer.collect_seq(map.values().map(|v| &**v))
}

/// IPv4-mapped IPv6 addresses (from AF_INET6 sockets) index like their IPv4 form.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
