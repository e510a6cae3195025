//! HTTP streams to a pod: each request is authorized with its method, path and headers, gets
//! the caller's verified identity in `x-forwarded-client-cert` (whatever the caller sent under
//! that name is replaced, so the application can trust it), and goes to the pod over one
//! plaintext connection per stream (`pod.rs`, which replaces it when the pod closed it). The
//! calling proxy pools its streams, so connections to the pod are reused the same way.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::pod::{PodBody, PodConn};
use super::{Admitted, Inbound, StreamProtocol};
use crate::policy::{self, Layer};
use crate::proxy::copy::copy_bidirectional;
use crate::proxy::http::body::Counted;
use crate::proxy::http::headers::wants_upgrade;
use crate::proxy::http::observe::flag;
use crate::proxy::http::respond::{Mechanism, ResponseBody, generated};
use crate::telemetry::{ConnRecorder, PendingRequest, RequestKey, flags, grpc_status, is_grpc};

/// The header carrying the caller's identity to the application (Envoy's name and format).
pub const XFCC: &str = "x-forwarded-client-cert";

/// What the requests of one stream share.
struct Stream {
    inbound: Arc<Inbound>,
    admitted: Arc<Admitted>,
    xfcc: HeaderValue,
    pod: PodConn,
    recorder: Arc<ConnRecorder>,
}

impl Inbound {
    pub(super) async fn serve_http<S>(self: Arc<Self>, stream: S, admitted: Arc<Admitted>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let recorder = self.recorder(&admitted);
        let endpoint = Some(admitted.addr);
        let h2 = admitted.protocol == StreamProtocol::Http2;
        let pod = match PodConn::connect(&self, &admitted, h2).await {
            Ok(pod) => pod,
            Err(e) => {
                recorder.closed(flags::UF, endpoint, 0, 0);
                return self.log_stream(&admitted, &e, 0, 0);
            }
        };
        let xfcc = format!("By={};URI={}", admitted.dst_id, admitted.source);
        let shared = Arc::new(Stream {
            inbound: self.clone(),
            admitted: admitted.clone(),
            xfcc: HeaderValue::try_from(xfcc).unwrap_or(HeaderValue::from_static("")),
            pod,
            recorder: recorder.clone(),
        });
        let service = service_fn(move |request| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(shared.request(request).await) }
        });
        let io = TokioIo::new(stream);
        let http = self.config.http;
        let served = if h2 {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(http.max_header_bytes).unwrap_or(u32::MAX));
            let conn = builder.serve_connection(io, service);
            tokio::select! {
                r = conn => r.map_err(|e| e.to_string()),
                _ = self.aborted() => Err("shutdown".into()),
            }
        } else {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(http.header_read_timeout)
                .max_buf_size(http.max_header_bytes.max(8192))
                .keep_alive(true);
            let conn = builder.serve_connection(io, service).with_upgrades();
            tokio::select! {
                r = conn => r.map_err(|e| e.to_string()),
                _ = self.aborted() => Err("shutdown".into()),
            }
        };
        let flag = if served.is_ok() {
            flags::NONE
        } else {
            flags::DC
        };
        let outcome = served.err().unwrap_or_else(|| "ok".into());
        // Byte counts of HTTP streams are in the request series (`weft_request_bytes`...).
        recorder.closed(flag, endpoint, 0, 0);
        self.log_stream(&admitted, &outcome, 0, 0);
    }
}

impl Stream {
    async fn request(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let started = Instant::now();
        let details = self
            .recorder
            .details(request.method(), request.uri(), request.headers());
        let grpc = is_grpc(request.headers());
        let read = Arc::new(AtomicU64::new(0));
        let request = request.map(|body| Counted::new(body, read.clone()));
        let (response, mechanism) = self.forward(request).await;
        let key = RequestKey {
            endpoint: None,
            grpc,
            status: response.status().as_u16(),
            grpc_status: grpc_status(response.headers()),
            flags: mechanism.map_or(flags::NONE, flag),
        };
        let mut pending = PendingRequest::new(self.recorder.clone(), started, key);
        pending.request_bytes = read;
        pending.details = details;
        response.map(|body| body.observed(pending))
    }

    /// Authorizes and sends to the pod; the mechanism is set when this side answered itself.
    async fn forward(
        &self,
        mut request: Request<PodBody>,
    ) -> (Response<ResponseBody>, Option<Mechanism>) {
        if !self.authorize(&request) {
            return (generated(Mechanism::Denied), Some(Mechanism::Denied));
        }
        request.headers_mut().insert(XFCC, self.xfcc.clone());
        let upgrading = self.pod.is_h1() && wants_upgrade(request.headers());
        let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut request));
        let sent = self.pod.send(&self.inbound, &self.admitted, request).await;
        let mut response = match sent {
            Ok(response) => response,
            Err(mechanism) => return (generated(mechanism), Some(mechanism)),
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            match client_upgrade {
                Some(client) => relay_upgrade(self, client, hyper::upgrade::on(&mut response)),
                None => {
                    let reset = Mechanism::UpstreamReset;
                    return (generated(reset), Some(reset));
                }
            }
        }
        let response = response.map(|body| ResponseBody::upstream(body, None, None));
        (response, None)
    }

    fn authorize(&self, request: &Request<PodBody>) -> bool {
        let state = self.inbound.state.borrow().clone();
        let attrs = policy::Request {
            source: policy::Source {
                id: Some(&self.admitted.source),
            },
            port: self.admitted.addr.port(),
            http: Some(policy::HttpAttrs {
                method: request.method(),
                path: request.uri().path(),
                headers: request.headers(),
            }),
        };
        let decision = state.authorize(&self.admitted.dst, &attrs);
        self.inbound.metrics.authz().decision(&decision, Layer::L7);
        if !decision.allow {
            debug!(
                source = %self.admitted.source,
                dst_workload = %self.admitted.dst.key,
                method = %request.method(),
                path = request.uri().path(),
                policy = %decision.policy,
                "request denied"
            );
        }
        decision.allow
    }
}

/// Carries an upgraded connection (WebSocket...) as bytes once both sides let go of HTTP.
fn relay_upgrade(
    stream: &Stream,
    client: hyper::upgrade::OnUpgrade,
    pod: hyper::upgrade::OnUpgrade,
) {
    let inbound = stream.inbound.clone();
    tokio::spawn(async move {
        let (Ok(client), Ok(pod)) = tokio::join!(client, pod) else {
            return;
        };
        let (mut client, mut pod) = (TokioIo::new(client), TokioIo::new(pod));
        let idle = inbound.config.idle_timeout;
        copy_bidirectional(&mut client, &mut pod, idle, inbound.aborted()).await;
    });
}
