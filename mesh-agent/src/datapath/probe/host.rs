//! The running kernel's answers: aya's feature probes for program types, helpers and maps; a
//! trivial program loaded with `expected_attach_type` for attach types (aya probes each program
//! type with one default attach type only, and e.g. `cgroup/sock_release` is younger than
//! `cgroup/sock_create`); `/proc/filesystems` and the mount table for cgroup v2 and bpffs.

use std::io;
use std::os::fd::{FromRawFd as _, OwnedFd};

use aya::programs::ProgramType;
use aya::sys::{is_helper_supported, is_map_supported, is_program_supported};

use super::{Feature, Kernel, Requirement};

const BPF_PROG_LOAD: libc::c_long = 5;

/// The kernel this process runs on.
pub struct Host;

impl Kernel for Host {
    fn supports(&self, r: &Requirement) -> Result<bool, String> {
        match r.feature {
            Feature::Program(p) => is_program_supported(p).map_err(|e| e.to_string()),
            Feature::Attach(p, attach) => attach_supported(p, attach),
            Feature::Helper(p, h) => is_helper_supported(p, h).map_err(|e| e.to_string()),
            Feature::Map(m) => is_map_supported(m).map_err(|e| e.to_string()),
            Feature::Cgroup2Mounted => Ok(crate::mounts::cgroup2().is_ok()),
            Feature::BpfFs => filesystem_known("bpf"),
        }
    }
}

/// Whether the kernel registered file system `name` (mounted or not: the agent mounts bpffs
/// itself when the directory is not one yet).
fn filesystem_known(name: &str) -> Result<bool, String> {
    let text = std::fs::read_to_string("/proc/filesystems")
        .map_err(|e| format!("/proc/filesystems: {e}"))?;
    Ok(text
        .lines()
        .any(|l| l.split_whitespace().last() == Some(name)))
}

/// The `BPF_PROG_LOAD` members of `union bpf_attr` up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `r0 = 1; exit`: accepted by every cgroup program type (1 = allow).
const RETURN_ONE: [u64; 2] = [
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 1 (little-endian insn layout: code, regs, off, imm).
    0xb7 | (1 << 32),
    // BPF_JMP | BPF_EXIT
    0x95,
];

/// Loads `RETURN_ONE` as `prog_type` for `attach`: EINVAL means the kernel does not know the
/// pair (the check in `bpf_prog_load_check_attach`), success means it does.
fn attach_supported(prog_type: ProgramType, attach: u32) -> Result<bool, String> {
    let prog_type = prog_type_number(prog_type)?;
    let insns = RETURN_ONE.map(u64::to_le);
    let license = c"GPL";
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: attach,
        ..Default::default()
    };
    // SAFETY: `attr` is a live `#[repr(C)]` prefix of `union bpf_attr` for BPF_PROG_LOAD; the
    // pointers in it stay valid for the call; the kernel reads `size_of` bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            std::ptr::from_mut(&mut attr).cast::<libc::c_void>(),
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if ret >= 0 {
        // SAFETY: a successful BPF_PROG_LOAD returns a new fd nothing else owns; dropping it
        // unloads the probe program.
        drop(unsafe { OwnedFd::from_raw_fd(ret as i32) });
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        e => Err(format!("bpf(BPF_PROG_LOAD): {e}")),
    }
}

/// `enum bpf_prog_type` values of the program types weft attaches.
fn prog_type_number(p: ProgramType) -> Result<u32, String> {
    Ok(match p {
        ProgramType::CgroupSkb => 8,
        ProgramType::CgroupSock => 9,
        ProgramType::SockOps => 13,
        ProgramType::CgroupSockAddr => 18,
        ProgramType::CgroupSockopt => 25,
        other => return Err(format!("no attach probe for {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prog_load_attr_matches_the_kernel_layout() {
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
    }

    /// The attach probe tells a known pair from one no kernel has (root: `bpf(2)`).
    #[test]
    fn an_unknown_attach_type_is_reported_missing() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let release = crate::datapath::sys::ATTACH_SOCK_RELEASE;
        assert_eq!(attach_supported(ProgramType::CgroupSock, release), Ok(true));
        assert_eq!(attach_supported(ProgramType::CgroupSock, 9999), Ok(false));
    }
}
