//! Tests of the identity store: over real TLS on loopback (`tls`) and without (`store`).

mod store;
mod tls;

use super::testca::TestCa;
use super::{Identities, SpiffeId};

const TD: &str = "cluster.local";

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "shop", sa)
}

/// A client store holding `web` and a server store holding `api`, both from `ca`.
fn pair(ca: &TestCa) -> (Identities, Identities) {
    let (client, server) = (Identities::new(TD), Identities::new(TD));
    for (store, name) in [(&client, "web"), (&server, "api")] {
        let (chain, key) = ca.issue(&id(name));
        store.insert(id(name), chain, key).expect("insert");
        store.set_bundle(vec![ca.root.clone()]);
    }
    (client, server)
}
