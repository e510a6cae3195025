//! The L7 path: captured connections that carry HTTP/1.1 or h2c.
//!
//! `server` serves the client side of a connection (hyper, with upgrades, limits, idle and
//! shutdown handling); `forward` handles each request: `route` finds its Gateway API rule and
//! backend, `retry` runs the attempts (breaker, balancer, deadlines, retries) with the
//! service's `policy` (converted once per policy change) and its connection `slots`, `key`
//! names balancers and hashes requests, `upstream` keeps the connections to endpoints.
//! `headers`, `body` and `respond` hold the message rules; `tunnel` carries upgraded
//! connections (WebSocket...) as bytes; `mirror` sends fire-and-forget copies. Each request
//! reads the current mesh snapshot; nothing here writes it. What must outlive snapshots
//! (balancers, breakers, retry budgets, connection pools) lives in [`HttpProxy`].

pub(crate) mod body;
mod forward;
pub(crate) mod headers;
pub(super) mod key;
mod mirror;
pub(crate) mod observe;
mod policy;
pub(crate) mod respond;
mod retry;
mod route;
mod server;
mod slots;
mod tunnel;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;

use crate::balance::Balancers;
use crate::proxy::dial::Dialer;
use crate::state::MeshState;
use policy::ServiceGuards;

pub use forward::{ConnInfo, HttpConn};
pub use respond::Mechanism;
pub use server::{ServeEnd, serve};
pub use upstream::{SendError, UpstreamConfig, Upstreams, Via};

/// HTTP limits and knobs of the node proxy.
#[derive(Clone, Copy, Debug)]
pub struct HttpConfig {
    /// A client must send a request's whole header block within this time. On HTTP/1 the
    /// clock also runs while a keep-alive connection waits for its next request, so it is the
    /// idle keep-alive limit too (the connection is closed cleanly then).
    pub header_read_timeout: Duration,
    /// Largest header block accepted from a client (and from an upstream).
    pub max_header_bytes: usize,
    /// How long an idle pooled upstream connection is kept.
    pub pool_idle_timeout: Duration,
    /// Mirrored copies in flight at most; beyond it, copies are dropped.
    pub max_mirrors: usize,
    /// A fixed-size HTTP/1 request body (with a `Content-Length`) whose client sends nothing
    /// for this long is abandoned with 408; `None`: never. Streams without a length (chunked,
    /// HTTP/2, gRPC) are not limited.
    pub body_idle_timeout: Option<Duration>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
            max_mirrors: 128,
            body_idle_timeout: Some(Duration::from_secs(1)),
        }
    }
}

/// What the L7 path shares across connections: server settings, upstream pools, limits.
pub struct HttpProxy {
    pub(crate) config: HttpConfig,
    pub(crate) upstreams: Upstreams,
    server_h1: http1::Builder,
    server_h2: http2::Builder<TokioExecutor>,
    pub(crate) mirrors: Arc<Semaphore>,
    /// Endpoint choice per service port, kept across snapshots.
    pub(crate) balancers: Balancers,
    /// Converted policies, circuit breakers, connection slots and retry budgets per service,
    /// kept across snapshots.
    pub(crate) guards: ServiceGuards,
}

impl HttpProxy {
    pub fn new(config: HttpConfig, dialer: Arc<Dialer>) -> Self {
        let mut server_h1 = http1::Builder::new();
        server_h1
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .max_header_size(config.max_header_bytes)
            .keep_alive(true)
            .half_close(false);
        let mut server_h2 = http2::Builder::new(TokioExecutor::new());
        server_h2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        HttpProxy {
            config,
            upstreams: Upstreams::new(
                UpstreamConfig {
                    pool_idle_timeout: config.pool_idle_timeout,
                    max_header_bytes: config.max_header_bytes,
                },
                dialer,
            ),
            server_h1,
            server_h2,
            mirrors: Arc::new(Semaphore::new(config.max_mirrors)),
            balancers: Balancers::new(),
            guards: ServiceGuards::default(),
        }
    }

    /// Forgets the balancers and guards of services that are not in `state` any more, and
    /// applies changed traffic policies to the guards of the others.
    pub fn forget_removed_services(&self, state: &MeshState) {
        self.balancers.retain(|key| {
            key::service_of_key(key).is_some_and(|(ns, name)| {
                state
                    .services
                    .contains_key(&(ns.to_owned(), name.to_owned()))
            })
        });
        self.guards.sync(state);
    }
}

#[cfg(test)]
mod tests;
