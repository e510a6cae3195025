//! The node proxy's outbound side: connections the datapath captured from enrolled pods.
//!
//! `outbound` owns the listener, the connection limit and shutdown draining; `connection`
//! handles one connection (attribution, routing, logging); `origin` asks the kernel about an
//! accepted socket; `lb` picks service endpoints; `copy` moves the bytes. Decisions read the
//! mesh state snapshot only; nothing here writes it.

mod connection;
pub mod copy;
pub mod lb;
pub mod origin;
pub mod outbound;

pub use connection::Outcome;
pub use origin::{Captured, KernelOrigin, OriginLookup};
pub use outbound::{Outbound, OutboundConfig};
