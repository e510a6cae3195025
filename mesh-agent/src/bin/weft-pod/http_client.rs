//! `http-load`: N requests over C keep-alive connections (HTTP/1.1, or h2c with prior knowledge),
//! optionally paced to a rate, summarized by [`crate::load_report`]. Each worker owns one
//! connection and reopens it when the server (or a proxy) closes it, so the connection count a
//! test sets is the one the mesh sees.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::errors::{chain_key, error_key};
use crate::load_report::{Answer, Tally};

/// Every run ends within this time, whatever N and the rate say.
const OVERALL_CAP: Duration = Duration::from_secs(120);
/// Largest response body read; a bigger one counts as an error.
const MAX_BODY: usize = 64 << 20;

#[derive(Args)]
pub struct LoadArgs {
    /// `http://host:port/path?query`.
    #[arg(long, value_parser = parse_url)]
    url: Uri,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    count: u64,
    /// Concurrent connections, each carrying one request at a time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    #[arg(long, default_value = "GET")]
    method: Method,
    /// `name: value`; repeatable. A `host` header also sets the h2 `:authority`.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    #[arg(long)]
    body: Option<String>,
    /// h2c with prior knowledge instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// Limit per request: connect (when needed), answer and whole body.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=120_000))]
    timeout_ms: u64,
    /// Start requests at this many per second overall (default: as fast as answers come).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
}

fn parse_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text.parse().map_err(|err| format!("{err}"))?;
    if uri.scheme() != Some(&Scheme::HTTP) {
        return Err("only http:// URLs are supported".to_owned());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL needs a host".to_owned());
    }
    Ok(uri)
}

fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected `name: value`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|err| format!("{err}"))?;
    let value = HeaderValue::from_str(value.trim()).map_err(|err| format!("{err}"))?;
    Ok((name, value))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= 1e6 => Ok(rate),
        _ => Err(format!("{text:?}: a rate in (0, 1e6] requests/s")),
    }
}

/// The request every worker sends, prepared once.
struct Target {
    connect_to: String,
    http2: bool,
    method: Method,
    /// Origin form for HTTP/1.1, absolute form (scheme + `:authority`) for h2.
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Target {
    fn new(args: &LoadArgs) -> Result<Self> {
        let url_authority = args.url.authority().context("the URL has no authority")?;
        let path = args
            .url
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let host = args
            .headers
            .iter()
            .rev()
            .find(|(name, _)| name == HOST)
            .map(|(_, value)| value.clone());
        let mut headers = args.headers.clone();
        let uri = if args.http2 {
            let authority = match &host {
                Some(host) => Authority::try_from(host.as_bytes())
                    .with_context(|| format!("host header {host:?} as an h2 authority"))?,
                None => url_authority.clone(),
            };
            headers.retain(|(name, _)| name != HOST);
            Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(authority)
                .path_and_query(path)
                .build()?
        } else {
            if host.is_none() {
                headers.insert(0, (HOST, HeaderValue::from_str(url_authority.as_str())?));
            }
            Uri::from(path)
        };
        Ok(Self {
            connect_to: format!(
                "{}:{}",
                url_authority.host(),
                url_authority.port_u16().unwrap_or(80)
            ),
            http2: args.http2,
            method: args.method.clone(),
            uri,
            headers,
            body: Bytes::from(args.body.clone().unwrap_or_default()),
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = if self.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        request
    }
}

enum Connection {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Connection {
    async fn open(addr: SocketAddr, http2: bool) -> Result<Self, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|err| error_key(&err))?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        // The connection tasks end with the connection; their errors surface on the requests.
        if http2 {
            let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|err| chain_key(&err))?;
            tokio::spawn(connection);
            Ok(Self::H2(sender))
        } else {
            let (sender, connection) = http1::handshake(io).await.map_err(|err| chain_key(&err))?;
            tokio::spawn(connection);
            Ok(Self::H1(sender))
        }
    }

    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Self::H1(sender) => sender.ready().await,
            Self::H2(sender) => sender.ready().await,
        }
    }

    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> hyper::Result<http::Response<Incoming>> {
        match self {
            Self::H1(sender) => sender.send_request(request).await,
            Self::H2(sender) => sender.send_request(request).await,
        }
    }
}

/// What the workers share: the target and the run's budget.
struct Run {
    target: Target,
    addr: SocketAddr,
    count: u64,
    next: AtomicU64,
    timeout: Duration,
    rate: Option<f64>,
    started: Instant,
    deadline: Instant,
    capped: AtomicBool,
    /// Connections opened: with keep-alive, a connection that survived the run counts once.
    opened: AtomicU64,
}

pub async fn run(args: LoadArgs) -> Result<Value> {
    let target = Target::new(&args)?;
    let addr = tokio::net::lookup_host(&target.connect_to)
        .await
        .with_context(|| format!("resolving {}", target.connect_to))?
        .next()
        .with_context(|| format!("{} resolves to nothing", target.connect_to))?;
    let started = Instant::now();
    let run = Arc::new(Run {
        target,
        addr,
        count: args.count,
        next: AtomicU64::new(0),
        timeout: Duration::from_millis(args.timeout_ms),
        rate: args.rate,
        started,
        deadline: started + OVERALL_CAP,
        capped: AtomicBool::new(false),
        opened: AtomicU64::new(0),
    });
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(Arc::clone(&run))))
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        match worker.await {
            Ok(worker_tally) => tally.merge(worker_tally),
            Err(err) => bail!("load worker failed: {err}"),
        }
    }
    let mut report = tally.report(started.elapsed(), run.capped.load(Ordering::Relaxed));
    report["connections"] = run.opened.load(Ordering::Relaxed).into();
    Ok(report)
}

async fn worker(run: Arc<Run>) -> Tally {
    let mut tally = Tally::default();
    let mut connection = None;
    loop {
        let index = run.next.fetch_add(1, Ordering::Relaxed);
        if index >= run.count {
            break;
        }
        if let Some(rate) = run.rate {
            tokio::time::sleep_until(run.started + Duration::from_secs_f64(index as f64 / rate))
                .await;
        }
        let now = Instant::now();
        if now >= run.deadline {
            run.capped.store(true, Ordering::Relaxed);
            break;
        }
        let limit = run.timeout.min(run.deadline - now);
        match tokio::time::timeout(limit, exchange(&run, &mut connection)).await {
            Ok(Ok((response, body))) => tally.answered(&Answer {
                status: response.status.as_u16(),
                headers: &response.headers,
                body: &body,
                latency: now.elapsed(),
            }),
            Ok(Err(kind)) => {
                connection = None;
                tally.failed(kind);
            }
            Err(_) => {
                // The connection may be mid-answer: never reuse it.
                connection = None;
                tally.failed("timeout".to_owned());
            }
        }
    }
    tally
}

/// One request on the worker's connection, opening one when there is none or the kept-alive one
/// was closed meanwhile (that is not the request's failure).
async fn exchange(
    run: &Run,
    slot: &mut Option<Connection>,
) -> Result<(http::response::Parts, Bytes), String> {
    let reusable = match slot.as_mut() {
        Some(connection) => connection.ready().await.is_ok(),
        None => false,
    };
    if !reusable {
        *slot = None;
        run.opened.fetch_add(1, Ordering::Relaxed);
        let mut fresh = Connection::open(run.addr, run.target.http2).await?;
        fresh.ready().await.map_err(|err| chain_key(&err))?;
        *slot = Some(fresh);
    }
    let connection = slot.as_mut().ok_or_else(|| "no connection".to_owned())?;
    let response = connection
        .send(run.target.request())
        .await
        .map_err(|err| chain_key(&err))?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|err| body_error_key(err.as_ref()))?
        .to_bytes();
    Ok((parts, body))
}

fn body_error_key(err: &(dyn Error + Send + Sync + 'static)) -> String {
    if err.is::<http_body_util::LengthLimitError>() {
        return "body_too_large".to_owned();
    }
    chain_key(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_load(argv: &[&str]) -> LoadArgs {
        let argv: Vec<&str> = ["http-load"].iter().chain(argv).copied().collect();
        match crate::tests::parse(&argv) {
            crate::Command::HttpLoad(args) => args,
            _ => panic!("not http-load"),
        }
    }

    #[test]
    fn http1_target_uses_origin_form_and_a_host_header() {
        let args = parse_load(&[
            "--url",
            "http://127.0.0.1:8080/a/b?x=1",
            "--count",
            "10",
            "--header",
            "X-Test:  one ",
            "--method",
            "POST",
            "--body",
            "hi",
        ]);
        assert_eq!(args.count, 10);
        assert_eq!(args.concurrency, 1);
        let target = Target::new(&args).expect("valid target");
        let request = target.request();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/a/b?x=1");
        assert_eq!(request.headers()["host"], "127.0.0.1:8080");
        assert_eq!(request.headers()["x-test"], "one");
        assert_eq!(target.connect_to, "127.0.0.1:8080");
        assert_eq!(target.body, "hi");
    }

    #[test]
    fn http2_target_carries_the_host_override_as_authority() {
        let args = parse_load(&[
            "--url",
            "http://10.0.0.1:80",
            "--http2",
            "--header",
            "host: shop.example",
        ]);
        let target = Target::new(&args).expect("valid target");
        assert_eq!(target.connect_to, "10.0.0.1:80");
        let request = target.request();
        assert_eq!(request.uri(), "http://shop.example/");
        assert_eq!(request.version(), Version::HTTP_2);
        assert!(request.headers().get(HOST).is_none());
    }

    #[test]
    fn bad_arguments_are_refused() {
        for argv in [
            &["--url", "https://127.0.0.1:1/"][..],
            &["--url", "/no/host"],
            &["--url", "http://127.0.0.1:1/", "--count", "1000001"],
            &["--url", "http://127.0.0.1:1/", "--count", "0"],
            &["--url", "http://127.0.0.1:1/", "--header", "novalue"],
            &["--url", "http://127.0.0.1:1/", "--rate", "0"],
            &["--url", "http://127.0.0.1:1/", "--timeout-ms", "120001"],
        ] {
            let argv: Vec<&str> = ["http-load"].iter().chain(argv).copied().collect();
            crate::tests::parse_err(&argv);
        }
    }
}
