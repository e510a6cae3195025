//! L7 resilience through real capture: retries and their budget, outlier detection, P2C-EWMA,
//! timeouts, circuit breaking, bad input. Needs root (run through `cargo xtask test`).

mod common;
mod l7;

use std::net::Ipv4Addr;
use std::time::Duration;

use l7::*;

const POOL: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 50);

const POLICY: &str = "\
trafficPolicy:
  retry: {attempts: 2, on: [5xx, connect-failure], backoff: {base: 5ms, max: 20ms}}
  retryBudget: {ratio: 0.2, minRetriesPerSecond: 10}
  outlierDetection: {consecutive5xx: 3, consecutiveGatewayErrors: 3, baseEjectionTime: 2s, maxEjectionTime: 10s, maxEjectionPercent: 50}
";

fn pool(label: &str, policy: &str, routes: &[&str]) -> anyhow::Result<L7> {
    pool_with(label, policy, routes, &[])
}

fn pool_with(label: &str, policy: &str, routes: &[&str], flags: &[&str]) -> anyhow::Result<L7> {
    let (bed, spec) = bed(
        label,
        &[
            ("p-1", "b", &[("app", "pool")]),
            ("p-2", "b", &[("app", "pool")]),
            ("p-3", "a", &[("app", "pool")]),
        ],
    )?;
    let mut spec = spec.service_spec(http_service("pool", POOL, ("app", "pool"), policy));
    for r in routes {
        spec = spec.route(r);
    }
    L7::start_with(bed, spec, flags)
}

fn retries(mesh: &L7) -> f64 {
    let text = mesh.metrics(0).expect("metrics");
    text.lines()
        .filter(|l| l.starts_with("weft_retries_total{") && l.contains("shop/pool"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One backend of three answers 503: retries make every idempotent request succeed, outlier
/// detection ejects it, and it is admitted again once it recovers. With every backend failing,
/// the budget caps the retries.
#[test]
fn retries_budget_and_outlier_detection() -> anyhow::Result<()> {
    let mesh = pool("retry", POLICY, &[])?;
    let url = format!("http://{POOL}/");
    mesh.control("p-1", r#"{"status": 503}"#)?;

    let r = mesh.load(&url, &["--count", "500", "--concurrency", "4"])?;
    assert_eq!(
        n(&r, "status", "200"),
        500,
        "retries hide the failing backend: {r}"
    );
    let retried = retries(&mesh);
    assert!(retried >= 1.0, "some requests were retried");
    // Ejected after 3 consecutive 503s: the bad backend saw only a few of the 500.
    assert!(
        retried < 50.0,
        "outlier detection stopped sending to p-1 ({retried} retries)"
    );

    mesh.control("p-1", r#"{"status": 200}"#)?;
    std::thread::sleep(Duration::from_millis(2500));
    let back = mesh.load(&url, &["--count", "90"])?;
    assert!(
        n(&back, "served_by", "p-1") > 0,
        "p-1 re-admitted after recovery: {back}"
    );

    Ok(())
}

/// With every backend failing, the budget caps retries: 10% of requests plus a reserve of
/// 1 retry/s over its 10 s window, far below the 2 retries per request the policy asks for.
#[test]
fn retry_budget_caps_retries_when_everything_fails() -> anyhow::Result<()> {
    let strict = "\
trafficPolicy:
  retry: {attempts: 2, on: [5xx], backoff: {base: 1ms, max: 5ms}}
  retryBudget: {ratio: 0.1, minRetriesPerSecond: 1}
";
    let mesh = pool("budget", strict, &[])?;
    for pod in ["p-1", "p-2", "p-3"] {
        mesh.control(pod, r#"{"status": 503}"#)?;
    }
    let failing = mesh.load(&format!("http://{POOL}/"), &["--count", "200"])?;
    assert_eq!(n(&failing, "status", "503"), 200, "{failing}");
    let spent = retries(&mesh);
    let skipped = skipped_for_budget(&mesh);
    assert!(spent >= 1.0, "retries were attempted");
    assert!(
        spent <= 0.1 * 200.0 + 10.0 + 2.0,
        "the budget caps retries: spent {spent}"
    );
    // Every failing request was either retried or refused a retry by the budget (and counted).
    assert!(spent + skipped >= 200.0, "spent {spent}, refused {skipped}");
    assert!(skipped >= 150.0, "most retries were refused: {skipped}");
    Ok(())
}

fn skipped_for_budget(mesh: &L7) -> f64 {
    let text = mesh.metrics(0).expect("metrics");
    text.lines()
        .filter(|l| l.starts_with("weft_retries_skipped_total{") && l.contains("budget_exhausted"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// P2C over peak-EWMA sends most requests away from a backend that is 50 ms slower.
#[test]
fn p2c_ewma_avoids_a_slow_backend() -> anyhow::Result<()> {
    let mesh = pool("ewma", "", &[])?;
    mesh.control("p-2", r#"{"delay_ms": 50}"#)?;
    let r = mesh.load(
        &format!("http://{POOL}/"),
        &["--count", "600", "--concurrency", "4"],
    )?;
    assert_eq!(n(&r, "status", "200"), 600, "{r}");
    let slow = n(&r, "served_by", "p-2") as f64 / 600.0;
    assert!(
        slow < 0.15,
        "the slow backend got {slow} of the traffic: {r}"
    );
    Ok(())
}

const TIMEOUT_ROUTE: &str = r#"
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: pool-timeouts, namespace: shop}
  spec:
    parentRefs: [{group: "", kind: Service, name: pool, port: 80}]
    rules:
      - matches: [{path: {type: PathPrefix, value: /slow}}]
        timeouts: {request: 300ms}
        backendRefs: [{name: pool, port: 80}]
      - backendRefs: [{name: pool, port: 80}]
"#;

/// A route timeout produces 504 close to the configured value; breaker overflow produces 503 at once.
#[test]
fn timeouts_and_circuit_breaking() -> anyhow::Result<()> {
    let breaker = "trafficPolicy:\n  circuitBreaker: {maxConnections: 64, maxPendingRequests: 1, maxRequests: 2}\n";
    let mesh = pool("timeout", breaker, &[TIMEOUT_ROUTE])?;
    let slow = mesh.load(
        &format!("http://{POOL}/slow?delay_ms=2000"),
        &["--count", "3"],
    )?;
    assert_eq!(n(&slow, "status", "504"), 3, "{slow}");
    assert_eq!(n(&slow, "proxy_responses", "timeout"), 3, "{slow}");
    let p50 = slow["latency_ms"]["p50"].as_f64().unwrap_or(0.0);
    assert!(
        (270.0..=330.0).contains(&p50),
        "504 after {p50} ms, configured 300 ms"
    );

    let burst = mesh.load(
        &format!("http://{POOL}/?delay_ms=300"),
        &["--count", "40", "--concurrency", "20"],
    )?;
    let open = n(&burst, "proxy_responses", "circuit-open");
    assert!(open > 0, "{burst}");
    assert_eq!(n(&burst, "status", "503"), open, "{burst}");
    assert!(n(&burst, "status", "200") > 0, "{burst}");
    Ok(())
}

/// Malformed requests, 1 MiB of headers and a client that stops mid-body get a clean error or
/// close, while a concurrent well-behaved client sees no failure.
#[test]
fn bad_input_is_refused_cleanly() -> anyhow::Result<()> {
    // A stalled upload is abandoned after the body idle timeout (30 s by default).
    let mesh = pool_with("badin", "", &[], &["--http-body-idle-timeout", "1s"])?;
    let to = format!("{POOL}:80");
    let good = std::thread::scope(|s| -> anyhow::Result<serde_json::Value> {
        let steady = s.spawn(|| {
            mesh.load(
                &format!("http://{POOL}/"),
                &["--count", "300", "--concurrency", "2"],
            )
        });
        let garbage = mesh.client(&[
            "raw",
            "--to",
            &to,
            "--send",
            "GET / HTTP/1.1\\r\\nHost\\r\\n\\r\\n",
        ])?;
        let line = garbage["response_line"].as_str().unwrap_or("");
        assert!(
            line.contains(" 400 ") || garbage["closed"] == true,
            "{garbage}"
        );
        let huge = mesh.client(&["raw", "--to", &to, "--send-headers-bytes", "1048576"])?;
        let line = huge["response_line"].as_str().unwrap_or("");
        assert!(line.contains(" 431 ") || huge["closed"] == true, "{huge}");
        let stalled = mesh.client(&["raw", "--to", &to, "--stall-body"])?;
        assert_eq!(stalled["closed"], true, "{stalled}");
        steady.join().expect("steady client thread")
    })?;
    assert_eq!(n(&good, "status", "200"), 300, "{good}");
    Ok(())
}
