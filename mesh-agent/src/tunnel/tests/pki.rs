//! A throwaway mesh CA and SPIFFE certificates for tunnel tests, and TLS configurations like
//! the identity module's: the client presents its workload's certificate, the server picks
//! its certificate by SNI and demands a client certificate from the CA.
//!
//! Leaves carry the SPIFFE URI and, so that rustls' stock verifier can check the server name
//! in tests, the DNS name `SpiffeId::server_name()` gives.

use std::collections::HashMap;
use std::sync::Arc;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::identity::SpiffeId;
use crate::tunnel::ALPN_H2;

pub(crate) fn provider() -> Arc<CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and its key.
pub(crate) struct Leaf {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Leaf {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    roots: Arc<RootCertStore>,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).expect("CA as a root");
        TestCa {
            issuer: Issuer::new(params, key),
            roots: Arc::new(roots),
        }
    }

    /// A certificate for `id`, valid now.
    pub(crate) fn leaf(&self, id: &SpiffeId) -> Leaf {
        self.leaf_valid(id, false)
    }

    /// A certificate for `id` that expired in 2021.
    pub(crate) fn expired_leaf(&self, id: &SpiffeId) -> Leaf {
        self.leaf_valid(id, true)
    }

    fn leaf_valid(&self, id: &SpiffeId, expired: bool) -> Leaf {
        let ServerName::DnsName(dns) = id.server_name() else {
            panic!("server name of {id} is not a DNS name");
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::URI(Ia5String::try_from(id.to_string()).expect("URI SAN")),
            SanType::DnsName(Ia5String::try_from(dns.as_ref()).expect("DNS SAN")),
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    /// A client configuration trusting this CA and presenting `leaf` (none if `None`).
    pub(crate) fn client_config(&self, leaf: Option<&Leaf>) -> Arc<ClientConfig> {
        self.client_config_alpn(leaf, vec![ALPN_H2.to_vec()])
    }

    pub(crate) fn client_config_alpn(
        &self,
        leaf: Option<&Leaf>,
        alpn: Vec<Vec<u8>>,
    ) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(self.roots.clone());
        let mut config = match leaf {
            Some(leaf) => builder
                .with_client_auth_cert(leaf.chain.clone(), leaf.key())
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn;
        Arc::new(config)
    }

    /// A server configuration requiring client certificates from this CA and answering each
    /// server name with the given leaf.
    pub(crate) fn server_config(&self, by_name: Vec<(&SpiffeId, &Leaf)>) -> Arc<ServerConfig> {
        let provider = provider();
        let mut resolver = BySni(HashMap::new());
        for (id, leaf) in by_name {
            let ServerName::DnsName(name) = id.server_name() else {
                panic!("server name of {id} is not a DNS name");
            };
            let key = CertifiedKey::from_der(leaf.chain.clone(), leaf.key(), &provider)
                .expect("certified key");
            resolver.0.insert(name.as_ref().to_owned(), Arc::new(key));
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .expect("client verifier");
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Arc::new(config)
    }
}

/// Answers each SNI with its certificate (none for an unknown name: the handshake fails).
#[derive(Debug)]
struct BySni(HashMap<String, Arc<CertifiedKey>>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.get(hello.server_name()?).cloned()
    }
}
