//! From Kubernetes objects to the records the source keeps: only what the mesh model needs,
//! checked, so that the snapshot is built from records without re-reading objects.
//!
//! Each function takes one object and answers `Ok(Some(record))`, `Ok(None)` when the object
//! is valid but not part of the mesh (a pod without an IP, a route attached only to Gateways),
//! or `Err(reason)` when it is invalid: the source then leaves it out, logs and counts it.
//! `pod` and `service` (with EndpointSlices) hold the core kinds, `objects` the namespaces,
//! routes and policies.

mod objects;
mod pod;
mod service;

use std::net::IpAddr;

use crate::policy::{AuthorizationPolicySpec, Named, PeerAuthenticationSpec};
use crate::routing::RouteObject;
use crate::state::Namespace;

pub(super) use objects::{
    authorization_policy, grpc_route, http_route, namespace, peer_authentication,
};
pub(super) use pod::{PodRecord, pod};
pub(super) use service::{
    PortRecord, ServiceRecord, SliceRecord, TargetPort, endpoint_slice, service,
};

/// `namespace/name` of an object; the namespace is empty for namespaces themselves.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.namespace.as_str() {
            "" => f.write_str(&self.name),
            ns => write!(f, "{ns}/{}", self.name),
        }
    }
}

/// What the source keeps of one object.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Record {
    Namespace(Namespace),
    Pod(PodRecord),
    Service(ServiceRecord),
    Slice(SliceRecord),
    Route(RouteObject),
    Authorization(Named<AuthorizationPolicySpec>),
    Peer(Named<PeerAuthenticationSpec>),
}

/// The record of an object; `Ok(None)`: not part of the mesh; `Err`: invalid, with the reason.
pub(super) type Translated = Result<Option<Record>, String>;

/// Addresses in canonical form (IPv4-mapped IPv6 as IPv4), as the model's lookups expect;
/// `at` names the field in errors.
fn ips<'a>(at: &str, texts: impl Iterator<Item = &'a str>) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for (i, text) in texts.enumerate() {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| format!("{at}[{i}]: `{text}` is not an IP address"))?;
        if !out.contains(&ip.to_canonical()) {
            out.push(ip.to_canonical());
        }
    }
    Ok(out)
}

/// A port number from the API's `int32`; `None` outside 1-65535.
fn port(n: i32) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests;
