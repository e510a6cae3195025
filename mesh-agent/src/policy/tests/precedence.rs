//! Which policies apply, in which order, and what happens when none does.

use super::*;
use crate::policy::PeerAuthMode;

#[test]
fn without_policies_everything_is_allowed() {
    let state = mesh("");
    allowed(l4(&state, "api", None, 8080), "");
    allowed(
        l7(&state, "api", Some(&id("other", "x")), "DELETE", "/"),
        "",
    );
    assert_eq!(
        l4(&state, "api", None, 1).to_string(),
        "allowed: no policy applies"
    );
}

#[test]
fn a_policy_applies_to_the_workloads_its_selector_matches_in_its_namespace() {
    let state = mesh(
        "authorizationPolicies:
  - {name: api-only, namespace: shop, selector: {matchLabels: {app: api}}}
  - {name: nothing-for-web, namespace: frontend}
",
    );
    // An ALLOW policy without rules allows nothing, on the workloads it selects only.
    denied(l4(&state, "api", None, 8080), "");
    allowed(l4(&state, "db", None, 8080), "");
    // Namespace-wide (no selector) in another namespace: shop is untouched, web is not.
    denied(l4(&state, "web", None, 8080), "");

    let state = mesh(
        "authorizationPolicies:
  - {name: two-labels, namespace: shop, selector: {matchLabels: {app: api, tier: front}}}
  - {name: empty-selector, namespace: frontend, selector: {matchLabels: {}}}
",
    );
    allowed(l4(&state, "api", None, 8080), "");
    denied(l4(&state, "web", None, 8080), "");
}

#[test]
fn deny_wins_over_allow_and_names_the_policy() {
    let state = mesh(
        "authorizationPolicies:
  - name: allow-all
    namespace: shop
    rules: [{}]
  - name: no-intruder
    namespace: shop
    action: DENY
    rules: [{from: [{principals: [cluster.local/ns/other/sa/intruder]}]}]
",
    );
    let intruder = id("other", "intruder");
    let d = l7(&state, "api", Some(&intruder), "GET", "/");
    assert_eq!(d.to_string(), "denied by shop/no-intruder");
    denied(d, "shop/no-intruder");
    let d = l7(&state, "api", Some(&id("other", "friend")), "GET", "/");
    assert_eq!(d.to_string(), "allowed by shop/allow-all");
    allowed(d, "shop/allow-all");
}

#[test]
fn rule_lists_decide_allow_nothing_deny_nothing_and_allow_all() {
    // `rules` absent or empty on DENY: denies nothing (Istio), so it does not make ALLOW apply.
    let state = mesh(
        "authorizationPolicies:
  - {name: deny-nothing, namespace: shop, action: DENY}
  - {name: deny-nothing-either, namespace: shop, action: DENY, rules: []}
",
    );
    allowed(l4(&state, "api", None, 8080), "");
    // An empty rule matches everything.
    let state = mesh("authorizationPolicies: [{name: all, namespace: shop, rules: [{}]}]\n");
    allowed(l4(&state, "api", None, 8080), "shop/all");
    // ALLOW with an empty rule list allows nothing.
    let state = mesh("authorizationPolicies: [{name: none, namespace: shop, rules: []}]\n");
    let d = l4(&state, "api", Some(&id("frontend", "web")), 8080);
    assert_eq!(d.to_string(), "denied: no ALLOW policy matched");
    denied(d, "");
}

#[test]
fn the_first_matching_policy_by_name_is_named() {
    let state = mesh(
        "authorizationPolicies:
  - {name: b-second, namespace: shop, rules: [{}]}
  - {name: a-first, namespace: shop, rules: [{}]}
",
    );
    allowed(l4(&state, "api", None, 8080), "shop/a-first");
}

/// The acceptance scenario: only namespace `frontend` may `GET /api/*`, and a DENY for one
/// principal overrides the ALLOW.
#[test]
fn only_frontend_may_get_the_api() {
    let allow = "authorizationPolicies:
  - name: api-readers
    namespace: shop
    selector: {matchLabels: {app: api}}
    rules:
      - from: [{namespaces: [frontend]}]
        to: [{methods: [GET], paths: [/api/*]}]
";
    let state = mesh(allow);
    let web = id("frontend", "web");
    let stranger = id("other", "web");
    denied(l7(&state, "api", Some(&stranger), "GET", "/api/x"), "");
    denied(l7(&state, "api", Some(&web), "GET", "/admin"), "");
    denied(l7(&state, "api", Some(&web), "POST", "/api/x"), "");
    denied(l7(&state, "api", None, "GET", "/api/x"), "");
    allowed(
        l7(&state, "api", Some(&web), "GET", "/api/x"),
        "shop/api-readers",
    );
    allowed(
        l7(&state, "api", Some(&web), "GET", "/api/x?q=1"),
        "shop/api-readers",
    );

    let deny = "  - name: not-the-bot
    namespace: shop
    action: DENY
    rules: [{from: [{principals: [spiffe://cluster.local/ns/frontend/sa/bot]}]}]
";
    let state = mesh(&format!("{allow}{deny}"));
    let bot = id("frontend", "bot");
    denied(
        l7(&state, "api", Some(&bot), "GET", "/api/x"),
        "shop/not-the-bot",
    );
    allowed(
        l7(&state, "api", Some(&web), "GET", "/api/x"),
        "shop/api-readers",
    );
}

#[test]
fn a_workload_specific_peer_authentication_wins_over_the_namespace_wide_one() {
    let state = mesh("");
    assert_eq!(
        state.peer_authentication(workload(&state, "api")),
        PeerAuthMode::Permissive
    );
    let state = mesh(
        "peerAuthentications:
  - {name: api-lenient, namespace: shop, selector: {matchLabels: {app: api}}, mode: PERMISSIVE}
  - {name: default, namespace: shop, mode: STRICT}
  - {name: web-strict, namespace: frontend, selector: {matchLabels: {app: nothing}}, mode: STRICT}
",
    );
    let mode = |name| state.peer_authentication(workload(&state, name));
    assert_eq!(mode("api"), PeerAuthMode::Permissive);
    assert_eq!(mode("db"), PeerAuthMode::Strict);
    assert_eq!(mode("web"), PeerAuthMode::Permissive);
}
