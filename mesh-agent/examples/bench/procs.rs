//! What a proxy process costs, from /proc: CPU seconds (utime + stime), resident memory now
//! (VmRSS, and RssAnon: the part that is not the executable's and libraries' pages) and at its
//! peak (VmHWM).

use anyhow::{Context, Result};

/// User + system CPU seconds of all the processes so far.
pub fn cpu_seconds(pids: &[u32]) -> Result<f64> {
    Ok(cpu_seconds_each(pids)?.iter().sum())
}

/// User + system CPU seconds of each process so far.
pub fn cpu_seconds_each(pids: &[u32]) -> Result<Vec<f64>> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            // Fields after the command name (which may hold spaces): utime and stime are the
            // 12th and 13th of those.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11).context("utime")?.parse()?;
            let stime: f64 = fields.get(12).context("stime")?.parse()?;
            Ok((utime + stime) / ticks)
        })
        .collect()
}

/// Peak resident set of each process, MiB.
pub fn peak_rss_mb(pids: &[u32]) -> Result<Vec<f64>> {
    status_mb(pids, "VmHWM:")
}

/// Resident set of each process now, MiB.
pub fn rss_mb(pids: &[u32]) -> Result<Vec<f64>> {
    status_mb(pids, "VmRSS:")
}

/// Anonymous resident memory (heap, stacks) of each process now, MiB.
pub fn anon_rss_mb(pids: &[u32]) -> Result<Vec<f64>> {
    status_mb(pids, "RssAnon:")
}

/// One `/proc/<pid>/status` field (in kB there) of each process, MiB.
fn status_mb(pids: &[u32], field: &str) -> Result<Vec<f64>> {
    pids.iter()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let kb: f64 = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .with_context(|| field.to_owned())?
                .parse()?;
            Ok(super::tools::round3(kb / 1024.0))
        })
        .collect()
}
