//! The Kubernetes source: watches the cluster and publishes the mesh model, the same
//! [`MeshState`] the state file builds in local mode.
//!
//! `watch` runs one kube-rs watcher per kind (namespaces, pods, services, EndpointSlices,
//! HTTPRoutes, GRPCRoutes, AuthorizationPolicies, PeerAuthentications) and translates each
//! object as it arrives (`translate`); `cache` keeps the records per kind; `source` applies
//! the updates and publishes at most one snapshot per debounce window, built by `snapshot`
//! through [`crate::state::assemble`], as the state file is. Invalid objects are left out,
//! logged and counted; the others still apply. See `docs/kubernetes.md`.
//!
//! Readers are the agent's: the datapath sync, the proxy, the CLI; this module only writes.

mod cache;
mod kinds;
mod metrics;
mod snapshot;
mod source;
mod translate;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as channel;
use tracing::Instrument;

pub use kinds::Kind;
pub use metrics::KubeMetrics;

use crate::state::MeshState;

/// How long the source gathers changes before it publishes a snapshot.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct KubeSourceConfig {
    /// The node this agent runs on (its logs carry it).
    pub node: String,
    /// The window from the first change of a burst to the snapshot that includes it.
    pub debounce: Duration,
}

impl KubeSourceConfig {
    pub fn new(node: impl Into<String>) -> KubeSourceConfig {
        KubeSourceConfig {
            node: node.into(),
            debounce: DEFAULT_DEBOUNCE,
        }
    }
}

/// Watches the cluster through `client` and publishes each new snapshot on `tx`, the first
/// once every kind has been listed. Watch failures are retried with kube's default backoff
/// (0.8 s growing to 30 s); a kind the API server does not serve (its CRD is not installed)
/// counts as empty until it is. Returns when every receiver of `tx` is gone.
pub async fn run(
    client: kube::Client,
    cfg: KubeSourceConfig,
    tx: channel::Sender<Arc<MeshState>>,
    metrics: KubeMetrics,
) {
    let span = tracing::info_span!("kube_source", node = %cfg.node);
    let updates = watch::updates(&client);
    source::run(updates, cfg, tx, metrics)
        .instrument(span)
        .await;
}

#[cfg(all(test, feature = "testbed"))]
mod tests;
