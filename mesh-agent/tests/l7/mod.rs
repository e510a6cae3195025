//! Fixture of the L7 suites: HTTP/gRPC backends in pods, services with declared or sniffed
//! protocols, Gateway API routes, one agent per node.

#![allow(dead_code)] // each suite uses a different part of the fixture

use std::net::Ipv4Addr;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::{AgentProcess, MeshSpec, ServiceSpec, TestBed};
use serde_json::Value;

use crate::common::{READY_TIMEOUT, bin_dir, run_json, weft_pod};

pub const HTTP_PORT: u16 = 8080;
pub const GRPC_PORT: u16 = 9090;

pub struct L7 {
    pub bed: TestBed,
    pub spec: MeshSpec,
    pub agents: Vec<AgentProcess>,
}

/// A backend pod: name, node, labels.
pub type Backend<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A bed with node A (client) and node B, the given backends serving HTTP on 8080 and gRPC on
/// 9090.
pub fn bed(label: &str, backends: &[Backend]) -> Result<(TestBed, MeshSpec)> {
    let mut bed = TestBed::new(label)?;
    bed.add_node("a")?;
    bed.add_node("b")?;
    bed.add_pod("a", "client")?;
    let mut spec = MeshSpec::default()
        .namespace("shop", true)
        .workload("client", "shop", "client");
    for (pod, node, labels) in backends {
        bed.add_pod(node, pod)?;
        http_serve(&bed, pod)?;
        spec = spec.workload_with(pod, "shop", labels);
    }
    Ok((bed, spec))
}

/// A service `shop/<name>` at `vip:80` -> 8080 selecting `key=value`.
pub fn http_service(name: &str, vip: Ipv4Addr, selector: (&str, &str), extra: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        namespace: "shop".into(),
        vip,
        port: 80,
        target_port: HTTP_PORT,
        selector: vec![(selector.0.into(), selector.1.into())],
        port_name: Some("http".into()),
        app_protocol: None,
        extra: extra.into(),
    }
}

impl L7 {
    pub fn start(bed: TestBed, spec: MeshSpec) -> Result<L7> {
        Self::start_with(bed, spec, &[])
    }

    /// Starts the agents with extra `mesh-agent run` flags.
    pub fn start_with(bed: TestBed, spec: MeshSpec, flags: &[&str]) -> Result<L7> {
        let config = spec.write(&bed, "mesh.yaml")?;
        let mut agents = Vec::new();
        for node in ["a", "b"] {
            let mut agent = AgentProcess::start(&bed, node, &bin_dir(), &config, flags)?;
            agent.wait_ready(READY_TIMEOUT)?;
            agents.push(agent);
        }
        Ok(L7 { bed, spec, agents })
    }

    /// `weft-pod <args>` in the client pod; its JSON summary.
    pub fn client(&self, args: &[&str]) -> Result<Value> {
        let mut cmd = weft_pod();
        cmd.args(args);
        run_json(&self.bed, "client", cmd)
    }

    /// `http-load` from the client pod.
    pub fn load(&self, url: &str, args: &[&str]) -> Result<Value> {
        let mut all = vec!["http-load", "--url", url];
        all.extend_from_slice(args);
        self.client(&all)
    }

    /// Sets a backend's persistent behaviour (`{"status": 503}`, `{"delay_ms": 50}`), addressed by
    /// pod IP (forwarded as plain TCP: a pod address is not a service).
    pub fn control(&self, pod: &str, body: &str) -> Result<()> {
        let url = format!("http://{}:{HTTP_PORT}/control", self.bed.pod(pod).ip);
        let r = self.load(&url, &["--method", "POST", "--body", body])?;
        if r["ok"].as_u64() != Some(1) {
            bail!("control of {pod} failed: {r}");
        }
        Ok(())
    }

    pub fn metrics(&self, node: usize) -> Result<String> {
        self.agents[node].metrics(&self.bed)
    }
}

/// Starts `weft-pod http-serve` (HTTP 8080, gRPC 9090) in `pod` and waits until both listen.
pub fn http_serve(bed: &TestBed, pod: &str) -> Result<()> {
    let mut cmd = weft_pod();
    cmd.args(["http-serve", "--name", pod])
        .args(["--listen", &format!("0.0.0.0:{HTTP_PORT}")])
        .args(["--grpc-listen", &format!("0.0.0.0:{GRPC_PORT}")])
        .stdout(Stdio::piped());
    let mut child = bed.spawn_in_pod(pod, cmd)?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    for expected in ["listening", "grpc listening"] {
        let line = lines.next().context("server exited")??;
        if !line.starts_with(expected) {
            bail!("{pod}: expected {expected:?}, got {line:?}");
        }
    }
    // The bed kills every process of its cgroups at teardown.
    std::mem::forget(child);
    Ok(())
}

/// Count of `key` in a JSON object of counts (`served_by`, `status`, ...).
pub fn n(v: &Value, object: &str, key: &str) -> u64 {
    v[object][key].as_u64().unwrap_or(0)
}
