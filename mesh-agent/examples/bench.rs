//! `cargo xtask bench`: the request path through weft against the direct path, side by side in
//! one run on this machine.
//!
//! Two nodes (and a CA node) in network namespaces. A client pod on node A calls a server pod on
//! node B (`weft-pod http-serve`, 1 KiB replies) over HTTP/1.1 keep-alive along each path:
//!
//! - `direct`: a pod outside the mesh calls the server's pod address (no proxy at all);
//! - `weft L4` / `weft L7`: the enrolled client calls a service VIP, captured by eBPF, through
//!   both node proxies; L4 is a port declared opaque (`tcp-`), L7 a port declared `http`;
//! - the same two with mTLS: the node proxies tunnel through HBONE with CA-issued certificates.
//!
//! For each path: latency percentiles at a fixed 1,000 requests/s, requests/s at 64 concurrent
//! connections, the agents' CPU time and peak RSS. Results go to `target/bench/paths.json` and a
//! Markdown table on stdout. `--quick` shortens every phase (CI runs it so this cannot rot).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::{AgentProcess, MeshCa, MeshSpec, ServiceSpec, TestBed, message};
use serde_json::{Value, json};

const HTTP_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 80);
const TCP_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 81);
const PORT: u16 = 8080;
/// The fixed rate of the latency phase.
const RATE: u32 = 1000;

struct Plan {
    latency_secs: u32,
    throughput_requests: u32,
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = if quick {
        Plan {
            latency_secs: 3,
            throughput_requests: 10_000,
        }
    } else {
        Plan {
            latency_secs: 15,
            throughput_requests: 60_000,
        }
    };
    let bins = bin_dir()?;
    let bench = Bench::build(&bins)?;
    let mut rows = Vec::new();
    let direct = format!(
        "http://{}:{PORT}/bench?size=1024",
        bench.bed.pod("server").ip
    );
    rows.push(bench.measure("direct", "plain", &direct, &[], &plan)?);

    let http = format!("http://{HTTP_VIP}/bench?size=1024");
    let tcp = format!("http://{TCP_VIP}/bench?size=1024");
    {
        let agents = bench.agents(&[])?;
        rows.push(bench.measure("weft L4", "client", &tcp, &agents, &plan)?);
        rows.push(bench.measure("weft L7", "client", &http, &agents, &plan)?);
    }
    {
        let ca = MeshCa::start(&bench.bed, "ca", &bins, &bench.config, &[])?;
        let mut agents = Vec::new();
        for node in ["a", "b"] {
            let flags = ca.agent_flags(&bench.bed.node(node).name);
            let mut agent = bench.agent(node, &flags)?;
            agent.wait_for_log(Duration::from_secs(20), |e| message(e) == "identity issued")?;
            agents.push(agent);
        }
        rows.push(bench.measure("weft L4 + mTLS", "client", &tcp, &agents, &plan)?);
        rows.push(bench.measure("weft L7 + mTLS", "client", &http, &agents, &plan)?);
    }
    report(&rows, quick)
}

struct Bench {
    bed: TestBed,
    bins: PathBuf,
    config: PathBuf,
}

impl Bench {
    fn build(bins: &Path) -> Result<Bench> {
        let mut bed = TestBed::new("bench")?;
        for node in ["a", "b", "ca"] {
            bed.add_node(node)?;
        }
        for (node, pod) in [("a", "client"), ("a", "plain"), ("b", "server")] {
            bed.add_pod(node, pod)?;
        }
        http_serve(&bed, bins, "server")?;
        let service = |name: &str, vip, port_name: &str| ServiceSpec {
            name: name.into(),
            namespace: "bench".into(),
            vip,
            port: 80,
            target_port: PORT,
            selector: vec![("app".into(), "server".into())],
            port_name: Some(port_name.into()),
            app_protocol: None,
            extra: String::new(),
        };
        let spec = MeshSpec::default()
            .namespace("bench", true)
            .namespace("plain", false)
            .workload("client", "bench", "client")
            .workload("server", "bench", "server")
            .workload("plain", "plain", "plain")
            .service_spec(service("server", HTTP_VIP, "http"))
            .service_spec(service("server-tcp", TCP_VIP, "tcp-bench"));
        let config = spec.write(&bed, "mesh.yaml")?;
        Ok(Bench {
            bed,
            bins: bins.to_path_buf(),
            config,
        })
    }

    fn agent(&self, node: &str, flags: &[String]) -> Result<AgentProcess> {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut agent = AgentProcess::start(&self.bed, node, &self.bins, &self.config, &flags)?;
        agent.wait_ready(Duration::from_secs(20))?;
        Ok(agent)
    }

    fn agents(&self, flags: &[String]) -> Result<Vec<AgentProcess>> {
        ["a", "b"].iter().map(|n| self.agent(n, flags)).collect()
    }

    /// Warm-up, then the fixed-rate latency phase, then the fixed-concurrency throughput phase.
    fn measure(
        &self,
        path: &str,
        pod: &str,
        url: &str,
        agents: &[AgentProcess],
        plan: &Plan,
    ) -> Result<Value> {
        eprintln!("==> {path}");
        self.load(pod, url, &["--count", "500", "--concurrency", "4"])?;
        let count = (RATE * plan.latency_secs).to_string();
        let rate = RATE.to_string();
        let cpu_before = cpu_seconds(agents)?;
        let latency = self.load(
            pod,
            url,
            &["--count", &count, "--concurrency", "8", "--rate", &rate],
        )?;
        let cpu = cpu_seconds(agents)?;
        let busy: Vec<f64> = cpu.iter().zip(&cpu_before).map(|(a, b)| a - b).collect();
        let elapsed = latency["elapsed_ms"].as_f64().unwrap_or(1.0) / 1000.0;
        let requests = plan.throughput_requests.to_string();
        let throughput = self.load(pod, url, &["--count", &requests, "--concurrency", "64"])?;
        let rps = throughput["ok"].as_f64().unwrap_or(0.0)
            / (throughput["elapsed_ms"].as_f64().unwrap_or(1.0) / 1000.0);
        Ok(json!({
            "path": path,
            "latency_ms": latency["latency_ms"],
            "latency_ok": latency["ok"],
            "latency_total": latency["total"],
            "rps_c64": rps.round(),
            "throughput_errors": throughput["errors"],
            // Per node proxy, at the fixed rate: CPU seconds per second of load.
            "agent_vcpu_at_1000rps": busy.iter().map(|b| round3(b / elapsed)).collect::<Vec<_>>(),
            "agent_peak_rss_mb": agents.iter().map(peak_rss_mb).collect::<Result<Vec<_>>>()?,
        }))
    }

    fn load(&self, pod: &str, url: &str, args: &[&str]) -> Result<Value> {
        let mut cmd = Command::new(self.bins.join("weft-pod"));
        cmd.args(["http-load", "--url", url]).args(args);
        let out = self.bed.run_in_pod(pod, cmd, Duration::from_secs(300))?;
        let report: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!("http-load output: {}", String::from_utf8_lossy(&out.stderr))
        })?;
        if report["ok"] != report["total"] {
            bail!("{url}: not every request succeeded: {report}");
        }
        Ok(report)
    }
}

/// User + system CPU seconds of each agent so far.
fn cpu_seconds(agents: &[AgentProcess]) -> Result<Vec<f64>> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    agents
        .iter()
        .map(|a| {
            let pid = a.pid().context("agent not running")?;
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

fn peak_rss_mb(agent: &AgentProcess) -> Result<f64> {
    let pid = agent.pid().context("agent not running")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmHWM")?
        .parse()?;
    Ok(round3(kb / 1024.0))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn report(rows: &[Value], quick: bool) -> Result<()> {
    let out = Path::new("target/bench");
    std::fs::create_dir_all(out)?;
    let doc = json!({ "quick": quick, "rate": RATE, "paths": rows });
    std::fs::write(out.join("paths.json"), serde_json::to_string_pretty(&doc)?)?;
    let direct = &rows[0];
    let ms = |row: &Value, p: &str| row["latency_ms"][p].as_f64().unwrap_or(f64::NAN);
    println!(
        "| path | p50 ms | p90 ms | p99 ms | +p50 ms | +p90 ms | rps c=64 | vs direct | agent vCPU @1k rps (a, b) | agent peak RSS MB (a, b) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let rps = row["rps_c64"].as_f64().unwrap_or(0.0);
        let ratio = rps / direct["rps_c64"].as_f64().unwrap_or(1.0);
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:+.3} | {:+.3} | {rps:.0} | {ratio:.2} | {} | {} |",
            row["path"].as_str().unwrap_or(""),
            ms(row, "p50"),
            ms(row, "p90"),
            ms(row, "p99"),
            ms(row, "p50") - ms(direct, "p50"),
            ms(row, "p90") - ms(direct, "p90"),
            row["agent_vcpu_at_1000rps"],
            row["agent_peak_rss_mb"],
        );
    }
    println!("\n(results: target/bench/paths.json)");
    Ok(())
}

fn http_serve(bed: &TestBed, bins: &Path, pod: &str) -> Result<()> {
    let mut cmd = Command::new(bins.join("weft-pod"));
    cmd.args([
        "http-serve",
        "--name",
        pod,
        "--listen",
        &format!("0.0.0.0:{PORT}"),
    ])
    .stdout(std::process::Stdio::piped());
    let mut child = bed.spawn_in_pod(pod, cmd)?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    if !line.starts_with("listening") {
        bail!("{pod}: server did not start: {line:?}");
    }
    // The bed kills every process of its cgroups at teardown.
    std::mem::forget(child);
    Ok(())
}

/// The agent and weft-pod binaries sit next to this example's directory (target/<profile>/).
fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WEFT_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("example location")?;
    Ok(dir.to_path_buf())
}
