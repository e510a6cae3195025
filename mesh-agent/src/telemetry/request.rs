//! One finished request or connection: the event both the metrics and the access log / tap
//! are fed from.
//!
//! A connection gets a [`ConnRecorder`] (its resolved series and the event hub). Each request
//! becomes a [`PendingRequest`] when its response head is known; the response body carries it
//! and finishes it when the body ends (or is dropped: the client went away), so durations and
//! body sizes cover the whole exchange, as in Istio. Request details (method, path...) are
//! copied only when someone will read them: an access log that sampled the request, or a tap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use http::HeaderMap;
use serde::Serialize;

use super::events::{Events, rfc3339};
use super::istio::{ConnSeries, Measured, Peer, RequestKey, Resolver};

/// Envoy's short codes for what the proxy saw go wrong; `-` when nothing did.
pub mod flags {
    pub const NONE: &str = "-";
    /// Upstream connect failure.
    pub const UF: &str = "UF";
    /// Upstream request timeout.
    pub const UT: &str = "UT";
    /// Retries exhausted and the last attempt still failed.
    pub const URX: &str = "URX";
    /// Upstream overflow: the circuit breaker refused.
    pub const UO: &str = "UO";
    /// No route matched.
    pub const NR: &str = "NR";
    /// No cluster: the matched rule has no usable backend.
    pub const NC: &str = "NC";
    /// No healthy upstream: the service has no endpoint.
    pub const UH: &str = "UH";
    /// The upstream connection ended before the response did.
    pub const UC: &str = "UC";
    /// The client went away before the response ended.
    pub const DC: &str = "DC";
    /// Denied by an authorization policy (Envoy's "unauthorized" flag).
    pub const UAEX: &str = "UAEX";
    /// The client's request was malformed.
    pub const DPE: &str = "DPE";
    /// A stream idle timeout: a stalled request body, or an idle connection.
    pub const SI: &str = "SI";
}

/// One access-log line / tap record.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Record {
    /// RFC 3339 start time.
    pub time: String,
    /// `request` or `connection`.
    pub kind: String,
    pub reporter: String,
    pub source_workload: String,
    pub source_namespace: String,
    pub source_principal: String,
    pub destination_workload: String,
    pub destination_namespace: String,
    pub destination_principal: String,
    pub destination_service: String,
    pub route: String,
    pub upstream: String,
    pub method: String,
    pub authority: String,
    pub path: String,
    pub protocol: String,
    pub response_code: u16,
    pub grpc_status: Option<u16>,
    pub response_flags: String,
    pub connection_security_policy: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: u64,
    pub upstream_duration_ms: Option<u64>,
}

/// The telemetry of one connection.
pub struct ConnRecorder {
    series: ConnSeries,
    resolver: Option<Box<Resolver>>,
    events: Events,
    started: Instant,
    start_time: SystemTime,
}

/// What a request looked like on arrival, kept only when an event will be written.
#[derive(Debug)]
pub struct Details {
    start_time: SystemTime,
    method: String,
    authority: String,
    path: String,
}

impl ConnRecorder {
    /// `resolver` names the workload of each request's endpoint (the source side).
    pub fn new(series: ConnSeries, events: Events, resolver: Option<Box<Resolver>>) -> Arc<Self> {
        series.opened();
        Arc::new(ConnRecorder {
            series,
            resolver,
            events,
            started: Instant::now(),
            start_time: SystemTime::now(),
        })
    }

    /// The request's details, when an access log or a tap wants them.
    pub fn details(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> Option<Box<Details>> {
        self.events.wanted().then(|| {
            let host = || {
                headers
                    .get(http::header::HOST)?
                    .to_str()
                    .ok()
                    .map(str::to_owned)
            };
            Box::new(Details {
                start_time: SystemTime::now(),
                method: method.to_string(),
                authority: uri
                    .authority()
                    .map(|a| a.to_string())
                    .or_else(host)
                    .unwrap_or_default(),
                path: uri.path().to_owned(),
            })
        })
    }

    /// The connection ended: `sent` bytes from the source workload, `received` to it.
    pub fn closed(
        &self,
        flags: &'static str,
        upstream: Option<SocketAddr>,
        sent: u64,
        received: u64,
    ) {
        self.series.closed(flags, sent, received);
        if !self.events.wanted() {
            return;
        }
        let mut record = self.record(self.start_time, None, flags);
        record.kind = "connection".into();
        record.upstream = upstream.map(|u| u.to_string()).unwrap_or_default();
        record.bytes_received = sent;
        record.bytes_sent = received;
        record.duration_ms = millis(self.started.elapsed());
        self.events.emit(record);
    }

    fn record(&self, time: SystemTime, destination: Option<&Peer>, flags: &str) -> Record {
        let l = self.series.labels();
        let dst = destination.unwrap_or(&l.destination);
        Record {
            time: rfc3339(time),
            kind: "request".into(),
            reporter: l.reporter.as_str().into(),
            source_workload: l.source.workload.clone(),
            source_namespace: l.source.namespace.clone(),
            source_principal: l.source.principal.clone(),
            destination_workload: dst.workload.clone(),
            destination_namespace: dst.namespace.clone(),
            destination_principal: dst.principal.clone(),
            destination_service: l.service.clone(),
            route: String::new(),
            upstream: String::new(),
            method: String::new(),
            authority: String::new(),
            path: String::new(),
            protocol: l.protocol.into(),
            response_code: 0,
            grpc_status: None,
            response_flags: flags.into(),
            connection_security_policy: l.security_policy().into(),
            bytes_received: 0,
            bytes_sent: 0,
            duration_ms: 0,
            upstream_duration_ms: None,
        }
    }
}

/// A request whose response is on its way; finished once, when its body ends or is dropped.
#[derive(Debug)]
pub struct PendingRequest {
    conn: Arc<ConnRecorder>,
    pub started: Instant,
    pub key: RequestKey,
    pub route: String,
    pub upstream_ms: Option<u64>,
    pub request_bytes: Arc<AtomicU64>,
    pub details: Option<Box<Details>>,
    response_bytes: u64,
}

impl std::fmt::Debug for ConnRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnRecorder").finish_non_exhaustive()
    }
}

impl PendingRequest {
    pub fn new(conn: Arc<ConnRecorder>, started: Instant, key: RequestKey) -> Self {
        PendingRequest {
            conn,
            started,
            key,
            route: String::new(),
            upstream_ms: None,
            request_bytes: Arc::default(),
            details: None,
            response_bytes: 0,
        }
    }

    /// A response data frame of `n` bytes went by.
    pub fn data(&mut self, n: usize) {
        self.response_bytes += n as u64;
    }

    /// The response's trailers: where gRPC puts its status.
    pub fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(status) = grpc_status(trailers) {
            self.key.grpc_status = Some(status);
        }
    }

    /// The upstream's response broke off.
    pub fn upstream_failed(&mut self) {
        if self.key.flags == flags::NONE {
            self.key.flags = flags::UC;
        }
    }

    /// Records the request. `complete`: the response body reached its end.
    pub fn finish(mut self, complete: bool) {
        if !complete && self.key.flags == flags::NONE {
            self.key.flags = flags::DC;
        }
        let elapsed = self.started.elapsed();
        let request_bytes = self.request_bytes.load(Ordering::Relaxed);
        let measured = Measured {
            duration: elapsed,
            request_bytes,
            response_bytes: self.response_bytes,
        };
        let details = self.details.take();
        let conn = self.conn.clone();
        let resolver = conn.resolver.as_deref();
        conn.series.request(self.key.clone(), measured, resolver);
        let Some(details) = details else { return };
        let destination = conn.series.destination(self.key.endpoint, resolver);
        let mut record = conn.record(details.start_time, Some(&destination), self.key.flags);
        record.protocol = if self.key.grpc { "grpc" } else { "http" }.into();
        record.route = std::mem::take(&mut self.route);
        record.upstream = self.key.endpoint.map(|u| u.to_string()).unwrap_or_default();
        record.method = details.method;
        record.authority = details.authority;
        record.path = details.path;
        record.response_code = self.key.status;
        record.grpc_status = self.key.grpc_status;
        record.bytes_received = request_bytes;
        record.bytes_sent = self.response_bytes;
        record.duration_ms = millis(elapsed);
        record.upstream_duration_ms = self.upstream_ms;
        conn.events.emit(record);
    }
}

/// `grpc-status` of a header block (trailers, or the head of a trailers-only response).
pub fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Whether a request is gRPC, by its content type.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the attempts of one request learned, for its telemetry: the endpoint that answered,
/// how long it took, whether retries ran out, how many body bytes the client sent.
#[derive(Debug, Default)]
pub struct UpstreamNotes {
    endpoint: std::sync::Mutex<Option<SocketAddr>>,
    upstream_us: AtomicU64,
    retries_exhausted: std::sync::atomic::AtomicBool,
    /// Counted by the client body as it streams.
    pub request_bytes: Arc<AtomicU64>,
    /// Whether to note the matched route (only when the request's details are kept).
    pub keep_route: bool,
    route: std::sync::Mutex<String>,
}

impl UpstreamNotes {
    /// Notes for one request; `keep_route`: its details are kept, so note the route too.
    pub fn new(keep_route: bool) -> Self {
        UpstreamNotes {
            keep_route,
            ..Default::default()
        }
    }

    /// An attempt to `endpoint` got its answer (or failed) after `elapsed`.
    pub fn attempt(&self, endpoint: SocketAddr, elapsed: std::time::Duration) {
        *self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(endpoint);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.upstream_us.store(us, Ordering::Relaxed);
    }

    /// The last attempt failed and no retry was left.
    pub fn retries_exhausted(&self) {
        self.retries_exhausted.store(true, Ordering::Relaxed);
    }

    pub fn endpoint(&self) -> Option<SocketAddr> {
        *self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_route(&self, route: String) {
        *self
            .route
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = route;
    }

    pub fn take_route(&self) -> String {
        std::mem::take(
            &mut *self
                .route
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub fn exhausted(&self) -> bool {
        self.retries_exhausted.load(Ordering::Relaxed)
    }

    pub fn upstream_ms(&self) -> Option<u64> {
        self.endpoint()
            .map(|_| self.upstream_us.load(Ordering::Relaxed) / 1000)
    }
}
