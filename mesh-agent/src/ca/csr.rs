//! Checking a certificate signing request before anything is signed: it parses, its signature
//! verifies (the requester holds the key), the key is ECDSA P-256, and its only subject
//! alternative name is one URI, a SPIFFE ID of this CA's trust domain. Nothing else in the
//! request is copied into the certificate.

use rcgen::PublicKeyData;
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::identity::SpiffeId;

/// A request that passed every check.
#[derive(Debug)]
pub(super) struct Checked {
    pub(super) id: SpiffeId,
    pub(super) key: rcgen::SubjectPublicKeyInfo,
}

/// Why a request is refused; `code` is the metric's `reason` label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum CsrRefusal {
    #[error("the CSR does not parse or verify: {0}")]
    Malformed(String),
    #[error("the CSR key is not ECDSA P-256: {0}")]
    Key(String),
    #[error("the CSR must name exactly one SPIFFE ID as its only subject alternative name: {0}")]
    San(String),
    #[error("{id} is not in this CA's trust domain {trust_domain:?}")]
    TrustDomain { id: SpiffeId, trust_domain: String },
}

impl CsrRefusal {
    pub(super) fn code(&self) -> &'static str {
        match self {
            CsrRefusal::Malformed(_) => "bad_csr",
            CsrRefusal::Key(_) => "bad_key",
            CsrRefusal::San(_) => "bad_san",
            CsrRefusal::TrustDomain { .. } => "wrong_trust_domain",
        }
    }
}

pub(super) fn check(pem: &str, trust_domain: &str) -> Result<Checked, CsrRefusal> {
    let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| CsrRefusal::Malformed(format!("PEM: {e}")))?;
    let csr = match X509CertificationRequest::from_der(der.as_ref()) {
        Ok(([], csr)) => csr,
        Ok(_) => return Err(CsrRefusal::Malformed("trailing bytes".into())),
        Err(e) => return Err(CsrRefusal::Malformed(e.to_string())),
    };
    csr.verify_signature()
        .map_err(|e| CsrRefusal::Malformed(format!("signature: {e}")))?;
    let key = p256_key(csr.certification_request_info.subject_pki.raw)?;
    let id = one_spiffe_id(&csr)?;
    if id.trust_domain() != trust_domain {
        return Err(CsrRefusal::TrustDomain {
            id,
            trust_domain: trust_domain.to_owned(),
        });
    }
    Ok(Checked { id, key })
}

fn p256_key(spki: &[u8]) -> Result<rcgen::SubjectPublicKeyInfo, CsrRefusal> {
    let key =
        rcgen::SubjectPublicKeyInfo::from_der(spki).map_err(|e| CsrRefusal::Key(e.to_string()))?;
    // An uncompressed P-256 point is 65 bytes; the algorithm check includes the curve.
    if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 || key.der_bytes().len() != 65 {
        return Err(CsrRefusal::Key("another algorithm or curve".into()));
    }
    Ok(key)
}

fn one_spiffe_id(csr: &X509CertificationRequest<'_>) -> Result<SpiffeId, CsrRefusal> {
    let names: Vec<&GeneralName<'_>> = csr
        .requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(san.general_names.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    match names.as_slice() {
        [GeneralName::URI(uri)] => uri
            .parse()
            .map_err(|e: crate::identity::SpiffeIdError| CsrRefusal::San(e.to_string())),
        [] => Err(CsrRefusal::San("none".into())),
        [other] => Err(CsrRefusal::San(format!("{other:?} is not a URI"))),
        many => Err(CsrRefusal::San(format!("{} names", many.len()))),
    }
}
