//! The admin API: a read-only HTTP/1 + JSON view of what this node's agent knows, for people
//! and for the `mesh-agent status | workloads | services | routes | certs | policy check |
//! config dump | explain` commands (`crate::cli::inspect`).
//!
//! Every answer is built from one mesh snapshot (`crate::state`), the public parts of the
//! workload certificates this node holds (`crate::identity`) and what the datapath reports
//! through [`AdminDatapath`]; nothing here writes any of them. The server runs on its own
//! thread and single-threaded runtime, so a slow client or a large answer never takes time
//! from the proxy's runtime. It listens on loopback (127.0.0.1:15000) unless told otherwise,
//! because it has no authentication (see `--admin-addr-unsafe`).
//!
//! `inventory` answers the listings, `routes` the route tables, `authz` the policy questions
//! (`/policy/check`), `explain` the path of one connection (with `destination`, and `choice`
//! for the balancers' live view); `query` reads query strings and
//! `views` holds the answer types the CLI reads back.

mod authz;
mod choice;
mod destination;
mod explain;
mod inventory;
mod lookup;
mod query;
mod routes;
pub mod tap;
pub mod views;

pub use query::encode as encode_query_value;

#[cfg(test)]
pub(crate) mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use hyper::{Method, StatusCode};
use serde::Serialize;
use tokio::sync::watch;
use tracing::error;

use crate::config::AgentConfig;
use crate::datapath::AttachedProgram;
use crate::identity::Identities;
use crate::proxy::outbound::Outbound;
use crate::state::MeshState;
use crate::telemetry::{self, DatapathStats, Events, Handler, Readiness};

/// What the admin API needs from the datapath beyond the counters: the programs attached to a
/// pod's cgroup (the agent implements it over the live datapath).
pub trait AdminDatapath: DatapathStats {
    fn attached(&self, cgroup: &Path) -> anyhow::Result<Vec<AttachedProgram>>;
}

/// Everything the handlers read.
pub struct AdminContext {
    pub config: AgentConfig,
    pub state: watch::Receiver<Arc<MeshState>>,
    /// `None` when the agent runs without a CA (no mTLS).
    pub identities: Option<Identities>,
    pub datapath: Arc<dyn AdminDatapath>,
    pub ready: Readiness,
    pub started: Instant,
    /// Where `/tap` reads from; `None`: no tap (tests of the other endpoints).
    pub events: Option<Events>,
    /// The balancers `explain` previews; `None`: no proxy (tests of the model's answers).
    pub outbound: Option<Arc<Outbound>>,
}

impl AdminContext {
    /// The snapshot one answer is built from.
    fn snapshot(&self) -> Arc<MeshState> {
        self.state.borrow().clone()
    }
}

/// A request the API cannot answer; the body is `{"error": "<message>"}`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 400: a parameter is missing or malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 404: the path, workload or address is unknown.
    #[error("{0}")]
    NotFound(String),
}

/// An answer: its status and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

/// Answers one request.
pub fn handle(ctx: &AdminContext, method: &Method, path: &str, query: Option<&str>) -> Reply {
    if method != Method::GET {
        return failure(StatusCode::METHOD_NOT_ALLOWED, "the admin API is GET only");
    }
    let answer = match path {
        "/status" => json(inventory::status(ctx)),
        "/workloads" => json(inventory::workloads(ctx)),
        "/services" => json(inventory::services(ctx)),
        "/routes" => json(routes::tables(&ctx.snapshot())),
        "/certs" => json(inventory::certs(ctx)),
        "/policies" => json(inventory::policies(&ctx.snapshot())),
        "/config_dump" => Ok(inventory::config_dump(ctx)),
        "/policy/check" => authz::check(ctx, query).and_then(json),
        "/explain" => explain::explain(ctx, query).and_then(json),
        _ => Err(AdminError::NotFound(format!(
            "no endpoint {path}; the endpoints are /status, /workloads, /services, /routes, \
             /certs, /policies, /config_dump, /policy/check, /explain and /tap"
        ))),
    };
    match answer {
        Ok(body) => Reply {
            status: StatusCode::OK,
            body,
        },
        Err(AdminError::BadRequest(m)) => failure(StatusCode::BAD_REQUEST, &m),
        Err(AdminError::NotFound(m)) => failure(StatusCode::NOT_FOUND, &m),
    }
}

fn json<T: Serialize>(value: T) -> Result<serde_json::Value, AdminError> {
    // Views are plain data (string keys, no floats that could be NaN): this cannot fail, but
    // an answer that says so beats a panic.
    Ok(serde_json::to_value(value)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })))
}

fn failure(status: StatusCode, message: &str) -> Reply {
    Reply {
        status,
        body: serde_json::json!({ "error": message }),
    }
}

/// Serves the API on `listener` from a thread of its own until `stop` turns true.
pub fn spawn(
    listener: std::net::TcpListener,
    ctx: AdminContext,
    stop: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let ctx = Arc::new(ctx);
    std::thread::Builder::new()
        .name("weft-admin".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return error!(error = %e, "admin API: starting its runtime failed"),
            };
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, ctx, stop).await,
                    Err(e) => error!(error = %e, "admin API: registering its listener failed"),
                }
            });
        })
}

/// Serves the API on `listener` until `stop` turns true (on the caller's runtime).
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<AdminContext>,
    stop: watch::Receiver<bool>,
) {
    let handler: Handler = Arc::new(move |method, path, query| {
        if let (&Method::GET, "/tap", Some(events)) = (method, path, &ctx.events) {
            match tap::TapFilter::parse(query) {
                Ok(filter) => return tap::stream(events, filter),
                Err(e) => {
                    let body = serde_json::json!({ "error": e.to_string() });
                    return telemetry::reply(
                        StatusCode::BAD_REQUEST,
                        "application/json",
                        format!("{body}\n"),
                    );
                }
            }
        }
        let reply = handle(&ctx, method, path, query);
        let mut text = serde_json::to_string_pretty(&reply.body).unwrap_or_default();
        text.push('\n');
        telemetry::reply(reply.status, "application/json", text)
    });
    telemetry::serve_http(listener, "admin", handler, stop).await;
}
