//! The HTTP connection from an inbound stream to its pod.
//!
//! The calling proxy pools its streams and may leave one idle for longer than the pod keeps an
//! idle keep-alive connection (or the pod may restart meanwhile): the pod then closes its
//! connection while the stream stays open. A request that finds the connection closed before it
//! went out is sent over a new connection; one that was (or may have been) sent is not sent
//! again, since it may not be idempotent.

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Mutex;
use tracing::debug;

use super::{Admitted, Inbound};
use crate::proxy::http::body::Counted;
use crate::proxy::http::respond::Mechanism;

/// The request body sent to the pod: the caller's, counted.
pub(super) type PodBody = Counted<Incoming>;

/// One stream's connection to its pod, made again when the pod closed it.
pub(super) enum PodConn {
    /// HTTP/1.1 is one request at a time; the server side is too, so the lock never waits.
    H1(Mutex<http1::SendRequest<PodBody>>),
    /// Requests share the connection; the lock is held only to take or replace it. The
    /// number counts replacements, so that requests failing together replace it once.
    H2(Mutex<(u64, http2::SendRequest<PodBody>)>),
}

impl PodConn {
    /// Connects to the admitted pod, in the stream's protocol.
    pub(super) async fn connect(
        inbound: &Inbound,
        admitted: &Admitted,
        h2: bool,
    ) -> Result<Self, String> {
        if h2 {
            Ok(PodConn::H2(Mutex::new((
                0,
                connect_h2(inbound, admitted).await?,
            ))))
        } else {
            Ok(PodConn::H1(Mutex::new(
                connect_h1(inbound, admitted).await?,
            )))
        }
    }

    /// Whether this is an HTTP/1.1 connection (whose requests may upgrade it).
    pub(super) fn is_h1(&self) -> bool {
        matches!(self, PodConn::H1(_))
    }

    /// Sends `request` to the pod. The error is how this side answers instead: the pod could
    /// not be reached again, or the connection failed after the request was sent.
    pub(super) async fn send(
        &self,
        inbound: &Inbound,
        admitted: &Admitted,
        request: Request<PodBody>,
    ) -> Result<Response<Incoming>, Mechanism> {
        let dst = admitted.addr;
        let reconnect_failed = |e: String| {
            debug!(error = %e, %dst, "reconnecting to the pod failed");
            Mechanism::UpstreamConnectFailure
        };
        match self {
            PodConn::H1(sender) => {
                let mut sender = sender.lock().await;
                let request = match send_h1(&mut sender, request).await {
                    Attempt::Unsent(request, why) => reconnecting(request, &why, admitted),
                    other => return other.answer(admitted),
                };
                *sender = connect_h1(inbound, admitted)
                    .await
                    .map_err(reconnect_failed)?;
                send_h1(&mut sender, request).await.answer(admitted)
            }
            PodConn::H2(shared) => {
                let (used, mut sender) = shared.lock().await.clone();
                let request = match attempt(sender.try_send_request(request).await) {
                    Attempt::Unsent(request, why) => reconnecting(request, &why, admitted),
                    other => return other.answer(admitted),
                };
                {
                    let mut current = shared.lock().await;
                    if current.0 == used {
                        let new = connect_h2(inbound, admitted)
                            .await
                            .map_err(reconnect_failed)?;
                        *current = (used + 1, new);
                    }
                    sender = current.1.clone();
                }
                attempt(sender.try_send_request(request).await).answer(admitted)
            }
        }
    }
}

/// How one try to send a request went.
enum Attempt {
    Done(Response<Incoming>),
    /// The connection was closed before the request went out; it is given back.
    Unsent(Request<PodBody>, hyper::Error),
    /// The connection failed after the request was (or may have been) sent.
    Failed(hyper::Error),
}

impl Attempt {
    fn answer(self, admitted: &Admitted) -> Result<Response<Incoming>, Mechanism> {
        match self {
            Attempt::Done(response) => Ok(response),
            Attempt::Unsent(_, e) | Attempt::Failed(e) => {
                debug!(error = %e, dst = %admitted.addr, "pod request failed");
                Err(Mechanism::UpstreamReset)
            }
        }
    }
}

fn attempt(result: Result<Response<Incoming>, TrySendError<Request<PodBody>>>) -> Attempt {
    match result {
        Ok(response) => Attempt::Done(response),
        Err(mut e) => match e.take_message() {
            Some(request) => Attempt::Unsent(request, e.into_error()),
            None => Attempt::Failed(e.into_error()),
        },
    }
}

/// One request over HTTP/1.1; a connection already closed gives the request back unsent.
async fn send_h1(sender: &mut http1::SendRequest<PodBody>, request: Request<PodBody>) -> Attempt {
    if let Err(e) = sender.ready().await {
        return Attempt::Unsent(request, e);
    }
    attempt(sender.try_send_request(request).await)
}

fn reconnecting(
    request: Request<PodBody>,
    why: &hyper::Error,
    admitted: &Admitted,
) -> Request<PodBody> {
    debug!(error = %why, dst = %admitted.addr, "pod connection closed, reconnecting");
    request
}

async fn connect_h1(
    inbound: &Inbound,
    admitted: &Admitted,
) -> Result<http1::SendRequest<PodBody>, String> {
    let pod = TokioIo::new(inbound.connect_pod(admitted).await?);
    let (sender, conn) = http1::handshake(pod)
        .await
        .map_err(|e| format!("pod_handshake: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "inbound pod connection ended");
        }
    });
    Ok(sender)
}

async fn connect_h2(
    inbound: &Inbound,
    admitted: &Admitted,
) -> Result<http2::SendRequest<PodBody>, String> {
    let pod = TokioIo::new(inbound.connect_pod(admitted).await?);
    let (sender, conn) = http2::handshake(TokioExecutor::new(), pod)
        .await
        .map_err(|e| format!("pod_handshake: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "inbound pod connection ended");
        }
    });
    Ok(sender)
}
