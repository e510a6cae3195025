//! Tests of the CA: its directory (init, tokens, rotation), request checks and issued
//! certificates (`files`), the CA serving real agents over TLS (`e2e`), and node
//! authentication by TokenReview against a stand-in API server (`node_auth`).

mod apiserver;
mod e2e;
mod files;
mod harness;
mod node_auth;
mod signing;

use std::path::PathBuf;

use crate::identity::SpiffeId;

pub(super) const TD: &str = "cluster.local";

pub(super) fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "shop", sa)
}

/// A directory for one test, removed on drop (also when the test fails).
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("weft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Two nodes: `web` and `db` run on node-a, `api` on node-b; `legacy` (node-a) is not enrolled.
pub(super) const STATE: &str = r#"
namespaces:
  - name: shop
    labels: {weft.dev/mesh: enabled}
  - name: plain
nodes:
  - name: node-a
    addresses: [192.168.250.1]
  - name: node-b
    addresses: [192.168.250.2]
workloads:
  - name: web-1
    namespace: shop
    serviceAccount: web
    node: node-a
    ips: [10.244.1.2]
  - name: db-1
    namespace: shop
    serviceAccount: db
    node: node-a
    ips: [10.244.1.3]
  - name: api-1
    namespace: shop
    serviceAccount: api
    node: node-b
    ips: [10.244.2.2]
  - name: legacy-1
    namespace: plain
    serviceAccount: legacy
    node: node-a
    ips: [10.244.1.9]
"#;
