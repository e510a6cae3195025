//! Workload identities: SPIFFE IDs, their X.509 certificates (SVIDs) held by the node proxy for
//! the pods of its node only, the trust bundle, and the TLS configurations built from them.

mod spiffe;

pub use spiffe::{SNI_SUFFIX, SpiffeId, SpiffeIdError};
