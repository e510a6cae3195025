//! `cargo xtask bench --scale`: a large cluster's state through a real agent, from the
//! Kubernetes source and from a local state file ([`file`]). An API server inside a test-bed node's network namespace (the real kube client talks
//! to the test bed's fake API) holds `--services` Services (default 10,000), each with an
//! EndpointSlice of `--endpoints-per-service` ready pods (default 10, so 100,000 endpoints and
//! as many pods, spread over 200 other nodes); one pod runs on the agent's node. The agent (`mesh-agent run --source kubernetes`) starts
//! against it; the benchmark prints:
//!
//! - the time from the agent's start to its first snapshot holding every service, and the
//!   agent's RSS and peak RSS then;
//! - the time from one API change (an endpoint added to a service) to the agent's model
//!   holding it, and from a namespace label flip to the datapath maps holding it, as the
//!   agent's own `weft_state_change_to_datapath_seconds` histogram measured it.
//!
//! The same cluster as a state file (`--source file`; both sources by default): the same
//! figures, the changes made by rewriting the file, which the agent polls.
//!
//! Nothing is asserted: the figures go to stdout and `target/bench/scale.json`.

mod file;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::kube_api::{FakeApi, NodeApi};
use mesh_agent::testbed::{AgentProcess, TestBed};
use serde_json::{Value, json};

const NAMESPACES: usize = 10;
/// Nodes the endpoint pods run on (not simulated: they only appear in the pods' `nodeName`).
const OTHER_NODES: usize = 200;
const CLIENT_UID: &str = "5ca1e000-0000-4000-8000-000000000001";
const CONVERGE_LIMIT: Duration = Duration::from_secs(300);

struct Args {
    services: usize,
    per_service: usize,
    sources: Vec<&'static str>,
}

/// What one source's run measured.
struct Figures {
    converged: Duration,
    /// VmRSS and VmHWM once converged, KiB.
    memory: (u64, u64),
    update: Duration,
    /// Seconds, as the agent's own histogram measured it.
    flip: f64,
}

fn args() -> Result<Args> {
    let mut args = Args {
        services: 10_000,
        per_service: 10,
        sources: vec!["kubernetes", "file"],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value =
            || -> Result<usize> { Ok(it.next().context("flag needs a value")?.parse()?) };
        match flag.as_str() {
            "--services" => args.services = value()?,
            "--endpoints-per-service" => args.per_service = value()?,
            "--quick" => args.services = 1_000,
            "--source" => {
                let source = it.next().context("--source needs kubernetes or file")?;
                args.sources = match source.as_str() {
                    "kubernetes" => vec!["kubernetes"],
                    "file" => vec!["file"],
                    other => bail!("unknown source {other:?} (kubernetes or file)"),
                };
            }
            other => bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(
        args.services <= 60_000 && args.per_service <= 250,
        "too large"
    );
    Ok(args)
}

fn main() -> Result<()> {
    let args = args()?;
    let bins = mesh_agent::testbed::example_bin_dir()?;
    let endpoints = args.services * args.per_service;
    let mut rows = Vec::new();
    for source in &args.sources {
        // A bed per source: nothing of one run (pins, cgroups) is left for the other.
        let mut bed = TestBed::new("scale")?;
        let node = bed.add_node("a")?.name.clone();
        let cgroup = Path::new("kubepods/besteffort").join(format!("pod{CLIENT_UID}"));
        bed.add_pod_in("a", "client", &cgroup)?;
        let figures = match *source {
            "kubernetes" => kubernetes(&bed, &bins, &node, &args)?,
            _ => file::run(&bed, &bins, &node, &args)?,
        };
        rows.push((*source, figures));
    }
    println!(
        "| source | services | endpoints | converge | RSS | peak RSS | endpoint change → model | label flip → maps |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for (source, f) in &rows {
        let (rss, peak) = (f.memory.0 as f64 / 1024.0, f.memory.1 as f64 / 1024.0);
        println!(
            "| {source} | {} | {endpoints} | {:.2} s | {rss:.1} MiB | {peak:.1} MiB | {:.0} ms | {:.1} ms |",
            args.services,
            f.converged.as_secs_f64(),
            f.update.as_secs_f64() * 1e3,
            f.flip * 1e3,
        );
        results.push(json!({
            "source": source,
            "services": args.services,
            "endpoints": endpoints,
            "converge_seconds": f.converged.as_secs_f64(),
            "rss_mib": rss,
            "peak_rss_mib": peak,
            "endpoint_change_to_model_seconds": f.update.as_secs_f64(),
            "label_flip_to_datapath_seconds": f.flip,
        }));
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("scale.json"), serde_json::to_vec_pretty(&results)?)?;
    Ok(())
}

/// The cluster in the fake API server, the agent on its Kubernetes source.
fn kubernetes(bed: &TestBed, bins: &Path, node: &str, args: &Args) -> Result<Figures> {
    let api = NodeApi::start(bed, "a")?;
    let kubeconfig = api.kubeconfig.clone();
    let loading = Instant::now();
    load_cluster(&api, bed, node, args)?;
    eprintln!(
        "loaded {} services, {} endpoints into the API server in {:.1?}",
        args.services,
        args.services * args.per_service,
        loading.elapsed()
    );
    let root = bed.node("a").agent_cgroup.parent().context("node cgroup")?;
    let root = root.to_str().context("cgroup path")?.to_owned();
    let started = Instant::now();
    let mut agent =
        AgentProcess::start_kubernetes(bed, "a", bins, &kubeconfig, &["--cgroup-root", &root])?;
    agent.wait_ready(CONVERGE_LIMIT)?;
    let converged = started.elapsed();
    let memory = memory(agent.pid().context("agent pid")?)?;
    let update = time_endpoint_update(&api, &agent, bed, args)?;
    let flip = time_label_flip(&api, &agent, bed)?;
    Ok(Figures {
        converged,
        memory,
        update,
        flip,
    })
}

/// Namespaces (`shop` enrolled later, `scale-N` holding the services), the client pod, and
/// every service with its EndpointSlice.
fn load_cluster(api: &FakeApi, bed: &TestBed, node: &str, args: &Args) -> Result<()> {
    api.apply(namespace("shop", false))?;
    for n in 0..NAMESPACES {
        api.apply(namespace(&format!("scale-{n}"), false))?;
    }
    let ip = bed.pod("client").ip.to_string();
    let host = bed.node("a").ip.to_string();
    api.apply(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "shop", "name": "client", "uid": CLIENT_UID},
        "spec": {"nodeName": node, "containers": [{"name": "app"}]},
        "status": {"phase": "Running", "qosClass": "BestEffort", "podIP": ip,
                   "podIPs": [{"ip": ip}], "hostIP": host, "hostIPs": [{"ip": host}]},
    }))?;
    for i in 0..args.services {
        let ns = format!("scale-{}", i % NAMESPACES);
        let name = format!("svc-{i}");
        api.apply(service(&ns, &name, vip(i)))?;
        for k in 0..args.per_service {
            api.apply(endpoint_pod(&ns, &name, i, k))?;
        }
        api.apply(slice(&ns, &name, i, args.per_service, 0))?;
    }
    Ok(())
}

/// Endpoint `k` of service `i`: a running pod on one of [`OTHER_NODES`] other nodes.
fn endpoint_pod(ns: &str, service: &str, i: usize, k: usize) -> Value {
    let ip = endpoint_ip(i, k).to_string();
    let node = (i * 7 + k) % OTHER_NODES;
    let host = other_node_ip(node).to_string();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": format!("{service}-{k}"), "labels": {"app": service}},
        "spec": {"nodeName": format!("node-{node}"), "serviceAccountName": service,
                 "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "qosClass": "BestEffort", "podIP": ip,
                   "podIPs": [{"ip": ip}], "hostIP": host, "hostIPs": [{"ip": host}]},
    })
}

/// Adds one endpoint to the last service and waits until the agent's model serves it.
fn time_endpoint_update(
    api: &FakeApi,
    agent: &AgentProcess,
    bed: &TestBed,
    args: &Args,
) -> Result<Duration> {
    let i = args.services - 1;
    let ns = format!("scale-{}", i % NAMESPACES);
    let name = format!("svc-{i}");
    expect_endpoint(bed, agent, i, &endpoint_ip(i, 0).to_string())?;
    let changed = Instant::now();
    api.apply(endpoint_pod(&ns, &name, i, args.per_service))?;
    api.apply(slice(&ns, &name, i, args.per_service, 1))?;
    let wanted = endpoint_ip(i, args.per_service).to_string();
    wait_for_endpoint(bed, agent, i, &wanted, changed)
}

/// The agent's explanation of a connection from the client to service `i`.
fn explain(bed: &TestBed, agent: &AgentProcess, i: usize) -> Result<String> {
    admin(
        bed,
        agent,
        &format!("/explain?src=shop/client&dst={}:80", vip(i)),
    )
}

/// Fails unless the agent lists `ip` among service `i`'s endpoints.
fn expect_endpoint(bed: &TestBed, agent: &AgentProcess, i: usize, ip: &str) -> Result<()> {
    let explained = explain(bed, agent, i)?;
    anyhow::ensure!(
        explained.contains(ip),
        "explain lists the service's endpoints: {explained}"
    );
    Ok(())
}

/// Waits until the agent lists `ip` among service `i`'s endpoints; the time since `changed`.
fn wait_for_endpoint(
    bed: &TestBed,
    agent: &AgentProcess,
    i: usize,
    ip: &str,
    changed: Instant,
) -> Result<Duration> {
    loop {
        if explain(bed, agent, i)?.contains(ip) {
            return Ok(changed.elapsed());
        }
        if changed.elapsed() > CONVERGE_LIMIT {
            bail!("the new endpoint never reached the agent's model");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Labels `shop` (its pod gets captured) and reads how long the agent says the change took to
/// reach the maps.
fn time_label_flip(api: &FakeApi, agent: &AgentProcess, bed: &TestBed) -> Result<f64> {
    let before = histogram(agent, bed)?;
    api.apply(namespace("shop", true))?;
    wait_for_flip(agent, bed, before)
}

/// Waits for the agent's change-to-datapath histogram to count one more change (`before` is its
/// count and sum earlier); that change's seconds.
fn wait_for_flip(agent: &AgentProcess, bed: &TestBed, before: (f64, f64)) -> Result<f64> {
    let deadline = Instant::now() + CONVERGE_LIMIT;
    loop {
        let (count, sum) = histogram(agent, bed)?;
        if count > before.0 {
            return Ok((sum - before.1) / (count - before.0));
        }
        if Instant::now() > deadline {
            bail!("the label flip never reached the datapath");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn histogram(agent: &AgentProcess, bed: &TestBed) -> Result<(f64, f64)> {
    let text = agent.metrics(bed)?;
    let get = |name| AgentProcess::metric(&text, name, &[]).unwrap_or(0.0);
    Ok((
        get("weft_state_change_to_datapath_seconds_count"),
        get("weft_state_change_to_datapath_seconds_sum"),
    ))
}

fn admin(bed: &TestBed, agent: &AgentProcess, path: &str) -> Result<String> {
    bed.in_netns(&agent.netns, || {
        mesh_agent::testbed::http_get("127.0.0.1:15000", path)
    })?
}

/// VmRSS and VmHWM of `pid`, in KiB.
fn memory(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} in /proc/{pid}/status"))?;
        Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The address of node `node-<k>`, one of [`OTHER_NODES`].
fn other_node_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, (k / 250) as u8, (k % 250 + 1) as u8)
}

fn vip(i: usize) -> Ipv4Addr {
    let i = u32::try_from(i).unwrap_or(0) + 256;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i)
}

/// Endpoint `k` of service `i`: 10.128.0.0/10, unique per (service, endpoint).
fn endpoint_ip(i: usize, k: usize) -> Ipv4Addr {
    let n = u32::try_from(i * 251 + k).unwrap_or(0);
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + n)
}

fn namespace(name: &str, enrolled: bool) -> Value {
    let labels = match enrolled {
        true => json!({"weft.dev/mesh": "enabled"}),
        false => json!({}),
    };
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn service(ns: &str, name: &str, vip: Ipv4Addr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": {
            "clusterIP": vip.to_string(), "clusterIPs": [vip.to_string()],
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    })
}

/// The EndpointSlice of service `i`: `per_service + extra` endpoints.
fn slice(ns: &str, name: &str, i: usize, per_service: usize, extra: usize) -> Value {
    let endpoints: Vec<Value> = (0..per_service + extra)
        .map(|k| {
            json!({
                "addresses": [endpoint_ip(i, k).to_string()], "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "namespace": ns, "name": format!("{name}-{k}")},
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": format!("{name}-slice"),
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}
