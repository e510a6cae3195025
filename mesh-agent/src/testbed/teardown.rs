//! Removing a bed: kill its processes, remove its cgroups, bpffs pins, network namespaces and
//! work directory.
//!
//! Everything is found by name prefix rather than from the bed's bookkeeping, so the same code
//! removes a half-built bed and the leftovers of a run that was killed before its `Drop` ran.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use super::cgroup::{self, BPFFS};
use super::iproute;
use super::naming::{belongs_to, parse_bed_name};

/// Directory under which node agents pin their maps and links, one subdirectory per node name.
pub(crate) fn pin_root() -> PathBuf {
    Path::new(BPFFS).join("weft")
}

/// Parent of the beds' work directories.
pub(crate) fn work_root() -> PathBuf {
    std::env::temp_dir().join("weft-testbed")
}

/// Removes every object of the bed `prefix`. Carries on past failures and reports all of them.
pub(crate) fn purge(prefix: &str, cgroup2: &Path) -> Result<()> {
    let mut failures = Vec::new();
    // Killing first: a pinned link is detached when its pin is gone and no process holds it.
    if let Err(err) = cgroup::kill_and_remove(&cgroup2.join(prefix)) {
        failures.push(format!("{err:#}"));
    }
    for root in [pin_root(), work_root()] {
        match names_in(&root) {
            Ok(names) => {
                for name in names.iter().filter(|name| belongs_to(name, prefix)) {
                    let path = root.join(name);
                    if let Err(err) = remove_tree(&path) {
                        failures.push(format!("removing {}: {err}", path.display()));
                    }
                }
            }
            Err(err) => failures.push(format!("{err:#}")),
        }
    }
    match names_in(Path::new("/run/netns")) {
        Ok(names) => {
            let deletions: Vec<String> = names
                .iter()
                .filter(|name| belongs_to(name, prefix))
                .map(|name| format!("netns del {name}"))
                .collect();
            if !deletions.is_empty()
                && let Err(err) = iproute::batch(None, &deletions, true)
            {
                failures.push(format!("{err:#}"));
            }
        }
        Err(err) => failures.push(format!("{err:#}")),
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "tearing down test bed {prefix}: {}",
            failures.join("; ")
        ))
    }
}

/// Purges the beds labelled `label` whose process is gone: a test that was killed (or aborted)
/// never ran its `Drop`. Beds of live processes, and other labels, are left alone.
pub(crate) fn remove_leftovers(label: &str, cgroup2: &Path) -> Result<()> {
    let mut prefixes = Vec::new();
    for dir in [
        cgroup2.to_path_buf(),
        PathBuf::from("/run/netns"),
        pin_root(),
        work_root(),
    ] {
        for name in names_in(&dir)? {
            if let Some((owner, pid, prefix)) = parse_bed_name(&name)
                && owner == label
                && !process_exists(pid)
                && !prefixes.iter().any(|p| p == prefix)
            {
                prefixes.push(prefix.to_owned());
            }
        }
    }
    prefixes
        .iter()
        .try_for_each(|prefix| purge(prefix, cgroup2))
}

fn process_exists(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Entry names of `dir`; a missing directory has none.
fn names_in(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        names.extend(entry.file_name().into_string().ok());
    }
    Ok(names)
}

fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
