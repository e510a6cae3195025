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
use super::model::Namespace;
use super::names::dns_subdomain;
use super::routes::{join, typed};
use crate::policy::{self, AuthorizationPolicySpec, Kind, Named, PeerAuthenticationSpec};

/// Both lists as read, with the problems found reading them.
pub(super) struct DecodedPolicies {
    pub authorization: Decoded<AuthorizationPolicySpec>,
    pub peer: Decoded<PeerAuthenticationSpec>,
    pub found: Found,
}

/// Reads both lists. They are compiled by [`super::assemble`], whose problems [`report`]
/// merges with these.
pub(super) fn decode_all(
    file: &MeshFile,
    namespaces: &BTreeMap<String, Namespace>,
) -> DecodedPolicies {
    let mut found = Found::new();
    let authorization = decode(
        Kind::AuthorizationPolicy,
        file.authorization_policies.as_deref().unwrap_or_default(),
        namespaces,
        &mut found,
    );
    let peer = decode(
        Kind::PeerAuthentication,
        file.peer_authentications.as_deref().unwrap_or_default(),
        namespaces,
        &mut found,
    );
    DecodedPolicies {
        authorization,
        peer,
        found,
    }
}

/// Problems of both lists, reading and compiling, as `<list>[i].<path>: <reason>` in the order
/// of the file. `positions` are those of the decoded authorization and peer lists.
pub(super) fn report(
    mut found: Found,
    positions: (&[usize], &[usize]),
    compiled: Vec<policy::Problem>,
    problems: &mut Vec<String>,
) {
    for p in compiled {
        let positions = match p.kind {
            Kind::AuthorizationPolicy => positions.0,
            Kind::PeerAuthentication => positions.1,
        };
        let i = positions[p.index];
        let at = join(&format!("{}[{i}]", list(p.kind)), &p.path);
        found.push((rank(p.kind), i, format!("{at}: {}", p.reason)));
    }
    // Reading and compiling are two passes: put each entry's problems back together, in order.
    found.sort_by_key(|(rank, i, _)| (*rank, *i));
    problems.extend(found.into_iter().map(|(_, _, problem)| problem));
}

/// Problems with the list (by [`rank`]) and position of their entry.
pub(super) type Found = Vec<(u8, usize, String)>;

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
pub(super) struct Decoded<S> {
    pub objects: Vec<Named<S>>,
    pub positions: Vec<usize>,
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
