//! One accepted tunnel connection: TLS and HTTP/2 handshakes, then its `CONNECT` streams.
//!
//! A connection that is not TLS, does not verify, does not speak `h2` or shows no client
//! certificate is closed, logged at debug and reported to `ServerEvents` with the reason; the
//! listener (`server.rs`) and the other connections never notice. Well-formed requests go to the
//! owner's handler on their own tasks (`request.rs`); malformed ones get 400 here.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Request, Response, StatusCode};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::config::ServerConfig;
use super::events::Rejection;
use super::request::{self, ConnectHandler, ConnectRequest, PeerInfo, Responder};
use super::{ALPN_H2, keepalive};

type H2Connection = h2::server::Connection<TlsStream<TcpStream>, Bytes>;

/// One connection's task and what it holds.
pub(crate) struct Session {
    pub(crate) peer: SocketAddr,
    pub(crate) handler: Arc<dyn ConnectHandler>,
    pub(crate) cfg: Arc<ServerConfig>,
    pub(crate) stop: watch::Receiver<bool>,
    /// One of the server's `max_connections`, held until the connection ends.
    pub(crate) _permit: OwnedSemaphorePermit,
}

impl Session {
    pub(crate) async fn run(self, tcp: TcpStream, acceptor: TlsAcceptor) {
        let peer = self.peer;
        let _ = tcp.set_nodelay(true);
        let handshake = self.handshake(tcp, acceptor);
        let (conn, info) = match tokio::time::timeout(self.cfg.handshake_timeout, handshake).await {
            Ok(Ok(done)) => done,
            Ok(Err((why, detail))) => return self.reject(why, &detail),
            Err(_) => {
                let detail = format!("no handshake within {:?}", self.cfg.handshake_timeout);
                return self.reject(Rejection::HandshakeTimeout, &detail);
            }
        };
        self.cfg.events.opened(peer);
        tracing::debug!(%peer, "tunnel connection accepted");
        let why = self.serve(conn, info).await;
        tracing::debug!(%peer, reason = %why, "tunnel connection closed");
        self.cfg.events.closed(peer);
    }

    fn reject(&self, why: Rejection, detail: &str) {
        tracing::debug!(peer = %self.peer, reason = why.as_str(), %detail, "tunnel connection refused");
        self.cfg.events.rejected(self.peer, why, detail);
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        acceptor: TlsAcceptor,
    ) -> Result<(H2Connection, Arc<PeerInfo>), (Rejection, String)> {
        let tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| (tls_rejection(&e), e.to_string()))?;
        let session = tls.get_ref().1;
        if session.alpn_protocol() != Some(ALPN_H2) {
            return Err((Rejection::NotH2, "ALPN h2 not negotiated".into()));
        }
        // The TLS configuration should already demand a certificate; this holds even if not.
        let certs = session.peer_certificates().unwrap_or_default().to_vec();
        if certs.is_empty() {
            return Err((Rejection::PeerCertificate, "no client certificate".into()));
        }
        let info = Arc::new(PeerInfo {
            addr: self.peer,
            certs,
        });
        let conn = self
            .cfg
            .h2_builder()
            .handshake(tls)
            .await
            .map_err(|e| (Rejection::Http2, e.to_string()))?;
        Ok((conn, info))
    }

    /// Hands streams to the handler until the connection ends; returns why it ended.
    async fn serve(&self, mut conn: H2Connection, peer: Arc<PeerInfo>) -> String {
        let mut stop = self.stop.clone();
        let probe = keepalive::probe(
            conn.ping_pong(),
            self.cfg.keepalive_interval,
            self.cfg.keepalive_timeout,
        );
        let mut probe = std::pin::pin!(probe);
        let mut draining = false;
        loop {
            tokio::select! {
                next = conn.accept() => match next {
                    Some(Ok((request, respond))) => self.on_request(request, respond, &peer),
                    Some(Err(e)) => return e.to_string(),
                    None => return "closed".into(),
                },
                // Sender dropped counts as stop: nobody could stop the server any more.
                _ = stop.wait_for(|stop| *stop), if !draining => {
                    draining = true;
                    conn.graceful_shutdown();
                }
                why = &mut probe => return why,
            }
        }
    }

    fn on_request(
        &self,
        request: Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
        peer: &Arc<PeerInfo>,
    ) {
        let (head, body) = request.into_parts();
        match request::destination(&head) {
            Ok(authority) => {
                let req = ConnectRequest {
                    peer: peer.clone(),
                    authority,
                    headers: head.headers,
                };
                tokio::spawn(self.handler.handle(req, Responder::new(respond, body)));
            }
            Err(why) => {
                tracing::debug!(peer = %self.peer, reason = %why, "tunnel request refused: 400");
                let mut response = Response::new(());
                *response.status_mut() = StatusCode::BAD_REQUEST;
                let _ = respond.send_response(response, true);
            }
        }
    }
}

/// Which refusal a failed TLS accept is (tokio-rustls carries the rustls error inside).
fn tls_rejection(e: &io::Error) -> Rejection {
    match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            Rejection::PeerCertificate
        }
        Some(rustls::Error::NoApplicationProtocol) => Rejection::NotH2,
        _ => Rejection::Tls,
    }
}
