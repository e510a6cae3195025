//! From the cache to a snapshot: the model's maps from the records (nodes from the pods,
//! enrollment from the namespaces, endpoints from the EndpointSlices, named target ports from
//! the selected pods' container ports), then [`crate::state::assemble`], the step the state
//! file ends with too, for routes, policies and indexes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::cache::Cache;
use super::kinds::Kind;
use super::translate::{ObjectKey, PortRecord, Record, ServiceRecord, TargetPort};
use crate::policy;
use crate::state::{
    MESH_DISABLED, MESH_LABEL, MeshState, Namespace, Node, Parts, Rejected, Service, ServicePort,
    TrafficPolicy, WorkloadKey, assemble,
};

/// Something wrong with one object, found while building a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Problem {
    pub kind: Kind,
    pub key: ObjectKey,
    pub reason: String,
    /// The object was left out (not only a part of it, such as one service port).
    pub rejects: bool,
}

/// Builds the snapshot; enrollment is written back into the cache's pods, so that unchanged
/// workloads are shared with the previous snapshot instead of copied.
pub(super) fn build(cache: &mut Cache) -> (MeshState, Vec<Problem>) {
    let namespaces: BTreeMap<String, Namespace> = cache
        .records(Kind::Namespace)
        .filter_map(|(_, r)| match r {
            Record::Namespace(ns) => Some((ns.name.clone(), ns.clone())),
            _ => None,
        })
        .collect();
    let mut parts = Parts {
        namespaces,
        ..Parts::default()
    };
    workloads_and_nodes(cache, &mut parts);
    let mut problems = Vec::new();
    services(cache, &mut parts, &mut problems);
    let keys = routes_and_policies(cache, &mut parts);
    let (state, rejected) = assemble(parts);
    let reasons = rejections(&keys, rejected);
    problems.extend(reasons.into_iter().map(|((kind, key), reasons)| Problem {
        kind,
        key,
        reason: reasons.join("; "),
        rejects: true,
    }));
    (state, problems)
}

/// The problems `assemble` found, by object, several joined with `; `.
fn rejections(keys: &Keys, rejected: Rejected) -> BTreeMap<(Kind, ObjectKey), Vec<String>> {
    let mut reasons: BTreeMap<(Kind, ObjectKey), Vec<String>> = BTreeMap::new();
    for p in rejected.routes {
        if let Some(slot) = keys.routes.get(p.route) {
            let reason = format!("{}: {}", p.path, p.reason);
            reasons.entry(slot.clone()).or_default().push(reason);
        }
    }
    for p in rejected.policies {
        let (kind, list) = match p.kind {
            policy::Kind::AuthorizationPolicy => (Kind::AuthorizationPolicy, &keys.authorization),
            policy::Kind::PeerAuthentication => (Kind::PeerAuthentication, &keys.peer),
        };
        let reason = match p.path.as_str() {
            "" => p.reason,
            path => format!("spec.{path}: {}", p.reason),
        };
        if let Some(key) = list.get(p.index) {
            reasons.entry((kind, key.clone())).or_default().push(reason);
        }
    }
    reasons
}

/// Workloads from the pods (enrolled: the namespace is, and the pod did not opt out), nodes
/// from where the pods run.
fn workloads_and_nodes(cache: &mut Cache, parts: &mut Parts) {
    let mut addresses: BTreeMap<String, BTreeSet<std::net::IpAddr>> = BTreeMap::new();
    for pod in cache.pods_mut() {
        let w = &pod.workload;
        let enrolled = parts
            .namespaces
            .get(&w.key.namespace)
            .is_some_and(Namespace::enrolled)
            && w.labels.get(MESH_LABEL).map(String::as_str) != Some(MESH_DISABLED);
        if w.enrolled != enrolled {
            Arc::make_mut(&mut pod.workload).enrolled = enrolled;
        }
        let node = addresses.entry(pod.workload.node.clone()).or_default();
        node.extend(pod.host_ips.iter().copied());
        let key = pod.workload.key.clone();
        parts.workloads.insert(key, pod.workload.clone());
    }
    parts.nodes = addresses
        .into_iter()
        .map(|(name, ips)| {
            let node = Node {
                name: name.clone(),
                addresses: ips.into_iter().collect(),
            };
            (name, node)
        })
        .collect();
}

fn services(cache: &Cache, parts: &mut Parts, problems: &mut Vec<Problem>) {
    let mut endpoints: HashMap<(&str, &str), BTreeSet<&WorkloadKey>> = HashMap::new();
    for (key, record) in cache.records(Kind::EndpointSlice) {
        if let Record::Slice(slice) = record {
            let service = (key.namespace.as_str(), slice.service.as_str());
            endpoints
                .entry(service)
                .or_default()
                .extend(&slice.endpoints);
        }
    }
    for (key, record) in cache.records(Kind::Service) {
        let Record::Service(svc) = record else {
            continue;
        };
        let mut ports = Vec::new();
        for (i, port) in svc.ports.iter().enumerate() {
            match target_port(cache, key, svc, port) {
                Ok(target_port) => ports.push(ServicePort {
                    name: port.name.clone(),
                    port: port.port,
                    target_port,
                    protocol: port.protocol,
                    app_protocol: port.app_protocol.clone(),
                }),
                Err(reason) => problems.push(Problem {
                    kind: Kind::Service,
                    key: key.clone(),
                    reason: format!("spec.ports[{i}].targetPort: {reason}; port left out"),
                    rejects: false,
                }),
            }
        }
        let selected = endpoints.get(&(key.namespace.as_str(), key.name.as_str()));
        let service = Service {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            vips: svc.vips.clone(),
            ports,
            selector: svc.selector.clone(),
            endpoints: selected
                .into_iter()
                .flatten()
                .map(|k| (*k).clone())
                .collect(),
            traffic_policy: TrafficPolicy::default(),
        };
        let slot = (key.namespace.clone(), key.name.clone());
        parts.services.insert(slot, Arc::new(service));
    }
}

/// A named target port is looked up in the container ports of the pods the service selects.
/// Pods may disagree (a rolling change of the port behind the name); the model has one target
/// port per service port, so the number most pods use wins (the lowest on a tie).
fn target_port(
    cache: &Cache,
    key: &ObjectKey,
    svc: &ServiceRecord,
    port: &PortRecord,
) -> Result<u16, String> {
    let name = match &port.target {
        TargetPort::Number(n) => return Ok(*n),
        TargetPort::Named(name) => name,
    };
    if svc.selector.is_empty() {
        return Err(format!(
            "`{name}` names a container port, and the service selects no pods"
        ));
    }
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, record) in cache.records_in(Kind::Pod, &key.namespace) {
        let Record::Pod(pod) = record else { continue };
        let labels = &pod.workload.labels;
        if !svc.selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        let found = pod
            .ports
            .iter()
            .find(|p| &p.name == name && p.protocol == port.protocol);
        if let Some(p) = found {
            *counts.entry(p.port).or_default() += 1;
        }
    }
    // Iterating in port order and keeping strictly larger counts keeps the lowest on a tie.
    let best = counts
        .iter()
        .fold(None, |best: Option<(u16, usize)>, (&p, &n)| match best {
            Some((_, m)) if m >= n => best,
            _ => Some((p, n)),
        });
    best.map(|(p, _)| p).ok_or_else(|| {
        format!(
            "no pod selected by the service has a {} container port named `{name}`",
            port.protocol
        )
    })
}

/// Where each route and policy handed to `assemble` came from, to name rejected ones.
#[derive(Default)]
struct Keys {
    routes: Vec<(Kind, ObjectKey)>,
    authorization: Vec<ObjectKey>,
    peer: Vec<ObjectKey>,
}

fn routes_and_policies(cache: &Cache, parts: &mut Parts) -> Keys {
    let mut keys = Keys::default();
    for kind in [Kind::HttpRoute, Kind::GrpcRoute] {
        for (key, record) in cache.records(kind) {
            if let Record::Route(route) = record {
                parts.routes.push(route.clone());
                keys.routes.push((kind, key.clone()));
            }
        }
    }
    for (key, record) in cache.records(Kind::AuthorizationPolicy) {
        if let Record::Authorization(policy) = record {
            parts.authorization_policies.push(policy.clone());
            keys.authorization.push(key.clone());
        }
    }
    for (key, record) in cache.records(Kind::PeerAuthentication) {
        if let Record::Peer(policy) = record {
            parts.peer_authentications.push(policy.clone());
            keys.peer.push(key.clone());
        }
    }
    keys
}
