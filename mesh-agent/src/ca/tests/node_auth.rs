//! `ca serve --node-auth kubernetes` with a real agent client: the node comes from a
//! TokenReview of the agent's projected token (re-read on every request), the state from a
//! watch channel (the seam the Kubernetes source feeds), and every refusal is answered with a
//! reason, counted and logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::super::{
    DEFAULT_AGENT_USERNAME, DEFAULT_AUDIENCE, KubernetesAuth, NodeAuth, StateSource,
};
use super::apiserver::{ApiServer, BROKEN, valid};
use super::harness::{Mesh, logs, mesh_with};
use super::{STATE, id};
use crate::identity::caclient::{CaClient, CaClientError};
use crate::identity::new_request;
use crate::state::{MeshState, parse_str};

struct Cluster {
    api: ApiServer,
    mesh: Mesh,
    state: watch::Sender<Arc<MeshState>>,
    /// The agent's projected token file, as kubelet would write it.
    token: PathBuf,
}

async fn cluster(name: &str) -> Cluster {
    let api = ApiServer::start().await;
    let initial = parse_str(Path::new("mesh.yaml"), STATE).expect("state");
    let (state, rx) = watch::channel(Arc::new(initial));
    let auth = NodeAuth::Kubernetes(KubernetesAuth {
        client: api.client(),
        audience: DEFAULT_AUDIENCE.into(),
        username: DEFAULT_AGENT_USERNAME.into(),
    });
    let source = StateSource::Watch(rx);
    let mesh = mesh_with(name, Duration::from_secs(60), auth, Some(source)).await;
    let token = mesh.dir.join("projected.token");
    Cluster {
        api,
        mesh,
        state,
        token,
    }
}

impl Cluster {
    /// Asks for `sa`'s certificate with whatever the token file holds now.
    async fn ask(&self, sa: &str) -> Result<(), CaClientError> {
        let client = CaClient::new(self.mesh.client("node-a", &self.token));
        let (_, csr) = new_request(&id(sa)).expect("csr");
        client.sign(csr, &[]).await.map(|_| ())
    }

    fn rotate_token(&self, token: &str) {
        std::fs::write(&self.token, format!("{token}\n")).expect("token file");
    }
}

fn refusal(result: Result<(), CaClientError>) -> Option<(u16, String)> {
    match result {
        Err(CaClientError::Refused { status, reason, .. }) => Some((status, reason)),
        _ => None,
    }
}

#[tokio::test]
async fn the_node_comes_from_the_reviewed_projected_token() {
    let c = cluster("ca-kube-node").await;
    c.api.know(
        "tok-a",
        valid(DEFAULT_AGENT_USERNAME, Some("node-a"), "weft-ca"),
    );
    c.api.know(
        "tok-b",
        valid(DEFAULT_AGENT_USERNAME, Some("node-b"), "weft-ca"),
    );

    c.rotate_token("tok-a");
    c.ask("web").await.expect("web runs on node-a");
    assert_eq!(
        refusal(c.ask("api").await),
        Some((403, "not_on_node".into()))
    );
    // kubelet rotated the token: the next request carries the new one, and the CA takes the
    // node from the review, not from what the client claims.
    c.rotate_token("tok-b");
    c.ask("api").await.expect("api runs on node-b");
    assert_eq!(
        refusal(c.ask("web").await),
        Some((403, "not_on_node".into()))
    );
    assert_eq!(
        c.api.seen(),
        [("tok-a", 2), ("tok-b", 2)]
            .into_iter()
            .flat_map(|(t, n)| std::iter::repeat_n((t.to_owned(), vec!["weft-ca".to_owned()]), n))
            .collect::<Vec<_>>()
    );

    // The state seam: a new snapshot moves api onto node-a, and node-b loses it.
    let moved = STATE.replace(
        "serviceAccount: api\n    node: node-b",
        "serviceAccount: api\n    node: node-a",
    );
    assert_ne!(moved, STATE);
    let state = parse_str(Path::new("mesh.yaml"), &moved).expect("state");
    c.state.send_replace(Arc::new(state));
    assert_eq!(
        refusal(c.ask("api").await),
        Some((403, "not_on_node".into()))
    );
    c.rotate_token("tok-a");
    c.ask("api").await.expect("api now runs on node-a");
    assert_eq!(c.mesh.ca.metrics.requests("issued", "none"), 3);
}

#[tokio::test]
async fn tokens_the_review_does_not_vouch_for_are_refused_and_counted() {
    let logs = logs();
    let c = cluster("ca-kube-refuse").await;
    let other = "system:serviceaccount:shop:web";
    c.api
        .know("tok-other-sa", valid(other, Some("node-a"), "weft-ca"));
    c.api.know(
        "tok-api-audience",
        valid(
            DEFAULT_AGENT_USERNAME,
            Some("node-a"),
            "https://kubernetes.default.svc",
        ),
    );
    c.api.know(
        "tok-unbound",
        valid(DEFAULT_AGENT_USERNAME, None, "weft-ca"),
    );
    let cases = [
        ("tok-unknown", 401, "token_rejected"),
        ("tok-api-audience", 401, "wrong_audience"),
        ("tok-other-sa", 403, "wrong_account"),
        ("tok-unbound", 403, "no_node_name"),
    ];
    for (token, status, reason) in cases {
        c.rotate_token(token);
        assert_eq!(
            refusal(c.ask("web").await),
            Some((status, reason.into())),
            "{token}"
        );
        assert_eq!(c.mesh.ca.metrics.requests("refused", reason), 1, "{token}");
    }
    // An API server in trouble is a failure the agent retries, not a refusal of the node.
    c.rotate_token(BROKEN);
    match c.ask("web").await {
        Err(CaClientError::Failed { reason, .. }) => {
            assert!(
                reason.contains("503") && reason.contains("etcd is gone"),
                "{reason}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        c.mesh.ca.metrics.requests("refused", "token_review_failed"),
        1
    );
    assert_eq!(c.mesh.ca.metrics.requests("issued", "none"), 0);

    let refused = logs.events("certificate request refused", "reason", "wrong_account");
    assert!(
        refused
            .iter()
            .any(|e| e["node"] == "unknown"
                && e["detail"].as_str().is_some_and(|d| d.contains(other))),
        "{refused:?}"
    );
}

/// `ca serve --state-source kubernetes --node-auth kubernetes`: pods, namespaces and token
/// reviews all come from the (fake) API server; a pod scheduled later is signed once it appears.
#[cfg(feature = "testbed")]
#[tokio::test]
async fn in_cluster_mode_the_ca_learns_pods_from_the_api() {
    use crate::testbed::kube_api::FakeApi;
    use serde_json::json;

    let api = FakeApi::start().await.expect("fake API server");
    let pod = |name: &str, ip: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "shop", "name": name},
            "spec": {"nodeName": "node-a", "serviceAccountName": name, "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "hostIP": "192.0.2.1", "hostIPs": [{"ip": "192.0.2.1"}]},
        })
    };
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"weft.dev/mesh": "enabled"}}}))
        .expect("namespace");
    api.apply(pod("web", "10.244.1.5")).expect("pod");
    let extra = [(
        super::super::NODE_NAME_EXTRA.to_owned(),
        vec!["node-a".to_owned()],
    )];
    api.set_token("tok-a", DEFAULT_AGENT_USERNAME, extra.into_iter().collect());
    let client = api.client().expect("client");
    let auth = NodeAuth::Kubernetes(KubernetesAuth {
        client: client.clone(),
        audience: DEFAULT_AUDIENCE.into(),
        username: DEFAULT_AGENT_USERNAME.into(),
    });
    let source = StateSource::Kubernetes(client);
    let mesh = mesh_with("ca-kube-state", Duration::from_secs(60), auth, Some(source)).await;
    let token = mesh.dir.join("projected.token");
    std::fs::write(&token, "tok-a\n").expect("token file");
    let ask = |sa: &'static str| {
        let client = CaClient::new(mesh.client("node-a", &token));
        async move {
            let (_, csr) = new_request(&id(sa)).expect("csr");
            client.sign(csr, &[]).await.map(|_| ())
        }
    };
    let deadline = tokio::time::Instant::now() + super::harness::WAIT;
    while ask("web").await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "web never signed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refusal(ask("db").await), Some((403, "not_on_node".into())));

    api.apply(pod("db", "10.244.1.6")).expect("pod");
    while ask("db").await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "db never signed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
