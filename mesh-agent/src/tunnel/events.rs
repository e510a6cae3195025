//! What the tunnel server tells its owner: connections refused (and why) and connections served.
//!
//! The server only reports; turning reports into metrics or logs is the owner's. A refused
//! connection never affects the others, so these reports are the only trace it leaves besides a
//! debug log line. [`ServerCounters`] is a ready-made owner that counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the server closed a connection before serving any stream on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// `max_connections` were already being served.
    Overloaded,
    /// The TLS handshake (or the HTTP/2 preface) took longer than `handshake_timeout`.
    HandshakeTimeout,
    /// Not TLS, or TLS that failed for a reason other than the peer's certificate.
    Tls,
    /// No client certificate, or one that does not verify (unknown CA, expired, wrong usage).
    PeerCertificate,
    /// The peer did not negotiate ALPN `h2`.
    NotH2,
    /// TLS was fine but no HTTP/2 connection followed (bad preface or settings).
    Http2,
}

impl Rejection {
    pub const ALL: [Rejection; 6] = [
        Rejection::Overloaded,
        Rejection::HandshakeTimeout,
        Rejection::Tls,
        Rejection::PeerCertificate,
        Rejection::NotH2,
        Rejection::Http2,
    ];

    /// A short label (for metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Overloaded => "overloaded",
            Rejection::HandshakeTimeout => "handshake_timeout",
            Rejection::Tls => "tls",
            Rejection::PeerCertificate => "peer_certificate",
            Rejection::NotH2 => "not_h2",
            Rejection::Http2 => "http2",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The owner's hooks; every method defaults to doing nothing. Called on the connection's task,
/// so implementations should be quick (count, do not block).
pub trait ServerEvents: Send + Sync + 'static {
    /// The connection from `peer` was closed before serving: `why`; `detail` says more.
    fn rejected(&self, peer: SocketAddr, why: Rejection, detail: &str) {
        let _ = (peer, why, detail);
    }
    /// A connection from `peer` passed TLS and HTTP/2 and is being served.
    fn opened(&self, peer: SocketAddr) {
        let _ = peer;
    }
    /// A served connection from `peer` ended.
    fn closed(&self, peer: SocketAddr) {
        let _ = peer;
    }
}

/// Reports nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl ServerEvents for NoEvents {}

/// Counts reports: refusals by reason, and connections being served.
#[derive(Debug, Default)]
pub struct ServerCounters {
    rejected: [AtomicU64; Rejection::ALL.len()],
    opened: AtomicU64,
    closed: AtomicU64,
}

impl ServerCounters {
    /// Connections refused for `why` so far.
    pub fn rejected(&self, why: Rejection) -> u64 {
        self.rejected[why.index()].load(Ordering::Relaxed)
    }

    /// Connections refused for any reason so far.
    pub fn rejected_total(&self) -> u64 {
        Rejection::ALL.iter().map(|why| self.rejected(*why)).sum()
    }

    /// Connections served so far (ended or not).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Connections being served now.
    pub fn open(&self) -> u64 {
        // Read `closed` first: a connection closing between the two reads then shows as open,
        // never as a negative count.
        let closed = self.closed.load(Ordering::Acquire);
        self.opened.load(Ordering::Acquire).saturating_sub(closed)
    }
}

impl ServerEvents for ServerCounters {
    fn rejected(&self, _peer: SocketAddr, why: Rejection, _detail: &str) {
        self.rejected[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn opened(&self, _peer: SocketAddr) {
        self.opened.fetch_add(1, Ordering::Release);
    }

    fn closed(&self, _peer: SocketAddr) {
        self.closed.fetch_add(1, Ordering::Release);
    }
}
