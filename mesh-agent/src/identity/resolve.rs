//! Which certificate a handshake presents, read from the store at handshake time so that a
//! renewal is picked up by the next handshake.
//!
//! A source node proxy presents the SVID of the workload it dials for; a destination node proxy
//! presents the SVID the client's server name (SNI) asks for, and aborts the handshake when it
//! holds no such identity.

use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::SpiffeId;
use super::store::Store;

#[derive(Debug)]
pub(super) struct ClientResolver {
    pub(super) store: Arc<Store>,
    pub(super) source: SpiffeId,
}

impl ResolvesClientCert for ClientResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.store.certified(&self.source)
    }

    fn has_certs(&self) -> bool {
        self.store.certified(&self.source).is_some()
    }
}

#[derive(Debug)]
pub(super) struct ServerResolver {
    pub(super) store: Arc<Store>,
}

impl ResolvesServerCert for ServerResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let id = SpiffeId::from_server_name(client_hello.server_name()?, &self.store.trust_domain)?;
        self.store.certified(&id)
    }
}
