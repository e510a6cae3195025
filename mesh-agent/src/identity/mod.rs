//! Workload identities: SPIFFE IDs, their X.509 certificates (SVIDs) held by the node proxy for
//! the pods of its node only, the trust bundle, and the TLS configurations built from them.
//!
//! [`Identities`] is the store the tunnel reads (`client_config` for a source workload,
//! `server_config` for the inbound side); [`IdentityManager`] fills it from the mesh CA
//! (`crate::ca`), whose API types are in [`wire`]. See docs/identity.md.

pub(crate) mod caclient;
mod certs;
mod error;
mod manager;
mod metrics;
mod resolve;
mod spiffe;
mod store;
mod tls;
mod verify;
pub mod wire;

#[cfg(test)]
pub(crate) mod testca;
#[cfg(test)]
mod tests;

pub use caclient::CaClientError;
pub use certs::{CertInfo, fingerprint, peer_id, pem_certs, pem_encode, rfc3339};
pub(crate) use certs::{hex, parse as parse_cert};
pub use error::IdentityError;
#[cfg(test)]
pub(crate) use manager::new_request;
pub use manager::{CaClientConfig, IdentityManager};
pub use metrics::IdentityMetrics;
pub use spiffe::{SNI_SUFFIX, SpiffeId, SpiffeIdError};
pub use store::Identities;
pub use tls::ALPN_H2;
