//! Where the agent's own cgroup is: the proxy's getsockopt hook attaches there.

use std::path::{Path, PathBuf};

use super::ConfigProblem;

/// Whether `dir` is the root of a cgroup v2 hierarchy (its parent is not a cgroup). Hooks
/// attached there see every process of the host.
pub fn is_cgroup_root(dir: &Path) -> bool {
    dir.join("cgroup.controllers").exists()
        && !dir
            .parent()
            .is_some_and(|p| p.join("cgroup.controllers").exists())
}

/// This process's cgroup v2 directory: the `0::` line of /proc/self/cgroup under the cgroup2
/// mount found in /proc/self/mountinfo (its location differs between unified and hybrid hosts).
pub fn own_cgroup_dir() -> Result<PathBuf, ConfigProblem> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| ConfigProblem(format!("{p}: {e}")));
    let cgroup = read("/proc/self/cgroup")?;
    let mountinfo = read("/proc/self/mountinfo")?;
    cgroup_dir_from(&cgroup, &mountinfo).ok_or_else(|| {
        ConfigProblem(
            "--proxy-cgroup: cannot find this process's cgroup v2 directory \
             (no cgroup2 mount or no 0:: entry in /proc/self/cgroup)"
                .into(),
        )
    })
}

fn cgroup_dir_from(proc_cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    let rel = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim();
    let mount = crate::mounts::parse(mountinfo)
        .into_iter()
        .find(|m| m.fstype == "cgroup2")?;
    // A mount of a sub-tree (root != "/") shows paths relative to the namespace root.
    let rel = rel.strip_prefix(mount.root.as_str()).unwrap_or(rel);
    let rel = rel.trim_start_matches('/');
    Some(if rel.is_empty() {
        mount.mount_point
    } else {
        mount.mount_point.join(rel)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_root_is_recognised() -> std::io::Result<()> {
        let base = std::env::temp_dir().join(format!("weft-cgroot-{}", std::process::id()));
        let child = base.join("root/child");
        std::fs::create_dir_all(&child)?;
        std::fs::write(base.join("root/cgroup.controllers"), "")?;
        std::fs::write(child.join("cgroup.controllers"), "")?;
        let (root, not_root) = (is_cgroup_root(&base.join("root")), is_cgroup_root(&child));
        std::fs::remove_dir_all(&base)?;
        assert!(root && !not_root);
        Ok(())
    }

    #[test]
    fn own_cgroup_is_found_on_hybrid_and_unified_hosts() {
        let hybrid = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                      30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n";
        let cg = "4:memory:/x\n0::/weft/agent\n";
        assert_eq!(
            cgroup_dir_from(cg, hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified/weft/agent"))
        );
        let unified = "29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup_dir_from("0::/\n", unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let escaped = "29 23 0:26 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup_dir_from("0::/a\n", escaped),
            Some(PathBuf::from("/mnt/cg two/a"))
        );
        assert_eq!(cgroup_dir_from("1:cpu:/\n", unified), None);
    }
}
