//! cgroup v2 and bpffs plumbing of the test bed: finding the mounts, creating the per-bed subtree,
//! and killing and removing it again.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where bpffs must be mounted: the agents pin their maps and links below it.
pub(crate) const BPFFS: &str = "/sys/fs/bpf";

/// How long killed processes get to leave their cgroups, and cgroups to become removable.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Mount points of `fstype`, in mount order.
fn mount_points(fstype: &str) -> Result<Vec<PathBuf>> {
    let mounts = crate::mounts::read().context("reading /proc/self/mountinfo")?;
    Ok(mounts
        .into_iter()
        .filter(|m| m.fstype == fstype)
        .map(|m| m.mount_point)
        .collect())
}

/// The cgroup v2 mount: `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on hybrid ones.
pub(crate) fn cgroup2_mount() -> Result<PathBuf> {
    let found = mount_points("cgroup2")?.into_iter().next();
    let path = found.context("no cgroup2 file system is mounted (the test bed needs cgroup v2)")?;
    if !path.join("cgroup.procs").exists() {
        bail!(
            "{}: mounted as cgroup2 but has no cgroup.procs",
            path.display()
        );
    }
    Ok(path)
}

/// Mounts bpffs at [`BPFFS`] unless it already is; it stays mounted for whoever needs it next.
pub(crate) fn ensure_bpffs() -> Result<()> {
    // Beds are built on parallel test threads: checking and mounting in two threads at once would
    // stack two bpffs instances on the same directory.
    static MOUNTING: Mutex<()> = Mutex::new(());
    let _serialized = MOUNTING.lock().unwrap_or_else(PoisonError::into_inner);
    if mount_points("bpf")?.iter().any(|p| p == Path::new(BPFFS)) {
        return Ok(());
    }
    let source = CString::new("bpf")?;
    let target = CString::new(BPFFS)?;
    // SAFETY: all three strings are valid NUL-terminated C strings that outlive the call, and
    // bpffs takes no mount data, so a null `data` pointer is allowed.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(err).with_context(|| format!("mounting bpffs at {BPFFS}"));
    }
    Ok(())
}

pub(crate) fn create(path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating cgroup {}", path.display()))
}

/// Kills every process in the subtree at `path` (`cgroup.kill` covers descendants), waits until it
/// is empty and removes its cgroups leaf first. A missing `path` is not an error.
pub(crate) fn kill_and_remove(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let deadline = Instant::now() + DRAIN_LIMIT;
    fs::write(path.join("cgroup.kill"), "1")
        .with_context(|| format!("writing {}/cgroup.kill", path.display()))?;
    while populated(path)? {
        if Instant::now() >= deadline {
            bail!(
                "{}: processes still running {DRAIN_LIMIT:?} after cgroup.kill",
                path.display()
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
    remove_tree(path, deadline)
}

fn populated(path: &Path) -> Result<bool> {
    let events_path = path.join("cgroup.events");
    let events = fs::read_to_string(&events_path)
        .with_context(|| format!("reading {}", events_path.display()))?;
    Ok(events.lines().any(|line| line == "populated 1"))
}

fn remove_tree(path: &Path, deadline: Instant) -> Result<()> {
    let entries = fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", path.display()))?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path(), deadline)?;
        }
    }
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Exiting tasks can keep a cgroup busy for a moment after it reports empty.
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(err) => {
                return Err(err).with_context(|| format!("removing cgroup {}", path.display()));
            }
        }
    }
}
