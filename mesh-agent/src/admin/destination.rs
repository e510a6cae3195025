//! Where a connection to `dst` goes, from the model alone: which address a `host:port` names,
//! whether it is excluded from capture, whether it is a service port (and which route rules
//! and endpoints it leads to), a pod, or outside the mesh. Part of `explain`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, Uri};

use super::AdminError;
use super::authz::Http;
use super::lookup::declared_name;
use super::routes::rules_for;
use super::views::{RuleView, ServicePortRef};
use crate::config::AgentConfig;
use crate::state::{MeshState, ServiceTarget, Workload};

/// An address a connection may end at.
pub struct Candidate {
    pub addr: SocketAddr,
    pub workload: Option<Arc<Workload>>,
    /// The service it is an endpoint of.
    pub service: Option<String>,
}

/// The destination as the outbound proxy sees it.
pub struct Destination {
    pub addr: SocketAddr,
    /// `service`, `pod` or `outside`.
    pub kind: &'static str,
    pub service: Option<ServicePortRef>,
    pub workload: Option<String>,
    pub routes: Vec<RuleView>,
    pub candidates: Vec<Candidate>,
    /// Whether the proxy handles it as HTTP (per-request routing and authorization).
    pub http: bool,
    /// The service ports whose balancers choose among the candidates.
    pub balanced: Vec<((String, String), u16)>,
    pub notes: Vec<String>,
}

/// `10.96.0.20:80`, `[fd00::1]:80`, or a service name `api.shop[.svc[.cluster.local]]:80`.
pub fn resolve(state: &MeshState, text: &str) -> Result<SocketAddr, AdminError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let bad = || AdminError::BadRequest(format!("dst {text:?} is not host:port"));
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.strip_suffix(".cluster.local").unwrap_or(host);
    let host = host.strip_suffix(".svc").unwrap_or(host);
    let (name, namespace) = host.split_once('.').ok_or_else(|| {
        AdminError::BadRequest(format!(
            "dst {text:?}: write an address, or a service as name.namespace:port"
        ))
    })?;
    let svc = state
        .services
        .get(&(namespace.to_owned(), name.to_owned()))
        .ok_or_else(|| AdminError::NotFound(format!("no service {namespace}/{name}")))?;
    let vip = svc
        .vips
        .first()
        .ok_or_else(|| AdminError::NotFound(format!("service {namespace}/{name} has no VIP")))?;
    Ok(SocketAddr::new(*vip, port))
}

/// Why `dst` is never captured (`--exclude-cidr`, `--exclude-port`), if it is not.
pub fn excluded(cfg: &AgentConfig, dst: SocketAddr) -> Option<String> {
    if cfg.exclude_ports.contains(&dst.port()) {
        return Some(format!("--exclude-port {}", dst.port()));
    }
    cfg.exclude_cidrs
        .iter()
        .find(|c| in_cidr(dst.ip().to_canonical(), c.addr, c.prefix))
        .map(|c| format!("--exclude-cidr {c}"))
}

fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            // A shift by the full width (prefix 0) yields None: everything matches.
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The destination of a connection to `addr`, asking about `asked` when it is HTTP.
pub fn classify(state: &MeshState, addr: SocketAddr, asked: Option<&Http>) -> Destination {
    if let Some(target) = state.service_for(addr) {
        return service(state, addr, target, asked);
    }
    let mut notes = Vec::new();
    if let Some(svc) = state
        .services
        .values()
        .find(|s| s.vips.contains(&addr.ip()))
    {
        notes.push(format!(
            "{} is a VIP of {} but {} is not one of its TCP ports: the connection is passed to \
             the VIP as addressed",
            addr.ip(),
            svc.display_name(),
            addr.port()
        ));
    }
    let workload = state.workload_by_ip(addr.ip()).cloned();
    Destination {
        addr,
        kind: if workload.is_some() { "pod" } else { "outside" },
        service: None,
        workload: workload.as_ref().map(|w| w.key.to_string()),
        routes: Vec::new(),
        candidates: vec![Candidate {
            addr,
            workload,
            service: None,
        }],
        http: false,
        balanced: Vec::new(),
        notes,
    }
}

fn service(
    state: &MeshState,
    addr: SocketAddr,
    target: &ServiceTarget,
    asked: Option<&Http>,
) -> Destination {
    let key = (
        target.service.namespace.clone(),
        target.service.name.clone(),
    );
    let name = target.service.display_name();
    let protocol = declared_name(&target.port);
    let http = match protocol {
        "http" | "http2" => true,
        "detect" => asked.is_some(),
        _ => false,
    };
    let mut notes = Vec::new();
    if protocol == "detect" {
        notes.push(format!(
            "{name}:{} declares no protocol: the proxy sniffs the first bytes; this answer \
             assumes {}",
            target.port.port,
            if http {
                "HTTP (a method or path was given)"
            } else {
                "opaque TCP (give a method or path to assume HTTP)"
            }
        ));
    }
    let routes = rules_for(state, &key, target.port.port);
    let mut balanced = Vec::new();
    let candidates = if !http || routes.is_empty() {
        balanced.push((key.clone(), target.port.port));
        own_endpoints(state, target, &name)
    } else {
        routed_endpoints(
            state,
            &key,
            target.port.port,
            asked,
            &mut notes,
            &mut balanced,
        )
    };
    if candidates.is_empty() {
        notes.push(format!(
            "no endpoint to send to: connections to {name} are refused"
        ));
    }
    Destination {
        addr,
        kind: "service",
        service: Some(ServicePortRef {
            name,
            port: target.port.port,
            target_port: target.port.target_port,
            protocol: protocol.to_owned(),
        }),
        workload: None,
        routes,
        candidates,
        http,
        balanced,
        notes,
    }
}

fn own_endpoints(state: &MeshState, target: &ServiceTarget, name: &str) -> Vec<Candidate> {
    target
        .endpoints
        .iter()
        .map(|addr| Candidate {
            addr: *addr,
            workload: state.workload_by_ip(addr.ip()).cloned(),
            service: Some(name.to_owned()),
        })
        .collect()
}

/// The endpoints of the backends of the rule `asked` selects, or of every rule when nothing
/// was asked.
fn routed_endpoints(
    state: &MeshState,
    key: &(String, String),
    port: u16,
    asked: Option<&Http>,
    notes: &mut Vec<String>,
    balanced: &mut Vec<((String, String), u16)>,
) -> Vec<Candidate> {
    let Some(table) = state.routes_for(key, port) else {
        return Vec::new();
    };
    let rules: Vec<_> = match asked {
        None => table.rules().iter().collect(),
        Some(h) => {
            let uri: Uri = h.path.parse().unwrap_or_default();
            match table.select(&h.method, &uri, &HeaderMap::new()) {
                Some(sel) => {
                    notes.push(format!(
                        "{} {} matches rule {} of {}",
                        h.method, h.path, sel.rule.index, sel.rule.route
                    ));
                    vec![sel.rule]
                }
                None => {
                    notes.push(format!(
                        "no route rule matches {} {}: the proxy answers 404",
                        h.method, h.path
                    ));
                    Vec::new()
                }
            }
        }
    };
    let mut out: Vec<Candidate> = Vec::new();
    for backend in rules.iter().flat_map(|r| &r.backends) {
        let name = format!("{}/{}", backend.service.0, backend.service.1);
        let Some(t) = state.service_port(&backend.service, backend.port) else {
            notes.push(format!(
                "backend {name}:{} is not a TCP service port",
                backend.port
            ));
            continue;
        };
        let port = (backend.service.clone(), backend.port);
        if !balanced.contains(&port) {
            balanced.push(port);
        }
        for c in own_endpoints(state, t, &name) {
            if !out.iter().any(|o| o.addr == c.addr) {
                out.push(c);
            }
        }
    }
    out
}
