//! The mesh CA (`mesh-agent ca ...`), its own process: it signs workload certificates (SVIDs)
//! for node agents and publishes the trust bundle.
//!
//! Everything it knows lives in one directory (`dir`): the active root and its key, the bundle,
//! a root being rotated in or out, and the SHA-256 of each node's bootstrap token. `init` and
//! `rotate` edit that directory (each file replaced atomically); `serve` answers the HTTPS API
//! of [`crate::identity::wire`], polls the directory so that rotation steps take effect live,
//! authenticates the asking node (`nodeauth`: a bootstrap token, or in a cluster the agent's
//! service-account token through TokenReview) and checks every request against the mesh
//! state: a node gets certificates only for the identities of enrolled workloads scheduled on
//! it. Keys never leave the directory.

mod api;
mod authority;
mod csr;
mod dir;
mod init;
mod metrics;
mod nodeauth;
mod root;
mod rotate;
mod serve;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use init::{InitOptions, InitReport, init, node_token};
pub use metrics::CaMetrics;
pub use nodeauth::{
    DEFAULT_AGENT_USERNAME, DEFAULT_AUDIENCE, KubernetesAuth, NODE_NAME_EXTRA, NodeAuth,
};
pub use rotate::{activate, begin, finish};
pub use serve::{RunningCa, ServeOptions, StateSource, serve, start};

/// Why a CA command or the CA server failed; each names the file or the step.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{} exists; pass --force to replace it", path.display())]
    Exists { path: PathBuf },
    #[error("root rotation: {0}")]
    Rotation(String),
    #[error("{0}")]
    Usage(String),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}
