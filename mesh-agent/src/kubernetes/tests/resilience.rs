//! What the source does with an imperfect API server and imperfect objects: relists after 410
//! Gone, ignores bookmarks, absorbs bursts, skips invalid objects, and carries on without a
//! kind whose CRD is not installed.

use anyhow::Result;
use serde_json::json;

use super::super::Kind;
use super::*;

/// A namespace with a pod and a service, listed.
async fn small_cluster() -> Result<Harness> {
    let fake = FakeApi::start().await?;
    fake.apply(namespace("shop", true))?;
    fake.apply(pod(
        "shop",
        "a",
        "node-a",
        "192.168.250.1",
        "10.244.1.5",
        json!({"app": "a"}),
    ))?;
    fake.apply(service("shop", "a", "10.96.0.10", "a", json!(8080)))?;
    fake.apply(slice("shop", "a", &[("a", "10.244.1.5", true)]))?;
    let mut h = Harness::start(fake)?;
    h.until("the first snapshot", |s| s.workloads.len() == 1)
        .await?;
    Ok(h)
}

#[tokio::test]
async fn gone_relists_and_converges() -> Result<()> {
    let mut h = small_cluster().await?;
    let before = h.rx.borrow().clone();
    h.fake.compact();
    // Changes the resumed watches would have carried: only a relist can see them now.
    h.fake.delete("Pod", "shop", "a");
    h.fake.apply(pod(
        "shop",
        "b",
        "node-a",
        "192.168.250.1",
        "10.244.1.6",
        json!({"app": "a"}),
    ))?;
    h.fake
        .apply(slice("shop", "a", &[("b", "10.244.1.6", true)]))?;
    let b_endpoint: std::net::SocketAddr = "10.244.1.6:8080".parse()?;
    let state = h
        .until("b in place of a, as workload and endpoint", |s| {
            let endpoints = s
                .service_port(&service_key("shop", "a"), 80)
                .map(|t| &t.endpoints);
            s.workloads
                .keys()
                .map(ToString::to_string)
                .eq(["shop/b".to_string()])
                && endpoints == Some(&vec![b_endpoint])
        })
        .await?;
    h.poll("a relist of every kind", |h| {
        Kind::ALL
            .iter()
            .all(|k| h.fake.list_requests(k.as_str()) >= 2)
    })
    .await?;
    let json = |s: &MeshState| serde_json::to_value(s).unwrap_or_default();
    assert_eq!(json(&state)["namespaces"], json(&before)["namespaces"]);
    assert_eq!(json(&state)["nodes"], json(&before)["nodes"]);
    Ok(())
}

#[tokio::test]
async fn bookmarks_change_nothing() -> Result<()> {
    let h = small_cluster().await?;
    let snapshots = h.metrics.snapshots();
    let events: Vec<u64> = Kind::ALL
        .iter()
        .map(|k| h.metrics.events(*k, "apply"))
        .collect();
    let bookmarks = h.fake.bookmarks_sent();
    // Two rounds of bookmarks on every kind's watch.
    let wanted = bookmarks + 2 * Kind::ALL.len() as u64;
    h.poll("bookmarks on every watch", |h| {
        h.fake.bookmarks_sent() >= wanted
    })
    .await?;
    assert_eq!(h.metrics.snapshots(), snapshots);
    let after: Vec<u64> = Kind::ALL
        .iter()
        .map(|k| h.metrics.events(*k, "apply"))
        .collect();
    assert_eq!(after, events);
    for kind in Kind::ALL {
        assert_eq!(
            h.fake.list_requests(kind.as_str()),
            1,
            "{kind} was not relisted"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_burst_is_published_in_few_snapshots() -> Result<()> {
    let mut h = small_cluster().await?;
    let snapshots = h.metrics.snapshots();
    for i in 0..1000u32 {
        let vip = format!("10.97.{}.{}", i / 250, i % 250 + 1);
        h.fake
            .apply(service("shop", &format!("s{i}"), &vip, "a", json!(8080)))?;
    }
    h.until("1,001 services", |s| s.services.len() == 1001)
        .await?;
    h.poll("every event counted", |h| {
        h.metrics.events(Kind::Service, "apply") == 1000
    })
    .await?;
    let published = h.metrics.snapshots() - snapshots;
    assert!(published >= 1);
    assert!(published <= 50, "{published} snapshots for 1,000 events");
    assert_eq!(h.metrics.objects(Kind::Service), 1001);
    Ok(())
}

#[tokio::test]
async fn invalid_objects_are_skipped_and_counted() -> Result<()> {
    let fake = FakeApi::start().await?;
    fake.apply(namespace("shop", true))?;
    fake.apply(pod(
        "shop",
        "a",
        "node-a",
        "192.168.250.1",
        "10.244.1.5",
        json!({"app": "a"}),
    ))?;
    let mut bad_pod = pod(
        "shop",
        "b",
        "node-a",
        "192.168.250.1",
        "10.244.1.6",
        json!({}),
    );
    bad_pod["status"]["podIPs"] = json!([{"ip": "10.244.1.300"}]);
    fake.apply(bad_pod)?;
    for (name, vip) in [
        ("web", "10.96.0.20"),
        ("web-v2", "10.96.0.21"),
        ("api", "10.96.0.22"),
    ] {
        fake.apply(service("shop", name, vip, name, json!(8080)))?;
    }
    let prefix = json!({"type": "PathPrefix", "value": "/v2"});
    fake.apply(http_route("shop", "good", "web", "web-v2", prefix.clone()))?;
    let bad_regex = json!({"type": "RegularExpression", "value": "(["});
    fake.apply(http_route("shop", "bad-match", "api", "web-v2", bad_regex))?;
    let mut garbled = http_route("shop", "garbled", "api", "web-v2", prefix.clone());
    garbled["spec"]["rules"] = json!("everything");
    fake.apply(garbled)?;
    let allow = json!({"rules": [{"from": [{"namespaces": ["shop"]}]}]});
    fake.apply(weft_object("AuthorizationPolicy", "shop", "good", allow))?;
    fake.apply(weft_object(
        "AuthorizationPolicy",
        "shop",
        "bad",
        json!({"action": "PERMIT"}),
    ))?;
    let mut h = Harness::start(fake)?;
    let state = h
        .until("the valid objects", |s| {
            s.routes.len() == 1 && s.authorization_policies.len() == 1
        })
        .await?;
    assert!(state.routes_for(&service_key("shop", "web"), 80).is_some());
    assert!(state.routes_for(&service_key("shop", "api"), 80).is_none());
    assert_eq!(state.authorization_policies[0].name, "good");
    assert!(state.workloads.contains_key(&key("shop", "a")));
    assert!(!state.workloads.contains_key(&key("shop", "b")));
    assert_eq!(state.services.len(), 3);
    h.poll("the rejections counted", |h| {
        h.metrics.rejections(Kind::HttpRoute) == 2
    })
    .await?;
    assert_eq!(h.metrics.rejections(Kind::AuthorizationPolicy), 1);
    assert_eq!(h.metrics.rejections(Kind::Pod), 1);

    // Later snapshots do not count the same rejections again; a fixed route comes in.
    let fixed = json!({"type": "RegularExpression", "value": "/v[0-9]+"});
    h.fake
        .apply(http_route("shop", "bad-match", "api", "web-v2", fixed))?;
    h.until("the fixed route", |s| {
        s.routes_for(&service_key("shop", "api"), 80).is_some()
    })
    .await?;
    assert_eq!(h.metrics.rejections(Kind::HttpRoute), 2);
    assert_eq!(h.metrics.rejections(Kind::AuthorizationPolicy), 1);
    Ok(())
}

#[tokio::test]
async fn a_kind_the_server_does_not_serve_counts_as_empty() -> Result<()> {
    let fake = FakeApi::start().await?;
    fake.set_served("GRPCRoute", false)?;
    fake.set_served("PeerAuthentication", false)?;
    fake.apply(namespace("shop", true))?;
    let mut h = Harness::start(fake)?;
    h.until("a snapshot without those kinds", |s| {
        s.namespaces.contains_key("shop")
    })
    .await?;
    assert!(h.metrics.events(Kind::GrpcRoute, "error") >= 1);
    // Once the CRD is installed, the watcher's retries find it.
    h.fake.set_served("PeerAuthentication", true)?;
    h.fake.apply(weft_object(
        "PeerAuthentication",
        "shop",
        "default",
        json!({"mode": "STRICT"}),
    ))?;
    h.until("the peer authentication", |s| {
        s.peer_authentications.len() == 1
    })
    .await?;
    Ok(())
}
