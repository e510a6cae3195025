//! [`Identities`]: the SVIDs this node holds (certificate chain and key per workload identity)
//! and the trust bundle, shared by the TLS configurations built from them.
//!
//! The TLS resolvers and verifiers (see `resolve` and `verify`) read the [`Store`] at every
//! handshake, so a renewed certificate or a rotated bundle is used by the next handshake
//! without rebuilding any configuration. `manager` fills the store from the CA.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use tracing::warn;

use super::certs::{CertInfo, fingerprint, peer_id};
use super::{IdentityError, SpiffeId};

/// The node's workload certificates and trust bundle. Cheap to clone; every clone sees the
/// same store.
#[derive(Clone)]
pub struct Identities {
    pub(super) store: Arc<Store>,
    configs: Arc<Configs>,
}

/// TLS configurations built once and reused (they read the store at handshake time).
#[derive(Default)]
struct Configs {
    clients: Mutex<HashMap<SpiffeId, Arc<ClientConfig>>>,
    server: OnceLock<Arc<ServerConfig>>,
}

/// What resolvers and verifiers read at handshake time.
pub(super) struct Store {
    pub(super) trust_domain: String,
    pub(super) provider: Arc<CryptoProvider>,
    svids: RwLock<BTreeMap<SpiffeId, Arc<CertifiedKey>>>,
    bundle: RwLock<Arc<Bundle>>,
}

/// The trust bundle and what is derived from it, replaced whole on every change.
pub(super) struct Bundle {
    pub(super) roots: Vec<CertificateDer<'static>>,
    pub(super) store: Arc<RootCertStore>,
    /// Verifies client chains against `store`; `None` while the bundle is empty.
    pub(super) client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl Identities {
    /// An empty store for `trust_domain`: no identities, an empty bundle (every handshake
    /// fails until both are set).
    pub fn new(trust_domain: &str) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let empty = Bundle::new(Vec::new(), &provider);
        Identities {
            store: Arc::new(Store {
                trust_domain: trust_domain.to_owned(),
                provider,
                svids: RwLock::new(BTreeMap::new()),
                bundle: RwLock::new(Arc::new(empty)),
            }),
            configs: Arc::default(),
        }
    }

    pub fn trust_domain(&self) -> &str {
        &self.store.trust_domain
    }

    /// Holds `chain` (leaf first) and `key` for `id`, replacing any previous certificate.
    /// The leaf must name `id` as its one URI SAN, and `key` must be its ECDSA P-256 key.
    pub fn insert(
        &self,
        id: SpiffeId,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), IdentityError> {
        if id.trust_domain() != self.store.trust_domain {
            return Err(IdentityError::WrongTrustDomain {
                id,
                trust_domain: self.store.trust_domain.clone(),
            });
        }
        let found = peer_id(&chain)?;
        if found != id {
            return Err(IdentityError::WrongId {
                id,
                found: Box::new(found),
            });
        }
        let key_error = |reason: String| IdentityError::Key {
            id: id.clone(),
            reason,
        };
        let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key)
            .map_err(|e| key_error(e.to_string()))?;
        if signer
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
            .is_none()
        {
            return Err(key_error("not an ECDSA P-256 key".into()));
        }
        let certified = CertifiedKey::new(chain, signer);
        if certified.keys_match().is_err() {
            return Err(IdentityError::KeyMismatch { id });
        }
        write(&self.store.svids).insert(id, Arc::new(certified));
        Ok(())
    }

    /// Stops presenting `id`; handshakes that need it fail from now on.
    pub fn remove(&self, id: &SpiffeId) {
        write(&self.store.svids).remove(id);
        lock(&self.configs.clients).remove(id);
    }

    pub fn has(&self, id: &SpiffeId) -> bool {
        read(&self.store.svids).contains_key(id)
    }

    /// The identities held, in order.
    pub fn ids(&self) -> Vec<SpiffeId> {
        read(&self.store.svids).keys().cloned().collect()
    }

    /// Replaces the trust bundle. Certificates that are not valid trust anchors are skipped
    /// (and logged); an empty bundle makes every handshake fail.
    pub fn set_bundle(&self, roots: Vec<CertificateDer<'static>>) {
        let bundle = Bundle::new(roots, &self.store.provider);
        *write(&self.store.bundle) = Arc::new(bundle);
    }

    /// The trust bundle in force.
    pub fn bundle(&self) -> Vec<CertificateDer<'static>> {
        self.store.bundle().roots.clone()
    }

    /// Serial, validity and root of the certificate held for `id`.
    pub fn leaf_info(&self, id: &SpiffeId) -> Option<CertInfo> {
        let certified = self.store.certified(id)?;
        CertInfo::of(&certified.cert, &self.store.bundle().roots).ok()
    }

    pub(super) fn cached_client(
        &self,
        source: &SpiffeId,
        build: impl FnOnce() -> Arc<ClientConfig>,
    ) -> Arc<ClientConfig> {
        lock(&self.configs.clients)
            .entry(source.clone())
            .or_insert_with(build)
            .clone()
    }

    pub(super) fn cached_server(
        &self,
        build: impl FnOnce() -> Arc<ServerConfig>,
    ) -> Arc<ServerConfig> {
        self.configs.server.get_or_init(build).clone()
    }
}

impl Store {
    pub(super) fn certified(&self, id: &SpiffeId) -> Option<Arc<CertifiedKey>> {
        read(&self.svids).get(id).cloned()
    }

    pub(super) fn bundle(&self) -> Arc<Bundle> {
        read(&self.bundle).clone()
    }
}

impl Bundle {
    fn new(roots: Vec<CertificateDer<'static>>, provider: &Arc<CryptoProvider>) -> Self {
        let mut store = RootCertStore::empty();
        let mut kept = Vec::with_capacity(roots.len());
        for root in roots {
            match store.add(root.clone()) {
                Ok(()) => kept.push(root),
                Err(e) => warn!(
                    root = %fingerprint(&root),
                    error = %e,
                    "trust bundle: certificate skipped, not a usable root"
                ),
            }
        }
        let store = Arc::new(store);
        let client_verifier = (!kept.is_empty())
            .then(|| WebPkiClientVerifier::builder_with_provider(store.clone(), provider.clone()))
            .and_then(|builder| match builder.build() {
                Ok(verifier) => Some(verifier),
                Err(e) => {
                    warn!(error = %e, "trust bundle: client verifier not built");
                    None
                }
            });
        Bundle {
            roots: kept,
            store,
            client_verifier,
        }
    }
}

/// Names and fingerprints only: keys never appear in logs.
impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roots: Vec<String> = self.bundle().iter().map(|r| fingerprint(r)).collect();
        f.debug_struct("Identities")
            .field("trust_domain", &self.store.trust_domain)
            .field("ids", &self.ids())
            .field("roots", &roots)
            .finish()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

// A panic while a lock was held leaves plain data behind (maps of Arcs), still consistent.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}
