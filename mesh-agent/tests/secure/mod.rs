//! Fixture of the mTLS suite: a CA on its own node, two nodes with one agent each.
//!
//! ```text
//!   node a: web (frontend/web), other (shop/other), api-a (shop/api), outsider (legacy, not enrolled)
//!   node b: api-b (shop/api)
//!   node ca: the mesh CA (`mesh-agent ca serve`)
//! ```
//! `shop/api` (API_VIP:80 -> 8080, HTTP) and `shop/api-tcp` (TCP_VIP:9000 -> 9000, opaque) select
//! both api pods: one on the caller's node, one across the link.

#![allow(dead_code)] // each test uses a different part of the fixture

pub mod junk;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, bail};
use mesh_agent::testbed::{
    AgentProcess, MeshCa, MeshSpec, ServiceSpec, TestBed, field, http_get, message,
};
use serde_json::Value;

use crate::common::{READY_TIMEOUT, bin_dir, run_json, weft_pod};
use crate::l7::{HTTP_PORT, http_serve};

pub const API_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
pub const TCP_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 21);
pub const TCP_PORT: u16 = 9000;
pub const WEB_ID: &str = "spiffe://cluster.local/ns/frontend/sa/web";
pub const API_ID: &str = "spiffe://cluster.local/ns/shop/sa/api";

pub struct Secure {
    pub bed: TestBed,
    pub spec: MeshSpec,
    pub ca: MeshCa,
    pub agents: Vec<AgentProcess>,
    /// Unique to this run: the TCP servers reply with it, HTTP requests carry it in their path
    /// (which the servers echo in their JSON reply).
    pub token: String,
}

/// The topology with `sections` (policies...) in the state file; `ca_flags` go to `ca serve`.
/// Agents on a and b hold their identities when this returns.
pub fn start(label: &str, sections: &[&str], ca_flags: &[&str]) -> Result<Secure> {
    let mut secure = prepare(label, sections, ca_flags)?;
    for node in ["a", "b"] {
        let flags = secure.ca.agent_flags(&secure.bed.node(node).name);
        secure.start_agent(node, &flags)?;
    }
    secure.wait_for_identities()?;
    Ok(secure)
}

/// The topology and the CA, without agents.
pub fn prepare(label: &str, sections: &[&str], ca_flags: &[&str]) -> Result<Secure> {
    prepare_with(label, sections, ca_flags, |spec| spec)
}

/// As [`prepare`], with `more` adding to the mesh (services...) before it is written.
pub fn prepare_with(
    label: &str,
    sections: &[&str],
    ca_flags: &[&str],
    more: impl FnOnce(MeshSpec) -> MeshSpec,
) -> Result<Secure> {
    let mut bed = TestBed::new(label)?;
    for node in ["a", "b", "ca"] {
        bed.add_node(node)?;
    }
    for (node, pod) in [
        ("a", "web"),
        ("a", "other"),
        ("a", "api-a"),
        ("a", "outsider"),
        ("b", "api-b"),
    ] {
        bed.add_pod(node, pod)?;
    }
    let token = format!("{label}-{}", std::process::id());
    for pod in ["api-a", "api-b"] {
        http_serve(&bed, pod)?;
        crate::common::serve_on(&bed, pod, TCP_PORT, &format!("{pod}-{token}"))?;
    }
    let mut spec = MeshSpec::default()
        .namespace("frontend", true)
        .namespace("shop", true)
        .namespace("legacy", false)
        .workload("web", "frontend", "web")
        .service_account("web", "web")
        .workload("other", "shop", "other")
        .service_account("other", "other")
        .workload("api-a", "shop", "api")
        .service_account("api-a", "api")
        .workload("api-b", "shop", "api")
        .service_account("api-b", "api")
        .workload("outsider", "legacy", "outsider")
        .service_spec(service("api", API_VIP, 80, HTTP_PORT, Some("http")))
        .service_spec(service("api-tcp", TCP_VIP, TCP_PORT, TCP_PORT, None));
    for section in sections {
        spec = spec.section(section);
    }
    let spec = more(spec);
    let config = spec.write(&bed, "mesh.yaml")?;
    let ca = MeshCa::start(&bed, "ca", &bin_dir(), &config, ca_flags)?;
    Ok(Secure {
        bed,
        spec,
        ca,
        agents: Vec::new(),
        token,
    })
}

pub fn service(
    name: &str,
    vip: Ipv4Addr,
    port: u16,
    target: u16,
    port_name: Option<&str>,
) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        namespace: "shop".into(),
        vip,
        port,
        target_port: target,
        selector: vec![("app".into(), "api".into())],
        port_name: port_name.map(Into::into),
        app_protocol: None,
        extra: String::new(),
    }
}

impl Secure {
    /// Starts an agent on `node` with these flags and waits until its datapath is ready.
    pub fn start_agent(&mut self, node: &str, flags: &[String]) -> Result<&mut AgentProcess> {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let config = self.bed.work_dir().join("mesh.yaml");
        let mut agent = AgentProcess::start(&self.bed, node, &bin_dir(), &config, &flags)?;
        agent.wait_ready(READY_TIMEOUT)?;
        self.agents.push(agent);
        Ok(self.agents.last_mut().expect("just pushed"))
    }

    /// Waits until both agents hold the identities of their pods.
    pub fn wait_for_identities(&mut self) -> Result<()> {
        let wanted = [
            (0, "spiffe://cluster.local/ns/frontend/sa/web"),
            (0, "spiffe://cluster.local/ns/shop/sa/other"),
            (0, API_ID),
            (1, API_ID),
        ];
        for (agent, id) in wanted {
            self.agents[agent].wait_for_log(READY_TIMEOUT, |e| {
                message(e) == "identity issued" && field(e, "id").as_deref() == Some(id)
            })?;
        }
        Ok(())
    }

    /// `weft-pod <args>` in `pod`; its JSON summary.
    pub fn pod(&self, pod: &str, args: &[&str]) -> Result<Value> {
        let mut cmd = weft_pod();
        cmd.args(args);
        run_json(&self.bed, pod, cmd)
    }

    /// `http-load` from `pod` to the api service.
    pub fn load(&self, pod: &str, path: &str, args: &[&str]) -> Result<Value> {
        let url = format!("http://{API_VIP}{path}");
        let mut all = vec!["http-load", "--url", &url];
        all.extend_from_slice(args);
        self.pod(pod, &all)
    }

    /// One TCP exchange from `pod` to `to`, expecting the token in the reply.
    pub fn tcp(&self, pod: &str, to: &str) -> Result<Value> {
        self.pod(
            pod,
            &[
                "connect",
                "--to",
                to,
                "--expect",
                &self.token,
                "--timeout-ms",
                "1500",
            ],
        )
    }

    pub fn metric(&self, agent: usize, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.agents[agent]
            .metrics(&self.bed)
            .expect("scraping metrics");
        AgentProcess::metric(&text, name, labels).unwrap_or(0.0)
    }

    /// The agent's `/config_dump`, as text.
    pub fn config_dump(&self, agent: usize) -> Result<String> {
        let node = &self.agents[agent].node;
        let addr = mesh_agent::config::defaults::ADMIN_ADDR.to_string();
        self.bed
            .in_netns(node, || http_get(&addr, "/config_dump"))?
    }

    /// Kills `pod`'s HTTP server and starts a new one: every connection the pod had is closed,
    /// as when a pod restarts or closes idle keep-alive connections.
    pub fn restart_http_server(&self, pod: &str) -> Result<()> {
        let cgroup = &self.bed.pod(pod).cgroup;
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs"))?;
        for pid in procs.split_whitespace() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !cmdline.split(|b| *b == 0).any(|arg| arg == b"http-serve") {
                continue;
            }
            let killed = std::process::Command::new("kill")
                .args(["-KILL", pid])
                .status()?;
            if !killed.success() {
                bail!("kill {pid}: {killed}");
            }
            // Dead once it is a zombie (the test process never reaps it) or gone.
            eventually(Duration::from_secs(10), || {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                    stat.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'))
                })
            })?;
        }
        http_serve(&self.bed, pod)
    }

    /// Established TCP connections from node a to node b's tunnel port, counted in node a.
    pub fn tunnels_a_to_b(&self) -> Result<usize> {
        let b = self.bed.node("b").ip;
        let out = self
            .bed
            .in_netns("a", || std::fs::read_to_string("/proc/thread-self/net/tcp"))??;
        Ok(established_to(&out, b, 15008))
    }
}

/// Rows of `/proc/net/tcp` in state ESTABLISHED (01) whose remote end is `ip:port`.
fn established_to(table: &str, ip: Ipv4Addr, port: u16) -> usize {
    // The kernel prints the address as the in-memory u32 in hex: little-endian bytes here.
    let remote = format!("{:08X}:{port:04X}", u32::from_le_bytes(ip.octets()));
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.get(2) == Some(&remote.as_str()) && cols.get(3) == Some(&"01")
        })
        .count()
}

/// Waits for `f` to be true, polling.
pub fn eventually(timeout: Duration, f: impl FnMut() -> bool) -> Result<()> {
    if crate::common::eventually(timeout, f) {
        Ok(())
    } else {
        bail!("condition not reached within {timeout:?}")
    }
}
