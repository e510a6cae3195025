//! Outbound capture end to end: real kernel programs, real agents, pods in network namespaces.
//! Needs root (run through `cargo xtask test`).

mod common;

use std::time::Duration;

use common::*;
use mesh_agent::testbed::{field, message};

/// An enrolled client dials a service VIP; a backend on the other node answers, and sees the
/// connection come from node A's agent. The agent logs the attested source and the VIP.
#[test]
fn captured_connection_reaches_a_backend_through_the_agent() -> anyhow::Result<()> {
    let mesh = mesh("cap")?;
    let mut agent_a = mesh.agent("a", &[])?;
    let _agent_b = mesh.agent("b", &[])?;

    let r = mesh.connect("client", &format!("{VIP}:80"), &["--count", "4"])?;
    assert_eq!(count(&r, "ok"), 4, "{r}");
    assert_eq!(
        count(&r, "matched"),
        4,
        "every reply carries this run's token: {r}"
    );
    let reply = first_reply(&r);
    assert!(
        reply.contains(&format!("peer={}:", mesh.node_ip("a"))),
        "the backend must see node A's agent, got {reply:?}"
    );

    // Round robin: two consecutive connections land on different backends.
    let one = first_reply(&mesh.connect("client", &format!("{VIP}:80"), &[])?);
    let two = first_reply(&mesh.connect("client", &format!("{VIP}:80"), &[])?);
    assert_ne!(
        one.split(' ').next(),
        two.split(' ').next(),
        "{one:?} / {two:?}"
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
    assert_eq!(field(&logged, "outcome").as_deref(), Some("ok"));
    Ok(())
}

/// Only enrolled pods' TCP is captured; an IPv6 socket dialling the IPv4-mapped VIP is.
#[test]
fn outsiders_and_udp_are_untouched_and_v4_mapped_is_captured() -> anyhow::Result<()> {
    let mesh = mesh("scope")?;
    let agent_a = mesh.agent("a", &[])?;
    let _agent_b = mesh.agent("b", &[])?;

    // The outsider's connect is not redirected: it meets the service-range blackhole.
    let r = mesh.connect("outsider", &format!("{VIP}:80"), &["--timeout-ms", "1000"])?;
    assert_eq!(count(&r, "ok"), 0, "{r}");
    assert_eq!(count(&r, "failed"), 1, "{r}");

    // UDP from an enrolled pod is not redirected either.
    let mut udp = weft_pod();
    udp.args(["udp", "--to", &format!("{VIP}:80")]);
    let u = run_json(&mesh.bed, "client", udp)?;
    assert_eq!(
        u["sent"],
        serde_json::Value::Bool(false),
        "UDP to the blackholed VIP: {u}"
    );

    let v6 = mesh.connect("client", &format!("{VIP}:80"), &["--v6-mapped"])?;
    assert_eq!(count(&v6, "matched"), 1, "{v6}");

    assert_eq!(
        counter(&mesh, &agent_a, "captured"),
        1,
        "only the v4-mapped TCP connect"
    );
    Ok(())
}

/// The proxy learns the destination from SO_ORIGINAL_DST and the source from the kernel's
/// attestation, not from the (spoofable) source address.
#[test]
fn source_is_attested_even_from_a_spoofed_address() -> anyhow::Result<()> {
    let mesh = mesh("spoof")?;
    let mut agent_a = mesh.agent("a", &[])?;
    let _agent_b = mesh.agent("b", &[])?;

    let spoofed = std::net::Ipv4Addr::new(10, 244, 1, 99);
    mesh.bed.add_pod_address("client", spoofed)?;
    let r = mesh.connect(
        "client",
        &format!("{VIP}:80"),
        &["--bind", &spoofed.to_string()],
    )?;
    assert_eq!(count(&r, "matched"), 1, "{r}");

    let logged = agent_a.wait_for_log(READY_TIMEOUT, |e| {
        message(e) == "outbound connection"
            && field(e, "src_addr").is_some_and(|a| a.starts_with("10.244.1.99:"))
    })?;
    assert_eq!(
        field(&logged, "src_workload").as_deref(),
        Some("shop/client")
    );
    assert_eq!(
        field(&logged, "original_dst").as_deref(),
        Some("10.96.0.10:80")
    );
    Ok(())
}

/// Destinations that are not services are forwarded to the original destination; excluded
/// ports pass untouched; the kernel counters equal the connections made.
#[test]
fn counters_match_the_connections_made() -> anyhow::Result<()> {
    let mesh = mesh("count")?;
    let agent_a = mesh.agent("a", &["--exclude-port", "9999"])?;
    let _agent_b = mesh.agent("b", &[])?;
    let backend = mesh.pod_addr("backend-1", BACKEND_PORT);

    let via_vip = mesh.connect("client", &format!("{VIP}:80"), &["--count", "5"])?;
    assert_eq!(count(&via_vip, "matched"), 5, "{via_vip}");
    // A pod address is not a service: captured, then forwarded to that address by the agent.
    let direct = mesh.connect("client", &backend, &["--count", "2"])?;
    assert_eq!(count(&direct, "matched"), 2, "{direct}");
    assert!(first_reply(&direct).contains(&format!("peer={}:", mesh.node_ip("a"))));
    // Excluded port: passes untouched (nothing listens there: refused by the backend pod).
    let excluded = mesh.connect(
        "client",
        &mesh.pod_addr("backend-1", 9999),
        &["--count", "3"],
    )?;
    assert_eq!(count(&excluded, "failed"), 3, "{excluded}");

    assert_eq!(counter(&mesh, &agent_a, "captured"), 7);
    assert_eq!(counter(&mesh, &agent_a, "passed_excluded"), 3);
    assert_eq!(counter(&mesh, &agent_a, "errors"), 0);
    let text = agent_a.metrics(&mesh.bed)?;
    let opened = |service: &str| {
        mesh_agent::testbed::AgentProcess::metric_sum(
            &text,
            "weft_tcp_connections_opened_total",
            &[
                ("source_workload", "client"),
                ("destination_service", service),
            ],
        ) as u64
    };
    // Summed over the backends that served.
    assert_eq!(opened("shop/backend"), 5);
    assert_eq!(opened("unknown"), 2);
    Ok(())
}

/// 10,000 short connections: the original-destination maps drain back to (near) empty.
#[test]
fn ten_thousand_connections_leave_the_maps_empty() -> anyhow::Result<()> {
    let mesh = mesh("churn")?;
    let agent_a = mesh.agent("a", &[])?;
    let _agent_b = mesh.agent("b", &[])?;

    let r = mesh.connect("client", &format!("{VIP}:80"), &["--count", "10000"])?;
    assert_eq!(count(&r, "ok"), 10_000, "{r}");
    assert_eq!(count(&r, "matched"), 10_000, "{r}");
    assert_eq!(counter(&mesh, &agent_a, "captured"), 10_000);

    let entries = |map: &str| {
        metric(
            &mesh,
            &agent_a,
            "weft_datapath_map_entries",
            &[("map", map)],
        ) as u64
    };
    let drained = eventually(Duration::from_secs(10), || {
        entries("ORIG_BY_COOKIE") == 0 && entries("ORIG_BY_CLIENT") <= 2
    });
    assert!(
        drained,
        "maps not drained: cookie={} client={}",
        entries("ORIG_BY_COOKIE"),
        entries("ORIG_BY_CLIENT")
    );
    assert_eq!(entries("PODS"), 1, "only the client is enrolled on node A");
    Ok(())
}
