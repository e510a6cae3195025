//! L4 (a connection) against L7 (a request): the stricter reading of rules that need HTTP.

use super::*;

#[test]
fn an_allow_rule_needing_http_never_matches_a_connection() {
    let state = mesh(
        "authorizationPolicies:
  - name: readers
    namespace: shop
    rules:
      - from: [{namespaces: [frontend]}]
        to: [{methods: [GET]}]
      - from: [{namespaces: [frontend]}]
        when: [{header: x-env, values: [prod]}]
",
    );
    let web = id("frontend", "web");
    denied(l4(&state, "api", Some(&web), 8080), "");
    allowed(l7(&state, "api", Some(&web), "GET", "/"), "shop/readers");
    let mut headers = HeaderMap::new();
    headers.insert("x-env", http::HeaderValue::from_static("prod"));
    allowed(
        l7_with(&state, "api", Some(&web), "POST", "/", &headers),
        "shop/readers",
    );
    denied(l7(&state, "api", Some(&web), "POST", "/"), "");
}

#[test]
fn an_allow_rule_of_ports_and_sources_decides_connections() {
    let state = mesh(
        "authorizationPolicies:
  - name: port-8080
    namespace: shop
    rules: [{from: [{namespaces: [frontend]}], to: [{ports: [8080, \"9090\"]}]}]
",
    );
    let web = id("frontend", "web");
    allowed(l4(&state, "api", Some(&web), 8080), "shop/port-8080");
    allowed(l4(&state, "api", Some(&web), 9090), "shop/port-8080");
    denied(l4(&state, "api", Some(&web), 8081), "");
    denied(l4(&state, "api", Some(&id("other", "web")), 8080), "");
    allowed(l7(&state, "api", Some(&web), "PUT", "/x"), "shop/port-8080");
}

#[test]
fn a_deny_rule_drops_its_http_parts_on_connections() {
    let state = mesh(
        "authorizationPolicies:
  - name: no-admin
    namespace: shop
    action: DENY
    rules:
      - from: [{principals: [cluster.local/ns/frontend/sa/bot]}]
        to: [{ports: [8080], paths: [/admin/*]}]
        when: [{header: x-env, values: [test]}]
",
    );
    let bot = id("frontend", "bot");
    let web = id("frontend", "web");
    // L4: the whole connection from the principal to the port is refused.
    denied(l4(&state, "api", Some(&bot), 8080), "shop/no-admin");
    allowed(l4(&state, "api", Some(&bot), 9090), "");
    allowed(l4(&state, "api", Some(&web), 8080), "");
    // L7: only requests matching every part are refused.
    allowed(l7(&state, "api", Some(&bot), "GET", "/admin/x"), "");
    let mut headers = HeaderMap::new();
    headers.insert("x-env", http::HeaderValue::from_static("test"));
    denied(
        l7_with(&state, "api", Some(&bot), "GET", "/admin/x", &headers),
        "shop/no-admin",
    );
    allowed(
        l7_with(&state, "api", Some(&bot), "GET", "/public", &headers),
        "",
    );
}

#[test]
fn a_source_without_identity_matches_only_negative_source_fields() {
    let state = mesh(
        "authorizationPolicies:
  - name: no-plaintext
    namespace: shop
    action: DENY
    rules: [{from: [{notPrincipals: [\"*\"]}]}]
  - name: outsiders
    namespace: frontend
    rules: [{from: [{notNamespaces: [frontend]}]}]
  - name: anyone-named
    namespace: shop
    selector: {matchLabels: {app: db}}
    rules: [{from: [{principals: [\"*\"]}]}]
",
    );
    // Plaintext to shop: denied by the DENY on "no principal at all".
    denied(l4(&state, "api", None, 8080), "shop/no-plaintext");
    allowed(l4(&state, "api", Some(&id("other", "x")), 8080), "");
    // `principals: ["*"]` needs some identity.
    denied(l4(&state, "db", None, 8080), "shop/no-plaintext");
    allowed(
        l4(&state, "db", Some(&id("other", "x")), 8080),
        "shop/anyone-named",
    );
    // `notNamespaces` matches a source without identity, and any other namespace.
    allowed(l4(&state, "web", None, 8080), "frontend/outsiders");
    allowed(
        l4(&state, "web", Some(&id("other", "x")), 8080),
        "frontend/outsiders",
    );
    denied(l4(&state, "web", Some(&id("frontend", "x")), 8080), "");
}
