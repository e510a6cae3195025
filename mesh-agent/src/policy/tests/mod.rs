//! Evaluation through the state file, as the agent builds it: policies are written in YAML,
//! compiled into a snapshot and asked about connections and requests.

mod layers;
mod matching;
mod precedence;

use std::path::Path;

use http::{HeaderMap, Method};

use super::{Decision, HttpAttrs, Request, Source};
use crate::identity::SpiffeId;
use crate::state::{MeshState, Workload, WorkloadKey, parse_str};

/// `shop/api` (app: api) and `shop/db` (app: db) on one node; `frontend` and `other` hold the
/// sources.
const HEADER: &str = "
namespaces:
  - {name: shop, labels: {weft.dev/mesh: enabled}}
  - {name: frontend, labels: {weft.dev/mesh: enabled}}
  - {name: other}
nodes: [{name: node-a}]
workloads:
  - {name: api, namespace: shop, node: node-a, labels: {app: api, tier: back}}
  - {name: db, namespace: shop, node: node-a, labels: {app: db, tier: back}}
  - {name: web, namespace: frontend, node: node-a, labels: {app: web}}
";

fn mesh(policies: &str) -> MeshState {
    let yaml = format!("{HEADER}{policies}");
    parse_str(Path::new("mesh.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn workload<'a>(state: &'a MeshState, name: &str) -> &'a Workload {
    let key = WorkloadKey {
        namespace: if name == "web" { "frontend" } else { "shop" }.into(),
        name: name.into(),
    };
    state.workloads.get(&key).expect("fixture workload")
}

/// `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa)
}

/// A connection to `dst:port` from `src` (None: plaintext).
fn l4(state: &MeshState, dst: &str, src: Option<&SpiffeId>, port: u16) -> Decision {
    let req = Request {
        source: Source { id: src },
        port,
        http: None,
    };
    state.authorize(workload(state, dst), &req)
}

/// A request to `dst:8080`.
fn l7(state: &MeshState, dst: &str, src: Option<&SpiffeId>, method: &str, path: &str) -> Decision {
    l7_with(state, dst, src, method, path, &HeaderMap::new())
}

fn l7_with(
    state: &MeshState,
    dst: &str,
    src: Option<&SpiffeId>,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Decision {
    let method = Method::from_bytes(method.as_bytes()).expect("test method");
    let req = Request {
        source: Source { id: src },
        port: 8080,
        http: Some(HttpAttrs {
            method: &method,
            path,
            headers,
        }),
    };
    state.authorize(workload(state, dst), &req)
}

#[track_caller]
fn allowed(d: Decision, policy: &str) {
    assert!(d.allow, "{d}");
    assert_eq!(&*d.policy, policy, "{d}");
}

#[track_caller]
fn denied(d: Decision, policy: &str) {
    assert!(!d.allow, "{d}");
    assert_eq!(&*d.policy, policy, "{d}");
}

#[test]
fn the_schema_names_the_actions_and_modes() -> anyhow::Result<()> {
    let schema = serde_json::to_string(&schemars::schema_for!(super::AuthorizationPolicySpec))?;
    for word in [
        "\"ALLOW\"",
        "\"DENY\"",
        "notPrincipals",
        "matchLabels",
        "notValues",
    ] {
        assert!(schema.contains(word), "{word} missing from {schema}");
    }
    let schema = serde_json::to_string(&schemars::schema_for!(super::PeerAuthenticationSpec))?;
    assert!(schema.contains("\"STRICT\"") && schema.contains("\"PERMISSIVE\""));
    Ok(())
}
