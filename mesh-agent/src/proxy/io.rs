//! The client side of a connection as the HTTP path sees it: the bytes detection already read,
//! then the socket; every byte counted and every transfer marking the connection active.
//!
//! Byte counts and activity live in [`ConnStats`], shared with the connection task, because the
//! socket itself moves into the HTTP server (and, after an `Upgrade`, into a tunnel).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// When bytes last moved, as milliseconds since `start`; shared by both directions.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `timeout`. It sleeps until the earliest possible
    /// deadline and re-checks, so traffic costs one atomic store per chunk, not a timer reset.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.start + last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// What moved over one client connection.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub activity: Activity,
    /// Client -> proxy.
    sent: AtomicU64,
    /// Proxy -> client.
    received: AtomicU64,
}

impl ConnStats {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// The client socket with the sniffed prefix replayed first.
pub struct ClientIo {
    prefix: BytesMut,
    stream: TcpStream,
    stats: std::sync::Arc<ConnStats>,
}

impl ClientIo {
    pub fn new(prefix: BytesMut, stream: TcpStream, stats: std::sync::Arc<ConnStats>) -> Self {
        // The prefix was read from the client: count it once, here.
        stats.sent.fetch_add(prefix.len() as u64, Ordering::Relaxed);
        ClientIo {
            prefix,
            stream,
            stats,
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.stats.sent.fetch_add(n as u64, Ordering::Relaxed);
            this.stats.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            this.stats.received.fetch_add(n as u64, Ordering::Relaxed);
            this.stats.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.stats.received.fetch_add(n as u64, Ordering::Relaxed);
            this.stats.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
