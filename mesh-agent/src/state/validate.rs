//! Checks a parsed state file and builds the snapshot from it in the same pass.
//!
//! Every problem is collected (not just the first), each as `<field path>: <reason>`, so one
//! edit-and-reload cycle shows everything that is wrong. Names follow Kubernetes: namespaces and
//! services are DNS-1123 labels, pods and nodes DNS-1123 subdomains, so that the Kubernetes source
//! can build the same model from the same names. Traffic policies are checked in `traffic`;
//! routes and policies are read by [`super::routes`] and [`super::policies`], and compiled (and
//! checked) by [`super::assemble`], the step every source ends with.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::assemble::{Parts, assemble};
use super::file::{
    MeshFile, NamespaceSpec, NodeSpec, ServicePortSpec, ServiceSpec, WorkloadSpec, push_key,
};
use super::model::{
    Labels, MESH_DISABLED, MESH_ENABLED, MESH_LABEL, MeshState, Namespace, Node, Protocol, Service,
    ServicePort, Workload, WorkloadKey,
};
use super::names::{dns_label, dns_subdomain};
use super::{policies, routes};

/// Builds the snapshot (endpoints resolved, indexes built) or returns every problem found.
pub(super) fn build(file: &MeshFile) -> Result<MeshState, Vec<String>> {
    let mut b = Builder::default();
    for (i, ns) in file.namespaces.iter().flatten().enumerate() {
        b.namespace(i, ns);
    }
    for (i, node) in file.nodes.iter().flatten().enumerate() {
        b.node(i, node);
    }
    for (i, w) in file.workloads.iter().flatten().enumerate() {
        b.workload(i, w);
    }
    for (i, svc) in file.services.iter().flatten().enumerate() {
        b.service(i, svc);
    }
    let route_values = file.routes.as_deref().unwrap_or_default();
    let routes = routes::decode_all(route_values, &b.state.namespaces, &mut b.problems);
    let policies = policies::decode_all(file, &b.state.namespaces);
    let mut problems = b.problems;
    let mut state = b.state;
    resolve_endpoints(&mut state);
    let parts = Parts {
        namespaces: state.namespaces,
        nodes: state.nodes,
        workloads: state.workloads,
        services: state.services,
        routes: routes.objects,
        authorization_policies: policies.authorization.objects,
        peer_authentications: policies.peer.objects,
    };
    let (state, rejected) = assemble(parts);
    routes::report(rejected.routes, &routes.positions, &mut problems);
    let positions = (
        policies.authorization.positions.as_slice(),
        policies.peer.positions.as_slice(),
    );
    policies::report(policies.found, positions, rejected.policies, &mut problems);
    if problems.is_empty() {
        Ok(state)
    } else {
        Err(problems)
    }
}

/// Endpoints of a service: the workloads of its namespace whose labels include its selector.
/// An empty selector selects nothing (as in Kubernetes, where such services are managed by hand).
fn resolve_endpoints(state: &mut MeshState) {
    // Workloads by (namespace, label, value), in key order: a service's candidates are the
    // workloads carrying its selector's rarest label, so matching costs what the service
    // selects rather than services × workloads.
    let mut by_label: HashMap<(&str, &str, &str), Vec<&Workload>> = HashMap::new();
    for w in state.workloads.values() {
        for (k, v) in &w.labels {
            let entry = by_label.entry((w.key.namespace.as_str(), k.as_str(), v.as_str()));
            entry.or_default().push(w);
        }
    }
    for svc in state.services.values_mut() {
        let candidates = svc
            .selector
            .iter()
            .map(|(k, v)| by_label.get(&(svc.namespace.as_str(), k.as_str(), v.as_str())))
            .min_by_key(|c| c.map_or(0, Vec::len));
        // No selector, or a selector label nobody carries: no endpoints.
        let Some(Some(candidates)) = candidates else {
            Arc::make_mut(svc).endpoints = Default::default();
            continue;
        };
        let endpoints = candidates
            .iter()
            .filter(|w| svc.selector.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
            .map(|w| w.key.clone())
            .collect();
        Arc::make_mut(svc).endpoints = endpoints;
    }
}

#[derive(Default)]
struct Builder {
    state: MeshState,
    problems: Vec<String>,
    /// Where each unique thing was first declared, to name both sides of a conflict.
    uids: HashMap<String, String>,
    ips: HashMap<IpAddr, String>,
    cgroups: HashMap<(String, PathBuf), String>,
    listeners: HashMap<(IpAddr, u16, Protocol), String>,
}

impl Builder {
    fn problem(&mut self, at: impl AsRef<str>, reason: impl AsRef<str>) {
        self.problems
            .push(format!("{}: {}", at.as_ref(), reason.as_ref()));
    }

    fn namespace(&mut self, i: usize, spec: &NamespaceSpec) {
        let at = format!("namespaces[{i}]");
        self.name(&format!("{at}.name"), &spec.name, dns_label);
        let labels = spec.labels.clone().unwrap_or_default();
        self.mesh_label(&at, &labels, &[MESH_ENABLED, MESH_DISABLED]);
        if self.state.namespaces.contains_key(&spec.name) {
            self.problem(
                format!("{at}.name"),
                format!("namespace `{}` is declared twice", spec.name),
            );
            return;
        }
        let ns = Namespace {
            name: spec.name.clone(),
            labels,
        };
        self.state.namespaces.insert(spec.name.clone(), ns);
    }

    fn node(&mut self, i: usize, spec: &NodeSpec) {
        let at = format!("nodes[{i}]");
        self.name(&format!("{at}.name"), &spec.name, dns_subdomain);
        let addresses = self.ips(&format!("{at}.addresses"), spec.addresses.as_deref());
        if self.state.nodes.contains_key(&spec.name) {
            self.problem(
                format!("{at}.name"),
                format!("node `{}` is declared twice", spec.name),
            );
            return;
        }
        let node = Node {
            name: spec.name.clone(),
            addresses,
        };
        self.state.nodes.insert(spec.name.clone(), node);
    }

    fn workload(&mut self, i: usize, spec: &WorkloadSpec) {
        let at = format!("workloads[{i}]");
        self.name(&format!("{at}.name"), &spec.name, dns_subdomain);
        self.declared_namespace(&at, &spec.namespace);
        if !self.state.nodes.contains_key(&spec.node) {
            let reason = format!("node `{}` is not declared under `nodes`", spec.node);
            self.problem(format!("{at}.node"), reason);
        }
        let key = WorkloadKey {
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
        };
        let uid = spec
            .uid
            .clone()
            .unwrap_or_else(|| format!("{}.{}", key.namespace, key.name));
        self.uid(&at, &uid);
        let service_account = spec
            .service_account
            .clone()
            .unwrap_or_else(|| "default".into());
        self.name(
            &format!("{at}.serviceAccount"),
            &service_account,
            dns_subdomain,
        );
        let ips = self.ips(&format!("{at}.ips"), spec.ips.as_deref());
        for (j, ip) in ips.iter().enumerate() {
            if let Some(owner) = self.ips.get(ip) {
                let reason = format!("{ip} is already the address of {owner}");
                self.problem(format!("{at}.ips[{j}]"), reason);
            } else {
                self.ips.insert(*ip, format!("{at} ({key})"));
            }
        }
        let labels = spec.labels.clone().unwrap_or_default();
        self.mesh_label(&at, &labels, &[MESH_DISABLED]);
        let cgroup = spec
            .cgroup
            .as_deref()
            .map(|c| self.cgroup(&at, &key, &spec.node, c));
        if self.state.workloads.contains_key(&key) {
            self.problem(
                format!("{at}.name"),
                format!("workload `{key}` is declared twice"),
            );
            return;
        }
        let enrolled = self
            .state
            .namespaces
            .get(&key.namespace)
            .is_some_and(Namespace::enrolled)
            && labels.get(MESH_LABEL).map(String::as_str) != Some(MESH_DISABLED);
        let workload = Workload {
            key: key.clone(),
            uid,
            service_account,
            node: spec.node.clone(),
            ips,
            labels,
            qos_class: None,
            cgroup,
            cgroup_id: None,
            cgroup_unresolved: None,
            enrolled,
        };
        self.state.workloads.insert(key, Arc::new(workload));
    }

    fn service(&mut self, i: usize, spec: &ServiceSpec) {
        let at = format!("services[{i}]");
        self.name(&format!("{at}.name"), &spec.name, dns_label);
        self.declared_namespace(&at, &spec.namespace);
        let display = format!("{}/{}", spec.namespace, spec.name);
        let vips = self.ips(&format!("{at}.vips"), spec.vips.as_deref());
        let mut ports = Vec::new();
        for (j, port) in spec.ports.iter().flatten().enumerate() {
            if let Some(port) = self.service_port(&format!("{at}.ports[{j}]"), port, &ports) {
                for vip in &vips {
                    let owner = format!("{at}.ports[{j}] ({display})");
                    let listener = (*vip, port.port, port.protocol);
                    if let Some(first) = self.listeners.get(&listener) {
                        let addr = SocketAddr::new(*vip, port.port);
                        let reason =
                            format!("{addr}/{} is already served by {first}", port.protocol);
                        self.problem(format!("{at}.ports[{j}].port"), reason);
                    } else {
                        self.listeners.insert(listener, owner);
                    }
                }
                ports.push(port);
            }
        }
        let key = (spec.namespace.clone(), spec.name.clone());
        if self.state.services.contains_key(&key) {
            self.problem(
                format!("{at}.name"),
                format!("service `{display}` is declared twice"),
            );
            return;
        }
        let service = Service {
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            vips,
            ports,
            selector: spec.selector.clone().unwrap_or_default(),
            endpoints: Vec::new(),
            traffic_policy: self
                .traffic_policy(&format!("{at}.trafficPolicy"), spec.traffic_policy.as_ref()),
        };
        self.state.services.insert(key, Arc::new(service));
    }

    fn service_port(
        &mut self,
        at: &str,
        spec: &ServicePortSpec,
        earlier: &[ServicePort],
    ) -> Option<ServicePort> {
        let before = self.problems.len();
        if let Some(name) = &spec.name {
            self.name(&format!("{at}.name"), name, dns_label);
            if earlier.iter().any(|p| p.name.as_ref() == Some(name)) {
                self.problem(
                    format!("{at}.name"),
                    format!("port name `{name}` is used twice"),
                );
            }
        }
        let port = self.port(&format!("{at}.port"), spec.port);
        let target_port = match spec.target_port {
            Some(n) => self.port(&format!("{at}.targetPort"), n),
            None => port,
        };
        let protocol = match spec.protocol.as_deref() {
            None | Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            Some(other) => {
                self.problem(
                    format!("{at}.protocol"),
                    format!("`{other}` is not TCP or UDP"),
                );
                None
            }
        };
        if spec.app_protocol.as_deref().is_some_and(str::is_empty) {
            self.problem(format!("{at}.appProtocol"), "must not be empty when given");
        }
        if self.problems.len() > before {
            return None;
        }
        Some(ServicePort {
            name: spec.name.clone(),
            port: port?,
            target_port: target_port?,
            protocol: protocol?,
            app_protocol: spec.app_protocol.clone(),
        })
    }

    fn name(&mut self, at: &str, name: &str, rule: fn(&str) -> Result<(), String>) {
        if let Err(reason) = rule(name) {
            self.problem(at, format!("`{name}` {reason}"));
        }
    }

    /// A reference: its name was checked where it is declared.
    fn declared_namespace(&mut self, at: &str, namespace: &str) {
        if !self.state.namespaces.contains_key(namespace) {
            let reason = format!("namespace `{namespace}` is not declared under `namespaces`");
            self.problem(format!("{at}.namespace"), reason);
        }
    }

    /// Parses a list of addresses, stored in canonical form (IPv4-mapped IPv6 as IPv4), which is
    /// how the model's lookups canonicalize what the kernel reports.
    fn ips(&mut self, at: &str, texts: Option<&[String]>) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for (j, text) in texts.unwrap_or_default().iter().enumerate() {
            match text.parse::<IpAddr>() {
                Ok(ip) if out.contains(&ip.to_canonical()) => {
                    self.problem(format!("{at}[{j}]"), format!("{ip} is listed twice"));
                }
                Ok(ip) => out.push(ip.to_canonical()),
                Err(_) => self.problem(
                    format!("{at}[{j}]"),
                    format!("`{text}` is not an IP address"),
                ),
            }
        }
        out
    }

    fn port(&mut self, at: &str, n: i64) -> Option<u16> {
        match u16::try_from(n) {
            Ok(port) if port != 0 => Some(port),
            _ => {
                self.problem(at, format!("{n} is not a valid port (1-65535)"));
                None
            }
        }
    }

    /// The uid names the pod's datapath pins, so it must be unique and a safe file name.
    fn uid(&mut self, at: &str, uid: &str) {
        let safe = uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if uid.is_empty() || uid.len() > 253 || !safe || uid == "." || uid == ".." {
            let reason =
                format!("`{uid}` must be 1-253 characters of a-z, A-Z, 0-9, '-', '_', '.'");
            self.problem(format!("{at}.uid"), reason);
        } else if let Some(first) = self.uids.get(uid) {
            self.problem(
                format!("{at}.uid"),
                format!("`{uid}` is already the uid of {first}"),
            );
        } else {
            self.uids.insert(uid.to_string(), at.to_string());
        }
    }

    /// The cgroup is where the datapath attaches and what the kernel reports a socket by: it must
    /// be an absolute, normalized path, and two pods of one node cannot share it.
    fn cgroup(&mut self, at: &str, key: &WorkloadKey, node: &str, text: &str) -> PathBuf {
        let path = Path::new(text);
        // Collecting the components drops repeated and trailing slashes.
        let normalized: PathBuf = path.components().collect();
        let plain = path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !path.is_absolute() || !plain {
            let reason = format!("`{text}` is not an absolute path without `.` or `..`");
            self.problem(format!("{at}.cgroup"), reason);
            return normalized;
        }
        let slot = (node.to_string(), normalized.clone());
        if let Some(first) = self.cgroups.get(&slot) {
            let reason = format!("`{text}` is already the cgroup of {first} on node `{node}`");
            self.problem(format!("{at}.cgroup"), reason);
        } else {
            self.cgroups.insert(slot, format!("{at} ({key})"));
        }
        normalized
    }

    /// `weft.dev/mesh` takes only the values that mean something where it is set: on a
    /// namespace `enabled`/`disabled`, on a pod `disabled` (enrollment is per namespace).
    fn mesh_label(&mut self, at: &str, labels: &Labels, allowed: &[&str]) {
        if let Some(value) = labels.get(MESH_LABEL)
            && !allowed.contains(&value.as_str())
        {
            let mut path = format!("{at}.labels");
            push_key(&mut path, MESH_LABEL);
            let expected = allowed.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>();
            let reason = format!("`{value}` is not one of {}", expected.join(", "));
            self.problem(path, reason);
        }
    }
}

#[cfg(test)]
mod tests;
mod traffic;
