//! What the CA accepts to sign, and what it signs.

use std::time::Duration;

use x509_parser::extensions::GeneralName;

use super::super::CaError;
use super::super::csr::{CsrRefusal, check};
use super::super::root::{Signer, generate};
use super::{TD, id};
use crate::identity::parse_cert;
use crate::identity::testca::{TestCa, uri};

fn csr_with(sans: Vec<rcgen::SanType>, alg: &'static rcgen::SignatureAlgorithm) -> String {
    let key = rcgen::KeyPair::generate_for(alg).expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = sans;
    params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .expect("csr")
}

#[test]
fn requests_are_checked_before_signing() {
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let web = uri("spiffe://cluster.local/ns/shop/sa/web");
    let good = check(&csr_with(vec![web.clone()], p256), TD).expect("good CSR");
    assert_eq!(good.id, id("web"));

    let dns = rcgen::SanType::DnsName("web.example".try_into().expect("dns"));
    let cases: Vec<(String, &str)> = vec![
        ("not a CSR".into(), "bad_csr"),
        (
            csr_with(vec![web.clone()], &rcgen::PKCS_ECDSA_P384_SHA384),
            "bad_key",
        ),
        (csr_with(vec![], p256), "bad_san"),
        (csr_with(vec![dns.clone()], p256), "bad_san"),
        (csr_with(vec![web.clone(), dns], p256), "bad_san"),
        (csr_with(vec![uri("https://example.com/")], p256), "bad_san"),
        (
            csr_with(vec![uri("spiffe://other.td/ns/shop/sa/web")], p256),
            "wrong_trust_domain",
        ),
    ];
    for (csr, code) in cases {
        let refusal = check(&csr, TD).expect_err(code);
        assert_eq!(refusal.code(), code, "{refusal}");
    }
    // A CSR whose signature does not verify: its key did not sign it.
    let pem = csr_with(vec![web], p256);
    let der = pem_certs_like(&pem);
    let mut tampered = der.clone();
    if let Some(last) = tampered.last_mut() {
        *last ^= 0x01;
    }
    let tampered = crate::identity::pem_encode("CERTIFICATE REQUEST", &tampered);
    assert!(matches!(
        check(&tampered, TD),
        Err(CsrRefusal::Malformed(_))
    ));
}

fn pem_certs_like(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateSigningRequestDer;
    use rustls::pki_types::pem::PemObject;
    CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map(|d| d.as_ref().to_vec())
        .unwrap_or_default()
}

#[test]
fn workload_certificates_are_leaves_for_one_identity() -> Result<(), CaError> {
    let (cert, key) = generate(TD)?;
    let signer = Signer::load(&cert, &key).map_err(CaError::Usage)?;
    let requested = check(
        &csr_with(
            vec![uri(&id("web").to_string())],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        ),
        TD,
    )
    .map_err(|e| CaError::Usage(e.to_string()))?;
    let leaf = signer.workload(&id("web"), &requested.key, Duration::from_secs(90))?;
    let parsed = parse_cert(&leaf).expect("leaf parses");
    let root = parse_cert(&signer.cert).expect("root parses");
    assert!(parsed.verify_signature(Some(root.public_key())).is_ok());
    assert!(!parsed.is_ca());
    let bc = parsed
        .basic_constraints()
        .ok()
        .flatten()
        .expect("basicConstraints");
    assert!(!bc.value.ca);
    let ku = parsed.key_usage().ok().flatten().expect("keyUsage");
    assert!(ku.value.digital_signature() && !ku.value.key_cert_sign());
    let eku = parsed
        .extended_key_usage()
        .ok()
        .flatten()
        .expect("extendedKeyUsage");
    assert!(eku.value.server_auth && eku.value.client_auth);
    let san = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .expect("SAN");
    assert_eq!(
        san.value.general_names,
        [GeneralName::URI("spiffe://cluster.local/ns/shop/sa/web")]
    );
    let now = x509_parser::time::ASN1Time::now().timestamp();
    let (nb, na) = (
        parsed.validity().not_before.timestamp(),
        parsed.validity().not_after.timestamp(),
    );
    assert!(
        (now - 62..=now - 58).contains(&nb),
        "not_before {nb} vs now {now}"
    );
    assert!(
        (now + 89..=now + 92).contains(&na),
        "not_after {na} vs now {now}"
    );
    // The test CA of the identity tests and this one are unrelated: sanity for the checks above.
    let other = TestCa::new("other");
    let other_root = parse_cert(&other.root).expect("parses");
    assert!(
        parsed
            .verify_signature(Some(other_root.public_key()))
            .is_err()
    );
    Ok(())
}
