//! What the objects become in the model: workloads, nodes, enrollment, services with their
//! endpoints, routes and policies; and how later watch events change it.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use anyhow::Result;
use serde_json::json;

use super::*;
use crate::identity::SpiffeId;
use crate::policy::{PeerAuthMode, Request, Source};

fn endpoints(state: &MeshState, vip: &str) -> BTreeSet<SocketAddr> {
    let dst = SocketAddr::new(vip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])), 80);
    state
        .service_for(dst)
        .map(|t| t.endpoints.iter().copied().collect())
        .unwrap_or_default()
}

fn addrs(list: &[&str]) -> BTreeSet<SocketAddr> {
    list.iter().filter_map(|a| a.parse().ok()).collect()
}

/// The cluster of the first test: `shop` enrolled, `legacy` not.
fn cluster(fake: &FakeApi) -> Result<()> {
    fake.apply(namespace("shop", true))?;
    fake.apply(namespace("legacy", false))?;
    let api = json!({"app": "api"});
    fake.apply(pod(
        "shop",
        "api-1",
        "node-a",
        "192.168.250.1",
        "10.244.1.5",
        api.clone(),
    ))?;
    fake.apply(pod(
        "shop",
        "api-2",
        "node-b",
        "192.168.250.2",
        "10.244.2.5",
        api.clone(),
    ))?;
    let opted_out = json!({"app": "api", "weft.dev/mesh": "disabled"});
    fake.apply(pod(
        "shop",
        "api-3",
        "node-b",
        "192.168.250.2",
        "10.244.2.6",
        opted_out,
    ))?;
    fake.apply(pod(
        "legacy",
        "old",
        "node-a",
        "192.168.250.1",
        "10.244.1.9",
        json!({}),
    ))?;
    // Not workloads: no IP yet, finished, on the host network.
    let mut pending = pod(
        "shop",
        "pending",
        "node-a",
        "192.168.250.1",
        "10.244.1.6",
        api.clone(),
    );
    pending["status"] = json!({"phase": "Pending"});
    fake.apply(pending)?;
    let mut done = pod(
        "shop",
        "done",
        "node-a",
        "192.168.250.1",
        "10.244.1.7",
        api.clone(),
    );
    done["status"]["phase"] = json!("Succeeded");
    fake.apply(done)?;
    let mut host = pod(
        "shop",
        "host",
        "node-a",
        "192.168.250.1",
        "192.168.250.1",
        api,
    );
    host["spec"]["hostNetwork"] = json!(true);
    fake.apply(host)?;
    fake.apply(service("shop", "api", "10.96.0.10", "api", json!(8080)))?;
    let ready = [
        ("api-1", "10.244.1.5", true),
        ("api-2", "10.244.2.5", true),
        ("api-3", "10.244.2.6", false),
    ];
    fake.apply(slice("shop", "api", &ready))?;
    Ok(())
}

#[tokio::test]
async fn list_then_watch_builds_workloads_services_and_enrollment() -> Result<()> {
    let fake = FakeApi::start().await?;
    cluster(&fake)?;
    let mut h = Harness::start(fake)?;
    let state = h
        .until("the listed cluster", |s| s.workloads.len() == 4)
        .await?;

    let names: Vec<String> = state.workloads.keys().map(ToString::to_string).collect();
    assert_eq!(
        names,
        ["legacy/old", "shop/api-1", "shop/api-2", "shop/api-3"]
    );
    let api1 = &state.workloads[&key("shop", "api-1")];
    assert_eq!(api1.node, "node-a");
    assert_eq!(api1.service_account, "api-1-sa");
    assert_eq!(api1.ips, ["10.244.1.5".parse::<IpAddr>()?]);
    assert_eq!(api1.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(api1.uid.len(), 36, "the pod UID: {}", api1.uid);
    assert!(api1.cgroup.is_none());
    assert!(api1.enrolled);
    assert!(
        !state.workloads[&key("shop", "api-3")].enrolled,
        "opted out"
    );
    assert!(
        !state.workloads[&key("legacy", "old")].enrolled,
        "namespace not enrolled"
    );
    assert_eq!(
        state.nodes["node-b"].addresses,
        ["192.168.250.2".parse::<IpAddr>()?]
    );
    assert_eq!(state.nodes.len(), 2);
    // api-3 is not ready.
    assert_eq!(
        endpoints(&state, "10.96.0.10"),
        addrs(&["10.244.1.5:8080", "10.244.2.5:8080"])
    );

    h.fake.apply(namespace("legacy", true))?;
    h.until("legacy enrolled", |s| {
        s.workloads[&key("legacy", "old")].enrolled
    })
    .await?;

    h.fake.delete("Pod", "shop", "api-2");
    let state = h
        .until("api-2 gone", |s| {
            !s.workloads.contains_key(&key("shop", "api-2"))
        })
        .await?;
    assert_eq!(endpoints(&state, "10.96.0.10"), addrs(&["10.244.1.5:8080"]));

    h.fake
        .apply(slice("shop", "api", &[("api-3", "10.244.2.6", true)]))?;
    h.until("api-3 alone ready", |s| {
        endpoints(s, "10.96.0.10") == addrs(&["10.244.2.6:8080"])
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn named_target_ports_resolve_from_the_selected_pods() -> Result<()> {
    let fake = FakeApi::start().await?;
    fake.apply(namespace("shop", true))?;
    fake.apply(pod(
        "shop",
        "web-1",
        "node-a",
        "192.168.250.1",
        "10.244.1.5",
        json!({"app": "web"}),
    ))?;
    fake.apply(service("shop", "web", "10.96.0.20", "web", json!("http")))?;
    // No selected pod names a port `grpc`: that port is left out, the service stays.
    fake.apply(service("shop", "rpc", "10.96.0.21", "web", json!("grpc")))?;
    fake.apply(slice("shop", "web", &[("web-1", "10.244.1.5", true)]))?;
    let mut h = Harness::start(fake)?;
    let state = h.until("both services", |s| s.services.len() == 2).await?;
    let web = &state.services[&service_key("shop", "web")];
    assert_eq!(web.ports[0].target_port, 8080);
    assert_eq!(endpoints(&state, "10.96.0.20"), addrs(&["10.244.1.5:8080"]));
    assert!(state.services[&service_key("shop", "rpc")].ports.is_empty());
    assert_eq!(
        h.metrics.rejections(super::super::Kind::Service),
        0,
        "a port is not an object"
    );
    Ok(())
}

#[tokio::test]
async fn routes_and_policies_reach_the_model() -> Result<()> {
    let fake = FakeApi::start().await?;
    fake.apply(namespace("shop", true))?;
    fake.apply(pod(
        "shop",
        "api-1",
        "node-a",
        "192.168.250.1",
        "10.244.1.5",
        json!({"app": "api"}),
    ))?;
    fake.apply(service("shop", "web", "10.96.0.20", "web", json!(8080)))?;
    fake.apply(service(
        "shop",
        "web-v2",
        "10.96.0.21",
        "web-v2",
        json!(8080),
    ))?;
    let prefix = json!({"type": "PathPrefix", "value": "/v2"});
    fake.apply(http_route("shop", "split", "web", "web-v2", prefix.clone()))?;
    // Attached to a Gateway only: not a mesh route, not an error.
    let mut north_south = http_route("shop", "edge", "web", "web", prefix);
    north_south["spec"]["parentRefs"] = json!([{"name": "public-gateway"}]);
    fake.apply(north_south)?;
    let deny = json!({
        "selector": {"matchLabels": {"app": "api"}},
        "action": "DENY",
        "rules": [{"from": [{"namespaces": ["other"]}]}],
    });
    fake.apply(weft_object(
        "AuthorizationPolicy",
        "shop",
        "deny-other",
        deny,
    ))?;
    fake.apply(weft_object(
        "PeerAuthentication",
        "shop",
        "default",
        json!({"mode": "STRICT"}),
    ))?;
    let mut h = Harness::start(fake)?;
    let state = h
        .until("the route and both policies", |s| {
            s.routes.len() == 1
                && s.authorization_policies.len() == 1
                && s.peer_authentications.len() == 1
        })
        .await?;
    assert!(state.routes_for(&service_key("shop", "web"), 80).is_some());
    assert!(
        state
            .routes_for(&service_key("shop", "web-v2"), 80)
            .is_none()
    );
    let api = &state.workloads[&key("shop", "api-1")];
    assert_eq!(state.peer_authentication(api), PeerAuthMode::Strict);
    let other = SpiffeId::new("cluster.local", "other", "default");
    let friend = SpiffeId::new("cluster.local", "shop", "default");
    let ask = |id| Request {
        source: Source { id: Some(id) },
        port: 8080,
        http: None,
    };
    let denied = state.authorize(api, &ask(&other));
    assert!(!denied.allow);
    assert_eq!(&*denied.policy, "shop/deny-other");
    assert!(state.authorize(api, &ask(&friend)).allow);
    for kind in super::super::Kind::ALL {
        assert_eq!(h.metrics.rejections(kind), 0, "{kind}");
    }
    Ok(())
}
