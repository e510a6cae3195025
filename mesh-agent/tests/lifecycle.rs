//! The agent's life cycle around the datapath: readiness and fail mode, restart and adoption of
//! pinned state, refused configuration, hot reload. Needs root (run through `cargo xtask test`).

mod common;

use std::time::Duration;

use common::*;
use mesh_agent::testbed::{AgentProcess, field, message, write_atomically};

const STOP: Duration = Duration::from_secs(15);

/// While no proxy is ready, capture fails open (connections go where they were addressed), or
/// fails closed (EPERM) when the node says so. Both are counted.
#[test]
fn not_ready_fails_open_by_default_and_closed_when_asked() -> anyhow::Result<()> {
    let mesh = mesh("ready")?;
    let _agent_b = mesh.agent("b", &[])?;
    let backend = mesh.pod_addr("backend-1", BACKEND_PORT);
    let client_ip = mesh.bed.pod("client").ip;

    // Ready: a direct pod address is captured and forwarded by node A's agent.
    let mut agent = mesh.agent("a", &["--keep-datapath"])?;
    let r = mesh.connect("client", &backend, &[])?;
    assert!(
        first_reply(&r).contains(&format!("peer={}:", mesh.node_ip("a"))),
        "{r}"
    );

    // Agent stopped, datapath kept: fail-open, the backend sees the client itself.
    assert!(agent.terminate(STOP)?.success());
    assert!(
        agent
            .events()
            .iter()
            .any(|e| message(e).starts_with("datapath left pinned"))
    );
    let r = mesh.connect("client", &backend, &[])?;
    assert!(
        first_reply(&r).contains(&format!("peer={client_ip}:")),
        "{r}"
    );

    // Fail-closed node: the same connect is refused while the agent is away.
    let mut agent = mesh.agent("a", &["--keep-datapath", "--fail-closed"])?;
    assert_eq!(counter(&mesh, &agent, "passed_not_ready"), 1);
    assert!(agent.terminate(STOP)?.success());
    let r = mesh.connect("client", &backend, &[])?;
    assert_eq!(count(&r, "ok"), 0, "{r}");
    assert_eq!(r["errors"]["EPERM"].as_u64(), Some(1), "{r}");

    let agent = mesh.agent("a", &[])?;
    assert_eq!(counter(&mesh, &agent, "rejected_not_ready"), 1);
    Ok(())
}

/// SIGKILL leaves capture in place (pinned); a new agent adopts it without attaching twice.
#[test]
fn restart_adopts_pinned_capture_without_double_attach() -> anyhow::Result<()> {
    let mesh = mesh("restart")?;
    let _agent_b = mesh.agent("b", &[])?;
    let mut agent = mesh.agent("a", &[])?;
    let attached_before = attached(&mesh, "client");
    assert_eq!(
        attached_before, 5,
        "connect4, connect6, sockops, sock_release, ingress"
    );
    assert_eq!(attached(&mesh, "outsider"), 0);

    agent.kill();
    assert_eq!(
        attached(&mesh, "client"),
        attached_before,
        "capture survives the agent"
    );
    // Still captured while the agent is gone: refused by the empty listener, not the blackhole.
    let r = mesh.connect("client", &format!("{VIP}:80"), &["--timeout-ms", "1000"])?;
    assert_eq!(r["errors"]["ECONNREFUSED"].as_u64(), Some(1), "{r}");

    let agent = AgentProcess::start(&mesh.bed, "a", &bin_dir(), &mesh.config, &[]);
    let mut agent = agent?;
    let ready = agent.wait_ready(READY_TIMEOUT)?;
    assert_eq!(field(&ready, "adopted").as_deref(), Some("1"), "{ready}");
    assert_eq!(field(&ready, "attached").as_deref(), Some("0"), "{ready}");
    assert_eq!(
        attached(&mesh, "client"),
        attached_before,
        "no double attach"
    );

    let r = mesh.connect("client", &format!("{VIP}:80"), &[])?;
    assert_eq!(count(&r, "matched"), 1, "{r}");

    // A clean stop without --keep-datapath detaches everything.
    assert!(agent.terminate(STOP)?.success());
    assert_eq!(attached(&mesh, "client"), 0);
    Ok(())
}

/// A broken state file is refused with a message naming the field, before anything is attached.
#[test]
fn broken_config_is_refused_and_nothing_is_attached() -> anyhow::Result<()> {
    let mesh = mesh("badcfg")?;
    let good = mesh.spec.render(&mesh.bed);
    let broken = good.replace("      - port: 80\n", "      - port: 0\n");
    assert_ne!(good, broken);
    let path = mesh.bed.work_dir().join("broken.yaml");
    write_atomically(&path, &broken)?;

    let mut agent = AgentProcess::start(&mesh.bed, "a", &bin_dir(), &path, &[])?;
    let status = agent.wait_exit(STOP)?;
    let log = agent.log_text();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("services[0].ports[0].port"), "{log}");
    assert_eq!(attached(&mesh, "client"), 0);
    assert!(!mesh_agent::testbed::node_pin_dir(&mesh.bed, "a").exists());
    Ok(())
}

/// Hot reload: enrolling a namespace attaches its pods, a broken edit keeps the last good state,
/// removing the label releases them.
#[test]
fn reload_enrolls_and_releases_pods_and_keeps_the_last_good_state() -> anyhow::Result<()> {
    let mesh = mesh("reload")?;
    let _agent_b = mesh.agent("b", &[])?;
    let unenrolled = mesh.spec.clone().namespace("shop", false);
    write_atomically(&mesh.config, &unenrolled.render(&mesh.bed))?;
    let agent = mesh.agent("a", &["--reload-interval", "100ms"])?;
    assert_eq!(attached(&mesh, "client"), 0);

    write_atomically(&mesh.config, &mesh.spec.render(&mesh.bed))?;
    assert!(eventually(Duration::from_secs(10), || attached(
        &mesh, "client"
    ) == 5));
    let r = mesh.connect("client", &format!("{VIP}:80"), &[])?;
    assert_eq!(count(&r, "matched"), 1, "{r}");

    write_atomically(&mesh.config, "workloads: [{name: x, bogus: 1}]\n")?;
    assert!(eventually(Duration::from_secs(10), || {
        metric(
            &mesh,
            &agent,
            "weft_config_reloads_total",
            &[("result", "rejected")],
        ) >= 1.0
    }));
    let r = mesh.connect("client", &format!("{VIP}:80"), &[])?;
    assert_eq!(
        count(&r, "matched"),
        1,
        "the last good state still serves: {r}"
    );

    write_atomically(&mesh.config, &unenrolled.render(&mesh.bed))?;
    assert!(eventually(Duration::from_secs(10), || attached(
        &mesh, "client"
    ) == 0));
    Ok(())
}
