//! The `routes:` of the state file: Gateway API objects read with the Gateway API's own types,
//! so that the same YAML applies to a cluster.
//!
//! The generated types accept unknown fields silently, as Kubernetes clients must. A state file
//! has no API server to prune or reject them, so a typo would silently change routing; instead,
//! each object is read, written back and compared: a key of the file that does not come back
//! is a field the type does not know, and is reported with its path.

use std::collections::BTreeMap;

use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::grpcroutes::GrpcRoute;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::file::{push_key, render_path};
use super::model::Namespace;
use crate::routing::{Problem, RouteObject};

const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// The route objects read from `routes:`, with the position of each in the file.
pub(super) struct Decoded {
    pub objects: Vec<RouteObject>,
    pub positions: Vec<usize>,
}

/// Reads the route objects; problems are `routes[i].<path>: <reason>`. They are compiled
/// against the services by [`super::assemble`], whose problems [`report`] words the same way.
pub(super) fn decode_all(
    values: &[Value],
    namespaces: &BTreeMap<String, Namespace>,
    problems: &mut Vec<String>,
) -> Decoded {
    let mut decoded = Decoded {
        objects: Vec::new(),
        positions: Vec::new(),
    };
    for (i, value) in values.iter().enumerate() {
        if let Some(route) = decode(i, value, namespaces, problems) {
            decoded.objects.push(route);
            decoded.positions.push(i);
        }
    }
    decoded
}

/// Compile problems of the routes `positions` came from, as `routes[i].<path>: <reason>`.
pub(super) fn report(found: Vec<Problem>, positions: &[usize], problems: &mut Vec<String>) {
    problems.extend(
        found
            .into_iter()
            .map(|p| format!("routes[{}].{}: {}", positions[p.route], p.path, p.reason)),
    );
}

/// Reads `routes[index]`; problems are `<path>: <reason>` like the rest of the file's.
fn decode(
    index: usize,
    value: &Value,
    namespaces: &BTreeMap<String, Namespace>,
    problems: &mut Vec<String>,
) -> Option<RouteObject> {
    let at = format!("routes[{index}]");
    let Some(object) = value.as_object() else {
        let reason = "must be a Gateway API object (apiVersion, kind, metadata, spec)";
        problems.push(format!("{at}: {reason}"));
        return None;
    };
    let text = |key: &str| object.get(key).and_then(Value::as_str);
    if text("apiVersion") != Some(API_VERSION) {
        let reason = match object.get("apiVersion") {
            Some(v) => format!("{v} is not `{API_VERSION}`"),
            None => format!("missing; routes are `{API_VERSION}` objects"),
        };
        problems.push(format!("{at}.apiVersion: {reason}"));
    }
    let route = match text("kind") {
        Some("HTTPRoute") => {
            typed::<HttpRoute>(&at, value, problems).map(|r| RouteObject::Http(Box::new(r)))
        }
        Some("GRPCRoute") => {
            typed::<GrpcRoute>(&at, value, problems).map(|r| RouteObject::Grpc(Box::new(r)))
        }
        _ => {
            let found = object
                .get("kind")
                .map_or("nothing".into(), Value::to_string);
            problems.push(format!("{at}.kind: {found} is not HTTPRoute or GRPCRoute"));
            None
        }
    }?;
    if let Some(ns) = route.metadata().namespace.as_deref()
        && !ns.is_empty()
        && !namespaces.contains_key(ns)
    {
        let reason = format!("namespace `{ns}` is not declared under `namespaces`");
        problems.push(format!("{at}.metadata.namespace: {reason}"));
        // Its references would resolve in a namespace that does not exist.
        return None;
    }
    Some(route)
}

/// Deserializes with paths in errors, then reports the fields the type dropped.
pub(super) fn typed<T: DeserializeOwned + Serialize>(
    at: &str,
    value: &Value,
    problems: &mut Vec<String>,
) -> Option<T> {
    let parsed: T = match serde_path_to_error::deserialize(value) {
        Ok(parsed) => parsed,
        Err(e) => {
            let path = render_path(e.path(), false);
            let inner = e.into_inner();
            problems.push(format!("{}: {inner}", join(at, &path)));
            return None;
        }
    };
    let before = problems.len();
    match serde_json::to_value(&parsed) {
        Ok(written) => unknown_fields(value, &written, &mut at.to_string(), problems),
        Err(e) => problems.push(format!("{at}: cannot be read back: {e}")),
    }
    (problems.len() == before).then_some(parsed)
}

pub(super) fn join(at: &str, path: &str) -> String {
    match path.chars().next() {
        None => at.to_string(),
        Some('[') => format!("{at}{path}"),
        Some(_) => format!("{at}.{path}"),
    }
}

/// Keys of `read` (the file) missing from `written` (the typed object serialized again).
/// A `null` value is the same as an absent key, so it is not reported.
fn unknown_fields(read: &Value, written: &Value, at: &mut String, problems: &mut Vec<String>) {
    match (read, written) {
        (Value::Object(read), Value::Object(written)) => {
            for (key, value) in read.iter().filter(|(_, v)| !v.is_null()) {
                let len = at.len();
                push_key(at, key);
                match written.get(key) {
                    Some(w) => unknown_fields(value, w, at, problems),
                    None => problems.push(format!("{at}: unknown field")),
                }
                at.truncate(len);
            }
        }
        (Value::Array(read), Value::Array(written)) => {
            for (i, (r, w)) in read.iter().zip(written).enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                unknown_fields(r, w, at, problems);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
