//! The client side of an HTTP connection: hyper serves it (HTTP/1.1 with upgrades, or h2c),
//! each request goes to [`HttpConn::handle`]. The connection ends when the client is done,
//! when it has been idle for the idle timeout, or at shutdown: when the proxy starts draining,
//! hyper is asked to finish in-flight requests and close (a `GOAWAY` on HTTP/2); when the grace
//! period is over, the connection is cut. A request that upgraded the connection continues as
//! a byte tunnel within the same connection's lifetime.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::forward::HttpConn;
use super::tunnel;
use super::upstream::chain;
use crate::proxy::connection::Outcome;
use crate::proxy::detect::AppProtocol;
use crate::proxy::io::{ClientIo, ConnStats};
use crate::proxy::outbound::Outbound;

/// How an HTTP connection ended.
#[derive(Debug)]
pub struct ServeEnd {
    pub outcome: Outcome,
    /// Empty unless the outcome is an error.
    pub error: String,
}

impl ServeEnd {
    fn new(outcome: Outcome) -> Self {
        ServeEnd {
            outcome,
            error: String::new(),
        }
    }
}

/// Serves the client connection `io`, which speaks `protocol`, until it ends.
pub async fn serve(
    conn: Arc<HttpConn>,
    io: ClientIo,
    stats: Arc<ConnStats>,
    protocol: AppProtocol,
) -> ServeEnd {
    let outbound = conn.outbound().clone();
    let service = {
        let conn = conn.clone();
        service_fn(move |request| {
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(conn.handle(request).await) }
        })
    };
    let io = TokioIo::new(io);
    let idle = outbound.config.idle_timeout;
    let http = &outbound.http;
    let served = match protocol {
        AppProtocol::Http2 => {
            let c = http.server_h2.serve_connection(io, service);
            drive(c, |c| c.graceful_shutdown(), &stats, idle, &outbound).await
        }
        AppProtocol::Http1 | AppProtocol::Tcp => {
            let c = http.server_h1.serve_connection(io, service).with_upgrades();
            drive(c, |c| c.graceful_shutdown(), &stats, idle, &outbound).await
        }
    };
    match (served.outcome, conn.take_tunnel()) {
        (Outcome::Ok, Some(pending)) => tunnel::run(pending, &stats, idle, &outbound).await,
        _ => served,
    }
}

/// Polls the hyper connection `conn` to its end, watching idleness, draining and abort.
async fn drive<C>(
    conn: C,
    graceful: impl Fn(Pin<&mut C>),
    stats: &ConnStats,
    idle: Duration,
    outbound: &Outbound,
) -> ServeEnd
where
    C: Future<Output = hyper::Result<()>>,
{
    tokio::pin!(conn);
    let mut draining = outbound.draining.subscribe();
    let mut shutting_down = false;
    let aborted = outbound.aborted();
    tokio::pin!(aborted);
    loop {
        tokio::select! {
            served = conn.as_mut() => return match served {
                Ok(()) => ServeEnd::new(Outcome::Ok),
                Err(e) => ServeEnd { outcome: Outcome::HttpError, error: chain(&e) },
            },
            _ = stats.activity.idle_for(idle) => return ServeEnd::new(Outcome::IdleTimeout),
            _ = draining.wait_for(|d| *d), if !shutting_down => {
                graceful(conn.as_mut());
                shutting_down = true;
            }
            _ = &mut aborted => return ServeEnd::new(Outcome::Shutdown),
        }
    }
}
