//! What the agent tells the outside world about itself: Prometheus metrics and readiness, each
//! on its own local HTTP port. Logs go through `tracing`, set up by `main`; the admin API
//! (`crate::admin`) reuses the HTTP server here.

mod authz;
mod http;
mod mesh;
mod metrics;
mod programs;
mod server;
mod sockmap;
pub mod trace;

pub use authz::AuthzMetrics;
pub use http::{HttpMetrics, RequestRecorder};
pub use metrics::{DatapathStats, Metrics, RefuseReason, TcpLabels};
pub use server::{Handler, Readiness, reply, serve, serve_http, serve_readiness};
