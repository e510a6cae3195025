//! Namespaces, routes and policies.
//!
//! Routes and policies arrive as dynamic objects and are decoded here, one object at a time,
//! so that an object the types cannot read is rejected alone instead of failing the watch of
//! its kind. Unknown fields are not errors: the API server prunes them from custom resources,
//! and a newer Gateway API may add fields this version does not know.

use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::grpcroutes::GrpcRoute;
use k8s_openapi::api::core::v1::Namespace as KubeNamespace;
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Record, Translated};
use crate::policy::Named;
use crate::routing::RouteObject;
use crate::state::Namespace;

pub(in crate::kubernetes) fn namespace(ns: KubeNamespace) -> Translated {
    Ok(Some(Record::Namespace(Namespace {
        name: ns.metadata.name.unwrap_or_default(),
        labels: ns.metadata.labels.unwrap_or_default(),
    })))
}

/// An HTTPRoute attached to Services. Parent references to Gateways are for a gateway
/// implementation and are dropped; a route with no Service parent is not a mesh route.
pub(in crate::kubernetes) fn http_route(object: DynamicObject) -> Translated {
    let mut route: HttpRoute = decode(object)?;
    let parents = route.spec.parent_refs.get_or_insert_default();
    parents.retain(|p| service_parent(p.group.as_deref(), p.kind.as_deref()));
    if parents.is_empty() {
        return Ok(None);
    }
    Ok(Some(Record::Route(RouteObject::Http(Box::new(route)))))
}

/// [`http_route`] for GRPCRoutes.
pub(in crate::kubernetes) fn grpc_route(object: DynamicObject) -> Translated {
    let mut route: GrpcRoute = decode(object)?;
    let parents = route.spec.parent_refs.get_or_insert_default();
    parents.retain(|p| service_parent(p.group.as_deref(), p.kind.as_deref()));
    if parents.is_empty() {
        return Ok(None);
    }
    Ok(Some(Record::Route(RouteObject::Grpc(Box::new(route)))))
}

/// GAMMA's parent: the core group's Service (the API's defaults name a Gateway).
fn service_parent(group: Option<&str>, kind: Option<&str>) -> bool {
    group == Some("") && kind == Some("Service")
}

pub(in crate::kubernetes) fn authorization_policy(object: DynamicObject) -> Translated {
    named(object).map(|n| Some(Record::Authorization(n)))
}

pub(in crate::kubernetes) fn peer_authentication(object: DynamicObject) -> Translated {
    named(object).map(|n| Some(Record::Peer(n)))
}

/// A policy's `spec` read with the policy module's types; an absent spec reads as `{}`.
fn named<S: DeserializeOwned>(object: DynamicObject) -> Result<Named<S>, String> {
    let spec = match object.data.get("spec") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(spec) => spec.clone(),
    };
    let spec = serde_path_to_error::deserialize(spec).map_err(|e| problem("spec", e))?;
    Ok(Named {
        name: object.metadata.name.unwrap_or_default(),
        namespace: object.metadata.namespace.unwrap_or_default(),
        spec,
    })
}

/// The whole object read with its generated type; errors name the field.
fn decode<T: DeserializeOwned>(object: DynamicObject) -> Result<T, String> {
    let value = serde_json::to_value(&object).map_err(|e| format!("cannot be read: {e}"))?;
    serde_path_to_error::deserialize(value).map_err(|e| problem("", e))
}

/// `<at>.<path>: <reason>`, the path being where in the object decoding failed.
fn problem(at: &str, e: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.into_inner();
    match (at, path.as_str()) {
        ("", ".") => inner.to_string(),
        (at, ".") => format!("{at}: {inner}"),
        ("", path) => format!("{path}: {inner}"),
        (at, path) => format!("{at}.{path}: {inner}"),
    }
}
