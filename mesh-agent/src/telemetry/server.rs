//! The agent's small local HTTP/1 servers: metrics (`GET /metrics` on `--metrics-addr`,
//! 127.0.0.1:15020), readiness (`GET /healthz/ready` on `--readiness-addr`, 127.0.0.1:15021),
//! and the accept loop they share with the admin API (`crate::admin`, 127.0.0.1:15000).
//!
//! Each concern has its own port, as in Istio, so that a probe, a scraper and a person at the
//! admin API cannot hold each other up; none of them shares anything with the proxy beyond the
//! metrics registry, the readiness flag and state snapshots.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
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

/// The body of an answer: whole, or streamed (the admin API's tap).
pub type ReplyBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// Answers one request from its method, path and query (the body is never read: every
/// endpoint is a `GET`).
pub type Handler = Arc<dyn Fn(&Method, &str, Option<&str>) -> Response<ReplyBody> + Send + Sync>;

/// Serves `/metrics` until `stop` turns true.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: watch::Receiver<bool>) {
    let handler: Handler = Arc::new(move |method, path, _| match (method, path) {
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
        (_, "/metrics") => get_only(),
        _ => not_found(),
    });
    serve_http(listener, "metrics", handler, stop).await;
}

/// Serves `/healthz/ready` (200 when ready, else 503) until `stop` turns true.
pub async fn serve_readiness(listener: TcpListener, ready: Readiness, stop: watch::Receiver<bool>) {
    let handler: Handler = Arc::new(move |method, path, _| match (method, path) {
        (&Method::GET, "/healthz/ready") if ready.get() => {
            reply(StatusCode::OK, "text/plain", "ready\n".into())
        }
        (&Method::GET, "/healthz/ready") => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".into(),
        ),
        (_, "/healthz/ready") => get_only(),
        _ => not_found(),
    });
    serve_http(listener, "readiness", handler, stop).await;
}

/// Accepts HTTP/1 connections on `listener` and answers each request with `handler`, until
/// `stop` turns true; connections still open then are dropped. `what` names the server in logs.
pub async fn serve_http(
    listener: TcpListener,
    what: &'static str,
    handler: Handler,
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
                warn!(server = what, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let builder = builder.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let response = handler(req.method(), req.uri().path(), req.uri().query());
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                res = conn => if let Err(e) = res {
                    debug!(server = what, peer = %peer, error = %e, "connection ended with an error");
                },
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
    }
}

/// A response with this status, content type and body.
pub fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<ReplyBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

fn get_only() -> Response<ReplyBody> {
    reply(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain",
        "GET only\n".into(),
    )
}

fn not_found() -> Response<ReplyBody> {
    reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into())
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
    async fn metrics_and_readiness_have_their_own_ports() -> anyhow::Result<()> {
        let metrics_listener = TcpListener::bind("127.0.0.1:0").await?;
        let ready_listener = TcpListener::bind("127.0.0.1:0").await?;
        let (metrics_addr, ready_addr) =
            (metrics_listener.local_addr()?, ready_listener.local_addr()?);
        let metrics = Arc::new(Metrics::new()?);
        metrics.reload(crate::state::ReloadResult::Rejected);
        let ready = Readiness::default();
        let (stop_tx, stop) = watch::channel(false);
        let servers = [
            tokio::spawn(serve(metrics_listener, metrics, stop.clone())),
            tokio::spawn(serve_readiness(ready_listener, ready.clone(), stop)),
        ];

        let probe = || get(ready_addr, "/healthz/ready");
        assert!(probe().await?.starts_with("HTTP/1.1 503"));
        ready.set(true);
        assert!(probe().await?.starts_with("HTTP/1.1 200"));
        let body = get(metrics_addr, "/metrics").await?;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.contains(r#"weft_config_reloads_total{result="rejected"} 1"#),
            "{body}"
        );
        // Each port answers its own path only.
        for (addr, path) in [
            (metrics_addr, "/healthz/ready"),
            (metrics_addr, "/config_dump"),
            (ready_addr, "/metrics"),
            (ready_addr, "/nope"),
        ] {
            assert!(get(addr, path).await?.starts_with("HTTP/1.1 404"), "{path}");
        }

        stop_tx.send(true)?;
        for server in servers {
            tokio::time::timeout(Duration::from_secs(5), server).await??;
        }
        Ok(())
    }
}
