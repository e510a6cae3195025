//! [`IdentityManager`]: keeps a certificate for every identity this node's workloads need.
//!
//! For each wanted identity it makes a fresh ECDSA P-256 key and a CSR naming the identity,
//! has the mesh CA sign it (`caclient`), and holds the result in [`Identities`]; it renews at
//! half life (minus up to 10% jitter so nodes do not renew in step), retries failures with
//! backoff, and drops identities no longer wanted. The trust bundle is taken from every CA
//! answer and also polled at least every `min(ttl/4, 30 s)`, so a root added by a rotation
//! reaches the node well before the CA signs with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::caclient::{CaClient, CaClientError, parse_bundle};
use super::certs::{fingerprint, pem_certs, rfc3339};
use super::{Identities, IdentityMetrics, SpiffeId};

/// Where the mesh CA is and how this node proves itself to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaClientConfig {
    /// `host:port` of the CA's HTTPS API.
    pub address: String,
    /// PEM roots that verify the CA's serving certificate at first contact.
    pub bundle: PathBuf,
    /// The node's bootstrap credential (a hex token from `mesh-agent ca node-token`).
    pub token: PathBuf,
    pub node: String,
    pub trust_domain: String,
}

/// Bundle polls are at least this frequent.
const MAX_BUNDLE_POLL: Duration = Duration::from_secs(30);
/// ... and at most this frequent, whatever the certificate lifetime.
const MIN_BUNDLE_POLL: Duration = Duration::from_millis(100);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

pub struct IdentityManager {
    identities: Identities,
    ca: CaClient,
    node: String,
    metrics: Option<IdentityMetrics>,
    /// Per wanted identity: when to act next, and for how long its certificate was valid.
    slots: BTreeMap<SpiffeId, Slot>,
    next_poll: Instant,
}

#[derive(Debug)]
struct Slot {
    due: Instant,
    failures: u32,
    lifetime: Option<Duration>,
}

impl IdentityManager {
    /// Runs until the sender of `wanted` is dropped.
    pub fn spawn(
        identities: Identities,
        ca: CaClientConfig,
        wanted: watch::Receiver<BTreeSet<SpiffeId>>,
        metrics: Option<IdentityMetrics>,
    ) -> JoinHandle<()> {
        let manager = IdentityManager {
            identities,
            node: ca.node.clone(),
            ca: CaClient::new(ca),
            metrics,
            slots: BTreeMap::new(),
            next_poll: Instant::now(),
        };
        tokio::spawn(manager.run(wanted))
    }

    async fn run(mut self, mut wanted: watch::Receiver<BTreeSet<SpiffeId>>) {
        let first = wanted.borrow_and_update().clone();
        self.sync(first);
        loop {
            let due = self
                .slots
                .values()
                .map(|slot| slot.due)
                .fold(self.next_poll, Instant::min);
            tokio::select! {
                changed = wanted.changed() => {
                    if changed.is_err() {
                        debug!(node = %self.node, "identity manager stopped");
                        return;
                    }
                    let now_wanted = wanted.borrow_and_update().clone();
                    self.sync(now_wanted);
                }
                () = tokio::time::sleep_until(due) => self.work().await,
            }
        }
    }

    /// Starts on new identities, forgets those no longer wanted.
    fn sync(&mut self, wanted: BTreeSet<SpiffeId>) {
        let gone: Vec<SpiffeId> = self
            .slots
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.slots.remove(&id);
            self.identities.remove(&id);
            info!(id = %id, "identity dropped");
        }
        let now = Instant::now();
        for id in wanted {
            self.slots.entry(id).or_insert(Slot {
                due: now,
                failures: 0,
                lifetime: None,
            });
        }
        self.report();
    }

    async fn work(&mut self) {
        if self.next_poll <= Instant::now() {
            self.poll_bundle().await;
            self.next_poll = Instant::now() + self.poll_interval();
        }
        let now = Instant::now();
        let due: Vec<SpiffeId> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.due <= now)
            .map(|(id, _)| id.clone())
            .collect();
        // Concurrently: one slow answer must not hold up the other identities.
        let outcomes = join_all(due.iter().map(|id| self.obtain(id))).await;
        for (id, outcome) in due.iter().zip(outcomes) {
            if let Some(slot) = self.slots.get_mut(id) {
                slot.schedule(outcome);
            }
        }
        self.report();
    }

    fn poll_interval(&self) -> Duration {
        self.slots
            .values()
            .filter_map(|slot| slot.lifetime)
            .map(|lifetime| lifetime / 4)
            .fold(MAX_BUNDLE_POLL, Duration::min)
            .max(MIN_BUNDLE_POLL)
    }

    async fn poll_bundle(&self) {
        match self.ca.bundle(&self.identities.bundle()).await {
            Ok(roots) => self.update_bundle(roots),
            Err(e) => warn!(node = %self.node, error = %e, "trust bundle poll failed"),
        }
    }

    fn update_bundle(&self, roots: Vec<CertificateDer<'static>>) {
        if roots.is_empty() || roots == self.identities.bundle() {
            return;
        }
        let names: Vec<String> = roots.iter().map(|r| fingerprint(r)).collect();
        self.identities.set_bundle(roots);
        info!(node = %self.node, roots = ?names, "trust bundle updated");
    }

    /// One certificate for `id`: the lifetime left on it when it arrived, or `None` after a
    /// failure (already logged and counted).
    async fn obtain(&self, id: &SpiffeId) -> Option<Duration> {
        let renewal = self.identities.has(id);
        let (key, csr) = match new_request(id) {
            Ok(pair) => pair,
            Err(e) => {
                warn!(id = %id, error = %e, "identity request not made: key or CSR");
                self.count("failed");
                return None;
            }
        };
        let answer = match self.ca.sign(csr, &self.identities.bundle()).await {
            Ok(answer) => answer,
            Err(CaClientError::Refused {
                status,
                reason,
                message,
                ..
            }) => {
                warn!(id = %id, node = %self.node, status, reason = %reason, detail = %message,
                    "identity request refused");
                self.count("refused");
                return None;
            }
            Err(e) => {
                warn!(id = %id, node = %self.node, error = %e, "identity request failed");
                self.count("failed");
                return None;
            }
        };
        // The bundle first: the new leaf may chain to a root this node has not seen yet.
        match parse_bundle(&answer.bundle) {
            Ok(roots) => self.update_bundle(roots),
            Err(e) => warn!(id = %id, error = %e, "CA answer: bundle ignored"),
        }
        let inserted = answer
            .cert_chain
            .iter()
            .map(|pem| pem_certs(pem))
            .collect::<Result<Vec<_>, _>>()
            .map(|chain| chain.into_iter().flatten().collect::<Vec<_>>())
            .map_err(|e| e.to_string())
            .and_then(|chain| {
                let der = PrivatePkcs8KeyDer::from(key.serialize_der());
                self.identities
                    .insert(id.clone(), chain, PrivateKeyDer::Pkcs8(der))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = inserted {
            warn!(id = %id, error = %e, "identity request failed: unusable certificate");
            self.count("failed");
            return None;
        }
        let info = self.identities.leaf_info(id)?;
        let (expires, root) = (
            rfc3339(info.not_after),
            info.root.as_deref().unwrap_or("unknown"),
        );
        if renewal {
            info!(id = %id, serial = %info.serial, expires = %expires, root = %root, "identity renewed");
            self.count("renewed");
        } else {
            info!(id = %id, serial = %info.serial, expires = %expires, root = %root, "identity issued");
            self.count("issued");
        }
        Some(
            info.not_after
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }

    fn count(&self, result: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.request(result);
        }
    }

    fn report(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.held(self.identities.ids().len(), self.identities.bundle().len());
        }
    }
}

impl Slot {
    fn schedule(&mut self, outcome: Option<Duration>) {
        let now = Instant::now();
        match outcome {
            Some(left) => {
                self.failures = 0;
                self.lifetime = Some(left);
                // Half life, brought forward by up to 10% so that nodes spread out.
                self.due = now + (left / 2).mul_f64(1.0 - fastrand::f64() * 0.1);
            }
            None => {
                let backoff = FIRST_RETRY
                    .saturating_mul(1 << self.failures.min(8))
                    .min(MAX_RETRY);
                self.failures = self.failures.saturating_add(1);
                self.due = now + backoff;
            }
        }
    }
}

/// A fresh P-256 key and a PEM CSR whose one URI SAN is `id`.
pub(crate) fn new_request(id: &SpiffeId) -> Result<(KeyPair, String), rcgen::Error> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}
