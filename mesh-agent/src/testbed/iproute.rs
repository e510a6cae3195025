//! Runs iproute2's `ip`: one process per call, or one per batch of commands in a namespace, which
//! keeps bed setup to a few milliseconds per node or pod. Every failure carries the command and
//! the tool's own stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// `ip` is usually in /usr/sbin, which is not on every PATH (e.g. under `sudo` or cargo test).
pub(crate) fn ip_binary() -> &'static Path {
    static IP: OnceLock<PathBuf> = OnceLock::new();
    IP.get_or_init(|| {
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .unwrap_or_else(|| PathBuf::from("ip"))
    })
}

/// Runs `ip <args>`.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new(ip_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    check(&output, || format!("ip {}", args.join(" ")))
}

/// Runs `ip [-n <netns>] [-force] -batch -` with one command per line. With `keep_going` (`-force`),
/// `ip` carries on after a failing line and still reports the failure.
pub(crate) fn batch(netns: Option<&str>, lines: &[String], keep_going: bool) -> Result<()> {
    let mut command = Command::new(ip_binary());
    if let Some(netns) = netns {
        command.args(["-n", netns]);
    }
    if keep_going {
        command.arg("-force");
    }
    let describe = || {
        let target = netns.map_or_else(String::new, |ns| format!(" -n {ns}"));
        format!("ip{target} -batch [{}]", lines.join("; "))
    };
    let mut child = command
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", describe()))?;
    let script = lines
        .iter()
        .fold(String::new(), |script, line| script + line + "\n");
    if let Some(mut stdin) = child.stdin.take() {
        // A batch is a few hundred bytes, far below the pipe buffer: no deadlock with the reads.
        stdin
            .write_all(script.as_bytes())
            .with_context(|| format!("writing to {}", describe()))?;
    }
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for {}", describe()))?;
    check(&output, describe)
}

fn check(output: &Output, describe: impl FnOnce() -> String) -> Result<()> {
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "{} failed ({}): {}",
            describe(),
            output.status,
            stderr.trim()
        );
    }
    Ok(())
}
