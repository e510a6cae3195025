//! The store without TLS: what `insert` accepts, what `peer_id` reads, what `Debug` shows.

use super::super::testca::{TestCa, uri};
use super::super::*;
use super::{TD, id, pair};

#[test]
fn identities_are_shared_across_tasks() {
    fn shared<T: Clone + Send + Sync + 'static>() {}
    shared::<Identities>();
    let (ca, store) = (TestCa::new("root"), Identities::new(TD));
    let clone = store.clone();
    let (chain, key) = ca.issue(&id("web"));
    clone.insert(id("web"), chain, key).expect("insert");
    assert!(store.has(&id("web")), "a clone writes the same store");
}

#[test]
fn insert_checks_identity_key_and_curve() {
    let ca = TestCa::new("root");
    let store = Identities::new(TD);
    let (chain, key) = ca.issue(&id("web"));
    let err = store
        .insert(id("api"), chain.clone(), key.clone_key())
        .expect_err("wrong id");
    assert!(matches!(err, IdentityError::WrongId { .. }), "{err}");
    let (_, other_key) = ca.issue(&id("web"));
    let err = store
        .insert(id("web"), chain.clone(), other_key)
        .expect_err("wrong key");
    assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
    let foreign = SpiffeId::new("other.td", "shop", "web");
    let (f_chain, f_key) = ca.issue(&foreign);
    let err = store.insert(foreign, f_chain, f_key).expect_err("foreign");
    assert!(
        matches!(err, IdentityError::WrongTrustDomain { .. }),
        "{err}"
    );

    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384");
    let cert = ca.sign(vec![uri(&id("web").to_string())], -60, 3600, &p384);
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(p384.serialize_der());
    let err = store
        .insert(id("web"), vec![cert], der.into())
        .expect_err("P-384");
    assert!(err.to_string().contains("P-256"), "{err}");

    store.insert(id("web"), chain, key).expect("good");
    assert!(store.has(&id("web")) && store.ids() == [id("web")]);
    store.remove(&id("web"));
    assert!(!store.has(&id("web")) && store.client_config(&id("web")).is_none());
}

#[test]
fn peer_id_wants_exactly_one_spiffe_uri() {
    let ca = TestCa::new("root");
    let dns = rcgen::SanType::DnsName("web.example".to_owned().try_into().expect("dns"));
    for (sans, expected) in [
        (
            vec![uri("spiffe://cluster.local/ns/shop/sa/web")],
            Ok(id("web")),
        ),
        (vec![dns.clone()], Err("no URI SAN")),
        (
            vec![uri("https://example.com/")],
            Err("not a workload SPIFFE ID"),
        ),
        (
            vec![
                uri("spiffe://cluster.local/ns/shop/sa/web"),
                uri("spiffe://cluster.local/ns/shop/sa/api"),
            ],
            Err("2 URI SANs"),
        ),
    ] {
        let (chain, _) = ca.issue_with(sans, -60, 60);
        match (peer_id(&chain), expected) {
            (Ok(found), Ok(want)) => assert_eq!(found, want),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e} lacks {want:?}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }
    assert_eq!(peer_id(&[]), Err(IdentityError::NoCertificate));
}

#[test]
fn debug_output_names_identities_not_keys() {
    let ca = TestCa::new("root");
    let (client, _) = pair(&ca);
    let text = format!("{client:?}");
    assert!(
        text.contains("web") && text.contains(&fingerprint(&ca.root)),
        "{text}"
    );
    let json = serde_json::to_value(client.leaf_info(&id("web"))).expect("json");
    assert_eq!(json["id"], "spiffe://cluster.local/ns/shop/sa/web");
    assert!(
        json["not_after"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{json}"
    );
}
