//! `cargo xtask demo`: a two-node weft mesh on this machine, in network namespaces.
//!
//! Node A runs an enrolled client and a pod outside the mesh; node B runs two backends of the
//! service `shop/backend` (10.96.0.10:80). A third namespace runs the mesh CA, the only holder of
//! the signing key. One agent per node loads the real eBPF datapath and gets certificates for
//! its own pods; captured connections cross between nodes in mutual-TLS HBONE tunnels. The demo
//! sends traffic, shows what was captured, where it went and that only TLS crossed the wire, and
//! tears everything down.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::{AgentProcess, Capture, MeshCa, MeshSpec, TestBed, field, message};
use serde_json::Value;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn main() -> Result<()> {
    let bins = mesh_agent::testbed::example_bin_dir()?;
    let bed_label;
    {
        let demo = Demo::build(&bins)?;
        bed_label = demo.bed.prefix().to_string();
        demo.run()?;
        println!("\n== tearing down");
    }
    report_leftovers(&bed_label)
}

struct Demo {
    bed: TestBed,
    bins: PathBuf,
    agents: Vec<AgentProcess>,
    _ca: MeshCa,
}

impl Demo {
    fn build(bins: &std::path::Path) -> Result<Demo> {
        println!("== topology: two nodes, four pods, each in its own network namespace");
        let mut bed = TestBed::new("demo")?;
        bed.add_node("a")?;
        bed.add_node("b")?;
        bed.add_node("ca")?;
        for (node, pod) in [
            ("a", "client"),
            ("a", "outsider"),
            ("b", "backend-1"),
            ("b", "backend-2"),
        ] {
            let p = bed.add_pod(node, pod)?;
            println!("   pod {pod:<10} on node {node}  ip {}", p.ip);
        }
        for backend in ["backend-1", "backend-2"] {
            serve(&bed, bins, backend)?;
        }
        let spec = MeshSpec::default()
            .namespace("shop", true)
            .namespace("legacy", false)
            .workload("client", "shop", "client")
            .workload("backend-1", "shop", "backend")
            .workload("backend-2", "shop", "backend")
            .workload("outsider", "legacy", "outsider")
            .service("shop", "backend", VIP, 80, 8080, "backend");
        let config = spec.write(&bed, "mesh.yaml")?;
        println!(
            "== mesh state: {} (namespace shop enrolled, legacy not)",
            config.display()
        );

        let ca = MeshCa::start(&bed, "ca", bins, &config, &[])?;
        println!(
            "== mesh CA on node ca at {} (root key in {}, never on a node)",
            ca.addr,
            ca.dir.display()
        );

        let mut agents = Vec::new();
        for node in ["a", "b"] {
            let flags = ca.agent_flags(&bed.node(node).name);
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let mut agent = AgentProcess::start(&bed, node, bins, &config, &flags)?;
            let ready = agent.wait_ready(Duration::from_secs(20))?;
            println!(
                "== agent on node {node}: datapath ready, {} pod(s) captured, pinned at {}",
                field(&ready, "attached").unwrap_or_default(),
                field(&ready, "pin_dir").unwrap_or_default()
            );
            let issued =
                agent.wait_for_log(Duration::from_secs(20), |e| message(e) == "identity issued")?;
            println!(
                "   certificate {} for {}",
                field(&issued, "serial").unwrap_or_default(),
                field(&issued, "id").unwrap_or_default()
            );
            agents.push(agent);
        }
        Ok(Demo {
            bed,
            bins: bins.to_path_buf(),
            agents,
            _ca: ca,
        })
    }

    fn run(mut self) -> Result<()> {
        println!("\n== shop/client dials the service VIP {VIP}:80 four times");
        let capture = Capture::fabric(&self.bed)?;
        for _ in 0..4 {
            let r = self.connect("client", &[])?;
            println!("   client -> {VIP}:80  replied: {}", reply(&r));
        }
        let wire = capture.finish();
        let clear = wire.windows(10).any(|w| w == b"hello from");
        println!(
            "   on the wire between the nodes: {} bytes, reply text in clear: {}",
            wire.len(),
            if clear {
                "YES (not encrypted!)"
            } else {
                "no (mTLS)"
            }
        );
        println!("   node B's proxy let these in (identity from the client's certificate):");
        for e in self.agents[1]
            .events()
            .iter()
            .filter(|e| message(e) == "inbound stream")
            .take(4)
        {
            println!(
                "   {} -> {} ({})",
                field(e, "source").unwrap_or_default(),
                field(e, "dst").unwrap_or_default(),
                field(e, "outcome").unwrap_or_default(),
            );
        }

        println!("\n== the client dials the same VIP from an IPv6 socket (::ffff:{VIP})");
        let r = self.connect("client", &["--v6-mapped"])?;
        println!("   client -> [::ffff:{VIP}]:80  replied: {}", reply(&r));

        println!("\n== legacy/outsider is not in the mesh: its connection is not captured");
        let r = self.connect("outsider", &["--timeout-ms", "1000"])?;
        println!(
            "   outsider -> {VIP}:80  {} (the service range is blackholed: only the mesh handles VIPs here)",
            if r["ok"].as_u64() == Some(0) {
                format!("failed: {}", r["errors"])
            } else {
                "UNEXPECTEDLY succeeded".into()
            }
        );

        println!("\n== what node A's agent saw");
        let node_a = &self.agents[0];
        for e in node_a
            .events()
            .iter()
            .filter(|e| message(e) == "outbound connection")
        {
            println!(
                "   {} from {} to {} -> service {} at {} via {} ({} bytes out, {} back)",
                field(e, "src_workload").unwrap_or_default(),
                field(e, "src_addr").unwrap_or_default(),
                field(e, "original_dst").unwrap_or_default(),
                field(e, "service").unwrap_or_default(),
                field(e, "upstream").unwrap_or_default(),
                field(e, "via").unwrap_or_default(),
                field(e, "bytes_sent").unwrap_or_default(),
                field(e, "bytes_received").unwrap_or_default(),
            );
        }
        let metrics = node_a.metrics(&self.bed)?;
        for line in metrics
            .lines()
            .filter(|l| l.starts_with("weft_datapath_connects_total"))
        {
            println!("   {line}");
        }

        println!("\n== stopping the agents (SIGTERM)");
        for agent in &mut self.agents {
            agent.terminate(Duration::from_secs(15))?;
            let last = agent
                .events()
                .into_iter()
                .map(|e| message(&e).to_string())
                .rfind(|m| m.starts_with("datapath"))
                .unwrap_or_default();
            println!("   node {}: {last}", agent.node);
        }
        Ok(())
    }

    fn connect(&self, pod: &str, extra: &[&str]) -> Result<Value> {
        let mut cmd = Command::new(self.bins.join("weft-pod"));
        cmd.args(["connect", "--to", &format!("{VIP}:80")])
            .args(extra);
        let out = self.bed.run_in_pod(pod, cmd, Duration::from_secs(30))?;
        serde_json::from_slice(&out.stdout).context("weft-pod output")
    }
}

fn reply(r: &Value) -> String {
    r["first_reply"]
        .as_str()
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| format!("no reply: {}", r["errors"]))
}

fn serve(bed: &TestBed, bins: &std::path::Path, pod: &str) -> Result<()> {
    let mut cmd = Command::new(bins.join("weft-pod"));
    cmd.args([
        "serve",
        "--listen",
        "0.0.0.0:8080",
        "--reply",
        &format!("hello from {pod}"),
    ])
    .stdout(std::process::Stdio::piped());
    let mut child = bed.spawn_in_pod(pod, cmd)?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("server stdout")?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    if !line.starts_with("listening") {
        bail!("{pod}: server did not start: {line:?}");
    }
    // The bed kills every process in its cgroups at teardown.
    std::mem::forget(child);
    Ok(())
}

/// Proves the teardown: no namespace, cgroup or BPF program of the demo is left.
fn report_leftovers(prefix: &str) -> Result<()> {
    let netns =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output()?.stdout)
            .lines()
            .filter(|l| l.contains(prefix))
            .count();
    let progs = String::from_utf8_lossy(
        &Command::new("bpftool")
            .args(["prog", "list"])
            .output()?
            .stdout,
    )
    .lines()
    .filter(|l| l.contains("weft_") || l.contains("mesh_"))
    .count();
    println!("   left behind: {netns} network namespaces, {progs} weft BPF programs");
    if netns + progs > 0 {
        bail!("the demo left state behind");
    }
    Ok(())
}
