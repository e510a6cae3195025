//! L7 through real capture: protocol detection, HTTP/1.1, h2c, gRPC, WebSocket, Gateway API
//! (GAMMA) routing. Needs root (run through `cargo xtask test`).

mod common;
mod l7;

use std::net::Ipv4Addr;

use l7::*;

const WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const GRPC: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 30);
const BANNER: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 40);

const SPLIT_ROUTE: &str = r#"
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: web-split, namespace: shop}
  spec:
    parentRefs: [{group: "", kind: Service, name: web, port: 80}]
    rules:
      - matches: [{headers: [{name: x-canary, value: "yes"}]}]
        backendRefs: [{name: web-v2, port: 80}]
      - matches: [{path: {type: Exact, value: /v1-only}}]
        backendRefs: [{name: web-v1, port: 80}]
      - matches: [{path: {type: PathPrefix, value: /old}}]
        filters:
          - type: RequestRedirect
            requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}
      - matches: [{path: {type: PathPrefix, value: /}}]
        backendRefs:
          - {name: web-v1, port: 80, weight: 90}
          - {name: web-v2, port: 80, weight: 10}
"#;

fn routing_mesh(label: &str) -> anyhow::Result<L7> {
    let (bed, spec) = bed(
        label,
        &[
            ("web-1", "b", &[("app", "web"), ("version", "v1")]),
            ("web-2", "b", &[("app", "web"), ("version", "v2")]),
        ],
    )?;
    let grpc = mesh_agent::testbed::ServiceSpec {
        port: GRPC_PORT,
        target_port: GRPC_PORT,
        port_name: Some("grpc".into()),
        ..http_service("echo", GRPC, ("app", "web"), "")
    };
    let spec = spec
        .service_spec(http_service("web", WEB, ("app", "web"), ""))
        .service_spec(http_service(
            "web-v1",
            Ipv4Addr::new(10, 96, 0, 21),
            ("version", "v1"),
            "",
        ))
        .service_spec(http_service(
            "web-v2",
            Ipv4Addr::new(10, 96, 0, 22),
            ("version", "v2"),
            "",
        ))
        .service_spec(grpc)
        .route(SPLIT_ROUTE);
    L7::start(bed, spec)
}

/// HTTP/1.1 and h2c on a sniffed port, and a 90/10 weighted split over 1,000 requests.
#[test]
fn weighted_split_and_matches_choose_the_right_backend() -> anyhow::Result<()> {
    let mesh = routing_mesh("split")?;
    let url = format!("http://{WEB}/");

    let r = mesh.load(&url, &["--count", "1000", "--concurrency", "8"])?;
    assert_eq!(n(&r, "status", "200"), 1000, "{r}");
    let v2 = n(&r, "served_by", "web-2") as f64 / 1000.0;
    assert!(
        (0.06..=0.14).contains(&v2),
        "90/10 split gave {v2} to v2: {r}"
    );

    let h2 = mesh.load(&url, &["--count", "50", "--http2"])?;
    assert_eq!(n(&h2, "status", "200"), 50, "{h2}");
    assert_eq!(h2["first_body"]["version"], "HTTP/2.0", "{h2}");

    let canary = mesh.load(&url, &["--count", "20", "--header", "x-canary: yes"])?;
    assert_eq!(n(&canary, "served_by", "web-2"), 20, "{canary}");
    let exact = mesh.load(&format!("http://{WEB}/v1-only"), &["--count", "20"])?;
    assert_eq!(n(&exact, "served_by", "web-1"), 20, "{exact}");

    // The proxy adds forwarding headers and keeps the trace context.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let hdrs = mesh.load(&url, &["--header", &format!("traceparent: {tp}")])?;
    let seen = &hdrs["first_body"]["headers"];
    assert_eq!(seen["traceparent"], tp, "{hdrs}");
    assert!(
        seen["x-request-id"].as_str().is_some_and(|s| !s.is_empty()),
        "{hdrs}"
    );
    let client_ip = mesh.bed.pod("client").ip.to_string();
    assert!(
        seen["x-forwarded-for"]
            .as_str()
            .is_some_and(|s| s.contains(&client_ip)),
        "{hdrs}"
    );
    Ok(())
}

/// A redirect is answered by the proxy without contacting a backend.
#[test]
fn redirect_answers_without_a_backend() -> anyhow::Result<()> {
    let mesh = routing_mesh("redir")?;
    let r = mesh.load(&format!("http://{WEB}/old/page"), &["--count", "5"])?;
    assert_eq!(n(&r, "status", "301"), 5, "{r}");
    assert!(
        r["served_by"].as_object().is_none_or(|m| m.is_empty()),
        "{r}"
    );
    assert_eq!(
        r["first_headers"]["location"], "http://10.96.0.20/new",
        "{r}"
    );
    Ok(())
}

/// gRPC unary and server-streaming calls keep their status and trailers; WebSocket echoes
/// survive 1,000 messages.
#[test]
fn grpc_and_websocket_pass_through() -> anyhow::Result<()> {
    let mesh = routing_mesh("grpcws")?;
    let to = format!("{GRPC}:{GRPC_PORT}");
    let unary = mesh.client(&["grpc-call", "--to", &to, "--count", "10"])?;
    assert_eq!(n(&unary, "statuses", "0"), 10, "{unary}");
    assert_eq!(unary["trailers_seen"], true, "{unary}");
    let stream = mesh.client(&["grpc-call", "--to", &to, "--stream", "25"])?;
    assert_eq!(stream["replies"], 25, "{stream}");
    let failing = mesh.client(&["grpc-call", "--to", &to, "--status", "14"])?;
    assert_eq!(
        n(&failing, "statuses", "14"),
        1,
        "grpc-status is carried: {failing}"
    );

    let ws = mesh.client(&[
        "ws",
        "--url",
        &format!("ws://{WEB}/ws"),
        "--messages",
        "1000",
    ])?;
    assert_eq!(ws["received"], 1000, "{ws}");
    assert_eq!(ws["mismatches"], 0, "{ws}");
    Ok(())
}

/// A server-speaks-first protocol on an undeclared port is not stalled past the detection window.
#[test]
fn server_first_tcp_is_not_stalled() -> anyhow::Result<()> {
    let (mut bed, spec) = bed("banner", &[])?;
    bed.add_pod("b", "smtp")?;
    let mut serve = common::weft_pod();
    serve
        .args([
            "serve",
            "--listen",
            "0.0.0.0:2525",
            "--reply",
            "bye",
            "--banner",
            "220 ready",
        ])
        .stdout(std::process::Stdio::piped());
    let mut child = bed.spawn_in_pod("smtp", serve)?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )?;
    std::mem::forget(child);
    let banner = mesh_agent::testbed::ServiceSpec {
        port: 25,
        target_port: 2525,
        port_name: None,
        ..http_service("smtp", BANNER, ("app", "smtp"), "")
    };
    let spec = spec.workload("smtp", "shop", "smtp").service_spec(banner);
    let mesh = L7::start(bed, spec)?;
    let r = mesh.client(&["connect", "--to", &format!("{BANNER}:25"), "--read-first"])?;
    assert_eq!(r["ok"], 1, "{r}");
    assert!(
        r["first_reply"]
            .as_str()
            .is_some_and(|s| s.starts_with("220 ready")),
        "{r}"
    );
    let first_byte_ms = r["first_byte_ms"].as_f64().unwrap_or(f64::MAX);
    assert!(
        first_byte_ms < 100.0 + 400.0,
        "banner after {first_byte_ms} ms: {r}"
    );
    Ok(())
}
