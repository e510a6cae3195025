//! What the agent tells the outside world about itself: Prometheus metrics and readiness,
//! served over HTTP on the metrics address. Logs go through `tracing`, set up by `main`.

mod authz;
mod http;
mod mesh;
mod metrics;
mod server;

pub use authz::AuthzMetrics;
pub use http::{HttpMetrics, RequestRecorder};
pub use metrics::{DatapathStats, Metrics, RefuseReason, TcpLabels};
pub use server::{ConfigDump, Readiness, serve};
