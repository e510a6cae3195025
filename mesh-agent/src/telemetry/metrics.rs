//! The agent's Prometheus metrics: one registry, the series the proxy and the state watcher
//! update as things happen, and the datapath series read from the kernel at scrape time.
//!
//! Label values are bounded: workloads and services come from the mesh state, reasons and
//! results from fixed lists; addresses never become labels.

use std::sync::{Arc, Mutex, PoisonError};

use mesh_common::Counter;

use super::authz::AuthzMetrics;
use super::events::Events;
use super::http::HttpMetrics;
use super::istio::{ConnLabels, IstioMetrics};
use super::mesh::MeshMetrics;
use super::programs::ProgramCollector;
use super::request::ConnRecorder;
use super::sockmap::SockmapSeries;
use crate::datapath::ProgramRuns;
use crate::state::ReloadResult;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Why the outbound proxy closed a connection without proxying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// `--max-connections` connections were already in flight.
    Limit,
    /// The kernel had no origin record for the socket: it was not captured by the datapath.
    NoOrigin,
}

impl RefuseReason {
    pub const ALL: [RefuseReason; 2] = [RefuseReason::Limit, RefuseReason::NoOrigin];

    pub const fn as_str(self) -> &'static str {
        match self {
            RefuseReason::Limit => "limit",
            RefuseReason::NoOrigin => "no_origin",
        }
    }
}

/// What the metrics need from the datapath; the agent implements it over the live datapath.
pub trait DatapathStats: Send + Sync {
    fn counters(&self) -> anyhow::Result<Vec<(Counter, u64)>>;
    fn map_entries(&self) -> anyhow::Result<Vec<(&'static str, usize)>>;
    /// The kernel's run statistics of each program (none by default: a datapath without
    /// programs of its own).
    fn program_runs(&self) -> anyhow::Result<Vec<ProgramRuns>> {
        Ok(Vec::new())
    }
}

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    istio: IstioMetrics,
    events: Events,
    refused: IntCounterVec,
    reloads: IntCounterVec,
    http: HttpMetrics,
    authz: AuthzMetrics,
    mesh: Arc<MeshMetrics>,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> anyhow::Result<IntCounterVec> {
                let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(vec.clone()))?;
                Ok(vec)
            };
        let http = HttpMetrics::register(&registry)?;
        let authz = AuthzMetrics::register(&registry)?;
        let mesh = Arc::new(MeshMetrics::register(&registry)?);
        let metrics = Metrics {
            istio: IstioMetrics::register(&registry)?,
            events: Events::register(&registry)?,
            http,
            authz,
            mesh,
            refused: counter_vec(
                "weft_proxy_refused_connections_total",
                "Connections the outbound proxy accepted and closed without proxying.",
                &["reason"],
            )?,
            reloads: counter_vec(
                "weft_config_reloads_total",
                "Reloads of the mesh state file, by result.",
                &["result"],
            )?,
            registry,
        };
        // Known label values start at zero, so that rates and alerts work before the first event.
        for reason in RefuseReason::ALL {
            metrics.refused.with_label_values(&[reason.as_str()]);
        }
        for result in [ReloadResult::Accepted, ReloadResult::Rejected] {
            metrics.reloads.with_label_values(&[result.as_str()]);
        }
        Ok(metrics)
    }

    /// Adds the datapath series, read from `source` on every scrape.
    pub fn register_datapath(&self, source: Arc<dyn DatapathStats>) -> anyhow::Result<()> {
        self.registry
            .register(Box::new(DatapathCollector::new(source.clone())?))?;
        self.registry
            .register(Box::new(ProgramCollector::new(source)?))?;
        Ok(())
    }

    /// The L7 series.
    pub fn http(&self) -> &HttpMetrics {
        &self.http
    }

    /// The authorization series.
    pub fn authz(&self) -> &AuthzMetrics {
        &self.authz
    }

    /// Istio's standard series.
    pub fn istio(&self) -> &IstioMetrics {
        &self.istio
    }

    /// The access log and the tap.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The telemetry of one new connection (counted as opened).
    pub fn connection(&self, labels: ConnLabels) -> Arc<ConnRecorder> {
        self.connection_resolved(labels, None)
    }

    /// As [`Metrics::connection`], naming each request's destination from its endpoint.
    pub fn connection_resolved(
        &self,
        labels: ConnLabels,
        resolver: Option<Box<crate::telemetry::istio::Resolver>>,
    ) -> Arc<ConnRecorder> {
        ConnRecorder::new(self.istio.connection(labels), self.events.clone(), resolver)
    }

    /// The registry, for series other modules own (identity certificates...).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The tunnel server's reports go here.
    pub fn tunnel_events(&self) -> Arc<dyn crate::tunnel::ServerEvents> {
        self.mesh.clone()
    }

    /// An inbound stream refused at admission (`proxy::inbound`).
    pub fn inbound_refused(&self, reason: &str) {
        self.mesh.inbound_refused(reason);
    }

    pub fn refused(&self, reason: RefuseReason) {
        self.refused.with_label_values(&[reason.as_str()]).inc();
    }

    pub fn reload(&self, result: ReloadResult) {
        self.reloads.with_label_values(&[result.as_str()]).inc();
    }

    /// Every series in the Prometheus text format.
    pub fn encode(&self) -> anyhow::Result<String> {
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }
}

/// Reads the kernel's counters and map sizes when Prometheus scrapes, so the values are never
/// older than the scrape and nothing polls the kernel between scrapes.
struct DatapathCollector {
    source: Arc<dyn DatapathStats>,
    connects: IntCounterVec,
    map_entries: IntGaugeVec,
    sockmap: SockmapSeries,
    /// Serializes scrapes: a counter is set by reset + add, which must not interleave.
    lock: Mutex<()>,
}

impl DatapathCollector {
    fn new(source: Arc<dyn DatapathStats>) -> anyhow::Result<Self> {
        Ok(DatapathCollector {
            source,
            connects: IntCounterVec::new(
                Opts::new(
                    "weft_datapath_connects_total",
                    "Connection attempts decided by the datapath, by decision: pods' outbound \
                     connect() calls, and inbound plaintext SYNs dropped for STRICT pods \
                     (dropped_plaintext).",
                ),
                &["decision"],
            )?,
            map_entries: IntGaugeVec::new(
                Opts::new("weft_datapath_map_entries", "Entries in each datapath map."),
                &["map"],
            )?,
            sockmap: SockmapSeries::new()?,
            lock: Mutex::new(()),
        })
    }
}

impl Collector for DatapathCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs = self.connects.desc();
        descs.extend(self.map_entries.desc());
        descs.extend(self.sockmap.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // On a read error the previous values stay: a scrape must not make counters go back.
        match self.source.counters() {
            Ok(counters) => {
                for (counter, value) in counters {
                    if self.sockmap.set(counter, value) {
                        continue;
                    }
                    let c = self.connects.with_label_values(&[counter.name()]);
                    c.reset();
                    c.inc_by(value);
                }
            }
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "reading datapath counters"),
        }
        match self.source.map_entries() {
            Ok(entries) => {
                for (map, n) in entries {
                    let n = i64::try_from(n).unwrap_or(i64::MAX);
                    self.map_entries.with_label_values(&[map]).set(n);
                }
            }
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "reading datapath map sizes"),
        }
        let mut families = self.connects.collect();
        families.extend(self.map_entries.collect());
        families.extend(self.sockmap.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::istio::{Peer, Reporter};
    use crate::telemetry::request::flags;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct FakeDatapath {
        captured: AtomicU64,
    }

    impl DatapathStats for FakeDatapath {
        fn counters(&self) -> anyhow::Result<Vec<(Counter, u64)>> {
            Ok(Counter::ALL
                .iter()
                .map(|c| {
                    let v = match c {
                        Counter::Captured => self.captured.load(Ordering::Relaxed),
                        Counter::SockmapRedirectedBytes => 4096,
                        _ => 0,
                    };
                    (*c, v)
                })
                .collect())
        }

        fn map_entries(&self) -> anyhow::Result<Vec<(&'static str, usize)>> {
            Ok(vec![("PODS", 3), ("ORIG_BY_CLIENT", 0)])
        }

        fn program_runs(&self) -> anyhow::Result<Vec<ProgramRuns>> {
            Ok(vec![ProgramRuns {
                program: "connect4",
                id: 42,
                run_count: self.captured.load(Ordering::Relaxed) * 2,
                run_time: std::time::Duration::from_micros(1500),
            }])
        }
    }

    #[test]
    fn text_contains_the_expected_series() -> anyhow::Result<()> {
        let metrics = Metrics::new()?;
        let fake = Arc::new(FakeDatapath {
            captured: AtomicU64::new(7),
        });
        metrics.register_datapath(fake.clone())?;
        let conn = metrics.connection(ConnLabels {
            reporter: Reporter::Source,
            source: Peer {
                workload: "client".into(),
                namespace: "shop".into(),
                principal: "spiffe://weft.local/ns/shop/sa/client".into(),
            },
            destination: Peer::unknown(),
            service: "shop/backend".into(),
            protocol: "tcp",
            mtls: true,
        });
        conn.closed(flags::NONE, None, 120, 4500);
        metrics.refused(RefuseReason::Limit);
        metrics.reload(ReloadResult::Accepted);

        let text = metrics.encode()?;
        let tcp = r#"{connection_security_policy="mutual_tls",destination_namespace="unknown",destination_principal="unknown",destination_service="shop/backend",destination_workload="unknown",reporter="source",request_protocol="tcp",response_flags="-",source_namespace="shop",source_principal="spiffe://weft.local/ns/shop/sa/client",source_workload="client"}"#;
        for line in [
            format!("weft_tcp_connections_opened_total{tcp} 1"),
            format!("weft_tcp_connections_closed_total{tcp} 1"),
            format!("weft_tcp_sent_bytes_total{tcp} 120"),
            format!("weft_tcp_received_bytes_total{tcp} 4500"),
            r#"weft_proxy_refused_connections_total{reason="limit"} 1"#.into(),
            r#"weft_proxy_refused_connections_total{reason="no_origin"} 0"#.into(),
            r#"weft_config_reloads_total{result="accepted"} 1"#.into(),
            r#"weft_config_reloads_total{result="rejected"} 0"#.into(),
            r#"weft_datapath_connects_total{decision="captured"} 7"#.into(),
            r#"weft_datapath_connects_total{decision="rejected_not_ready"} 0"#.into(),
            r#"weft_datapath_map_entries{map="PODS"} 3"#.into(),
            r#"weft_datapath_sockmap_messages_total{result="redirected"} 0"#.into(),
            "weft_datapath_sockmap_redirected_bytes_total 4096".into(),
            r#"weft_bpf_program_run_total{program="connect4"} 14"#.into(),
            r#"weft_bpf_program_run_seconds_total{program="connect4"} 0.0015"#.into(),
            "# TYPE weft_bpf_program_run_seconds_total counter".into(),
            "# TYPE weft_datapath_connects_total counter".into(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }

        assert!(
            !text.contains("decision=\"sockmap_"),
            "acceleration counters are not connect decisions:\n{text}"
        );

        // Scrape-time values follow the kernel, without double counting.
        fake.captured.store(9, Ordering::Relaxed);
        let text = metrics.encode()?;
        assert!(
            text.contains(r#"weft_datapath_connects_total{decision="captured"} 9"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weft_bpf_program_run_total{program="connect4"} 18"#),
            "{text}"
        );
        Ok(())
    }
}
