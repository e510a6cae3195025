//! Same-node acceleration (sockops + sk_msg + sockhash) end to end: real agents, pods in network
//! namespaces. The proof that bytes skipped the stack is the pods' own interface counters: with
//! acceleration a 1 MiB echo leaves only handshakes on the veths; without it the payload crosses
//! them. A one-way stream to a reader that holds back falls back to TCP and is pushed back on.
//! Needs root (run through `cargo xtask test`).

mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{READY_TIMEOUT, bin_dir, count, eventually, run_json, weft_pod};
use mesh_agent::testbed::{AgentProcess, MeshSpec, ServiceSpec, TestBed};
use serde_json::Value;

const ECHO_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 30);
const ECHO_REMOTE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 31);
const LINE_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 32);
const WEB_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 33);
const SINK_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 34);
const ECHO_PORT: u16 = 9000;
const LINE_PORT: u16 = 9100;
const SINK_PORT: u16 = 9200;
const HTTP_PORT: u16 = 8080;
const MIB: u64 = 1 << 20;
/// What a veth may carry for one accelerated connection: handshake, FIN and ACKs, far below the
/// payload.
const CONTROL_BYTES: u64 = 64 << 10;

struct Bed {
    bed: TestBed,
    config: PathBuf,
    token: String,
}

/// Node A: `client` and `local` (echo, line and HTTP servers); node B: `remote` (echo).
fn bed(label: &str) -> Result<Bed> {
    let mut bed = TestBed::new(label)?;
    bed.add_node("a")?;
    bed.add_node("b")?;
    bed.add_pod("a", "client")?;
    bed.add_pod("a", "local")?;
    bed.add_pod("b", "remote")?;
    let token = format!("{label}-{}", std::process::id());
    for pod in ["local", "remote"] {
        start(
            &bed,
            pod,
            &["echo", "--listen", &format!("0.0.0.0:{ECHO_PORT}")],
        )?;
    }
    let line = format!("0.0.0.0:{LINE_PORT}");
    start(
        &bed,
        "local",
        &["serve", "--listen", &line, "--reply", &token],
    )?;
    let sink = format!("0.0.0.0:{SINK_PORT}");
    start(
        &bed,
        "local",
        &["sink", "--listen", &sink, "--hold-ms", "3000"],
    )?;
    let web = format!("0.0.0.0:{HTTP_PORT}");
    start(
        &bed,
        "local",
        &["http-serve", "--listen", &web, "--name", "local"],
    )?;
    let spec = MeshSpec::default()
        .namespace("shop", true)
        .workload("client", "shop", "client")
        .workload("local", "shop", "local")
        .workload("remote", "shop", "remote")
        .service("shop", "echo-local", ECHO_LOCAL, 80, ECHO_PORT, "local")
        .service("shop", "echo-remote", ECHO_REMOTE, 80, ECHO_PORT, "remote")
        .service("shop", "line", LINE_LOCAL, 80, LINE_PORT, "local")
        .service("shop", "sink", SINK_LOCAL, 80, SINK_PORT, "local")
        .service_spec(ServiceSpec {
            name: "web".into(),
            namespace: "shop".into(),
            vip: WEB_LOCAL,
            port: 80,
            target_port: HTTP_PORT,
            selector: vec![("app".into(), "local".into())],
            port_name: Some("http".into()),
            app_protocol: None,
            extra: String::new(),
        });
    let config = spec.write(&bed, "mesh.yaml")?;
    Ok(Bed { bed, config, token })
}

/// Starts a `weft-pod` server in `pod` and waits for its `listening` line.
fn start(bed: &TestBed, pod: &str, args: &[&str]) -> Result<()> {
    let mut cmd = weft_pod();
    cmd.args(args).stdout(Stdio::piped());
    let mut child = bed.spawn_in_pod(pod, cmd)?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    if !line.starts_with("listening") {
        bail!("{pod}: {args:?} did not start: {line:?}");
    }
    // The bed kills it at teardown (cgroup.kill).
    std::mem::forget(child);
    Ok(())
}

impl Bed {
    fn agent(&self, node: &str, extra: &[&str]) -> Result<AgentProcess> {
        let mut agent = AgentProcess::start(&self.bed, node, &bin_dir(), &self.config, extra)?;
        agent.wait_ready(READY_TIMEOUT)?;
        Ok(agent)
    }

    /// `weft-pod bulk` of 1 MiB from the client through `vip`'s echo.
    fn bulk(&self, vip: Ipv4Addr) -> Result<Value> {
        let mut cmd = weft_pod();
        cmd.args(["bulk", "--to", &format!("{vip}:80"), "--bytes"])
            .arg(MIB.to_string());
        run_json(&self.bed, "client", cmd)
    }

    fn client(&self, args: &[&str]) -> Result<Value> {
        let mut cmd = weft_pod();
        cmd.args(args);
        run_json(&self.bed, "client", cmd)
    }

    /// Bytes received plus sent on the pod's `eth0` (its veth), read in its own namespace.
    fn veth_bytes(&self, pod: &str) -> Result<u64> {
        let dev = self.bed.in_netns(&self.bed.pod(pod).netns, || {
            std::fs::read_to_string("/proc/thread-self/net/dev")
        })??;
        let line = dev
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("eth0:"))
            .with_context(|| format!("no eth0 in {pod}: {dev}"))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        // rx_bytes is the first field, tx_bytes the ninth.
        Ok(fields[0] + fields[8])
    }
}

fn metric(bed: &Bed, agent: &AgentProcess, name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = agent.metrics(&bed.bed).expect("scraping metrics");
    AgentProcess::metric(&text, name, labels).unwrap_or(0.0) as u64
}

fn entries(bed: &Bed, agent: &AgentProcess, map: &str) -> u64 {
    metric(bed, agent, "weft_datapath_map_entries", &[("map", map)])
}

fn redirected_bytes(bed: &Bed, agent: &AgentProcess) -> u64 {
    metric(
        bed,
        agent,
        "weft_datapath_sockmap_redirected_bytes_total",
        &[],
    )
}

fn assert_echoed(r: &Value) {
    assert_eq!(r["received"].as_u64(), Some(MIB), "{r}");
    assert_eq!(r["matched"], Value::Bool(true), "{r}");
    assert_eq!(r["sent_digest"], r["received_digest"], "{r}");
}

/// On: a 1 MiB echo through the proxy to a pod of the same node comes back intact
/// while neither pod's veth carries the payload, and the counters account for all four copies
/// (client -> proxy -> server and back). Across nodes the client's hop is still short-circuited.
/// HTTP keep-alive through the L7 proxy works on accelerated sockets.
#[test]
fn same_node_payload_skips_the_veths_and_round_trips_intact() -> Result<()> {
    let bed = bed("smapon")?;
    let agent = bed.agent("a", &["--sockmap=true"])?;
    let _agent_b = bed.agent("b", &["--sockmap=true"])?;

    let (client0, local0) = (bed.veth_bytes("client")?, bed.veth_bytes("local")?);
    let r = bed.bulk(ECHO_LOCAL)?;
    assert_echoed(&r);
    let client = bed.veth_bytes("client")? - client0;
    let local = bed.veth_bytes("local")? - local0;
    eprintln!("accelerated 1 MiB echo: client veth {client} B, server veth {local} B");
    assert!(client < CONTROL_BYTES, "client veth carried {client} bytes");
    assert!(local < CONTROL_BYTES, "server veth carried {local} bytes");
    assert!(
        redirected_bytes(&bed, &agent) >= 4 * MIB,
        "redirected {} bytes",
        redirected_bytes(&bed, &agent)
    );
    let sockets = metric(&bed, &agent, "weft_datapath_sockmap_sockets_total", &[]);
    assert!(sockets >= 4, "{sockets} sockets accelerated");

    // Another node: the client's hop to its proxy is still socket to socket.
    let before = bed.veth_bytes("client")?;
    let r = bed.bulk(ECHO_REMOTE)?;
    assert_echoed(&r);
    let client = bed.veth_bytes("client")? - before;
    assert!(client < CONTROL_BYTES, "client veth carried {client} bytes");

    let web = format!("http://{WEB_LOCAL}/");
    let r = bed.client(&["http-load", "--url", &web, "--count", "200"])?;
    assert_eq!(r["status"]["200"].as_u64(), Some(200), "{r}");
    assert_eq!(r["served_by"]["local"].as_u64(), Some(200), "{r}");
    Ok(())
}

/// 1,000 short connections (the server closes first) and a bulk echo (the client closes first)
/// leave the acceleration maps as they found them: empty.
#[test]
fn short_connections_leave_the_sockhash_empty() -> Result<()> {
    let bed = bed("smapchrn")?;
    let agent = bed.agent("a", &["--sockmap=true"])?;
    assert_eq!(entries(&bed, &agent, "SOCKHASH"), 0);

    let to = format!("{LINE_LOCAL}:80");
    let r = bed.client(&[
        "connect", "--to", &to, "--count", "1000", "--expect", &bed.token,
    ])?;
    assert_eq!(count(&r, "matched"), 1000, "{r}");
    assert_echoed(&bed.bulk(ECHO_LOCAL)?);
    assert!(
        metric(&bed, &agent, "weft_datapath_sockmap_sockets_total", &[]) >= 4000,
        "both hops of every connection were accelerated"
    );

    let empty = eventually(Duration::from_secs(10), || {
        entries(&bed, &agent, "SOCKHASH") == 0 && entries(&bed, &agent, "SOCK_MIRROR") == 0
    });
    assert!(
        empty,
        "SOCKHASH {} SOCK_MIRROR {}",
        entries(&bed, &agent, "SOCKHASH"),
        entries(&bed, &agent, "SOCK_MIRROR")
    );
    Ok(())
}

/// Off (the default): the same echo works, and its bytes cross both veths.
#[test]
fn turned_off_the_payload_crosses_the_veths() -> Result<()> {
    let bed = bed("smapoff")?;
    let agent = bed.agent("a", &[])?;

    let (client0, local0) = (bed.veth_bytes("client")?, bed.veth_bytes("local")?);
    assert_echoed(&bed.bulk(ECHO_LOCAL)?);
    let client = bed.veth_bytes("client")? - client0;
    let local = bed.veth_bytes("local")? - local0;
    eprintln!("plain 1 MiB echo: client veth {client} B, server veth {local} B");
    assert!(client > 2 * MIB, "client veth carried {client} bytes");
    assert!(local > 2 * MIB, "server veth carried {local} bytes");
    assert_eq!(redirected_bytes(&bed, &agent), 0);
    assert_eq!(
        metric(&bed, &agent, "weft_datapath_sockmap_sockets_total", &[]),
        0
    );
    assert_eq!(entries(&bed, &agent, "SOCKHASH"), 0);
    Ok(())
}

/// A one-way stream to a reader that does not read for 3 s: a redirected send is not bounded by
/// the receiver's window, so each accelerated hop (the client's socket, the proxy's upstream
/// socket) falls back to TCP after 4 MiB without an answer, and TCP's flow control pushes back
/// on the writer long before it has written everything. Every byte arrives, in order, across
/// the switch.
#[test]
fn a_one_way_stream_falls_back_to_tcp_and_is_pushed_back_on() -> Result<()> {
    const PUSHED: u64 = 192 * MIB;
    let bed = bed("smoneway")?;
    let agent = bed.agent("a", &["--sockmap=true"])?;
    let to = format!("{SINK_LOCAL}:80");
    let r = bed.client(&["push", "--to", &to, "--bytes", &PUSHED.to_string()])?;
    assert_eq!(
        (&r["sent"], &r["write_error"]),
        (&Value::from(PUSHED), &Value::Null),
        "{r}"
    );
    let accepted = r["accepted_before_pushback"]
        .as_u64()
        .with_context(|| format!("the writer was never pushed back on: {r}"))?;
    assert!(accepted < PUSHED / 2, "{r}");
    assert_eq!(
        (&r["sink"]["received"], &r["sink"]["intact"]),
        (&Value::from(PUSHED), &Value::Bool(true)),
        "{r}"
    );
    let fallbacks = metric(&bed, &agent, "weft_datapath_sockmap_fallbacks_total", &[]);
    assert_eq!(
        fallbacks, 2,
        "the client's socket and the proxy's upstream socket"
    );
    // What went socket to socket before the switch is bounded by the budget of each hop.
    assert!(redirected_bytes(&bed, &agent) <= 2 * 4 * MIB + 2 * CONTROL_BYTES);
    Ok(())
}
