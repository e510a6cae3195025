//! Roots and signing: a new self-signed root, the [`Signer`] built from a root and its key, and
//! the two kinds of leaf the CA issues (workload certificates and its own serving certificate).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::CertificateDer;
use x509_parser::time::ASN1Time;

use super::CaError;
use crate::identity::{SpiffeId, fingerprint, pem_certs, rfc3339};

/// Roots live ten years; rotation, not expiry, is how they are replaced.
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Clock skew allowed between the CA and the nodes.
pub(super) const BACKDATE: Duration = Duration::from_secs(60);

/// A new ECDSA P-256 self-signed root for `trust_domain`: (certificate PEM, key PEM).
pub(super) fn generate(trust_domain: &str) -> Result<(String, String), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "weft");
    // Each root gets its own name (its creation time), so rotated roots are told apart.
    let name = format!("weft root {trust_domain} {}", rfc3339(SystemTime::now()));
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial()?);
    params.not_before = asn1(SystemTime::now() - BACKDATE)?.to_datetime();
    params.not_after = asn1(SystemTime::now() + ROOT_LIFETIME)?.to_datetime();
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A root and its key, able to sign.
pub(super) struct Signer {
    issuer: Issuer<'static, KeyPair>,
    pub(super) cert: CertificateDer<'static>,
    pub(super) fingerprint: String,
}

impl Signer {
    /// The root in `cert_pem` with its key in `key_pem`: one CA certificate, a P-256 key,
    /// and the key must be the certificate's.
    pub(super) fn load(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let cert = match pem_certs(cert_pem)?.as_slice() {
            [one] => one.clone(),
            other => return Err(format!("{} certificates, expected one root", other.len())),
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("private key: {e}"))?;
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err("the root key is not ECDSA P-256".into());
        }
        let parsed = crate::identity::parse_cert(&cert).map_err(|e| e.to_string())?;
        if !parsed.is_ca() {
            return Err("not a CA certificate (basicConstraints CA:true)".into());
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err("the key does not match the root certificate".into());
        }
        let issuer = Issuer::from_ca_cert_der(&cert, key).map_err(|e| e.to_string())?;
        Ok(Signer {
            fingerprint: fingerprint(&cert),
            issuer,
            cert,
        })
    }

    /// A workload certificate for `id` and `public_key`, valid from now − [`BACKDATE`] for `ttl`.
    pub(super) fn workload(
        &self,
        id: &SpiffeId,
        public_key: &impl PublicKeyData,
        ttl: Duration,
    ) -> Result<CertificateDer<'static>, CaError> {
        let mut params = leaf_params(ttl)?;
        params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
        Ok(params.signed_by(public_key, &self.issuer)?.der().clone())
    }

    /// The CA's own serving certificate and key: DNS names `weft-ca`,
    /// `weft-ca.weft-system.svc`, and `ip` when the CA listens on a specific address.
    pub(super) fn serving(
        &self,
        ip: Option<IpAddr>,
        lifetime: Duration,
    ) -> Result<(CertificateDer<'static>, KeyPair), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = leaf_params(lifetime)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.subject_alt_names = vec![
            SanType::DnsName("weft-ca".try_into()?),
            SanType::DnsName("weft-ca.weft-system.svc".try_into()?),
        ];
        params.subject_alt_names.extend(ip.map(SanType::IpAddress));
        let cert = params.signed_by(&key, &self.issuer)?.der().clone();
        Ok((cert, key))
    }
}

/// An end-entity certificate: not a CA, digitalSignature, serverAuth + clientAuth, no subject
/// (the SAN says who it is).
fn leaf_params(ttl: Duration) -> Result<CertificateParams, CaError> {
    let now = SystemTime::now();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial()?);
    params.not_before = asn1(now - BACKDATE)?.to_datetime();
    // Certificate times are whole seconds: round up so a sub-second TTL still lasts a second.
    params.not_after = asn1(now + ttl + Duration::from_millis(999))?.to_datetime();
    Ok(params)
}

/// 16 random bytes, positive (top bit clear), as RFC 5280 asks of serial numbers.
fn serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::Usage("no randomness from the system".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01 << 6; // never a leading zero byte, so the encoding stays 16 bytes
    Ok(SerialNumber::from_slice(&bytes))
}

/// A certificate time (whole seconds since the epoch, rounded down).
fn asn1(time: SystemTime) -> Result<ASN1Time, CaError> {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(secs)
        .ok()
        .and_then(|secs| ASN1Time::from_timestamp(secs).ok())
        .ok_or_else(|| CaError::Usage(format!("time {secs} out of range")))
}
