//! The `http-load` summary: per-worker tallies merged into one JSON object (status and backend
//! distributions, proxy-generated answers, error kinds, latency percentiles, the first answer).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::HeaderMap;
use serde_json::{Map, Value, json};

/// What one worker saw; workers never share one, so recording takes no lock.
#[derive(Debug, Default)]
pub struct Tally {
    total: u64,
    ok: u64,
    status: BTreeMap<u16, u64>,
    served_by: BTreeMap<String, u64>,
    proxy_responses: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// Latency of every answered request, in milliseconds.
    latencies: Vec<f64>,
    /// The earliest answer: when it completed, its headers and its body.
    first: Option<(Instant, Value, Value)>,
}

/// One answered request, as the worker hands it over.
pub struct Answer<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub latency: Duration,
}

impl Tally {
    pub fn answered(&mut self, answer: &Answer<'_>) {
        self.total += 1;
        if (200..300).contains(&answer.status) {
            self.ok += 1;
        }
        *self.status.entry(answer.status).or_default() += 1;
        for (header, counts) in [
            ("x-served-by", &mut self.served_by),
            ("x-weft-response", &mut self.proxy_responses),
        ] {
            if let Some(value) = answer.headers.get(header) {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                *counts.entry(value).or_default() += 1;
            }
        }
        self.latencies.push(answer.latency.as_secs_f64() * 1000.0);
        if self.first.is_none() {
            let headers = crate::http_server::header_map(answer.headers);
            let headers = serde_json::to_value(headers).unwrap_or_default();
            self.first = Some((Instant::now(), headers, body_value(answer.body)));
        }
    }

    pub fn failed(&mut self, kind: String) {
        self.total += 1;
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        self.total += other.total;
        self.ok += other.ok;
        for (into, from) in [
            (&mut self.served_by, other.served_by),
            (&mut self.proxy_responses, other.proxy_responses),
            (&mut self.errors, other.errors),
        ] {
            for (key, count) in from {
                *into.entry(key).or_default() += count;
            }
        }
        for (status, count) in other.status {
            *self.status.entry(status).or_default() += count;
        }
        self.latencies.extend(other.latencies);
        let earlier = match (&self.first, &other.first) {
            (Some((mine, ..)), Some((theirs, ..))) => theirs < mine,
            (None, Some(_)) => true,
            _ => false,
        };
        if earlier {
            self.first = other.first;
        }
    }

    pub fn report(mut self, elapsed: Duration, capped: bool) -> Value {
        self.latencies.sort_by(f64::total_cmp);
        let status: Map<String, Value> = self
            .status
            .iter()
            .map(|(code, count)| (code.to_string(), json!(count)))
            .collect();
        let (first_headers, first_body) = self
            .first
            .map_or((Value::Null, Value::Null), |(_, headers, body)| {
                (headers, body)
            });
        json!({
            "ok": self.ok,
            "total": self.total,
            "status": status,
            "served_by": self.served_by,
            "proxy_responses": self.proxy_responses,
            "errors": self.errors,
            "latency_ms": {
                "p50": percentile(&self.latencies, 50.0),
                "p90": percentile(&self.latencies, 90.0),
                "p99": percentile(&self.latencies, 99.0),
                "p999": percentile(&self.latencies, 99.9),
                "max": self.latencies.last().copied().map(round),
            },
            "first_body": first_body,
            "first_headers": first_headers,
            "elapsed_ms": elapsed.as_millis() as u64,
            "capped": capped,
        })
    }
}

/// The body as JSON when it is JSON, else as (lossy) text.
fn body_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Nearest-rank percentile of sorted samples; `None` (JSON null) when nothing was answered.
fn percentile(sorted: &[f64], pct: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (pct / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .map(round)
}

/// Microsecond precision is plenty and keeps the JSON readable.
fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn answer(tally: &mut Tally, status: u16, served_by: Option<&str>, body: &[u8], ms: u64) {
        let mut headers = HeaderMap::new();
        if let Some(name) = served_by {
            headers.insert("x-served-by", HeaderValue::from_str(name).expect("valid"));
        }
        if status == 503 {
            headers.insert("x-weft-response", HeaderValue::from_static("overflow"));
        }
        tally.answered(&Answer {
            status,
            headers: &headers,
            body,
            latency: Duration::from_millis(ms),
        });
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 90.0), Some(90.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn merged_report_has_every_key() {
        let mut one = Tally::default();
        answer(&mut one, 200, Some("b1"), br#"{"server":"b1"}"#, 3);
        answer(&mut one, 503, None, b"upstream overflow", 1);
        let mut two = Tally::default();
        answer(&mut two, 200, Some("b2"), b"not json", 2);
        two.failed("ECONNREFUSED".to_owned());
        one.merge(two);
        let report = one.report(Duration::from_millis(9), false);
        assert_eq!(report["ok"], 2);
        assert_eq!(report["total"], 4);
        assert_eq!(report["status"], json!({"200": 2, "503": 1}));
        assert_eq!(report["served_by"], json!({"b1": 1, "b2": 1}));
        assert_eq!(report["proxy_responses"], json!({"overflow": 1}));
        assert_eq!(report["errors"], json!({"ECONNREFUSED": 1}));
        assert_eq!(report["latency_ms"]["p50"], 2.0);
        assert_eq!(report["latency_ms"]["max"], 3.0);
        // The first worker's first answer completed before the second worker's.
        assert_eq!(report["first_body"], json!({"server": "b1"}));
        assert_eq!(report["first_headers"]["x-served-by"], "b1");
        assert_eq!(report["capped"], false);
    }

    #[test]
    fn empty_report_has_null_latencies() {
        let mut tally = Tally::default();
        tally.failed("timeout".to_owned());
        let report = tally.report(Duration::ZERO, true);
        assert_eq!(report["ok"], 0);
        assert!(report["latency_ms"]["p99"].is_null());
        assert!(report["first_body"].is_null());
        assert_eq!(report["errors"]["timeout"], 1);
    }
}
