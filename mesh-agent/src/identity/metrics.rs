//! The identity series of the agent: certificate requests by result, certificates held, roots
//! in the trust bundle. Registered on the agent's registry by whoever owns it.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// Outcomes of a certificate request, the `result` label.
pub const RESULTS: [&str; 4] = ["issued", "renewed", "refused", "failed"];

#[derive(Clone, Debug)]
pub struct IdentityMetrics {
    requests: IntCounterVec,
    certificates: IntGauge,
    bundle_roots: IntGauge,
}

impl IdentityMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "weft_identity_certificate_requests_total",
                "Certificate requests to the mesh CA, by result.",
            ),
            &["result"],
        )?;
        let certificates = IntGauge::new(
            "weft_identity_certificates",
            "Workload certificates this node holds.",
        )?;
        let bundle_roots = IntGauge::new(
            "weft_identity_bundle_roots",
            "Roots in the trust bundle in force.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(certificates.clone()))?;
        registry.register(Box::new(bundle_roots.clone()))?;
        for result in RESULTS {
            requests.with_label_values(&[result]);
        }
        Ok(IdentityMetrics {
            requests,
            certificates,
            bundle_roots,
        })
    }

    pub(super) fn request(&self, result: &str) {
        self.requests.with_label_values(&[result]).inc();
    }

    pub(super) fn held(&self, certificates: usize, roots: usize) {
        self.certificates
            .set(i64::try_from(certificates).unwrap_or(i64::MAX));
        self.bundle_roots
            .set(i64::try_from(roots).unwrap_or(i64::MAX));
    }
}
