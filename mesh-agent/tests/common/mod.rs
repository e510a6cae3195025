//! Shared fixture of the end-to-end suites: two nodes in network namespaces, an enrolled client
//! and an outsider on node A, two backends on node B, one agent per node.

#![allow(dead_code)] // each suite uses a different part of the fixture

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::{AgentProcess, MeshSpec, TestBed};
use serde_json::Value;

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const BACKEND_PORT: u16 = 8080;
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_mesh-agent"))
        .parent()
        .expect("binary has a directory")
        .to_path_buf()
}

pub fn weft_pod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft-pod"))
}

pub struct Mesh {
    pub bed: TestBed,
    pub spec: MeshSpec,
    pub config: PathBuf,
    /// A token unique to this test run: backends put it in every reply.
    pub token: String,
}

/// Builds the topology and starts the backends; agents are started by the caller (so each test
/// chooses their flags).
pub fn mesh(label: &str) -> Result<Mesh> {
    let mut bed = TestBed::new(label)?;
    bed.add_node("a")?;
    bed.add_node("b")?;
    for (node, pod) in [
        ("a", "client"),
        ("a", "outsider"),
        ("b", "backend-1"),
        ("b", "backend-2"),
    ] {
        bed.add_pod(node, pod)?;
    }
    let token = format!("{label}-{}", std::process::id());
    for backend in ["backend-1", "backend-2"] {
        serve(&bed, backend, &format!("{backend}:{token}"))?;
    }
    let spec = MeshSpec::default()
        .namespace("shop", true)
        .namespace("legacy", false)
        .workload("client", "shop", "client")
        .workload("backend-1", "shop", "backend")
        .workload("backend-2", "shop", "backend")
        .workload("outsider", "legacy", "outsider")
        .service("shop", "backend", VIP, 80, BACKEND_PORT, "backend");
    let config = spec.write(&bed, "mesh.yaml")?;
    Ok(Mesh {
        bed,
        spec,
        config,
        token,
    })
}

impl Mesh {
    pub fn agent(&self, node: &str, extra: &[&str]) -> Result<AgentProcess> {
        let mut agent = AgentProcess::start(&self.bed, node, &bin_dir(), &self.config, extra)?;
        agent.wait_ready(READY_TIMEOUT)?;
        Ok(agent)
    }

    /// `weft-pod connect` from `pod`; returns its JSON summary.
    pub fn connect(&self, pod: &str, to: &str, args: &[&str]) -> Result<Value> {
        let mut cmd = weft_pod();
        cmd.args(["connect", "--to", to, "--expect", &self.token])
            .args(args);
        run_json(&self.bed, pod, cmd)
    }

    pub fn pod_addr(&self, pod: &str, port: u16) -> String {
        format!("{}:{port}", self.bed.pod(pod).ip)
    }

    pub fn node_ip(&self, node: &str) -> Ipv4Addr {
        self.bed.node(node).ip
    }
}

/// Starts `weft-pod serve` in `pod` on BACKEND_PORT and waits until it listens.
pub fn serve(bed: &TestBed, pod: &str, reply: &str) -> Result<()> {
    serve_on(bed, pod, BACKEND_PORT, reply)
}

/// Starts `weft-pod serve` in `pod` on `port` and waits until it listens.
pub fn serve_on(bed: &TestBed, pod: &str, port: u16, reply: &str) -> Result<()> {
    let mut cmd = weft_pod();
    cmd.args([
        "serve",
        "--listen",
        &format!("0.0.0.0:{port}"),
        "--reply",
        reply,
    ])
    .stdout(std::process::Stdio::piped());
    let mut child = bed.spawn_in_pod(pod, cmd)?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    if !line.starts_with("listening") {
        bail!("{pod}: server did not start: {line:?}");
    }
    // The bed kills the process at teardown (cgroup.kill); the handle is not needed.
    std::mem::forget(child);
    Ok(())
}

pub fn run_json(bed: &TestBed, pod: &str, cmd: Command) -> Result<Value> {
    let out = bed.run_in_pod(pod, cmd, Duration::from_secs(120))?;
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| {
        format!(
            "weft-pod in {pod} printed no JSON: {text:?} stderr: {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

pub fn first_reply(v: &Value) -> String {
    v["first_reply"].as_str().unwrap_or("").to_string()
}

/// Sample of a metric scraped from `agent`, 0 when absent.
pub fn metric(mesh: &Mesh, agent: &AgentProcess, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = agent.metrics(&mesh.bed).expect("scraping metrics");
    AgentProcess::metric(&text, name, labels).unwrap_or(0.0)
}

pub fn counter(mesh: &Mesh, agent: &AgentProcess, decision: &str) -> u64 {
    metric(
        mesh,
        agent,
        "weft_datapath_connects_total",
        &[("decision", decision)],
    ) as u64
}

/// Programs attached directly to a pod's cgroup.
pub fn attached(mesh: &Mesh, pod: &str) -> usize {
    mesh_agent::datapath::attached_programs(&mesh.bed.pod(pod).cgroup)
        .expect("querying cgroup programs")
        .len()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
