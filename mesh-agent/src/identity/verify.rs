//! Certificate verification for mesh TLS, against the trust bundle in force at handshake time.
//!
//! The client side checks that the server's chain leads to a bundle root and that its leaf
//! names exactly the identity the server name (SNI) asked for; the server side requires a
//! client chain leading to a bundle root whose leaf names a workload of this trust domain.
//! Validity dates are checked by webpki; signatures use ring's algorithms.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};

use super::store::Store;
use super::{IdentityError, SpiffeId, peer_id};

/// Verifies a destination node proxy: chain to the bundle, leaf = the SNI's identity.
#[derive(Debug)]
pub(super) struct ServerVerifier {
    pub(super) store: Arc<Store>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let expected = match server_name {
            ServerName::DnsName(name) => {
                SpiffeId::from_server_name(name.as_ref(), &self.store.trust_domain)
            }
            _ => None,
        }
        .ok_or_else(|| {
            Error::General(format!(
                "server name {server_name:?} names no workload identity"
            ))
        })?;
        let bundle = self.store.bundle();
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &bundle.store,
            intermediates,
            now,
            self.store.provider.signature_verification_algorithms.all,
        )?;
        let found = peer_id(std::slice::from_ref(end_entity)).map_err(invalid)?;
        if found != expected {
            return Err(invalid(IdentityError::WrongId {
                id: expected,
                found: Box::new(found),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.store.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.store.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.store
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Requires and verifies a source node proxy's certificate: chain to the bundle in force
/// (through a webpki verifier rebuilt with each bundle), leaf naming a workload identity of
/// this trust domain.
#[derive(Debug)]
pub(super) struct ClientVerifier {
    pub(super) store: Arc<Store>,
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    // No hints: the bundle changes under a live config, and the client's resolver ignores
    // hints anyway (it presents the one identity it was built for).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let bundle = self.store.bundle();
        let verifier = bundle
            .client_verifier
            .as_ref()
            .ok_or(Error::InvalidCertificate(CertificateError::UnknownIssuer))?;
        verifier.verify_client_cert(end_entity, intermediates, now)?;
        let id = peer_id(std::slice::from_ref(end_entity)).map_err(invalid)?;
        if id.trust_domain() != self.store.trust_domain {
            return Err(invalid(IdentityError::WrongTrustDomain {
                id,
                trust_domain: self.store.trust_domain.clone(),
            }));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.store.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.store.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.store
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn invalid(e: IdentityError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}
