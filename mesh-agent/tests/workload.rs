//! The test workload itself (`weft-pod`), on loopback without namespaces: its servers answer as
//! documented and its clients report what happened, so the L7 suites can trust both ends.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Longest any single weft-pod client may run here.
const RUN_LIMIT: Duration = Duration::from_secs(30);
const START_LIMIT: Duration = Duration::from_secs(10);

/// A server process, killed when the test ends (also when it fails).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `weft-pod http-serve`.
struct Server {
    _child: KillOnDrop,
    http: String,
    grpc: String,
}

impl Server {
    fn start(name: &str) -> Self {
        let mut child = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_weft-pod"))
                .args(["http-serve", "--listen", "127.0.0.1:0", "--name", name])
                .args(["--grpc-listen", "127.0.0.1:0"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawning weft-pod http-serve"),
        );
        let stdout = child.0.stdout.take().expect("piped stdout");
        let (lines_tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().take(2) {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let next = || {
            lines
                .recv_timeout(START_LIMIT)
                .expect("http-serve announces its addresses")
        };
        let (http, grpc) = (next(), next());
        let http = http.strip_prefix("listening ").expect("listening line");
        let grpc = grpc.strip_prefix("grpc listening ").expect("grpc line");
        Self {
            http: http.to_owned(),
            grpc: grpc.to_owned(),
            _child: child,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

/// Runs a weft-pod client to completion (killed after [`RUN_LIMIT`]) and parses its JSON line.
fn run(args: &[&str]) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft-pod"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning weft-pod");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for weft-pod") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weft-pod {args:?} ran longer than {RUN_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    assert!(
        status.success(),
        "weft-pod {args:?}: {status}, stderr {err}"
    );
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("weft-pod {args:?} printed no JSON ({e}): {out:?} {err}"))
}

fn assert_latencies(report: &Value) {
    for key in ["p50", "p90", "p99", "max"] {
        assert!(
            report["latency_ms"][key].as_f64().is_some(),
            "latency {key}: {report}"
        );
    }
}

#[test]
fn http_load_over_http1_and_h2c() {
    let server = Server::start("b1");
    let url = server.url("/hello?x=1");
    for (extra, version) in [(None, "HTTP/1.1"), (Some("--http2"), "HTTP/2.0")] {
        let mut args = vec![
            "http-load",
            "--url",
            &url,
            "--count",
            "40",
            "--concurrency",
            "4",
        ];
        args.extend(extra);
        let report = run(&args);
        assert_eq!(report["ok"], 40, "{report}");
        assert_eq!(report["total"], 40);
        assert_eq!(report["status"], json!({"200": 40}));
        assert_eq!(report["served_by"], json!({"b1": 40}));
        assert_eq!(report["errors"], json!({}));
        assert_latencies(&report);
        let body = &report["first_body"];
        assert_eq!(body["server"], "b1");
        assert_eq!(body["version"], version);
        assert_eq!(body["path"], "/hello");
        assert_eq!(body["query"], "x=1");
        assert_eq!(report["first_headers"]["x-served-by"], "b1");
    }
}

#[test]
fn status_delay_and_size_per_request() {
    let server = Server::start("b1");
    let url = server.url("/?status=503&delay_ms=20&size=2048");
    let report = run(&[
        "http-load",
        "--url",
        &url,
        "--count",
        "3",
        "--method",
        "POST",
        "--body",
        "twelve bytes",
    ]);
    assert_eq!(report["ok"], 0, "{report}");
    assert_eq!(report["status"], json!({"503": 3}));
    assert_eq!(report["served_by"], json!({"b1": 3}));
    assert_eq!(report["first_headers"]["content-length"], "2048");
    assert_eq!(report["first_body"]["body_len"], 12);
    assert_eq!(report["first_body"]["method"], "POST");
    assert!(
        report["latency_ms"]["p50"].as_f64().unwrap_or(0.0) >= 20.0,
        "{report}"
    );
}

#[test]
fn persistent_control_then_reset() {
    let server = Server::start("b1");
    let control = server.url("/control");
    let set = |body: &str| {
        let report = run(&[
            "http-load",
            "--url",
            &control,
            "--method",
            "POST",
            "--body",
            body,
        ]);
        assert_eq!(report["status"], json!({"200": 1}), "{report}");
        report
    };
    let failing = set(r#"{"status": 503, "delay_ms": 30}"#);
    assert_eq!(failing["first_body"]["status"], 503);
    let report = run(&[
        "http-load",
        "--url",
        &server.url("/"),
        "--count",
        "4",
        "--http2",
    ]);
    assert_eq!(report["status"], json!({"503": 4}), "{report}");
    assert!(
        report["latency_ms"]["p50"].as_f64().unwrap_or(0.0) >= 30.0,
        "{report}"
    );

    set(r#"{"status": 200, "delay_ms": 0}"#);
    let report = run(&["http-load", "--url", &server.url("/"), "--count", "4"]);
    assert_eq!(report["ok"], 4, "{report}");

    let refused = run(&[
        "http-load",
        "--url",
        &control,
        "--method",
        "POST",
        "--body",
        "{\"status\": 99}",
    ]);
    assert_eq!(refused["status"], json!({"400": 1}), "{refused}");
}

#[test]
fn grpc_unary_stream_and_forced_status() {
    let server = Server::start("g1");
    let to = server.grpc.as_str();
    let unary = run(&["grpc-call", "--to", to, "--count", "3"]);
    assert_eq!(unary["ok"], 3, "{unary}");
    assert_eq!(unary["statuses"], json!({"0": 3}));
    assert_eq!(unary["replies"], 3);
    assert_eq!(unary["servers"], json!({"g1": 3}));
    assert_eq!(unary["trailers_seen"], true);

    let stream = run(&["grpc-call", "--to", to, "--stream", "25", "--count", "2"]);
    assert_eq!(stream["ok"], 2, "{stream}");
    assert_eq!(stream["replies"], 50);
    assert_eq!(stream["trailers_seen"], true);

    let failed = run(&["grpc-call", "--to", to, "--status", "14", "--count", "2"]);
    assert_eq!(failed["ok"], 0, "{failed}");
    assert_eq!(failed["statuses"], json!({"14": 2}));
    assert_eq!(failed["servers"], json!({"g1": 2}));
    assert_eq!(failed["errors"], json!({}));
    assert_eq!(failed["trailers_seen"], true);
}

#[test]
fn websocket_echo_of_1000_messages() {
    let server = Server::start("w1");
    let url = format!("ws://{}/ws", server.http);
    let report = run(&["ws", "--url", &url, "--messages", "1000"]);
    assert_eq!(report["sent"], 1000, "{report}");
    assert_eq!(report["received"], 1000);
    assert_eq!(report["mismatches"], 0);
    assert_eq!(report["error"], Value::Null);
}

#[test]
fn malformed_requests_are_refused() {
    let server = Server::start("r1");
    let to = server.http.as_str();
    let bad = run(&[
        "raw",
        "--to",
        to,
        "--send",
        r"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    ]);
    assert_eq!(bad["response_line"], "HTTP/1.1 400 Bad Request", "{bad}");

    let huge = run(&["raw", "--to", to, "--send-headers-bytes", "1048576"]);
    let line = huge["response_line"].as_str().unwrap_or_default();
    assert!(
        line.starts_with("HTTP/1.1 431") || huge["closed"] == true,
        "{huge}"
    );
}

#[test]
fn clients_report_refused_connections() {
    // A port that was free a moment ago; nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let to = format!("127.0.0.1:{port}");
    let load = run(&[
        "http-load",
        "--url",
        &format!("http://{to}/"),
        "--count",
        "2",
    ]);
    assert_eq!(load["errors"], json!({"ECONNREFUSED": 2}), "{load}");
    assert_eq!(load["total"], 2);
    let grpc = run(&["grpc-call", "--to", &to]);
    assert_eq!(grpc["errors"], json!({"ECONNREFUSED": 1}), "{grpc}");
    let ws = run(&["ws", "--url", &format!("ws://{to}/ws"), "--messages", "1"]);
    assert_eq!(ws["error"], "ECONNREFUSED", "{ws}");
}

#[test]
fn tcp_banner_is_read_before_sending() {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_weft-pod"))
            .args(["serve", "--listen", "127.0.0.1:0", "--reply", "bye"])
            .args(["--banner", "220 ready"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning weft-pod serve"),
    );
    let mut line = String::new();
    let stdout = child.0.stdout.take().expect("piped stdout");
    // `serve` prints its address at once; the read is bounded by that.
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("serve announces its address");
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_default()
        .to_owned();
    let report = run(&["connect", "--to", &addr, "--read-first"]);
    assert_eq!(report["ok"], 1, "{report}");
    let reply = report["first_reply"].as_str().unwrap_or_default();
    assert!(reply.starts_with("220 ready\nbye peer="), "{report}");
    assert!(report["first_byte_ms"].as_f64().is_some(), "{report}");
}
