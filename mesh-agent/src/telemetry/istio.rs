//! Istio's standard metrics under weft names (`weft_requests_total`, ...), with Istio's label
//! schema, so dashboards and tools written for Istio port with a rename.
//!
//! Both ends report: the outbound proxy with `reporter="source"`, the inbound side with
//! `reporter="destination"`. Labels are resolved once per connection ([`ConnLabels`]); a
//! [`ConnSeries`] then keeps the resolved series of its connection, so a request costs a short
//! scan of a small per-connection cache and a few atomic increments.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    exponential_buckets,
};
use serde::Serialize;

use crate::identity::SpiffeId;
use crate::state::Workload;

/// The label value of anything weft cannot name.
pub const UNKNOWN: &str = "unknown";

const REQUEST_LABELS: [&str; 13] = [
    "reporter",
    "source_workload",
    "source_namespace",
    "source_principal",
    "destination_workload",
    "destination_namespace",
    "destination_service",
    "destination_principal",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// Istio's TCP series carry no response code or gRPC status.
const TCP_LABELS: [&str; 11] = [
    "reporter",
    "source_workload",
    "source_namespace",
    "source_principal",
    "destination_workload",
    "destination_namespace",
    "destination_service",
    "destination_principal",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
];

/// Istio's default duration buckets, in milliseconds.
const DURATION_MS_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Per-connection caches stop growing here; further label sets are looked up every time.
const CACHE_LIMIT: usize = 32;

/// Which end of the connection reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reporter {
    Source,
    Destination,
}

impl Reporter {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// One end of a connection as labels name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub workload: String,
    pub namespace: String,
    /// The SPIFFE ID, or `unknown` without mTLS.
    pub principal: String,
}

impl Peer {
    pub fn unknown() -> Self {
        Peer {
            workload: UNKNOWN.into(),
            namespace: UNKNOWN.into(),
            principal: UNKNOWN.into(),
        }
    }

    pub fn of(workload: Option<&Workload>, principal: Option<&SpiffeId>) -> Self {
        let (name, namespace) = workload.map_or((UNKNOWN, UNKNOWN), |w| {
            (w.key.name.as_str(), w.key.namespace.as_str())
        });
        Peer {
            workload: name.to_owned(),
            namespace: namespace.to_owned(),
            principal: principal.map_or_else(|| UNKNOWN.to_owned(), ToString::to_string),
        }
    }
}

/// Who talks to whom over one connection, from one reporter's point of view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnLabels {
    pub reporter: Reporter,
    pub source: Peer,
    /// On the source side of an HTTP connection, each request's endpoint decides it.
    pub destination: Peer,
    /// `namespace/name`, or `unknown` (passthrough traffic).
    pub service: String,
    /// `tcp`, `http` or `grpc`.
    pub protocol: &'static str,
    /// Carried under workload identities (an mTLS tunnel, or the agent's own hand-over).
    pub mtls: bool,
}

impl ConnLabels {
    pub fn security_policy(&self) -> &'static str {
        if self.mtls { "mutual_tls" } else { "none" }
    }

    fn tcp_values<'a>(&'a self, flags: &'a str) -> [&'a str; 11] {
        [
            self.reporter.as_str(),
            &self.source.workload,
            &self.source.namespace,
            &self.source.principal,
            &self.destination.workload,
            &self.destination.namespace,
            &self.service,
            &self.destination.principal,
            self.protocol,
            flags,
            self.security_policy(),
        ]
    }
}

/// Names the destination workload of an endpoint (the source side's HTTP requests).
pub type Resolver = dyn Fn(SocketAddr) -> Peer + Send + Sync;

/// What distinguishes one request's series from another's on the same connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestKey {
    /// The endpoint that answered, when the source side chose one.
    pub endpoint: Option<SocketAddr>,
    pub grpc: bool,
    pub status: u16,
    pub grpc_status: Option<u16>,
    pub flags: &'static str,
}

/// The measurements of one finished request.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub duration: Duration,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// The eight series.
#[derive(Clone)]
pub struct IstioMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: HistogramVec,
    response_bytes: HistogramVec,
    opened: IntCounterVec,
    closed: IntCounterVec,
    sent: IntCounterVec,
    received: IntCounterVec,
}

impl IstioMetrics {
    pub(super) fn register(registry: &Registry) -> anyhow::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> anyhow::Result<IntCounterVec> {
            let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| -> anyhow::Result<_> {
            let opts = HistogramOpts::new(name, help).buckets(buckets);
            let vec = HistogramVec::new(opts, &REQUEST_LABELS)?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let bytes = exponential_buckets(1.0, 10.0, 9)?;
        Ok(IstioMetrics {
            requests: counter(
                "weft_requests_total",
                "HTTP and gRPC requests, as each end saw them.",
                &REQUEST_LABELS,
            )?,
            duration: histogram(
                "weft_request_duration_milliseconds",
                "Time from a request's arrival to the end of its response.",
                DURATION_MS_BUCKETS.to_vec(),
            )?,
            request_bytes: histogram("weft_request_bytes", "Request body sizes.", bytes.clone())?,
            response_bytes: histogram("weft_response_bytes", "Response body sizes.", bytes)?,
            opened: counter(
                "weft_tcp_connections_opened_total",
                "Connections opened through the node proxy.",
                &TCP_LABELS,
            )?,
            closed: counter(
                "weft_tcp_connections_closed_total",
                "Connections closed by the node proxy.",
                &TCP_LABELS,
            )?,
            sent: counter(
                "weft_tcp_sent_bytes_total",
                "Bytes sent by the source workload over a connection (its requests).",
                &TCP_LABELS,
            )?,
            received: counter(
                "weft_tcp_received_bytes_total",
                "Bytes received by the source workload over a connection (the responses).",
                &TCP_LABELS,
            )?,
        })
    }

    /// The series of one connection.
    pub fn connection(&self, labels: ConnLabels) -> ConnSeries {
        ConnSeries {
            metrics: self.clone(),
            labels,
            cache: Mutex::new(Vec::new()),
        }
    }
}

/// The resolved request series of one label set.
struct RequestSeries {
    total: IntCounter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// The series of one connection: its labels and the request series seen so far.
pub struct ConnSeries {
    metrics: IstioMetrics,
    labels: ConnLabels,
    cache: Mutex<Vec<(RequestKey, RequestSeries)>>,
}

impl ConnSeries {
    pub fn labels(&self) -> &ConnLabels {
        &self.labels
    }

    pub fn opened(&self) {
        let values = self.labels.tcp_values("-");
        self.metrics.opened.with_label_values(&values).inc();
    }

    /// `sent`: bytes from the source workload; `received`: bytes to it.
    pub fn closed(&self, flags: &str, sent: u64, received: u64) {
        let values = self.labels.tcp_values(flags);
        self.metrics.closed.with_label_values(&values).inc();
        self.metrics.sent.with_label_values(&values).inc_by(sent);
        self.metrics
            .received
            .with_label_values(&values)
            .inc_by(received);
    }

    pub fn request(&self, key: RequestKey, measured: Measured, resolver: Option<&Resolver>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let found = cache.iter().position(|(k, _)| *k == key);
        let series = match found {
            Some(i) => &cache[i].1,
            None if cache.len() < CACHE_LIMIT => {
                let series = self.resolve(&key, resolver);
                cache.push((key, series));
                &cache[cache.len() - 1].1
            }
            None => {
                drop(cache);
                return observe(&self.resolve(&key, resolver), measured);
            }
        };
        observe(series, measured);
    }

    /// The destination of a request: its endpoint's workload, else the connection's.
    pub fn destination(&self, endpoint: Option<SocketAddr>, resolver: Option<&Resolver>) -> Peer {
        match (endpoint, resolver) {
            (Some(e), Some(resolve)) => resolve(e),
            _ => self.labels.destination.clone(),
        }
    }

    fn resolve(&self, key: &RequestKey, resolver: Option<&Resolver>) -> RequestSeries {
        let l = &self.labels;
        let dst = self.destination(key.endpoint, resolver);
        let code = key.status.to_string();
        let grpc = key
            .grpc_status
            .map_or_else(|| "-".to_owned(), |s| s.to_string());
        let values: [&str; 13] = [
            l.reporter.as_str(),
            &l.source.workload,
            &l.source.namespace,
            &l.source.principal,
            &dst.workload,
            &dst.namespace,
            &l.service,
            &dst.principal,
            if key.grpc { "grpc" } else { "http" },
            &code,
            &grpc,
            key.flags,
            l.security_policy(),
        ];
        let m = &self.metrics;
        RequestSeries {
            total: m.requests.with_label_values(&values),
            duration: m.duration.with_label_values(&values),
            request_bytes: m.request_bytes.with_label_values(&values),
            response_bytes: m.response_bytes.with_label_values(&values),
        }
    }
}

fn observe(series: &RequestSeries, measured: Measured) {
    series.total.inc();
    series
        .duration
        .observe(measured.duration.as_secs_f64() * 1000.0);
    series.request_bytes.observe(measured.request_bytes as f64);
    series
        .response_bytes
        .observe(measured.response_bytes as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(workload: &str) -> Peer {
        Peer {
            workload: workload.into(),
            namespace: "shop".into(),
            principal: format!("spiffe://cluster.local/ns/shop/sa/{workload}"),
        }
    }

    #[test]
    fn requests_land_in_their_own_series_per_status_and_endpoint() -> anyhow::Result<()> {
        let registry = Registry::new();
        let metrics = IstioMetrics::register(&registry)?;
        let conn = metrics.connection(ConnLabels {
            reporter: Reporter::Source,
            source: peer("web"),
            destination: Peer::unknown(),
            service: "shop/api".into(),
            protocol: "http",
            mtls: true,
        });
        let a: SocketAddr = "10.0.0.1:8080".parse()?;
        let b: SocketAddr = "10.0.0.2:8080".parse()?;
        let resolve = move |e: SocketAddr| peer(if e == a { "api-a" } else { "api-b" });
        let key = |endpoint, status, grpc_status: Option<u16>, flags| RequestKey {
            endpoint: Some(endpoint),
            grpc: grpc_status.is_some(),
            status,
            grpc_status,
            flags,
        };
        let measured = |ms, out| Measured {
            duration: Duration::from_millis(ms),
            request_bytes: 10,
            response_bytes: out,
        };
        for _ in 0..3 {
            conn.request(key(a, 200, None, "-"), measured(2, 100), Some(&resolve));
        }
        conn.request(key(b, 503, None, "UF"), measured(40, 0), Some(&resolve));
        conn.request(key(b, 200, Some(5), "-"), measured(1, 7), Some(&resolve));

        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather())?;
        let common = r#"connection_security_policy="mutual_tls",destination_namespace="shop""#;
        let web = r#"source_namespace="shop",source_principal="spiffe://cluster.local/ns/shop/sa/web",source_workload="web""#;
        let line = |dst: &str, grpc: &str, proto: &str, reporter_code_flags: &str| {
            format!(
                "{{{common},destination_principal=\"spiffe://cluster.local/ns/shop/sa/{dst}\",destination_service=\"shop/api\",destination_workload=\"{dst}\",grpc_response_status=\"{grpc}\",reporter=\"source\",request_protocol=\"{proto}\",{reporter_code_flags},{web}}}"
            )
        };
        let ok = line(
            "api-a",
            "-",
            "http",
            r#"response_code="200",response_flags="-""#,
        );
        let failed = line(
            "api-b",
            "-",
            "http",
            r#"response_code="503",response_flags="UF""#,
        );
        let grpc = line(
            "api-b",
            "5",
            "grpc",
            r#"response_code="200",response_flags="-""#,
        );
        for expected in [
            format!("weft_requests_total{ok} 3"),
            format!("weft_request_duration_milliseconds_count{ok} 3"),
            format!("weft_response_bytes_sum{ok} 300"),
            format!("weft_request_bytes_sum{ok} 30"),
            format!("weft_requests_total{failed} 1"),
            format!("weft_request_duration_milliseconds_sum{failed} 40"),
            format!("weft_requests_total{grpc} 1"),
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "missing {expected}\n{text}"
            );
        }
        Ok(())
    }
}
