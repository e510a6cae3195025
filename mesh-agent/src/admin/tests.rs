//! The handlers against a small mesh built from YAML, with a stand-in datapath: what each
//! endpoint answers, and how `explain` follows a connection. `tests/admin.rs` runs the same
//! API against a real agent and kernel.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use hyper::{Method, StatusCode};
use mesh_common::Counter;
use serde_json::Value;
use tokio::sync::watch;

use super::{AdminContext, AdminDatapath, handle};
use crate::cli::{Cli, Command};
use crate::datapath::AttachedProgram;
use crate::identity::Identities;
use crate::state::parse_str;
use crate::telemetry::{DatapathStats, Readiness};

mod explain;
mod listings;

/// Node a: web (frontend), other, api-a (shop), outsider (legacy, not enrolled).
/// Node b: api-b, canary (shop), db (shop, STRICT).
pub(crate) const MESH: &str = r#"
namespaces:
  - {name: frontend, labels: {weft.dev/mesh: enabled}}
  - {name: shop, labels: {weft.dev/mesh: enabled}}
  - {name: legacy}
nodes:
  - {name: a, addresses: [192.168.250.1]}
  - {name: b, addresses: [192.168.250.2]}
workloads:
  - {name: web, namespace: frontend, serviceAccount: web, node: a, ips: [10.244.1.2], labels: {app: web}, cgroup: /cg/captured/web}
  - {name: other, namespace: shop, serviceAccount: other, node: a, ips: [10.244.1.3], labels: {app: other}, cgroup: /cg/captured/other}
  - {name: api-a, namespace: shop, serviceAccount: api, node: a, ips: [10.244.1.4], labels: {app: api}, cgroup: /cg/bare/api-a}
  - {name: outsider, namespace: legacy, node: a, ips: [10.244.1.5], labels: {app: outsider}}
  - {name: api-b, namespace: shop, serviceAccount: api, node: b, ips: [10.244.2.2], labels: {app: api}}
  - {name: canary, namespace: shop, serviceAccount: api, node: b, ips: [10.244.2.4], labels: {app: canary}}
  - {name: db, namespace: shop, serviceAccount: db, node: b, ips: [10.244.2.3], labels: {app: db}}
services:
  - name: api
    namespace: shop
    vips: [10.96.0.20]
    selector: {app: api}
    ports: [{name: http, port: 80, targetPort: 8080}]
  - {name: api-tcp, namespace: shop, vips: [10.96.0.21], selector: {app: api}, ports: [{port: 9000}]}
  - {name: canary, namespace: shop, vips: [10.96.0.22], selector: {app: canary}, ports: [{port: 80, targetPort: 8080}]}
  - {name: db, namespace: shop, vips: [10.96.0.30], selector: {app: db}, ports: [{port: 5432, appProtocol: tcp}]}
routes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: api, namespace: shop}
    spec:
      parentRefs: [{group: "", kind: Service, name: api, port: 80}]
      rules:
        - name: beta
          matches: [{path: {type: PathPrefix, value: /beta}}]
          backendRefs: [{name: canary, port: 80}]
        - backendRefs: [{name: api, port: 80}]
authorizationPolicies:
  - name: api-readers
    namespace: shop
    selector: {matchLabels: {app: api}}
    action: ALLOW
    rules:
      - from: [{namespaces: [frontend]}]
        to: [{methods: [GET], paths: ["/api/*", "/beta/*"]}]
      - from: [{namespaces: [frontend]}]
        to: [{ports: [9000]}]
  - name: no-other
    namespace: shop
    selector: {matchLabels: {app: api}}
    action: DENY
    rules:
      - from: [{principals: [cluster.local/ns/shop/sa/other]}]
        to: [{ports: [9000]}]
peerAuthentications:
  - name: db-strict
    namespace: shop
    selector: {matchLabels: {app: db}}
    mode: STRICT
"#;

/// Every weft program on cgroups under `/cg/captured`, none elsewhere; fixed counters.
pub(crate) struct FakeDatapath;

impl DatapathStats for FakeDatapath {
    fn counters(&self) -> anyhow::Result<Vec<(Counter, u64)>> {
        Ok(vec![(Counter::Captured, 7), (Counter::DroppedPlaintext, 2)])
    }

    fn map_entries(&self) -> anyhow::Result<Vec<(&'static str, usize)>> {
        Ok(vec![("PODS", 2)])
    }
}

impl AdminDatapath for FakeDatapath {
    fn attached(&self, cgroup: &Path) -> anyhow::Result<Vec<AttachedProgram>> {
        if !cgroup.starts_with("/cg/captured") {
            return Ok(Vec::new());
        }
        let labels = [
            "cgroup_inet4_connect",
            "cgroup_inet6_connect",
            "sock_ops",
            "cgroup_inet_sock_release",
            "cgroup_inet_ingress",
        ];
        Ok(labels
            .iter()
            .zip(1..)
            .map(|(attach_type, prog_id)| AttachedProgram {
                attach_type,
                prog_id,
            })
            .collect())
    }
}

/// The admin context of node a for [`MESH`]; `mtls` gives it an (empty) identity store;
/// `flags` are more `run` flags.
pub(crate) fn context(mtls: bool, flags: &[&str]) -> AdminContext {
    let state = parse_str(Path::new("mesh.yaml"), MESH).unwrap_or_else(|e| panic!("{e}"));
    let mut args = vec!["mesh-agent", "run", "--config", "mesh.yaml", "--node", "a"];
    args.extend_from_slice(flags);
    let config = match clap::Parser::try_parse_from(args) {
        Ok(Cli {
            command: Command::Run(cfg),
        }) => *cfg,
        other => panic!("run flags: {other:?}"),
    };
    let ready = Readiness::default();
    ready.set(true);
    let (_tx, state) = watch::channel(Arc::new(state));
    AdminContext {
        identities: mtls.then(|| Identities::new(&config.trust_domain)),
        config,
        state,
        datapath: Arc::new(FakeDatapath),
        ready,
        started: Instant::now(),
        events: None,
        outbound: None,
    }
}

/// `GET path` on `ctx`: the status and the body.
pub(crate) fn get(ctx: &AdminContext, path_and_query: &str) -> (StatusCode, Value) {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let reply = handle(ctx, &Method::GET, path, query);
    (reply.status, reply.body)
}

/// The body of a `GET` that must succeed.
pub(crate) fn ok(ctx: &AdminContext, path_and_query: &str) -> Value {
    let (status, body) = get(ctx, path_and_query);
    assert_eq!(status, StatusCode::OK, "{path_and_query}: {body}");
    body
}

#[test]
fn unknown_paths_and_methods_are_json_errors() {
    let ctx = context(false, &[]);
    let (status, body) = get(&ctx, "/nope");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("/explain")),
        "{body}"
    );
    let reply = handle(&ctx, &Method::POST, "/status", None);
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(reply.body["error"].is_string());
}
