//! What the agent tells the outside world about itself: Prometheus metrics (Istio's standard
//! series under weft names, and weft's own), readiness, the access log and the tap, each on its
//! own local HTTP port or channel. Logs go through `tracing`, set up by `main`; the admin API
//! (`crate::admin`) reuses the HTTP server here.

mod authz;
mod events;
mod http;
mod istio;
mod mesh;
mod metrics;
mod programs;
mod request;
mod server;
mod sockmap;
pub mod trace;

pub use authz::AuthzMetrics;
pub use events::{AccessLogTarget, Events, rfc3339};
pub use http::HttpMetrics;
pub use istio::Resolver;
pub use istio::{ConnLabels, Peer, Reporter, RequestKey, UNKNOWN};
pub use metrics::{DatapathStats, Metrics, RefuseReason};
pub use request::{
    ConnRecorder, Details, PendingRequest, Record, UpstreamNotes, flags, grpc_status, is_grpc,
    millis,
};
pub use server::{Handler, Readiness, ReplyBody, reply, serve, serve_http, serve_readiness};
