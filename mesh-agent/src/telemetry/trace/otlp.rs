//! Spans, and their OTLP/HTTP JSON encoding (`ExportTraceServiceRequest`).
//!
//! The OTLP JSON mapping is protobuf's JSON mapping with OTLP's exceptions: field names in
//! lowerCamelCase, enums as integers, 64-bit integers as decimal strings, and trace and span
//! ids as lowercase hex (not base64). One request carries one resource (this agent) and one
//! instrumentation scope.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::context::{SpanId, TraceId};

/// OTLP `Span.SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// The proxy receiving the client's request.
    Server = 2,
    /// The proxy's call to the upstream endpoint.
    Client = 3,
}

/// An attribute value: OTLP `AnyValue`, of the two kinds the proxy uses.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

/// One finished span.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_id: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// OTLP `Status.code` ERROR (2) when set, UNSET (0) otherwise.
    pub error: bool,
}

/// The body of `POST /v1/traces` for `spans`, reported by node `node`.
pub fn encode(node: &str, spans: &[SpanRecord]) -> Vec<u8> {
    let resource = [
        ("service.name", AttrValue::Str("weft".into())),
        (
            "service.version",
            AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        ("weft.node", AttrValue::Str(node.into())),
    ];
    let body = json!({
        "resourceSpans": [{
            "resource": { "attributes": attributes(&resource) },
            "scopeSpans": [{
                "scope": { "name": "weft.proxy", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans.iter().map(span).collect::<Vec<_>>(),
            }],
        }],
    });
    body.to_string().into_bytes()
}

fn span(s: &SpanRecord) -> Value {
    let mut v = json!({
        "traceId": s.trace_id.to_string(),
        "spanId": s.span_id.to_string(),
        "name": s.name,
        "kind": s.kind as i32,
        "startTimeUnixNano": unix_nanos(s.start).to_string(),
        "endTimeUnixNano": unix_nanos(s.end).to_string(),
        "attributes": attributes(&s.attributes),
        "status": { "code": if s.error { 2 } else { 0 } },
    });
    if let (Some(parent), Some(map)) = (s.parent_id, v.as_object_mut()) {
        map.insert("parentSpanId".into(), parent.to_string().into());
    }
    v
}

fn attributes(attrs: &[(&'static str, AttrValue)]) -> Vec<Value> {
    attrs
        .iter()
        .map(|(key, value)| {
            let value = match value {
                AttrValue::Str(s) => json!({ "stringValue": s }),
                AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
            };
            json!({ "key": key, "value": value })
        })
        .collect()
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn encodes_the_otlp_json_mapping() -> anyhow::Result<()> {
        let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let record = SpanRecord {
            trace_id: TraceId([0x4b; 16]),
            span_id: SpanId([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]),
            parent_id: Some(SpanId([0xaa; 8])),
            name: "GET shop/backend".into(),
            kind: SpanKind::Client,
            start,
            end: start + Duration::from_millis(3),
            attributes: vec![
                ("http.request.method", AttrValue::Str("GET".into())),
                ("http.response.status_code", AttrValue::Int(503)),
            ],
            error: true,
        };
        let body: Value = serde_json::from_slice(&encode("node-a", &[record]))?;
        let rs = &body["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "weft"}})
        );
        assert_eq!(
            rs["resource"]["attributes"][2],
            json!({"key": "weft.node", "value": {"stringValue": "node-a"}})
        );
        let span = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4b".repeat(16));
        assert_eq!(span["spanId"], "0102030405060708");
        assert_eq!(span["parentSpanId"], "aa".repeat(8));
        assert_eq!(span["kind"], 3);
        assert_eq!(span["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(span["endTimeUnixNano"], "1700000000126456789");
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(
            span["attributes"][1],
            json!({"key": "http.response.status_code", "value": {"intValue": "503"}})
        );
        Ok(())
    }

    #[test]
    fn a_root_span_has_no_parent_field() -> anyhow::Result<()> {
        let record = SpanRecord {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            parent_id: None,
            name: "GET x".into(),
            kind: SpanKind::Server,
            start: UNIX_EPOCH,
            end: UNIX_EPOCH,
            attributes: vec![],
            error: false,
        };
        let body: Value = serde_json::from_slice(&encode("n", &[record]))?;
        let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert!(span.get("parentSpanId").is_none(), "{span}");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["status"]["code"], 0);
        Ok(())
    }
}
