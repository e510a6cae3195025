//! Telemetry against real traffic: a scripted mix of HTTP/1.1 (200, 404, 503), gRPC (OK and
//! NOT_FOUND) and opaque TCP from `web` on node a to the `shop/api*` services (pods on both
//! nodes, mTLS between the agents), then both agents' `/metrics`, node a's access log and a
//! `mesh-agent tap` started before the traffic are compared with what was sent. Needs root
//! (run through `cargo xtask test`).

mod common;
mod l7;
mod secure;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use mesh_agent::testbed::AgentProcess;
use secure::{API_ID, API_VIP, Secure, TCP_PORT, TCP_VIP, WEB_ID, eventually};
use serde_json::Value;

use crate::common::bin_dir;
use crate::l7::GRPC_PORT;

const GRPC_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 22);

/// HTTP requests by the status the server is told to answer.
const HTTP_MIX: [(&str, u64); 3] = [("200", 6), ("404", 3), ("503", 2)];
/// gRPC calls by the status the server is told to answer.
const GRPC_MIX: [(&str, u64); 2] = [("0", 4), ("5", 2)];
const TCP_CONNECTIONS: usize = 3;
/// `weft-pod connect` sends "hello\n".
const TCP_SENT: usize = 6;

#[test]
fn metrics_access_log_and_tap_match_the_traffic() -> Result<()> {
    let grpc = secure::service("api-grpc", GRPC_VIP, GRPC_PORT, GRPC_PORT, Some("grpc"));
    let mut mesh = secure::prepare_with("telem", &[], &[], |spec| spec.service_spec(grpc))?;
    let log = mesh.bed.work_dir().join("access-a.log");
    for node in ["a", "b"] {
        let mut flags = mesh.ca.agent_flags(&mesh.bed.node(node).name);
        if node == "a" {
            flags.extend(["--access-log".to_owned(), log.display().to_string()]);
        }
        mesh.start_agent(node, &flags)?;
    }
    mesh.wait_for_identities()?;

    let tap = Tap::start(&mesh)?;
    let tcp_received = send_traffic(&mesh)?;
    let http_total: u64 = HTTP_MIX.iter().map(|(_, n)| n).sum();
    let grpc_total: u64 = GRPC_MIX.iter().map(|(_, n)| n).sum();

    // Requests are recorded when their response ends and connections when both sides closed:
    // wait until the destination side has seen everything.
    let tcp_total = (TCP_CONNECTIONS * TCP_SENT) as f64;
    eventually(Duration::from_secs(10), || {
        both(&mesh, "weft_tcp_sent_bytes_total", &tcp_dst()) == tcp_total
            && both(&mesh, "weft_requests_total", &[("reporter", "destination")])
                == (http_total + grpc_total) as f64
    })
    .with_context(|| format!("metrics of a:\n{}", scrape(&mesh, 0)))?;

    check_http(&mesh)?;
    check_grpc(&mesh);
    check_tcp(&mesh, tcp_received as f64);
    check_access_log(&log, http_total + grpc_total)?;
    let tapped = tap.stop();
    let source_requests = tapped
        .iter()
        .filter(|r| r["kind"] == "request" && r["reporter"] == "source")
        .count();
    assert_eq!(
        source_requests as u64,
        http_total + grpc_total,
        "tap printed {tapped:#?}"
    );
    Ok(())
}

/// The mix; returns the bytes the TCP servers sent back.
fn send_traffic(mesh: &Secure) -> Result<usize> {
    for (status, count) in HTTP_MIX {
        let path = format!("/t{status}?status={status}");
        let out = mesh.load("web", &path, &["--count", &count.to_string()])?;
        assert_eq!(out["status"][status].as_u64(), Some(count), "{path}: {out}");
    }
    let to = format!("{GRPC_VIP}:{GRPC_PORT}");
    for (status, count) in GRPC_MIX {
        let args = ["grpc-call", "--to", &to, "--status", status];
        let out = mesh.pod(
            "web",
            &[&args[..], &["--count", &count.to_string()]].concat(),
        )?;
        assert_eq!(out["statuses"][status].as_u64(), Some(count), "{out}");
    }
    let mut received = 0;
    for _ in 0..TCP_CONNECTIONS {
        let out = mesh.tcp("web", &format!("{TCP_VIP}:{TCP_PORT}"))?;
        let reply = out["first_reply"].as_str().context("a TCP reply")?;
        received += reply.len() + 1;
    }
    Ok(received)
}

fn check_http(mesh: &Secure) -> Result<()> {
    for (code, count) in HTTP_MIX {
        let labels = |reporter| {
            [
                ("reporter", reporter),
                ("source_workload", "web"),
                ("source_namespace", "frontend"),
                ("source_principal", WEB_ID),
                ("destination_service", "shop/api"),
                ("destination_principal", API_ID),
                ("request_protocol", "http"),
                ("response_code", code),
                ("response_flags", "-"),
                ("connection_security_policy", "mutual_tls"),
            ]
        };
        let n = count as f64;
        let src = labels("source");
        assert_eq!(
            sum(mesh, 0, "weft_requests_total", &src),
            n,
            "source {code}"
        );
        let count_series = "weft_request_duration_milliseconds_count";
        assert_eq!(
            sum(mesh, 0, count_series, &src),
            n,
            "source {code} histogram"
        );
        assert_eq!(sum(mesh, 0, "weft_response_bytes_count", &src), n);
        let dst = labels("destination");
        assert_eq!(
            both(mesh, "weft_requests_total", &dst),
            n,
            "destination {code}"
        );
        assert_eq!(
            both(mesh, count_series, &dst),
            n,
            "destination {code} histogram"
        );
    }
    Ok(())
}

fn check_grpc(mesh: &Secure) {
    for (status, count) in GRPC_MIX {
        let labels = |reporter| {
            [
                ("reporter", reporter),
                ("source_workload", "web"),
                ("destination_service", "shop/api-grpc"),
                ("request_protocol", "grpc"),
                ("response_code", "200"),
                ("grpc_response_status", status),
                ("connection_security_policy", "mutual_tls"),
            ]
        };
        let n = count as f64;
        let src = labels("source");
        assert_eq!(
            sum(mesh, 0, "weft_requests_total", &src),
            n,
            "grpc {status}"
        );
        let dst = labels("destination");
        assert_eq!(both(mesh, "weft_requests_total", &dst), n, "grpc {status}");
    }
}

fn tcp_dst() -> [(&'static str, &'static str); 5] {
    [
        ("reporter", "destination"),
        ("source_principal", WEB_ID),
        ("destination_service", "shop/api-tcp"),
        ("request_protocol", "tcp"),
        ("connection_security_policy", "mutual_tls"),
    ]
}

fn check_tcp(mesh: &Secure, received: f64) {
    let sent = (TCP_CONNECTIONS * TCP_SENT) as f64;
    let n = TCP_CONNECTIONS as f64;
    let src = [
        ("reporter", "source"),
        ("source_workload", "web"),
        ("destination_service", "shop/api-tcp"),
        ("request_protocol", "tcp"),
        ("connection_security_policy", "mutual_tls"),
    ];
    assert_eq!(sum(mesh, 0, "weft_tcp_connections_opened_total", &src), n);
    assert_eq!(sum(mesh, 0, "weft_tcp_connections_closed_total", &src), n);
    assert_eq!(sum(mesh, 0, "weft_tcp_sent_bytes_total", &src), sent);
    assert_eq!(
        sum(mesh, 0, "weft_tcp_received_bytes_total", &src),
        received
    );
    let dst = tcp_dst();
    assert_eq!(both(mesh, "weft_tcp_connections_closed_total", &dst), n);
    assert_eq!(both(mesh, "weft_tcp_sent_bytes_total", &dst), sent);
    assert_eq!(both(mesh, "weft_tcp_received_bytes_total", &dst), received);
    // Round robin put at least one connection across the link: node b reported it.
    assert!(sum(mesh, 1, "weft_tcp_connections_closed_total", &dst) >= 1.0);
}

/// Node a logs a line per request on both ends; the source lines carry what was sent.
fn check_access_log(log: &std::path::Path, requests: u64) -> Result<()> {
    let mut lines: Vec<Value> = Vec::new();
    eventually(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let source = |r: &&Value| r["kind"] == "request" && r["reporter"] == "source";
        lines.iter().filter(source).count() as u64 == requests
    })
    .with_context(|| format!("access log: {lines:#?}"))?;
    let not_found: Vec<&Value> = lines
        .iter()
        .filter(|r| r["reporter"] == "source" && r["path"] == "/t404")
        .collect();
    assert_eq!(not_found.len(), 3, "{lines:#?}");
    for r in not_found {
        assert_eq!(r["method"], "GET", "{r}");
        assert_eq!(r["response_code"], 404, "{r}");
        assert_eq!(r["source_workload"], "web", "{r}");
        assert_eq!(r["source_principal"], WEB_ID, "{r}");
        assert_eq!(r["destination_service"], "shop/api", "{r}");
        assert_eq!(r["destination_principal"], API_ID, "{r}");
        assert_eq!(r["authority"], API_VIP.to_string(), "{r}");
        assert_eq!(r["protocol"], "http", "{r}");
        assert_eq!(r["response_flags"], "-", "{r}");
        assert!(
            r["upstream"].as_str().is_some_and(|u| u.ends_with(":8080")),
            "{r}"
        );
        assert!(r["duration_ms"].is_u64() && r["time"].is_string(), "{r}");
    }
    let connections = lines
        .iter()
        .filter(|r| {
            r["kind"] == "connection"
                && r["reporter"] == "source"
                && r["destination_service"] == "shop/api-tcp"
        })
        .collect::<Vec<_>>();
    assert_eq!(connections.len(), TCP_CONNECTIONS, "{lines:#?}");
    assert!(connections.iter().all(|r| r["bytes_received"] == TCP_SENT));
    Ok(())
}

/// `mesh-agent tap -o json` running on node a, its lines collected by a thread.
struct Tap {
    child: std::process::Child,
    lines: std::thread::JoinHandle<Vec<Value>>,
}

impl Tap {
    fn start(mesh: &Secure) -> Result<Self> {
        let mut cmd = Command::new(bin_dir().join("mesh-agent"));
        cmd.args(["tap", "--namespace", "shop", "-o", "json"])
            .env_remove("WEFT_ADMIN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = mesh.bed.spawn_on_node("a", cmd)?;
        let stdout = child.stdout.take().context("tap stdout")?;
        let lines = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str(&l).ok())
                .collect()
        });
        // The tap subscribes when the agent answers its request; give it that moment.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Tap { child, lines })
    }

    fn stop(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.join().unwrap_or_default()
    }
}

fn scrape(mesh: &Secure, agent: usize) -> String {
    mesh.agents[agent]
        .metrics(&mesh.bed)
        .unwrap_or_else(|e| format!("scrape failed: {e}"))
}

fn sum(mesh: &Secure, agent: usize, name: &str, labels: &[(&str, &str)]) -> f64 {
    AgentProcess::metric_sum(&scrape(mesh, agent), name, labels)
}

/// The sum over both agents (the destination side is whichever node served).
fn both(mesh: &Secure, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(mesh, 0, name, labels) + sum(mesh, 1, name, labels)
}
