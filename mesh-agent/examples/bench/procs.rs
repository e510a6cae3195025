//! What a proxy process costs, from /proc: CPU seconds (utime + stime) and peak RSS (VmHWM).

use anyhow::{Context, Result};

/// User + system CPU seconds of each process so far.
pub fn cpu_seconds(pids: &[u32]) -> Result<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces): utime and stime are the 12th
        // and 13th of those.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11).context("utime")?.parse()?;
        let stime: f64 = fields.get(12).context("stime")?.parse()?;
        total += (utime + stime) / ticks;
    }
    Ok(total)
}

/// Peak resident set of each process, MiB.
pub fn peak_rss_mb(pids: &[u32]) -> Result<Vec<f64>> {
    pids.iter()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let kb: f64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .context("VmHWM")?
                .parse()?;
            Ok(super::tools::round3(kb / 1024.0))
        })
        .collect()
}
