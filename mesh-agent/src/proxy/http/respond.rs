//! Responses the proxy sends itself, and the body type of every response to the client.
//!
//! A generated response carries `x-weft-response: <mechanism>` so that a client (or a person
//! with curl) can tell a proxy decision from an answer of the application, and it is counted
//! under the same mechanism name.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::headers::X_WEFT_RESPONSE;
use super::slots::ConnectionSlot;
use crate::resilience::RequestPermit;
use crate::telemetry::PendingRequest;

/// Why the proxy answered instead of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// Routes are attached to the service, and none matched the request.
    NoRoute,
    /// The chosen backend has no endpoint to send to.
    NoHealthyUpstream,
    /// The request or a backend attempt ran out of time.
    Timeout,
    /// The service's circuit breaker refused the request.
    CircuitOpen,
    /// No connection to the endpoint could be made.
    UpstreamConnectFailure,
    /// The upstream connection failed after the request was sent.
    UpstreamReset,
    /// A route filter redirected the request.
    Redirect,
    /// A route filter answered the request directly.
    DirectResponse,
    /// The matched rule has no usable backend (no weight above zero, or an unknown service).
    NoBackend,
    /// The client's request body could not be read.
    BadRequest,
    /// The client stopped sending its request body.
    RequestTimeout,
    /// The destination's authorization policy refused the request.
    Denied,
}

impl Mechanism {
    pub const ALL: [Mechanism; 12] = [
        Mechanism::NoRoute,
        Mechanism::NoHealthyUpstream,
        Mechanism::Timeout,
        Mechanism::CircuitOpen,
        Mechanism::UpstreamConnectFailure,
        Mechanism::UpstreamReset,
        Mechanism::Redirect,
        Mechanism::DirectResponse,
        Mechanism::NoBackend,
        Mechanism::BadRequest,
        Mechanism::RequestTimeout,
        Mechanism::Denied,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Mechanism::NoRoute => "no-route",
            Mechanism::NoHealthyUpstream => "no-healthy-upstream",
            Mechanism::Timeout => "timeout",
            Mechanism::CircuitOpen => "circuit-open",
            Mechanism::UpstreamConnectFailure => "upstream-connect-failure",
            Mechanism::UpstreamReset => "upstream-reset",
            Mechanism::Redirect => "redirect",
            Mechanism::DirectResponse => "direct-response",
            Mechanism::NoBackend => "no-backend",
            Mechanism::BadRequest => "bad-request",
            Mechanism::RequestTimeout => "request-timeout",
            Mechanism::Denied => "denied",
        }
    }

    /// The status of the response the proxy sends for this mechanism (filters choose their
    /// own for redirects and direct responses).
    pub const fn status(self) -> StatusCode {
        match self {
            Mechanism::NoRoute => StatusCode::NOT_FOUND,
            Mechanism::NoHealthyUpstream
            | Mechanism::CircuitOpen
            | Mechanism::UpstreamConnectFailure => StatusCode::SERVICE_UNAVAILABLE,
            Mechanism::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Mechanism::UpstreamReset => StatusCode::BAD_GATEWAY,
            Mechanism::Redirect => StatusCode::FOUND,
            Mechanism::DirectResponse => StatusCode::OK,
            Mechanism::NoBackend => StatusCode::INTERNAL_SERVER_ERROR,
            Mechanism::BadRequest => StatusCode::BAD_REQUEST,
            Mechanism::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Mechanism::Denied => StatusCode::FORBIDDEN,
        }
    }

    const fn body(self) -> &'static str {
        match self {
            Mechanism::NoRoute => "no route matched the request\n",
            Mechanism::NoHealthyUpstream => "no healthy upstream\n",
            Mechanism::Timeout => "upstream request timeout\n",
            Mechanism::CircuitOpen => "circuit breaker open\n",
            Mechanism::UpstreamConnectFailure => "upstream connect failure\n",
            Mechanism::UpstreamReset => "upstream connection reset\n",
            Mechanism::Redirect | Mechanism::DirectResponse => "",
            Mechanism::NoBackend => "no backend for the matched route\n",
            Mechanism::BadRequest => "bad request\n",
            Mechanism::RequestTimeout => "request body timeout\n",
            Mechanism::Denied => "denied by authorization policy\n",
        }
    }
}

/// A response generated for `mechanism`, with its default status and a short text body.
pub fn generated(mechanism: Mechanism) -> Response<ResponseBody> {
    let body = mechanism.body();
    let mut response = Response::new(ResponseBody::local(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = mechanism.status();
    if !body.is_empty() {
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    mark(&mut response, mechanism);
    response
}

/// A response a route filter produced (a redirect, a direct response), marked.
pub fn from_filter(response: Response<()>) -> (Response<ResponseBody>, Mechanism) {
    let mechanism = if response.status().is_redirection() {
        Mechanism::Redirect
    } else {
        Mechanism::DirectResponse
    };
    let mut response = response.map(|()| ResponseBody::local(Bytes::new()));
    mark(&mut response, mechanism);
    (response, mechanism)
}

fn mark<B>(response: &mut Response<B>, mechanism: Mechanism) {
    response.headers_mut().insert(
        X_WEFT_RESPONSE.clone(),
        HeaderValue::from_static(mechanism.as_str()),
    );
}

/// The body of a response to the client: the upstream's, streamed, or one the proxy made. An
/// upstream body holds the request's circuit-breaker slot (and, over HTTP/1.1, its connection
/// slot) until it is done or dropped, so a long response counts as in flight for as long as it
/// streams. An observed body also carries its request's telemetry, finished when the body ends
/// (or is dropped before: the client went away).
#[derive(Debug)]
pub struct ResponseBody {
    kind: Kind,
    _permit: Option<RequestPermit>,
    _connection: Option<ConnectionSlot>,
    pending: Option<PendingRequest>,
}

#[derive(Debug)]
enum Kind {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

impl ResponseBody {
    pub fn local(bytes: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Local((!bytes.is_empty()).then_some(bytes)),
            _permit: None,
            _connection: None,
            pending: None,
        }
    }

    pub fn upstream(
        body: Incoming,
        permit: Option<RequestPermit>,
        connection: Option<ConnectionSlot>,
    ) -> Self {
        ResponseBody {
            kind: Kind::Upstream(body),
            _permit: permit,
            _connection: connection,
            pending: None,
        }
    }

    /// This body, finishing `pending` when it ends.
    pub fn observed(mut self, pending: PendingRequest) -> Self {
        self.pending = Some(pending);
        self
    }

    fn finish(&mut self, complete: bool) {
        if let Some(pending) = self.pending.take() {
            pending.finish(complete);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body that had nothing left (a 204, a HEAD answer, an exact length fully sent) is
        // complete even if nobody polled its end.
        let ended = match &self.kind {
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Local(bytes) => bytes.is_none(),
        };
        self.finish(ended);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Upstream(body) => poll_non_empty(Pin::new(body), cx),
            Kind::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        if this.pending.is_some() {
            this.note(&polled);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        if self.pending.is_some() {
            // Asked for one more poll, so the end is seen and the request recorded.
            return false;
        }
        match &self.kind {
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Local(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(body) => body.size_hint(),
            Kind::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// The next frame of an upstream body, skipping empty DATA frames. An HTTP/2 upstream may end
/// its body with an empty DATA frame carrying END_STREAM; relayed as is, it would leave as an
/// empty frame *without* END_STREAM (the end comes separately), and h2 peers close connections
/// that receive more than 100 of those (`ENHANCE_YOUR_CALM`).
fn poll_non_empty(
    mut body: Pin<&mut Incoming>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
    loop {
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(Bytes::is_empty) => {}
            polled => return polled,
        }
    }
}

impl ResponseBody {
    /// Feeds the observed request with what went by; the body's end finishes it.
    fn note(&mut self, polled: &Poll<Option<Result<Frame<Bytes>, hyper::Error>>>) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    pending.data(data.len());
                } else if let Some(trailers) = frame.trailers_ref() {
                    pending.trailers(trailers);
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => {
                if let Some(pending) = self.pending.as_mut() {
                    pending.upstream_failed();
                }
                self.finish(false);
            }
            Poll::Pending => {}
        }
    }
}
