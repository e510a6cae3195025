//! One captured connection, from accept to close: who is calling (the kernel's origin record,
//! never the source address), what it carries (protocol detection), where it goes (the HTTP
//! path for HTTP to a service; else a service's endpoint or the original destination itself,
//! with a byte copy), and the one log event and metrics at the end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{Instrument, info, info_span, warn};

use super::copy::{CopyEnd, copy_bidirectional};
use super::detect::{AppProtocol, DetectLimits, DetectReason, Detected, declared, detect};
use super::dial::DialError;
use super::http::Via;
use super::http::{self, ConnInfo, HttpConn};
use super::inbound::StreamProtocol;
use super::io::{ClientIo, ConnStats};
use super::outbound::Outbound;
use super::peers;
use crate::identity::SpiffeId;
use crate::state::{ServiceTarget, Workload};
use crate::telemetry::{ConnLabels, RefuseReason};

/// What the HTTP path needs to know about a connection.
struct HttpParts<'a> {
    peer: SocketAddr,
    via: Via,
    original_dst: SocketAddr,
    target: &'a ServiceTarget,
    source: Option<&'a Workload>,
    labels: ConnLabels,
}

/// How a connection ended: the `outcome` field of the `outbound connection` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    ConnectError,
    ConnectTimeout,
    IdleTimeout,
    IoError,
    /// Still open when the agent's shutdown grace period ended.
    Shutdown,
    /// The HTTP connection failed (a malformed request, a header timeout, a broken body).
    HttpError,
    /// The destination service's circuit breaker refused another connection.
    CircuitOpen,
    /// The destination refused the stream (its authorization policy): the client was reset.
    Denied,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ConnectError => "connect_error",
            Outcome::ConnectTimeout => "connect_timeout",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::IoError => "io_error",
            Outcome::Shutdown => "shutdown",
            Outcome::HttpError => "http_error",
            Outcome::CircuitOpen => "circuit_open",
            Outcome::Denied => "denied",
        }
    }
}

/// What happened after routing.
struct Finished {
    outcome: Outcome,
    /// How the upstream was reached (`direct`, `tunnel`, `local`); empty when it was not.
    via: &'static str,
    sent: u64,
    received: u64,
    error: String,
}

impl Finished {
    fn failed(outcome: Outcome, error: String) -> Self {
        Finished {
            outcome,
            via: "",
            sent: 0,
            received: 0,
            error,
        }
    }
}

impl Outbound {
    pub(super) async fn handle(self: &Arc<Self>, mut client: TcpStream, peer: SocketAddr) {
        let started = Instant::now();
        let captured = match self.origins.lookup(&client) {
            Ok(Some(c)) => c,
            Ok(None) => return self.refuse_without_origin(peer, "no origin record"),
            Err(e) => return self.refuse_without_origin(peer, &e.to_string()),
        };
        let original_dst = captured.original_dst;
        // One snapshot for the connection's decisions; HTTP requests read their own.
        let state = self.state.borrow().clone();
        let source = state
            .workload_by_cgroup(captured.origin.pod_cgroup_id)
            .cloned();
        let target = state.service_for(original_dst);
        let service = target.map_or_else(String::new, |t| t.service.display_name());
        let src_workload = source
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |w| w.key.to_string());
        let via = source.as_deref().and_then(|w| self.dialer.identity_of(w));
        let mut labels = peers::source_labels(source.as_deref(), via.as_deref(), &service);
        let span =
            info_span!("outbound", src_workload = %src_workload, original_dst = %original_dst);
        async {
            let limits = DetectLimits {
                first_bytes: self.config.detect_timeout,
                complete: self.config.http.header_read_timeout,
            };
            let detected = match target {
                Some(t) => detect(&mut client, declared(&t.port), limits).await,
                None => Detected {
                    protocol: AppProtocol::Tcp,
                    reason: DetectReason::Passthrough,
                    prefix: Default::default(),
                },
            };
            let protocol = detected.protocol;
            self.metrics
                .http()
                .detection(protocol.as_str(), detected.reason.as_str());
            let (done, upstream, requests) = match (protocol, target) {
                (AppProtocol::Http1 | AppProtocol::Http2, Some(target)) => {
                    labels.protocol = "http";
                    labels.mtls = via.is_some();
                    let http = HttpParts {
                        peer,
                        via: via.clone(),
                        original_dst,
                        target,
                        source: source.as_deref(),
                        labels,
                    };
                    let (done, requests) = self.serve_http(client, detected, http).await;
                    (done, None, requests)
                }
                _ => {
                    let upstream = self.route(target, original_dst);
                    if let Some(endpoint) = upstream {
                        (labels.destination, labels.mtls) =
                            peers::destination(&state, via.as_deref(), endpoint);
                    }
                    let recorder = self.metrics.connection(labels);
                    let done = self
                        .forward_tcp(client, upstream, detected.prefix, target, via.as_deref())
                        .await;
                    let flag = peers::flag(done.outcome);
                    recorder.closed(flag, upstream, done.sent, done.received);
                    (done, upstream, 0)
                }
            };
            info!(
                src_workload = %src_workload,
                src_addr = %peer,
                original_dst = %original_dst,
                service = %service,
                protocol = protocol.as_str(),
                upstream = %upstream.map(|u| u.to_string()).unwrap_or_default(),
                via = done.via,
                requests,
                outcome = done.outcome.as_str(),
                bytes_sent = done.sent,
                bytes_received = done.received,
                duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                error = %done.error,
                "outbound connection"
            );
        }
        .instrument(span)
        .await
    }

    fn refuse_without_origin(&self, peer: SocketAddr, reason: &str) {
        warn!(
            peer = %peer,
            reason,
            "refused outbound connection: the datapath did not capture it"
        );
        self.metrics.refused(RefuseReason::NoOrigin);
    }

    /// The upstream of an opaque connection: a service endpoint (round robin), or the original
    /// destination itself. `None` when the service has no endpoints.
    fn route(
        &self,
        target: Option<&ServiceTarget>,
        original_dst: SocketAddr,
    ) -> Option<SocketAddr> {
        match target {
            Some(target) => self
                .lb
                .pick(&target.service.display_name(), &target.endpoints),
            None => Some(original_dst),
        }
    }

    /// Serves an HTTP connection; returns how it ended and how many requests it carried.
    async fn serve_http(
        self: &Arc<Self>,
        client: TcpStream,
        detected: Detected,
        parts: HttpParts<'_>,
    ) -> (Finished, u64) {
        let _ = client.set_nodelay(true);
        let stats = Arc::new(ConnStats::default());
        let io = ClientIo::new(detected.prefix, client, stats.clone());
        let service = &parts.target.service;
        let resolver = peers::resolver(self.state.clone(), parts.via.clone());
        let recorder = self
            .metrics
            .connection_resolved(parts.labels, Some(resolver));
        let conn = Arc::new(HttpConn::new(
            self.clone(),
            ConnInfo {
                original_dst: parts.original_dst,
                service: (service.namespace.clone(), service.name.clone()),
                port: parts.target.port.port,
                client_h2: detected.protocol == AppProtocol::Http2,
                peer: parts.peer,
                via: parts.via.clone(),
                source_hash: parts.source.map(http::key::source_hash),
                recorder: recorder.clone(),
                // Only spans use it: not built when nothing is traced.
                source_workload: self.tracer().and(parts.source).map(|w| w.key.to_string()),
            },
        ));
        let end = http::serve(conn.clone(), io, stats.clone(), detected.protocol).await;
        let flag = peers::flag(end.outcome);
        recorder.closed(flag, None, stats.sent(), stats.received());
        let done = Finished {
            outcome: end.outcome,
            via: if parts.via.is_some() {
                "mesh"
            } else {
                "direct"
            },
            sent: stats.sent(),
            received: stats.received(),
            error: end.error,
        };
        (done, conn.requests())
    }

    /// The L4 path: connects to `upstream`, sends what detection read, then copies bytes both
    /// ways. A service's circuit breaker bounds its open connections.
    async fn forward_tcp(
        &self,
        mut client: TcpStream,
        upstream: Option<SocketAddr>,
        prefix: BytesMut,
        target: Option<&ServiceTarget>,
        source: Option<&SpiffeId>,
    ) -> Finished {
        let failed = Finished::failed;
        let Some(upstream) = upstream else {
            return failed(Outcome::ConnectError, "service has no endpoints".into());
        };
        let _permit = match target {
            Some(t) => {
                let key = (t.service.namespace.clone(), t.service.name.clone());
                let guard = self.http.guards.get(&key, &t.service.traffic_policy);
                match guard.limits().try_connection() {
                    Some(permit) => Some(permit),
                    None => {
                        return failed(
                            Outcome::CircuitOpen,
                            "too many connections to the service".into(),
                        );
                    }
                }
            }
            None => None,
        };
        let dial = self.dialer.dial(source, upstream, StreamProtocol::Tcp);
        let mut server = tokio::select! {
            res = dial => match res {
                Ok(s) => s,
                Err(DialError::Refused(e)) => {
                    // The destination's policy said no: the client sees a reset, as if the
                    // destination itself had refused the connection.
                    let _ = client.set_zero_linger();
                    return failed(Outcome::Denied, e);
                }
                Err(DialError::Timeout) => {
                    return failed(Outcome::ConnectTimeout, "connect timed out".into());
                }
                Err(e) => return failed(Outcome::ConnectError, e.to_string()),
            },
            _ = self.aborted() => return failed(Outcome::Shutdown, String::new()),
        };
        // Proxied protocols are often request/response: do not let Nagle hold small writes.
        let _ = client.set_nodelay(true);
        if !prefix.is_empty()
            && let Err(e) = server.write_all(&prefix).await
        {
            return failed(Outcome::IoError, e.to_string());
        }
        let copied = copy_bidirectional(
            &mut client,
            &mut server,
            self.config.idle_timeout,
            self.aborted(),
        )
        .await;
        let (outcome, error) = match copied.end {
            CopyEnd::Done => (Outcome::Ok, String::new()),
            CopyEnd::Idle => (Outcome::IdleTimeout, String::new()),
            CopyEnd::Io(e) => (Outcome::IoError, e.to_string()),
            CopyEnd::Aborted => (Outcome::Shutdown, String::new()),
        };
        Finished {
            outcome,
            via: server.via(),
            sent: copied.sent + prefix.len() as u64,
            received: copied.received,
            error,
        }
    }

    /// Resolves when the shutdown grace period is over.
    pub(crate) async fn aborted(&self) {
        let mut abort = self.abort.subscribe();
        if abort.wait_for(|aborted| *aborted).await.is_err() {
            // The sender lives as long as `self`; if it is gone, no abort can come.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
