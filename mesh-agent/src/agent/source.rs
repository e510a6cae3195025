//! Where the agent's mesh state comes from (`--source`): the state file, or the Kubernetes API.
//! Both end on one watch channel that the proxy, the datapath sync, the CA client and the admin
//! API read; before a snapshot is published, this node's pods get their cgroup ids.
//!
//! In Kubernetes mode the API names a pod by UID and QoS class, not by cgroup: discovery finds
//! each enrolled pod's directory below the node's cgroup2 mount. A pod whose directory is not
//! there yet is reported on its workload (`cgroupUnresolved`) and looked for again every
//! [`RETRY_UNRESOLVED`] until it appears, even if nothing else changes in the cluster.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::{Histogram, HistogramOpts, Registry};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{AgentConfig, Source};
use crate::discovery::{CgroupDiscovery, Qos, UnresolvedGauge};
use crate::kubernetes::{self, KubeMetrics, KubeSourceConfig};
use crate::state::{self, MeshState, WorkloadKey};
use crate::telemetry::Metrics;

/// How often pods whose cgroup was not found are looked for again.
pub const RETRY_UNRESOLVED: Duration = Duration::from_secs(2);

/// How often the agent says it is still waiting for the API server's first answer.
const WAIT_REPORT: Duration = Duration::from_secs(10);

/// The first snapshot, and the channel every later one arrives on.
pub struct StateFeed {
    pub initial: MeshState,
    pub rx: watch::Receiver<Arc<MeshState>>,
    pub task: JoinHandle<()>,
}

/// Starts the configured source; returns once its first snapshot is ready.
pub async fn start(cfg: &AgentConfig, metrics: &Arc<Metrics>) -> anyhow::Result<StateFeed> {
    match cfg.source() {
        Source::File => start_file(cfg, metrics),
        Source::Kubernetes => start_kubernetes(cfg, metrics.registry()).await,
    }
}

fn start_file(cfg: &AgentConfig, metrics: &Arc<Metrics>) -> anyhow::Result<StateFeed> {
    let path = cfg
        .config
        .clone()
        .context("--source file needs --config FILE")?;
    let mut initial = state::load_file(&path)?;
    log_unresolved(&state::resolve_cgroups(&mut initial, &cfg.node));
    let node = cfg.node.clone();
    let metrics = metrics.clone();
    let (rx, task) = state::watch_file(
        path,
        cfg.reload_interval.get(),
        Arc::new(initial.clone()),
        move |s| log_unresolved(&state::resolve_cgroups(s, &node)),
        move |result| metrics.reload(result),
    );
    Ok(StateFeed { initial, rx, task })
}

async fn start_kubernetes(cfg: &AgentConfig, registry: &Registry) -> anyhow::Result<StateFeed> {
    let client = kube::Client::try_default().await.context(
        "--source kubernetes: no Kubernetes client configuration (in-cluster service account \
         or kubeconfig)",
    )?;
    let discovery = match &cfg.cgroup_root {
        Some(root) => CgroupDiscovery::new(root),
        None => CgroupDiscovery::from_mount().context("finding the cgroup2 mount")?,
    };
    info!(cgroup_root = %discovery.mount().display(), "pod cgroups are found from their UID");
    let localizer = Localizer {
        node: cfg.node.clone(),
        discovery: Arc::new(discovery),
        unresolved: UnresolvedGauge::register(registry)?,
    };
    let kube_metrics = KubeMetrics::new(registry)?;
    let (raw_tx, raw_rx) = watch::channel(Arc::new(MeshState::default()));
    let source = kubernetes::run(
        client,
        KubeSourceConfig::new(&cfg.node),
        raw_tx,
        kube_metrics,
    );
    let mut source = tokio::spawn(source);
    let first = tokio::select! {
        first = first_snapshot(raw_rx.clone()) => first?,
        _ = &mut source => anyhow::bail!("the Kubernetes source stopped before its first snapshot"),
    };
    let initial = localizer.clone().run_blocking(first).await?;
    let (tx, rx) = watch::channel(Arc::new(initial.clone()));
    let task = tokio::spawn(async move {
        tokio::select! {
            () = localizer.follow(raw_rx, tx) => {}
            _ = &mut source => warn!("the Kubernetes source stopped"),
        }
        source.abort();
    });
    Ok(StateFeed { initial, rx, task })
}

/// Waits for the source's first snapshot (published once every kind has been listed).
async fn first_snapshot(
    mut raw: watch::Receiver<Arc<MeshState>>,
) -> anyhow::Result<Arc<MeshState>> {
    let started = tokio::time::Instant::now();
    loop {
        match tokio::time::timeout(WAIT_REPORT, raw.changed()).await {
            Ok(Ok(())) => return Ok(raw.borrow_and_update().clone()),
            Ok(Err(_)) => anyhow::bail!("the Kubernetes source stopped"),
            Err(_) => warn!(
                waited = ?started.elapsed(),
                "still waiting for the first list of every kind from the Kubernetes API"
            ),
        }
    }
}

/// Gives this node's enrolled pods their cgroup (discovery) and cgroup id.
#[derive(Clone)]
struct Localizer {
    node: String,
    discovery: Arc<CgroupDiscovery>,
    unresolved: UnresolvedGauge,
}

impl Localizer {
    /// Republishes every raw snapshot localized; retries while some pod is unresolved.
    async fn follow(
        self,
        mut raw: watch::Receiver<Arc<MeshState>>,
        tx: watch::Sender<Arc<MeshState>>,
    ) {
        let mut pending = unresolved_count(&tx.borrow());
        loop {
            let retry = tokio::time::sleep(RETRY_UNRESOLVED);
            tokio::select! {
                _ = tx.closed() => return,
                changed = raw.changed() => if changed.is_err() { return },
                () = retry, if pending > 0 => {}
            }
            let snapshot = raw.borrow_and_update().clone();
            let localized = match self.clone().run_blocking(snapshot).await {
                Ok(localized) => localized,
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "localizing a snapshot failed");
                    continue;
                }
            };
            pending = unresolved_count(&localized);
            // A retry that found nothing new changes nothing: receivers re-sync on every send.
            tx.send_if_modified(|current| {
                let changed = !same_local_view(current, &localized, &self.node);
                if changed {
                    *current = Arc::new(localized);
                }
                changed
            });
        }
    }

    /// Discovery stats directories: off the async workers.
    async fn run_blocking(self, raw: Arc<MeshState>) -> anyhow::Result<MeshState> {
        tokio::task::spawn_blocking(move || self.localize(&raw))
            .await
            .context("cgroup discovery panicked")
    }

    fn localize(&self, raw: &MeshState) -> MeshState {
        let mut state = raw.clone();
        for workload in state.workloads.values_mut() {
            if workload.node != self.node || !workload.enrolled || workload.cgroup.is_some() {
                continue;
            }
            let qos = Qos::from_class(workload.qos_class.as_deref());
            let w = Arc::make_mut(workload);
            match self.discovery.find(&w.uid, qos) {
                Ok(dir) => w.cgroup = Some(dir),
                Err(e) => w.cgroup_unresolved = Some(e.unresolved()),
            }
        }
        for (key, reason) in state::resolve_cgroups(&mut state, &self.node) {
            if let Some(w) = state.workloads.get_mut(&key) {
                Arc::make_mut(w).cgroup_unresolved = Some(crate::discovery::Unresolved {
                    reason,
                    tried: Vec::new(),
                });
            }
        }
        let unresolved = unresolved_count(&state);
        self.unresolved.set(unresolved);
        state
    }
}

fn unresolved_count(state: &MeshState) -> usize {
    state
        .workloads
        .values()
        .filter(|w| w.cgroup_unresolved.is_some())
        .count()
}

/// Whether two localized snapshots of one raw snapshot agree on this node's pods.
fn same_local_view(current: &MeshState, next: &MeshState, node: &str) -> bool {
    if current.changed_at != next.changed_at
        || current.workloads.len() != next.workloads.len()
        || current.services.len() != next.services.len()
    {
        return false;
    }
    let local = |s: &MeshState| -> Vec<(WorkloadKey, Option<PathBuf>, Option<u64>)> {
        s.workloads
            .values()
            .filter(|w| w.node == node)
            .map(|w| (w.key.clone(), w.cgroup.clone(), w.cgroup_id))
            .collect()
    };
    local(current) == local(next)
}

/// The histogram of how long a change of the mesh state (a Kubernetes event, an edit of the
/// state file) takes to reach the datapath maps.
#[derive(Clone)]
pub struct PropagationMetrics(Histogram);

impl PropagationMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let histogram = Histogram::with_opts(
            HistogramOpts::new(
                "weft_state_change_to_datapath_seconds",
                "Time from the source seeing a change of the mesh state to the datapath maps \
                 holding it.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        registry.register(Box::new(histogram.clone()))?;
        Ok(PropagationMetrics(histogram))
    }

    /// Called once the datapath holds `snapshot`.
    pub fn applied(&self, snapshot: &MeshState) {
        if let Some(at) = snapshot.changed_at {
            self.0.observe(at.elapsed().as_secs_f64());
        }
    }
}

pub fn log_unresolved(failed: &[(WorkloadKey, String)]) {
    for (workload, reason) in failed {
        warn!(%workload, %reason, "pod cgroup not resolved; the pod is not captured");
    }
}
