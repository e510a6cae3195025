//! The metrics and readiness HTTP server (HTTP/1 only): `GET /metrics`, `GET /healthz/ready`
//! and `GET /config_dump` (the agent's configuration, mesh state and certificates, as JSON;
//! never a private key). It listens on localhost by default.
//!
//! It runs next to the proxy but shares nothing with it beyond the metrics registry and the
//! readiness flag, so a slow scraper cannot hold up proxied traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::Metrics;

/// Whether the agent is ready: the datapath is attached and the proxy is accepting.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the `/config_dump` document when asked.
pub type ConfigDump = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Serves until `stop` turns true; connections still open then are dropped.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Readiness,
    dump: ConfigDump,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "metrics server accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let ready = ready.clone();
        let dump = dump.clone();
        let builder = builder.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = respond(&req, &metrics, &ready, &dump);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                res = conn => if let Err(e) = res {
                    debug!(peer = %peer, error = %e, "metrics connection ended with an error");
                },
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
    }
}

fn respond(
    req: &Request<Incoming>,
    metrics: &Metrics,
    ready: &Readiness,
    dump: &ConfigDump,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/config_dump") => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&dump()).unwrap_or_default(),
        ),
        (&Method::GET, "/metrics") => match metrics.encode() {
            Ok(text) => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("encoding metrics: {e:#}\n"),
            ),
        },
        (&Method::GET, "/healthz/ready") if ready.get() => {
            reply(StatusCode::OK, "text/plain", "ready\n".into())
        }
        (&Method::GET, "/healthz/ready") => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".into(),
        ),
        (_, "/metrics" | "/healthz/ready" | "/config_dump") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn serves_metrics_and_readiness() -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::new()?);
        metrics.reload(crate::state::ReloadResult::Rejected);
        let ready = Readiness::default();
        let (stop_tx, stop) = watch::channel(false);
        let dump: ConfigDump = Arc::new(|| serde_json::json!({"config": {"node": "n1"}}));
        let server = tokio::spawn(serve(listener, metrics, ready.clone(), dump, stop));

        assert!(
            get(addr, "/healthz/ready")
                .await?
                .starts_with("HTTP/1.1 503")
        );
        ready.set(true);
        assert!(
            get(addr, "/healthz/ready")
                .await?
                .starts_with("HTTP/1.1 200")
        );
        let body = get(addr, "/metrics").await?;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.contains(r#"weft_config_reloads_total{result="rejected"} 1"#),
            "{body}"
        );
        assert!(get(addr, "/nope").await?.starts_with("HTTP/1.1 404"));
        let dumped = get(addr, "/config_dump").await?;
        assert!(dumped.contains(r#""node": "n1""#), "{dumped}");

        stop_tx.send(true)?;
        tokio::time::timeout(Duration::from_secs(5), server).await??;
        Ok(())
    }
}
