//! One HTTP request, from the client's headers to the response head: header rules, routing
//! (a Gateway API rule of the addressed service, or the service itself), request filters, the
//! choice of a backend service, then the attempts (`retry.rs`) and the response filters.
//!
//! [`HttpConn`] is what the requests of one client connection share: who the client is, which
//! service port it addressed, the connection's metric series.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri, Version, request};
use hyper::body::Incoming;
use tracing::debug;

use super::headers::{append_forwarded_for, ensure_request_id, strip_hop_by_hop, wants_upgrade};
use super::mirror::Mirrors;
use super::respond::{Mechanism, ResponseBody, generated};
use super::retry::{Exchange, Exchanged};
use super::route::route;
use super::tunnel::PendingTunnel;
use super::upstream::Via;
use crate::proxy::detect::declared;
use crate::proxy::outbound::Outbound;
use crate::routing;
use crate::state::MeshState;
use crate::telemetry::trace::ProxySpans;
use crate::telemetry::{ConnRecorder, UpstreamNotes};

/// What the requests of one client connection share.
pub struct HttpConn {
    pub(super) outbound: Arc<Outbound>,
    /// The service VIP and port the client dialled.
    pub(super) original_dst: SocketAddr,
    /// `(namespace, name)` of the addressed service.
    pub(super) service: (String, String),
    /// `namespace/name`, for labels and logs.
    pub(super) service_name: String,
    /// The service port number (not the target port).
    pub(super) port: u16,
    /// The client speaks HTTP/2: requests go upstream over h2c too.
    pub(super) client_h2: bool,
    /// The client's address, as appended to `x-forwarded-for`.
    pub(super) client_addr: HeaderValue,
    /// Consistent-hash key of the calling workload.
    pub(super) source_hash: Option<u64>,
    /// The calling workload's identity, when upstream connections go through the mesh.
    pub(super) via: Via,
    recorder: Arc<ConnRecorder>,
    /// `namespace/name` of the calling workload; set only when requests are traced.
    source_workload: Option<String>,
    /// An upgrade granted by the upstream, to be carried on once hyper lets go of the socket.
    tunnel: Mutex<Option<PendingTunnel>>,
    requests: AtomicU64,
}

/// Who is calling and what they addressed; the per-connection inputs of [`HttpConn::new`].
pub struct ConnInfo {
    pub original_dst: SocketAddr,
    pub service: (String, String),
    pub port: u16,
    pub client_h2: bool,
    pub peer: SocketAddr,
    pub source_hash: Option<u64>,
    pub via: Via,
    pub recorder: Arc<ConnRecorder>,
    /// `namespace/name` of the calling workload, for spans (`None` when nothing is traced).
    pub source_workload: Option<String>,
}

impl HttpConn {
    pub fn new(outbound: Arc<Outbound>, info: ConnInfo) -> Self {
        HttpConn {
            outbound,
            original_dst: info.original_dst,
            service_name: format!("{}/{}", info.service.0, info.service.1),
            service: info.service,
            port: info.port,
            client_h2: info.client_h2,
            client_addr: super::headers::client_address_value(info.peer.ip()),
            source_hash: info.source_hash,
            via: info.via,
            recorder: info.recorder,
            source_workload: info.source_workload,
            tunnel: Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    pub(super) fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(super) fn take_tunnel(&self) -> Option<PendingTunnel> {
        self.tunnel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Serves one request; never fails (a failure is a generated response).
    pub(super) async fn handle(
        self: Arc<Self>,
        mut request: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let upgrading = !self.client_h2 && wants_upgrade(request.headers());
        let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers, upgrading);
        append_forwarded_for(&mut parts.headers, &self.client_addr);
        let request_id = ensure_request_id(&mut parts.headers);
        let mut trace = self.begin_trace(&mut parts);
        let observed = super::observe::Observed::start(&self.recorder, &parts);

        let notes = &observed.notes;
        let (mut response, mut mechanism) = self
            .forward(parts, body, upgrading, started, notes, trace.as_mut())
            .await;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            match client_upgrade {
                Some(client) => self.grant_upgrade(client, &mut response),
                None => {
                    // An upstream may not switch protocols unasked: refuse to relay it.
                    response = generated(Mechanism::UpstreamReset);
                    mechanism = Some(Mechanism::UpstreamReset);
                }
            }
        }
        if let Some(mechanism) = mechanism {
            self.outbound
                .metrics
                .http()
                .generated(&self.service_name, mechanism.as_str());
        }
        let elapsed = started.elapsed();
        if let Some(mut spans) = trace {
            spans.facts.status = response.status().as_u16();
            spans.facts.proxy_response = mechanism.map(Mechanism::as_str);
            if let Some(tracer) = self.outbound.tracer() {
                spans.finish(tracer);
            }
        }
        let response = observed.finish(&self.recorder, started, response, mechanism);
        debug!(
            service = %self.service_name,
            request_id = ?request_id,
            status = response.status().as_u16(),
            proxy_response = mechanism.map_or("", Mechanism::as_str),
            duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "outbound request"
        );
        response
    }

    /// Routes and forwards; the mechanism is set when the proxy answered itself.
    async fn forward(
        self: &Arc<Self>,
        mut parts: request::Parts,
        body: Incoming,
        upgrading: bool,
        started: Instant,
        notes: &UpstreamNotes,
        trace: Option<&mut ProxySpans>,
    ) -> (Response<ResponseBody>, Option<Mechanism>) {
        let state = self.outbound.state.borrow().clone();
        let routed = match route(self, &state, &mut parts) {
            Ok(routed) => routed,
            Err(refusal) => {
                let (response, mechanism) = refusal.answer();
                return (response, Some(mechanism));
            }
        };
        let h2 = !upgrading && (self.client_h2 || declared(&routed.target.port).upstream_h2());
        set_authority(&mut parts, h2, self.original_dst);
        let mirrors = match routed.rule {
            Some(_) if !upgrading => {
                Mirrors::sample(routed.filters().flat_map(routing::mirrors), &parts)
            }
            _ => None,
        };
        let exchange = Exchange {
            conn: self,
            service: routed.service,
            target: routed.target,
            rule_retry: routed.rule.and_then(|r| r.retry.as_ref()),
            timeouts: routed.rule.map(|r| r.timeouts).unwrap_or_default(),
            started,
            h2,
            upgrading,
            body_stall: self.body_stall(&parts.headers),
            notes,
        };
        super::observe::note_route(notes, routed.rule);
        let call_started = Instant::now();
        let Exchanged {
            response,
            mechanism,
            body,
            upstream,
        } = exchange.run(parts, body, mirrors.is_some()).await;
        if let Some(spans) = trace {
            spans.upstream_call(call_started, Instant::now());
            describe_route(spans, &routed, &state, upstream);
        }
        if let Some(mirrors) = mirrors {
            mirrors.spawn(self, state.clone(), body);
        }
        if mechanism.is_some() {
            return (response, mechanism);
        }
        let (mut head, body) = response.into_parts();
        if head.status != StatusCode::SWITCHING_PROTOCOLS {
            strip_hop_by_hop(&mut head.headers, false);
        }
        for filters in routed.filters() {
            routing::apply_response_filters(filters, &mut head);
        }
        (Response::from_parts(head, body), None)
    }

    /// Joins the request's trace when the proxy traces: the upstream's `traceparent` is
    /// rewritten here, before routing copies headers anywhere (retries, mirrors).
    fn begin_trace(&self, parts: &mut request::Parts) -> Option<ProxySpans> {
        let mut spans = self.outbound.tracer()?.begin(&mut parts.headers)?;
        spans.facts.method = parts.method.to_string();
        spans.facts.service = self.service_name.clone();
        spans.facts.source_workload = self.source_workload.clone();
        spans.facts.source_principal = self.via.as_ref().map(|id| id.to_string());
        Some(spans)
    }

    /// The idle limit of a request body: fixed-size HTTP/1 uploads only.
    fn body_stall(&self, headers: &http::HeaderMap) -> Option<std::time::Duration> {
        let sized = headers.contains_key(http::header::CONTENT_LENGTH);
        (sized && !self.client_h2)
            .then_some(self.outbound.http.config.body_idle_timeout)
            .flatten()
    }

    /// Keeps both sides of an upgrade for the connection task and fixes up the 101 head.
    fn grant_upgrade(
        &self,
        client: hyper::upgrade::OnUpgrade,
        response: &mut Response<ResponseBody>,
    ) {
        let upstream = hyper::upgrade::on(&mut *response);
        strip_hop_by_hop(response.headers_mut(), true);
        *self.tunnel.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(PendingTunnel { client, upstream });
    }
}

/// Fills in what routing decided: the route and rule, the endpoint and its workload.
fn describe_route(
    spans: &mut ProxySpans,
    routed: &super::route::Routed<'_>,
    state: &MeshState,
    upstream: Option<SocketAddr>,
) {
    spans.facts.route = routed.rule.map(|rule| match &rule.name {
        Some(name) => format!("{} {}", rule.route, name),
        None => format!("{} rule {}", rule.route, rule.index),
    });
    spans.facts.upstream = upstream;
    spans.facts.destination_workload = upstream
        .and_then(|addr| state.workload_by_ip(addr.ip()))
        .map(|w| w.key.to_string());
}

/// Makes the request's authority explicit for the next hop: HTTP/1.1 upstreams get a `Host`
/// header, h2c upstreams an absolute URI (sent as `:authority`) and no `Host`. The authority is
/// the one the client used, else the address it dialled.
pub(super) fn set_authority(parts: &mut request::Parts, h2: bool, original_dst: SocketAddr) {
    if h2 {
        if parts.uri.authority().is_none() {
            let authority = parts
                .headers
                .get(HOST)
                .and_then(|host| Authority::try_from(host.as_bytes()).ok())
                .or_else(|| Authority::try_from(original_dst.to_string()).ok());
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = authority;
            if uri.path_and_query.is_none() {
                uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
            }
            parts.uri = Uri::from_parts(uri).unwrap_or_default();
        }
        parts.headers.remove(HOST);
        parts.version = Version::HTTP_2;
        return;
    }
    if !parts.headers.contains_key(HOST) {
        let host = match parts.uri.authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            None => HeaderValue::from_str(&original_dst.to_string()).ok(),
        };
        if let Some(host) = host {
            parts.headers.insert(HOST, host);
        }
    }
    parts.version = Version::HTTP_11;
}
