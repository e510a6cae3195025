//! A tunnel stream as a byte stream: one HTTP/2 stream's DATA frames each way.
//!
//! Both ends (the pool's `connect` and the server's `Responder::accept`) hand out a
//! [`TunnelStream`]. Reading releases HTTP/2 flow-control window as the bytes are consumed, so
//! a slow reader slows its sender instead of buffering without bound. Writing sends what the
//! peer's window allows and waits for more. `poll_shutdown` sends END_STREAM (a half-close: the
//! other direction keeps flowing). Dropping a stream that has not finished both ways makes h2
//! reset it (`RST_STREAM(CANCEL)`), so the peer sees an abort, never a clean end.
//!
//! `read_bytes`/`poll_write_bytes` move `Bytes` without copying, for callers that have them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::pool_state::Lease;

/// Most send capacity asked for at once: bounds what h2 may assign to one stream.
const MAX_RESERVE: usize = 16 * 1024 * 1024;

/// A bidirectional byte stream carried by one `CONNECT` stream.
pub struct TunnelStream {
    reader: TunnelReader,
    writer: TunnelWriter,
}

/// The receiving half of a [`TunnelStream`].
pub struct TunnelReader {
    recv: RecvStream,
    /// Received but not yet read by the caller (its window is not released yet).
    pending: Bytes,
    _lease: Option<Arc<Lease>>,
}

/// The sending half of a [`TunnelStream`].
pub struct TunnelWriter {
    send: SendStream<Bytes>,
    shut: bool,
    _lease: Option<Arc<Lease>>,
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream")
            .field("shut", &self.writer.shut)
            .finish_non_exhaustive()
    }
}

impl TunnelStream {
    /// `lease` is the pool's count of streams on the connection (client side only).
    pub(crate) fn new(recv: RecvStream, send: SendStream<Bytes>, lease: Option<Lease>) -> Self {
        let lease = lease.map(Arc::new);
        TunnelStream {
            reader: TunnelReader {
                recv,
                pending: Bytes::new(),
                _lease: lease.clone(),
            },
            writer: TunnelWriter {
                send,
                shut: false,
                _lease: lease,
            },
        }
    }

    /// Both halves, borrowed (to copy both ways at once on one task).
    pub fn split(&mut self) -> (&mut TunnelReader, &mut TunnelWriter) {
        (&mut self.reader, &mut self.writer)
    }

    /// Both halves, owned (to move them to different tasks).
    pub fn into_split(self) -> (TunnelReader, TunnelWriter) {
        (self.reader, self.writer)
    }
}

impl TunnelReader {
    /// The next bytes received, as they arrived (no copy); `None` at the end of the stream.
    pub async fn read_bytes(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_read_bytes(cx)).await
    }

    /// Poll form of [`TunnelReader::read_bytes`].
    pub fn poll_read_bytes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if self.pending.is_empty() {
            match ready!(self.poll_fill(cx))? {
                true => {}
                false => return Poll::Ready(Ok(None)),
            }
        }
        let chunk = std::mem::take(&mut self.pending);
        self.release(chunk.len())?;
        Poll::Ready(Ok(Some(chunk)))
    }

    /// Waits for a non-empty DATA frame into `pending`; false at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(false)),
                Some(Ok(data)) if data.is_empty() => continue,
                Some(Ok(data)) => {
                    self.pending = data;
                    return Poll::Ready(Ok(true));
                }
                // RST_STREAM(NO_ERROR) means "done, stop sending" (RFC 9113 §8.1): an end.
                Some(Err(e)) if e.is_reset() && e.reason() == Some(Reason::NO_ERROR) => {
                    return Poll::Ready(Ok(false));
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }

    fn release(&mut self, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.recv
            .flow_control()
            .release_capacity(len)
            .map_err(io_error)
    }
}

impl AsyncRead for TunnelReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.pending.is_empty() && !ready!(this.poll_fill(cx))? {
            return Poll::Ready(Ok(()));
        }
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(this.release(n))
    }
}

impl TunnelWriter {
    /// Sends a prefix of `data` (as much as flow control allows now, without copying) and
    /// removes it from `data`; returns its length. Waits while the peer's window is closed.
    pub fn poll_write_bytes(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(self.poll_capacity(cx, data.len()))?;
        let chunk = data.split_to(n);
        if self.send.send_data(chunk, false).is_err() {
            return self.poll_write_failure(cx);
        }
        Poll::Ready(Ok(n))
    }

    /// Sends all of `data` (no copy).
    pub async fn write_bytes(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            std::future::poll_fn(|cx| self.poll_write_bytes(cx, &mut data)).await?;
        }
        Ok(())
    }

    /// Send capacity for up to `want` bytes (at least one).
    fn poll_capacity(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if self.shut {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "tunnel stream: write after shutdown",
            )));
        }
        loop {
            // Capacity already assigned is used first: h2 only signals increases.
            let capacity = self.send.capacity();
            if capacity > 0 {
                return Poll::Ready(Ok(capacity.min(want)));
            }
            self.send.reserve_capacity(want.min(MAX_RESERVE));
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return self.poll_write_failure(cx),
            }
        }
    }

    /// Why the stream no longer takes data: the peer's reset, or the connection's error.
    fn poll_write_failure<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        Poll::Ready(Err(match ready!(self.send.poll_reset(cx)) {
            Ok(reason) => io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("tunnel stream reset by the peer: {reason}"),
            ),
            Err(e) => io_error(e),
        }))
    }
}

impl AsyncWrite for TunnelWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(this.poll_capacity(cx, buf.len()))?;
        if this
            .send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .is_err()
        {
            return this.poll_write_failure(cx);
        }
        Poll::Ready(Ok(n))
    }

    /// h2's connection task writes queued frames out as soon as it can: nothing to flush here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shut {
            return Poll::Ready(Ok(()));
        }
        if this.send.send_data(Bytes::new(), true).is_ok() {
            this.shut = true;
            return Poll::Ready(Ok(()));
        }
        match ready!(this.send.poll_reset(cx)) {
            // The peer already said it needs nothing more: the direction is done anyway.
            Ok(Reason::NO_ERROR) => {
                this.shut = true;
                Poll::Ready(Ok(()))
            }
            Ok(reason) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("tunnel stream reset by the peer: {reason}"),
            ))),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}

/// An h2 error as an I/O error of the closest kind.
pub(crate) fn io_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("tunnel connection I/O error"));
    }
    let kind = if e.is_reset() {
        io::ErrorKind::ConnectionReset
    } else if e.is_go_away() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}
