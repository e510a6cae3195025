//! Every refusal of a route, each with its field path and reason, and no follow-on noise.

use std::path::Path;

use super::MESH;
use crate::state::parse_str;

const PARENT: &str = r#"parentRefs: [{group: "", kind: Service, name: web, port: 80}]"#;
const BACKEND: &str = "backendRefs: [{name: web-v1, port: 80}]";
const RULE: &str = "{backendRefs: [{name: web-v1, port: 80}]}";

fn problems(routes: &str) -> Vec<String> {
    match parse_str(Path::new("mesh.yaml"), &format!("{MESH}routes:\n{routes}")) {
        Ok(_) => panic!("accepted:\n{routes}"),
        Err(e) => e.problems,
    }
}

/// One route item: `kind` `shop/r` with this `spec` body (flow style, without braces).
fn route(kind: &str, spec: &str) -> String {
    format!(
        "  - {{apiVersion: gateway.networking.k8s.io/v1, kind: {kind}, \
         metadata: {{name: r, namespace: shop}}, spec: {{{spec}}}}}\n"
    )
}

/// An HTTPRoute on `shop/web:80` with these rules.
fn http(rules: &str) -> String {
    route("HTTPRoute", &format!("{PARENT}, rules: [{rules}]"))
}

fn grpc(rules: &str) -> String {
    route("GRPCRoute", &format!("{PARENT}, rules: [{rules}]"))
}

/// Exactly one problem, at `path`, whose reason contains `reason`.
#[track_caller]
fn one(routes: &str, path: &str, reason: &str) {
    let found = problems(routes);
    assert_eq!(found.len(), 1, "{routes}\n{found:#?}");
    let (at, why) = found[0].split_once(": ").expect("path: reason");
    assert_eq!(at, path, "{found:#?}");
    assert!(why.contains(reason), "{found:#?}");
}

#[test]
fn objects_must_be_v1_http_or_grpc_routes() {
    one("  - 3\n", "routes[0]", "must be a Gateway API object");
    let beta = http(RULE).replace("/v1,", "/v1beta1,");
    one(&beta, "routes[0].apiVersion", "is not `gateway.networking.k8s.io/v1`");
    one(&route("TCPRoute", PARENT), "routes[0].kind", "\"TCPRoute\" is not HTTPRoute or GRPCRoute");
}

#[test]
fn unknown_and_mistyped_fields_name_their_path() {
    let typo = http(&format!("{{{BACKEND}, retri: {{attempts: 1}}}}"));
    one(&typo, "routes[0].spec.rules[0].retri", "unknown field");
    let meta = http(RULE).replace("namespace: shop}", "namespace: shop, labelz: {a: b}}");
    one(&meta, "routes[0].metadata.labelz", "unknown field");
    let variant = http("{matches: [{path: {type: Prefix, value: /a}}]}");
    one(&variant, "routes[0].spec.rules[0].matches[0].path.type", "unknown variant `Prefix`");
    let experimental = http(&format!("{{{BACKEND}, sessionPersistence: {{sessionName: s}}}}"));
    one(&experimental, "routes[0].spec.rules[0].sessionPersistence", "not supported");
    let gateways = route("HTTPRoute", &format!("{PARENT}, useDefaultGateways: All"));
    one(&gateways, "routes[0].spec.useDefaultGateways", "parentRefs only");
}

#[test]
fn metadata_names_the_route() {
    let nameless = http(RULE).replace("name: r, ", "");
    one(&nameless, "routes[0].metadata.name", "a route needs a name");
    let homeless = http(RULE).replace(", namespace: shop}", "}");
    one(&homeless, "routes[0].metadata.namespace", "a route needs a namespace");
    let nowhere = http(RULE).replace("namespace: shop}", "namespace: nowhere}");
    one(&nowhere, "routes[0].metadata.namespace", "`nowhere` is not declared");
    let bad = http(RULE).replace("name: r,", "name: Web_1,");
    one(&bad, "routes[0].metadata.name", "is not a DNS-1123 subdomain");
    let twice = format!("{}{}", http(RULE), http(RULE));
    one(&twice, "routes[1].metadata.name", "HTTPRoute shop/r is declared twice (first as routes[0])");
}

#[test]
fn parents_are_services_of_the_route_namespace() {
    let at = "routes[0].spec.parentRefs";
    let with = |parents: &str| route("HTTPRoute", &format!("parentRefs: [{parents}]"));
    one(&route("HTTPRoute", "rules: []"), at, "needs a parentRef naming a Service");
    one(&with("{name: web}"), &format!("{at}[0]"), "`gateway.networking.k8s.io/Gateway` is not supported");
    let consumer = with(r#"{group: "", kind: Service, name: web, namespace: other}"#);
    one(&consumer, &format!("{at}[0].namespace"), "(a consumer route) is not supported");
    let unknown = with(r#"{group: "", kind: Service, name: nope}"#);
    one(&unknown, &format!("{at}[0].name"), "service `shop/nope` is not declared");
    let port = with(r#"{group: "", kind: Service, name: web, port: 81}"#);
    one(&port, &format!("{at}[0].port"), "has no TCP port 81");
    let udp = with(r#"{group: "", kind: Service, name: web, port: 53}"#);
    one(&udp, &format!("{at}[0].port"), "has no TCP port 53");
    let section = with(r#"{group: "", kind: Service, name: web, sectionName: metrics}"#);
    one(&section, &format!("{at}[0].sectionName"), "no TCP port named `metrics`");
    let disagree = with(r#"{group: "", kind: Service, name: web, port: 80, sectionName: admin}"#);
    one(&disagree, &format!("{at}[0].sectionName"), "names port 9000, but `port` is 80");
    let twice = with(r#"{group: "", kind: Service, name: web, port: 80}, {group: "", kind: Service, name: web}"#);
    one(&twice, &format!("{at}[1]"), "that spec.parentRefs[0] attaches to already");
}

#[test]
fn backends_are_exposed_service_ports_of_the_route_namespace() {
    let at = "routes[0].spec.rules[0].backendRefs[0]";
    let with = |backend: &str| http(&format!("{{backendRefs: [{backend}]}}"));
    one(&with("{name: nope, port: 80}"), &format!("{at}.name"), "service `shop/nope` is not declared");
    one(&with("{name: web-v1}"), &format!("{at}.port"), "a Service backend needs a port");
    one(&with("{name: web-v1, port: 81}"), &format!("{at}.port"), "has no TCP port 81");
    let other = with("{name: web, namespace: other, port: 80}");
    one(&other, &format!("{at}.namespace"), "needs a ReferenceGrant");
    let kind = with(r#"{group: "", kind: ConfigMap, name: web-v1, port: 80}"#);
    one(&kind, at, "`/ConfigMap` is not supported: backends are Services");
    one(&with("{name: web-v1, port: 80, weight: -1}"), &format!("{at}.weight"), "is not a weight");
    let heavy = with("{name: web-v1, port: 80, weight: 1000001}");
    one(&heavy, &format!("{at}.weight"), "is not a weight");
}

#[test]
fn matches_are_checked() {
    let at = "routes[0].spec.rules[0].matches[0]";
    let with = |m: &str| http(&format!("{{matches: [{m}], {BACKEND}}}"));
    let relative = with("{path: {type: Exact, value: api}}");
    one(&relative, &format!("{at}.path.value"), "must be an absolute path");
    let doubled = with("{path: {type: PathPrefix, value: //api}}");
    one(&doubled, &format!("{at}.path.value"), "must not contain '//'");
    let dots = with("{path: {value: /a/../b}}");
    one(&dots, &format!("{at}.path.value"), "'..' segment");
    let regex = with(r#"{path: {type: RegularExpression, value: "/("}}"#);
    one(&regex, &format!("{at}.path.value"), "is not a valid regular expression");
    let header = with(r#"{headers: [{name: "bad header", value: x}]}"#);
    one(&header, &format!("{at}.headers[0].name"), "is not an HTTP header name");
    let header_re = with(r#"{headers: [{name: x-a, type: RegularExpression, value: "[z-a]"}]}"#);
    one(&header_re, &format!("{at}.headers[0].value"), "is not a valid regular expression");
    let query_re = with(r#"{queryParams: [{name: q, type: RegularExpression, value: "a{2"}]}"#);
    one(&query_re, &format!("{at}.queryParams[0].value"), "is not a valid regular expression");
    let unnamed = with(r#"{queryParams: [{name: "", value: x}]}"#);
    one(&unnamed, &format!("{at}.queryParams[0].name"), "must be 1-256 characters");
}

#[test]
fn rules_are_limited_and_uniquely_named() {
    let many = vec![format!("{{{BACKEND}}}"); 17].join(", ");
    one(&http(&many), "routes[0].spec.rules", "17 entries, at most 16 are allowed");
    let named = format!("{{name: a, {BACKEND}}}, {{name: a, {BACKEND}}}");
    one(&http(&named), "routes[0].spec.rules[1].name", "rule name `a` is used twice");
}

#[test]
fn filters_follow_the_spec_combination_rules() {
    let at = "routes[0].spec.rules[0].filters";
    let with = |filters: &str| http(&format!("{{filters: [{filters}], {BACKEND}}}"));
    let headers = "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}";
    let mixed = with("{type: RequestHeaderModifier, requestHeaderModifier: {}, urlRewrite: {hostname: a}}");
    one(&mixed, &format!("{at}[0].urlRewrite"), "must not be set in a filter of type RequestHeaderModifier");
    one(&with("{type: URLRewrite}"), &format!("{at}[0]"), "a filter of type URLRewrite needs `urlRewrite`");
    let twice = with(&format!("{headers}, {headers}"));
    one(&twice, &format!("{at}[1].type"), "a second RequestHeaderModifier filter");
    let both = with("{type: RequestRedirect, requestRedirect: {}}, {type: URLRewrite, urlRewrite: {}}");
    one(&both, &format!("{at}[1].type"), "URLRewrite cannot be combined with RequestRedirect");
    let ext = with("{type: ExtensionRef, extensionRef: {group: example.com, kind: Auth, name: a}}");
    one(&ext, &format!("{at}[0].extensionRef"), "ExtensionRef filters are not supported");
    let cors = with(r#"{type: CORS, cors: {allowOrigins: ["https://a.example"]}}"#);
    one(&cors, &format!("{at}[0].cors"), "CORS filters are not supported");
    let backend = http(
        "{backendRefs: [{name: web-v1, port: 80, filters: [{type: RequestRedirect, requestRedirect: {}}]}]}",
    );
    let backend_at = "routes[0].spec.rules[0].backendRefs[0].filters[0].type";
    one(&backend, backend_at, "a backend's filters cannot redirect");
}

#[test]
fn replace_prefix_match_needs_one_prefix_match() {
    let rewrite = "filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]";
    let exact = http(&format!("{{matches: [{{path: {{type: Exact, value: /a}}}}], {rewrite}, {BACKEND}}}"));
    one(&exact, "routes[0].spec.rules[0].filters", "exactly one match, of type PathPrefix");
    let two = http(&format!("{{matches: [{{path: {{value: /a}}}}, {{path: {{value: /b}}}}], {rewrite}, {BACKEND}}}"));
    one(&two, "routes[0].spec.rules[0].filters", "exactly one match, of type PathPrefix");
}

#[test]
fn redirect_and_rewrite_values_are_checked() {
    let at = "routes[0].spec.rules[0].filters[0]";
    let redirect = |r: &str| http(&format!("{{filters: [{{type: RequestRedirect, requestRedirect: {r}}}]}}"));
    let rewrite = |r: &str| http(&format!("{{filters: [{{type: URLRewrite, urlRewrite: {r}}}], {BACKEND}}}"));
    one(&redirect("{statusCode: 304}"), &format!("{at}.requestRedirect.statusCode"), "304 is not a redirect status");
    one(&redirect("{port: 0}"), &format!("{at}.requestRedirect.port"), "0 is not a port");
    one(&redirect("{hostname: Bad_Host}"), &format!("{at}.requestRedirect.hostname"), "is not a hostname");
    let mismatch = rewrite("{path: {type: ReplaceFullPath, replacePrefixMatch: /x}}");
    one(&mismatch, &format!("{at}.urlRewrite.path"), "`type: ReplaceFullPath` needs `replaceFullPath`");
    let extra = rewrite("{path: {type: ReplaceFullPath, replaceFullPath: /x, replacePrefixMatch: /y}}");
    one(&extra, &format!("{at}.urlRewrite.path.replacePrefixMatch"), "must not be set");
    let relative = rewrite("{path: {type: ReplaceFullPath, replaceFullPath: x}}");
    one(&relative, &format!("{at}.urlRewrite.path.replaceFullPath"), "is not an absolute path");
}

#[test]
fn header_modifiers_and_mirrors_are_checked() {
    let at = "routes[0].spec.rules[0].filters[0]";
    let headers = |m: &str| http(&format!("{{filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {m}}}], {BACKEND}}}"));
    let name = headers(r#"{set: [{name: "a b", value: x}]}"#);
    one(&name, &format!("{at}.requestHeaderModifier.set[0].name"), "is not an HTTP header name");
    let value = headers(r#"{add: [{name: a, value: "x\x01"}]}"#);
    one(&value, &format!("{at}.requestHeaderModifier.add[0].value"), "is not a valid HTTP header value");
    let twice = headers("{set: [{name: a, value: x}, {name: A, value: z}]}");
    one(&twice, &format!("{at}.requestHeaderModifier.set[1].name"), "`a` is listed twice");
    let removed = headers("{remove: [x-a, X-A]}");
    one(&removed, &format!("{at}.requestHeaderModifier.remove[1]"), "is listed twice");

    let mirror = |m: &str| http(&format!("{{filters: [{{type: RequestMirror, requestMirror: {{backendRef: {{name: shadow, port: 80}}, {m}}}}}], {BACKEND}}}"));
    let both = mirror("percent: 5, fraction: {numerator: 1}");
    one(&both, &format!("{at}.requestMirror"), "set `percent` or `fraction`, not both");
    one(&mirror("percent: 101"), &format!("{at}.requestMirror.percent"), "101 is not 0-100");
    let fraction = mirror("fraction: {numerator: 3, denominator: 2}");
    one(&fraction, &format!("{at}.requestMirror.fraction"), "is not a fraction");
    let nowhere = http(&format!("{{filters: [{{type: RequestMirror, requestMirror: {{backendRef: {{name: nope, port: 80}}}}}}], {BACKEND}}}"));
    one(&nowhere, &format!("{at}.requestMirror.backendRef.name"), "service `shop/nope` is not declared");
}

#[test]
fn timeouts_and_retries_are_checked() {
    let at = "routes[0].spec.rules[0]";
    let with = |field: &str| http(&format!("{{{field}, {BACKEND}}}"));
    one(&with("timeouts: {request: 10 seconds}"), &format!("{at}.timeouts.request"), "is not a duration");
    let longer = with("timeouts: {request: 1s, backendRequest: 2s}");
    one(&longer, &format!("{at}.timeouts.backendRequest"), "may not be longer than the request timeout");
    one(&with("retry: {attempts: 11}"), &format!("{at}.retry.attempts"), "11 is not 0-10");
    one(&with("retry: {codes: [200]}"), &format!("{at}.retry.codes[0]"), "200 is not a status code");
    one(&with("retry: {backoff: 1x}"), &format!("{at}.retry.backoff"), "is not a duration");
}

#[test]
fn grpc_matches_and_filters_are_checked() {
    let at = "routes[0].spec.rules[0]";
    let with = |m: &str| {
        grpc(&format!("{{matches: [{{method: {m}}}], {BACKEND}}}"))
            .replace("name: web, port: 80", "name: echo, port: 9090")
    };
    one(&with("{type: Exact}"), &format!("{at}.matches[0].method"), "set `service`, `method` or both");
    let service = with("{service: shop/Cart}");
    one(&service, &format!("{at}.matches[0].method.service"), "is not a gRPC service name");
    let method = with("{method: 2Add}");
    one(&method, &format!("{at}.matches[0].method.method"), "is not a gRPC method name");
    let regex = with(r#"{type: RegularExpression, method: "(Add"}"#);
    one(&regex, &format!("{at}.matches[0].method.method"), "is not a valid regular expression");
    let ext = grpc(&format!("{{filters: [{{type: ExtensionRef, extensionRef: {{group: example.com, kind: Auth, name: a}}}}], {BACKEND}}}"));
    one(&ext, &format!("{at}.filters[0].extensionRef"), "ExtensionRef filters are not supported");
}

#[test]
fn a_service_port_takes_one_kind_of_route() {
    // Equally old, so `shop/r` (first by name) keeps the port.
    let grpc_route = grpc(RULE).replace("name: r,", "name: z,");
    let both = format!("{}{grpc_route}", http(RULE));
    one(&both, "routes[1].spec.parentRefs[0]", "already has HTTPRoute shop/r attached");
}
