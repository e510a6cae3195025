//! Test support: a certificate authority (a self-signed P-256 root that issues workload
//! certificates with any SANs and validity, the way the mesh CA does by default), and one TLS
//! connection over loopback that reports what each side saw of the other.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::certs::{hex, parse};
use super::peer_id;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::time::ASN1Time;

use super::SpiffeId;

pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub(crate) root: CertificateDer<'static>,
}

pub(crate) type Svid = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn when(unix: i64) -> x509_parser::time::ASN1Time {
    ASN1Time::from_timestamp(unix).unwrap_or_else(|_| ASN1Time::now())
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = ASN1Time::now().timestamp();
        params.not_before = when(now - 3600).to_datetime();
        params.not_after = when(now + 86_400).to_datetime();
        let root = params
            .self_signed(&key)
            .expect("self-signed root")
            .der()
            .clone();
        TestCa {
            issuer: Issuer::new(params, key),
            root,
        }
    }

    /// A certificate for `id`, valid from a minute ago for an hour.
    pub(crate) fn issue(&self, id: &SpiffeId) -> Svid {
        self.issue_with(vec![uri(&id.to_string())], -60, 3600)
    }

    /// A workload certificate with `sans`, valid between now + `from` and now + `until`
    /// seconds, with a fresh P-256 key.
    pub(crate) fn issue_with(&self, sans: Vec<SanType>, from: i64, until: i64) -> Svid {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let cert = self.sign(sans, from, until, &key);
        let der = PrivatePkcs8KeyDer::from(key.serialize_der());
        (vec![cert], PrivateKeyDer::Pkcs8(der))
    }

    pub(crate) fn sign(
        &self,
        sans: Vec<SanType>,
        from: i64,
        until: i64,
        key: &KeyPair,
    ) -> CertificateDer<'static> {
        let now = ASN1Time::now().timestamp();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = when(now + from).to_datetime();
        params.not_after = when(now + until).to_datetime();
        params
            .signed_by(key, &self.issuer)
            .expect("signed leaf")
            .der()
            .clone()
    }
}

pub(crate) fn uri(text: &str) -> SanType {
    SanType::URI(text.to_owned().try_into().expect("IA5 URI"))
}

fn serial(der: &CertificateDer<'_>) -> String {
    parse(der).map(|c| hex(c.raw_serial())).unwrap_or_default()
}

/// What each side saw of the other: the peer's identity and leaf serial.
#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) id: SpiffeId,
    pub(crate) serial: String,
}

fn seen(certs: Option<&[CertificateDer<'_>]>) -> Result<Seen, String> {
    let certs = certs.ok_or("no peer certificate")?;
    Ok(Seen {
        id: peer_id(certs).map_err(|e| e.to_string())?,
        serial: certs.first().map(serial).unwrap_or_default(),
    })
}

/// One connection: the server answers "ok" once the handshake is done, the client reads it,
/// so a rejection on either side fails both.
pub(crate) async fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    sni: ServerName<'static>,
) -> (Result<Seen, String>, Result<Seen, String>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer = seen(tls.get_ref().1.peer_certificates())?;
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(client)
            .connect(sni, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer = seen(tls.get_ref().1.peer_certificates())?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        if answer != b"ok" {
            return Err(format!("server answered {answer:?}"));
        }
        Ok(peer)
    };
    let client_result = client_side.await;
    let server_result = server_side.await.unwrap_or_else(|e| Err(e.to_string()));
    (client_result, server_result)
}
