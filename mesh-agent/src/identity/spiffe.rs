//! SPIFFE identities of workloads: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
//!
//! A workload's identity is its namespace and service account (as in Istio), so every pod of a
//! deployment shares one. The TLS server name (SNI) of a tunnel carries the destination identity
//! (`<service account>.<namespace>.<SNI_SUFFIX>`): it picks the certificate the destination
//! node proxy presents and names what the client must see in it.

use std::fmt;
use std::str::FromStr;

use rustls::pki_types::{DnsName, ServerName};

use crate::state::Workload;

/// Last labels of a tunnel's server name.
pub const SNI_SUFFIX: &str = "id.weft";

/// A workload identity. Ordering and equality are by trust domain, namespace, service account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

/// Why a string is not a workload SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a workload SPIFFE ID (spiffe://<trust domain>/ns/<namespace>/sa/<service account>): {reason}"
)]
pub struct SpiffeIdError {
    text: String,
    reason: &'static str,
}

impl SpiffeId {
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Self {
        SpiffeId {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        }
    }

    /// The identity of a workload in `trust_domain`.
    pub fn of(trust_domain: &str, workload: &Workload) -> Self {
        SpiffeId::new(
            trust_domain,
            &workload.key.namespace,
            &workload.service_account,
        )
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The TLS server name that asks a destination node proxy for this identity's certificate.
    pub fn server_name(&self) -> ServerName<'static> {
        let name = format!("{}.{}.{SNI_SUFFIX}", self.service_account, self.namespace);
        match DnsName::try_from(name) {
            Ok(dns) => ServerName::DnsName(dns),
            // Kubernetes names are DNS labels/subdomains, so this is not reached for valid
            // state; an unmatchable name makes the handshake fail instead of panicking.
            Err(_) => ServerName::DnsName(
                DnsName::try_from("invalid.".to_owned() + SNI_SUFFIX).expect("static name"),
            ),
        }
    }

    /// The identity a server name (as built by [`SpiffeId::server_name`]) asks for.
    /// Namespaces are DNS labels (no dots), service accounts may hold dots: split at the last.
    pub fn from_server_name(name: &str, trust_domain: &str) -> Option<Self> {
        let rest = name.strip_suffix(SNI_SUFFIX)?.strip_suffix('.')?;
        let (sa, ns) = rest.rsplit_once('.')?;
        (!sa.is_empty() && !ns.is_empty()).then(|| SpiffeId::new(trust_domain, ns, sa))
    }

    /// Istio's principal form (no scheme): `<trust domain>/ns/<namespace>/sa/<service account>`.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| SpiffeIdError {
            text: text.to_owned(),
            reason,
        };
        let rest = text
            .strip_prefix("spiffe://")
            .ok_or(fail("no spiffe:// scheme"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] => {
                if [td, ns, sa].iter().any(|p| p.is_empty()) {
                    return Err(fail("empty segment"));
                }
                Ok(SpiffeId::new(td, ns, sa))
            }
            _ => Err(fail("wrong path")),
        }
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_same_id() {
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/web".parse().unwrap();
        assert_eq!(id, SpiffeId::new("cluster.local", "shop", "web"));
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(id.principal(), "cluster.local/ns/shop/sa/web");
        for bad in [
            "cluster.local/ns/shop/sa/web",
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns//sa/web",
            "spiffe://cluster.local/ns/shop/sa/web/extra",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn server_names_round_trip_even_with_dotted_service_accounts() {
        for id in [
            SpiffeId::new("td", "shop", "web"),
            SpiffeId::new("td", "shop", "api.v2"),
        ] {
            let ServerName::DnsName(name) = id.server_name() else {
                panic!("not a DNS name");
            };
            assert_eq!(SpiffeId::from_server_name(name.as_ref(), "td"), Some(id));
        }
        assert_eq!(SpiffeId::from_server_name("web.shop.example", "td"), None);
    }
}
