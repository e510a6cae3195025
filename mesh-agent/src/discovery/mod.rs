//! From a pod's UID and QoS class (what the Kubernetes API says) to its cgroup v2 directory
//! (what the datapath attaches to). kubelet names pod cgroups after the UID, below a `kubepods`
//! root whose place and spelling depend on its cgroup driver (systemd or cgroupfs) and on how the
//! node runs (kind, k3s, a `cgroupRoot` setting). [`walk`] finds the roots and [`layout`] names
//! the candidates; this module caches the roots and stats a handful of candidates per call, so
//! the state source can call [`CgroupDiscovery::find`] again for every unresolved pod on every
//! change. The pod directory is returned, never a container's (`cri-containerd-<id>.scope`,
//! `crio-<id>.scope`, `<id>`): the kernel programs walk up from a container to its pod.
//! See docs/cgroups.md.

mod error;
mod layout;
mod metrics;
mod walk;

#[cfg(test)]
mod cgroup2_tests;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use error::{DiscoveryError, Unresolved};
pub use layout::{Driver, KubepodsRoot, Qos};
pub use metrics::UnresolvedGauge;
pub use walk::{KNOWN, MAX_DEPTH, MAX_VISITED};

/// How often at most a miss may trigger a new walk of the hierarchy. Pods that are not there
/// yet are looked up on every state change, and kubelet's root almost never moves.
pub const REWALK_AFTER: Duration = Duration::from_secs(30);

/// Finds pod cgroups below one cgroup2 mount. Cheap to call repeatedly; safe to share.
#[derive(Debug)]
pub struct CgroupDiscovery {
    mount: PathBuf,
    rewalk_after: Duration,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    roots: Vec<KubepodsRoot>,
    last_walk: Option<Instant>,
    truncated: bool,
}

impl CgroupDiscovery {
    /// Rooted at `mount`: the cgroup2 mount point, or any directory laid out like one (tests).
    pub fn new(mount: impl Into<PathBuf>) -> Self {
        CgroupDiscovery {
            mount: mount.into(),
            rewalk_after: REWALK_AFTER,
            cache: Mutex::default(),
        }
    }

    /// Rooted at this process's cgroup2 mount (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
    /// hybrid hosts). In a pod, that mount must show the node's hierarchy, not the pod's own.
    pub fn from_mount() -> Result<Self, DiscoveryError> {
        let mount = crate::mounts::cgroup2().map_err(DiscoveryError::Mount)?;
        Ok(CgroupDiscovery::new(mount.mount_point))
    }

    /// Sets how long after a walk a miss may walk again (default [`REWALK_AFTER`]).
    pub fn with_rewalk_after(mut self, interval: Duration) -> Self {
        self.rewalk_after = interval;
        self
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The kubepods roots found so far, for logs and the config dump.
    pub fn roots(&self) -> Vec<KubepodsRoot> {
        self.cache().roots.clone()
    }

    /// The cgroup directory of the pod `uid` (`metadata.uid`) of class `qos`.
    ///
    /// Stats the pod's directory under each known root, trying `qos` first and the other classes
    /// after; walks the hierarchy again only when no root is known or on a miss, at most once per
    /// [`CgroupDiscovery::with_rewalk_after`] interval.
    pub fn find(&self, uid: &str, qos: Qos) -> Result<PathBuf, DiscoveryError> {
        if !layout::valid_uid(uid) {
            return Err(DiscoveryError::InvalidUid { uid: uid.into() });
        }
        let mut cache = self.cache();
        // A root that vanished (kubelet reconfigured) must not hide the one that replaced it.
        cache.roots.retain(|root| root.path.is_dir());
        if cache.roots.is_empty() {
            cache.roots = walk::known(&self.mount);
        }
        let mut tried = Vec::new();
        if let Some(found) = search(&cache.roots, uid, qos, &mut tried)? {
            return Ok(found);
        }
        if self.walk_due(&cache) {
            let fresh = self.rewalk(&mut cache);
            if let Some(found) = search(&fresh, uid, qos, &mut tried)? {
                return Ok(found);
            }
        }
        if cache.roots.is_empty() {
            return Err(DiscoveryError::NoKubepodsRoot {
                uid: uid.into(),
                mount: self.mount.clone(),
                tried: KNOWN.iter().map(|rel| self.mount.join(rel)).collect(),
                depth: MAX_DEPTH,
                truncated: cache.truncated,
            });
        }
        Err(DiscoveryError::NotFound {
            uid: uid.into(),
            tried,
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache is only a shortcut: whatever a panicking holder left is still usable.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn walk_due(&self, cache: &Cache) -> bool {
        cache
            .last_walk
            .is_none_or(|at| at.elapsed() >= self.rewalk_after)
    }

    /// Walks the hierarchy, adds the roots it finds to the cache and returns the new ones.
    fn rewalk(&self, cache: &mut Cache) -> Vec<KubepodsRoot> {
        let found = walk::walk(&self.mount);
        cache.last_walk = Some(Instant::now());
        cache.truncated = found.truncated;
        if found.truncated {
            tracing::warn!(
                mount = %self.mount.display(),
                "cgroup walk stopped after {MAX_VISITED} directories; deeper kubepods roots are missed"
            );
        }
        let fresh: Vec<KubepodsRoot> = found
            .roots
            .into_iter()
            .filter(|root| !cache.roots.contains(root))
            .collect();
        for root in &fresh {
            tracing::info!(root = %root.path.display(), driver = ?root.driver, "kubepods cgroup root found");
        }
        cache.roots.extend(fresh.iter().cloned());
        fresh
    }
}

/// The first pod directory that exists under `roots`, class by class; every path looked at is
/// added to `tried`.
fn search(
    roots: &[KubepodsRoot],
    uid: &str,
    qos: Qos,
    tried: &mut Vec<PathBuf>,
) -> Result<Option<PathBuf>, DiscoveryError> {
    for class in qos.search_order() {
        for root in roots {
            let candidate = root.pod_dir(uid, class);
            match std::fs::metadata(&candidate) {
                Ok(meta) if meta.is_dir() => return Ok(Some(candidate)),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) => {}
                Err(source) => {
                    return Err(DiscoveryError::Stat {
                        uid: uid.into(),
                        path: candidate,
                        source,
                    });
                }
            }
            tried.push(candidate);
        }
    }
    Ok(None)
}
