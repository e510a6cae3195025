//! Pod cgroup attachments: attaching and pinning the four pod programs, adopting the pins a
//! previous agent left, and releasing them.
//!
//! A pod's links are pinned under `links/<uid>/<prog>`; a pin is the attachment (dropping our fd
//! changes nothing), so an attachment is only ever created when its pin does not exist yet. That
//! is what keeps a restarted agent from attaching a second copy of a program.

use std::{
    collections::BTreeSet,
    fs, io,
    os::fd::{AsFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, anyhow};
use tracing::{debug, warn};

use super::{
    cgroups::CgroupRoot,
    loader::{Loaded, Prog},
    pins::{self, PinLayout},
    sys,
};

/// What the pin directory of one pod holds.
pub enum Inspection {
    /// Links of a cgroup that still exists.
    Live {
        cgroup_id: u64,
        links: Vec<(Prog, OwnedFd)>,
    },
    /// Links of a removed cgroup (id if the kernel still reports one), or links that disagree
    /// about their cgroup.
    Stale { cgroup_id: Option<u64> },
    /// No pinned link at all.
    Empty,
}

pub fn inspect(layout: &PinLayout, uid: &str, cgroups: &CgroupRoot) -> anyhow::Result<Inspection> {
    let dir = layout.pod_dir(uid);
    let mut links = Vec::new();
    let mut ids = BTreeSet::new();
    let mut consistent = true;
    for prog in Prog::POD {
        let path = dir.join(prog.pin_name());
        let fd = match sys::obj_get(&path) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(anyhow!(e).context(format!("opening pinned link {}", path.display())));
            }
        };
        let info = sys::cgroup_link_info(fd.as_fd())
            .with_context(|| format!("link info of {}", path.display()))?;
        if info.attach_type != prog.attach_type() {
            warn!(path = %path.display(), attach_type = info.attach_type, "pinned link has an unexpected attach type");
            consistent = false;
        }
        ids.insert(info.cgroup_id);
        links.push((prog, fd));
    }
    if links.is_empty() {
        return Ok(Inspection::Empty);
    }
    // A released cgroup reports id 0; links that disagree are not one pod's set.
    let known = ids.iter().copied().find(|&id| id != 0);
    let (Some(cgroup_id), true, 1) = (known, consistent, ids.len()) else {
        return Ok(Inspection::Stale { cgroup_id: known });
    };
    let alive = cgroups
        .exists(cgroup_id)
        .with_context(|| format!("looking up cgroup id {cgroup_id}"))?;
    Ok(if alive {
        Inspection::Live { cgroup_id, links }
    } else {
        Inspection::Stale { cgroup_id: known }
    })
}

/// Moves adopted links onto the freshly loaded programs (same maps, so nothing is lost). A
/// failure is not fatal: the old program keeps working on the same pinned maps.
pub fn upgrade(loaded: &Loaded, uid: &str, links: &[(Prog, OwnedFd)]) {
    for (prog, link) in links {
        let result = loaded
            .prog_fd(*prog)
            .and_then(|fd| sys::link_update(link.as_fd(), fd).map_err(anyhow::Error::from));
        match result {
            Ok(()) => debug!(
                uid,
                prog = prog.pin_name(),
                "adopted link now runs the new program"
            ),
            Err(e) => {
                warn!(uid, prog = prog.pin_name(), error = %e, "could not update adopted link; it keeps its program")
            }
        }
    }
}

/// Attaches and pins every pod program whose pin is missing. On failure the links created by
/// this call are removed again, so a pod is never left half-attached by us.
pub fn attach(
    loaded: &Loaded,
    layout: &PinLayout,
    uid: &str,
    cgroup: &OwnedFd,
) -> anyhow::Result<()> {
    let dir = layout.pod_dir(uid);
    pins::create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut created = Vec::new();
    let result = (|| {
        for prog in Prog::POD {
            let path = dir.join(prog.pin_name());
            if path.exists() {
                continue;
            }
            let link = sys::link_create(loaded.prog_fd(prog)?, cgroup.as_fd(), prog.attach_type())
                .with_context(|| format!("attaching {}", prog.symbol()))?;
            sys::obj_pin(link.as_fd(), &path)
                .with_context(|| format!("pinning {}", path.display()))?;
            created.push(path);
        }
        Ok(())
    })();
    if result.is_err() {
        for path in &created {
            if let Err(e) = pins::remove_link_pin(path) {
                warn!(path = %path.display(), error = %e, "rollback of a fresh link failed");
            }
        }
        let _ = fs::remove_dir(&dir);
    }
    result
}

/// Detaches and unpins every link of the pod, then removes its directory.
pub fn release(layout: &PinLayout, uid: &str) -> anyhow::Result<()> {
    let dir = layout.pod_dir(uid);
    for prog in Prog::POD {
        let path = dir.join(prog.pin_name());
        pins::remove_link_pin(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    match fs::remove_dir(&dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(anyhow!(e).context(format!("removing {}", dir.display())))
        }
        _ => Ok(()),
    }
}

/// Opens a pod cgroup for attaching and checks it is the cgroup the caller meant: a cgroup
/// recreated under the same path has a new id. `Ok(None)` when it does not exist (any more).
pub fn open_cgroup(path: &Path, expected_id: u64) -> anyhow::Result<Option<OwnedFd>> {
    let fd = match sys::open_dir(path) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow!(e).context(format!("opening cgroup {}", path.display()))),
    };
    let file = fs::File::from(fd);
    let id = {
        use std::os::unix::fs::MetadataExt as _;
        file.metadata()
            .with_context(|| format!("stat {}", path.display()))?
            .ino()
    };
    if id != expected_id {
        warn!(cgroup = %path.display(), id, expected_id, "cgroup id changed; skipping it");
        return Ok(None);
    }
    Ok(Some(OwnedFd::from(file)))
}
