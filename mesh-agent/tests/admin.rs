//! The admin API and the inspect commands against a real agent: a CA, two nodes with their
//! agents, pods in network namespaces (the mTLS fixture). Each command runs as a process in
//! node a's network namespace, the way a person on the node runs it. Needs root (run through
//! `cargo xtask test`).

mod common;
mod l7;
mod secure;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::http_get;
use secure::{API_ID, API_VIP, Secure, TCP_PORT, TCP_VIP, WEB_ID};
use serde_json::Value;

use crate::common::bin_dir;
use crate::l7::HTTP_PORT;

/// frontend may GET /api/* on the api pods and open connections to port 9000; shop/other may
/// not open connections to port 9000 (DENY); STRICT for the api pods.
const SECTIONS: &str = r#"routes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: api, namespace: shop}
    spec:
      parentRefs: [{group: "", kind: Service, name: api, port: 80}]
      rules:
        - matches: [{path: {type: PathPrefix, value: /api}}]
          backendRefs: [{name: api, port: 80}]
authorizationPolicies:
  - name: api-readers
    namespace: shop
    selector: {matchLabels: {app: api}}
    action: ALLOW
    rules:
      - from: [{namespaces: [frontend]}]
        to: [{methods: [GET], paths: ["/api/*"]}]
      - from: [{namespaces: [frontend, shop]}]
        to: [{ports: [9000]}]
  - name: no-other
    namespace: shop
    selector: {matchLabels: {app: api}}
    action: DENY
    rules:
      - from: [{principals: ["cluster.local/ns/shop/sa/other"]}]
        to: [{ports: [9000]}]
peerAuthentications:
  - {name: api-strict, namespace: shop, selector: {matchLabels: {app: api}}, mode: STRICT}
"#;

/// `mesh-agent <args>` in node `node`'s network namespace: its stdout, or its stderr as the
/// error when it fails.
fn cli(mesh: &Secure, node: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(bin_dir().join("mesh-agent"));
    cmd.args(args)
        .env_remove("WEFT_ADMIN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = mesh.bed.spawn_on_node(node, cmd)?.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "mesh-agent {args:?} exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `mesh-agent <args> -o json` on node a, parsed.
fn json(mesh: &Secure, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let text = cli(mesh, "a", &all)?;
    serde_json::from_str(&text).with_context(|| format!("{args:?} printed {text:?}"))
}

/// The workload of the one endpoint an explain answer marks as chosen.
fn chosen(explained: &Value) -> Result<String> {
    let endpoints = explained["endpoints"].as_array().context("endpoints")?;
    let chosen: Vec<_> = endpoints.iter().filter(|e| e["chosen"] == true).collect();
    match chosen[..] {
        [one] => Ok(one["workload"].as_str().context("workload")?.to_owned()),
        _ => bail!("not exactly one chosen endpoint in {explained}"),
    }
}

/// The note that says how the balancer chose.
fn balancer_note(explained: &Value) -> Result<&str> {
    explained["notes"]
        .as_array()
        .and_then(|n| {
            n.iter()
                .filter_map(Value::as_str)
                .find(|n| n.contains("balancer"))
        })
        .with_context(|| format!("no balancer note in {explained}"))
}

fn named<'a>(list: &'a Value, key: &str, name: &str) -> Result<&'a Value> {
    list.as_array()
        .and_then(|l| l.iter().find(|v| v[key] == name))
        .with_context(|| format!("no {name} in {list}"))
}

#[test]
fn every_inspect_command_answers_from_the_node() -> Result<()> {
    let mesh = secure::start("admincli", &[SECTIONS], &[])?;
    let node_a = mesh.bed.node("a").name.clone();

    let status = json(&mesh, &["status"])?;
    assert_eq!(status["node"], node_a.as_str(), "{status}");
    assert_eq!(
        (&status["ready"], &status["mtls"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    assert_eq!(status["counts"]["enrolled_here"], 3, "{status}");
    assert!(
        status["datapath"]["counters"]["captured"].is_u64(),
        "{status}"
    );
    assert!(cli(&mesh, "a", &["status"])?.contains("node:"));

    let workloads = json(&mesh, &["workloads"])?;
    let web = named(&workloads, "name", "frontend/web")?;
    assert_eq!(web["capture"]["captured"], true, "{web}");
    assert_eq!(web["capture"]["programs"].as_array().map(Vec::len), Some(5));
    assert_eq!(web["identity"], WEB_ID);
    assert!(named(&workloads, "name", "shop/api-b")?["capture"].is_null());
    assert_eq!(
        named(&workloads, "name", "shop/api-a")?["peer_authentication"],
        "STRICT"
    );

    let services = json(&mesh, &["services"])?;
    let api = named(&services, "name", "shop/api")?;
    assert_eq!(api["ports"][0]["declared"], "http");
    assert_eq!(api["endpoints"].as_array().map(Vec::len), Some(2), "{api}");

    let routes = json(&mesh, &["routes"])?;
    assert_eq!(routes[0]["service"], "shop/api");
    assert_eq!(routes[0]["rules"][0]["matches"][0]["path"]["value"], "/api");

    let certs = cli(&mesh, "a", &["certs", "-o", "json"])?;
    assert!(!certs.contains("PRIVATE KEY"), "{certs}");
    let certs: Value = serde_json::from_str(&certs)?;
    let held = named(&certs["certificates"], "id", WEB_ID)?;
    assert_eq!(held["root"], certs["roots"][0]["fingerprint"], "{certs}");

    let policies = json(&mesh, &["policy", "list"])?;
    let readers = named(&policies["authorization"], "name", "shop/api-readers")?;
    assert_eq!(readers["selects"].as_array().map(Vec::len), Some(2));

    let api_b = format!("{}:{HTTP_PORT}", mesh.bed.pod("api-b").ip);
    let args = [
        "policy",
        "check",
        "frontend/web",
        &api_b,
        "--path",
        "/api/items",
    ];
    let check = json(&mesh, &args)?;
    assert_eq!(check["decision"]["allow"], true, "{check}");
    assert_eq!(check["decision"]["policy"], "shop/api-readers");

    let dump = cli(&mesh, "a", &["config", "dump", "-o", "yaml"])?;
    assert!(
        dump.contains(&format!("node: {node_a}")) && dump.contains(API_ID),
        "{dump}"
    );
    assert!(!dump.contains("PRIVATE KEY"));
    Ok(())
}

#[test]
fn explain_follows_connections_and_pods_cannot_reach_the_admin_port() -> Result<()> {
    let mesh = secure::start("adminexp", &[SECTIONS], &[])?;

    // Allowed: both endpoints, one handed over on node a, one through the tunnel to node b.
    let api = format!("{API_VIP}:80");
    let allowed = json(
        &mesh,
        &["explain", "frontend/web", &api, "--path", "/api/items"],
    )?;
    assert_eq!(
        allowed["destination"]["service"]["name"], "shop/api",
        "{allowed}"
    );
    for (pod, via) in [("shop/api-a", "local"), ("shop/api-b", "tunnel")] {
        let ep = named(&allowed["endpoints"], "workload", pod)?;
        assert_eq!(
            (&ep["via"], &ep["verdict"]),
            (&Value::from(via), &Value::from("allow")),
            "{ep}"
        );
        assert_eq!(ep["authorization"]["policy"], "shop/api-readers");
    }
    assert_eq!(allowed["source"]["certificate"]["id"], WEB_ID, "{allowed}");
    // No request yet: the balancer's choice is that of a new one.
    chosen(&allowed)?;
    assert!(
        balancer_note(&allowed)?.contains("nothing balanced yet"),
        "{allowed}"
    );

    // Denied: every endpoint names the DENY policy.
    let tcp = format!("{TCP_VIP}:{TCP_PORT}");
    let denied = json(&mesh, &["explain", "shop/other", &tcp])?;
    let endpoints = denied["endpoints"].as_array().context("endpoints")?;
    assert_eq!(endpoints.len(), 2, "{denied}");
    for ep in endpoints {
        assert_eq!(
            (&ep["verdict"], &ep["authorization"]["policy"]),
            (&Value::from("deny"), &Value::from("shop/no-other")),
            "{ep}"
        );
    }
    let table = cli(&mesh, "a", &["explain", "shop/other", &tcp])?;
    assert!(table.contains("denied by shop/no-other"), "{table}");

    // HTTP is balanced per request, with latency and ejection state per endpoint: after
    // requests, explain shows what the balancer learned about each endpoint.
    let load = mesh.load("web", "/api/items", &["--count", "20"])?;
    assert_eq!(load["ok"], 20, "{load}");
    let learned = json(
        &mesh,
        &["explain", "frontend/web", &api, "--path", "/api/items"],
    )?;
    chosen(&learned)?;
    for pod in ["shop/api-a", "shop/api-b"] {
        let health = &named(&learned["endpoints"], "workload", pod)?["health"];
        assert_eq!(
            (&health["ejected_for_ms"], &health["in_flight"]),
            (&Value::Null, &Value::from(0)),
            "{learned}"
        );
        assert!(health["latency_ms"].as_f64().is_some(), "{learned}");
    }
    let note = balancer_note(&learned)?;
    assert!(
        note.contains("P2CEWMA") && !note.contains("nothing balanced yet"),
        "{note}"
    );
    let table = cli(
        &mesh,
        "a",
        &["explain", "frontend/web", &api, "--path", "/api/items"],
    )?;
    assert!(table.contains("next"), "{table}");

    // What the model says, the traffic does: the allowed pair gets through, the denied one not.
    // Opaque TCP is balanced round robin per connection: the endpoint explain names as chosen
    // is the one that answers the next connection, and then the choice moves on.
    let before = chosen(&json(&mesh, &["explain", "frontend/web", &tcp])?)?;
    let reply = mesh.tcp("web", &tcp)?;
    assert_eq!(reply["matched"], 1, "{reply}");
    let pod = before.trim_start_matches("shop/");
    assert!(
        reply["first_reply"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("{pod}-"))),
        "explain chose {before}, {reply}"
    );
    let after = chosen(&json(&mesh, &["explain", "frontend/web", &tcp])?)?;
    assert_ne!(after, before, "round robin moves on");
    let reset = mesh.pod("other", &["connect", "--to", &tcp, "--count", "3"])?;
    assert_eq!(reset["errors"]["ECONNRESET"], 3, "{reset}");

    // The admin port answers on the node's loopback only: from a pod's network namespace, every
    // address of node a refuses the connection.
    let node_addrs = mesh
        .bed
        .in_netns("a", mesh_agent::datapath::local_addresses)??;
    // Link-local IPv6 addresses need an interface to dial; they are not routed to pods anyway.
    let candidates: Vec<IpAddr> = node_addrs
        .into_iter()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback(),
            IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local(),
        })
        .collect();
    assert!(candidates.len() >= 3, "{candidates:?}");
    for pod in ["web", "outsider"] {
        for ip in &candidates {
            let addr = SocketAddr::new(*ip, 15000);
            let tried = mesh.bed.in_netns(pod, || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            })?;
            let refused =
                matches!(&tried, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
            assert!(refused, "{pod} -> {addr}: {tried:?}");
        }
    }
    // Readiness has its own port; the metrics port serves metrics only.
    let ready = mesh
        .bed
        .in_netns("a", || http_get("127.0.0.1:15021", "/healthz/ready"))??;
    assert_eq!(ready.trim(), "ready");
    let dump = mesh
        .bed
        .in_netns("a", || http_get("127.0.0.1:15020", "/config_dump"))?;
    assert!(
        dump.is_err(),
        "the metrics port still serves the config dump"
    );

    // Where no agent runs (the CA's node), the command says where it looked and what to try,
    // on one line, and exits 1.
    let mut cmd = Command::new(bin_dir().join("mesh-agent"));
    cmd.arg("status")
        .env_remove("WEFT_ADMIN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = mesh.bed.spawn_on_node("ca", cmd)?.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("127.0.0.1:15000") && stderr.contains("is mesh-agent running"));
    Ok(())
}
