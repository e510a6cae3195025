//! Cgroup lookups the datapath needs beyond paths: finding the cgroup2 mount and asking
//! whether a cgroup id (as reported by a pinned link) still names a live cgroup.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

use super::sys::open_dir;

/// `FILEID_KERNFS`: the handle type of kernfs (cgroup) file handles, whose 8 bytes are the id.
const FILEID_KERNFS: i32 = 0xfe;

#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: u64,
}

/// Whether the cgroup with this id still exists, asked through a kernfs file handle relative to
/// the cgroup2 mount (`cgroup_root`): removed cgroups answer ESTALE even while sockets or links
/// still hold them in memory.
pub fn cgroup_exists(cgroup_root: BorrowedFd<'_>, id: u64) -> io::Result<bool> {
    if id == 0 {
        return Ok(false);
    }
    let mut handle = KernfsHandle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id,
    };
    // SAFETY: `handle` has the layout of `struct file_handle` with an 8-byte payload.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            cgroup_root.as_raw_fd(),
            std::ptr::from_mut(&mut handle).cast::<libc::c_void>(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY,
        )
    };
    if ret >= 0 {
        // SAFETY: a successful open_by_handle_at returns a new descriptor nobody else owns.
        drop(unsafe { OwnedFd::from_raw_fd(ret as i32) });
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESTALE) | Some(libc::ENOENT) => Ok(false),
        _ => Err(err),
    }
}

/// Holds an open cgroup2 mount root for [`cgroup_exists`].
pub struct CgroupRoot(OwnedFd);

impl CgroupRoot {
    /// Opens the cgroup2 mount (its place differs between hybrid and unified hosts).
    pub fn open() -> io::Result<Self> {
        Ok(Self(open_dir(&crate::mounts::cgroup2()?.mount_point)?))
    }

    pub fn exists(&self, id: u64) -> io::Result<bool> {
        cgroup_exists(self.0.as_fd(), id)
    }
}
