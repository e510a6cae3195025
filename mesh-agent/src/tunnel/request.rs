//! What the tunnel server hands its owner for each stream: the request, who sent it, and a
//! [`Responder`] to accept or refuse it.
//!
//! The server (`session.rs`) answers malformed requests itself (400); everything else — policy,
//! connecting to the pod, copying bytes — is the [`ConnectHandler`]'s. A handler that drops its
//! responder without answering sends 500, so a client never waits on a forgotten stream.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Method, Response, StatusCode};
use rustls::pki_types::CertificateDer;

use super::{TunnelError, TunnelStream};

/// The other end of a tunnel connection.
#[derive(Debug)]
pub struct PeerInfo {
    /// Its TCP address.
    pub addr: SocketAddr,
    /// The certificate chain it presented (verified by the TLS configuration), leaf first.
    pub certs: Vec<CertificateDer<'static>>,
}

/// One `CONNECT` stream's request.
#[derive(Debug)]
pub struct ConnectRequest {
    pub peer: Arc<PeerInfo>,
    /// Where the client wants to go (`:authority`): a pod's `ip:port`.
    pub authority: SocketAddr,
    pub headers: http::HeaderMap,
}

/// Decides what to do with each accepted stream.
pub trait ConnectHandler: Send + Sync + 'static {
    /// Answers `req` with `respond.accept()` (then uses the stream) or `respond.refuse(status)`.
    /// The future runs on its own task.
    fn handle(&self, req: ConnectRequest, respond: Responder) -> BoxFuture<'static, ()>;
}

impl<F> ConnectHandler for F
where
    F: Fn(ConnectRequest, Responder) -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    fn handle(&self, req: ConnectRequest, respond: Responder) -> BoxFuture<'static, ()> {
        self(req, respond)
    }
}

/// The answer to one `CONNECT`, given once.
pub struct Responder {
    respond: Option<SendResponse<Bytes>>,
    recv: Option<RecvStream>,
}

impl Responder {
    pub(crate) fn new(respond: SendResponse<Bytes>, recv: RecvStream) -> Self {
        Responder {
            respond: Some(respond),
            recv: Some(recv),
        }
    }

    /// Answers 200 and returns the stream's bytes both ways.
    pub fn accept(mut self) -> Result<TunnelStream, TunnelError> {
        let (Some(mut respond), Some(recv)) = (self.respond.take(), self.recv.take()) else {
            return Err(TunnelError::Reset("the stream was already answered".into()));
        };
        let send = respond
            .send_response(status_only(StatusCode::OK), false)
            .map_err(|e| TunnelError::Reset(e.to_string()))?;
        Ok(TunnelStream::new(recv, send, None))
    }

    /// Answers `status` and ends the stream. A 1xx or 2xx status (which would not refuse) is
    /// sent as 500.
    pub fn refuse(mut self, status: StatusCode) {
        self.answer(status);
    }

    fn answer(&mut self, status: StatusCode) {
        let status = if status.is_informational() || status.is_success() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            status
        };
        if let Some(mut respond) = self.respond.take() {
            // The client may be gone already; nothing to do then.
            let _ = respond.send_response(status_only(status), true);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.answer(StatusCode::INTERNAL_SERVER_ERROR);
    }
}

fn status_only(status: StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
}

/// The destination of a well-formed tunnel request, or why it is not one.
pub(crate) fn destination(head: &http::request::Parts) -> Result<SocketAddr, String> {
    if head.method != Method::CONNECT {
        return Err(format!("method {} is not CONNECT", head.method));
    }
    let authority = head
        .uri
        .authority()
        .ok_or_else(|| "no :authority".to_owned())?;
    match authority.as_str().parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        _ => Err(format!(":authority {authority:?} is not an ip:port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: Method, uri: &str) -> http::request::Parts {
        let mut request = http::Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri.parse().unwrap();
        request.into_parts().0
    }

    #[test]
    fn only_connect_to_an_ip_and_port_is_a_destination() {
        let ok = |uri| destination(&head(Method::CONNECT, uri));
        assert_eq!(
            ok("10.244.1.5:8080"),
            Ok("10.244.1.5:8080".parse().unwrap())
        );
        assert_eq!(ok("[fd00::5]:80"), Ok("[fd00::5]:80".parse().unwrap()));
        for bad in ["pod.example:80", "10.244.1.5", "10.244.1.5:0", "[fd00::5]"] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        assert!(destination(&head(Method::GET, "http://10.244.1.5:80/")).is_err());
    }
}
