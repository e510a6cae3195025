//! Where a node's datapath lives in bpffs, and how it is created and removed.
//!
//! ```text
//! <bpffs>/weft/<node>/v<LAYOUT_VERSION>/maps/<MAP>           pinned maps (reused by the next agent)
//! <bpffs>/weft/<node>/v<LAYOUT_VERSION>/links/<uid>/<prog>   pinned links of one pod cgroup
//! ```
//!
//! Everything is per node, so several agents on one kernel never adopt each other's state, and
//! per layout version, so an agent never reuses maps whose layout it cannot read.

use std::{
    fs, io,
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use tracing::{debug, info, warn};

use super::sys;

/// Top directory of everything weft pins in a bpffs.
const WEFT_DIR: &str = "weft";

/// Names become path components through [`encode_name`], which cannot escape the pin tree;
/// only an empty name is refused.
pub fn validate_component(what: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty() {
        bail!("an empty {what} cannot name a pin directory");
    }
    Ok(())
}

pub fn node_dir(bpffs: &Path, node: &str) -> PathBuf {
    bpffs.join(WEFT_DIR).join(encode_name(node))
}

/// bpffs refuses any name containing '.', which Kubernetes node names and pod uids may hold:
/// every byte outside `[A-Za-z0-9_-]` is written as `%XX`, so distinct names stay distinct.
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_name`]; `None` for names it cannot have produced.
pub fn decode_name(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The pin directories of one node at the current layout version.
#[derive(Clone, Debug)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    pub fn new(bpffs: &Path, node: &str) -> anyhow::Result<Self> {
        validate_component("node name", node)?;
        let root = node_dir(bpffs, node).join(format!("v{}", mesh_common::LAYOUT_VERSION));
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn map_pin(&self, map: &str) -> PathBuf {
        self.root.join("maps").join(map)
    }

    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.links_dir().join(encode_name(uid))
    }

    /// Creates the maps and links directories (mode 0700, like every directory above them that
    /// did not exist yet).
    pub fn create(&self) -> io::Result<()> {
        for dir in [self.root.join("maps"), self.links_dir()] {
            create_private_dir(&dir)?;
        }
        Ok(())
    }

    /// Uids of the pods that have a link directory.
    pub fn pod_uids(&self) -> io::Result<Vec<String>> {
        let mut uids = Vec::new();
        for entry in fs::read_dir(self.links_dir())? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name();
            match name.to_str().and_then(decode_name) {
                Some(uid) => uids.push(uid),
                None => warn!(?name, "ignoring a pod pin directory weft did not name"),
            }
        }
        uids.sort();
        Ok(uids)
    }
}

pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Makes sure `path` is a bpffs, mounting one there if it is not.
pub fn ensure_bpffs(path: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    if sys::is_bpffs(path).with_context(|| format!("statfs {}", path.display()))? {
        return Ok(());
    }
    info!(path = %path.display(), "no bpffs mounted here; mounting one");
    sys::mount_bpffs(path).with_context(|| format!("mount -t bpf bpf {}", path.display()))?;
    if !sys::is_bpffs(path).with_context(|| format!("statfs {}", path.display()))? {
        bail!("{} is still not a bpffs after mounting one", path.display());
    }
    Ok(())
}

/// Detaches and unpins one pinned link: detach first, so the attachment ends even if some
/// other process still holds an fd of the link.
pub fn remove_link_pin(path: &Path) -> io::Result<()> {
    match sys::obj_get(path) {
        Ok(fd) => {
            use std::os::fd::AsFd as _;
            if let Err(e) = sys::link_detach(fd.as_fd()) {
                // Already detached (its cgroup was released): unpinning frees it.
                debug!(path = %path.display(), error = %e, "link detach");
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot open pinned link; unpinning it anyway")
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Detaches and removes everything pinned for `node` under `bpffs`, every layout version
/// included: the uninstall path, and the cleanup after an agent that died.
pub fn remove_node_pins(bpffs: &Path, node: &str) -> anyhow::Result<()> {
    validate_component("node name", node)?;
    let dir = node_dir(bpffs, node);
    if !dir.exists() {
        return Ok(());
    }
    let mut failures = Vec::new();
    remove_tree(&dir, false, &mut failures);
    // The shared top directory goes too once the last node is gone; another node's agent may
    // still use it, hence no error when it is not empty.
    let _ = fs::remove_dir(bpffs.join(WEFT_DIR));
    if !failures.is_empty() {
        bail!(
            "could not remove every pin of node {node}: {}",
            failures.join("; ")
        );
    }
    Ok(())
}

/// Detaches and removes what agents of other layout versions pinned for `node`: their programs
/// would otherwise keep running beside ours, on maps we cannot read. Returns the directories
/// removed.
pub fn remove_other_versions(bpffs: &Path, node: &str) -> anyhow::Result<Vec<PathBuf>> {
    let dir = node_dir(bpffs, node);
    let current = format!("v{}", mesh_common::LAYOUT_VERSION);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut removed = Vec::new();
    let mut failures = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && entry.file_name() != current.as_str() {
            remove_tree(&entry.path(), false, &mut failures);
            removed.push(entry.path());
        }
    }
    if !failures.is_empty() {
        bail!(
            "could not remove the pins of other layout versions: {}",
            failures.join("; ")
        );
    }
    Ok(removed)
}

/// Links live below a `links` directory; they are detached before they are unpinned. Maps are
/// simply unpinned (the kernel frees them with their last user).
fn remove_tree(dir: &Path, in_links: bool, failures: &mut Vec<String>) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            failures.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                failures.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            let links = in_links || entry.file_name() == "links";
            remove_tree(&path, links, failures);
        } else {
            let removed = if in_links {
                remove_link_pin(&path)
            } else {
                fs::remove_file(&path)
            };
            if let Err(e) = removed {
                failures.push(format!("{}: {e}", path.display()));
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        failures.push(format!("{}: {e}", dir.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_per_node_and_version() {
        let layout = PinLayout::new(Path::new("/sys/fs/bpf"), "node-1").expect("valid node");
        let v = mesh_common::LAYOUT_VERSION;
        assert_eq!(
            layout.root(),
            Path::new(&format!("/sys/fs/bpf/weft/node-1/v{v}"))
        );
        assert_eq!(
            layout.map_pin("PODS"),
            Path::new(&format!("/sys/fs/bpf/weft/node-1/v{v}/maps/PODS"))
        );
        assert_eq!(
            layout.pod_dir("abc"),
            Path::new(&format!("/sys/fs/bpf/weft/node-1/v{v}/links/abc"))
        );
    }

    #[test]
    fn other_layout_versions_are_removed() -> anyhow::Result<()> {
        let bpffs = std::env::temp_dir().join(format!("weft-pins-{}", std::process::id()));
        let node = node_dir(&bpffs, "n1");
        let current = node.join(format!("v{}", mesh_common::LAYOUT_VERSION));
        let old = node.join("v0");
        fs::create_dir_all(current.join("maps"))?;
        fs::create_dir_all(old.join("links/pod-1"))?;
        fs::create_dir_all(old.join("maps"))?;
        // Plain files stand in for pins: opening them as BPF objects fails, unpinning works.
        fs::write(old.join("links/pod-1/connect4"), "")?;
        fs::write(old.join("maps/PODS"), "")?;

        let removed = remove_other_versions(&bpffs, "n1");
        let kept = current.exists();
        fs::remove_dir_all(&bpffs)?;
        assert_eq!(removed?, vec![old.clone()]);
        assert!(kept, "the current version stays");
        assert!(
            remove_other_versions(&bpffs, "n1")?.is_empty(),
            "no node dir"
        );
        Ok(())
    }

    #[test]
    fn names_are_encoded_into_safe_components() {
        assert!(validate_component("node name", "").is_err());
        for name in [
            "kind-worker2",
            "ip-10-0-0-1.ec2.internal",
            "shop.client",
            "..",
            "a/b",
            "50%",
        ] {
            let encoded = encode_name(name);
            assert!(
                !encoded.contains(['.', '/', '\0']),
                "{name:?} -> {encoded:?}"
            );
            assert_eq!(decode_name(&encoded).as_deref(), Some(name));
        }
        assert_eq!(encode_name("kind-worker2"), "kind-worker2");
        assert_eq!(decode_name("bad%zz"), None);
    }
}
