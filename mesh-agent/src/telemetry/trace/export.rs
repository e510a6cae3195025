//! The OTLP/HTTP exporter: a background task that takes finished spans from a bounded queue,
//! batches them and posts them as JSON to `{endpoint}/v1/traces`.
//!
//! The request path only ever calls `try_send` on the queue: a full queue drops the span (and
//! counts it) rather than wait. Each batch goes out on a fresh HTTP/1.1 connection with one
//! deadline for connect, send and answer; a failed batch is dropped and counted, never retried,
//! so a dead collector costs one connection attempt per batch and nothing else.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use prometheus::IntCounterVec;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::otlp::{SpanRecord, encode};

/// Spans waiting for export at most; more are dropped.
pub const QUEUE_CAPACITY: usize = 4096;
/// Spans per request at most.
const MAX_BATCH: usize = 512;
/// How long a batch waits for company after its first span.
const BATCH_WINDOW: Duration = Duration::from_millis(500);
/// Connect, send and answer of one export request together.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where spans go: an `http://host:port[/prefix]` collector base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// `/v1/traces` under the URL's path.
    path: String,
}

impl Endpoint {
    /// Accepts `http://` URLs only: the exporter does not speak TLS (a node-local collector, or
    /// one reached over the cluster network, is the expected deployment).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("OTLP endpoint {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("OTLP endpoint {url:?}: only http:// is supported");
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("OTLP endpoint {url:?} has no host"))?;
        if uri.query().is_some() {
            bail!("OTLP endpoint {url:?}: a query is not allowed");
        }
        Ok(Endpoint {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            path: format!("{}/v1/traces", uri.path().trim_end_matches('/')),
        })
    }

    /// The `Host` header: the host as written, with its port.
    fn host_header(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }
}

/// The exporter's counters: `exported`, and `dropped` by reason.
#[derive(Clone)]
pub struct ExportCounters {
    pub exported: prometheus::IntCounter,
    pub dropped: IntCounterVec,
}

/// Runs until every sender of `queue` is gone and the last batch is out.
pub async fn run(
    mut queue: mpsc::Receiver<SpanRecord>,
    endpoint: Endpoint,
    node: String,
    counters: ExportCounters,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        let until = Instant::now() + BATCH_WINDOW;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(until, queue.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let body = encode(&node, &batch);
        batch.clear();
        match tokio::time::timeout(EXPORT_TIMEOUT, post(&endpoint, body)).await {
            Ok(Ok(())) => counters.exported.inc_by(n),
            Ok(Err(e)) => {
                tracing::warn!(spans = n, error = %format!("{e:#}"), "exporting spans failed");
                counters
                    .dropped
                    .with_label_values(&["export_failed"])
                    .inc_by(n);
            }
            Err(_) => {
                tracing::warn!(spans = n, "exporting spans timed out");
                counters
                    .dropped
                    .with_label_values(&["export_failed"])
                    .inc_by(n);
            }
        }
    }
}

async fn post(endpoint: &Endpoint, body: Vec<u8>) -> anyhow::Result<()> {
    let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .with_context(|| format!("connecting to {}", endpoint.host_header()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let request = Request::post(endpoint.path.as_str())
        .header(HOST, endpoint.host_header())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let result = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        // Read the answer so that the collector sees a clean exchange; its content is unused.
        let _ = response.into_body().collect().await;
        if !status.is_success() {
            bail!("the collector answered {status}");
        }
        Ok(())
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_to_host_port_and_path() -> anyhow::Result<()> {
        let e = Endpoint::parse("http://10.0.0.1:4318")?;
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("10.0.0.1", 4318, "/v1/traces")
        );
        let e = Endpoint::parse("http://collector.obs/otlp/")?;
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("collector.obs", 80, "/otlp/v1/traces")
        );
        let e = Endpoint::parse("http://[fd00::1]:4318")?;
        assert_eq!(e.host_header(), "[fd00::1]:4318");
        for bad in [
            "https://c:4318",
            "c:4318",
            "http://c:4318/?x=1",
            "not a url",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
