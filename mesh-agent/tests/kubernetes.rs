//! `mesh-agent run --source kubernetes` against an API server inside the node's network
//! namespace (the real kube client, the test bed's fake API server): pods live in a
//! kubelet-like cgroup tree (`kubepods/besteffort/pod<uid>`) and are found from their UID;
//! labelling a namespace captures a running pod's next connection, removing the label
//! releases it, and connections opened before each flip keep working. Needs root (run through
//! `cargo xtask test`).

mod common;
mod l7;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use mesh_agent::testbed::kube_api::NodeApi;
use mesh_agent::testbed::{AgentProcess, TestBed};
use serde_json::{Value, json};

use common::{READY_TIMEOUT, bin_dir, eventually, weft_pod};
use l7::{HTTP_PORT, http_serve};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const CLIENT_UID: &str = "6f1c2a3b-0d4e-4f50-8a61-7b8c9d0e1f21";
const BACKEND_UID: &str = "6f1c2a3b-0d4e-4f50-8a61-7b8c9d0e1f22";
/// Programs the datapath attaches to an enrolled pod's cgroup.
const PROGRAMS_PER_POD: usize = 5;

struct Cluster {
    bed: TestBed,
    api: NodeApi,
    kubeconfig: PathBuf,
    node: String,
}

/// One node with a client pod (namespace `shop`, not enrolled) and an HTTP backend (namespace
/// `store`) behind service `store/web` at VIP:80, all known to a fake API server that listens
/// on the node's loopback.
fn cluster(label: &str) -> Result<Cluster> {
    let mut bed = TestBed::new(label)?;
    let node = bed.add_node("a")?.name.clone();
    for (pod, uid) in [("client", CLIENT_UID), ("backend", BACKEND_UID)] {
        bed.add_pod_in("a", pod, &kubelet_cgroup(uid))?;
    }
    http_serve(&bed, "backend")?;

    let api = NodeApi::start(&bed, "a")?;
    let kubeconfig = api.kubeconfig.clone();

    let host = bed.node("a").ip.to_string();
    api.apply(namespace("shop", false))?;
    api.apply(namespace("store", false))?;
    let client_ip = bed.pod("client").ip.to_string();
    let backend_ip = bed.pod("backend").ip.to_string();
    api.apply(pod("shop", "client", CLIENT_UID, &node, &host, &client_ip))?;
    api.apply(pod(
        "store",
        "backend",
        BACKEND_UID,
        &node,
        &host,
        &backend_ip,
    ))?;
    api.apply(service("store", "web", VIP))?;
    api.apply(slice("store", "web", "backend", &backend_ip))?;
    Ok(Cluster {
        bed,
        api,
        kubeconfig,
        node,
    })
}

fn kubelet_cgroup(uid: &str) -> PathBuf {
    Path::new("kubepods/besteffort").join(format!("pod{uid}"))
}

impl Cluster {
    fn agent(&self) -> Result<AgentProcess> {
        let root = self
            .bed
            .node("a")
            .agent_cgroup
            .parent()
            .context("the node's cgroup")?
            .to_path_buf();
        let root = root.to_str().context("cgroup path")?;
        let mut agent = AgentProcess::start_kubernetes(
            &self.bed,
            "a",
            &bin_dir(),
            &self.kubeconfig,
            &["--cgroup-root", root],
        )?;
        agent.wait_ready(READY_TIMEOUT)?;
        Ok(agent)
    }

    fn attached(&self, pod: &str) -> usize {
        mesh_agent::datapath::attached_programs(&self.bed.pod(pod).cgroup)
            .map(|p| p.len())
            .unwrap_or(usize::MAX)
    }

    fn label(&self, ns: &str, enrolled: bool) -> Result<()> {
        self.api.apply(namespace(ns, enrolled)).map(drop)
    }

    /// `http-load` from the client pod; returns its JSON report.
    fn load(&self, url: &str, args: &[&str]) -> Result<Value> {
        let mut cmd = weft_pod();
        cmd.args(["http-load", "--url", url, "--timeout-ms", "2000"])
            .args(args);
        common::run_json(&self.bed, "client", cmd)
    }

    /// A paced keep-alive load in the background (one connection, `count` requests at 10/s).
    fn long_load(&self, url: &str, count: u32) -> Result<Child> {
        let mut cmd = weft_pod();
        cmd.args([
            "http-load",
            "--url",
            url,
            "--rate",
            "10",
            "--timeout-ms",
            "3000",
        ])
        .args(["--count", &count.to_string()])
        .stdout(Stdio::piped());
        self.bed.spawn_in_pod("client", cmd)
    }
}

fn finish(child: Child) -> Result<Value> {
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("http-load printed {text:?}"))
}

#[test]
fn labelling_a_namespace_captures_and_releases_running_pods() -> Result<()> {
    let cluster = cluster("kubeflip")?;
    let agent = cluster.agent()?;
    let via_vip = format!("http://{VIP}/flip");
    let direct = format!(
        "http://{}:{HTTP_PORT}/direct",
        cluster.bed.pod("backend").ip
    );
    assert_eq!(cluster.attached("client"), 0, "shop is not enrolled yet");
    let r = cluster.load(&via_vip, &[])?;
    assert_eq!(r["ok"], 0, "without capture the VIP is a blackhole: {r}");

    // A keep-alive connection opened before enrollment, straight to the backend pod.
    let before = cluster.long_load(&direct, 60)?;
    std::thread::sleep(Duration::from_millis(500));
    cluster.label("shop", true)?;
    assert!(
        eventually(Duration::from_secs(10), || cluster.attached("client")
            == PROGRAMS_PER_POD),
        "the running client pod is captured once shop is labelled:\n{}",
        agent.log_text()
    );
    let r = cluster.load(&via_vip, &["--count", "5"])?;
    assert_eq!(r["ok"], 5, "new connections are captured and proxied: {r}");
    let workloads = admin_workloads(&cluster)?;
    assert!(
        workloads.contains(&cluster.bed.pod("client").cgroup.display().to_string()),
        "the model names the discovered cgroup: {workloads}"
    );

    // A connection through the mesh, open while the label goes away.
    let through_mesh = cluster.long_load(&via_vip, 40)?;
    std::thread::sleep(Duration::from_millis(1000));
    cluster.label("shop", false)?;
    assert!(
        eventually(Duration::from_secs(10), || cluster.attached("client") == 0),
        "removing the label releases the pod:\n{}",
        agent.log_text()
    );
    let r = cluster.load(&via_vip, &[])?;
    assert_eq!(
        r["ok"], 0,
        "released: the next connection is not captured: {r}"
    );

    for (what, child, count) in [
        ("direct", before, 60),
        ("through the mesh", through_mesh, 40),
    ] {
        let r = finish(child)?;
        assert_eq!(
            r["ok"], count,
            "{what}: every request of the long connection: {r}"
        );
        assert_eq!(
            r["connections"], 1,
            "{what}: one connection throughout: {r}"
        );
    }

    let metrics = agent.metrics(&cluster.bed)?;
    let applied =
        AgentProcess::metric(&metrics, "weft_state_change_to_datapath_seconds_count", &[])
            .unwrap_or(0.0);
    assert!(
        applied >= 2.0,
        "each flip reached the maps and was timed: {applied}"
    );
    Ok(())
}

#[test]
fn a_pod_whose_cgroup_is_missing_is_reported_then_captured_when_it_appears() -> Result<()> {
    let cluster = cluster("kubemiss")?;
    cluster.label("shop", true)?;
    let late_uid = "6f1c2a3b-0d4e-4f50-8a61-7b8c9d0e1f99";
    let host = cluster.bed.node("a").ip.to_string();
    cluster.api.apply(pod(
        "shop",
        "late",
        late_uid,
        &cluster.node,
        &host,
        "10.244.1.200",
    ))?;
    let agent = cluster.agent()?;

    let metrics = agent.metrics(&cluster.bed)?;
    assert_eq!(
        AgentProcess::metric(&metrics, "weft_cgroup_unresolved_pods", &[]),
        Some(1.0),
        "{metrics}"
    );
    let workloads = admin_workloads(&cluster)?;
    let late: Vec<Value> = serde_json::from_str(&workloads)?;
    let late = late
        .iter()
        .find(|w| w["name"] == "shop/late")
        .context("shop/late listed")?;
    let problem = late["capture"]["problem"].as_str().unwrap_or_default();
    assert_eq!(late["capture"]["captured"], false, "{late}");
    assert!(
        problem.contains(late_uid),
        "the report names the pod's UID: {late}"
    );
    assert!(problem.contains("kubepods"), "and where it looked: {late}");
    assert_eq!(
        cluster.attached("client"),
        PROGRAMS_PER_POD,
        "the other pod is captured"
    );

    // kubelet creates the pod's cgroup late: the agent finds it without any API change.
    let late = cluster
        .bed
        .cgroup_root()
        .join("a")
        .join(kubelet_cgroup(late_uid));
    std::fs::create_dir_all(&late)?;
    let attached = || {
        mesh_agent::datapath::attached_programs(&late)
            .map(|p| p.len())
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(10), || attached() == PROGRAMS_PER_POD),
        "{}",
        agent.log_text()
    );
    let metrics = agent.metrics(&cluster.bed)?;
    assert_eq!(
        AgentProcess::metric(&metrics, "weft_cgroup_unresolved_pods", &[]),
        Some(0.0)
    );
    drop(agent);
    std::fs::remove_dir(&late)?;
    Ok(())
}

/// `mesh-agent workloads -o json` against the agent's admin API, as text.
fn admin_workloads(cluster: &Cluster) -> Result<String> {
    let mut cmd = std::process::Command::new(bin_dir().join("mesh-agent"));
    cmd.args(["workloads", "-o", "json"]);
    let out = cluster
        .bed
        .in_netns(&cluster.bed.node("a").netns, || cmd.output())??;
    anyhow::ensure!(out.status.success(), "{out:?}");
    Ok(String::from_utf8(out.stdout)?)
}

fn namespace(name: &str, enrolled: bool) -> Value {
    let labels = match enrolled {
        true => json!({"weft.dev/mesh": "enabled"}),
        false => json!({}),
    };
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn pod(ns: &str, name: &str, uid: &str, node: &str, host: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "uid": uid, "labels": {"app": name}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": HTTP_PORT}]}],
        },
        "status": {
            "phase": "Running", "qosClass": "BestEffort",
            "podIP": ip, "podIPs": [{"ip": ip}],
            "hostIP": host, "hostIPs": [{"ip": host}],
        },
    })
}

fn service(ns: &str, name: &str, vip: Ipv4Addr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": {
            "clusterIP": vip.to_string(), "clusterIPs": [vip.to_string()],
            "selector": {"app": "backend"},
            "ports": [{"name": "http", "port": 80, "targetPort": HTTP_PORT, "protocol": "TCP"}],
        },
    })
}

fn slice(ns: &str, service: &str, pod: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "namespace": ns, "name": format!("{service}-abcde"),
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [ip], "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "namespace": ns, "name": pod},
        }],
        "ports": [{"name": "http", "port": HTTP_PORT, "protocol": "TCP"}],
    })
}
