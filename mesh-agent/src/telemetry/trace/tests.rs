use super::*;
use http::HeaderMap;

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            *k,
            HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    h
}

fn forwarded(h: &HeaderMap) -> TraceParent {
    let value = h.get(TRACEPARENT).expect("traceparent forwarded");
    TraceParent::parse(value.as_bytes()).expect("valid traceparent forwarded")
}

#[test]
fn an_incoming_trace_continues_with_the_proxy_as_parent() {
    let (tracer, mut rx) = Tracer::with_queue(0.0, 8);
    let mut h = headers(&[(TRACEPARENT, INCOMING), (TRACESTATE, "vendor=opaque,x=1")]);
    let mut spans = tracer.begin(&mut h).expect("traced");
    let out = forwarded(&h);
    let incoming = TraceParent::parse(INCOMING.as_bytes()).expect("valid");
    assert_eq!(out.trace_id, incoming.trace_id);
    assert_ne!(out.parent_id, incoming.parent_id);
    assert_eq!(out.parent_id, spans.client_span());
    assert!(out.sampled());
    assert_eq!(
        h.get(TRACESTATE).map(|v| v.as_bytes()),
        Some(&b"vendor=opaque,x=1"[..])
    );

    spans.facts.method = "GET".into();
    spans.facts.service = "shop/backend".into();
    spans.facts.status = 200;
    let now = Instant::now();
    spans.upstream_call(now, now);
    spans.finish(&tracer);
    let client = rx.try_recv().expect("client span");
    let server = rx.try_recv().expect("server span");
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(client.span_id, out.parent_id);
    assert_eq!(client.parent_id, Some(server.span_id));
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(server.parent_id, Some(incoming.parent_id));
    assert_eq!(server.trace_id, incoming.trace_id);
    assert_eq!(server.name, "GET shop/backend");
    assert!(!server.error);
}

#[test]
fn an_unsampled_caller_gets_new_ids_and_no_spans() {
    let (tracer, mut rx) = Tracer::with_queue(1.0, 8);
    let unsampled = INCOMING.replace("-01", "-00");
    let mut h = headers(&[(TRACEPARENT, &unsampled)]);
    let spans = tracer.begin(&mut h).expect("propagated");
    let out = forwarded(&h);
    assert!(!out.sampled());
    assert_eq!(out.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    spans.finish(&tracer);
    assert!(rx.try_recv().is_err());
}

#[test]
fn without_context_sampling_decides() {
    let (never, _rx) = Tracer::with_queue(0.0, 8);
    let mut h = HeaderMap::new();
    assert!(never.begin(&mut h).is_none());
    assert!(h.is_empty());

    let (always, mut rx) = Tracer::with_queue(1.0, 8);
    let spans = always.begin(&mut h).expect("sampled");
    let out = forwarded(&h);
    assert!(out.sampled());
    assert_eq!(out.trace_id, spans.trace_id);
    spans.finish(&always);
    let server = rx
        .try_recv()
        .expect("server span only: no upstream call happened");
    assert_eq!(server.parent_id, None);
    assert!(rx.try_recv().is_err());
}

#[test]
fn a_malformed_traceparent_is_treated_as_absent() {
    let (never, _rx) = Tracer::with_queue(0.0, 8);
    let mut h = headers(&[(TRACEPARENT, "00-zz-yy-01"), (TRACESTATE, "a=b")]);
    assert!(never.begin(&mut h).is_none());
    assert!(h.get(TRACEPARENT).is_none() && h.get(TRACESTATE).is_none());

    let (always, _rx) = Tracer::with_queue(1.0, 8);
    let mut h = headers(&[(TRACEPARENT, "00-zz-yy-01")]);
    let spans = always.begin(&mut h).expect("restarted");
    assert_eq!(forwarded(&h).trace_id, spans.trace_id);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (tracer, _rx) = Tracer::with_queue(1.0, 1);
    for _ in 0..3 {
        let spans = tracer.begin(&mut HeaderMap::new()).expect("sampled");
        spans.finish(&tracer);
    }
    // Each request has only its SERVER span here: the first fits, the next two are dropped.
    assert_eq!(tracer.dropped.with_label_values(&["queue_full"]).get(), 2);
}
