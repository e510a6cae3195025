//! Tracing of proxied HTTP requests: W3C `traceparent` propagation and OTLP/HTTP export.
//!
//! Only an agent started with `--otlp-endpoint` has a [`Tracer`]; without one the proxy never
//! looks at trace headers and builds nothing (they pass through untouched, like any header).
//! With one, every request gets two spans in the caller's trace: the proxy's SERVER span
//! (receiving the request, child of the caller's span) and its CLIENT span (the call to the
//! upstream, child of the SERVER span). The forwarded `traceparent` carries the same trace id
//! and flags, with the CLIENT span's id as parent, so the backend's span hangs under the proxy's.
//!
//! Sampling follows the caller: a valid incoming `traceparent` keeps its sampled flag (spans are
//! exported only when it is set, ids are replaced either way). A request without one, or with
//! a malformed one (which W3C says to treat as absent, `tracestate` included), starts a trace
//! with probability `--trace-sampling`; an unsampled request without context gets none.
//! `context` parses the header, `otlp` encodes spans, `export` ships them.

mod context;
mod export;
mod otlp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::HeaderMap;
use http::header::HeaderValue;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;

pub use context::{FLAG_SAMPLED, SpanId, TraceId, TraceParent};
pub use export::Endpoint;
pub use otlp::{AttrValue, SpanKind, SpanRecord, encode};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// How the agent traces: from `--otlp-endpoint` and `--trace-sampling`.
#[derive(Clone, Debug)]
pub struct TraceConfig {
    pub endpoint: Endpoint,
    /// Probability, 0 to 1, of starting a trace for a request that carries none.
    pub sampling: f64,
    /// This node's name, a resource attribute of every span.
    pub node: String,
}

/// Decides, propagates and queues spans; shared by every request of the proxy.
pub struct Tracer {
    sampling: f64,
    queue: mpsc::Sender<SpanRecord>,
    dropped: IntCounterVec,
}

impl Tracer {
    /// Registers the exporter's series and starts its task.
    pub fn start(
        cfg: TraceConfig,
        registry: &Registry,
    ) -> anyhow::Result<(Arc<Tracer>, JoinHandle<()>)> {
        let exported = IntCounter::new(
            "weft_trace_spans_exported_total",
            "Spans the OTLP collector accepted.",
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "weft_trace_spans_dropped_total",
                "Spans not exported: the export queue was full (queue_full), or the collector \
                 failed, refused or timed out (export_failed).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(exported.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        for reason in ["queue_full", "export_failed"] {
            dropped.with_label_values(&[reason]);
        }
        let (queue, rx) = mpsc::channel(export::QUEUE_CAPACITY);
        let counters = export::ExportCounters {
            exported,
            dropped: dropped.clone(),
        };
        let task = tokio::spawn(export::run(rx, cfg.endpoint, cfg.node, counters));
        let tracer = Tracer {
            sampling: cfg.sampling,
            queue,
            dropped,
        };
        Ok((Arc::new(tracer), task))
    }

    /// Takes part in the request's trace: rewrites `headers` for the upstream and returns the
    /// proxy's spans in the making, or `None` when the request is not traced.
    pub fn begin(&self, headers: &mut HeaderMap) -> Option<ProxySpans> {
        let incoming = headers
            .get(TRACEPARENT)
            .and_then(|v| TraceParent::parse(v.as_bytes()));
        let (trace_id, caller, flags) = match incoming {
            Some(tp) => (tp.trace_id, Some(tp.parent_id), tp.flags),
            None => {
                // Absent or malformed: whatever came is not a context to continue.
                headers.remove(TRACEPARENT);
                headers.remove(TRACESTATE);
                if !(self.sampling > 0.0 && fastrand::f64() < self.sampling) {
                    return None;
                }
                (TraceId::random(), None, FLAG_SAMPLED)
            }
        };
        let server = SpanId::random();
        let client = SpanId::random();
        let forwarded = TraceParent {
            trace_id,
            parent_id: client,
            flags,
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded.to_header()) {
            headers.insert(TRACEPARENT, value);
        }
        Some(ProxySpans {
            trace_id,
            caller,
            server,
            client,
            sampled: flags & FLAG_SAMPLED != 0,
            wall_start: SystemTime::now(),
            start: Instant::now(),
            upstream_call: None,
            facts: RequestFacts::default(),
        })
    }

    /// A tracer whose queue the caller reads (no export task).
    #[cfg(test)]
    fn with_queue(sampling: f64, capacity: usize) -> (Tracer, mpsc::Receiver<SpanRecord>) {
        let (queue, rx) = mpsc::channel(capacity);
        let dropped = IntCounterVec::new(Opts::new("dropped", "test"), &["reason"])
            .unwrap_or_else(|e| panic!("{e}"));
        (
            Tracer {
                sampling,
                queue,
                dropped,
            },
            rx,
        )
    }

    /// Queues a finished span; drops it when the queue is full.
    fn submit(&self, span: SpanRecord) {
        match self.queue.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
                self.dropped.with_label_values(&["queue_full"]).inc();
            }
        }
    }
}

/// What the proxy learns about a request on its way, for the span attributes.
#[derive(Clone, Debug, Default)]
pub struct RequestFacts {
    pub method: String,
    /// `namespace/name` of the addressed service.
    pub service: String,
    /// The route that matched, as `kind namespace/name`, and the rule's name or index.
    pub route: Option<String>,
    /// `namespace/name` of the calling workload.
    pub source_workload: Option<String>,
    /// The caller's SPIFFE identity, when the request goes through the mesh.
    pub source_principal: Option<String>,
    /// `namespace/name` of the endpoint's workload.
    pub destination_workload: Option<String>,
    /// The endpoint of the last attempt.
    pub upstream: Option<SocketAddr>,
    pub status: u16,
    /// Why the proxy answered itself (`no-route`, `timeout`, `redirect`...), when it did.
    pub proxy_response: Option<&'static str>,
}

/// The proxy's two spans of one request, filled in while it runs.
pub struct ProxySpans {
    pub trace_id: TraceId,
    /// The caller's span, parent of the SERVER span.
    caller: Option<SpanId>,
    server: SpanId,
    /// Also the parent id the upstream sees.
    client: SpanId,
    sampled: bool,
    wall_start: SystemTime,
    start: Instant,
    /// When the call to the upstream started and ended.
    upstream_call: Option<(Instant, Instant)>,
    pub facts: RequestFacts,
}

impl ProxySpans {
    /// The span id the upstream sees as its parent.
    pub fn client_span(&self) -> SpanId {
        self.client
    }

    pub fn upstream_call(&mut self, started: Instant, ended: Instant) {
        self.upstream_call = Some((started, ended));
    }

    /// Ends the SERVER span now and queues both spans, when the trace is sampled.
    pub fn finish(self, tracer: &Tracer) {
        if !self.sampled {
            return;
        }
        let now = Instant::now();
        let server_end = self.wall(now);
        let name = format!("{} {}", self.facts.method, self.facts.service);
        // As OpenTelemetry's HTTP conventions: 5xx is an error, 4xx is the caller's business.
        let error = self.facts.status >= 500;
        let attributes = self.attributes();
        if let Some((from, to)) = self.upstream_call {
            let mut client_attrs = attributes.clone();
            if let Some(upstream) = self.facts.upstream {
                client_attrs.push((
                    "network.peer.address",
                    AttrValue::Str(upstream.ip().to_string()),
                ));
                client_attrs.push((
                    "network.peer.port",
                    AttrValue::Int(i64::from(upstream.port())),
                ));
            }
            tracer.submit(SpanRecord {
                trace_id: self.trace_id,
                span_id: self.client,
                parent_id: Some(self.server),
                name: name.clone(),
                kind: SpanKind::Client,
                start: self.wall(from),
                end: self.wall(to),
                attributes: client_attrs,
                error,
            });
        }
        tracer.submit(SpanRecord {
            trace_id: self.trace_id,
            span_id: self.server,
            parent_id: self.caller,
            name,
            kind: SpanKind::Server,
            start: self.wall_start,
            end: server_end,
            attributes,
            error,
        });
    }

    /// Wall-clock time of `at`, measured on the monotonic clock from the request's start.
    fn wall(&self, at: Instant) -> SystemTime {
        self.wall_start + at.saturating_duration_since(self.start)
    }

    fn attributes(&self) -> Vec<(&'static str, AttrValue)> {
        let f = &self.facts;
        let mut attrs = vec![
            ("http.request.method", AttrValue::Str(f.method.clone())),
            (
                "http.response.status_code",
                AttrValue::Int(i64::from(f.status)),
            ),
            (
                "weft.destination.service",
                AttrValue::Str(f.service.clone()),
            ),
        ];
        let optional = [
            ("http.route", &f.route),
            ("weft.source.workload", &f.source_workload),
            ("weft.source.principal", &f.source_principal),
            ("weft.destination.workload", &f.destination_workload),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                attrs.push((key, AttrValue::Str(v.clone())));
            }
        }
        if let Some(flag) = f.proxy_response {
            attrs.push(("weft.proxy_response", AttrValue::Str(flag.into())));
        }
        attrs
    }
}

#[cfg(test)]
mod tests;
