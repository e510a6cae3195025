use std::path::Path;

use super::*;
use crate::state::parse_str;

const MESH: &str = r#"
namespaces:
  - name: shop
    labels: {weft.dev/mesh: enabled}
  - name: legacy
nodes:
  - name: node-a
    addresses: [192.168.250.1]
  - name: node-b
    addresses: [192.168.250.2]
workloads:
  - {name: web, namespace: shop, serviceAccount: web, node: node-a, ips: [10.244.1.2], labels: {app: web}}
  - {name: api, namespace: shop, serviceAccount: api, node: node-b, ips: [10.244.2.2], labels: {app: api}}
  - {name: old, namespace: legacy, node: node-b, ips: [10.244.2.3], labels: {app: old}}
authorizationPolicies:
  - name: only-web
    namespace: shop
    selector: {matchLabels: {app: api}}
    action: ALLOW
    rules:
      - from: [{principals: ["cluster.local/ns/shop/sa/web"]}]
"#;

fn inbound_on(node: &str) -> Arc<Inbound> {
    let state = parse_str(Path::new("mesh.yaml"), MESH).expect("valid state");
    let (_, state) = watch::channel(Arc::new(state));
    let (_, abort) = watch::channel(false);
    let config = InboundConfig {
        connect_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        http: HttpConfig::default(),
    };
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    Inbound::new(node, "cluster.local", state, metrics, config, abort)
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa)
}

const NODE_A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 250, 1));
const API: &str = "10.244.2.2:8080";

#[test]
fn a_caller_from_its_own_node_is_admitted_to_a_local_pod() {
    let inbound = inbound_on("node-b");
    let admitted = inbound
        .admit(
            &id("shop", "web"),
            Some(NODE_A),
            API.parse().unwrap(),
            StreamProtocol::Tcp,
        )
        .expect("admitted");
    assert_eq!(admitted.dst.key.name, "api");
    assert_eq!(
        admitted.dst_id.to_string(),
        "spiffe://cluster.local/ns/shop/sa/api"
    );
}

#[test]
fn admission_refuses_what_the_state_model_does_not_back() {
    let inbound = inbound_on("node-b");
    let web = id("shop", "web");
    let refused = |source: &SpiffeId, peer: Option<IpAddr>, dst: &str| {
        inbound
            .admit(source, peer, dst.parse().unwrap(), StreamProtocol::Tcp)
            .err()
    };
    // Not a pod of this node, not enrolled.
    assert!(matches!(
        refused(&web, Some(NODE_A), "10.244.1.2:80"),
        Some(Refusal::NotHere(_))
    ));
    assert!(matches!(
        refused(&web, Some(NODE_A), "10.244.2.3:80"),
        Some(Refusal::NotHere(_))
    ));
    // An address that is no node.
    let stranger = Some("10.244.1.9".parse().unwrap());
    assert!(matches!(
        refused(&web, stranger, API),
        Some(Refusal::UnknownNode(_))
    ));
    // Node a presenting an identity only node b runs, or one of another trust domain.
    assert!(matches!(
        refused(&id("shop", "api"), Some(NODE_A), API),
        Some(Refusal::WrongPeer { .. })
    ));
    let foreign = SpiffeId::new("elsewhere", "shop", "web");
    assert!(matches!(
        refused(&foreign, Some(NODE_A), API),
        Some(Refusal::WrongPeer { .. })
    ));
}

#[test]
fn opaque_tcp_is_authorized_at_admission_http_per_request() {
    let inbound = inbound_on("node-b");
    let api_self = id("shop", "api");
    // api calling itself from node b: a known identity there, but the policy admits web only.
    let tcp = inbound.admit(&api_self, None, API.parse().unwrap(), StreamProtocol::Tcp);
    assert!(
        matches!(tcp, Err(Refusal::Denied(ref p)) if p.is_empty()),
        "{:?}",
        tcp.err()
    );
    assert_eq!(
        tcp.err().map(|r| r.status()),
        Some(::http::StatusCode::FORBIDDEN)
    );
    // Over HTTP the decision waits for each request.
    let http = inbound.admit(&api_self, None, API.parse().unwrap(), StreamProtocol::Http1);
    assert!(http.is_ok());
    let text = inbound.metrics.encode().expect("metrics");
    assert!(text.contains(r#"action="deny",layer="l4""#), "{text}");
}
