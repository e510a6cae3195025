//! The Kubernetes source's metrics, registered on the registry the agent passes in.

use prometheus::{
    Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, exponential_buckets,
};

use super::kinds::Kind;

/// `weft_kube_events_total{kind, type}`, `weft_kube_snapshot_seconds`, `weft_kube_objects{kind}`
/// and `weft_kube_rejected_objects_total{kind}`. Clones share the same series.
#[derive(Clone, Debug)]
pub struct KubeMetrics {
    events: IntCounterVec,
    snapshot: Histogram,
    objects: IntGaugeVec,
    rejected: IntCounterVec,
}

impl KubeMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<KubeMetrics> {
        let events = IntCounterVec::new(
            Opts::new(
                "weft_kube_events_total",
                "Watch events received from the Kubernetes API, by kind and type \
                 (apply, delete, init, init_apply, init_done, error).",
            ),
            &["kind", "type"],
        )?;
        // 1 ms to about 16 s: a debounce window is 100 ms by default.
        let snapshot = Histogram::with_opts(
            HistogramOpts::new(
                "weft_kube_snapshot_seconds",
                "Time from the first event of a burst to the snapshot that includes it.",
            )
            .buckets(exponential_buckets(0.001, 2.0, 15)?),
        )?;
        let objects = IntGaugeVec::new(
            Opts::new(
                "weft_kube_objects",
                "Objects of each kind held by the Kubernetes source (translated, not rejected).",
            ),
            &["kind"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "weft_kube_rejected_objects_total",
                "Objects left out of the mesh model because they are invalid, by kind; each \
                 object version is counted once.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(snapshot.clone()))?;
        registry.register(Box::new(objects.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        for kind in Kind::ALL {
            objects.with_label_values(&[kind.as_str()]);
            rejected.with_label_values(&[kind.as_str()]);
        }
        Ok(KubeMetrics {
            events,
            snapshot,
            objects,
            rejected,
        })
    }

    pub(super) fn event(&self, kind: Kind, event_type: &str) {
        self.events
            .with_label_values(&[kind.as_str(), event_type])
            .inc();
    }

    pub(super) fn snapshot_published(&self, seconds: f64) {
        self.snapshot.observe(seconds);
    }

    pub(super) fn set_objects(&self, kind: Kind, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.objects.with_label_values(&[kind.as_str()]).set(count);
    }

    pub(super) fn rejected(&self, kind: Kind) {
        self.rejected.with_label_values(&[kind.as_str()]).inc();
    }

    /// `weft_kube_events_total{kind, type}`.
    pub fn events(&self, kind: Kind, event_type: &str) -> u64 {
        self.events
            .with_label_values(&[kind.as_str(), event_type])
            .get()
    }

    /// How many snapshots were published.
    pub fn snapshots(&self) -> u64 {
        self.snapshot.get_sample_count()
    }

    /// `weft_kube_objects{kind}`.
    pub fn objects(&self, kind: Kind) -> i64 {
        self.objects.with_label_values(&[kind.as_str()]).get()
    }

    /// `weft_kube_rejected_objects_total{kind}`.
    pub fn rejections(&self, kind: Kind) -> u64 {
        self.rejected.with_label_values(&[kind.as_str()]).get()
    }
}
