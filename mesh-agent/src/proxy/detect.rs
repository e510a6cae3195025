//! Protocol detection: does a captured connection to a service carry HTTP/1.x, HTTP/2 (h2c) or
//! something opaque?
//!
//! The service port's declaration wins (`appProtocol`, else an Istio-style port name such as
//! `http-web` or `grpc`). Otherwise the first bytes the client sends are sniffed: an HTTP/1.x
//! request line or the HTTP/2 connection preface. Protocols where the server speaks first must
//! not stall, so a client that sends nothing within the detection window is handed to the L4
//! path, and every byte read so far is forwarded there. Sniffing only reads; it never writes to
//! the client.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::state::ServicePort;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes read while sniffing at most. A request line still consistent with HTTP/1.x at this
/// length is taken as HTTP/1.x (the HTTP server then applies its own limits to it).
const MAX_SNIFF: usize = 8 * 1024;
const READ_CHUNK: usize = 2 * 1024;
/// Methods recognised by sniffing. Other methods work on ports declared `http`; undeclared,
/// they are proxied as opaque TCP.
const METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
];

/// What a connection carries, as far as the proxy is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppProtocol {
    Http1,
    Http2,
    Tcp,
}

impl AppProtocol {
    pub const ALL: [AppProtocol; 3] = [AppProtocol::Http1, AppProtocol::Http2, AppProtocol::Tcp];

    pub const fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Http1 => "http1",
            AppProtocol::Http2 => "http2",
            AppProtocol::Tcp => "tcp",
        }
    }
}

/// How the protocol was decided: the `reason` label of `weft_protocol_detections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DetectReason {
    /// The service port declares it.
    Declared,
    /// Recognised from the client's first bytes.
    Sniffed,
    /// The client sent nothing (or an incomplete request line) within the window.
    Timeout,
    /// The client closed its side before the bytes were conclusive.
    Closed,
    /// The destination is not a service: always opaque.
    Passthrough,
}

impl DetectReason {
    pub const ALL: [DetectReason; 5] = [
        DetectReason::Declared,
        DetectReason::Sniffed,
        DetectReason::Timeout,
        DetectReason::Closed,
        DetectReason::Passthrough,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DetectReason::Declared => "declared",
            DetectReason::Sniffed => "sniffed",
            DetectReason::Timeout => "timeout",
            DetectReason::Closed => "closed",
            DetectReason::Passthrough => "passthrough",
        }
    }
}

/// What a service port says about its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    /// HTTP; the client may speak HTTP/1.1 or h2c with prior knowledge.
    Http,
    /// HTTP/2 cleartext (also gRPC): the upstream speaks h2c.
    Http2,
    /// Opaque: never sniffed, forwarded at once (also TLS and server-first databases).
    Tcp,
    /// Nothing (or nothing known): sniff.
    Unknown,
}

impl Declared {
    /// Whether requests go upstream over h2c whatever the client speaks.
    pub const fn upstream_h2(self) -> bool {
        matches!(self, Declared::Http2)
    }
}

/// The declaration of `port`: `appProtocol` first, then the port name's prefix (`http`,
/// `http-web`, `grpc-api`...). Case-insensitive.
pub fn declared(port: &ServicePort) -> Declared {
    if let Some(app) = port.app_protocol.as_deref() {
        let known = classify(app);
        if known != Declared::Unknown {
            return known;
        }
    }
    match port.name.as_deref() {
        Some(name) => {
            let prefix = name.split_once('-').map_or(name, |(p, _)| p);
            classify(prefix)
        }
        None => Declared::Unknown,
    }
}

fn classify(proto: &str) -> Declared {
    const HTTP: [&str; 4] = ["http", "http1", "grpc-web", "kubernetes.io/ws"];
    const HTTP2: [&str; 4] = ["http2", "h2c", "grpc", "kubernetes.io/h2c"];
    const TCP: [&str; 9] = [
        "tcp",
        "tls",
        "https",
        "kubernetes.io/wss",
        "mongo",
        "mysql",
        "redis",
        "postgres",
        "udp",
    ];
    let is = |list: &[&str]| list.iter().any(|p| p.eq_ignore_ascii_case(proto));
    if is(&HTTP) {
        Declared::Http
    } else if is(&HTTP2) {
        Declared::Http2
    } else if is(&TCP) {
        Declared::Tcp
    } else {
        Declared::Unknown
    }
}

/// The verdict on the bytes seen so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    Http1,
    Http2,
    Opaque,
    /// Consistent with HTTP so far; more bytes are needed.
    NeedMore,
}

/// Classifies the first bytes of a connection. Pure, allocation-free and incremental: calling
/// it again with a longer buffer gives the same or a more precise answer.
pub fn sniff(buf: &[u8]) -> Sniff {
    if buf.is_empty() {
        return Sniff::NeedMore;
    }
    if buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        return Sniff::NeedMore;
    }
    if buf.starts_with(H2_PREFACE) {
        return Sniff::Http2;
    }
    sniff_request_line(buf)
}

/// `METHOD SP request-target SP HTTP/1.x CRLF` (a bare LF is accepted, as HTTP servers do).
fn sniff_request_line(buf: &[u8]) -> Sniff {
    let Some(sp) = buf.iter().position(|&b| b == b' ') else {
        // No space yet: the bytes must still be the start of a known method.
        return if METHODS.iter().any(|m| m.starts_with(buf)) {
            Sniff::NeedMore
        } else {
            Sniff::Opaque
        };
    };
    if !METHODS.contains(&&buf[..sp]) {
        return Sniff::Opaque;
    }
    let rest = &buf[sp + 1..];
    // The request target: visible ASCII up to the next space.
    let target_len = rest
        .iter()
        .position(|&b| !(0x21..=0x7e).contains(&b))
        .unwrap_or(rest.len());
    if target_len == rest.len() {
        return Sniff::NeedMore;
    }
    if target_len == 0 || rest[target_len] != b' ' {
        return Sniff::Opaque;
    }
    let version = &rest[target_len + 1..];
    const V: &[u8] = b"HTTP/1.";
    let checked = version.len().min(V.len());
    if version[..checked] != V[..checked] {
        return Sniff::Opaque;
    }
    match version.get(V.len()..) {
        None | Some([]) => Sniff::NeedMore,
        Some([minor, tail @ ..]) if minor.is_ascii_digit() => match tail {
            [] | [b'\r'] => Sniff::NeedMore,
            [b'\r', b'\n', ..] | [b'\n', ..] => Sniff::Http1,
            _ => Sniff::Opaque,
        },
        Some(_) => Sniff::Opaque,
    }
}

/// The outcome of detection, with every byte it consumed from the client.
#[derive(Debug)]
pub struct Detected {
    pub protocol: AppProtocol,
    pub reason: DetectReason,
    /// Bytes already read from the client: the next hop must see them first.
    pub prefix: BytesMut,
}

/// Time limits of detection.
#[derive(Clone, Copy, Debug)]
pub struct DetectLimits {
    /// How long an undeclared client may stay silent before it is treated as opaque.
    pub first_bytes: Duration,
    /// How long a client may take to complete what it started (an HTTP request line).
    pub complete: Duration,
}

/// Detects the protocol of `client`, a connection to a service port declared `declared`.
/// I/O errors while sniffing end in the opaque verdict: the L4 path reports them.
pub async fn detect(client: &mut TcpStream, declared: Declared, limits: DetectLimits) -> Detected {
    let start = Instant::now();
    let mut prefix = BytesMut::new();
    let done = |protocol, reason, prefix| Detected {
        protocol,
        reason,
        prefix,
    };
    if declared == Declared::Tcp {
        return done(AppProtocol::Tcp, DetectReason::Declared, prefix);
    }
    loop {
        let verdict = sniff(&prefix);
        match (declared, verdict) {
            (_, Sniff::Http2) => return done(AppProtocol::Http2, reason(declared), prefix),
            (_, Sniff::Http1) => return done(AppProtocol::Http1, reason(declared), prefix),
            // A declared-HTTP port is HTTP/1.x as soon as the bytes cannot be the h2 preface;
            // the HTTP server judges the rest.
            (Declared::Http | Declared::Http2, Sniff::Opaque) => {
                return done(AppProtocol::Http1, DetectReason::Declared, prefix);
            }
            (_, Sniff::Opaque) => return done(AppProtocol::Tcp, DetectReason::Sniffed, prefix),
            // Past the preface's length only a request line can still be undecided.
            (_, Sniff::NeedMore) if prefix.len() >= MAX_SNIFF => {
                return done(AppProtocol::Http1, reason(declared), prefix);
            }
            (_, Sniff::NeedMore) => {}
        }
        // A declared port waits as long as an HTTP client may take; an undeclared one only
        // for the first bytes, then for the rest of a request line it has seen begin.
        let limit = if declared != Declared::Unknown || !prefix.is_empty() {
            limits.complete
        } else {
            limits.first_bytes
        };
        prefix.reserve(READ_CHUNK);
        let read = tokio::time::timeout_at(start + limit, client.read_buf(&mut prefix)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) | Ok(Err(_)) => {
                let protocol = match declared {
                    Declared::Unknown => AppProtocol::Tcp,
                    _ => AppProtocol::Http1,
                };
                return done(protocol, DetectReason::Closed, prefix);
            }
            Err(_) => {
                let protocol = match declared {
                    Declared::Unknown => AppProtocol::Tcp,
                    _ => AppProtocol::Http1,
                };
                return done(protocol, DetectReason::Timeout, prefix);
            }
        }
    }
}

fn reason(declared: Declared) -> DetectReason {
    match declared {
        Declared::Unknown => DetectReason::Sniffed,
        _ => DetectReason::Declared,
    }
}

#[cfg(test)]
#[path = "detect_tests.rs"]
mod tests;
