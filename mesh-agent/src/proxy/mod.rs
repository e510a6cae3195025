//! The node proxy's outbound side: connections the datapath captured from enrolled pods.
//!
//! `outbound` owns the listener, the connection limit and shutdown draining; `connection`
//! handles one connection (attribution, detection, logging); `origin` asks the kernel about an
//! accepted socket (`netfilter` when iptables rules redirect instead of the datapath); `detect`
//! tells HTTP from opaque bytes; `http` is the L7 path (routing, balancing, retries); opaque
//! connections get an endpoint from `lb` and `copy` moves their bytes; `io` counts the bytes of
//! a client socket. Decisions read the mesh state snapshot only; nothing here writes it.

mod connection;
pub mod copy;
pub mod detect;
pub mod dial;
pub mod http;
pub mod inbound;
mod io;
pub mod lb;
pub mod netfilter;
pub mod origin;
pub mod outbound;
mod peers;
mod preview;

pub use connection::Outcome;
pub use dial::{Dialer, MeshDial};
pub use http::HttpConfig;
pub use inbound::{Inbound, InboundConfig, TunnelHandler};
pub use netfilter::NetfilterOrigin;
pub use origin::{Captured, KernelOrigin, OriginLookup};
pub use outbound::{Outbound, OutboundConfig};
