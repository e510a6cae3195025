//! The source's loop: apply each update to the cache, publish a snapshot once per debounce
//! window.
//!
//! The first change of a burst opens a window of `debounce`; every update that arrives in it
//! is applied to the cache, and one snapshot is built and published when it closes. A window
//! is never extended, so a steady stream of changes still publishes every `debounce`. Nothing
//! is published before every kind has been listed once, so that the first snapshot does not
//! show, say, pods without their namespaces (unenrolled) for a moment.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::KubeSourceConfig;
use super::cache::{Cache, Update};
use super::kinds::Kind;
use super::metrics::KubeMetrics;
use super::snapshot::{self, Problem};
use super::translate::ObjectKey;
use crate::state::MeshState;

pub(super) async fn run(
    mut updates: impl Stream<Item = Update> + Unpin,
    cfg: KubeSourceConfig,
    tx: watch::Sender<Arc<MeshState>>,
    metrics: KubeMetrics,
) {
    let mut source = Source {
        cache: Cache::new(),
        metrics,
        reported: HashMap::new(),
        pending_since: None,
    };
    loop {
        let update = tokio::select! {
            _ = tx.closed() => return,
            update = updates.next() => update,
        };
        let Some(update) = update else { return };
        if !source.apply(update) {
            continue;
        }
        let window = tokio::time::sleep(cfg.debounce);
        tokio::pin!(window);
        loop {
            tokio::select! {
                biased;
                _ = &mut window => break,
                update = updates.next() => match update {
                    Some(update) => { source.apply(update); }
                    None => return,
                },
            }
        }
        if source.cache.synced() {
            source.publish(&tx);
        }
    }
}

struct Source {
    cache: Cache,
    metrics: KubeMetrics,
    /// The problems of the last snapshot, so that each is logged (and counted) once.
    reported: HashMap<(Kind, ObjectKey), String>,
    /// When the first change not yet in a published snapshot arrived.
    pending_since: Option<Instant>,
}

impl Source {
    /// Applies one update; true when it changed what the next snapshot holds.
    fn apply(&mut self, update: Update) -> bool {
        let kind = update.kind;
        self.metrics.event(kind, update.change.label());
        let applied = self.cache.apply(update);
        if let Some((key, reason)) = applied.rejected {
            warn!(kind = %kind, object = %key, reason = %reason, "Kubernetes object rejected");
            self.metrics.rejected(kind);
        }
        if applied.changed && self.pending_since.is_none() {
            self.pending_since = Some(Instant::now());
        }
        applied.changed
    }

    fn publish(&mut self, tx: &watch::Sender<Arc<MeshState>>) {
        let (mut state, problems) = snapshot::build(&mut self.cache);
        state.changed_at = self.pending_since.map(Instant::into_std);
        self.report(problems);
        for kind in Kind::ALL {
            self.metrics.set_objects(kind, self.cache.len(kind));
        }
        debug!(
            workloads = state.workloads.len(),
            services = state.services.len(),
            routes = state.routes.len(),
            "publishing a mesh snapshot from Kubernetes"
        );
        tx.send_replace(Arc::new(state));
        if let Some(since) = self.pending_since.take() {
            self.metrics
                .snapshot_published(since.elapsed().as_secs_f64());
        }
    }

    /// Logs the problems that are new since the last snapshot; counts new rejections.
    fn report(&mut self, problems: Vec<Problem>) {
        let mut now = HashMap::new();
        for p in problems {
            let slot = (p.kind, p.key);
            if self.reported.get(&slot) != Some(&p.reason) {
                if p.rejects {
                    self.metrics.rejected(p.kind);
                    warn!(kind = %p.kind, object = %slot.1, reason = %p.reason, "Kubernetes object rejected");
                } else {
                    warn!(kind = %p.kind, object = %slot.1, problem = %p.reason, "Kubernetes object partly applied");
                }
            }
            now.insert(slot, p.reason);
        }
        let fixed = self
            .reported
            .keys()
            .filter(|k| !now.contains_key(*k))
            .count();
        if fixed > 0 {
            info!(
                objects = fixed,
                "Kubernetes objects rejected before are now applied (or gone)"
            );
        }
        self.reported = now;
    }
}
