//! `mesh-agent run --capture iptables`: the proxy fed by a netfilter DNAT rule instead of the
//! datapath (the benchmark's comparison path). Needs root and iptables (`cargo xtask setup`).

mod common;

use common::*;
use mesh_agent::testbed::{field, message};
use mesh_common::OUTBOUND_PORT;

/// A client redirected by iptables reaches the service's backends through both agents, is
/// attributed to its own workload, and no weft program is attached to any pod.
#[test]
fn iptables_captured_connection_reaches_the_service() -> anyhow::Result<()> {
    let mesh = mesh("ipt")?;
    let flags = ["--capture", "iptables"];
    let mut agent_a = mesh.agent("a", &flags)?;
    let _agent_b = mesh.agent("b", &flags)?;
    mesh.bed.capture_with_iptables("client", OUTBOUND_PORT)?;

    let r = mesh.connect("client", &format!("{VIP}:80"), &["--count", "4"])?;
    assert_eq!(count(&r, "matched"), 4, "{r}");
    let reply = first_reply(&r);
    assert!(
        reply.contains(&format!("peer={}:", mesh.node_ip("a"))),
        "the backend must see node A's agent, got {reply:?}"
    );

    let logged = agent_a.wait_for_log(READY_TIMEOUT, |e| message(e) == "outbound connection")?;
    assert_eq!(
        field(&logged, "src_workload").as_deref(),
        Some("shop/client")
    );
    assert_eq!(
        field(&logged, "original_dst").as_deref(),
        Some("10.96.0.10:80")
    );
    assert_eq!(field(&logged, "service").as_deref(), Some("shop/backend"));
    assert_eq!(attached(&mesh, "client"), 0, "no program on the pod");
    Ok(())
}

/// Without a rule nothing is captured: the enrolled pod's connect meets the blackhole.
#[test]
fn without_a_rule_nothing_is_captured() -> anyhow::Result<()> {
    let mesh = mesh("iptnone")?;
    let flags = ["--capture", "iptables"];
    let _agent_a = mesh.agent("a", &flags)?;
    let _agent_b = mesh.agent("b", &flags)?;
    let r = mesh.connect("client", &format!("{VIP}:80"), &["--timeout-ms", "1000"])?;
    assert_eq!(count(&r, "ok"), 0, "{r}");
    assert_eq!(count(&r, "failed"), 1, "{r}");
    Ok(())
}
