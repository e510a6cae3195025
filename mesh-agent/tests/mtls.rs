//! Identity and mTLS between node proxies, end to end: a CA process, two agents, pods in
//! network namespaces, HBONE tunnels on port 15008, authorization and STRICT mode. Needs root
//! (run through `cargo xtask test`).

mod common;
mod l7;
mod secure;

use std::time::Duration;

use anyhow::Result;
use mesh_agent::testbed::{Capture, field, message};
use secure::*;

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn only_tls_crosses_the_link_and_the_server_sees_the_caller() -> Result<()> {
    let mesh = secure::start("tlswire", &[], &[])?;
    let path = format!("/api/{}", mesh.token);
    let capture = Capture::fabric(&mesh.bed)?;
    let load = mesh.load("web", &path, &["--count", "200", "--concurrency", "16"])?;
    let tcp = mesh.tcp("web", &format!("{TCP_VIP}:{TCP_PORT}"))?;
    let wire = capture.finish();
    assert_eq!(load["ok"], 200, "{load}");
    assert_eq!(tcp["matched"], 1, "{tcp}");
    // Both api pods served: one through the tunnel, one handed over on node a.
    for pod in ["api-a", "api-b"] {
        assert!(load["served_by"][pod].as_u64() > Some(0), "{load}");
    }
    // The balancer may favour the local endpoint: a good share, not half, crosses the link.
    assert!(wire.len() > 20_000, "the capture saw {} bytes", wire.len());
    assert!(
        !contains(&wire, &mesh.token),
        "the token crossed the link in clear"
    );

    // HTTP/2 keep-alive through the tunnels: one client connection carries hundreds of
    // responses (h2 closes a connection that receives over 100 empty non-final DATA frames).
    let h2 = mesh.load("web", &path, &["--http2", "--count", "300"])?;
    assert_eq!(h2["ok"], 300, "{h2}");
    assert_eq!(h2["connections"], 1, "{h2}");
    let h1 = mesh.load("web", &path, &["--count", "300"])?;
    assert_eq!(h1["ok"], 300, "{h1}");
    assert_eq!(h1["connections"], 1, "{h1}");

    // The application sees the caller's verified identity.
    let xfcc = load["first_body"]["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(xfcc.contains(&format!("URI={WEB_ID}")), "{load}");
    assert!(xfcc.contains(&format!("By={API_ID}")), "{load}");

    // A forged header does not survive.
    let forged = mesh.load(
        "web",
        &path,
        &[
            "--header",
            "x-forwarded-client-cert: URI=spiffe://evil/ns/x/sa/y",
        ],
    )?;
    let seen = forged["first_body"]["headers"]["x-forwarded-client-cert"].to_string();
    assert!(!seen.contains("evil") && seen.contains(WEB_ID), "{forged}");

    // Many requests shared a few tunnel connections (at most one per identity pair here).
    let tunnels = mesh.tunnels_a_to_b()?;
    assert!((1..=2).contains(&tunnels), "{tunnels} tunnel connections");

    // The capture does see plaintext: a pod outside the mesh calling directly (PERMISSIVE).
    let capture = Capture::fabric(&mesh.bed)?;
    let api_b = mesh.bed.pod("api-b").ip;
    let direct = mesh.tcp("outsider", &format!("{api_b}:{TCP_PORT}"))?;
    let wire = capture.finish();
    assert_eq!(direct["matched"], 1, "{direct}");
    assert!(contains(&wire, &mesh.token), "the capture missed plaintext");
    Ok(())
}

#[test]
fn pooled_streams_survive_the_pods_closing_their_connections() -> Result<()> {
    let mesh = secure::start("tlsreuse", &[], &[])?;
    let path = format!("/api/{}", mesh.token);
    let h1 = ["--count", "40", "--concurrency", "4"];
    let h2 = ["--http2", "--count", "40", "--concurrency", "4"];
    // Node a's proxy pools HTTP/1.1 and h2 streams to both api pods: through the tunnel to
    // api-b, handed over in-process to api-a.
    for args in [&h1[..], &h2[..]] {
        let warm = mesh.load("web", &path, args)?;
        assert_eq!(warm["ok"], 40, "{warm}");
    }
    // Both pods close every connection (a restart here; an idle keep-alive timeout does the
    // same) while the streams stay pooled.
    for pod in ["api-a", "api-b"] {
        mesh.restart_http_server(pod)?;
    }
    // The pooled streams are used again, and every request reaches a pod.
    for args in [&h1[..], &h2[..]] {
        let load = mesh.load("web", &path, args)?;
        assert_eq!(load["ok"], 40, "{args:?}: {load}");
        for pod in ["api-a", "api-b"] {
            assert!(load["served_by"][pod].as_u64() > Some(0), "{load}");
        }
    }
    Ok(())
}

#[test]
fn the_agent_never_holds_the_ca_key() -> Result<()> {
    let mesh = secure::start("tlskey", &[], &[])?;
    let root_key = std::fs::read_to_string(mesh.ca.dir.join("root.key"))?;
    let key_body: String = root_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(key_body.len() > 40, "{root_key}");
    let dump = mesh.config_dump(0)?;
    assert!(
        dump.contains("certificates") && dump.contains(WEB_ID),
        "{dump}"
    );
    assert!(
        !dump.contains("PRIVATE KEY"),
        "the dump holds a private key"
    );
    assert!(!dump.replace(['\n', '\\'], "").contains(&key_body[..40]));
    // Every file the agent is pointed at, and its command line.
    let flags = mesh.ca.agent_flags(&mesh.bed.node("a").name);
    let mut files = vec![mesh.bed.work_dir().join("mesh.yaml")];
    files.extend(flags.iter().filter(|f| f.starts_with('/')).map(Into::into));
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        assert!(!text.contains("PRIVATE KEY"), "{}", file.display());
        assert!(!text.contains(&key_body[..40]), "{}", file.display());
    }
    Ok(())
}

const POLICIES: &str = r#"authorizationPolicies:
  - name: api-readers
    namespace: shop
    selector: {matchLabels: {app: api}}
    action: ALLOW
    rules:
      - from: [{namespaces: [frontend]}]
        to: [{methods: [GET], paths: ["/api/*"]}]
      - from: [{namespaces: [frontend]}]
        to: [{ports: [9000]}]
  - name: no-secrets
    namespace: shop
    selector: {matchLabels: {app: api}}
    action: DENY
    rules:
      - from: [{principals: ["cluster.local/ns/frontend/sa/web"]}]
        to: [{ports: [8080], paths: ["/api/secret"]}]
"#;

#[test]
fn authorization_allows_denies_and_resets() -> Result<()> {
    let mesh = secure::start("tlsauthz", &[POLICIES], &[])?;
    let status = |pod: &str, path: &str, args: &[&str]| -> Result<serde_json::Value> {
        let mut all = vec!["--count", "20", "--concurrency", "4"];
        all.extend_from_slice(args);
        mesh.load(pod, path, &all)
    };
    let allowed = status("web", "/api/items", &[])?;
    assert_eq!(allowed["status"]["200"], 20, "{allowed}");
    for (pod, path, args) in [
        ("web", "/other", &[][..]),
        ("other", "/api/items", &[][..]),
        ("web", "/api/items", &["--method", "POST"][..]),
        ("web", "/api/secret", &[][..]),
    ] {
        let denied = status(pod, path, args)?;
        assert_eq!(denied["status"]["403"], 20, "{pod} {path}: {denied}");
        assert_eq!(denied["proxy_responses"]["denied"], 20, "{denied}");
    }
    // Opaque TCP: allowed for frontend, reset for anyone else.
    let to = format!("{TCP_VIP}:{TCP_PORT}");
    let ok = mesh.pod(
        "web",
        &[
            "connect",
            "--to",
            &to,
            "--count",
            "10",
            "--expect",
            &mesh.token,
        ],
    )?;
    assert_eq!(ok["matched"], 10, "{ok}");
    let reset = mesh.pod("other", &["connect", "--to", &to, "--count", "10"])?;
    assert_eq!(reset["ok"], 0, "{reset}");
    assert_eq!(reset["errors"]["ECONNRESET"], 10, "{reset}");

    // Decisions are counted by policy, on both nodes (api-a is local to the callers).
    let sum = |policy: &str, action: &str, layer: &str| {
        let labels = [("policy", policy), ("action", action), ("layer", layer)];
        (0..2)
            .map(|agent| mesh.metric(agent, "weft_authorization_decisions_total", &labels))
            .sum::<f64>()
    };
    assert_eq!(sum("shop/api-readers", "allow", "l7"), 20.0);
    assert_eq!(sum("shop/no-secrets", "deny", "l7"), 20.0);
    assert!(sum("shop/api-readers", "allow", "l4") >= 10.0);
    Ok(())
}

const STRICT: &str = r#"peerAuthentications:
  - name: default
    namespace: shop
    mode: STRICT
"#;

#[test]
fn strict_drops_plaintext_but_not_the_node_or_the_pod_itself() -> Result<()> {
    let mut mesh = secure::start("tlsstrct", &[STRICT], &[])?;
    let api_b = mesh.bed.pod("api-b").ip;
    let direct = format!("{api_b}:{TCP_PORT}");
    let dropped_before = mesh.metric(
        1,
        "weft_datapath_connects_total",
        &[("decision", "dropped_plaintext")],
    );
    let blocked = mesh.tcp("outsider", &direct)?;
    assert_eq!(blocked["ok"], 0, "{blocked}");
    assert_eq!(blocked["errors"]["timeout"], 1, "{blocked}");
    let dropped = mesh.metric(
        1,
        "weft_datapath_connects_total",
        &[("decision", "dropped_plaintext")],
    );
    assert!(dropped > dropped_before, "not counted: {dropped}");

    // Through the mesh it still works; so do the pod itself and a probe from its node.
    let meshed = mesh.tcp("web", &format!("{TCP_VIP}:{TCP_PORT}"))?;
    assert_eq!(meshed["matched"], 1, "{meshed}");
    let itself = mesh.tcp("api-b", &format!("127.0.0.1:{TCP_PORT}"))?;
    assert_eq!(itself["matched"], 1, "{itself}");
    let own_ip = mesh.tcp("api-b", &direct)?;
    assert_eq!(own_ip["matched"], 1, "{own_ip}");
    let probe = mesh.bed.in_netns("b", || {
        std::net::TcpStream::connect_timeout(&direct.parse().expect("addr"), Duration::from_secs(2))
    })?;
    assert!(probe.is_ok(), "probe from the node: {probe:?}");

    // PERMISSIVE: plaintext gets in again.
    mesh.spec.sections.clear();
    mesh.spec.write(&mesh.bed, "mesh.yaml")?;
    eventually(Duration::from_secs(10), || {
        mesh.tcp("outsider", &direct)
            .is_ok_and(|r| r["matched"] == 1)
    })?;
    Ok(())
}

#[test]
fn renewal_and_root_rotation_lose_no_request() -> Result<()> {
    let mesh = secure::start("tlsrot", &[], &["--cert-ttl", "4s"])?;
    let path = format!("/api/{}", mesh.token);
    let first_root = root_of(&mesh, &field_of_dump(&mesh)?)?;
    let load = std::thread::scope(|s| {
        let load = s.spawn(|| {
            mesh.load(
                "web",
                &path,
                &["--count", "1500", "--concurrency", "4", "--rate", "100"],
            )
        });
        std::thread::sleep(Duration::from_secs(3));
        mesh.ca.command(&["rotate", "begin"])?;
        std::thread::sleep(Duration::from_secs(3));
        mesh.ca.command(&["rotate", "activate"])?;
        std::thread::sleep(Duration::from_secs(5));
        mesh.ca.command(&["rotate", "finish"])?;
        load.join().expect("load thread")
    })?;
    assert_eq!(load["ok"], 1500, "{load}");
    // Renewed several times, and now chained to the new root.
    let renewals = mesh.agents[0]
        .events()
        .iter()
        .filter(|e| message(e) == "identity renewed" && field(e, "id").as_deref() == Some(WEB_ID))
        .count();
    assert!(renewals >= 2, "{renewals} renewals");
    eventually(Duration::from_secs(10), || {
        field_of_dump(&mesh)
            .and_then(|d| root_of(&mesh, &d))
            .is_ok_and(|root| root != first_root)
    })?;
    let bundle = std::fs::read_to_string(mesh.ca.dir.join("bundle.pem"))?;
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 1, "{bundle}");
    Ok(())
}

fn field_of_dump(mesh: &Secure) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&mesh.config_dump(0)?)?)
}

/// The root fingerprint of web's certificate in a config dump.
fn root_of(_mesh: &Secure, dump: &serde_json::Value) -> Result<String> {
    dump["certificates"]
        .as_array()
        .and_then(|certs| certs.iter().find(|c| c["id"] == WEB_ID))
        .and_then(|c| c["root"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no certificate for {WEB_ID}: {dump}"))
}

#[test]
fn bad_clients_of_the_tunnel_port_leave_good_tunnels_alone() -> Result<()> {
    let mesh = secure::start("tlsjunk", &[], &[])?;
    let path = format!("/api/{}", mesh.token);
    let port = std::net::SocketAddr::from((mesh.bed.node("b").ip, 15008));
    let sni = "api.shop.id.weft";
    let dir = mesh.ca.dir.clone();
    let rejected = |reason: &str| {
        mesh.metric(
            1,
            "weft_tunnel_rejected_connections_total",
            &[("reason", reason)],
        )
    };
    let (load, verdicts) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            mesh.load(
                "web",
                &path,
                &["--count", "300", "--concurrency", "2", "--rate", "100"],
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        // From a pod outside the mesh (not captured), straight to node b's tunnel port.
        let verdicts = mesh.bed.in_netns("outsider", || -> Result<[bool; 4]> {
            Ok([
                junk::garbage(port)?,
                junk::tls_refused(port, sni, junk::unknown_ca(WEB_ID)?)?,
                junk::tls_refused(port, sni, junk::from_mesh_root(&dir, WEB_ID, (2020, 2021))?)?,
                // Control: a valid certificate from the mesh root gets through TLS.
                !junk::tls_refused(port, sni, junk::from_mesh_root(&dir, WEB_ID, (2024, 2099))?)?,
            ])
        });
        (load.join().expect("load thread"), verdicts)
    });
    let [garbage, unknown_ca, expired, valid] = verdicts??;
    assert!(garbage, "garbage was answered");
    assert!(unknown_ca, "a certificate from an unknown CA was accepted");
    assert!(expired, "an expired certificate was accepted");
    assert!(valid, "the valid control certificate was refused");
    let load = load?;
    assert_eq!(load["ok"], 300, "{load}");
    assert!(rejected("tls") >= 1.0);
    assert!(rejected("peer_certificate") >= 2.0);
    Ok(())
}

#[test]
fn the_ca_signs_only_a_nodes_own_pods_for_valid_credentials() -> Result<()> {
    let mut mesh = secure::prepare("tlsca", &[], &[])?;
    let node_b = mesh.bed.node("b").name.clone();
    // Node a's agent presenting node b's credential: it may get shop/api (api-b runs on b) but
    // not frontend/web, which only runs on a.
    let mut flags = mesh.ca.agent_flags(&mesh.bed.node("a").name);
    let token_at = flags.iter().position(|f| f == "--ca-token").expect("flag") + 1;
    flags[token_at] = mesh
        .ca
        .dir
        .join("nodes")
        .join(format!("{node_b}.token"))
        .display()
        .to_string();
    let agent = mesh.start_agent("a", &flags)?;
    let refused = agent.wait_for_log(Duration::from_secs(20), |e| {
        message(e) == "identity request refused" && field(e, "id").as_deref() == Some(WEB_ID)
    })?;
    assert_eq!(
        field(&refused, "status").as_deref(),
        Some("403"),
        "{refused}"
    );
    agent.terminate(Duration::from_secs(10))?;

    // A credential the CA never issued.
    let bogus = mesh.bed.work_dir().join("bogus.token");
    std::fs::write(&bogus, "00".repeat(32))?;
    flags[token_at] = bogus.display().to_string();
    let agent = mesh.start_agent("a", &flags)?;
    let refused = agent.wait_for_log(Duration::from_secs(20), |e| {
        message(e) == "identity request refused"
    })?;
    assert_eq!(
        field(&refused, "status").as_deref(),
        Some("401"),
        "{refused}"
    );
    let ca_log = mesh.ca.log_text();
    assert!(
        ca_log.contains("not_on_node") && ca_log.contains("unknown_token"),
        "{ca_log}"
    );
    Ok(())
}
