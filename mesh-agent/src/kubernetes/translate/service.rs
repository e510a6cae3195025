//! Services and their EndpointSlices.
//!
//! A service's endpoints come from the EndpointSlices labelled with its name, not from its
//! selector: the slices are what the endpoints controller (or whoever manages a selector-less
//! service) decided, readiness included. A named `targetPort` is kept as a name here and
//! resolved against the selected pods when the snapshot is built.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Record, Translated, ips, port};
use crate::state::{Labels, Protocol, WorkloadKey};

/// The label that ties an EndpointSlice to its service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Clone, Debug, PartialEq)]
pub(in crate::kubernetes) struct ServiceRecord {
    pub vips: Vec<std::net::IpAddr>,
    pub ports: Vec<PortRecord>,
    pub selector: Labels,
}

#[derive(Clone, Debug, PartialEq)]
pub(in crate::kubernetes) struct PortRecord {
    pub name: Option<String>,
    pub port: u16,
    pub target: TargetPort,
    pub protocol: Protocol,
    pub app_protocol: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::kubernetes) enum TargetPort {
    Number(u16),
    /// A container port name, resolved per snapshot.
    Named(String),
}

/// The ready endpoints of one slice that are pods.
#[derive(Clone, Debug, PartialEq)]
pub(in crate::kubernetes) struct SliceRecord {
    /// Name of the service, in the slice's namespace.
    pub service: String,
    pub endpoints: Vec<WorkloadKey>,
}

/// Cluster IPs (none for headless and ExternalName services) and the TCP/UDP ports; SCTP
/// ports are left out, as the model has no place for them.
pub(in crate::kubernetes) fn service(service: Service) -> Translated {
    let spec = service.spec.unwrap_or_default();
    let texts = match spec.cluster_ips.as_deref() {
        Some(list) if !list.is_empty() => list.to_vec(),
        _ => spec.cluster_ip.into_iter().collect(),
    };
    let real = texts
        .iter()
        .map(String::as_str)
        .filter(|t| !t.is_empty() && *t != "None");
    let vips = ips("spec.clusterIPs", real)?;
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let at = format!("spec.ports[{i}]");
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some(_) => continue,
        };
        let number = port(p.port).ok_or(format!("{at}.port: {} is not a port", p.port))?;
        let target = match &p.target_port {
            None => TargetPort::Number(number),
            Some(IntOrString::Int(n)) => {
                TargetPort::Number(port(*n).ok_or(format!("{at}.targetPort: {n} is not a port"))?)
            }
            Some(IntOrString::String(name)) => match name.parse::<i32>() {
                // The API accepts "8080" as a string; it means the number.
                Ok(n) => TargetPort::Number(
                    port(n).ok_or(format!("{at}.targetPort: {n} is not a port"))?,
                ),
                Err(_) => TargetPort::Named(name.clone()),
            },
        };
        ports.push(PortRecord {
            name: p.name.clone().filter(|n| !n.is_empty()),
            port: number,
            target,
            protocol,
            app_protocol: p.app_protocol.clone().filter(|a| !a.is_empty()),
        });
    }
    Ok(Some(Record::Service(ServiceRecord {
        vips,
        ports,
        selector: spec.selector.unwrap_or_default(),
    })))
}

/// The pods a slice lists as ready (`conditions.ready` absent counts as ready, as the API
/// says). Addresses that are not pods (no `targetRef`, or another kind) have no workload, so
/// no identity or node to tunnel to: they are left out. A slice without the service-name
/// label belongs to no service.
pub(in crate::kubernetes) fn endpoint_slice(slice: EndpointSlice) -> Translated {
    let Some(service) = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let namespace = slice.metadata.namespace.clone().unwrap_or_default();
    let mut endpoints = Vec::new();
    for endpoint in slice.endpoints.iter().flatten() {
        let ready = endpoint
            .conditions
            .as_ref()
            .and_then(|c| c.ready)
            .unwrap_or(true);
        let Some(target) = endpoint.target_ref.as_ref().filter(|_| ready) else {
            continue;
        };
        if target.kind.as_deref() != Some("Pod") {
            continue;
        }
        let Some(name) = target.name.clone().filter(|n| !n.is_empty()) else {
            continue;
        };
        endpoints.push(WorkloadKey {
            namespace: target
                .namespace
                .clone()
                .unwrap_or_else(|| namespace.clone()),
            name,
        });
    }
    Ok(Some(Record::Slice(SliceRecord {
        service: service.clone(),
        endpoints,
    })))
}
