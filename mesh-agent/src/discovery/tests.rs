//! Discovery against synthetic kubelet hierarchies: plain directories in a temp directory, laid
//! out as each driver, QoS class and node flavour does it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const UID: &str = "3f1e6c2a-0b7d-4a51-9d0e-5c8f2b1a7e44";
const UID_: &str = "3f1e6c2a_0b7d_4a51_9d0e_5c8f2b1a7e44";
const CONTAINER: &str = "9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";

/// A temp directory standing in for the cgroup2 mount, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("weft-cgdisc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create tree");
        Tree(dir)
    }

    /// Creates `rel` and its parents; returns its path.
    fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(&path).expect("mkdir");
        path
    }

    /// A pod directory with container sub-cgroups below it, as a runtime leaves them.
    fn pod(&self, rel: &str, containers: &[&str]) -> PathBuf {
        let pod = self.mkdir(rel);
        for container in containers {
            std::fs::create_dir(pod.join(container)).expect("mkdir container");
        }
        pod
    }

    fn discovery(&self) -> CgroupDiscovery {
        CgroupDiscovery::new(&self.0)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn containerd() -> String {
    format!("cri-containerd-{CONTAINER}.scope")
}

fn crio() -> String {
    format!("crio-{CONTAINER}.scope")
}

#[test]
fn systemd_driver_every_class() {
    let tree = Tree::new("systemd");
    let (a, b) = (containerd(), crio());
    let guaranteed = tree.pod(&format!("kubepods.slice/kubepods-pod{UID_}.slice"), &[&a]);
    let burstable_uid = "11111111-2222-3333-4444-555555555555";
    let burstable = tree.pod(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod11111111_2222_3333_4444_555555555555.slice",
        &[&a, &b, "crio-conmon-1.scope"],
    );
    let besteffort_uid = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    let besteffort = tree.pod(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podaaaaaaaa_bbbb_cccc_dddd_eeeeeeeeeeee.slice",
        &[&b],
    );
    let d = tree.discovery();

    for (uid, qos, want) in [
        (UID, Qos::Guaranteed, &guaranteed),
        (burstable_uid, Qos::Burstable, &burstable),
        (besteffort_uid, Qos::BestEffort, &besteffort),
    ] {
        assert_eq!(d.find(uid, qos).expect("found"), *want, "{qos:?}");
        assert_eq!(
            d.find(uid, Qos::Unknown).expect("found"),
            *want,
            "{qos:?} as Unknown"
        );
    }
    let roots = d.roots();
    assert_eq!(roots.len(), 1, "{roots:?}");
    assert_eq!(roots[0].driver, Driver::Systemd);
}

#[test]
fn cgroupfs_driver_every_class_keeps_dashes() {
    let tree = Tree::new("cgroupfs");
    let guaranteed = tree.pod(&format!("kubepods/pod{UID}"), &[CONTAINER, "pause"]);
    let burstable = tree.pod("kubepods/burstable/pod1-2", &[CONTAINER]);
    let besteffort = tree.pod("kubepods/besteffort/podx-y-z", &[CONTAINER]);
    let d = tree.discovery();

    assert_eq!(d.find(UID, Qos::Guaranteed).expect("found"), guaranteed);
    assert_eq!(d.find("1-2", Qos::Burstable).expect("found"), burstable);
    assert_eq!(d.find("x-y-z", Qos::BestEffort).expect("found"), besteffort);
    assert_eq!(d.find("x-y-z", Qos::Unknown).expect("found"), besteffort);
    assert_eq!(d.roots()[0].driver, Driver::Cgroupfs);
}

#[test]
fn a_wrong_class_still_finds_the_pod() {
    let tree = Tree::new("wrong-class");
    let pod = tree.pod(&format!("kubepods/besteffort/pod{UID}"), &[]);
    assert_eq!(
        tree.discovery().find(UID, Qos::Guaranteed).expect("found"),
        pod
    );
}

#[test]
fn nested_kubelet_roots() {
    // kind: systemd driver with `cgroupRoot: /kubelet`, slice names prefixed by their parent.
    let kind = Tree::new("kind");
    let pod = kind.pod(
        &format!(
            "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
             kubelet-kubepods-besteffort-pod{UID_}.slice"
        ),
        &[&containerd()],
    );
    kind.mkdir("system.slice/containerd.service");
    assert_eq!(
        kind.discovery().find(UID, Qos::BestEffort).expect("found"),
        pod
    );

    // k3d / docker-in-docker: cgroupfs kubepods below the node container's own cgroup.
    let dind = Tree::new("dind");
    dind.mkdir("system.slice/docker.service");
    dind.mkdir("user.slice/user-1000.slice/session-1.scope");
    let pod = dind.pod(
        &format!("system.slice/docker-{CONTAINER}.scope/kubepods/burstable/pod{UID}"),
        &[CONTAINER],
    );
    let d = dind.discovery();
    assert_eq!(d.find(UID, Qos::Unknown).expect("found"), pod);
    assert_eq!(
        d.roots()[0].path,
        dind.0
            .join(format!("system.slice/docker-{CONTAINER}.scope/kubepods"))
    );
}

#[test]
fn the_walk_reaches_six_levels_and_no_further() {
    let tree = Tree::new("depth");
    let six = tree.pod(&format!("a/b/c/d/e/kubepods/pod{UID}"), &[]);
    tree.pod("a/b/c/d/e/f/kubepods/podseven", &[]);
    let d = tree.discovery();
    assert_eq!(d.find(UID, Qos::Guaranteed).expect("found"), six);
    let err = d.find("seven", Qos::Guaranteed).expect_err("too deep");
    assert!(matches!(err, DiscoveryError::NotFound { .. }), "{err}");
}

#[test]
fn a_pod_below_a_second_root_is_found_by_walking() {
    // A node that runs kind clusters has the host's kubepods.slice at the top and the nodes'
    // roots deeper: the well-known root does not hide the others.
    let tree = Tree::new("two-roots");
    let host = tree.pod("kubepods.slice/kubepods-podhost.slice", &[]);
    let nested = tree.pod(
        &format!(
            "system.slice/docker-1.scope/kubelet.slice/kubelet-kubepods.slice/\
             kubelet-kubepods-pod{UID_}.slice"
        ),
        &[],
    );
    let d = tree.discovery();
    assert_eq!(d.find("host", Qos::Guaranteed).expect("found"), host);
    assert_eq!(d.roots().len(), 1, "no walk while the known root answers");
    assert_eq!(d.find(UID, Qos::Guaranteed).expect("found"), nested);
    assert_eq!(d.roots().len(), 2);
}

#[test]
fn pods_and_roots_that_appear_later() {
    let tree = Tree::new("later");
    let d = tree.discovery();
    let err = d.find(UID, Qos::Burstable).expect_err("no kubelet yet");
    assert!(
        matches!(err, DiscoveryError::NoKubepodsRoot { .. }),
        "{err}"
    );

    // kubelet starts: its well-known root is checked on every call, no walk needed.
    let first = tree.pod(
        &format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
        &[],
    );
    assert_eq!(d.find(UID, Qos::Burstable).expect("found"), first);

    // A pod started after discovery is a stat away.
    let second = tree.pod("kubepods.slice/kubepods-podlate.slice", &[]);
    assert_eq!(d.find("late", Qos::Guaranteed).expect("found"), second);
}

#[test]
fn a_nested_root_that_appears_later_waits_for_the_next_walk() {
    let tree = Tree::new("rewalk");
    let cached = tree.discovery();
    let eager = tree.discovery().with_rewalk_after(Duration::ZERO);
    for d in [&cached, &eager] {
        d.find(UID, Qos::Guaranteed).expect_err("nothing yet");
    }
    let pod = tree.pod(&format!("node/kubepods/pod{UID}"), &[]);

    let err = cached
        .find(UID, Qos::Guaranteed)
        .expect_err("walked moments ago");
    assert!(
        matches!(err, DiscoveryError::NoKubepodsRoot { .. }),
        "{err}"
    );
    assert_eq!(eager.find(UID, Qos::Guaranteed).expect("walked again"), pod);
}

#[test]
fn a_vanished_root_is_replaced() {
    // kubelet reconfigured from cgroupfs to systemd: the cached root goes away.
    let tree = Tree::new("vanished");
    tree.pod("kubepods/podold", &[]);
    let d = tree.discovery();
    d.find("old", Qos::Guaranteed).expect("found");
    std::fs::remove_dir_all(tree.0.join("kubepods")).expect("rm");
    let pod = tree.pod("kubepods.slice/kubepods-podnew.slice", &[]);
    assert_eq!(d.find("new", Qos::Guaranteed).expect("found"), pod);
    assert_eq!(d.roots().len(), 1);
    assert_eq!(d.roots()[0].driver, Driver::Systemd);
}

#[test]
fn a_missing_pod_names_every_path_tried() {
    let tree = Tree::new("missing");
    tree.pod("kubepods.slice/kubepods-podother.slice", &[]);
    tree.mkdir("kubepods.slice/kubepods-burstable.slice");
    let d = tree.discovery();
    let err = d.find(UID, Qos::Burstable).expect_err("no such pod");
    let root = tree.0.join("kubepods.slice");
    let want = [
        root.join(format!(
            "kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"
        )),
        root.join(format!(
            "kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
        )),
        root.join(format!("kubepods-pod{UID_}.slice")),
    ];
    assert_eq!(err.tried(), want);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("pod {UID}: no cgroup at ")),
        "{message}"
    );
    for path in &want {
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    let status = serde_json::to_value(err.unresolved()).expect("serialize");
    assert_eq!(status["reason"], message);
    assert_eq!(status["tried"].as_array().map(Vec::len), Some(3));
}

#[test]
fn no_root_names_the_mount_and_the_known_places() {
    let tree = Tree::new("no-root");
    tree.mkdir("system.slice/sshd.service");
    let err = tree
        .discovery()
        .find(UID, Qos::Unknown)
        .expect_err("no kubelet");
    let message = err.to_string();
    assert!(message.contains(&tree.0.display().to_string()), "{message}");
    assert!(
        message.contains("kubelet.slice/kubelet-kubepods.slice"),
        "{message}"
    );
    assert!(message.contains("6 levels deep"), "{message}");
    assert_eq!(err.tried().len(), KNOWN.len());
}

#[test]
fn a_uid_that_would_leave_the_root_is_refused() {
    let tree = Tree::new("bad-uid");
    tree.pod("kubepods/pod", &[]);
    tree.mkdir("etc");
    let d = tree.discovery();
    for uid in ["../etc", "", "a/b"] {
        let err = d.find(uid, Qos::Guaranteed).expect_err(uid);
        assert!(
            matches!(err, DiscoveryError::InvalidUid { .. }),
            "{uid}: {err}"
        );
    }
}

#[test]
fn a_file_where_a_pod_directory_should_be_is_not_a_pod() {
    let tree = Tree::new("file");
    tree.mkdir("kubepods");
    std::fs::write(tree.0.join(format!("kubepods/pod{UID}")), b"").expect("write");
    let err = tree
        .discovery()
        .find(UID, Qos::Guaranteed)
        .expect_err("a file");
    assert!(matches!(err, DiscoveryError::NotFound { .. }), "{err}");
    assert!(Path::new(&err.tried()[0]).ends_with(format!("kubepods/pod{UID}")));
}
