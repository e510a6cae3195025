//! The load generators, each run inside a pod of the bed (its cgroup and network namespace) and
//! bounded in time: `weft-pod http-load` (fixed-rate latency, HTTP/1.1 and h2c), `wrk`
//! (throughput at fixed concurrency, and new connection per request), `iperf3` (TCP bulk).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::TestBed;
use serde_json::{Value, json};

/// Added to every phase's own length before the run is killed.
const SLACK: Duration = Duration::from_secs(30);

/// Fixed-rate load; returns the percentiles (ms) and the request count.
pub fn fixed_rate(
    bed: &TestBed,
    bins: &Path,
    pod: &str,
    url: &str,
    h2: bool,
    rate: u32,
    secs: u32,
) -> Result<Value> {
    let mut cmd = Command::new(bins.join("weft-pod"));
    let count = (rate * secs).to_string();
    cmd.args([
        "http-load",
        "--url",
        url,
        "--count",
        &count,
        "--concurrency",
        "16",
    ])
    .args(["--rate", &rate.to_string()]);
    if h2 {
        cmd.arg("--http2");
    }
    let out = bed.run_in_pod(pod, cmd, Duration::from_secs(secs.into()) + SLACK)?;
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("http-load: {}", String::from_utf8_lossy(&out.stderr)))?;
    if report["ok"] != report["total"] {
        bail!("{url}: not every request succeeded: {report}");
    }
    Ok(json!({ "latency_ms": report["latency_ms"], "requests": report["ok"] }))
}

/// `wrk` at `connections` concurrent connections for `secs`; `close` opens a new connection
/// per request (the connection-setup rate).
pub fn wrk(
    bed: &TestBed,
    pod: &str,
    url: &str,
    connections: u32,
    secs: u32,
    close: bool,
) -> Result<Value> {
    let mut cmd = Command::new("/usr/bin/wrk");
    let threads = connections.min(2).to_string();
    cmd.args(["-t", &threads, "-c", &connections.to_string()])
        .args(["-d", &format!("{secs}s"), "--latency", "--timeout", "5s"]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(url);
    let out = bed.run_in_pod(pod, cmd, Duration::from_secs(secs.into()) + SLACK)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed = parse_wrk(&text).with_context(|| format!("wrk output: {text}"))?;
    Ok(parsed)
}

/// `h2load` (h2c with prior knowledge) on `connections` connections of `streams` concurrent
/// streams each, for `secs`: HTTP/2 throughput, many requests in flight per connection.
pub fn h2load(
    bed: &TestBed,
    pod: &str,
    url: &str,
    (connections, streams): (u32, u32),
    secs: u32,
) -> Result<Value> {
    let mut cmd = Command::new("/usr/bin/h2load");
    cmd.args(["-t", &connections.min(2).to_string()])
        .args(["-c", &connections.to_string(), "-m", &streams.to_string()])
        .args(["-D", &secs.to_string(), url]);
    let out = bed.run_in_pod(pod, cmd, Duration::from_secs(secs.into()) + SLACK)?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_h2load(&text).with_context(|| format!("h2load output: {text}"))
}

/// Requests/s, requests done and those not answered 2xx (failed included) from h2load's
/// report.
pub fn parse_h2load(text: &str) -> Result<Value> {
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .with_context(|| format!("no {prefix:?} line"))
    };
    // `finished in 2.00s, 12042.00 req/s, 12.08MB/s`
    let rps: f64 = line("finished in")?
        .split(", ")
        .find_map(|f| f.strip_suffix(" req/s"))
        .context("req/s")?
        .parse()?;
    // `requests: 24084 total, 24116 started, 24084 done, 24080 succeeded, 4 failed, ...`:
    // done counts every finished request (failed ones too), succeeded those answered 2xx.
    let counts = line("requests:")?;
    let count = |what: &str| -> Result<u64> {
        let field = counts
            .split(", ")
            .find_map(|f| f.trim().strip_suffix(what))
            .with_context(|| format!("{what:?} in {counts:?}"))?;
        Ok(field.trim().parse()?)
    };
    let (done, succeeded) = (count(" done")?, count(" succeeded")?);
    Ok(json!({
        "rps": rps.round(),
        "requests": done,
        "non_2xx": done.saturating_sub(succeeded),
    }))
}

/// Requests/s, total requests, latency percentiles and error counts from wrk's text report.
pub fn parse_wrk(text: &str) -> Result<Value> {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(str::trim)
    };
    let rps: f64 = field("Requests/sec:").context("Requests/sec")?.parse()?;
    let requests: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .context("requests in")?
        .parse()?;
    let mut latency = serde_json::Map::new();
    for p in ["50%", "90%", "99%"] {
        if let Some(v) = field(p) {
            let key = format!("p{}", p.trim_end_matches('%'));
            latency.insert(key, json!(round3(wrk_ms(v)?)));
        }
    }
    let non_2xx: u64 = field("Non-2xx or 3xx responses:").map_or(Ok(0), str::parse)?;
    let socket_errors = field("Socket errors:").unwrap_or("").to_owned();
    Ok(json!({
        "rps": rps.round(),
        "requests": requests,
        "latency_ms": latency,
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
    }))
}

/// wrk prints durations as `812.00us`, `1.23ms` or `2.01s`.
fn wrk_ms(v: &str) -> Result<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("duration {v:?}")
    };
    Ok(num.parse::<f64>()? * scale)
}

/// One TCP bulk transfer of `secs` to `host:port` (an iperf3 server); received Gbit/s.
pub fn iperf3(bed: &TestBed, pod: &str, host: &str, port: u16, secs: u32) -> Result<f64> {
    let mut cmd = Command::new("/usr/bin/iperf3");
    cmd.args([
        "-c",
        host,
        "-p",
        &port.to_string(),
        "-t",
        &secs.to_string(),
        "-J",
    ]);
    let out = bed.run_in_pod(pod, cmd, Duration::from_secs(secs.into()) + SLACK)?;
    let report: Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("iperf3: {}", report["error"]))?;
    Ok(round3(bps / 1e9))
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrk_report_parses() {
        let text = "Running 1s test @ http://10.0.0.1/\n  2 threads and 16 connections\n  Latency Distribution\n     50%  812.00us\n     90%    1.50ms\n     99%    2.00s\n  12000 requests in 1.00s, 13.00MB read\n  Non-2xx or 3xx responses: 3\nRequests/sec:  11999.50\nTransfer/sec:     13.00MB\n";
        let v = super::parse_wrk(text).expect("parses");
        assert_eq!(v["rps"], 12000.0);
        assert_eq!(v["requests"], 12000.0);
        assert_eq!(v["latency_ms"]["p50"], 0.812);
        assert_eq!(v["latency_ms"]["p99"], 2000.0);
        assert_eq!(v["non_2xx"], 3);
    }

    #[test]
    fn h2load_report_parses() {
        let text = "finished in 2.00s, 12042.00 req/s, 12.08MB/s\nrequests: 24084 total, 24116 started, 24084 done, 24080 succeeded, 4 failed, 0 errored, 0 timeout\nstatus codes: 24080 2xx, 0 3xx, 0 4xx, 4 5xx\n";
        let v = super::parse_h2load(text).expect("parses");
        assert_eq!(v["rps"], 12042.0);
        assert_eq!(v["requests"], 24084);
        assert_eq!(v["non_2xx"], 4);
    }
}
