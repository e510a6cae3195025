//! `cargo xtask bench`: the request path through weft against the direct path, iptables capture
//! and a classic TLS proxy pair, side by side in one run on this machine.
//!
//! Two nodes (and a CA node) in network namespaces; the server pod on node B (`weft-pod
//! http-serve`, 1 KiB replies, and an iperf3 server). Paths ([`PATHS`]): `direct` (a pod outside
//! the mesh calls the server's address), `weft-l4` (a port declared opaque), `weft-l7` (a port
//! declared `http`), `weft-l7-mtls` (HBONE between the node proxies, CA-issued certificates),
//! `iptables-l7` (the same proxy fed by a netfilter DNAT rule, `--capture iptables`),
//! `same-node` and `same-node-sockmap` (client and server on node B), `haproxy-tls` (two
//! HAProxies with TLS between them).
//!
//! Per path: HTTP/1.1 and h2c latency at a fixed 1,000 requests/s (p50/p90/p99/p999), HTTP/1.1
//! requests/s at 1, 16 and 64 connections (wrk), new connection per request (wrk, `Connection:
//! close`), h2c requests/s with 64 streams in flight (h2load, 8 connections of 8 streams), a TCP
//! bulk transfer (iperf3), and the proxies' CPU seconds per 1,000 requests (over the c=64 phase),
//! vCPU and RSS at 1,000 requests/s, and peak RSS. A path that produces no numbers fails the run (exit 1) after
//! the others ran. Traffic stays inside the bed's namespaces.
//!
//! `--path <name>` (repeatable) runs only those paths.

mod haproxy;
mod procs;
mod report;
mod server;
mod tools;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::{AgentProcess, MeshCa, MeshSpec, ServiceSpec, TestBed, message};
use mesh_common::OUTBOUND_PORT;
use serde_json::{Value, json};

const HTTP_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 80);
const TCP_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 81);
const BULK_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 82);
const PORT: u16 = 8080;
const BULK_PORT: u16 = 5201;
/// The fixed rate of the latency phases.
const RATE: u32 = 1000;
/// HTTP/2 throughput: 8 connections of 8 concurrent streams, 64 requests in flight as at c=64.
const H2_STREAMS: (u32, u32) = (8, 8);
/// The agents' extra flags on `same-node-sockmap` (acceleration is off by default); `None`
/// reports the path as not available.
const SOCKMAP_ARGS: Option<&[&str]> = Some(&["--sockmap=true"]);

/// Every path, in the order of the table.
const PATHS: [&str; 8] = [
    "direct",
    "weft-l4",
    "weft-l7",
    "weft-l7-mtls",
    "iptables-l7",
    "same-node",
    "same-node-sockmap",
    "haproxy-tls",
];

struct Plan {
    latency_secs: u32,
    throughput_secs: u32,
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = if quick {
        Plan {
            latency_secs: 2,
            throughput_secs: 1,
        }
    } else {
        Plan {
            latency_secs: 15,
            throughput_secs: 10,
        }
    };
    let selected = selected_paths()?;
    let bins = mesh_agent::testbed::example_bin_dir()?;
    let bench = Bench::build(&bins)?;
    let mut rows = Vec::new();
    for path in selected {
        eprintln!("==> {path}");
        let row = bench.path(path, &plan).unwrap_or_else(|e| {
            eprintln!("{path}: {e:#}");
            json!({ "path": path, "error": format!("failed: {e:#}") })
        });
        rows.push(row);
    }
    println!("{}", report::write(&rows, quick, RATE)?);
    println!("(results: target/bench/paths.json, target/bench/paths.md)");
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.get("error").is_some())
        .filter_map(|r| r["path"].as_str())
        .collect();
    if !failed.is_empty() {
        bail!("no numbers from: {}", failed.join(", "));
    }
    Ok(())
}

/// The paths named by `--path` arguments, in the table's order; every path when none is named.
fn selected_paths() -> Result<Vec<&'static str>> {
    let args: Vec<String> = std::env::args().collect();
    let names: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--path")
        .map(|w| w[1].clone())
        .collect();
    if let Some(unknown) = names.iter().find(|n| !PATHS.contains(&n.as_str())) {
        bail!("unknown path {unknown:?}; the paths: {}", PATHS.join(", "));
    }
    Ok(PATHS
        .into_iter()
        .filter(|p| names.is_empty() || names.iter().any(|n| n == p))
        .collect())
}

/// Where a path's load enters: the client pod, the HTTP URL base and the bulk address.
struct Target {
    pod: &'static str,
    http: String,
    bulk: (String, u16),
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
        let pods = [
            ("a", "client"),
            ("a", "ipt"),
            ("a", "plain"),
            ("b", "local"),
            ("b", "server"),
        ];
        for (node, pod) in pods {
            bed.add_pod(node, pod)?;
        }
        server::start(&bed, bins, "server", PORT, BULK_PORT)?;
        let service = |name: &str, vip, port_name: &str, target_port| ServiceSpec {
            name: name.into(),
            namespace: "bench".into(),
            vip,
            port: 80,
            target_port,
            selector: vec![("app".into(), "server".into())],
            port_name: Some(port_name.into()),
            app_protocol: None,
            extra: String::new(),
        };
        let spec = MeshSpec::default()
            .namespace("bench", true)
            .namespace("plain", false)
            .workload("client", "bench", "client")
            .workload("ipt", "bench", "ipt")
            .workload("local", "bench", "local")
            .workload("server", "bench", "server")
            .workload("plain", "plain", "plain")
            .service_spec(service("server", HTTP_VIP, "http", PORT))
            .service_spec(service("server-tcp", TCP_VIP, "tcp-bench", PORT))
            .service_spec(service("server-bulk", BULK_VIP, "tcp-bulk", BULK_PORT));
        let config = spec.write(&bed, "mesh.yaml")?;
        Ok(Bench {
            bed,
            bins: bins.to_path_buf(),
            config,
        })
    }

    /// Sets the path up, measures it and takes it down (agents and proxies stop on drop).
    fn path(&self, path: &str, plan: &Plan) -> Result<Value> {
        let vip = |pod, vip| Target {
            pod,
            http: format!("http://{vip}"),
            bulk: (BULK_VIP.to_string(), 80),
        };
        let server = self.bed.pod("server").ip;
        match path {
            "direct" => {
                let t = Target {
                    pod: "plain",
                    http: format!("http://{server}:{PORT}"),
                    bulk: (server.to_string(), BULK_PORT),
                };
                self.measure(path, &t, &[], plan)
            }
            "weft-l4" | "weft-l7" | "same-node" => {
                let agents = self.agents(&[])?;
                let (pod, ip) = match path {
                    "weft-l4" => ("client", TCP_VIP),
                    "weft-l7" => ("client", HTTP_VIP),
                    _ => ("local", HTTP_VIP),
                };
                self.measure(path, &vip(pod, ip), &pids(&agents)?, plan)
            }
            "same-node-sockmap" => match SOCKMAP_ARGS {
                Some(args) => {
                    let agents = self.agents(args)?;
                    self.measure(path, &vip("local", HTTP_VIP), &pids(&agents)?, plan)
                }
                None => Ok(json!({ "path": path, "skipped": "n/a (needs --sockmap)" })),
            },
            "weft-l7-mtls" => {
                let ca = MeshCa::start(&self.bed, "ca", &self.bins, &self.config, &[])?;
                let mut agents = Vec::new();
                for node in ["a", "b"] {
                    let flags = ca.agent_flags(&self.bed.node(node).name);
                    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                    let mut agent = self.agent(node, &flags)?;
                    agent.wait_for_log(Duration::from_secs(20), |e| {
                        message(e) == "identity issued"
                    })?;
                    agents.push(agent);
                }
                self.measure(path, &vip("client", HTTP_VIP), &pids(&agents)?, plan)
            }
            "iptables-l7" => {
                let agents = self.agents(&["--capture", "iptables"])?;
                self.bed.capture_with_iptables("ipt", OUTBOUND_PORT)?;
                self.measure(path, &vip("ipt", HTTP_VIP), &pids(&agents)?, plan)
            }
            "haproxy-tls" => {
                let pair = haproxy::Pair::start(&self.bed, (server, PORT, BULK_PORT))?;
                let a = self.bed.node("a").ip;
                let t = Target {
                    pod: "plain",
                    http: format!("http://{a}:{}", haproxy::HTTP_PORT),
                    bulk: (a.to_string(), haproxy::BULK_PORT),
                };
                self.measure(path, &t, &pair.pids(), plan)
            }
            other => bail!("unknown path {other}"),
        }
    }

    fn agent(&self, node: &str, flags: &[&str]) -> Result<AgentProcess> {
        let mut agent = AgentProcess::start(&self.bed, node, &self.bins, &self.config, flags)?;
        agent.wait_ready(Duration::from_secs(20))?;
        Ok(agent)
    }

    fn agents(&self, flags: &[&str]) -> Result<Vec<AgentProcess>> {
        ["a", "b"].iter().map(|n| self.agent(n, flags)).collect()
    }

    /// Warm-up, the two fixed-rate phases, the three fixed-concurrency phases (CPU counted over
    /// c=64), new connections, bulk.
    fn measure(&self, path: &str, t: &Target, proxies: &[u32], plan: &Plan) -> Result<Value> {
        let url = format!("{}/bench?size=1024", t.http);
        let (bed, secs) = (&self.bed, plan.throughput_secs);
        tools::wrk(bed, t.pod, &url, 4, 1, false)?;
        let (h1, at_rate) = at_fixed_rate(proxies, || {
            tools::fixed_rate(bed, &self.bins, t.pod, &url, false, RATE, plan.latency_secs)
        })?;
        let h2 = tools::fixed_rate(bed, &self.bins, t.pod, &url, true, RATE, plan.latency_secs)?;
        let c1 = tools::wrk(bed, t.pod, &url, 1, secs, false)?;
        let c16 = tools::wrk(bed, t.pod, &url, 16, secs, false)?;
        let cpu_before = procs::cpu_seconds(proxies)?;
        let c64 = tools::wrk(bed, t.pod, &url, 64, secs, false)?;
        let cpu = procs::cpu_seconds(proxies)? - cpu_before;
        let requests = c64["requests"].as_f64().unwrap_or(0.0);
        let new_conns = tools::wrk(bed, t.pod, &url, 16, secs, true)?;
        let h2_c64 = tools::h2load(bed, t.pod, &url, H2_STREAMS, secs)?;
        let bulk = tools::iperf3(bed, t.pod, &t.bulk.0, t.bulk.1, secs.max(2))?;
        if c64["rps"].as_f64().unwrap_or(0.0) <= 0.0 {
            bail!("{path}: no request completed at c=64");
        }
        let cpu_per_1k = if proxies.is_empty() || requests <= 0.0 {
            Value::Null
        } else {
            json!(tools::round3(cpu / requests * 1000.0))
        };
        Ok(json!({
            "path": path,
            "h1_fixed_rate": h1,
            "h2_fixed_rate": h2,
            "c1": c1,
            "c16": c16,
            "c64": c64,
            "new_connections": new_conns,
            "h2_c64": h2_c64,
            "bulk_gbps": bulk,
            "proxy_cpu_s_per_1k_requests": cpu_per_1k,
            "proxy_peak_rss_mb": procs::peak_rss_mb(proxies)?,
            "proxy_at_rate": at_rate,
        }))
    }
}

/// Runs the HTTP/1.1 fixed-rate phase and measures what each proxy costs at that rate: its
/// share of a core over the phase (vCPU) and its resident memory at the end of it, in all and
/// the anonymous part.
fn at_fixed_rate(proxies: &[u32], phase: impl FnOnce() -> Result<Value>) -> Result<(Value, Value)> {
    let started = Instant::now();
    let before = procs::cpu_seconds_each(proxies)?;
    let result = phase()?;
    let after = procs::cpu_seconds_each(proxies)?;
    let secs = started.elapsed().as_secs_f64();
    let vcpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| tools::round3((a - b) / secs))
        .collect();
    let cost = json!({
        "vcpu": vcpu,
        "rss_mb": procs::rss_mb(proxies)?,
        "anon_rss_mb": procs::anon_rss_mb(proxies)?,
    });
    Ok((result, cost))
}

fn pids(agents: &[AgentProcess]) -> Result<Vec<u32>> {
    agents
        .iter()
        .map(|a| a.pid().context("agent not running"))
        .collect()
}
