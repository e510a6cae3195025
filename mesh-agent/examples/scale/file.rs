//! The same cluster as a local state file (`mesh-agent run --config`): the agent reads and
//! polls one YAML file instead of watching an API server.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use mesh_agent::testbed::{AgentProcess, TestBed, write_atomically};

use super::{Args, CONVERGE_LIMIT, NAMESPACES, OTHER_NODES, endpoint_ip, other_node_ip, vip};

/// What the file holds beyond the cluster: one more endpoint for the last service, and whether
/// `shop` (the client's namespace) is enrolled.
#[derive(Clone, Copy)]
pub struct Changes {
    pub extra_endpoint: bool,
    pub shop_enrolled: bool,
}

/// Writes the state file to the bed's work dir and returns its path.
pub fn write(bed: &TestBed, node: &str, args: &Args, changes: Changes) -> Result<PathBuf> {
    let path = bed.work_dir().join("scale.yaml");
    write_atomically(&path, &render(bed, node, args, changes))?;
    Ok(path)
}

fn render(bed: &TestBed, node: &str, args: &Args, changes: Changes) -> String {
    let mut y = String::from("namespaces:\n  - name: shop\n");
    if changes.shop_enrolled {
        y.push_str("    labels: {weft.dev/mesh: enabled}\n");
    }
    for n in 0..NAMESPACES {
        let _ = writeln!(y, "  - name: scale-{n}");
    }
    let _ = writeln!(
        y,
        "nodes:\n  - name: {node}\n    addresses: [{}]",
        bed.node("a").ip
    );
    for k in 0..OTHER_NODES {
        let _ = writeln!(
            y,
            "  - name: node-{k}\n    addresses: [{}]",
            other_node_ip(k)
        );
    }
    let client = bed.pod("client");
    let _ = writeln!(
        y,
        "workloads:\n  - name: client\n    namespace: shop\n    node: {node}\n    ips: [{}]\n    cgroup: {}",
        client.ip,
        client.cgroup.display()
    );
    for i in 0..args.services {
        let extra = usize::from(changes.extra_endpoint && i == args.services - 1);
        for k in 0..args.per_service + extra {
            let _ = writeln!(
                y,
                "  - name: svc-{i}-{k}\n    namespace: scale-{}\n    node: node-{}\n    ips: [{}]\n    serviceAccount: svc-{i}\n    labels: {{app: svc-{i}}}",
                i % NAMESPACES,
                (i * 7 + k) % OTHER_NODES,
                endpoint_ip(i, k)
            );
        }
    }
    y.push_str("services:\n");
    for i in 0..args.services {
        let _ = writeln!(
            y,
            "  - name: svc-{i}\n    namespace: scale-{}\n    vips: [{}]\n    selector: {{app: svc-{i}}}\n    ports:\n      - port: 80\n        targetPort: 8080\n        name: http",
            i % NAMESPACES,
            vip(i)
        );
    }
    y
}

/// Starts the agent on the file and measures what the Kubernetes run measures.
pub fn run(bed: &TestBed, bins: &Path, node: &str, args: &Args) -> Result<super::Figures> {
    let unchanged = Changes {
        extra_endpoint: false,
        shop_enrolled: false,
    };
    let config = write(bed, node, args, unchanged)?;
    let size = std::fs::metadata(&config)?.len();
    eprintln!(
        "wrote {config:?}: {:.1} MiB",
        size as f64 / (1 << 20) as f64
    );
    let started = Instant::now();
    let mut agent = AgentProcess::start(bed, "a", bins, &config, &[])?;
    agent.wait_ready(CONVERGE_LIMIT)?;
    let converged = started.elapsed();
    let memory = super::memory(agent.pid().context("agent pid")?)?;

    let i = args.services - 1;
    super::expect_endpoint(bed, &agent, i, &endpoint_ip(i, 0).to_string())?;
    let changed = Instant::now();
    let more = Changes {
        extra_endpoint: true,
        ..unchanged
    };
    write(bed, node, args, more)?;
    let wanted = endpoint_ip(i, args.per_service).to_string();
    let update = super::wait_for_endpoint(bed, &agent, i, &wanted, changed)?;

    let before = super::histogram(&agent, bed)?;
    let enrolled = Changes {
        shop_enrolled: true,
        ..more
    };
    write(bed, node, args, enrolled)?;
    let flip = super::wait_for_flip(&agent, bed, before)?;
    Ok(super::Figures {
        converged,
        memory,
        update,
        flip,
    })
}
