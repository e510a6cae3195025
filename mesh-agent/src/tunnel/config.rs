//! Settings of both ends of the tunnel, their defaults, and the HTTP/2 builders made from them.
//!
//! Windows are large because a tunnel is the cross-node hot path: with the HTTP/2 default of
//! 64 KiB a single stream could not fill even a modest link (throughput ≤ window / RTT). The
//! connection window is a few stream windows so one busy stream cannot starve the others.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::events::{NoEvents, ServerEvents};

const MIB: u32 = 1024 * 1024;

/// The client side: how [`super::TunnelPool`] makes and shares connections.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Bound on TCP connect + TLS handshake + the first HTTP/2 round trip of a new connection,
    /// and on waiting for a free stream when every connection of a key is full.
    pub connect_timeout: Duration,
    /// Streams carried at once by one connection before another one is opened.
    pub max_streams_per_conn: usize,
    /// Connections kept at once per key; beyond this, `connect` waits for a free stream.
    pub max_conns_per_key: usize,
    /// A connection without streams for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 receive window of each stream (bytes).
    pub stream_window: u32,
    /// HTTP/2 receive window of each connection (bytes).
    pub conn_window: u32,
    /// An HTTP/2 PING is sent this often; `None` disables the probe.
    pub keepalive_interval: Option<Duration>,
    /// A connection whose PING is not answered within this is closed.
    pub keepalive_timeout: Duration,
    /// Largest response header block accepted (bytes).
    pub max_header_list_size: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            connect_timeout: Duration::from_secs(5),
            max_streams_per_conn: 100,
            max_conns_per_key: 8,
            idle_timeout: Duration::from_secs(90),
            stream_window: MIB,
            conn_window: 4 * MIB,
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_timeout: Duration::from_secs(20),
            max_header_list_size: 16 * 1024,
        }
    }
}

impl PoolConfig {
    /// The HTTP/2 client settings of a new connection.
    pub(crate) fn h2_builder(&self) -> h2::client::Builder {
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(self.stream_window)
            .initial_connection_window_size(self.conn_window)
            .max_header_list_size(self.max_header_list_size)
            // Until the server's SETTINGS arrive, assume it takes what we intend to send.
            .initial_max_send_streams(self.max_streams_per_conn.max(1))
            .enable_push(false);
        builder
    }
}

/// The server side: limits and settings of [`super::serve`].
#[derive(Clone)]
pub struct ServerConfig {
    /// Bound on the TLS handshake and the HTTP/2 preface of an accepted connection.
    pub handshake_timeout: Duration,
    /// Connections served at once; beyond this, new ones are closed as they arrive.
    pub max_connections: usize,
    /// Streams a client may have open at once on one connection (HTTP/2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_streams_per_conn: u32,
    /// HTTP/2 receive window of each stream (bytes).
    pub stream_window: u32,
    /// HTTP/2 receive window of each connection (bytes).
    pub conn_window: u32,
    /// An HTTP/2 PING is sent this often; `None` disables the probe.
    pub keepalive_interval: Option<Duration>,
    /// A connection whose PING is not answered within this is closed.
    pub keepalive_timeout: Duration,
    /// Largest request header block accepted (bytes).
    pub max_header_list_size: u32,
    /// After `stop`, how long open streams may run before their connections are dropped.
    pub drain_timeout: Duration,
    /// Told about refused and served connections.
    pub events: Arc<dyn ServerEvents>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_streams_per_conn: 100,
            stream_window: MIB,
            conn_window: 4 * MIB,
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_timeout: Duration::from_secs(20),
            max_header_list_size: 16 * 1024,
            drain_timeout: Duration::from_secs(30),
            events: Arc::new(NoEvents),
        }
    }
}

impl ServerConfig {
    /// The HTTP/2 server settings of an accepted connection.
    pub(crate) fn h2_builder(&self) -> h2::server::Builder {
        let mut builder = h2::server::Builder::new();
        builder
            .initial_window_size(self.stream_window)
            .initial_connection_window_size(self.conn_window)
            .max_concurrent_streams(self.max_streams_per_conn.max(1))
            .max_header_list_size(self.max_header_list_size);
        builder
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_streams_per_conn", &self.max_streams_per_conn)
            .field("stream_window", &self.stream_window)
            .field("conn_window", &self.conn_window)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("max_header_list_size", &self.max_header_list_size)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}
