//! The netns test bed itself: pods talk across nodes through real namespaces, the service range
//! fails fast, and nothing of a bed outlives it. Needs root.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::{PROXY_IP, TestBed};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(20);

fn weft_pod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft-pod"))
}

/// Two nodes; `a1` and `a2` on node `a`, `b1` on node `b`.
fn bed(label: &str) -> Result<TestBed> {
    let mut bed = TestBed::new(label)?;
    bed.add_node("a")?;
    bed.add_node("b")?;
    bed.add_pod("a", "a1")?;
    bed.add_pod("a", "a2")?;
    bed.add_pod("b", "b1")?;
    Ok(bed)
}

/// Waits for `weft-pod serve` to report that it listens; the child keeps running.
fn wait_listening(mut child: Child) -> Result<Child> {
    let stdout = child.stdout.take().context("server stdout is not piped")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("listening ") {
        let _ = child.kill();
        bail!("server did not start: {line:?}");
    }
    Ok(child)
}

fn serve_in_pod(bed: &TestBed, pod: &str, listen: &str, reply: &str) -> Result<Child> {
    let mut cmd = weft_pod();
    cmd.args(["serve", "--listen", listen, "--reply", reply])
        .stdout(Stdio::piped());
    wait_listening(bed.spawn_in_pod(pod, cmd)?)
}

/// `weft-pod connect` in `pod`, returning its JSON summary.
fn connect(bed: &TestBed, pod: &str, to: &str, extra: &[&str]) -> Result<Value> {
    let mut cmd = weft_pod();
    cmd.args(["connect", "--to", to]).args(extra);
    let out = bed.run_in_pod(pod, cmd, LIMIT)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).with_context(|| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        format!("no JSON from weft-pod in {pod}: {stdout:?}, stderr {stderr:?}")
    })
}

fn reply(summary: &Value) -> &str {
    summary["first_reply"].as_str().unwrap_or_default()
}

fn own_cgroup(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
}

/// A reply text no other test run can produce.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{what}-{}-{nanos}", std::process::id())
}

#[test]
fn pods_reach_pods_across_nodes() -> Result<()> {
    let bed = bed("tbtalk")?;
    let token = unique("b1");
    let server = serve_in_pod(&bed, "b1", "0.0.0.0:8080", &token)?;
    let pod_cgroup = bed
        .pod("b1")
        .cgroup
        .strip_prefix(bed.cgroup_root().parent().context("root")?)?;
    assert!(
        own_cgroup(server.id()).contains(&format!("/{}", pod_cgroup.display())),
        "server runs in the pod cgroup: {}",
        own_cgroup(server.id())
    );
    let target = format!("{}:8080", bed.pod("b1").ip);

    for client in ["a1", "a2"] {
        let summary = connect(&bed, client, &target, &["--count", "3", "--expect", &token])?;
        assert_eq!(summary["ok"], 3, "{client}: {summary}");
        assert_eq!(summary["matched"], 3, "{client}: {summary}");
        let peer = format!("peer={}:", bed.pod(client).ip);
        assert!(
            reply(&summary).contains(&peer),
            "{client}: server saw {summary}"
        );
        assert!(reply(&summary).ends_with("got=hello"), "{summary}");
    }

    let mapped = connect(&bed, "a1", &target, &["--v6-mapped", "--expect", &token])?;
    assert_eq!(mapped["matched"], 1, "{mapped}");

    // Node namespaces forward and do not filter by reverse path (new interfaces included).
    bed.in_netns("a", || {
        let settings = [
            ("ip_forward", "1"),
            ("conf/all/rp_filter", "0"),
            ("conf/fab0/rp_filter", "0"),
            ("conf/p2/rp_filter", "0"),
        ];
        for (key, want) in settings {
            let path = Path::new("/proc/sys/net/ipv4").join(key);
            let got = std::fs::read_to_string(path).unwrap_or_default();
            assert_eq!(got.trim(), want, "node a: net.ipv4.{key}");
        }
    })?;

    // Nodes have no way out: no default route, so no path towards the host namespace.
    for node in bed.nodes() {
        let routes = Command::new("ip")
            .args(["-n", &node.netns, "route", "show", "default"])
            .output()?;
        assert!(
            routes.stdout.is_empty(),
            "{}: {}",
            node.name,
            String::from_utf8_lossy(&routes.stdout)
        );
    }

    // The test process itself, on a thread inside node a, reaches the pod on node b.
    let from_node = bed.in_netns("a", || std::net::TcpStream::connect(&target).map(|_| ()))?;
    from_node.context("connecting from node a's namespace")?;
    Ok(())
}

#[test]
fn pods_reach_the_node_proxy_address() -> Result<()> {
    let bed = bed("tbproxy")?;
    let token = unique("node-a");
    let mut cmd = weft_pod();
    let listen = format!("{PROXY_IP}:15001");
    cmd.args(["serve", "--listen", &listen, "--reply", &token])
        .stdout(Stdio::piped());
    let agent = wait_listening(bed.spawn_on_node("a", cmd)?)?;
    let agent_cgroup = bed
        .node("a")
        .agent_cgroup
        .strip_prefix(bed.cgroup_root().parent().context("root")?)?;
    assert!(own_cgroup(agent.id()).contains(&format!("/{}", agent_cgroup.display())));

    let summary = connect(&bed, "a1", &listen, &["--expect", &token])?;
    assert_eq!(summary["matched"], 1, "{summary}");
    assert!(
        reply(&summary).contains(&format!("peer={}:", bed.pod("a1").ip)),
        "{summary}"
    );
    // The same address on node b is node b's own: nothing listens there.
    let elsewhere = connect(&bed, "b1", &listen, &[])?;
    assert_eq!(elsewhere["errors"]["ECONNREFUSED"], 1, "{elsewhere}");
    Ok(())
}

#[test]
fn service_range_fails_fast_inside_the_bed() -> Result<()> {
    let bed = bed("tbsvc")?;
    let started = Instant::now();
    let summary = connect(&bed, "a1", "10.96.0.10:80", &["--timeout-ms", "2000"])?;
    assert_eq!(summary["failed"], 1, "{summary}");
    // The blackhole route refuses the connect itself: no SYN is ever sent.
    assert_eq!(summary["errors"]["EINVAL"], 1, "{summary}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn secondary_addresses_can_source_connections() -> Result<()> {
    let bed = bed("tbspoof")?;
    let token = unique("b1");
    let _server = serve_in_pod(&bed, "b1", "0.0.0.0:8080", &token)?;
    let spoofed = Ipv4Addr::new(10, 244, 1, 99);
    bed.add_pod_address("a1", spoofed)?;
    let target = format!("{}:8080", bed.pod("b1").ip);
    let bind = spoofed.to_string();
    let summary = connect(&bed, "a1", &target, &["--bind", &bind, "--expect", &token])?;
    assert!(
        reply(&summary).contains(&format!("peer={spoofed}:")),
        "{summary}"
    );
    Ok(())
}

#[test]
fn removing_a_pod_kills_its_processes() -> Result<()> {
    let mut bed = bed("tbremove")?;
    let mut server = serve_in_pod(&bed, "b1", "0.0.0.0:8080", "bye")?;
    let netns = bed.pod("b1").netns.clone();
    bed.remove_pod("b1")?;
    let status = server.wait()?;
    assert!(!status.success(), "killed, not exited: {status}");
    assert!(!Path::new("/run/netns").join(&netns).exists());
    let summary = connect(&bed, "a1", "10.244.2.2:8080", &["--timeout-ms", "500"])?;
    assert_eq!(summary["failed"], 1, "{summary}");
    Ok(())
}

#[test]
fn run_in_pod_enforces_its_time_limit() -> Result<()> {
    let bed = bed("tbtime")?;
    let mut sleep = Command::new("sleep");
    sleep.arg("30");
    let started = Instant::now();
    let err = bed.run_in_pod("a1", sleep, Duration::from_millis(200));
    assert!(err.is_err(), "sleep 30 finished within 200 ms?");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn teardown_leaves_nothing_behind() -> Result<()> {
    let started = Instant::now();
    let bed = bed("tbdrop")?;
    let built = started.elapsed();
    let mut leaked = serve_in_pod(&bed, "b1", "0.0.0.0:8080", "leaked")?;
    let pins = Path::new("/sys/fs/bpf/weft").join(&bed.node("a").name);
    std::fs::create_dir_all(pins.join("links"))?;
    let netns: Vec<String> = bed
        .nodes()
        .map(|n| n.netns.clone())
        .chain(bed.pods().map(|p| p.netns.clone()))
        .collect();
    let (prefix, cgroup_root, work_dir) = (
        bed.prefix().to_owned(),
        bed.cgroup_root().to_owned(),
        bed.work_dir().to_owned(),
    );
    assert!(cgroup_root.exists() && work_dir.exists());

    let dropping = Instant::now();
    drop(bed);
    let dropped = dropping.elapsed();
    eprintln!("bed with 2 nodes and 3 pods: up in {built:?}, down in {dropped:?}");

    assert!(leaked.try_wait()?.is_some(), "the leaked server was killed");
    let listed = Command::new("ip").args(["netns", "list"]).output()?;
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(!listed.contains(&prefix), "namespaces left: {listed}");
    for name in &netns {
        assert!(!Path::new("/run/netns").join(name).exists(), "{name} left");
    }
    assert!(!cgroup_root.exists(), "{} left", cgroup_root.display());
    assert!(!pins.exists(), "{} left", pins.display());
    assert!(!work_dir.exists(), "{} left", work_dir.display());
    // No link of the bed ever appears in the host namespace.
    let links = Command::new("ip").args(["-o", "link", "show"]).output()?;
    let links = String::from_utf8_lossy(&links.stdout);
    for name in ["fab0", "br0", "n1", "n2", "p2", "p3"] {
        assert!(
            !links.contains(&format!(": {name}@")) && !links.contains(&format!(": {name}:")),
            "{name} in host: {links}"
        );
    }
    assert!(
        built + dropped < Duration::from_secs(2),
        "up {built:?}, down {dropped:?}"
    );
    Ok(())
}

#[test]
fn a_panicking_test_still_tears_down() {
    let mut seen = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let bed = bed("tbpanic").expect("bed");
        seen = Some((bed.prefix().to_owned(), bed.cgroup_root().to_owned()));
        panic!("test failure while the bed is up");
    }));
    assert!(outcome.is_err());
    let (prefix, cgroup_root) = seen.expect("the bed was built");
    assert!(!cgroup_root.exists(), "{} left", cgroup_root.display());
    let left = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten();
    let left: Vec<_> = left
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
}
