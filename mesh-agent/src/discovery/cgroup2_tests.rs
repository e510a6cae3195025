//! Discovery on the real cgroup2 mount (needs root): a kubelet-shaped subtree is created below a
//! scratch cgroup, found from the mount, and removed again.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::*;

/// A cgroup subtree removed leaf first on drop (cgroups are removed with rmdir, one by one).
struct ScratchCgroup(PathBuf);

impl Drop for ScratchCgroup {
    fn drop(&mut self) {
        remove_leaf_first(&self.0);
    }
}

fn remove_leaf_first(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_leaf_first(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

#[test]
fn finds_a_pod_below_a_scratch_cgroup_on_the_real_mount() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root to create cgroups"
    );
    let d = CgroupDiscovery::from_mount().expect("cgroup v2 is mounted");
    let scratch = ScratchCgroup(
        d.mount()
            .join(format!("weft-cgdisc-{}", std::process::id())),
    );
    remove_leaf_first(&scratch.0);
    // A UID of its own, so that a real kubelet's pods on this host cannot answer instead.
    let uid = format!(
        "7e57c9d0-{:04x}-4000-8000-000000000001",
        std::process::id() & 0xffff
    );
    let pod = scratch.0.join(format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        uid.replace('-', "_")
    ));
    fs::create_dir_all(pod.join("cri-containerd-0123abcd.scope")).expect("mkdir in cgroup2");
    assert!(
        pod.join("cgroup.procs").exists(),
        "{} is a real cgroup",
        pod.display()
    );

    let found = d
        .find(&uid, Qos::Burstable)
        .expect("found below the scratch cgroup");

    assert_eq!(found, pod);
    let ino = fs::metadata(&found).expect("stat").ino();
    assert_eq!(ino, fs::metadata(&pod).expect("stat").ino());
    assert!(
        d.roots()
            .iter()
            .any(|r| r.path == scratch.0.join("kubepods.slice")),
        "{:?}",
        d.roots()
    );
}
