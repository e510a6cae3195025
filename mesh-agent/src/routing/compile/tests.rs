//! Realistic HTTPRoute and GRPCRoute objects through the state file, and how they compile.
//! Every refusal is covered in `problems` and `filter_problems`.

use std::path::Path;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::routing::{Filter, PathModifier, RouteKind};
use crate::state::{GrpcCode, MeshState, RetryOn, parse_str};

mod filter_problems;
mod problems;

/// Services `shop/web` (80 http, 9000 admin, 53/UDP) with a retry policy, its two versions,
/// a gRPC `echo` and a `shadow` for mirrors; `other/web` for cross-namespace cases.
pub(super) const MESH: &str = r#"
namespaces:
  - {name: shop, labels: {weft.dev/mesh: enabled}}
  - {name: other}
nodes: [{name: node-a}]
workloads:
  - {name: web-1, namespace: shop, node: node-a, ips: [10.244.1.2], labels: {app: web, version: v1}}
  - {name: web-2, namespace: shop, node: node-a, ips: [10.244.1.3], labels: {app: web, version: v2}}
services:
  - name: web
    namespace: shop
    vips: [10.96.0.20]
    selector: {app: web}
    ports:
      - {name: http, port: 80, targetPort: 8080}
      - {name: admin, port: 9000}
      - {name: dns, port: 53, protocol: UDP}
    trafficPolicy:
      retry: {attempts: 3, grpcStatuses: [UNAVAILABLE], perTryTimeout: 1s, backoff: {base: 10ms, max: 1s}}
  - {name: web-v1, namespace: shop, vips: [10.96.0.21], selector: {app: web, version: v1}, ports: [{port: 80, targetPort: 8080}]}
  - {name: web-v2, namespace: shop, vips: [10.96.0.22], selector: {app: web, version: v2}, ports: [{port: 80, targetPort: 8080}]}
  - {name: echo, namespace: shop, vips: [10.96.0.30], selector: {app: web}, ports: [{name: grpc, port: 9090, appProtocol: kubernetes.io/h2c}]}
  - {name: shadow, namespace: shop, vips: [10.96.0.23], ports: [{port: 80}]}
  - {name: web, namespace: other, vips: [10.96.0.40], ports: [{port: 80}]}
"#;

const HTTP_ROUTE: &str = r#"
routes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata:
      name: web
      namespace: shop
      creationTimestamp: "2025-03-01T10:00:00Z"
    spec:
      hostnames: [web.shop.svc.cluster.local]
      parentRefs:
        - group: ""
          kind: Service
          name: web
          port: 80
      rules:
        - name: canary
          matches:
            - headers: [{name: X-Canary, value: "yes"}]
          backendRefs:
            - {name: web-v2, port: 80}
        - name: api
          matches:
            - path: {type: PathPrefix, value: /api}
              method: GET
          filters:
            - type: URLRewrite
              urlRewrite:
                hostname: api.shop
                path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
            - type: RequestMirror
              requestMirror:
                backendRef: {name: shadow, port: 80}
                percent: 10
            - type: ResponseHeaderModifier
              responseHeaderModifier:
                set: [{name: x-served-by, value: api}]
          backendRefs:
            - name: web-v1
              port: 80
              weight: 90
              filters:
                - type: RequestHeaderModifier
                  requestHeaderModifier: {add: [{name: x-version, value: v1}]}
            - {name: web-v2, port: 80, weight: 10}
          timeouts: {request: 10s, backendRequest: 2s}
          retry:
            codes: [503, 502]
            attempts: 2
            backoff: 100ms
        - matches:
            - path: {type: Exact, value: /old}
          filters:
            - type: RequestRedirect
              requestRedirect:
                scheme: https
                path: {type: ReplaceFullPath, replaceFullPath: /new}
                statusCode: 301
        - matches:
            - path: {type: RegularExpression, value: "/users/[0-9]+"}
              queryParams: [{name: view, value: full}]
          backendRefs: [{name: web-v1, port: 80}]
          timeouts: {request: 0s}
        - backendRefs:
            - {name: web-v1, port: 80}
"#;

const GRPC_ROUTE: &str = r#"
routes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: GRPCRoute
    metadata: {name: echo, namespace: shop}
    spec:
      parentRefs:
        - {group: "", kind: Service, name: echo, sectionName: grpc}
      rules:
        - matches:
            - method: {service: weft.echo.v1.Echo, method: Stream}
              headers: [{name: x-tenant, value: blue}]
          filters:
            - type: RequestHeaderModifier
              requestHeaderModifier: {set: [{name: x-routed, value: stream}]}
          backendRefs: [{name: web-v2, port: 80}]
        - matches:
            - method: {type: RegularExpression, service: "weft\\.echo\\..*", method: "Get.*"}
          backendRefs: [{name: web-v1, port: 80}]
        - backendRefs:
            - {name: web-v1, port: 80, weight: 1}
            - {name: web-v2, port: 80, weight: 1}
"#;

pub(super) fn load(routes: &str) -> MeshState {
    match parse_str(Path::new("mesh.yaml"), &format!("{MESH}{routes}")) {
        Ok(state) => state,
        Err(e) => panic!("rejected:\n{e}"),
    }
}

fn key(ns: &str, name: &str) -> (String, String) {
    (ns.into(), name.into())
}

/// `rule name or index` chosen for a request.
fn pick(
    state: &MeshState,
    svc: (&str, &str, u16),
    method: Method,
    uri: &str,
    h: &[(&'static str, &'static str)],
) -> String {
    let table = state
        .routes_for(&key(svc.0, svc.1), svc.2)
        .expect("routes attached");
    let mut headers = HeaderMap::new();
    for (name, value) in h {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    let uri: Uri = uri.parse().expect("uri");
    match table.select(&method, &uri, &headers) {
        Some(s) => s
            .rule
            .name
            .clone()
            .unwrap_or_else(|| format!("#{}", s.rule.index)),
        None => "404".into(),
    }
}

#[test]
fn a_realistic_http_route_attaches_to_its_service_port() {
    let state = load(HTTP_ROUTE);
    let web = ("shop", "web", 80);
    assert!(
        state.routes_for(&key("shop", "web"), 9000).is_none(),
        "parentRef names port 80"
    );
    assert!(
        state.routes_for(&key("shop", "web-v1"), 80).is_none(),
        "backends get no table"
    );
    let table = state.routes_for(&key("shop", "web"), 80).expect("attached");
    assert_eq!(table.kind(), RouteKind::Http);
    assert_eq!(table.rules().len(), 5);
    assert_eq!(table.rules()[0].route.to_string(), "HTTPRoute shop/web");

    let get = |uri, h: &[(&'static str, &'static str)]| pick(&state, web, Method::GET, uri, h);
    assert_eq!(
        get("/api/x", &[("x-canary", "yes")]),
        "api",
        "a longer prefix beats headers"
    );
    assert_eq!(get("/", &[("x-canary", "yes")]), "canary");
    assert_eq!(
        pick(&state, web, Method::POST, "/api/x", &[]),
        "#4",
        "api is GET only"
    );
    assert_eq!(get("/old", &[]), "#2");
    assert_eq!(get("/users/7?view=full", &[]), "#3");
    assert_eq!(get("/users/7", &[]), "#4");
}

#[test]
fn http_rules_carry_backends_filters_timeouts_and_retries() {
    let state = load(HTTP_ROUTE);
    let table = state.routes_for(&key("shop", "web"), 80).expect("attached");
    let api = &table.rules()[1];
    let weights: Vec<_> = api
        .backends
        .iter()
        .map(|b| (b.service.1.as_str(), b.weight))
        .collect();
    assert_eq!(weights, [("web-v1", 90), ("web-v2", 10)]);
    assert!(matches!(
        api.backends[0].filters[..],
        [Filter::RequestHeaderModifier(_)]
    ));
    assert!(matches!(
        &api.filters[..],
        [Filter::UrlRewrite(r), Filter::RequestMirror(m), Filter::ResponseHeaderModifier(_)]
            if r.path == Some(PathModifier::ReplacePrefixMatch("/v2".into()))
                && m.service == key("shop", "shadow") && m.percent() == 10.0
    ));
    assert_eq!(api.timeouts.request, Some(Duration::from_secs(10)));
    assert_eq!(api.timeouts.backend_request, Some(Duration::from_secs(2)));

    // The rule's retry replaces the service's, keeping what the Gateway API cannot say.
    let retry = api.retry.as_ref().expect("rule retry");
    assert_eq!(retry.attempts, 2);
    assert_eq!(retry.codes, [502, 503]);
    assert_eq!(retry.on, [RetryOn::ConnectFailure, RetryOn::Reset]);
    assert_eq!(retry.backoff.base, Duration::from_millis(100));
    assert_eq!(retry.backoff.max, Duration::from_secs(1));
    assert_eq!(retry.grpc_statuses, [GrpcCode::UNAVAILABLE]);
    assert_eq!(retry.per_try_timeout, Some(Duration::from_secs(1)));
    assert!(
        table.rules()[0].retry.is_none(),
        "no retry: the service's applies"
    );

    let users = &table.rules()[3];
    assert_eq!(users.timeouts.request, None, "0s turns the timeout off");

    let redirect = &table.rules()[2];
    assert!(redirect.backends.is_empty());
    assert!(matches!(&redirect.filters[..], [Filter::RequestRedirect(r)] if r.status == 301));

    // A backend reference resolves to the endpoints of that service port.
    let backend = &api.backends[0];
    let target = state
        .service_port(&backend.service, backend.port)
        .expect("web-v1:80");
    let endpoints: Vec<String> = target.endpoints.iter().map(ToString::to_string).collect();
    assert_eq!(endpoints, ["10.244.1.2:8080"]);
    assert!(
        state.service_port(&key("shop", "web"), 53).is_none(),
        "UDP is not proxied"
    );
}

#[test]
fn a_realistic_grpc_route_matches_methods_and_headers() {
    let state = load(GRPC_ROUTE);
    let table = state
        .routes_for(&key("shop", "echo"), 9090)
        .expect("sectionName grpc");
    assert_eq!(table.kind(), RouteKind::Grpc);
    let echo = ("shop", "echo", 9090);
    let post = |uri, h: &[(&'static str, &'static str)]| pick(&state, echo, Method::POST, uri, h);
    assert_eq!(
        post("/weft.echo.v1.Echo/Stream", &[("x-tenant", "blue")]),
        "#0"
    );
    assert_eq!(post("/weft.echo.v1.Echo/Stream", &[]), "#2");
    assert_eq!(post("/weft.echo.v1.Echo/GetItem", &[]), "#1");
    assert_eq!(post("/other.Svc/GetItem", &[]), "#2");
    let even = &table.rules()[2];
    assert_eq!(even.backends.len(), 2);
    assert!(even.timeouts.request.is_none() && even.retry.is_none());
}

#[test]
fn a_parent_without_port_attaches_to_every_tcp_port() {
    let route = r#"
routes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: all, namespace: shop}
    spec:
      parentRefs: [{group: "", kind: Service, name: web}]
      rules: [{backendRefs: [{name: web-v1, port: 80}]}]
"#;
    let state = load(route);
    let web = key("shop", "web");
    assert!(state.routes_for(&web, 80).is_some());
    assert!(state.routes_for(&web, 9000).is_some());
    assert!(
        state.routes_for(&web, 53).is_none(),
        "UDP ports take no routes"
    );
    assert_eq!(state.route_index().len(), 2);
    let answer = pick(&state, ("shop", "web", 9000), Method::GET, "/anything", &[]);
    assert_eq!(answer, "#0", "a rule without matches matches everything");
}

#[test]
fn routes_serialize_back_as_gateway_api_objects() {
    let state = load(HTTP_ROUTE);
    let json = serde_json::to_value(&state).expect("serializes");
    let route = &json["routes"][0];
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(route["kind"], "HTTPRoute");
    assert_eq!(route["spec"]["rules"][1]["retry"]["codes"][0], 503);
    let services = json["services"].as_array().expect("a list");
    let web = services
        .iter()
        .find(|s| s["namespace"] == "shop" && s["name"] == "web")
        .expect("shop/web");
    assert_eq!(web["trafficPolicy"]["retry"]["attempts"], 3);
}
