//! The admin API's answers, as types: the server serializes them, the inspect CLI
//! (`crate::cli::inspect`) reads them back to draw its tables. One definition keeps both ends
//! of the JSON in step; `-o json` prints the server's document unchanged.
//!
//! Field names are snake_case; addresses and times are strings (times RFC 3339, UTC).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::policy::{Action, PeerAuthMode};

/// `GET /status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub node: String,
    pub version: String,
    pub uptime_seconds: u64,
    pub ready: bool,
    pub mtls: bool,
    pub trust_domain: String,
    pub counts: Counts,
    pub datapath: DatapathView,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub namespaces: usize,
    pub nodes: usize,
    pub workloads: usize,
    /// Workloads scheduled on this node, and those of them enrolled in the mesh.
    pub workloads_here: usize,
    pub enrolled_here: usize,
    pub services: usize,
    pub routes: usize,
    pub authorization_policies: usize,
    pub peer_authentications: usize,
    /// Workload certificates this node holds.
    pub certificates: usize,
}

/// The kernel side: decision counters and map sizes, or why they could not be read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatapathView {
    pub counters: BTreeMap<String, u64>,
    pub maps: BTreeMap<String, usize>,
    /// Each program's kernel run statistics, by short name (`connect4`...).
    #[serde(default)]
    pub programs: BTreeMap<String, ProgramView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One datapath program's runs, from the kernel's BPF statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramView {
    /// The kernel's program id.
    pub id: u32,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// One entry of `GET /workloads`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadView {
    /// `namespace/name`.
    pub name: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
    pub service_account: String,
    pub enrolled: bool,
    /// The SPIFFE id its connections carry; `None` when not enrolled.
    pub identity: Option<String>,
    pub peer_authentication: PeerAuthMode,
    /// What the datapath has attached to the pod; `None` for pods of other nodes.
    pub capture: Option<CaptureView>,
    pub labels: BTreeMap<String, String>,
}

/// Whether a pod of this node is captured, from the programs attached to its cgroup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptureView {
    pub captured: bool,
    /// The pod's cgroup v2 directory, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<std::path::PathBuf>,
    /// Attach types found on the pod's cgroup (`cgroup_inet4_connect`, ...).
    pub programs: Vec<String>,
    /// Why the pod is not (fully) captured, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One entry of `GET /services`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    /// `namespace/name`.
    pub name: String,
    pub vips: Vec<IpAddr>,
    pub ports: Vec<PortView>,
    pub endpoints: Vec<EndpointRef>,
    /// `P2CEWMA`, `RoundRobin`, `LeastRequest` or `ConsistentHash`.
    pub load_balancer: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortView {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
    pub app_protocol: Option<String>,
    /// What the proxy makes of the port: `http`, `http2`, `tcp`, or `detect` (sniffed).
    pub declared: String,
    /// Route rules attached to the port.
    pub route_rules: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointRef {
    pub workload: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
    /// Enrolled in the mesh: reached through a tunnel (or handed over on its node).
    pub meshed: bool,
}

/// The route rules of one service port (`GET /routes` lists one per routed port).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteTableView {
    pub service: String,
    pub port: u16,
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: String,
    /// In route order (oldest route first), not precedence order.
    pub rules: Vec<RuleView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    /// `HTTPRoute shop/api`.
    pub route: String,
    /// Position in the route's `spec.rules`.
    pub index: usize,
    pub name: Option<String>,
    /// The rule's `matches` as written (absent: every request).
    pub matches: serde_json::Value,
    pub backends: Vec<BackendView>,
    pub request_timeout: Option<String>,
    pub backend_request_timeout: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendView {
    pub service: String,
    pub port: u16,
    pub weight: u32,
}

/// `GET /certs`: public facts only, never a key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertsView {
    pub mtls: bool,
    pub trust_domain: String,
    pub roots: Vec<RootView>,
    pub certificates: Vec<CertView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootView {
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    pub subject: String,
    pub not_after: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertView {
    pub id: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub issuer: String,
    /// Fingerprint of the bundle root the chain ends at; `None`: no current root signed it.
    pub root: Option<String>,
    /// This node's workloads that present it.
    pub workloads: Vec<String>,
}

/// `GET /policies`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoliciesView {
    pub authorization: Vec<AuthzPolicyView>,
    pub peer_authentication: Vec<PeerAuthView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuthzPolicyView {
    /// `namespace/name`.
    pub name: String,
    pub action: Action,
    pub rules: usize,
    /// Workloads it applies to.
    pub selects: Vec<String>,
    /// The spec as written.
    pub spec: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerAuthView {
    pub name: String,
    pub mode: PeerAuthMode,
    pub namespace_wide: bool,
    pub selects: Vec<String>,
}

/// `GET /policy/check`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckView {
    pub source: String,
    /// `None`: the source is not enrolled and has no identity (a plaintext peer).
    pub source_id: Option<String>,
    pub destination: SocketAddr,
    pub workload: String,
    pub request: RequestView,
    pub decision: DecisionView,
}

/// What was asked: `l4` (a connection) or `l7` (a request with a method and a path).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestView {
    pub layer: String,
    pub port: u16,
    pub method: Option<String>,
    pub path: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionView {
    pub allow: bool,
    /// The deciding policy, `namespace/name`; `None` when none decided.
    pub policy: Option<String>,
    /// `allowed by shop/readers`, `denied: no ALLOW policy matched`, ...
    pub reason: String,
    /// Every policy that applies to the destination workload, DENY ones first.
    pub applicable: Vec<String>,
}

/// `GET /explain`: one connection's path through the mesh, from the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainView {
    pub source: SourceView,
    pub destination: DestinationView,
    /// Whether this node's proxy speaks mTLS to other node proxies.
    pub mtls: bool,
    pub request: RequestView,
    pub endpoints: Vec<ExplainEndpoint>,
    /// Everything worth knowing that the fields do not say, one sentence each.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceView {
    pub workload: String,
    pub node: String,
    pub enrolled: bool,
    /// Whether the source is on the node of the agent answering.
    pub here: bool,
    /// Known for pods of this node only.
    pub capture: Option<CaptureView>,
    pub identity: Option<String>,
    /// The certificate this node holds for `identity`.
    pub certificate: Option<CertView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DestinationView {
    pub address: SocketAddr,
    /// `service` (a VIP and one of its TCP ports), `pod`, or `outside` (neither).
    pub kind: String,
    /// Set when the destination matches `--exclude-cidr` or `--exclude-port`: never captured.
    pub excluded: Option<String>,
    pub service: Option<ServicePortRef>,
    pub workload: Option<String>,
    /// The route rules of the service port; empty: requests go to the service itself.
    pub routes: Vec<RuleView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServicePortRef {
    pub name: String,
    pub port: u16,
    pub target_port: u16,
    /// `http`, `http2`, `tcp` or `detect`.
    pub protocol: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainEndpoint {
    /// `None`: not a pod of the mesh model.
    pub workload: Option<String>,
    /// The service it is an endpoint of (a route may send to several).
    pub service: Option<String>,
    pub address: SocketAddr,
    pub node: Option<String>,
    pub meshed: bool,
    /// `tunnel` (HBONE to its node), `local` (handed to this node's inbound side) or `direct`
    /// (plain TCP).
    pub via: String,
    pub peer_authentication: Option<PeerAuthMode>,
    /// The authorization decision for this source (`None`: not a workload, no policy can
    /// apply); `enforced` says whether a proxy applies it.
    pub authorization: Option<DecisionView>,
    pub enforced: bool,
    /// `allow`, `deny` or `drop` (refused in the destination's kernel: STRICT and plaintext).
    pub verdict: String,
    /// Whether the source's proxy would send the next connection or request of this
    /// connection here (its balancer's choice now; known on the source's node only).
    pub chosen: bool,
    /// What the balancer knows about the endpoint; `None` on the L4 path (a round robin that
    /// keeps no endpoint state) or on another node.
    pub health: Option<EndpointHealth>,
}

/// An endpoint as the source proxy's balancer sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointHealth {
    /// Requests sent and not answered yet.
    pub in_flight: u32,
    /// Peak-EWMA latency estimate, milliseconds (a default until the endpoint has answered).
    pub latency_ms: f64,
    /// Left of the current outlier ejection, milliseconds; `None`: eligible.
    pub ejected_for_ms: Option<u64>,
    /// Ejections that still lengthen the next one.
    pub times_ejected: u32,
}
