//! The agent's HTTPS client of the mesh CA: asks for a certificate with the node's bootstrap
//! token, and fetches the public trust bundle.
//!
//! The CA's serving certificate is verified against the roots in `--ca-bundle` (first contact)
//! together with the bundle the CA last handed out, so that a root rotation does not cut the
//! agent off from its CA. Both files are re-read on each call: a rotated token or bundle file
//! is used without a restart. Requests are rare (one per renewal or poll), so each uses its own
//! connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::certs::pem_certs;
use super::manager::CaClientConfig;
use super::wire::{
    BUNDLE_PATH, BundleResponse, CA_SERVER_NAME, CERTIFICATES_PATH, CertificateRequest,
    CertificateResponse, Refusal,
};

/// A whole exchange (connect, handshake, request, answer) must fit in this.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// CA answers are a few certificates; anything larger is not a CA answer.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CaClientError {
    /// The CA answered and said no (401, 403, 400): retrying will not help until something
    /// changes (the token, the state, the request).
    #[error("CA {address} refused ({status}): {reason}: {message}")]
    Refused {
        address: String,
        status: u16,
        reason: String,
        message: String,
    },
    #[error("CA {address}: {reason}")]
    Failed { address: String, reason: String },
}

pub(crate) struct CaClient {
    config: CaClientConfig,
}

impl CaClient {
    pub(crate) fn new(config: CaClientConfig) -> Self {
        CaClient { config }
    }

    /// Signs `csr` (PEM). `known_roots` are trusted for the CA's serving certificate besides
    /// the `--ca-bundle` file.
    pub(crate) async fn sign(
        &self,
        csr: String,
        known_roots: &[CertificateDer<'static>],
    ) -> Result<CertificateResponse, CaClientError> {
        let token = std::fs::read_to_string(&self.config.token)
            .map_err(|e| self.failed(format!("token {}: {e}", self.config.token.display())))?;
        let body = serde_json::to_vec(&CertificateRequest { csr })
            .map_err(|e| self.failed(format!("encoding the request: {e}")))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(CERTIFICATES_PATH)
            .header("host", CA_SERVER_NAME)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", token.trim()))
            .body(Full::new(Bytes::from(body)));
        self.exchange(request, known_roots).await
    }

    /// The CA's current trust bundle.
    pub(crate) async fn bundle(
        &self,
        known_roots: &[CertificateDer<'static>],
    ) -> Result<Vec<CertificateDer<'static>>, CaClientError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(BUNDLE_PATH)
            .header("host", CA_SERVER_NAME)
            .body(Full::new(Bytes::new()));
        let answer: BundleResponse = self.exchange(request, known_roots).await?;
        parse_bundle(&answer.bundle).map_err(|e| self.failed(e))
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        request: Result<Request<Full<Bytes>>, http::Error>,
        known_roots: &[CertificateDer<'static>],
    ) -> Result<T, CaClientError> {
        let request = request.map_err(|e| self.failed(format!("building the request: {e}")))?;
        let tls = self.tls_config(known_roots)?;
        let exchange = async {
            let (status, body) = self.send(request, tls).await?;
            self.decode(status, &body)
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .map_err(|_| self.failed(format!("no answer within {EXCHANGE_TIMEOUT:?}")))?
    }

    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        tls: Arc<ClientConfig>,
    ) -> Result<(StatusCode, Bytes), CaClientError> {
        let tcp = TcpStream::connect(&self.config.address)
            .await
            .map_err(|e| self.failed(format!("connect: {e}")))?;
        let name = ServerName::try_from(CA_SERVER_NAME).map_err(|e| self.failed(e.to_string()))?;
        let stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| self.failed(format!("TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.failed(format!("HTTP: {e}")))?;
        let driver = tokio::spawn(conn);
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| self.failed(format!("HTTP: {e}")))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| self.failed(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        driver.abort();
        result
    }

    fn decode<T: DeserializeOwned>(
        &self,
        status: StatusCode,
        body: &[u8],
    ) -> Result<T, CaClientError> {
        if status.is_success() {
            return serde_json::from_slice(body)
                .map_err(|e| self.failed(format!("bad answer ({status}): {e}")));
        }
        let refusal: Refusal = serde_json::from_slice(body).unwrap_or_else(|_| Refusal {
            error: "unknown".into(),
            message: String::from_utf8_lossy(body).trim().to_owned(),
        });
        if status.is_client_error() {
            return Err(CaClientError::Refused {
                address: self.config.address.clone(),
                status: status.as_u16(),
                reason: refusal.error,
                message: refusal.message,
            });
        }
        Err(self.failed(format!("{status}: {}", refusal.message)))
    }

    fn tls_config(
        &self,
        known_roots: &[CertificateDer<'static>],
    ) -> Result<Arc<ClientConfig>, CaClientError> {
        let mut roots = RootCertStore::empty();
        let from_file = read_roots(&self.config.bundle);
        let file_roots = from_file.as_deref().unwrap_or_default();
        for root in file_roots.iter().chain(known_roots) {
            // A bad root among good ones is skipped: the good ones may still verify the CA.
            let _ = roots.add(root.clone());
        }
        if roots.is_empty() {
            let why = from_file.err().unwrap_or_else(|| "no usable root".into());
            return Err(self.failed(format!("CA bundle {}: {why}", self.config.bundle.display())));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| self.failed(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    fn failed(&self, reason: String) -> CaClientError {
        CaClientError::Failed {
            address: self.config.address.clone(),
            reason,
        }
    }
}

fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    pem_certs(&text)
}

/// PEM strings (one certificate each) to DER.
pub(super) fn parse_bundle(pems: &[String]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::with_capacity(pems.len());
    for pem in pems {
        out.extend(pem_certs(pem)?);
    }
    Ok(out)
}
