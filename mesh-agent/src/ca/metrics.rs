//! The CA's own metrics (its own registry, not the agent's): requests by result and reason,
//! served as Prometheus text on `--metrics-addr` at `/metrics`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{IntCounterVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tracing::debug;

/// Reasons a request can be refused: the `reason` label values (bounded).
pub(super) const REFUSALS: [&str; 14] = [
    "no_token",
    "unknown_token",
    "token_rejected",
    "wrong_audience",
    "wrong_account",
    "no_node_name",
    "token_review_failed",
    "bad_request",
    "bad_csr",
    "bad_key",
    "bad_san",
    "wrong_trust_domain",
    "not_on_node",
    "internal",
];

#[derive(Clone)]
pub struct CaMetrics {
    registry: Registry,
    requests: IntCounterVec,
}

impl CaMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "weft_ca_requests_total",
                "Certificate requests to the mesh CA, by result and refusal reason.",
            ),
            &["result", "reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        requests.with_label_values(&["issued", "none"]);
        for reason in REFUSALS {
            requests.with_label_values(&["refused", reason]);
        }
        Ok(CaMetrics { registry, requests })
    }

    /// The registry, for series other parts of the CA process add (the Kubernetes source's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(super) fn issued(&self) {
        self.requests.with_label_values(&["issued", "none"]).inc();
    }

    pub(super) fn refused(&self, reason: &str) {
        self.requests.with_label_values(&["refused", reason]).inc();
    }

    /// The value of `weft_ca_requests_total{result, reason}`.
    pub fn requests(&self, result: &str, reason: &str) -> u64 {
        self.requests.with_label_values(&[result, reason]).get()
    }

    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding metrics: {e}\n"))
    }
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub(super) async fn serve_metrics(listener: TcpListener, metrics: CaMetrics) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "CA metrics accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let response = if req.uri().path() == "/metrics" {
                    reply(StatusCode::OK, metrics.encode())
                } else {
                    reply(StatusCode::NOT_FOUND, "not found\n".into())
                };
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(peer = %peer, error = %e, "CA metrics connection ended with an error");
            }
        });
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
