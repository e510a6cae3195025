//! The L7 series: protocol detection outcomes, HTTP requests by status and latency, responses
//! the proxy generated itself, retries and mirrors.
//!
//! Request series are updated on every request, so the label lookups are paid once per client
//! connection: a [`RequestRecorder`] holds the resolved series of its connection (and resolves a
//! status code's counter the first time that code is seen).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use super::metrics::TcpLabels;

const REQUEST_LABELS: [&str; 4] = [
    "reporter",
    "source_workload",
    "source_namespace",
    "destination_service",
];

/// Latency buckets in seconds, 0.5 ms to 30 s.
const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];

/// Status codes whose counters a recorder keeps at hand.
const COMMON_CODES: [u16; 16] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 429, 431, 500, 502, 503, 504,
];

/// Every L7 series.
#[derive(Clone)]
pub struct HttpMetrics {
    detections: IntCounterVec,
    requests: IntCounterVec,
    duration: HistogramVec,
    generated: IntCounterVec,
    retries: IntCounterVec,
    retries_skipped: IntCounterVec,
    mirrors: IntCounterVec,
}

impl HttpMetrics {
    pub(super) fn register(registry: &Registry) -> anyhow::Result<Self> {
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> anyhow::Result<IntCounterVec> {
                let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(vec.clone()))?;
                Ok(vec)
            };
        let mut request_code = REQUEST_LABELS.to_vec();
        request_code.push("response_code");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "weft_http_request_duration_seconds",
                "Time from a request's arrival at the node proxy to its response headers.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &REQUEST_LABELS,
        )?;
        registry.register(Box::new(duration.clone()))?;
        Ok(HttpMetrics {
            detections: counter_vec(
                "weft_protocol_detections_total",
                "Protocol decisions on captured connections, by protocol and how it was decided.",
                &["protocol", "reason"],
            )?,
            requests: counter_vec(
                "weft_http_requests_total",
                "HTTP requests through the node proxy, by response status.",
                &request_code,
            )?,
            duration,
            generated: counter_vec(
                "weft_http_proxy_responses_total",
                "Responses the node proxy generated itself (x-weft-response), by mechanism.",
                &["destination_service", "mechanism"],
            )?,
            retries: counter_vec(
                "weft_retries_total",
                "Request retries made, by service and the result of the retry (success: it got \
                 an answer the policy does not retry).",
                &["service", "result"],
            )?,
            retries_skipped: counter_vec(
                "weft_retries_skipped_total",
                "Retries a policy asked for but that were not made, by service and reason.",
                &["service", "reason"],
            )?,
            mirrors: counter_vec(
                "weft_http_mirrors_total",
                "Mirrored request copies, by what became of them.",
                &["result"],
            )?,
        })
    }

    /// Makes the known label values of `detections` visible at zero.
    pub fn init_detections(&self, protocols: &[&str], reasons: &[&str]) {
        for p in protocols {
            for r in reasons {
                self.detections.with_label_values(&[p, r]);
            }
        }
    }

    pub fn detection(&self, protocol: &str, reason: &str) {
        self.detections.with_label_values(&[protocol, reason]).inc();
    }

    pub fn generated(&self, service: &str, mechanism: &str) {
        self.generated
            .with_label_values(&[service, mechanism])
            .inc();
    }

    pub fn retry(&self, service: &str, result: &str) {
        self.retries.with_label_values(&[service, result]).inc();
    }

    pub fn retry_skipped(&self, service: &str, reason: &str) {
        self.retries_skipped
            .with_label_values(&[service, reason])
            .inc();
    }

    pub fn mirror(&self, result: &str) {
        self.mirrors.with_label_values(&[result]).inc();
    }

    /// The recorder of one client connection.
    pub fn recorder(&self, labels: &TcpLabels) -> RequestRecorder {
        let values = labels.values();
        RequestRecorder {
            requests: self.requests.clone(),
            values: values.map(str::to_owned),
            duration: self.duration.with_label_values(&values),
            common: Default::default(),
        }
    }
}

/// The request series of one client connection.
pub struct RequestRecorder {
    requests: IntCounterVec,
    values: [String; 4],
    duration: Histogram,
    common: [OnceLock<IntCounter>; COMMON_CODES.len()],
}

impl RequestRecorder {
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        match COMMON_CODES.iter().position(|c| *c == status) {
            Some(i) => self.common[i].get_or_init(|| self.counter(status)).inc(),
            None => self.counter(status).inc(),
        }
    }

    fn counter(&self, status: u16) -> IntCounter {
        let code = itoa_3(status);
        let code = std::str::from_utf8(&code).unwrap_or("000");
        let [a, b, c, d] = &self.values;
        self.requests.with_label_values(&[a, b, c, d, code])
    }
}

/// A status code as three ASCII digits.
fn itoa_3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}
