//! Request bodies on their way upstream.
//!
//! Bodies stream frame by frame; nothing waits for a whole body, so a streaming client (gRPC
//! client or bidirectional streams) is never held up. A request that may be retried or
//! mirrored streams through a [`TeeBody`], which keeps a copy of the frames it passes (frames
//! are reference-counted: the copy costs no byte copies) up to a bound. When the attempt is
//! over, the tee hands back its copy and the unread rest of the client's stream, so the next
//! attempt replays the copy and then continues with the stream. Past the bound the copy is
//! dropped and the request can no longer be sent again.
//!
//! A fixed-size HTTP/1 upload (one with a `Content-Length`) whose client goes silent for the
//! body idle timeout fails with [`BodyError::Stalled`], so a stalled upload cannot hold a
//! connection, an upstream connection and a breaker slot. Streams without a length (chunked,
//! HTTP/2, gRPC) may pause as long as they like.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// Why a request body could not be sent.
#[derive(Debug)]
pub enum BodyError {
    /// The client's stream failed (it went away mid-body, or sent a malformed body).
    Client(hyper::Error),
    /// The client sent no body bytes for the body idle timeout.
    Stalled,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Client(e) => write!(f, "client body: {e}"),
            BodyError::Stalled => f.write_str("client body stalled"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Client(e) => Some(e),
            BodyError::Stalled => None,
        }
    }
}

impl BodyError {
    /// Whether `error` (or one of its causes) is a stalled client body.
    pub fn is_stall(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if matches!(e.downcast_ref::<BodyError>(), Some(BodyError::Stalled)) {
                return true;
            }
            cause = e.source();
        }
        false
    }
}

/// The client's request body, with the stall deadline of fixed-size uploads.
#[derive(Debug)]
pub struct ClientBody {
    inner: Incoming,
    stall: Option<Stall>,
    /// Data bytes read from the client so far (the request's size in the metrics).
    read: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Stall {
    limit: Duration,
    /// Armed while the body waits for the client; created on the first wait.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl ClientBody {
    /// `stall_after`: the idle limit, for bodies that have one (see the module docs).
    pub fn new(inner: Incoming, stall_after: Option<Duration>, read: Arc<AtomicU64>) -> Self {
        let stall = stall_after.map(|limit| Stall {
            limit,
            timer: None,
            waiting: false,
        });
        ClientBody { inner, stall, read }
    }

    pub fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    pub fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(stall) = &mut self.stall {
                    stall.waiting = false;
                }
                if let Some(Ok(f)) = &frame
                    && let Some(data) = f.data_ref()
                {
                    self.read.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(frame.map(|f| f.map_err(BodyError::Client)))
            }
            Poll::Pending => {
                let Some(stall) = &mut self.stall else {
                    return Poll::Pending;
                };
                // Only continuous waiting on the client counts, not time the upstream took
                // to ask for more.
                if !stall.waiting {
                    stall.waiting = true;
                    let deadline = Instant::now() + stall.limit;
                    match &mut stall.timer {
                        Some(timer) => timer.as_mut().reset(deadline),
                        None => stall.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let fired = stall
                    .timer
                    .as_mut()
                    .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                if fired {
                    Poll::Ready(Some(Err(BodyError::Stalled)))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

/// The body of a request sent upstream.
#[derive(Debug)]
pub enum UpstreamBody {
    Empty,
    /// The client's body, streamed as it arrives.
    Stream(ClientBody),
    /// The client's body, replayed and/or streamed while a copy is kept.
    Tee(TeeBody),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Stream(body) => body.poll_frame(cx),
            UpstreamBody::Tee(tee) => tee.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Stream(body) => body.is_end_stream(),
            UpstreamBody::Tee(tee) => tee.is_end(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Stream(body) => body.size_hint(),
            UpstreamBody::Tee(tee) => tee.size_hint(),
        }
    }
}

/// The frames of a body seen so far.
#[derive(Clone, Debug, Default)]
pub struct Record {
    chunks: Vec<Bytes>,
    len: usize,
    trailers: Option<HeaderMap>,
    /// The client's body has ended: the record is the whole body.
    ended: bool,
    /// Part of the body is gone for good: it outgrew the bound (the chunks were dropped) or
    /// the client's stream failed.
    lost: bool,
}

impl Record {
    /// The whole body is here and can be sent again.
    pub fn complete(&self) -> bool {
        self.ended && !self.lost
    }
}

/// What a finished attempt gives back: the copy, and the client's stream where it stopped.
#[derive(Debug)]
pub struct Returned {
    pub record: Record,
    pub rest: Option<ClientBody>,
}

impl Returned {
    /// Whether another attempt can send the body again from the start.
    pub fn replayable(&self) -> bool {
        !self.record.lost && (self.record.ended || self.rest.is_some())
    }
}

/// A body that replays a record, then streams the client's rest while recording it.
#[derive(Debug)]
pub struct TeeBody {
    record: Record,
    /// Chunks of `record` already sent by this attempt.
    next: usize,
    trailers_sent: bool,
    rest: Option<ClientBody>,
    limit: usize,
    back: Option<oneshot::Sender<Returned>>,
}

impl TeeBody {
    /// An attempt's body, from what the previous attempt gave back (the first attempt starts
    /// from an empty record and the client's stream). The receiver gets the copy back once
    /// hyper drops the body.
    pub fn resume(returned: Returned, limit: usize) -> (TeeBody, oneshot::Receiver<Returned>) {
        let (tx, rx) = oneshot::channel();
        let tee = TeeBody {
            record: returned.record,
            next: 0,
            trailers_sent: false,
            rest: returned.rest,
            limit,
            back: Some(tx),
        };
        (tee, rx)
    }

    /// A copy of a complete body (for a mirror), giving nothing back.
    pub fn copy(record: &Record) -> TeeBody {
        TeeBody {
            record: record.clone(),
            next: 0,
            trailers_sent: false,
            rest: None,
            limit: 0,
            back: None,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(chunk) = self.record.chunks.get(self.next) {
            self.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(self.replay_trailers());
        };
        let frame = match rest.poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                self.end();
                return Poll::Ready(self.replay_trailers());
            }
            Poll::Ready(Some(Err(e))) => {
                self.rest = None;
                self.record.lost = true;
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let ended = rest.is_end_stream();
        if let Some(data) = frame.data_ref() {
            self.keep(data);
        } else if let Some(trailers) = frame.trailers_ref() {
            self.record.trailers = Some(trailers.clone());
            self.trailers_sent = true;
        }
        if ended {
            self.end();
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn keep(&mut self, data: &Bytes) {
        if self.record.lost {
            return;
        }
        self.record.len = self.record.len.saturating_add(data.len());
        if self.record.len > self.limit {
            self.record.lost = true;
            self.record.chunks = Vec::new();
            self.next = 0;
        } else {
            self.record.chunks.push(data.clone());
            self.next = self.record.chunks.len();
        }
    }

    fn end(&mut self) {
        self.record.ended = true;
        self.rest = None;
    }

    fn replay_trailers(&mut self) -> Option<Result<Frame<Bytes>, BodyError>> {
        if self.trailers_sent {
            return None;
        }
        self.trailers_sent = true;
        self.record.trailers.clone().map(|t| Ok(Frame::trailers(t)))
    }

    fn is_end(&self) -> bool {
        let replayed = self.next >= self.record.chunks.len()
            && (self.trailers_sent || self.record.trailers.is_none());
        replayed && self.rest.as_ref().is_none_or(ClientBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let unsent: u64 = self.record.chunks[self.next.min(self.record.chunks.len())..]
            .iter()
            .map(|c| c.len() as u64)
            .sum();
        let Some(rest) = &self.rest else {
            return SizeHint::with_exact(unsent);
        };
        let rest = rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(unsent));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(unsent));
        }
        hint
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        if let Some(back) = self.back.take() {
            let _ = back.send(Returned {
                record: std::mem::take(&mut self.record),
                rest: self.rest.take(),
            });
        }
    }
}

/// A body that counts the data bytes it passes (the inbound side's request sizes).
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    read: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, read: Arc<AtomicU64>) -> Self {
        Counted { inner, read }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.read.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
