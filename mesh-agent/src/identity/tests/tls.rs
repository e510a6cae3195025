//! Identities over real TLS on loopback: mutual authentication with CA-signed workload
//! certificates, and every way a handshake must fail.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::super::testca::{TestCa, handshake, uri};
use super::super::*;
use super::{TD, id, pair};

fn roots_of(ca: &TestCa) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(ca.root.clone()).expect("root");
    roots
}

fn client_of(store: &Identities, name: &str) -> Arc<ClientConfig> {
    store.client_config(&id(name)).expect("client config")
}

#[tokio::test]
async fn mutual_tls_each_side_sees_the_other_identity() {
    let ca = TestCa::new("root");
    let (client, server) = pair(&ca);
    let (c, s) = handshake(
        client_of(&client, "web"),
        server.server_config(),
        id("api").server_name(),
    )
    .await;
    let (c, s) = (c.expect("client side"), s.expect("server side"));
    assert_eq!(c.id, id("api"));
    assert_eq!(s.id, id("web"));
    assert_eq!(
        Some(c.serial),
        server.leaf_info(&id("api")).map(|i| i.serial)
    );
    assert_eq!(
        Some(s.serial),
        client.leaf_info(&id("web")).map(|i| i.serial)
    );
    let info = client.leaf_info(&id("web")).expect("info");
    assert_eq!(info.root, Some(fingerprint(&ca.root)));
    assert!(info.not_before < info.not_after);
}

#[tokio::test]
async fn unknown_server_name_fails() {
    let ca = TestCa::new("root");
    let (client, server) = pair(&ca);
    let (c, s) = handshake(
        client_of(&client, "web"),
        server.server_config(),
        id("db").server_name(),
    )
    .await;
    assert!(c.is_err() && s.is_err(), "{c:?} {s:?}");
    let not_a_mesh_name = ServerName::try_from("example.com").expect("name");
    let (c, s) = handshake(
        client_of(&client, "web"),
        server.server_config(),
        not_a_mesh_name,
    )
    .await;
    assert!(c.is_err() && s.is_err(), "{c:?} {s:?}");
}

#[tokio::test]
async fn a_server_presenting_another_identity_is_refused() {
    let ca = TestCa::new("root");
    let (client, _) = pair(&ca);
    // A server that answers every name with its own (valid, CA-signed) certificate.
    let (chain, key) = ca.issue(&id("db"));
    let roots = Arc::new(roots_of(&ca));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .expect("verifier");
    let rogue = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("rogue config");
    let (c, _) = handshake(
        client_of(&client, "web"),
        Arc::new(rogue),
        id("api").server_name(),
    )
    .await;
    let error = c.expect_err("client must refuse");
    assert!(
        error.contains("WrongId") && error.contains("\"db\""),
        "{error}"
    );
}

#[tokio::test]
async fn certificates_from_an_unknown_ca_fail_both_ways() {
    let (ca, other) = (TestCa::new("root"), TestCa::new("other"));
    let (client, server) = pair(&ca);
    let (chain, key) = other.issue(&id("api"));
    server.insert(id("api"), chain, key).expect("insert");
    let (c, _) = handshake(
        client_of(&client, "web"),
        server.server_config(),
        id("api").server_name(),
    )
    .await;
    assert!(c.is_err(), "client accepted an unknown CA: {c:?}");

    let (client, server) = pair(&ca);
    let (chain, key) = other.issue(&id("web"));
    client.insert(id("web"), chain, key).expect("insert");
    let (c, s) = handshake(
        client_of(&client, "web"),
        server.server_config(),
        id("api").server_name(),
    )
    .await;
    assert!(
        c.is_err() && s.is_err(),
        "server accepted an unknown CA: {s:?}"
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_fail() {
    let ca = TestCa::new("root");
    for (from, until) in [(-7200, -3600), (3600, 7200)] {
        let (client, server) = pair(&ca);
        let (chain, key) = ca.issue_with(vec![uri(&id("api").to_string())], from, until);
        server.insert(id("api"), chain, key).expect("insert");
        let (c, _) = handshake(
            client_of(&client, "web"),
            server.server_config(),
            id("api").server_name(),
        )
        .await;
        assert!(
            c.is_err(),
            "server certificate valid {from}..{until} accepted"
        );

        let (client, server) = pair(&ca);
        let (chain, key) = ca.issue_with(vec![uri(&id("web").to_string())], from, until);
        client.insert(id("web"), chain, key).expect("insert");
        let (_, s) = handshake(
            client_of(&client, "web"),
            server.server_config(),
            id("api").server_name(),
        )
        .await;
        assert!(
            s.is_err(),
            "client certificate valid {from}..{until} accepted"
        );
    }
}

#[tokio::test]
async fn a_client_without_certificate_is_refused() {
    let ca = TestCa::new("root");
    let (_, server) = pair(&ca);
    let roots = roots_of(&ca);
    let anonymous =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let (c, s) = handshake(
        Arc::new(anonymous),
        server.server_config(),
        id("api").server_name(),
    )
    .await;
    assert!(c.is_err() && s.is_err(), "{c:?} {s:?}");
}

#[tokio::test]
async fn a_renewed_certificate_is_presented_by_the_next_handshake() {
    let ca = TestCa::new("root");
    let (client, server) = pair(&ca);
    let (client_config, server_config) = (client_of(&client, "web"), server.server_config());
    let (c1, s1) = handshake(
        client_config.clone(),
        server_config.clone(),
        id("api").server_name(),
    )
    .await;
    let (c1, s1) = (c1.expect("first"), s1.expect("first"));
    for (store, name) in [(&client, "web"), (&server, "api")] {
        let (chain, key) = ca.issue(&id(name));
        store.insert(id(name), chain, key).expect("renewal");
    }
    // The same configurations: they read the store at handshake time.
    let (c2, s2) = handshake(client_config, server_config, id("api").server_name()).await;
    let (c2, s2) = (c2.expect("second"), s2.expect("second"));
    assert_ne!(c1.serial, c2.serial);
    assert_ne!(s1.serial, s2.serial);
    assert_eq!(
        Some(c2.serial),
        server.leaf_info(&id("api")).map(|i| i.serial)
    );
    assert_eq!(
        Some(s2.serial),
        client.leaf_info(&id("web")).map(|i| i.serial)
    );
}

#[tokio::test]
async fn a_bundle_of_two_roots_trusts_both_until_one_is_dropped() {
    let (old, new) = (TestCa::new("old"), TestCa::new("new"));
    let (client, server) = (Identities::new(TD), Identities::new(TD));
    let (chain, key) = old.issue(&id("web"));
    client.insert(id("web"), chain, key).expect("insert");
    let (chain, key) = new.issue(&id("api"));
    server.insert(id("api"), chain, key).expect("insert");
    for store in [&client, &server] {
        store.set_bundle(vec![old.root.clone(), new.root.clone()]);
    }
    let connect = || {
        handshake(
            client_of(&client, "web"),
            server.server_config(),
            id("api").server_name(),
        )
    };
    let (c, s) = connect().await;
    assert!(c.is_ok() && s.is_ok(), "{c:?} {s:?}");
    assert_eq!(
        server.leaf_info(&id("api")).and_then(|i| i.root),
        Some(fingerprint(&new.root))
    );

    for store in [&client, &server] {
        store.set_bundle(vec![new.root.clone()]);
    }
    let (_, s) = connect().await;
    assert!(s.is_err(), "the server still trusts the dropped root");
    assert_eq!(client.leaf_info(&id("web")).and_then(|i| i.root), None);

    for store in [&client, &server] {
        store.set_bundle(vec![old.root.clone()]);
    }
    let (c, _) = connect().await;
    assert!(c.is_err(), "the client still trusts the dropped root");
}
