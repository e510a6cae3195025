//! The L7 path over real loopback sockets: hyper backends on 127.0.0.x, the proxy with a fixed
//! origin record standing in for the kernel, and hyper (or raw) clients. Every address is in
//! 127.0.0.0/8, the service VIP included, so a routing mistake ends in a local refusal.

mod basics;
mod limits;
mod routing;
mod slots;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_common::Origin;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::proxy::HttpConfig;
use crate::proxy::origin::{Captured, OriginLookup};
use crate::proxy::outbound::{Outbound, OutboundConfig};
use crate::state::MeshState;
use crate::telemetry::Metrics;

pub const T: Duration = Duration::from_secs(5);
pub const VIP: &str = "127.0.96.10:80";

pub type TestBody = BoxBody<Bytes, Infallible>;
pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<TestBody>> + Send + Sync>;

pub fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into()).boxed()
}

/// A hyper server (HTTP/1.1 and h2c, with upgrades) counting connections and requests.
pub struct Backend {
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

impl Backend {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Starts a backend on `listener`.
pub fn serve(listener: TcpListener, handler: Handler) -> io::Result<Backend> {
    let backend = Backend {
        connections: Arc::default(),
        requests: Arc::default(),
    };
    let (connections, requests) = (backend.connections.clone(), backend.requests.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            let (handler, requests) = (handler.clone(), requests.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(backend)
}

/// Listeners on the same free port of each address in `ips` (one port: a service's endpoints
/// share their target port).
pub async fn listeners(ips: &[&str]) -> io::Result<Vec<TcpListener>> {
    'attempt: for _ in 0..20 {
        let first = TcpListener::bind((ips[0], 0)).await?;
        let port = first.local_addr()?.port();
        let mut all = vec![first];
        for ip in &ips[1..] {
            match TcpListener::bind((*ip, port)).await {
                Ok(l) => all.push(l),
                Err(_) => continue 'attempt,
            }
        }
        return Ok(all);
    }
    Err(io::Error::other("no common free port"))
}

/// A handler answering 200 with the request line and every header, one per line.
pub fn echo(name: &'static str) -> Handler {
    Arc::new(move |req: Request<Incoming>| {
        Box::pin(async move {
            let mut text = format!(
                "{} {} {:?} authority={}\n",
                req.method(),
                req.uri().path(),
                req.version(),
                req.uri().authority().map_or("", |a| a.as_str())
            );
            for (k, v) in req.headers() {
                text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            text.push_str(&format!(
                "body={}\n",
                String::from_utf8_lossy(&body.unwrap_or_default())
            ));
            let mut resp = Response::new(full(text));
            resp.headers_mut()
                .insert("x-backend", http::HeaderValue::from_static(name));
            resp
        })
    })
}

/// Every captured socket is reported as dialling one fixed destination.
struct FixedOrigin(SocketAddr);

impl OriginLookup for FixedOrigin {
    fn lookup(&self, _: &TcpStream) -> io::Result<Option<Captured>> {
        Ok(Some(Captured {
            original_dst: self.0,
            origin: Origin::default(),
        }))
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub outbound: Arc<Outbound>,
    pub metrics: Arc<Metrics>,
    _stop: watch::Sender<bool>,
    _state: watch::Sender<Arc<MeshState>>,
}

impl Proxy {
    pub async fn start(state: MeshState) -> anyhow::Result<Proxy> {
        Self::with_config(state, HttpConfig::default()).await
    }

    pub async fn with_config(state: MeshState, http: HttpConfig) -> anyhow::Result<Proxy> {
        let metrics = Arc::new(Metrics::new()?);
        let (state_tx, state_rx) = watch::channel(Arc::new(state));
        let config = OutboundConfig {
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(30),
            max_connections: 256,
            detect_timeout: Duration::from_millis(100),
            http,
        };
        let origin = Arc::new(FixedOrigin(VIP.parse()?));
        let outbound = Outbound::new(
            config,
            state_rx,
            origin,
            metrics.clone(),
            crate::proxy::dial::Dialer::plain(config.connect_timeout),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(outbound.clone().serve(listener, stop));
        Ok(Proxy {
            addr,
            outbound,
            metrics,
            _stop: stop_tx,
            _state: state_tx,
        })
    }

    /// Whether the metrics text has this exact line.
    pub fn has_metric(&self, line: &str) -> bool {
        self.metrics
            .encode()
            .is_ok_and(|text| text.lines().any(|l| l == line))
    }

    pub fn metrics_text(&self) -> String {
        self.metrics.encode().unwrap_or_default()
    }

    /// Waits until no connection is in flight.
    pub async fn settle(&self) -> anyhow::Result<()> {
        tokio::time::timeout(T, async {
            while self.outbound.in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await?;
        Ok(())
    }

    pub async fn h1(&self) -> anyhow::Result<hyper::client::conn::http1::SendRequest<TestBody>> {
        let stream = TcpStream::connect(self.addr).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn.with_upgrades());
        Ok(sender)
    }

    pub async fn h2(&self) -> anyhow::Result<hyper::client::conn::http2::SendRequest<TestBody>> {
        let stream = TcpStream::connect(self.addr).await?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(conn);
        Ok(sender)
    }
}

/// A mesh state with namespace `shop`, workloads `<name>` at each given IP (labelled
/// `app=<name>`), the `services` YAML items and the `routes` YAML items.
pub fn state(
    workloads: &[(&str, &str)],
    services: &str,
    routes: &str,
) -> anyhow::Result<MeshState> {
    let with_apps: Vec<(&str, &str, &str)> =
        workloads.iter().map(|(n, ip)| (*n, *ip, *n)).collect();
    state_apps(&with_apps, services, routes)
}

/// [`state`] with workloads `(name, ip, app label)`.
pub fn state_apps(
    workloads: &[(&str, &str, &str)],
    services: &str,
    routes: &str,
) -> anyhow::Result<MeshState> {
    let mut yaml = String::from(
        "namespaces:\n  - name: shop\n    labels: {weft.dev/mesh: enabled}\nnodes:\n  - name: n1\nworkloads:\n",
    );
    for (name, ip, app) in workloads {
        yaml.push_str(&format!(
            "  - {{name: {name}, namespace: shop, node: n1, ips: [\"{ip}\"], labels: {{app: {app}}}}}\n"
        ));
    }
    yaml.push_str("services:\n");
    yaml.push_str(services);
    if !routes.is_empty() {
        yaml.push_str("routes:\n");
        yaml.push_str(routes);
    }
    crate::state::parse_str(std::path::Path::new("test.yaml"), &yaml)
        .map_err(|e| anyhow::anyhow!("{e}\n{yaml}"))
}

/// A service item: `name` at `vip:80` -> `target_port`, selecting `app=<app>`, the port named
/// `port_name` (or unnamed), with `extra` YAML lines (indented by 4 spaces).
pub fn service(
    name: &str,
    vip: &str,
    app: &str,
    target_port: u16,
    port_name: Option<&str>,
    extra: &str,
) -> String {
    let port_name = port_name.map_or(String::new(), |n| format!(", name: {n}"));
    format!(
        "  - name: {name}\n    namespace: shop\n    vips: [\"{vip}\"]\n    selector: {{app: {app}}}\n    ports: [{{port: 80, targetPort: {target_port}{port_name}}}]\n{extra}"
    )
}

/// GETs `path` with `headers`; returns status, headers and body text.
pub async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<TestBody>,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, http::HeaderMap, String)> {
    let mut req = Request::get(path).header("host", "backend.shop");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(T, sender.send_request(req.body(full(""))?)).await??;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(T, resp.into_body().collect())
        .await??
        .to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}
