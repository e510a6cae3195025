//! Wildcards, `not*` forms and header conditions.

use http::HeaderValue;

use super::*;

#[test]
fn principals_match_with_or_without_scheme_and_with_wildcards() {
    let state = mesh(
        "authorizationPolicies:
  - name: principals
    namespace: shop
    rules:
      - from: [{principals: [\"spiffe://cluster.local/ns/frontend/sa/web\", \"*/sa/reporter\", \"cluster.local/ns/ops-*\"]}]
",
    );
    let ok = "shop/principals";
    allowed(l4(&state, "api", Some(&id("frontend", "web")), 1), ok);
    allowed(l4(&state, "api", Some(&id("billing", "reporter")), 1), ok);
    allowed(l4(&state, "api", Some(&id("ops-eu", "any")), 1), ok);
    denied(l4(&state, "api", Some(&id("frontend", "webx")), 1), "");
    denied(l4(&state, "api", Some(&id("billing", "reporter2")), 1), "");
    let foreign = SpiffeId::new("other.domain", "frontend", "web");
    denied(l4(&state, "api", Some(&foreign), 1), "");
}

#[test]
fn paths_and_methods_match_exact_prefix_suffix_and_any() {
    let state = mesh(
        "authorizationPolicies:
  - name: ops
    namespace: shop
    rules:
      - to: [{methods: [GET, \"HEAD\"], paths: [/exact, /static/*, \"*.js\"]}]
      - to: [{methods: [\"*\"], paths: [/any-method]}]
",
    );
    let ok = "shop/ops";
    allowed(l7(&state, "api", None, "GET", "/exact"), ok);
    denied(l7(&state, "api", None, "GET", "/exact/more"), "");
    allowed(l7(&state, "api", None, "HEAD", "/static/a/b.css"), ok);
    denied(l7(&state, "api", None, "GET", "/static"), "");
    allowed(l7(&state, "api", None, "GET", "/deep/app.js?v=2"), ok);
    denied(l7(&state, "api", None, "POST", "/exact"), "");
    allowed(l7(&state, "api", None, "PATCH", "/any-method"), ok);
}

#[test]
fn not_forms_exclude_what_they_list() {
    let state = mesh(
        "authorizationPolicies:
  - name: not-forms
    namespace: shop
    rules:
      - from: [{namespaces: [\"*\"], notPrincipals: [cluster.local/ns/frontend/sa/bot]}]
        to: [{notMethods: [DELETE], notPaths: [/admin/*], notPorts: [9090]}]
",
    );
    let ok = "shop/not-forms";
    let web = id("frontend", "web");
    allowed(l7(&state, "api", Some(&web), "GET", "/x"), ok);
    denied(
        l7(&state, "api", Some(&id("frontend", "bot")), "GET", "/x"),
        "",
    );
    denied(l7(&state, "api", Some(&web), "DELETE", "/x"), "");
    denied(l7(&state, "api", Some(&web), "GET", "/admin/users"), "");
    // `namespaces: ["*"]` still needs an identity.
    denied(l7(&state, "api", None, "GET", "/x"), "");

    let state = mesh(
        "authorizationPolicies: [{name: p, namespace: shop, rules: [{to: [{notPorts: [9090]}]}]}]\n",
    );
    allowed(l4(&state, "api", None, 8080), "shop/p");
    denied(l4(&state, "api", None, 9090), "");
}

#[test]
fn header_conditions_use_every_value_and_all_conditions() {
    let state = mesh(
        "authorizationPolicies:
  - name: headers
    namespace: shop
    rules:
      - when:
          - {header: X-Env, values: [prod, \"stage-*\"]}
          - {header: x-debug, notValues: [\"*\"]}
",
    );
    let ok = "shop/headers";
    let ask = |pairs: &[(&'static str, &'static str)]| {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(*k, HeaderValue::from_static(v));
        }
        l7_with(&state, "api", None, "GET", "/", &headers)
    };
    allowed(ask(&[("x-env", "prod")]), ok);
    allowed(ask(&[("x-env", "stage-2")]), ok);
    allowed(ask(&[("x-env", "dev"), ("x-env", "prod")]), ok);
    denied(ask(&[("x-env", "dev")]), "");
    denied(ask(&[]), "");
    denied(ask(&[("x-env", "prod"), ("x-debug", "1")]), "");
}
