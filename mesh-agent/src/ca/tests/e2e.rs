//! The CA in-process on loopback with real agents' identity managers: issuance, renewal with
//! a short TTL, refusals (counted and answered with a reason), mTLS between two nodes with the
//! certificates it issued, and a root rotation from begin to finish.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::super::{activate, begin, finish};
use super::harness::{WAIT, counter, eventually, logs, mesh, roots, scrape};
use super::{TD, id};
use crate::identity::caclient::{CaClient, CaClientError};
use crate::identity::testca::handshake;
use crate::identity::{Identities, SpiffeId, new_request};

#[tokio::test]
async fn a_node_gets_and_renews_the_identities_of_its_pods() {
    let logs = logs();
    let mesh = mesh("ca-renew", Duration::from_secs(2)).await;
    let root = mesh.file_roots()[0].clone();
    let (a, wanted_a, registry) = mesh.manager("node-a", &["web"]);

    let mut serials = BTreeSet::new();
    let renewed = eventually(WAIT, || {
        serials.extend(a.leaf_info(&id("web")).map(|i| i.serial));
        serials.len() >= 3
    })
    .await;
    assert!(renewed, "serials seen: {serials:?}");
    assert_eq!(roots(&a), std::slice::from_ref(&root));
    let issued = logs.events("identity issued", "root", &root);
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["id"], "spiffe://cluster.local/ns/shop/sa/web");
    let renewals = logs.events("identity renewed", "root", &root);
    assert!(renewals.len() >= 2, "{renewals:?}");
    for event in renewals.iter().chain(&issued) {
        let serial = event["serial"].as_str().unwrap_or_default();
        assert!(serials.contains(serial), "{event}");
        assert!(
            event["expires"].as_str().is_some_and(|e| e.ends_with('Z')),
            "{event}"
        );
    }
    let ca_issued = logs.events("certificate issued", "root", &root);
    assert!(
        ca_issued.len() >= 3 && ca_issued.iter().all(|e| e["node"] == "node-a"),
        "{ca_issued:?}"
    );

    // api runs on node-b: node-a may not have it, and keeps what it has.
    wanted_a.send_replace([id("web"), id("api")].into());
    let text = prometheus::TextEncoder::new();
    let refused = eventually(WAIT, || {
        let out = text
            .encode_to_string(&registry.gather())
            .unwrap_or_default();
        counter(
            &out,
            "weft_identity_certificate_requests_total{result=\"refused\"}",
        ) >= 1.0
    })
    .await;
    assert!(refused && !a.has(&id("api")) && a.has(&id("web")));
    wanted_a.send_replace([id("web")].into());
    assert!(eventually(WAIT, || !a.has(&id("api"))).await);
}

#[tokio::test]
async fn refusals_answer_a_reason_and_are_counted() {
    let logs = logs();
    let mesh = mesh("ca-refuse", Duration::from_secs(60)).await;
    let known = Identities::new(TD);
    let ask = |token: PathBuf, sa: &str| {
        let client = CaClient::new(mesh.client("node-a", &token));
        let (_, csr) = new_request(&id(sa)).expect("csr");
        async move { client.sign(csr, &[]).await }
    };
    let refused = |result: Result<_, CaClientError>| match result {
        Err(CaClientError::Refused { status, reason, .. }) => Some((status, reason)),
        _ => None,
    };
    assert!(ask(mesh.token("node-a"), "web").await.is_ok());
    assert_eq!(
        refused(ask(mesh.token("node-a"), "api").await),
        Some((403, "not_on_node".into()))
    );
    let wrong = mesh.dir.join("wrong.token");
    std::fs::write(&wrong, "00".repeat(32)).expect("token");
    assert_eq!(
        refused(ask(wrong, "web").await),
        Some((401, "unknown_token".into()))
    );
    // legacy runs on node-a but its namespace is not enrolled.
    let legacy = SpiffeId::new(TD, "plain", "legacy");
    let client = CaClient::new(mesh.client("node-a", &mesh.token("node-a")));
    let (_, csr) = new_request(&legacy).expect("csr");
    assert_eq!(
        refused(client.sign(csr, &known.bundle()).await),
        Some((403, "not_on_node".into()))
    );

    let metrics_addr = mesh.ca.metrics_addr.expect("metrics address");
    let text = tokio::task::spawn_blocking(move || scrape(metrics_addr))
        .await
        .expect("scrape");
    let series = |reason: &str, result: &str| {
        counter(
            &text,
            &format!("weft_ca_requests_total{{reason=\"{reason}\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(series("none", "issued"), 1.0, "{text}");
    assert_eq!(series("not_on_node", "refused"), 2.0, "{text}");
    assert_eq!(series("unknown_token", "refused"), 1.0, "{text}");
    assert_eq!(mesh.ca.metrics.requests("refused", "not_on_node"), 2);
    // Only this test presents an unknown token.
    let refusals = logs.events("certificate request refused", "reason", "unknown_token");
    assert!(
        !refusals.is_empty() && refusals.iter().all(|e| e["node"] == "unknown"),
        "{refusals:?}"
    );
}

#[tokio::test]
async fn nodes_speak_mtls_with_ca_issued_certificates_across_a_root_rotation() {
    let mesh = mesh("ca-rotate-live", Duration::from_secs(2)).await;
    let old = mesh.file_roots();
    let (a, _wanted_a, _) = mesh.manager("node-a", &["web"]);
    let (b, _wanted_b, _) = mesh.manager("node-b", &["api"]);
    assert!(eventually(WAIT, || a.has(&id("web")) && b.has(&id("api"))).await);
    let mtls = || async {
        let client = a.client_config(&id("web")).expect("client config");
        let (c, s) = handshake(client, b.server_config(), id("api").server_name()).await;
        c.map(|c| c.id).and_then(|c| s.map(|s| (c, s.id)))
    };
    assert_eq!(mtls().await, Ok((id("api"), id("web"))));

    let next = begin(&mesh.dir).expect("begin");
    let both = [old[0].clone(), next.clone()];
    assert!(
        eventually(WAIT, || roots(&a) == both && roots(&b) == both).await,
        "{:?}",
        roots(&a)
    );
    assert_eq!(
        a.leaf_info(&id("web")).and_then(|i| i.root),
        Some(old[0].clone())
    );

    activate(&mesh.dir).expect("activate");
    let on_next =
        |s: &Identities, sa: &str| s.leaf_info(&id(sa)).and_then(|i| i.root) == Some(next.clone());
    assert!(eventually(WAIT, || on_next(&a, "web") && on_next(&b, "api")).await);
    assert_eq!(mtls().await, Ok((id("api"), id("web"))));

    let dropped = finish(&mesh.dir).expect("finish");
    assert_eq!(dropped, old);
    assert!(!mesh.dir.join("previous.key").exists());
    assert_eq!(mesh.file_roots(), std::slice::from_ref(&next));
    assert!(
        eventually(WAIT, || roots(&a) == [next.clone()]
            && roots(&b) == [next.clone()])
        .await
    );
    // Renewals go on after the old root is gone: the CA now serves a certificate of the new root.
    let serial = a.leaf_info(&id("web")).map(|i| i.serial);
    assert!(eventually(WAIT, || a.leaf_info(&id("web")).map(|i| i.serial) != serial).await);
    assert!(on_next(&a, "web"));
    assert_eq!(mtls().await, Ok((id("api"), id("web"))));
}
