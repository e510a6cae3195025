//! The server pod's processes: `weft-pod http-serve` (replies of the size a request asks for)
//! and an iperf3 server for the bulk transfer.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::TestBed;

/// The HTTP server (1 KiB replies on request) and an iperf3 server in `pod`.
pub fn start(bed: &TestBed, bins: &Path, pod: &str, port: u16, bulk_port: u16) -> Result<()> {
    let mut cmd = Command::new(bins.join("weft-pod"));
    cmd.args([
        "http-serve",
        "--name",
        pod,
        "--listen",
        &format!("0.0.0.0:{port}"),
    ])
    .stdout(std::process::Stdio::piped());
    let mut child = bed.spawn_in_pod(pod, cmd)?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    if !line.starts_with("listening") {
        bail!("{pod}: server did not start: {line:?}");
    }
    let mut iperf = Command::new("/usr/bin/iperf3");
    iperf
        .args(["-s", "-p", &bulk_port.to_string()])
        .stdout(std::process::Stdio::null());
    let iperf = bed.spawn_in_pod(pod, iperf)?;
    // The bed kills every process of its cgroups at teardown.
    std::mem::forget(child);
    std::mem::forget(iperf);
    // iperf3 prints nothing useful to wait on; it binds within milliseconds.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}
