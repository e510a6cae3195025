//! `/status`, `/workloads`, `/services`, `/routes`, `/certs`, `/policies`, `/config_dump` and
//! `/policy/check`.

use hyper::StatusCode;
use serde_json::Value;

use super::{context, get, ok};
use crate::admin::views::{
    CertsView, CheckView, PoliciesView, RouteTableView, ServiceView, StatusView, WorkloadView,
};
use crate::identity::testca::TestCa;
use crate::identity::{SpiffeId, fingerprint};
use crate::policy::{Action, PeerAuthMode};

fn view<T: serde::de::DeserializeOwned>(body: Value) -> T {
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn status_counts_the_model_and_reads_the_datapath() {
    let s: StatusView = view(ok(&context(false, &[]), "/status"));
    assert_eq!((s.node.as_str(), s.ready, s.mtls), ("a", true, false));
    assert_eq!(s.trust_domain, "cluster.local");
    assert_eq!((s.counts.workloads, s.counts.workloads_here), (7, 4));
    assert_eq!(s.counts.enrolled_here, 3, "outsider is not enrolled");
    assert_eq!((s.counts.services, s.counts.routes), (4, 1));
    assert_eq!(s.counts.authorization_policies, 2);
    assert_eq!(s.datapath.counters["captured"], 7);
    assert_eq!(s.datapath.counters["dropped_plaintext"], 2);
    assert_eq!(s.datapath.maps["PODS"], 2);
}

#[test]
fn workloads_say_who_is_captured_here() {
    let list: Vec<WorkloadView> = view(ok(&context(false, &[]), "/workloads"));
    let w = |name: &str| {
        list.iter()
            .find(|w| w.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let web = w("frontend/web");
    let capture = web.capture.as_ref().expect("web is on this node");
    assert!(capture.captured && capture.problem.is_none(), "{capture:?}");
    assert_eq!(capture.programs.len(), 5);
    assert_eq!(
        web.identity.as_deref(),
        Some("spiffe://cluster.local/ns/frontend/sa/web")
    );
    // Enrolled, but nothing attached to its cgroup: not captured, and the view says what is missing.
    let api_a = w("shop/api-a").capture.as_ref().expect("on this node");
    assert!(!api_a.captured);
    assert!(
        api_a
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("cgroup_inet4_connect"))
    );
    let outsider = w("legacy/outsider");
    assert!(!outsider.enrolled && outsider.identity.is_none());
    assert!(outsider.capture.as_ref().is_some_and(|c| !c.captured));
    assert!(
        w("shop/api-b").capture.is_none(),
        "node b's pods are its agent's to report"
    );
    assert_eq!(w("shop/db").peer_authentication, PeerAuthMode::Strict);
    assert_eq!(
        w("shop/api-b").peer_authentication,
        PeerAuthMode::Permissive
    );
}

#[test]
fn services_show_protocols_routes_and_endpoints() {
    let list: Vec<ServiceView> = view(ok(&context(false, &[]), "/services"));
    let api = list
        .iter()
        .find(|s| s.name == "shop/api")
        .expect("shop/api");
    assert_eq!(api.ports[0].declared, "http");
    assert_eq!((api.ports[0].port, api.ports[0].target_port), (80, 8080));
    assert_eq!(api.ports[0].route_rules, 2);
    let endpoints: Vec<&str> = api.endpoints.iter().map(|e| e.workload.as_str()).collect();
    assert_eq!(endpoints, ["shop/api-a", "shop/api-b"]);
    assert_eq!(api.load_balancer, "P2CEWMA");
    let tcp = list
        .iter()
        .find(|s| s.name == "shop/api-tcp")
        .expect("api-tcp");
    assert_eq!(tcp.ports[0].declared, "detect");
    let db = list.iter().find(|s| s.name == "shop/db").expect("db");
    assert_eq!(db.ports[0].declared, "tcp");
}

#[test]
fn routes_list_rules_with_their_matches_and_backends() {
    let tables: Vec<RouteTableView> = view(ok(&context(false, &[]), "/routes"));
    assert_eq!(tables.len(), 1);
    let t = &tables[0];
    assert_eq!(
        (t.service.as_str(), t.port, t.kind.as_str()),
        ("shop/api", 80, "HTTPRoute")
    );
    let beta = &t.rules[0];
    assert_eq!(
        (beta.route.as_str(), beta.name.as_deref()),
        ("HTTPRoute shop/api", Some("beta"))
    );
    assert_eq!(beta.matches[0]["path"]["value"], "/beta");
    assert_eq!(beta.backends[0].service, "shop/canary");
    assert_eq!(
        t.rules[1].matches,
        Value::Null,
        "a rule without matches takes everything"
    );
}

#[test]
fn policies_list_what_each_selects() {
    let p: PoliciesView = view(ok(&context(false, &[]), "/policies"));
    let readers = p
        .authorization
        .iter()
        .find(|a| a.name == "shop/api-readers")
        .expect("readers");
    assert_eq!((readers.action, readers.rules), (Action::Allow, 2));
    assert_eq!(readers.selects, ["shop/api-a", "shop/api-b"]);
    assert_eq!(p.peer_authentication[0].selects, ["shop/db"]);
    assert!(!p.peer_authentication[0].namespace_wide);
}

#[test]
fn certs_show_public_facts_only() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ctx = context(true, &[]);
    let (ca, ids) = (
        TestCa::new("weft test root"),
        ctx.identities.clone().expect("mTLS"),
    );
    let web = SpiffeId::new("cluster.local", "frontend", "web");
    let (chain, key) = ca.issue(&web);
    ids.insert(web.clone(), chain, key)?;
    ids.set_bundle(vec![ca.root.clone()]);

    let certs: CertsView = view(ok(&ctx, "/certs"));
    assert!(certs.mtls);
    assert_eq!(certs.roots[0].fingerprint, fingerprint(&ca.root));
    assert!(
        certs.roots[0].subject.contains("weft test root"),
        "{certs:?}"
    );
    let held = &certs.certificates[0];
    assert_eq!(held.id, web.to_string());
    assert_eq!(held.workloads, ["frontend/web"]);
    assert_eq!(held.root.as_deref(), Some(fingerprint(&ca.root).as_str()));
    let dump = ok(&ctx, "/config_dump").to_string();
    assert!(dump.contains(&web.to_string()) && dump.contains("\"config\""));
    assert!(!dump.contains("PRIVATE KEY"));
    // Without a CA there is nothing to show, and the answer says why.
    let off: CertsView = view(ok(&context(false, &[]), "/certs"));
    assert!(!off.mtls && off.certificates.is_empty());
    Ok(())
}

#[test]
fn policy_check_names_the_deciding_policy() {
    let ctx = context(true, &[]);
    let check = |q: &str| -> CheckView { view(ok(&ctx, &format!("/policy/check?{q}"))) };
    let allowed = check("src=frontend/web&dst=10.244.2.2:8080&method=GET&path=/api/items");
    assert!(allowed.decision.allow, "{allowed:?}");
    assert_eq!(allowed.decision.policy.as_deref(), Some("shop/api-readers"));
    assert_eq!(
        (allowed.request.layer.as_str(), allowed.workload.as_str()),
        ("l7", "shop/api-b")
    );
    assert_eq!(
        allowed.decision.applicable,
        ["shop/no-other", "shop/api-readers"]
    );

    let denied = check("src=shop/other&dst=10.244.1.4:9000");
    assert!(!denied.decision.allow);
    assert_eq!(denied.decision.policy.as_deref(), Some("shop/no-other"));
    assert_eq!(denied.request.layer, "l4");
    // A POST matches no ALLOW rule: denied without a deciding policy, which the reason says.
    let post = check("src=frontend/web&dst=10.244.2.2:8080&method=POST&path=/api/items");
    assert!(!post.decision.allow && post.decision.policy.is_none());
    assert_eq!(post.decision.reason, "denied: no ALLOW policy matched");
    // Not enrolled: no identity, and ALLOW rules by namespace do not match it.
    let outsider = check("src=legacy/outsider&dst=10.244.2.2:9000");
    assert!(outsider.source_id.is_none() && !outsider.decision.allow);
}

#[test]
fn policy_check_refuses_bad_questions() {
    let ctx = context(false, &[]);
    for (query, status) in [
        ("src=web&dst=10.244.2.2:80", StatusCode::BAD_REQUEST),
        (
            "src=frontend/nobody&dst=10.244.2.2:80",
            StatusCode::NOT_FOUND,
        ),
        ("src=frontend/web", StatusCode::BAD_REQUEST),
        ("src=frontend/web&dst=10.244.2.2", StatusCode::BAD_REQUEST),
        (
            "src=frontend/web&dst=10.96.0.20:80",
            StatusCode::BAD_REQUEST,
        ),
        ("src=frontend/web&dst=10.1.1.1:80", StatusCode::NOT_FOUND),
        (
            "src=frontend/web&dst=10.244.2.2:80&method=G%20T",
            StatusCode::BAD_REQUEST,
        ),
        (
            "src=frontend/web&dst=10.244.2.2:80&path=api",
            StatusCode::BAD_REQUEST,
        ),
        (
            "src=frontend/web&dst=10.244.2.2:80&bogus=1",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, body) = get(&ctx, &format!("/policy/check?{query}"));
        assert_eq!(got, status, "{query}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
}
