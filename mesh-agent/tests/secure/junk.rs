//! Bad clients of a node's tunnel port: garbage bytes, and TLS with certificates the mesh must
//! not accept. Each returns whether the server refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    date_time_ymd,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

const WAIT: Duration = Duration::from_secs(3);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// A certificate chain and its key.
pub type Credential = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Sends bytes that are not TLS; true when the server closed without answering anything.
pub fn garbage(addr: SocketAddr) -> Result<bool> {
    let mut s = TcpStream::connect_timeout(&addr, WAIT)?;
    s.set_read_timeout(Some(WAIT))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff garbage")?;
    let mut buf = [0u8; 64];
    Ok(match s.read(&mut buf) {
        // A TLS alert is fine too: anything but an HTTP answer.
        Ok(n) => n == 0 || !buf.starts_with(b"HTTP"),
        Err(_) => true,
    })
}

/// A TLS 1.3 handshake presenting `credential` to `server_name`, then the HTTP/2 preface; true
/// when the server refused (an alert or a close instead of its SETTINGS frame).
pub fn tls_refused(addr: SocketAddr, server_name: &str, credential: Credential) -> Result<bool> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_client_auth_cert(credential.0, credential.1)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(server_name.to_owned())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let tcp = TcpStream::connect_timeout(&addr, WAIT)?;
    tcp.set_read_timeout(Some(WAIT))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    if tls
        .write_all(H2_PREFACE)
        .and_then(|()| tls.flush())
        .is_err()
    {
        return Ok(true);
    }
    let mut head = [0u8; 9];
    Ok(match tls.read_exact(&mut head) {
        // An HTTP/2 frame header whose type is SETTINGS: the server took the connection.
        Ok(()) => head[3] != 0x4,
        Err(_) => true,
    })
}

/// A leaf for `id` from a CA nobody in the mesh trusts.
pub fn unknown_ca(id: &str) -> Result<Credential> {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, ca_key);
    leaf(id, &issuer, (2024, 2099))
}

/// A leaf for `id` signed by the mesh's own root (read from the CA directory), valid from
/// January 1st of the first year to that of the second.
pub fn from_mesh_root(ca_dir: &Path, id: &str, years: (i32, i32)) -> Result<Credential> {
    let root_key = KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("root.key"))?)?;
    let root_pem = std::fs::read_to_string(ca_dir.join("root.pem"))?;
    let issuer = Issuer::from_ca_cert_pem(&root_pem, root_key)?;
    leaf(id, &issuer, years)
}

fn leaf(id: &str, issuer: &Issuer<'_, KeyPair>, years: (i32, i32)) -> Result<Credential> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![SanType::URI(rcgen::string::Ia5String::try_from(id)?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = date_time_ymd(years.0, 1, 1);
    params.not_after = date_time_ymd(years.1, 1, 1);
    let cert = params.signed_by(&key, issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((vec![cert.der().clone()], key))
}

/// These clients test the server's checks, not the server's certificate.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
