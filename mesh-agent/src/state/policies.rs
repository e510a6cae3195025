//! The `authorizationPolicies:` and `peerAuthentications:` of the state file.
//!
//! Each entry is a `name`, a `namespace` and the fields of its kind's spec, read with the
//! policy module's own types (the ones the Kubernetes kinds wrap). Those accept unknown fields,
//! so, as for routes, each spec is read, written back and compared, and a field that does not
//! come back is reported. Values are then checked and compiled by [`crate::policy::compile`].

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::file::MeshFile;
use super::model::{MeshState, Namespace};
use super::names::dns_subdomain;
use super::routes::{join, typed};
use crate::policy::{self, AuthorizationPolicySpec, Kind, Named, PeerAuthenticationSpec};

/// Reads both lists, compiles them into `state`; problems are `<list>[i].<path>: <reason>`,
/// in the order of the file.
pub(super) fn build(state: &mut MeshState, file: &MeshFile, problems: &mut Vec<String>) {
    let mut found = Found::new();
    let authorization: Decoded<AuthorizationPolicySpec> = decode(
        Kind::AuthorizationPolicy,
        file.authorization_policies.as_deref().unwrap_or_default(),
        &state.namespaces,
        &mut found,
    );
    let peer: Decoded<PeerAuthenticationSpec> = decode(
        Kind::PeerAuthentication,
        file.peer_authentications.as_deref().unwrap_or_default(),
        &state.namespaces,
        &mut found,
    );
    let (index, compiled) = policy::compile(&authorization.objects, &peer.objects);
    for p in compiled {
        let positions = match p.kind {
            Kind::AuthorizationPolicy => &authorization.positions,
            Kind::PeerAuthentication => &peer.positions,
        };
        let i = positions[p.index];
        let at = join(&format!("{}[{i}]", list(p.kind)), &p.path);
        found.push((rank(p.kind), i, format!("{at}: {}", p.reason)));
    }
    // Reading and compiling are two passes: put each entry's problems back together, in order.
    found.sort_by_key(|(rank, i, _)| (*rank, *i));
    problems.extend(found.into_iter().map(|(_, _, problem)| problem));
    state.policies = index;
    state.authorization_policies = authorization.objects;
    state.peer_authentications = peer.objects;
}

/// Problems with the list (by [`rank`]) and position of their entry.
type Found = Vec<(u8, usize, String)>;

fn list(kind: Kind) -> &'static str {
    match kind {
        Kind::AuthorizationPolicy => "authorizationPolicies",
        Kind::PeerAuthentication => "peerAuthentications",
    }
}

fn rank(kind: Kind) -> u8 {
    match kind {
        Kind::AuthorizationPolicy => 0,
        Kind::PeerAuthentication => 1,
    }
}

/// The objects read from one list, with the position of each in the file.
struct Decoded<S> {
    objects: Vec<Named<S>>,
    positions: Vec<usize>,
}

fn decode<S: DeserializeOwned + Serialize>(
    kind: Kind,
    values: &[Value],
    namespaces: &BTreeMap<String, Namespace>,
    found: &mut Found,
) -> Decoded<S> {
    let mut decoded = Decoded {
        objects: Vec::new(),
        positions: Vec::new(),
    };
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (i, value) in values.iter().enumerate() {
        let mut problems = Vec::new();
        let at = format!("{}[{i}]", list(kind));
        if let Some(object) = entry::<S>(&at, value, namespaces, &seen, &mut problems) {
            seen.insert((object.namespace.clone(), object.name.clone()), i);
            decoded.objects.push(object);
            decoded.positions.push(i);
        }
        found.extend(problems.into_iter().map(|p| (rank(kind), i, p)));
    }
    decoded
}

/// One entry, unless it has problems; `seen` holds the entries before it.
fn entry<S: DeserializeOwned + Serialize>(
    at: &str,
    value: &Value,
    namespaces: &BTreeMap<String, Namespace>,
    seen: &HashMap<(String, String), usize>,
    problems: &mut Vec<String>,
) -> Option<Named<S>> {
    let Some(object) = value.as_object() else {
        problems.push(format!("{at}: must be a mapping (name, namespace, ...)"));
        return None;
    };
    let mut rest = object.clone();
    let name = take_text(at, "name", &mut rest, problems);
    let namespace = take_text(at, "namespace", &mut rest, problems);
    let spec = typed::<S>(at, &Value::Object(rest), problems);
    let (name, namespace, spec) = (name?, namespace?, spec?);
    if let Err(reason) = dns_subdomain(&name) {
        problems.push(format!("{at}.name: `{name}` {reason}"));
        return None;
    }
    if !namespaces.contains_key(&namespace) {
        let reason = format!("namespace `{namespace}` is not declared under `namespaces`");
        problems.push(format!("{at}.namespace: {reason}"));
        return None;
    }
    if let Some(first) = seen.get(&(namespace.clone(), name.clone())) {
        let list = at.split('[').next().unwrap_or_default();
        let reason = format!("`{namespace}/{name}` is declared twice (first as {list}[{first}])");
        problems.push(format!("{at}.name: {reason}"));
        return None;
    }
    Some(Named {
        name,
        namespace,
        spec,
    })
}

/// Removes `key` from the entry and returns it when it is a string.
fn take_text(
    at: &str,
    key: &str,
    object: &mut Map<String, Value>,
    problems: &mut Vec<String>,
) -> Option<String> {
    match object.remove(key) {
        Some(Value::String(text)) => Some(text),
        None | Some(Value::Null) => {
            problems.push(format!("{at}.{key}: missing"));
            None
        }
        Some(other) => {
            problems.push(format!("{at}.{key}: {other} is not a string"));
            None
        }
    }
}

#[cfg(test)]
mod tests;
