//! The kernel's run-time statistics of the datapath's programs: how often each one ran and for
//! how long, read from `bpf_prog_info` (`run_cnt`, `run_time_ns`).
//!
//! The kernel counts only while statistics are switched on (`BPF_ENABLE_STATS`, the same switch
//! as the `kernel.bpf_stats_enabled` sysctl): the agent holds the descriptor that keeps them on
//! for as long as it runs. Counting costs two clock reads per program run, on every program of
//! the host while any holder exists, which is the price of seeing the eBPF side's cost. The
//! counts belong to the programs this agent loaded: a restart starts them from zero, like any
//! process counter.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tracing::warn;

use super::loader::{Loaded, Prog};

/// One program's statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramRuns {
    /// The program's short name, as in its pins: `connect4`, `sockops`, `getsockopt`...
    pub program: &'static str,
    /// The kernel's program id (as `bpftool prog` shows it).
    pub id: u32,
    pub run_count: u64,
    pub run_time: Duration,
}

/// Switches the kernel's run-time statistics on while the returned descriptor lives; `None`
/// (with a warning) on kernels or sandboxes that refuse, where the series stay at zero.
pub fn enable() -> Option<OwnedFd> {
    match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => Some(fd),
        Err(e) => {
            warn!(error = %e, "BPF run-time statistics unavailable; program run counts stay at zero");
            None
        }
    }
}

/// The statistics of every program of the object, in [`Prog::ALL`] order.
pub fn read(loaded: &Loaded) -> anyhow::Result<Vec<ProgramRuns>> {
    Prog::ALL
        .iter()
        .map(|&prog| {
            let info = loaded.program_info(prog)?;
            Ok(ProgramRuns {
                program: prog.pin_name(),
                id: info.id(),
                run_count: info.run_count(),
                run_time: info.run_time(),
            })
        })
        .collect()
}
