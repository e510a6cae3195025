//! The outbound listener: where the datapath redirects pods' captured connections.
//!
//! It accepts, enforces the connection limit and hands each connection to its own task
//! (`connection.rs`). A connection over the limit is still accepted, so that the client gets an
//! immediate close instead of a hanging SYN, and it is logged and counted. On shutdown the
//! listener stops accepting and [`Outbound::drain`] gives in-flight connections a grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::warn;

use super::detect::{AppProtocol, DetectReason};
use super::dial::Dialer;
use super::http::{HttpConfig, HttpProxy};
use super::lb::RoundRobin;
use super::origin::OriginLookup;
use crate::state::MeshState;
use crate::telemetry::trace::Tracer;
use crate::telemetry::{Metrics, RefuseReason};

/// A failing accept (typically EMFILE) is retried after this pause, not in a hot loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// After the grace period, how long aborted connections get to log and close.
const ABORT_WAIT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
pub struct OutboundConfig {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: u32,
    /// How long a client of an undeclared service port may stay silent before its connection
    /// is treated as opaque TCP (server-speaks-first protocols).
    pub detect_timeout: Duration,
    pub http: HttpConfig,
}

/// The outbound proxy: shared by its listeners (IPv4 and IPv6) and its connection tasks.
pub struct Outbound {
    pub(super) config: OutboundConfig,
    /// The current mesh snapshot; a reload replaces it, and each connection reads it once.
    pub(super) state: watch::Receiver<Arc<MeshState>>,
    pub(super) origins: Arc<dyn OriginLookup>,
    pub(super) metrics: Arc<Metrics>,
    /// How endpoints are reached: plain TCP, a tunnel, or this node's inbound side.
    pub(super) dialer: Arc<Dialer>,
    pub(super) lb: RoundRobin,
    /// The L7 path's shared parts: HTTP settings, upstream pools, balancers, guards.
    pub(super) http: HttpProxy,
    /// One permit per in-flight connection.
    in_flight: Arc<Semaphore>,
    /// Turned true when draining starts: HTTP connections finish their requests and close.
    pub(super) draining: watch::Sender<bool>,
    /// Turned true when the shutdown grace period is over: connections still open end.
    pub(super) abort: watch::Sender<bool>,
    /// Set once at start-up when spans are exported (`--otlp-endpoint`); unset, requests are
    /// not traced at all.
    tracer: std::sync::OnceLock<Arc<Tracer>>,
}

impl Outbound {
    pub fn new(
        config: OutboundConfig,
        state: watch::Receiver<Arc<MeshState>>,
        origins: Arc<dyn OriginLookup>,
        metrics: Arc<Metrics>,
        dialer: Arc<Dialer>,
    ) -> Arc<Self> {
        let protocols = AppProtocol::ALL.map(AppProtocol::as_str);
        let reasons = DetectReason::ALL.map(DetectReason::as_str);
        metrics.http().init_detections(&protocols, &reasons);
        Arc::new(Outbound {
            config,
            state,
            origins,
            metrics,
            lb: RoundRobin::new(),
            http: HttpProxy::new(config.http, dialer.clone()),
            dialer,
            in_flight: Arc::new(Semaphore::new(config.max_connections as usize)),
            draining: watch::Sender::new(false),
            abort: watch::Sender::new(false),
            tracer: std::sync::OnceLock::new(),
        })
    }

    /// Turns tracing on for the requests of this proxy; a second call is ignored.
    pub fn set_tracer(&self, tracer: Arc<Tracer>) {
        let _ = self.tracer.set(tracer);
    }

    pub(super) fn tracer(&self) -> Option<&Arc<Tracer>> {
        self.tracer.get()
    }

    /// Accepts on `listener` until `stop` turns true; the listener is closed on return.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "outbound accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                self.refuse_over_limit(stream, peer);
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.handle(stream, peer).await;
                drop(permit);
            });
        }
    }

    fn refuse_over_limit(&self, stream: TcpStream, peer: SocketAddr) {
        warn!(
            peer = %peer,
            limit = self.config.max_connections,
            "refused outbound connection: connection limit reached"
        );
        self.metrics.refused(RefuseReason::Limit);
        drop(stream);
    }

    /// Connections being proxied right now.
    pub fn in_flight(&self) -> usize {
        (self.config.max_connections as usize).saturating_sub(self.in_flight.available_permits())
    }

    /// Waits up to `grace` for in-flight connections to finish, then ends the rest. Call it
    /// after the listeners stopped. Returns how many connections had to be cut.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.draining.send_replace(true);
        let all = self.config.max_connections;
        if tokio::time::timeout(grace, self.in_flight.acquire_many(all))
            .await
            .is_ok()
        {
            return 0;
        }
        let cut = self.in_flight();
        self.abort.send_replace(true);
        // Aborted connections log their end and release their permits almost at once.
        let _ = tokio::time::timeout(ABORT_WAIT, self.in_flight.acquire_many(all)).await;
        cut
    }

    /// Forgets what was kept per service (balancing, breakers, budgets) for services that no
    /// longer exist in `state`.
    pub fn forget_removed_services(&self, state: &MeshState) {
        self.http.forget_removed_services(state);
        self.lb.retain(|name| {
            name.split_once('/')
                .is_some_and(|(ns, n)| state.services.contains_key(&(ns.to_owned(), n.to_owned())))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::origin::Captured;
    use mesh_common::Origin;
    use std::io;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Every socket is "captured" towards one fixed destination.
    struct FixedOrigin(SocketAddr);

    impl OriginLookup for FixedOrigin {
        fn lookup(&self, _: &TcpStream) -> io::Result<Option<Captured>> {
            Ok(Some(Captured {
                original_dst: self.0,
                origin: Origin::default(),
            }))
        }
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_and_counted() -> anyhow::Result<()> {
        // An upstream that echoes and holds connections open.
        let upstream = TcpListener::bind("127.0.0.1:0").await?;
        let upstream_addr = upstream.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = upstream.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });

        let metrics = Arc::new(Metrics::new()?);
        let (_state_tx, state) = watch::channel(Arc::new(MeshState::default()));
        let config = OutboundConfig {
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1,
            detect_timeout: Duration::from_millis(100),
            http: HttpConfig::default(),
        };
        let outbound = Outbound::new(
            config,
            state,
            Arc::new(FixedOrigin(upstream_addr)),
            metrics.clone(),
            Dialer::plain(config.connect_timeout),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy_addr = listener.local_addr()?;
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(outbound.clone().serve(listener, stop));

        let t = Duration::from_secs(5);
        let mut first = TcpStream::connect(proxy_addr).await?;
        let mut buf = [0u8; 4];
        first.write_all(b"one!").await?;
        tokio::time::timeout(t, first.read_exact(&mut buf)).await??;
        assert_eq!(&buf, b"one!");
        assert_eq!(outbound.in_flight(), 1);

        // The second is accepted and closed at once: EOF (or a reset), never a hang.
        let mut second = TcpStream::connect(proxy_addr).await?;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(t, second.read_to_end(&mut rest)).await?;
        assert!(read.map(|n| n == 0).unwrap_or(true));
        let text = metrics.encode()?;
        assert!(
            text.contains(r#"weft_proxy_refused_connections_total{reason="limit"} 1"#),
            "{text}"
        );

        // Once the first ends, a new connection gets through again.
        drop(first);
        tokio::time::timeout(t, async {
            while outbound.in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await?;
        let mut third = TcpStream::connect(proxy_addr).await?;
        third.write_all(b"3rd!").await?;
        tokio::time::timeout(t, third.read_exact(&mut buf)).await??;
        assert_eq!(&buf, b"3rd!");

        // Shutdown: stop accepting, then the held connection is cut after the grace period.
        stop_tx.send(true)?;
        tokio::time::timeout(t, server).await??;
        assert!(TcpStream::connect(proxy_addr).await.is_err());
        assert_eq!(outbound.drain(Duration::from_millis(100)).await, 1);
        assert_eq!(outbound.in_flight(), 0);
        let text = metrics.encode()?;
        assert!(text.contains("weft_tcp_connections_closed_total"), "{text}");
        assert!(text.contains(r#"source_workload="unknown""#), "{text}");
        Ok(())
    }
}
