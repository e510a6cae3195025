//! The HBONE tunnel between node proxies: HTTP/2 `CONNECT` streams over mutual TLS on port 15008.
//!
//! One TCP+TLS connection between two node proxies carries many concurrent `CONNECT` streams,
//! each one proxied TCP connection to a destination pod (`:authority` = the pod's `ip:port`).
//! This module is the transport only: the TLS configurations come from `identity` (the client
//! one presents the source workload's certificate, the server one picks the certificate by SNI
//! and verifies the peer's), and what happens to an accepted stream is the caller's
//! ([`ConnectHandler`]: policy, then a connection to the pod).
//!
//! - Client side: [`TunnelPool`] keeps connections per (source identity, destination identity,
//!   peer node) and opens [`TunnelStream`]s on them (`pool.rs`, `dial.rs`).
//! - Server side: [`serve`] accepts connections, enforces TLS, ALPN `h2` and a client
//!   certificate, and hands each stream to the handler (`server.rs`, `session.rs`,
//!   `request.rs`); refusals are reported through [`ServerEvents`] (`events.rs`).
//! - Both: [`TunnelStream`] is a byte stream over one HTTP/2 stream (`stream.rs`), and idle
//!   connections are probed with HTTP/2 PINGs (`keepalive.rs`).

mod config;
mod dial;
mod events;
mod keepalive;
mod pool;
mod pool_state;
mod request;
mod server;
mod session;
mod stream;

#[cfg(test)]
mod tests;

pub use config::{PoolConfig, ServerConfig};
pub use events::{NoEvents, Rejection, ServerCounters, ServerEvents};
pub use pool::{PoolKey, TunnelPool};
pub use request::{ConnectHandler, ConnectRequest, PeerInfo, Responder};
pub use server::serve;
pub use stream::{TunnelReader, TunnelStream, TunnelWriter};

/// The port node proxies accept tunnels on.
pub const TUNNEL_PORT: u16 = 15008;

/// The only application protocol a tunnel speaks (TLS ALPN).
pub const ALPN_H2: &[u8] = b"h2";

/// Why a tunnel stream could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// No connection to the peer node (refused, unreachable, timed out, pool full).
    #[error("tunnel connect: {0}")]
    Connect(String),
    /// The TLS handshake failed or the peer closed the connection during it (for example
    /// because it rejected our certificate).
    #[error("tunnel TLS: {0}")]
    Tls(String),
    /// The peer answered the `CONNECT` with this status.
    #[error("tunnel refused with status {0}")]
    Refused(http::StatusCode),
    /// The stream or its connection failed after the request was sent.
    #[error("tunnel reset: {0}")]
    Reset(String),
}
