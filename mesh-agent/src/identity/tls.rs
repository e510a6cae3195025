//! The rustls configurations of mesh tunnels: TLS 1.3 only, ALPN `h2`, mutual authentication
//! with workload certificates, no session resumption (every handshake re-checks certificates
//! against the bundle in force). One client configuration per source identity and one server
//! configuration are built and cached; they read the store at every handshake.

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use super::resolve::{ClientResolver, ServerResolver};
use super::verify::{ClientVerifier, ServerVerifier};
use super::{Identities, SpiffeId};

/// The protocol spoken inside mesh tunnels (HTTP/2 CONNECT).
pub const ALPN_H2: &[u8] = b"h2";

// The ring provider implements TLS 1.3, so restricting to it cannot fail.
const TLS13_ONLY: &str = "the ring provider supports TLS 1.3";

impl Identities {
    /// A client configuration presenting `source`'s current certificate; `None` when `source`
    /// is not held. The server name of each connection must be the destination identity's
    /// [`SpiffeId::server_name`]: the server's certificate must name exactly that identity.
    pub fn client_config(&self, source: &SpiffeId) -> Option<Arc<ClientConfig>> {
        if !self.has(source) {
            return None;
        }
        Some(self.cached_client(source, || {
            let store = self.store.clone();
            let mut config = ClientConfig::builder_with_provider(store.provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect(TLS13_ONLY)
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ServerVerifier {
                    store: store.clone(),
                }))
                .with_client_cert_resolver(Arc::new(ClientResolver {
                    store,
                    source: source.clone(),
                }));
            config.alpn_protocols = vec![ALPN_H2.to_vec()];
            config.resumption = Resumption::disabled();
            Arc::new(config)
        }))
    }

    /// The server configuration: presents the certificate of the identity named by the
    /// client's server name (unknown names fail the handshake) and requires a client
    /// certificate chained to the current bundle.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.cached_server(|| {
            let store = self.store.clone();
            let mut config = ServerConfig::builder_with_provider(store.provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect(TLS13_ONLY)
                .with_client_cert_verifier(Arc::new(ClientVerifier {
                    store: store.clone(),
                }))
                .with_cert_resolver(Arc::new(ServerResolver { store }));
            config.alpn_protocols = vec![ALPN_H2.to_vec()];
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
            Arc::new(config)
        })
    }
}
