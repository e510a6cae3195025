//! The source against the fake API server, through the real kube client: objects are written
//! to the fake, and the snapshots the source publishes are awaited (polled with a deadline, never
//! slept on) and inspected.

mod model;
mod resilience;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use prometheus::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{DEFAULT_DEBOUNCE, KubeMetrics, KubeSourceConfig, run};
use crate::state::{MeshState, WorkloadKey};
use crate::testbed::kube_api::FakeApi;

/// How long a test waits for the source to converge.
const PATIENCE: Duration = Duration::from_secs(15);

/// A fake API server and a source watching it.
struct Harness {
    fake: FakeApi,
    rx: watch::Receiver<Arc<MeshState>>,
    metrics: KubeMetrics,
    task: JoinHandle<()>,
}

impl Harness {
    /// Starts the source on `fake` (with the objects already in it).
    fn start(fake: FakeApi) -> Result<Harness> {
        let metrics = KubeMetrics::new(&Registry::new())?;
        let (tx, rx) = watch::channel(Arc::new(MeshState::default()));
        let cfg = KubeSourceConfig {
            node: "node-a".into(),
            debounce: DEFAULT_DEBOUNCE,
        };
        let task = tokio::spawn(run(fake.client()?, cfg, tx, metrics.clone()));
        Ok(Harness {
            fake,
            rx,
            metrics,
            task,
        })
    }

    /// The first snapshot for which `ready` holds (the current one included).
    async fn until(
        &mut self,
        what: &str,
        ready: impl Fn(&MeshState) -> bool,
    ) -> Result<Arc<MeshState>> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let current = self.rx.borrow_and_update().clone();
            if ready(&current) {
                return Ok(current);
            }
            match tokio::time::timeout_at(deadline, self.rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("the source ended while waiting for {what}"),
                Err(_) => bail!(
                    "no snapshot with {what} within {PATIENCE:?}; the last: {}",
                    serde_json::to_string(&*current).unwrap_or_default()
                ),
            }
        }
    }

    /// Waits until `holds` (for metrics and the fake's counters, which have no channel).
    async fn poll(&self, what: &str, holds: impl Fn(&Harness) -> bool) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        while !holds(self) {
            if Instant::now() > deadline {
                bail!("{what} did not happen within {PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(namespace: &str, name: &str) -> WorkloadKey {
    WorkloadKey {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn service_key(namespace: &str, name: &str) -> (String, String) {
    (namespace.into(), name.into())
}

fn namespace(name: &str, enrolled: bool) -> Value {
    let labels = match enrolled {
        true => json!({"weft.dev/mesh": "enabled"}),
        false => json!({}),
    };
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A running pod with container port `http: 8080`, on `node` (host IP `host`).
fn pod(ns: &str, name: &str, node: &str, host: &str, ip: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "serviceAccountName": format!("{name}-sa"),
            "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}],
        },
        "status": {
            "phase": "Running", "qosClass": "BestEffort",
            "podIP": ip, "podIPs": [{"ip": ip}],
            "hostIP": host, "hostIPs": [{"ip": host}],
        },
    })
}

/// A service at `vip` selecting `app: <app>`, port 80 to `target` (a number or a name).
fn service(ns: &str, name: &str, vip: &str, app: &str, target: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": {
            "clusterIP": vip, "clusterIPs": [vip],
            "selector": {"app": app},
            "ports": [{"name": "http", "port": 80, "targetPort": target, "protocol": "TCP"}],
        },
    })
}

/// The EndpointSlice of `service` listing `(pod, ip, ready)`.
fn slice(ns: &str, service: &str, endpoints: &[(&str, &str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(pod, ip, ready)| {
            json!({
                "addresses": [ip],
                "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "namespace": ns, "name": pod},
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "namespace": ns, "name": format!("{service}-abcde"),
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

/// An HTTPRoute on port 80 of `parent`: `/v2` goes to `backend`.
fn http_route(ns: &str, name: &str, parent: &str, backend: &str, path: Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"namespace": ns, "name": name},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": parent, "port": 80}],
            "rules": [{"matches": [{"path": path}], "backendRefs": [{"name": backend, "port": 80}]}],
        },
    })
}

fn weft_object(kind: &str, ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "weft.dev/v1alpha1", "kind": kind,
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    })
}
