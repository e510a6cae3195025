//! Every refusal of a route, each with its field path and reason, and no follow-on noise:
//! objects, metadata, references and matches here, filters, timeouts and retries in
//! `filter_problems`.

use std::path::Path;

use super::MESH;
use crate::state::parse_str;

pub(super) const PARENT: &str = r#"parentRefs: [{group: "", kind: Service, name: web, port: 80}]"#;
pub(super) const BACKEND: &str = "backendRefs: [{name: web-v1, port: 80}]";
pub(super) const RULE: &str = "{backendRefs: [{name: web-v1, port: 80}]}";

fn problems(routes: &str) -> Vec<String> {
    match parse_str(Path::new("mesh.yaml"), &format!("{MESH}routes:\n{routes}")) {
        Ok(_) => panic!("accepted:\n{routes}"),
        Err(e) => e.problems,
    }
}

/// One route item: `kind` `shop/r` with this `spec` body (flow style, without braces).
pub(super) fn route(kind: &str, spec: &str) -> String {
    format!(
        "  - {{apiVersion: gateway.networking.k8s.io/v1, kind: {kind}, \
         metadata: {{name: r, namespace: shop}}, spec: {{{spec}}}}}\n"
    )
}

/// An HTTPRoute on `shop/web:80` with these rules.
pub(super) fn http(rules: &str) -> String {
    route("HTTPRoute", &format!("{PARENT}, rules: [{rules}]"))
}

pub(super) fn grpc(rules: &str) -> String {
    route("GRPCRoute", &format!("{PARENT}, rules: [{rules}]"))
}

/// Exactly one problem, at `path`, whose reason contains `reason`.
#[track_caller]
pub(super) fn one(routes: &str, path: &str, reason: &str) {
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
    one(
        &beta,
        "routes[0].apiVersion",
        "is not `gateway.networking.k8s.io/v1`",
    );
    one(
        &route("TCPRoute", PARENT),
        "routes[0].kind",
        "\"TCPRoute\" is not HTTPRoute or GRPCRoute",
    );
}

#[test]
fn unknown_and_mistyped_fields_name_their_path() {
    let typo = http(&format!("{{{BACKEND}, retri: {{attempts: 1}}}}"));
    one(&typo, "routes[0].spec.rules[0].retri", "unknown field");
    let meta = http(RULE).replace("namespace: shop}", "namespace: shop, labelz: {a: b}}");
    one(&meta, "routes[0].metadata.labelz", "unknown field");
    let variant = http("{matches: [{path: {type: Prefix, value: /a}}]}");
    one(
        &variant,
        "routes[0].spec.rules[0].matches[0].path.type",
        "unknown variant `Prefix`",
    );
    let experimental = http(&format!(
        "{{{BACKEND}, sessionPersistence: {{sessionName: s}}}}"
    ));
    one(
        &experimental,
        "routes[0].spec.rules[0].sessionPersistence",
        "not supported",
    );
    let gateways = route("HTTPRoute", &format!("{PARENT}, useDefaultGateways: All"));
    one(
        &gateways,
        "routes[0].spec.useDefaultGateways",
        "parentRefs only",
    );
}

#[test]
fn metadata_names_the_route() {
    let nameless = http(RULE).replace("name: r, ", "");
    one(&nameless, "routes[0].metadata.name", "a route needs a name");
    let homeless = http(RULE).replace(", namespace: shop}", "}");
    one(
        &homeless,
        "routes[0].metadata.namespace",
        "a route needs a namespace",
    );
    let nowhere = http(RULE).replace("namespace: shop}", "namespace: nowhere}");
    one(
        &nowhere,
        "routes[0].metadata.namespace",
        "`nowhere` is not declared",
    );
    let bad = http(RULE).replace("name: r,", "name: Web_1,");
    one(
        &bad,
        "routes[0].metadata.name",
        "is not a DNS-1123 subdomain",
    );
    let twice = format!("{}{}", http(RULE), http(RULE));
    one(
        &twice,
        "routes[1].metadata.name",
        "HTTPRoute shop/r is declared twice (first as routes[0])",
    );
}

#[test]
fn parents_are_services_of_the_route_namespace() {
    let at = "routes[0].spec.parentRefs";
    let with = |parents: &str| route("HTTPRoute", &format!("parentRefs: [{parents}]"));
    one(
        &route("HTTPRoute", "rules: []"),
        at,
        "needs a parentRef naming a Service",
    );
    one(
        &with("{name: web}"),
        &format!("{at}[0]"),
        "`gateway.networking.k8s.io/Gateway` is not supported",
    );
    let consumer = with(r#"{group: "", kind: Service, name: web, namespace: other}"#);
    one(
        &consumer,
        &format!("{at}[0].namespace"),
        "(a consumer route) is not supported",
    );
    let unknown = with(r#"{group: "", kind: Service, name: nope}"#);
    one(
        &unknown,
        &format!("{at}[0].name"),
        "service `shop/nope` is not declared",
    );
    let port = with(r#"{group: "", kind: Service, name: web, port: 81}"#);
    one(&port, &format!("{at}[0].port"), "has no TCP port 81");
    let udp = with(r#"{group: "", kind: Service, name: web, port: 53}"#);
    one(&udp, &format!("{at}[0].port"), "has no TCP port 53");
    let section = with(r#"{group: "", kind: Service, name: web, sectionName: metrics}"#);
    one(
        &section,
        &format!("{at}[0].sectionName"),
        "no TCP port named `metrics`",
    );
    let disagree = with(r#"{group: "", kind: Service, name: web, port: 80, sectionName: admin}"#);
    one(
        &disagree,
        &format!("{at}[0].sectionName"),
        "names port 9000, but `port` is 80",
    );
    let twice = with(
        r#"{group: "", kind: Service, name: web, port: 80}, {group: "", kind: Service, name: web}"#,
    );
    one(
        &twice,
        &format!("{at}[1]"),
        "that spec.parentRefs[0] attaches to already",
    );
}

#[test]
fn backends_are_exposed_service_ports_of_the_route_namespace() {
    let at = "routes[0].spec.rules[0].backendRefs[0]";
    let with = |backend: &str| http(&format!("{{backendRefs: [{backend}]}}"));
    one(
        &with("{name: nope, port: 80}"),
        &format!("{at}.name"),
        "service `shop/nope` is not declared",
    );
    one(
        &with("{name: web-v1}"),
        &format!("{at}.port"),
        "a Service backend needs a port",
    );
    one(
        &with("{name: web-v1, port: 81}"),
        &format!("{at}.port"),
        "has no TCP port 81",
    );
    let other = with("{name: web, namespace: other, port: 80}");
    one(&other, &format!("{at}.namespace"), "needs a ReferenceGrant");
    let kind = with(r#"{group: "", kind: ConfigMap, name: web-v1, port: 80}"#);
    one(
        &kind,
        at,
        "`/ConfigMap` is not supported: backends are Services",
    );
    one(
        &with("{name: web-v1, port: 80, weight: -1}"),
        &format!("{at}.weight"),
        "is not a weight",
    );
    let heavy = with("{name: web-v1, port: 80, weight: 1000001}");
    one(&heavy, &format!("{at}.weight"), "is not a weight");
}

#[test]
fn matches_are_checked() {
    let at = "routes[0].spec.rules[0].matches[0]";
    let with = |m: &str| http(&format!("{{matches: [{m}], {BACKEND}}}"));
    let relative = with("{path: {type: Exact, value: api}}");
    one(
        &relative,
        &format!("{at}.path.value"),
        "must be an absolute path",
    );
    let doubled = with("{path: {type: PathPrefix, value: //api}}");
    one(
        &doubled,
        &format!("{at}.path.value"),
        "must not contain '//'",
    );
    let dots = with("{path: {value: /a/../b}}");
    one(&dots, &format!("{at}.path.value"), "'..' segment");
    let regex = with(r#"{path: {type: RegularExpression, value: "/("}}"#);
    one(
        &regex,
        &format!("{at}.path.value"),
        "is not a valid regular expression",
    );
    let header = with(r#"{headers: [{name: "bad header", value: x}]}"#);
    one(
        &header,
        &format!("{at}.headers[0].name"),
        "is not an HTTP header name",
    );
    let header_re = with(r#"{headers: [{name: x-a, type: RegularExpression, value: "[z-a]"}]}"#);
    one(
        &header_re,
        &format!("{at}.headers[0].value"),
        "is not a valid regular expression",
    );
    let query_re = with(r#"{queryParams: [{name: q, type: RegularExpression, value: "a{2"}]}"#);
    one(
        &query_re,
        &format!("{at}.queryParams[0].value"),
        "is not a valid regular expression",
    );
    let unnamed = with(r#"{queryParams: [{name: "", value: x}]}"#);
    one(
        &unnamed,
        &format!("{at}.queryParams[0].name"),
        "must be 1-256 characters",
    );
}

#[test]
fn rules_are_limited_and_uniquely_named() {
    let many = vec![format!("{{{BACKEND}}}"); 17].join(", ");
    one(
        &http(&many),
        "routes[0].spec.rules",
        "17 entries, at most 16 are allowed",
    );
    let named = format!("{{name: a, {BACKEND}}}, {{name: a, {BACKEND}}}");
    one(
        &http(&named),
        "routes[0].spec.rules[1].name",
        "rule name `a` is used twice",
    );
}
