//! Why an identity could not be held, or a peer's certificate names no workload identity.

use super::SpiffeId;

/// Refusals of [`super::Identities::insert`] and [`super::peer_id`]; each names the identity
/// or the certificate and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no certificate presented")]
    NoCertificate,
    #[error("certificate is not valid X.509: {0}")]
    BadCertificate(String),
    #[error("certificate has no URI SAN: it names no workload identity")]
    NoUriSan,
    #[error("certificate has {0} URI SANs; a workload certificate has exactly one")]
    ManyUriSans(usize),
    #[error("certificate URI SAN: {0}")]
    NotSpiffe(String),
    #[error("{id}: certificate is for {found}")]
    WrongId { id: SpiffeId, found: Box<SpiffeId> },
    #[error("{id}: not in this node's trust domain {trust_domain:?}")]
    WrongTrustDomain { id: SpiffeId, trust_domain: String },
    #[error("{id}: private key: {reason}")]
    Key { id: SpiffeId, reason: String },
    #[error("{id}: private key does not match the certificate")]
    KeyMismatch { id: SpiffeId },
}
