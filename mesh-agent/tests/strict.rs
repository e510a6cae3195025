//! STRICT peer authentication in the kernel: the ingress program on a pod cgroup drops plaintext
//! TCP connection attempts from outside the node, and nothing else. The test drives the datapath
//! directly (no agent process), so it can flip a pod between STRICT and PERMISSIVE. Needs root
//! (run through `cargo xtask test`).

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{count, first_reply, run_json, weft_pod};
use mesh_agent::datapath::{
    self, Datapath, DatapathConfig, PodAttachment, attached_programs, local_addresses,
};
use mesh_agent::testbed::{PROXY_IP, TestBed};
use mesh_common::Counter;

const PORT: u16 = 8080;
/// Long enough for a SYN/SYN-ACK inside one machine, short enough for a dropped SYN to fail fast.
const DROPPED_MS: &str = "700";

/// STRICT: pods of this node and of another node cannot open a plaintext connection into the
/// pod; the node itself and the pod itself can, and the pod's own outbound connections work.
/// PERMISSIVE (a later sync clears the flag, without reattaching): the outsider gets through.
#[test]
fn strict_pod_accepts_plaintext_only_from_its_node_and_itself() -> Result<()> {
    let mut bed = TestBed::new("strict")?;
    bed.add_node("a")?;
    bed.add_node("b")?;
    bed.add_pod("a", "server")?;
    bed.add_pod("a", "outsider")?;
    bed.add_pod("b", "remote")?;
    let token = format!("strict-{}", std::process::id());
    serve(&bed, "server", "[::]", &format!("server:{token}"))?;
    serve(&bed, "remote", "0.0.0.0", &format!("remote:{token}"))?;
    let mut dp = open_datapath(&bed, "a")?;

    let server = bed.pod("server").clone();
    let pod = |strict| PodAttachment {
        uid: "server".into(),
        cgroup: server.cgroup.clone(),
        cgroup_id: datapath::cgroup_id(&server.cgroup).expect("server cgroup id"),
        strict,
    };
    let report = dp.sync(&[pod(true)])?;
    assert_eq!(report.attached, ["server"]);
    let programs = attached_programs(&server.cgroup)?;
    assert!(
        programs
            .iter()
            .any(|p| p.attach_type == "cgroup_inet_ingress"),
        "{programs:?}"
    );
    let to_server = format!("{}:{PORT}", server.ip);

    // Another pod of the node: the SYN vanishes (a timeout, not a refusal), and is counted.
    let r = connect(
        &bed,
        "outsider",
        &to_server,
        &token,
        &["--timeout-ms", DROPPED_MS],
    )?;
    assert_eq!(count(&r, "ok"), 0, "{r}");
    assert_eq!(r["errors"]["timeout"].as_u64(), Some(1), "{r}");
    let after_outsider = dropped(&dp)?;
    assert!(after_outsider >= 1, "dropped_plaintext = {after_outsider}");

    // A pod of another node: dropped too.
    let r = connect(
        &bed,
        "remote",
        &to_server,
        &token,
        &["--timeout-ms", DROPPED_MS],
    )?;
    assert_eq!(r["errors"]["timeout"].as_u64(), Some(1), "{r}");
    let after_remote = dropped(&dp)?;
    assert!(
        after_remote > after_outsider,
        "{after_remote} after {after_outsider}"
    );

    // The node itself (the proxy, kubelet probes): from node A's namespace.
    let probe = bed.in_netns("a", || exchange(server.ip, PORT))??;
    assert!(probe.contains(&format!("server:{token}")), "{probe:?}");

    // The pod itself: its own address and loopback.
    let own = connect(&bed, "server", &to_server, &token, &[])?;
    assert_eq!(count(&own, "matched"), 1, "{own}");
    let lo = connect(&bed, "server", &format!("127.0.0.1:{PORT}"), &token, &[])?;
    assert_eq!(count(&lo, "matched"), 1, "{lo}");

    // The pod's own outbound connection: its SYN-ACK comes back through the ingress program.
    let to_remote = format!("{}:{PORT}", bed.pod("remote").ip);
    let out = connect(&bed, "server", &to_remote, &token, &[])?;
    assert!(first_reply(&out).starts_with("remote:"), "{out}");
    assert_eq!(count(&out, "matched"), 1, "{out}");
    assert_eq!(dropped(&dp)?, after_remote, "nothing allowed was dropped");

    // PERMISSIVE: the same entry loses its flag; the links stay as they are.
    let report = dp.sync(&[pod(false)])?;
    assert!(
        report.attached.is_empty() && report.released.is_empty(),
        "{report:?}"
    );
    assert_eq!(attached_programs(&server.cgroup)?, programs, "no reattach");
    let r = connect(&bed, "outsider", &to_server, &token, &[])?;
    assert_eq!(count(&r, "matched"), 1, "{r}");
    assert_eq!(dropped(&dp)?, after_remote);

    dp.close(false)
}

/// IPv6 takes the same path: a connection between two addresses of the pod that differ is
/// dropped (neither the node nor source == destination), the same address and `::1` are not.
#[test]
fn strict_applies_to_ipv6() -> Result<()> {
    let mut bed = TestBed::new("strict6")?;
    bed.add_node("a")?;
    bed.add_pod("a", "server")?;
    let server = bed.pod("server").clone();
    for addr in ["fd00:5::2/128", "fd00:5::3/128"] {
        ip(&[
            "-n",
            &server.netns,
            "address",
            "add",
            addr,
            "dev",
            "lo",
            "nodad",
        ])?;
    }
    let token = format!("strict6-{}", std::process::id());
    serve(&bed, "server", "[::]", &format!("server:{token}"))?;
    let mut dp = open_datapath(&bed, "a")?;
    dp.sync(&[PodAttachment {
        uid: "server".into(),
        cgroup: server.cgroup.clone(),
        cgroup_id: datapath::cgroup_id(&server.cgroup)?,
        strict: true,
    }])?;

    let to = format!("[fd00:5::2]:{PORT}");
    let other = ["--bind", "fd00:5::3", "--timeout-ms", DROPPED_MS];
    let r = connect(&bed, "server", &to, &token, &other)?;
    assert_eq!(r["errors"]["timeout"].as_u64(), Some(1), "{r}");
    let drops = dropped(&dp)?;
    assert!(drops >= 1, "dropped_plaintext = {drops}");

    let same = connect(&bed, "server", &to, &token, &["--bind", "fd00:5::2"])?;
    assert_eq!(count(&same, "matched"), 1, "{same}");
    let lo = connect(&bed, "server", &format!("[::1]:{PORT}"), &token, &[])?;
    assert_eq!(count(&lo, "matched"), 1, "{lo}");
    assert_eq!(dropped(&dp)?, drops);
    dp.close(false)
}

/// The node's datapath, opened by the test process (READY stays clear, so the connect programs
/// let every connection go where it was addressed), with node `node`'s addresses allowed.
fn open_datapath(bed: &TestBed, node: &str) -> Result<Datapath> {
    let n = bed.node(node);
    let mut dp = Datapath::open(DatapathConfig {
        node: n.name.clone(),
        bpffs: PathBuf::from("/sys/fs/bpf"),
        proxy_ip4: PROXY_IP,
        proxy_ip6: None,
        outbound_port: mesh_common::OUTBOUND_PORT,
        fail_closed: false,
        exclude_cidrs: Vec::new(),
        exclude_ports: Vec::new(),
        proxy_cgroup: n.agent_cgroup.clone(),
        sockmap: true,
    })?;
    let local = bed.in_netns(node, local_addresses)??;
    ensure!(
        local.contains(&IpAddr::V4(PROXY_IP)),
        "node addresses: {local:?}"
    );
    dp.set_inbound_allow(&local)?;
    Ok(dp)
}

fn dropped(dp: &Datapath) -> Result<u64> {
    dp.counters()?
        .into_iter()
        .find(|(c, _)| *c == Counter::DroppedPlaintext)
        .map(|(_, n)| n)
        .context("no dropped_plaintext counter")
}

fn connect(
    bed: &TestBed,
    pod: &str,
    to: &str,
    token: &str,
    args: &[&str],
) -> Result<serde_json::Value> {
    let mut cmd = weft_pod();
    cmd.args(["connect", "--to", to, "--expect", token])
        .args(args);
    run_json(bed, pod, cmd)
}

/// One request from the calling thread (the test process in a node namespace).
fn exchange(ip: std::net::Ipv4Addr, port: u16) -> Result<String> {
    let addr = SocketAddr::from((ip, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"probe\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// Starts `weft-pod serve` on `<host>:PORT` in `pod` and waits until it listens.
fn serve(bed: &TestBed, pod: &str, host: &str, reply: &str) -> Result<()> {
    let mut cmd = weft_pod();
    cmd.args([
        "serve",
        "--listen",
        &format!("{host}:{PORT}"),
        "--reply",
        reply,
    ])
    .stdout(Stdio::piped());
    let mut child = bed.spawn_in_pod(pod, cmd)?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("listening") {
        bail!("{pod}: server did not start: {line:?}");
    }
    // The bed kills the process at teardown (cgroup.kill).
    std::mem::forget(child);
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
