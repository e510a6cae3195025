//! Why a pod's cgroup was not found, and the shape in which the agent reports it on the workload
//! so that `config dump` and the CLI can show it next to the pod.

use std::io;
use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The agent cannot look for cgroups at all (no cgroup v2).
    #[error("finding the cgroup2 mount: {0}")]
    Mount(#[source] io::Error),
    #[error("pod uid {uid:?}: cannot name a cgroup (letters, digits, '-', '_' and '.' only)")]
    InvalidUid { uid: String },
    /// kubelet has not created its hierarchy (yet), or it is outside what the walk covers.
    #[error(
        "pod {uid}: no kubepods cgroup below {} (tried {} and a walk {depth} levels deep{})",
        mount.display(), list(tried), if *truncated { ", cut short" } else { "" }
    )]
    NoKubepodsRoot {
        uid: String,
        mount: PathBuf,
        tried: Vec<PathBuf>,
        depth: usize,
        truncated: bool,
    },
    /// kubelet's hierarchy is there but the pod is not in it: not created yet, or already gone.
    #[error("pod {uid}: no cgroup at {}", list(tried))]
    NotFound { uid: String, tried: Vec<PathBuf> },
    /// A candidate could not be checked (permissions): reported rather than taken as absent.
    #[error("pod {uid}: cannot stat {}: {source}", path.display())]
    Stat {
        uid: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

impl DiscoveryError {
    /// The paths that were looked at, for the workload's status.
    pub fn tried(&self) -> &[PathBuf] {
        match self {
            DiscoveryError::NoKubepodsRoot { tried, .. }
            | DiscoveryError::NotFound { tried, .. } => tried,
            DiscoveryError::Stat { path, .. } => std::slice::from_ref(path),
            DiscoveryError::Mount(_) | DiscoveryError::InvalidUid { .. } => &[],
        }
    }

    /// The report for the workload's model entry.
    pub fn unresolved(&self) -> Unresolved {
        Unresolved {
            reason: self.to_string(),
            tried: self.tried().to_vec(),
        }
    }
}

/// Why a pod of this node has no cgroup: `Workload::cgroup_unresolved`, set from
/// [`DiscoveryError::unresolved`] when `find` fails and cleared when it succeeds. It serializes
/// as `cgroupUnresolved: {reason: "...", tried: [...]}`; the pod is not captured while it is
/// set, and `weft_cgroup_unresolved_pods` counts such pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unresolved {
    /// The error's message: names the pod, what was missing and where.
    pub reason: String,
    /// Every directory looked at, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<PathBuf>,
}
