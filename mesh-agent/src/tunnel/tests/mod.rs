//! Tests of the tunnel over loopback with real TLS (certificates from `pki.rs`), real h2 and a
//! real server; the helpers here start servers and move bytes through tunnels.

mod echo;
mod hardening;
mod keepalive;
mod pki;
mod pooling;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{
    ConnectHandler, ConnectRequest, PoolKey, Responder, ServerConfig, ServerCounters, TunnelStream,
    serve,
};
use crate::identity::SpiffeId;
use pki::{Leaf, TestCa};

/// Bound on any one test: a hang fails instead of blocking the suite.
const TEST_LIMIT: Duration = Duration::from_secs(30);

/// Port numbers in `:authority` that make [`echo_handler`] refuse instead of echoing.
const REFUSE_403: u16 = 403;
const DROP_RESPONDER: u16 = 500;

pub(crate) async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("test took too long")
}

/// Two workloads on two nodes: `web` (the client side) and `db` (behind the server), with
/// certificates from one CA.
pub(crate) struct Mesh {
    pub(crate) ca: TestCa,
    pub(crate) web: SpiffeId,
    pub(crate) db: SpiffeId,
    pub(crate) web_leaf: Leaf,
    pub(crate) db_leaf: Leaf,
}

impl Mesh {
    pub(crate) fn new() -> Self {
        let ca = TestCa::new("weft test CA");
        let web = SpiffeId::new("td", "shop", "web");
        let db = SpiffeId::new("td", "shop", "db");
        let web_leaf = ca.leaf(&web);
        let db_leaf = ca.leaf(&db);
        Mesh {
            ca,
            web,
            db,
            web_leaf,
            db_leaf,
        }
    }

    pub(crate) fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        self.ca.client_config(Some(&self.web_leaf))
    }

    pub(crate) fn server_tls(&self) -> Arc<rustls::ServerConfig> {
        self.ca.server_config(vec![(&self.db, &self.db_leaf)])
    }

    pub(crate) fn key(&self, node: SocketAddr) -> PoolKey {
        PoolKey {
            source: self.web.clone(),
            dest: self.db.clone(),
            node,
        }
    }
}

/// A tunnel server on loopback, counting its refusals.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) counters: Arc<ServerCounters>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TestServer {
    pub(crate) async fn start(
        tls: Arc<rustls::ServerConfig>,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address"), tls, tweak).await
    }

    pub(crate) async fn start_on(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let counters = Arc::new(ServerCounters::default());
        let mut cfg = ServerConfig {
            events: counters.clone(),
            ..ServerConfig::default()
        };
        tweak(&mut cfg);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, tls, echo_handler(), cfg, stop_rx));
        TestServer {
            addr,
            counters,
            stop,
            task,
        }
    }

    /// Asks for a graceful stop; the returned task ends once the server has drained.
    pub(crate) fn stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(true);
        self.task
    }

    /// Drops the server and its connections at once (a crash).
    pub(crate) async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Accepts and echoes, after a first line `"<authority> <x-tag header>\n"`; refuses the ports
/// [`REFUSE_403`] (with 403) and [`DROP_RESPONDER`] (by dropping the responder).
pub(crate) fn echo_handler() -> Arc<dyn ConnectHandler> {
    Arc::new(
        |req: ConnectRequest, respond: Responder| -> BoxFuture<'static, ()> {
            async move {
                match req.authority.port() {
                    REFUSE_403 => return respond.refuse(StatusCode::FORBIDDEN),
                    DROP_RESPONDER => return drop(respond),
                    _ => {}
                }
                let Ok(mut stream) = respond.accept() else {
                    return;
                };
                let tag = req
                    .headers
                    .get("x-tag")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let (reader, writer) = stream.split();
                let first = format!("{} {tag}\n", req.authority);
                if writer.write_all(first.as_bytes()).await.is_err() {
                    return;
                }
                if tokio::io::copy(reader, writer).await.is_ok() {
                    let _ = writer.shutdown().await;
                }
            }
            .boxed()
        },
    )
}

/// Sends `payload` and half-closes while reading everything back; returns the echo handler's
/// first line and the echoed bytes.
pub(crate) async fn echo(stream: TunnelStream, payload: Vec<u8>) -> (String, Vec<u8>) {
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        writer.write_all(&payload).await.expect("write");
        writer.shutdown().await.expect("shutdown");
    });
    let mut back = Vec::new();
    reader.read_to_end(&mut back).await.expect("read");
    sending.await.expect("sender task");
    let at = back
        .iter()
        .position(|b| *b == b'\n')
        .expect("first line of the echo");
    let first = String::from_utf8(back[..at].to_vec()).expect("UTF-8 first line");
    (first, back[at + 1..].to_vec())
}

/// Waits (up to five seconds) until `cond` holds.
pub(crate) async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// `len` bytes that differ per `seed`.
pub(crate) fn payload(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(7919)) as u8)
        .collect()
}
