//! The kernel side's own cost and state on `/metrics` and in `mesh-agent status`: per-program
//! run counts and run time from the kernel's BPF statistics, the datapath's decision counters
//! and map sizes, all growing with traffic. Needs root (run through `cargo xtask test`).

mod common;
mod l7;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use l7::*;
use mesh_agent::testbed::AgentProcess;
use serde_json::Value;

use crate::common::bin_dir;

const WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);

fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    AgentProcess::metric(text, name, labels).unwrap_or(-1.0)
}

/// `mesh-agent status -o json` on node A.
fn status(mesh: &L7) -> Result<Value> {
    let mut cmd = Command::new(bin_dir().join("mesh-agent"));
    cmd.args(["status", "-o", "json"])
        .env_remove("WEFT_ADMIN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = mesh.bed.spawn_on_node("a", cmd)?.wait_with_output()?;
    if !out.status.success() {
        bail!("status: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("status output")
}

#[test]
fn program_statistics_and_counters_grow_with_traffic() -> Result<()> {
    let (bed, spec) = bed("bpfstats", &[("web-1", "b", &[("app", "web")])])?;
    let spec = spec.service_spec(http_service("web", WEB, ("app", "web"), ""));
    let mesh = L7::start(bed, spec)?;
    let url = format!("http://{WEB}/");
    // One connection first, so that every series exists.
    mesh.load(&url, &[])?;

    let before = mesh.metrics(0)?;
    let connect4 = [("program", "connect4")];
    for program in [
        "connect4",
        "connect6",
        "sockops",
        "sock_release",
        "ingress",
        "getsockopt",
    ] {
        assert!(
            sample(
                &before,
                "weft_bpf_program_run_total",
                &[("program", program)]
            ) >= 0.0,
            "no run count for {program}:\n{before}"
        );
    }
    let runs_before = sample(&before, "weft_bpf_program_run_total", &connect4);
    assert!(runs_before >= 1.0, "connect4 never ran:\n{before}");
    let captured = [("decision", "captured")];
    let captured_before = sample(&before, "weft_datapath_connects_total", &captured);
    assert!(captured_before >= 1.0, "{before}");
    assert!(
        sample(&before, "weft_datapath_map_entries", &[("map", "PODS")]) >= 1.0,
        "{before}"
    );

    // Each load is a new process, so a new connection: a connect() through the mesh each.
    const CONNECTS: usize = 5;
    for _ in 0..CONNECTS {
        let r = mesh.load(&url, &[])?;
        assert_eq!(n(&r, "status", "200"), 1, "{r}");
    }
    let after = mesh.metrics(0)?;
    let runs_after = sample(&after, "weft_bpf_program_run_total", &connect4);
    assert!(
        runs_after >= runs_before + CONNECTS as f64,
        "connect4 ran {runs_before} then {runs_after} times"
    );
    assert!(
        sample(&after, "weft_bpf_program_run_seconds_total", &connect4)
            > sample(&before, "weft_bpf_program_run_seconds_total", &connect4),
        "run time did not grow:\n{after}"
    );
    assert!(
        sample(&after, "weft_datapath_connects_total", &captured)
            >= captured_before + CONNECTS as f64,
        "{after}"
    );

    let status = status(&mesh)?;
    let programs = &status["datapath"]["programs"];
    assert!(
        programs["connect4"]["run_count"]
            .as_f64()
            .is_some_and(|n| n >= runs_after),
        "{status}"
    );
    assert!(
        programs["getsockopt"]["id"]
            .as_u64()
            .is_some_and(|id| id > 0),
        "{status}"
    );
    Ok(())
}
