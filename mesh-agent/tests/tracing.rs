//! Tracing end to end: W3C trace context through the node proxy, and spans at an in-test
//! OTLP/HTTP collector in node A's network namespace. Needs root (run through `cargo xtask test`).

mod common;
mod l7;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use l7::*;
use mesh_agent::testbed::AgentProcess;
use serde_json::Value;

const WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// How long the exporter may take: its batch window is half a second.
const EXPORT_WAIT: Duration = Duration::from_secs(10);

/// A collector: a listener in node A's namespace (the agent reaches it on that node's
/// loopback), answering 200 to each request and passing on the bodies of `POST /v1/traces`.
struct Collector {
    url: String,
    bodies: mpsc::Receiver<Value>,
}

impl Collector {
    fn start(mesh_bed: &mesh_agent::testbed::TestBed) -> Result<Collector> {
        let listener = mesh_bed.in_netns("a", || TcpListener::bind("127.0.0.1:0"))??;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, bodies) = mpsc::channel();
        // The thread ends with the test process; it only ever serves node A's loopback.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Ok(Some(body)) = serve_one(stream) {
                    let _ = tx.send(body);
                }
            }
        });
        Ok(Collector { url, bodies })
    }

    /// Every span received within `wait` of trace `trace_id`, waiting for at least `want`.
    fn spans_of(&self, trace_id: &str, want: usize, wait: Duration) -> Vec<Value> {
        let until = Instant::now() + wait;
        let mut found = Vec::new();
        while found.len() < want {
            let left = until.saturating_duration_since(Instant::now());
            let Ok(body) = self.bodies.recv_timeout(left) else {
                break;
            };
            found.extend(
                spans(&body)
                    .into_iter()
                    .filter(|s| s["traceId"] == trace_id),
            );
        }
        found
    }
}

/// Reads one HTTP/1.1 request (head, then a Content-Length body) and answers 200.
fn serve_one(stream: std::net::TcpStream) -> Result<Option<Value>> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")?;
    if !request_line.starts_with("POST /v1/traces ") {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&body)?))
}

fn spans(body: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            out.extend(ss["spans"].as_array().into_iter().flatten().cloned());
        }
    }
    out
}

/// One client on node A, one backend on node B; with `traced`, the agents export to the
/// collector and start no trace of their own (sampling 0).
fn traced_mesh(label: &str, traced: bool) -> Result<(L7, Collector)> {
    let (bed, spec) = bed(label, &[("web-1", "b", &[("app", "web")])])?;
    let collector = Collector::start(&bed)?;
    let spec = spec.service_spec(http_service("web", WEB, ("app", "web"), ""));
    let url = collector.url.clone();
    let flags: &[&str] = match traced {
        true => &["--otlp-endpoint", &url, "--trace-sampling", "0"],
        false => &[],
    };
    Ok((L7::start_with(bed, spec, flags)?, collector))
}

/// The `traceparent` the backend received, split into its four fields.
fn seen_traceparent(reply: &Value) -> Result<Vec<String>> {
    let value = reply["first_body"]["headers"]["traceparent"]
        .as_str()
        .with_context(|| format!("the backend saw no traceparent: {reply}"))?;
    Ok(value.split('-').map(str::to_owned).collect())
}

#[test]
fn a_traced_request_keeps_its_trace_and_reaches_the_collector() -> Result<()> {
    let (mesh, collector) = traced_mesh("trace", true)?;
    let url = format!("http://{WEB}/cart");
    let incoming = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let reply = mesh.load(
        &url,
        &[
            "--header",
            &format!("traceparent: {incoming}"),
            "--header",
            "tracestate: vendor=opaque",
        ],
    )?;
    assert_eq!(n(&reply, "status", "200"), 1, "{reply}");
    let seen = seen_traceparent(&reply)?;
    assert_eq!(seen[1], TRACE_ID, "same trace: {reply}");
    assert_ne!(seen[2], CALLER_SPAN, "a new parent span: {reply}");
    assert_eq!(seen[3], "01", "sampled flag kept: {reply}");
    assert_eq!(
        reply["first_body"]["headers"]["tracestate"], "vendor=opaque",
        "{reply}"
    );

    let spans = collector.spans_of(TRACE_ID, 2, EXPORT_WAIT);
    let client = spans
        .iter()
        .find(|s| s["spanId"] == seen[2].as_str())
        .with_context(|| format!("no span is the backend's parent: {spans:?}"))?;
    assert_eq!(client["kind"], 3, "{client}");
    let server = spans
        .iter()
        .find(|s| s["parentSpanId"] == CALLER_SPAN)
        .with_context(|| format!("no span is the caller's child: {spans:?}"))?;
    assert_eq!(server["kind"], 2, "{server}");
    assert_eq!(client["parentSpanId"], server["spanId"], "{spans:?}");
    let attrs = |s: &Value, key: &str| -> Option<Value> {
        s["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
    };
    let string = |v: &str| Some(serde_json::json!({ "stringValue": v }));
    assert_eq!(attrs(server, "http.request.method"), string("GET"));
    assert_eq!(
        attrs(server, "http.response.status_code"),
        Some(serde_json::json!({ "intValue": "200" }))
    );
    assert_eq!(attrs(server, "weft.source.workload"), string("shop/client"));
    assert_eq!(
        attrs(server, "weft.destination.workload"),
        string("shop/web-1")
    );
    assert_eq!(
        attrs(server, "weft.destination.service"),
        string("shop/web")
    );
    let web_ip = mesh.bed.pod("web-1").ip.to_string();
    assert_eq!(attrs(client, "network.peer.address"), string(&web_ip));

    // Sampling 0: a request without context starts no trace and gets no header.
    let plain = mesh.load(&url, &[])?;
    assert!(
        plain["first_body"]["headers"].get("traceparent").is_none(),
        "{plain}"
    );
    let metrics = mesh.metrics(0)?;
    let exported = AgentProcess::metric(&metrics, "weft_trace_spans_exported_total", &[]);
    assert!(exported.is_some_and(|n| n >= 2.0), "{metrics}");
    Ok(())
}

#[test]
fn without_an_endpoint_nothing_is_traced_or_sent() -> Result<()> {
    let (mesh, collector) = traced_mesh("notrace", false)?;
    let incoming = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let reply = mesh.load(
        &format!("http://{WEB}/"),
        &[
            "--count",
            "5",
            "--header",
            &format!("traceparent: {incoming}"),
        ],
    )?;
    assert_eq!(n(&reply, "status", "200"), 5, "{reply}");
    // The proxy is not part of the trace: the header passes as the client sent it.
    assert_eq!(
        reply["first_body"]["headers"]["traceparent"], incoming,
        "{reply}"
    );
    assert!(
        collector
            .bodies
            .recv_timeout(Duration::from_secs(2))
            .is_err(),
        "spans were exported without --otlp-endpoint"
    );
    let metrics = mesh.metrics(0)?;
    assert!(
        !metrics.contains("weft_trace_spans"),
        "exporter series without an exporter"
    );
    Ok(())
}
