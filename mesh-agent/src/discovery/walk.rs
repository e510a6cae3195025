//! Finding kubelet's kubepods roots below the cgroup2 mount: a few well-known places first, then
//! a bounded breadth-first walk for nodes whose kubelet runs nested (kind and k3d nodes, a
//! `cgroupRoot` setting, kubelet inside another container's cgroup). [`super::CgroupDiscovery`]
//! caches what this finds; [`super::layout`] says what a root looks like.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use super::layout::KubepodsRoot;

/// How deep below the mount a kubepods root may be. kind on a systemd host puts it at
/// `system.slice/docker-<id>.scope/kubelet.slice/kubelet-kubepods.slice` (depth 4).
pub const MAX_DEPTH: usize = 6;

/// How many directories one walk may list at most, so a node with thousands of cgroups pays a
/// bounded price even when it has no kubelet at all.
pub const MAX_VISITED: usize = 4096;

/// Where kubelet puts the root with its default settings, and with kind's `cgroupRoot: /kubelet`.
pub const KNOWN: [&str; 4] = [
    "kubepods.slice",
    "kubepods",
    "kubelet.slice/kubelet-kubepods.slice",
    "kubelet/kubepods",
];

/// The well-known roots that exist below `mount`.
pub fn known(mount: &Path) -> Vec<KubepodsRoot> {
    KNOWN
        .iter()
        .map(|rel| mount.join(rel))
        .filter(|path| path.is_dir())
        .filter_map(|path| KubepodsRoot::recognise(&path))
        .collect()
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Shallowest first; the walk does not look inside a root (pods and containers live there).
    pub roots: Vec<KubepodsRoot>,
    /// The walk stopped at [`MAX_VISITED`] directories before covering [`MAX_DEPTH`] levels.
    pub truncated: bool,
}

/// Breadth-first search below `mount` for kubepods roots, at most [`MAX_DEPTH`] levels deep.
/// Symbolic links are not followed; unreadable directories are skipped (a cgroup can vanish
/// while it is listed).
pub fn walk(mount: &Path) -> Walk {
    let mut found = Walk::default();
    let mut queue = VecDeque::from([(mount.to_path_buf(), 0usize)]);
    let mut visited = 0usize;
    while let Some((dir, depth)) = queue.pop_front() {
        if visited == MAX_VISITED {
            found.truncated = true;
            break;
        }
        visited += 1;
        for child in subdirectories(&dir) {
            if let Some(root) = KubepodsRoot::recognise(&child) {
                found.roots.push(root);
            } else if depth + 1 < MAX_DEPTH {
                queue.push_back((child, depth + 1));
            }
        }
    }
    found
}

/// The subdirectories of `dir`, sorted so that two walks of one tree agree.
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}
