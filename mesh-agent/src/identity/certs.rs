//! Reading certificates: the workload identity a leaf names (its one URI SAN), fingerprints,
//! and [`CertInfo`], the public facts about a held certificate that logs, the CLI and tests
//! print. Nothing here touches private keys.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::digest;
use rustls::pki_types::CertificateDer;
use serde::{Serialize, Serializer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::{IdentityError, SpiffeId};

/// The workload identity of a peer: the URI SAN of the leaf (first) certificate, which must be
/// its only URI SAN and a SPIFFE ID.
pub fn peer_id(certs: &[CertificateDer<'_>]) -> Result<SpiffeId, IdentityError> {
    let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
    uri_id(&parse(leaf)?)
}

pub(crate) fn parse<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>, IdentityError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(IdentityError::BadCertificate("trailing bytes".into())),
        Err(e) => Err(IdentityError::BadCertificate(e.to_string())),
    }
}

pub(crate) fn uri_id(cert: &X509Certificate<'_>) -> Result<SpiffeId, IdentityError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::BadCertificate(format!("subjectAltName: {e}")))?
        .ok_or(IdentityError::NoUriSan)?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(IdentityError::NoUriSan),
        [uri] => uri
            .parse()
            .map_err(|e: super::SpiffeIdError| IdentityError::NotSpiffe(e.to_string())),
        many => Err(IdentityError::ManyUriSans(many.len())),
    }
}

/// SHA-256 of a DER certificate, lowercase hex: how roots are named in logs and answers.
pub fn fingerprint(der: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, der).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Public facts about a certificate held for an identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    pub id: SpiffeId,
    /// Serial number, lowercase hex.
    pub serial: String,
    #[serde(serialize_with = "serialize_time")]
    pub not_before: SystemTime,
    #[serde(serialize_with = "serialize_time")]
    pub not_after: SystemTime,
    /// The issuer's distinguished name, as text.
    pub issuer: String,
    /// Fingerprint of the trust bundle root the chain ends at; `None` when no root of the
    /// current bundle signed it.
    pub root: Option<String>,
}

impl CertInfo {
    /// Facts about `chain` (leaf first), finding its root among `roots`.
    pub fn of(
        chain: &[CertificateDer<'_>],
        roots: &[CertificateDer<'_>],
    ) -> Result<Self, IdentityError> {
        let leaf_der = chain.first().ok_or(IdentityError::NoCertificate)?;
        let leaf = parse(leaf_der)?;
        let last = match chain.last() {
            Some(der) if chain.len() > 1 => parse(der)?,
            _ => leaf.clone(),
        };
        Ok(CertInfo {
            id: uri_id(&leaf)?,
            serial: hex(leaf.raw_serial()),
            not_before: system_time(leaf.validity().not_before.timestamp()),
            not_after: system_time(leaf.validity().not_after.timestamp()),
            issuer: leaf.issuer().to_string(),
            root: root_of(&last, roots),
        })
    }
}

/// The fingerprint of the root in `roots` that signed `top` (the last certificate of a chain).
pub(crate) fn root_of(top: &X509Certificate<'_>, roots: &[CertificateDer<'_>]) -> Option<String> {
    roots.iter().find_map(|der| {
        let root = parse(der).ok()?;
        let signed =
            root.subject() == top.issuer() && top.verify_signature(Some(root.public_key())).is_ok();
        signed.then(|| fingerprint(der))
    })
}

pub(crate) fn system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}

/// `2024-05-01T12:00:00Z` (UTC, whole seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn serialize_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// PEM text of one DER object (`label` e.g. `CERTIFICATE`), 64 columns, LF line ends.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every certificate in PEM `text`, in order; an error names the first bad block.
pub fn pem_certs(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_as_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(system_time(951_825_599)), "2000-02-29T11:59:59Z");
        assert_eq!(rfc3339(system_time(1_735_689_600)), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(system_time(4_107_542_400)), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn pem_round_trips_every_length() -> Result<(), String> {
        use rustls::pki_types::pem::PemObject;
        for len in [1usize, 2, 3, 4, 47, 48, 49, 200] {
            let der: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let text = pem_encode("CERTIFICATE", &der);
            let back =
                CertificateDer::from_pem_slice(text.as_bytes()).map_err(|e| e.to_string())?;
            assert_eq!(back.as_ref(), der.as_slice(), "length {len}");
        }
        Ok(())
    }
}
