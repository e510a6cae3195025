//! The L7 series besides Istio's request series (`istio.rs`): protocol detection outcomes,
//! responses the proxy generated itself, retries and mirrors.

use prometheus::{IntCounterVec, Opts, Registry};

/// Every L7 series.
#[derive(Clone)]
pub struct HttpMetrics {
    detections: IntCounterVec,
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
        Ok(HttpMetrics {
            detections: counter_vec(
                "weft_protocol_detections_total",
                "Protocol decisions on captured connections, by protocol and how it was decided.",
                &["protocol", "reason"],
            )?,
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
}
