//! The mesh CA's HTTPS API (JSON), shared by the CA (`crate::ca`) and its client (`caclient`).
//!
//! `POST /v1/certificates` with `authorization: Bearer <node token>` and a
//! [`CertificateRequest`] answers a [`CertificateResponse`]; `GET /v1/bundle` (public) answers a
//! [`BundleResponse`]; refusals answer 4xx with a [`Refusal`].

use serde::{Deserialize, Serialize};

pub const CERTIFICATES_PATH: &str = "/v1/certificates";
pub const BUNDLE_PATH: &str = "/v1/bundle";
/// The TLS server name the CA's serving certificate is checked against.
pub const CA_SERVER_NAME: &str = "weft-ca";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateRequest {
    /// PEM PKCS#10 request: an ECDSA P-256 key and one URI SAN, the SPIFFE ID asked for.
    pub csr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateResponse {
    /// PEM certificates, leaf first.
    pub cert_chain: Vec<String>,
    /// PEM roots every node should trust now.
    pub bundle: Vec<String>,
    /// The leaf's notAfter, RFC 3339.
    pub expires: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleResponse {
    pub bundle: Vec<String>,
}

/// Why the CA refused: `error` is a stable code (the metric's `reason` label), `message`
/// the explanation for a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub error: String,
    pub message: String,
}
