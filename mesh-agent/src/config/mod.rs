//! The agent's own configuration: every `mesh-agent run` flag, its environment variable and its
//! default, in one struct.
//!
//! The mesh itself (workloads, services) is not configured here: it comes from the state file
//! named by `--config` and is read by `state`. What lives here is how this node's agent runs:
//! where the proxy listens, how the datapath is attached, timeouts and limits. The struct
//! serializes, so the effective configuration can be logged or printed whole.

mod cgroup;
mod values;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde::Serialize;

pub use cgroup::{is_cgroup_root, own_cgroup_dir};
pub(crate) use values::display;
pub use values::{Cidr, HumanDuration, parse_duration, trust_domain};
use values::{fraction, otlp_endpoint};

use crate::telemetry::AccessLogTarget;

/// Defaults, kept together so that flags, docs and tests agree.
pub mod defaults {
    pub const PROXY_IP: &str = "169.254.7.1";
    pub const OUTBOUND_PORT: &str = "15001";
    pub const TUNNEL_IP: &str = "0.0.0.0";
    pub const TUNNEL_PORT: &str = "15008";
    pub const BPFFS: &str = "/sys/fs/bpf";
    pub const CONNECT_TIMEOUT: &str = "5s";
    pub const IDLE_TIMEOUT: &str = "1h";
    pub const MAX_CONNECTIONS: &str = "16384";
    pub const METRICS_ADDR: &str = "127.0.0.1:15020";
    pub const READINESS_ADDR: &str = "127.0.0.1:15021";
    pub const ADMIN_ADDR: &str = "127.0.0.1:15000";
    pub const RELOAD_INTERVAL: &str = "1s";
    pub const DETECT_TIMEOUT: &str = "100ms";
    pub const HTTP_HEADER_READ_TIMEOUT: &str = "30s";
    pub const HTTP_MAX_HEADER_BYTES: &str = "65536";
    pub const HTTP_POOL_IDLE_TIMEOUT: &str = "90s";
    pub const HTTP_MAX_MIRRORS: &str = "128";
    pub const HTTP_BODY_IDLE_TIMEOUT: &str = "30s";
    pub const TRUST_DOMAIN: &str = "cluster.local";
    /// One request in a hundred without trace context starts a trace (Istio's default too).
    pub const TRACE_SAMPLING: &str = "0.01";
    /// How long in-flight connections may run on after a shutdown signal.
    pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
}

/// Configuration of `mesh-agent run`.
#[derive(clap::Args, Serialize, Clone, Debug)]
pub struct AgentConfig {
    /// Where the mesh state comes from: `file` (the YAML state file of `--config`, reloaded
    /// when it changes) or `kubernetes` (the cluster's API, through the in-cluster service
    /// account or the kubeconfig) [default: file].
    #[arg(long, value_enum, env = "WEFT_SOURCE")]
    pub source: Option<Source>,

    /// Mesh state file (YAML): namespaces, nodes, workloads, services. Required with
    /// `--source file`.
    #[arg(
        long = "config",
        value_name = "FILE",
        required_unless_present = "source"
    )]
    pub config: Option<PathBuf>,

    /// With `--source kubernetes`: the node's cgroup v2 mount, below which pod cgroups are
    /// found from their UID [default: this process's cgroup2 mount].
    #[arg(long = "cgroup-root", value_name = "DIR", env = "WEFT_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,

    /// Name of the node this agent serves (must appear in the state file).
    #[arg(long, env = "WEFT_NODE_NAME")]
    pub node: String,

    /// Node-local IPv4 address of the outbound proxy listener (a /32 on the node's `lo`).
    #[arg(long, default_value = defaults::PROXY_IP)]
    pub proxy_ip: Ipv4Addr,

    /// Node-local IPv6 address of the outbound proxy; without it native IPv6 is not captured.
    #[arg(long = "proxy-ip6")]
    pub proxy_ip6: Option<Ipv6Addr>,

    /// TCP port of the outbound listener that captured connections are redirected to.
    #[arg(long, default_value = defaults::OUTBOUND_PORT)]
    pub outbound_port: u16,

    /// Address the tunnel listener (mTLS from other node proxies) binds; other nodes reach it at
    /// the node's address from the mesh state.
    #[arg(long, default_value = defaults::TUNNEL_IP)]
    pub tunnel_ip: IpAddr,

    /// TCP port of the tunnel listener, the same on every node (HBONE's 15008).
    #[arg(long, default_value = defaults::TUNNEL_PORT)]
    pub tunnel_port: u16,

    /// Mount point of the BPF filesystem where the datapath pins its maps and links.
    #[arg(long, default_value = defaults::BPFFS)]
    pub bpffs: PathBuf,

    /// Cgroup v2 directory of the proxy process, where the getsockopt hook is attached
    /// [default: this process's own cgroup].
    #[arg(long = "proxy-cgroup", value_name = "DIR")]
    pub proxy_cgroup: Option<PathBuf>,

    /// While the proxy is not ready, refuse captured connects instead of letting them through.
    #[arg(long)]
    pub fail_closed: bool,

    /// On exit, leave the datapath attached and pinned for the next agent to adopt.
    #[arg(long)]
    pub keep_datapath: bool,

    /// Same-node acceleration: data between a pod and the node proxy, and between the proxy
    /// and a pod of this node, goes socket to socket (sockops + sk_msg) instead of through
    /// TCP/IP. Off by default: on Linux 6.18 a blocking `recv()` on an accelerated pod socket
    /// can fail with EAGAIN when woken without data (docs/architecture.md). Applies to
    /// connections opened from then on.
    #[arg(long, env = "WEFT_SOCKMAP", default_value_t = false, action = clap::ArgAction::Set)]
    pub sockmap: bool,

    /// How pods' connections reach the outbound proxy. `ebpf`: the datapath's programs on each
    /// enrolled pod's cgroup. `iptables`: netfilter NAT rules installed by someone else; no pod
    /// is attached, the destination comes from conntrack and the source pod is named by its
    /// address (weaker than the kernel's attestation: for comparison benchmarks only).
    #[arg(long, value_enum, default_value_t = Capture::Ebpf)]
    pub capture: Capture,

    /// Destination CIDR never captured (repeatable).
    #[arg(long = "exclude-cidr", value_name = "CIDR")]
    pub exclude_cidrs: Vec<Cidr>,

    /// Destination port never captured (repeatable).
    #[arg(long = "exclude-port", value_name = "PORT")]
    pub exclude_ports: Vec<u16>,

    /// Time allowed to connect to the upstream.
    #[arg(long, default_value = defaults::CONNECT_TIMEOUT)]
    pub connect_timeout: HumanDuration,

    /// A connection with no bytes in either direction for this long is closed.
    #[arg(long, default_value = defaults::IDLE_TIMEOUT)]
    pub idle_timeout: HumanDuration,

    /// Concurrent proxied connections; connections beyond it are accepted and closed at once.
    #[arg(long, default_value = defaults::MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Address of the metrics HTTP server (`GET /metrics`).
    #[arg(long, default_value = defaults::METRICS_ADDR)]
    pub metrics_addr: SocketAddr,

    /// Address of the readiness HTTP server (`GET /healthz/ready`: 200 once the datapath is
    /// attached and the proxy accepts, else 503).
    #[arg(long, default_value = defaults::READINESS_ADDR)]
    pub readiness_addr: SocketAddr,

    /// Address of the admin API that `mesh-agent status`, `explain` and the other inspect
    /// commands talk to. Must be a loopback address unless --admin-addr-unsafe is given.
    #[arg(long, default_value = defaults::ADMIN_ADDR)]
    pub admin_addr: SocketAddr,

    /// Allow --admin-addr on an address other than loopback. The admin API has no
    /// authentication and shows the whole mesh model (every workload, service, route and
    /// policy, and the certificates this node holds): anyone who can reach the port learns how
    /// the mesh is laid out and which pair of workloads a policy lets through. Pods reach the
    /// node's addresses, so only loopback keeps it to the node.
    #[arg(long)]
    pub admin_addr_unsafe: bool,

    /// Access log: one JSON line per HTTP request and per TCP connection: `off`, `stdout`, or
    /// a file path (appended to).
    #[arg(long, value_name = "off|stdout|FILE", default_value = "off")]
    #[serde(serialize_with = "crate::config::display")]
    pub access_log: AccessLogTarget,

    /// Fraction of requests and connections written to the access log, 0 to 1.
    #[arg(long, value_name = "FRACTION", default_value_t = 1.0, value_parser = fraction)]
    pub access_log_sample: f64,

    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How often the state file is checked for changes.
    #[arg(long, default_value = defaults::RELOAD_INTERVAL)]
    pub reload_interval: HumanDuration,

    /// Protocol detection window: a client of a service port with no declared protocol that
    /// sends nothing for this long is proxied as opaque TCP (server-speaks-first protocols).
    #[arg(long, default_value = defaults::DETECT_TIMEOUT)]
    pub detect_timeout: HumanDuration,

    /// An HTTP client must send a whole request header block within this time; on HTTP/1.1 it
    /// is also how long an idle keep-alive connection waits for its next request.
    #[arg(long, default_value = defaults::HTTP_HEADER_READ_TIMEOUT)]
    pub http_header_read_timeout: HumanDuration,

    /// Largest HTTP request header block accepted, in bytes (larger: 431, or the connection is
    /// closed).
    #[arg(long, default_value = defaults::HTTP_MAX_HEADER_BYTES, value_parser = clap::value_parser!(u32).range(8192..=16_777_216))]
    pub http_max_header_bytes: u32,

    /// How long an idle upstream HTTP/1.1 connection is kept for reuse.
    #[arg(long, default_value = defaults::HTTP_POOL_IDLE_TIMEOUT)]
    pub http_pool_idle_timeout: HumanDuration,

    /// A fixed-size HTTP/1 request body (with Content-Length) whose client sends nothing for
    /// this long is abandoned with 408 and the connection closed; 0 turns it off. Chunked,
    /// HTTP/2 and gRPC streams may pause freely.
    #[arg(long, default_value = defaults::HTTP_BODY_IDLE_TIMEOUT)]
    pub http_body_idle_timeout: HumanDuration,

    /// Mirrored request copies (RequestMirror) in flight at most; more are dropped.
    #[arg(long, default_value = defaults::HTTP_MAX_MIRRORS, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_mirrors: u32,

    /// OTLP/HTTP collector base URL (`http://host:port`); spans are posted as JSON to
    /// `<URL>/v1/traces`. Without it nothing is traced and trace headers pass untouched.
    #[arg(long, env = "WEFT_OTLP_ENDPOINT", value_name = "URL", value_parser = otlp_endpoint)]
    pub otlp_endpoint: Option<String>,

    /// Probability (0 to 1) that a request arriving without a `traceparent` starts a trace;
    /// requests with one follow its sampled flag. Used only with --otlp-endpoint.
    #[arg(long, default_value = defaults::TRACE_SAMPLING, value_parser = fraction)]
    pub trace_sampling: f64,

    /// Trust domain of workload identities: spiffe://<trust domain>/ns/<namespace>/sa/<account>.
    #[arg(long, env = "WEFT_TRUST_DOMAIN", default_value = defaults::TRUST_DOMAIN, value_parser = trust_domain)]
    pub trust_domain: String,

    /// Address (host:port) of the mesh CA that signs this node's workload certificates.
    /// Without it, node proxies do not speak mTLS to each other.
    #[arg(long, env = "WEFT_CA_ADDRESS", requires_all = ["ca_bundle", "ca_token"])]
    pub ca_address: Option<String>,

    /// PEM roots that verify the CA's serving certificate at first contact (the CA's
    /// `bundle.pem`).
    #[arg(long, env = "WEFT_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,

    /// This node's bootstrap token file, from `mesh-agent ca node-token`.
    #[arg(long, env = "WEFT_CA_TOKEN", value_name = "FILE")]
    pub ca_token: Option<PathBuf>,
}

impl AgentConfig {
    /// How to reach the mesh CA, when `--ca-address` is set (mTLS on); `None` means no mTLS.
    /// The state source, `file` unless `--source` says otherwise.
    pub fn source(&self) -> Source {
        self.source.unwrap_or(Source::File)
    }

    pub fn ca_client(&self) -> Option<crate::identity::CaClientConfig> {
        let (address, bundle, token) = (
            self.ca_address.clone()?,
            self.ca_bundle.clone()?,
            self.ca_token.clone()?,
        );
        Some(crate::identity::CaClientConfig {
            address,
            bundle,
            token,
            node: self.node.clone(),
            trust_domain: self.trust_domain.clone(),
        })
    }

    /// Refuses an admin address that is not loopback unless `--admin-addr-unsafe` says so.
    pub fn check_admin_addr(&self) -> Result<(), ConfigProblem> {
        if self.admin_addr.ip().to_canonical().is_loopback() || self.admin_addr_unsafe {
            return Ok(());
        }
        Err(ConfigProblem(format!(
            "--admin-addr {}: not a loopback address; the admin API is unauthenticated and \
             would be reachable from pods and other hosts (add --admin-addr-unsafe to bind it \
             anyway)",
            self.admin_addr
        )))
    }

    /// The proxy cgroup: the flag, or the cgroup v2 directory this process runs in.
    pub fn resolve_proxy_cgroup(&self) -> Result<PathBuf, ConfigProblem> {
        match &self.proxy_cgroup {
            Some(dir) => Ok(dir.clone()),
            None => own_cgroup_dir(),
        }
    }
}

/// The source of the mesh state (`--source`).
#[derive(clap::ValueEnum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    File,
    Kubernetes,
}

/// Who redirects pods' outbound connections to the proxy (`--capture`).
#[derive(clap::ValueEnum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Capture {
    Ebpf,
    Iptables,
}

#[derive(clap::ValueEnum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}
/// A problem with the agent's own configuration (as opposed to the mesh state file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigProblem(pub String);
