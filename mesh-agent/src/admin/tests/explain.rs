//! `/explain`: a connection followed through the model.

use hyper::StatusCode;

use super::{context, get, ok};
use crate::admin::views::{ExplainEndpoint, ExplainView};
use crate::policy::PeerAuthMode;

fn explain(ctx: &crate::admin::AdminContext, query: &str) -> ExplainView {
    let body = ok(ctx, &format!("/explain?{query}"));
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn endpoint<'a>(e: &'a ExplainView, workload: &str) -> &'a ExplainEndpoint {
    e.endpoints
        .iter()
        .find(|ep| ep.workload.as_deref() == Some(workload))
        .unwrap_or_else(|| panic!("no endpoint {workload}: {e:?}"))
}

#[test]
fn an_allowed_request_reaches_both_endpoints_locally_and_through_a_tunnel() {
    let e = explain(
        &context(true, &[]),
        "src=frontend/web&dst=10.96.0.20:80&method=GET&path=/api/items",
    );
    assert!(e.source.enrolled && e.source.here);
    assert!(e.source.capture.as_ref().is_some_and(|c| c.captured));
    let svc = e.destination.service.as_ref().expect("a service port");
    assert_eq!(
        (svc.name.as_str(), svc.protocol.as_str()),
        ("shop/api", "http")
    );
    assert_eq!(e.destination.routes.len(), 2);
    assert_eq!((e.request.layer.as_str(), e.request.port), ("l7", 8080));
    // The path matches the catch-all rule, whose backend is the service itself.
    assert_eq!(e.endpoints.len(), 2, "{e:?}");
    let (local, remote) = (endpoint(&e, "shop/api-a"), endpoint(&e, "shop/api-b"));
    assert_eq!(
        (local.via.as_str(), remote.via.as_str()),
        ("local", "tunnel")
    );
    for ep in [local, remote] {
        assert!(ep.enforced && ep.verdict == "allow", "{ep:?}");
        let decision = ep.authorization.as_ref().expect("a workload");
        assert_eq!(decision.policy.as_deref(), Some("shop/api-readers"));
    }
    // No certificate is held yet in this store: the explanation says so.
    assert!(
        e.notes.iter().any(|n| n.contains("no certificate")),
        "{:?}",
        e.notes
    );
}

#[test]
fn an_http_port_is_asked_about_a_request() {
    // Without a method or path: GET /, which api-readers does not allow (only /api/*).
    let e = explain(&context(true, &[]), "src=frontend/web&dst=10.96.0.20:80");
    assert_eq!(
        (e.request.layer.as_str(), e.request.path.as_deref()),
        ("l7", Some("/"))
    );
    assert!(e.notes.iter().any(|n| n.contains("GET /")), "{:?}", e.notes);
    // Every rule's backends are candidates when no request picks one.
    let names: Vec<_> = e
        .endpoints
        .iter()
        .filter_map(|ep| ep.workload.as_deref())
        .collect();
    assert_eq!(names, ["shop/canary", "shop/api-a", "shop/api-b"]);
    let api_b = endpoint(&e, "shop/api-b");
    assert_eq!(api_b.verdict, "deny", "{api_b:?}");
}

#[test]
fn a_route_rule_narrows_the_endpoints() {
    let e = explain(
        &context(true, &[]),
        "src=frontend/web&dst=api.shop.svc.cluster.local:80&path=/beta/x",
    );
    assert_eq!(e.destination.address.to_string(), "10.96.0.20:80");
    let names: Vec<_> = e
        .endpoints
        .iter()
        .filter_map(|ep| ep.workload.as_deref())
        .collect();
    assert_eq!(names, ["shop/canary"]);
    assert_eq!(e.endpoints[0].service.as_deref(), Some("shop/canary"));
    assert!(
        e.notes
            .iter()
            .any(|n| n.contains("rule 0 of HTTPRoute shop/api")),
        "{:?}",
        e.notes
    );
    // Canary is not selected by api-readers: no policy applies, so it is allowed.
    assert_eq!(e.endpoints[0].verdict, "allow");
}

#[test]
fn a_denied_connection_names_the_policy() {
    let e = explain(&context(true, &[]), "src=shop/other&dst=10.96.0.21:9000");
    assert_eq!(
        e.request.layer, "l4",
        "undeclared, nothing asked: a connection"
    );
    assert_eq!(e.endpoints.len(), 2);
    for ep in &e.endpoints {
        assert_eq!(ep.verdict, "deny", "{ep:?}");
        let decision = ep.authorization.as_ref().expect("a workload");
        assert_eq!(decision.policy.as_deref(), Some("shop/no-other"));
    }
    // api-a's cgroup has nothing attached: as a source, it is not captured, and its
    // connections go out directly, where no proxy enforces the DENY.
    let uncaptured = explain(&context(true, &[]), "src=shop/api-a&dst=10.96.0.21:9000");
    assert!(
        uncaptured
            .source
            .capture
            .as_ref()
            .is_some_and(|c| !c.captured)
    );
    assert!(
        uncaptured
            .notes
            .iter()
            .any(|n| n.contains("shop/api-a: not attached")),
        "{:?}",
        uncaptured.notes
    );
    assert!(
        uncaptured
            .endpoints
            .iter()
            .all(|ep| ep.via == "direct" && !ep.enforced)
    );
}

#[test]
fn plaintext_into_strict_pods_is_dropped() {
    // Not enrolled: nothing captured, the pod's own plaintext SYN meets the STRICT filter.
    let e = explain(
        &context(true, &[]),
        "src=legacy/outsider&dst=10.96.0.30:5432",
    );
    let db = endpoint(&e, "shop/db");
    assert_eq!((db.via.as_str(), db.verdict.as_str()), ("direct", "drop"));
    assert_eq!(db.peer_authentication, Some(PeerAuthMode::Strict));
    assert!(e.notes.iter().any(|n| n.contains("not enrolled")));
    // Without mTLS the proxy dials directly too, from node a: node b's STRICT pod drops it.
    let plain = explain(&context(false, &[]), "src=frontend/web&dst=10.96.0.30:5432");
    let db = endpoint(&plain, "shop/db");
    assert!(!db.enforced && db.verdict == "drop", "{db:?}");
    assert!(plain.notes.iter().any(|n| n.contains("without a CA")));
}

#[test]
fn exclusions_pods_and_strangers() {
    let ctx = context(
        true,
        &["--exclude-port", "9000", "--exclude-cidr", "10.244.2.0/24"],
    );
    let e = explain(&ctx, "src=frontend/web&dst=10.96.0.21:9000");
    assert_eq!(
        e.destination.excluded.as_deref(),
        Some("--exclude-port 9000")
    );
    assert!(
        e.endpoints
            .iter()
            .all(|ep| ep.via == "direct" && !ep.enforced)
    );
    let pod = explain(&ctx, "src=frontend/web&dst=10.244.2.2:8080");
    assert_eq!(pod.destination.kind, "pod");
    assert_eq!(
        pod.destination.excluded.as_deref(),
        Some("--exclude-cidr 10.244.2.0/24")
    );
    let direct = explain(&context(true, &[]), "src=frontend/web&dst=10.244.2.2:8080");
    assert_eq!(direct.endpoints[0].via, "tunnel");
    assert_eq!(direct.request.layer, "l4", "not a service: opaque");
    let stranger = explain(&ctx, "src=frontend/web&dst=192.0.2.1:443");
    assert_eq!(stranger.destination.kind, "outside");
    assert!(stranger.endpoints[0].authorization.is_none());
    let wrong_port = explain(&ctx, "src=frontend/web&dst=10.96.0.20:81");
    assert!(
        wrong_port
            .notes
            .iter()
            .any(|n| n.contains("not one of its TCP ports"))
    );
}

#[test]
fn explain_refuses_bad_questions() {
    let ctx = context(false, &[]);
    for (query, status) in [
        ("dst=10.96.0.20:80", StatusCode::BAD_REQUEST),
        ("src=frontend/web&dst=nowhere:80", StatusCode::BAD_REQUEST),
        ("src=frontend/web&dst=api.nowhere:80", StatusCode::NOT_FOUND),
        ("src=frontend/web&dst=api.shop", StatusCode::BAD_REQUEST),
    ] {
        let (got, body) = get(&ctx, &format!("/explain?{query}"));
        assert_eq!(got, status, "{query}: {body}");
    }
}
