//! Turns the cgroup paths of this node's workloads into cgroup ids.
//!
//! The kernel programs report a socket's pod by cgroup id, which on cgroup v2 is the inode number
//! of the cgroup's directory. Sources only know paths (and only for pods of the node they run
//! on), so the agent resolves them here before a snapshot is published.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use super::model::{MeshState, WorkloadKey};

/// For the workloads of `node` that have a cgroup path, sets `cgroup_id` to the directory's inode
/// number, and re-indexes the snapshot.
///
/// Returns the workloads whose cgroup could not be resolved, with the reason, for the caller to
/// log; their `cgroup_id` is cleared, so the datapath does not capture them. Workloads of other
/// nodes are left as they are.
pub fn resolve_cgroups(state: &mut MeshState, node: &str) -> Vec<(WorkloadKey, String)> {
    let mut failed = Vec::new();
    let mut seen: HashMap<u64, WorkloadKey> = HashMap::new();
    for workload in state.workloads.values_mut() {
        if workload.node != node {
            continue;
        }
        let Some(path) = workload.cgroup.clone() else {
            continue;
        };
        let id = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Ok(meta.ino()),
            Ok(_) => Err(format!("{} is not a directory", path.display())),
            Err(e) => Err(format!("cannot stat {}: {e}", path.display())),
        };
        // Two pods resolving to one cgroup (a symlink, a stale path) would make the kernel's
        // reports ambiguous: the first keeps it.
        let id = id.and_then(|id| match seen.get(&id) {
            Some(first) => Err(format!("{} is the cgroup of {first} too", path.display())),
            None => Ok(id),
        });
        let resolved = match id {
            Ok(id) => {
                seen.insert(id, workload.key.clone());
                Some(id)
            }
            Err(reason) => {
                failed.push((workload.key.clone(), reason));
                None
            }
        };
        if workload.cgroup_id != resolved {
            Arc::make_mut(workload).cgroup_id = resolved;
        }
    }
    state.index();
    failed
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::state::parse_str;
    use crate::state::scratch::Scratch;

    fn key(name: &str) -> WorkloadKey {
        WorkloadKey {
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    #[test]
    fn resolves_inodes_of_this_node_and_reports_the_rest() {
        let scratch = Scratch::new("cgroups");
        let pod_a = scratch.0.join("pod-a");
        let pod_b = scratch.0.join("pod-b");
        std::fs::create_dir(&pod_a).expect("mkdir");
        std::fs::write(&pod_b, b"").expect("a file, not a directory");
        std::os::unix::fs::symlink(&pod_a, scratch.0.join("link")).expect("symlink");
        let missing = scratch.0.join("gone");
        let d = scratch.0.display();
        let yaml = format!(
            "namespaces: [{{name: shop, labels: {{weft.dev/mesh: enabled}}}}]
nodes: [{{name: node-a}}, {{name: node-b}}]
workloads:
  - {{name: a, namespace: shop, node: node-a, ips: [10.0.0.1], cgroup: {d}/pod-a}}
  - {{name: b, namespace: shop, node: node-a, ips: [10.0.0.2], cgroup: {d}/pod-b}}
  - {{name: c, namespace: shop, node: node-a, ips: [10.0.0.3], cgroup: {d}/gone}}
  - {{name: d, namespace: shop, node: node-b, ips: [10.0.0.4], cgroup: {d}/pod-a}}
  - {{name: e, namespace: shop, node: node-a, ips: [10.0.0.5]}}
  - {{name: f, namespace: shop, node: node-a, ips: [10.0.0.6], cgroup: {d}/link}}
"
        );
        let mut state = parse_str(Path::new("mesh.yaml"), &yaml).expect("valid file");

        let failed = resolve_cgroups(&mut state, "node-a");

        let ino = std::fs::metadata(&pod_a).expect("stat").ino();
        assert_eq!(state.workloads[&key("a")].cgroup_id, Some(ino));
        assert_eq!(
            state.workload_by_cgroup(ino).map(|w| w.key.clone()),
            Some(key("a"))
        );
        let failed: HashMap<_, _> = failed.into_iter().collect();
        assert_eq!(failed.len(), 3, "{failed:?}");
        assert!(failed[&key("b")].contains("not a directory"), "{failed:?}");
        assert!(
            failed[&key("c")].contains(&missing.display().to_string()),
            "{failed:?}"
        );
        assert!(failed[&key("f")].contains("shop/a"), "{failed:?}");
        for name in ["b", "c", "d", "e", "f"] {
            assert_eq!(state.workloads[&key(name)].cgroup_id, None, "{name}");
        }
    }

    #[test]
    fn a_cgroup_that_disappears_loses_its_id() {
        let scratch = Scratch::new("cgroups-gone");
        let pod = scratch.0.join("pod");
        std::fs::create_dir(&pod).expect("mkdir");
        let yaml = format!(
            "namespaces: [{{name: shop}}]
nodes: [{{name: n}}]
workloads: [{{name: a, namespace: shop, node: n, cgroup: {}}}]
",
            pod.display()
        );
        let mut state = parse_str(Path::new("mesh.yaml"), &yaml).expect("valid file");
        assert!(resolve_cgroups(&mut state, "n").is_empty());
        let ino = state.workloads[&key("a")].cgroup_id.expect("resolved");

        std::fs::remove_dir(&pod).expect("rmdir");
        let failed = resolve_cgroups(&mut state, "n");

        assert_eq!(failed.len(), 1);
        assert_eq!(state.workloads[&key("a")].cgroup_id, None);
        assert!(state.workload_by_cgroup(ino).is_none());
    }
}
