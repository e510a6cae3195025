//! Refusals of filters, timeouts, retries and GRPCRoute matches (see `problems` for the rest).

use super::problems::{BACKEND, RULE, grpc, http, one};

#[test]
fn filters_follow_the_spec_combination_rules() {
    let at = "routes[0].spec.rules[0].filters";
    let with = |filters: &str| http(&format!("{{filters: [{filters}], {BACKEND}}}"));
    let headers =
        "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}";
    let mixed =
        with("{type: RequestHeaderModifier, requestHeaderModifier: {}, urlRewrite: {hostname: a}}");
    one(
        &mixed,
        &format!("{at}[0].urlRewrite"),
        "must not be set in a filter of type RequestHeaderModifier",
    );
    one(
        &with("{type: URLRewrite}"),
        &format!("{at}[0]"),
        "a filter of type URLRewrite needs `urlRewrite`",
    );
    let twice = with(&format!("{headers}, {headers}"));
    one(
        &twice,
        &format!("{at}[1].type"),
        "a second RequestHeaderModifier filter",
    );
    let both =
        with("{type: RequestRedirect, requestRedirect: {}}, {type: URLRewrite, urlRewrite: {}}");
    one(
        &both,
        &format!("{at}[1].type"),
        "URLRewrite cannot be combined with RequestRedirect",
    );
    let ext = with("{type: ExtensionRef, extensionRef: {group: example.com, kind: Auth, name: a}}");
    one(
        &ext,
        &format!("{at}[0].extensionRef"),
        "ExtensionRef filters are not supported",
    );
    let cors = with(r#"{type: CORS, cors: {allowOrigins: ["https://a.example"]}}"#);
    one(
        &cors,
        &format!("{at}[0].cors"),
        "CORS filters are not supported",
    );
    let backend = http(
        "{backendRefs: [{name: web-v1, port: 80, filters: [{type: RequestRedirect, requestRedirect: {}}]}]}",
    );
    let backend_at = "routes[0].spec.rules[0].backendRefs[0].filters[0].type";
    one(&backend, backend_at, "a backend's filters cannot redirect");
}

#[test]
fn replace_prefix_match_needs_one_prefix_match() {
    let rewrite = "filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]";
    let exact = http(&format!(
        "{{matches: [{{path: {{type: Exact, value: /a}}}}], {rewrite}, {BACKEND}}}"
    ));
    one(
        &exact,
        "routes[0].spec.rules[0].filters",
        "exactly one match, of type PathPrefix",
    );
    let two = http(&format!(
        "{{matches: [{{path: {{value: /a}}}}, {{path: {{value: /b}}}}], {rewrite}, {BACKEND}}}"
    ));
    one(
        &two,
        "routes[0].spec.rules[0].filters",
        "exactly one match, of type PathPrefix",
    );
}

#[test]
fn redirect_and_rewrite_values_are_checked() {
    let at = "routes[0].spec.rules[0].filters[0]";
    let redirect = |r: &str| {
        http(&format!(
            "{{filters: [{{type: RequestRedirect, requestRedirect: {r}}}]}}"
        ))
    };
    let rewrite = |r: &str| {
        http(&format!(
            "{{filters: [{{type: URLRewrite, urlRewrite: {r}}}], {BACKEND}}}"
        ))
    };
    one(
        &redirect("{statusCode: 304}"),
        &format!("{at}.requestRedirect.statusCode"),
        "304 is not a redirect status",
    );
    one(
        &redirect("{port: 0}"),
        &format!("{at}.requestRedirect.port"),
        "0 is not a port",
    );
    one(
        &redirect("{hostname: Bad_Host}"),
        &format!("{at}.requestRedirect.hostname"),
        "is not a hostname",
    );
    let mismatch = rewrite("{path: {type: ReplaceFullPath, replacePrefixMatch: /x}}");
    one(
        &mismatch,
        &format!("{at}.urlRewrite.path"),
        "`type: ReplaceFullPath` needs `replaceFullPath`",
    );
    let extra =
        rewrite("{path: {type: ReplaceFullPath, replaceFullPath: /x, replacePrefixMatch: /y}}");
    one(
        &extra,
        &format!("{at}.urlRewrite.path.replacePrefixMatch"),
        "must not be set",
    );
    let relative = rewrite("{path: {type: ReplaceFullPath, replaceFullPath: x}}");
    one(
        &relative,
        &format!("{at}.urlRewrite.path.replaceFullPath"),
        "is not an absolute path",
    );
}

#[test]
fn header_modifiers_and_mirrors_are_checked() {
    let at = "routes[0].spec.rules[0].filters[0]";
    let headers = |m: &str| {
        http(&format!(
            "{{filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {m}}}], {BACKEND}}}"
        ))
    };
    let name = headers(r#"{set: [{name: "a b", value: x}]}"#);
    one(
        &name,
        &format!("{at}.requestHeaderModifier.set[0].name"),
        "is not an HTTP header name",
    );
    let value = headers(r#"{add: [{name: a, value: "x\x01"}]}"#);
    one(
        &value,
        &format!("{at}.requestHeaderModifier.add[0].value"),
        "is not a valid HTTP header value",
    );
    let twice = headers("{set: [{name: a, value: x}, {name: A, value: z}]}");
    one(
        &twice,
        &format!("{at}.requestHeaderModifier.set[1].name"),
        "`a` is listed twice",
    );
    let removed = headers("{remove: [x-a, X-A]}");
    one(
        &removed,
        &format!("{at}.requestHeaderModifier.remove[1]"),
        "is listed twice",
    );

    let mirror = |m: &str| {
        http(&format!(
            "{{filters: [{{type: RequestMirror, requestMirror: {{backendRef: {{name: shadow, port: 80}}, {m}}}}}], {BACKEND}}}"
        ))
    };
    let both = mirror("percent: 5, fraction: {numerator: 1}");
    one(
        &both,
        &format!("{at}.requestMirror"),
        "set `percent` or `fraction`, not both",
    );
    one(
        &mirror("percent: 101"),
        &format!("{at}.requestMirror.percent"),
        "101 is not 0-100",
    );
    let fraction = mirror("fraction: {numerator: 3, denominator: 2}");
    one(
        &fraction,
        &format!("{at}.requestMirror.fraction"),
        "is not a fraction",
    );
    let nowhere = http(&format!(
        "{{filters: [{{type: RequestMirror, requestMirror: {{backendRef: {{name: nope, port: 80}}}}}}], {BACKEND}}}"
    ));
    one(
        &nowhere,
        &format!("{at}.requestMirror.backendRef.name"),
        "service `shop/nope` is not declared",
    );
}

#[test]
fn timeouts_and_retries_are_checked() {
    let at = "routes[0].spec.rules[0]";
    let with = |field: &str| http(&format!("{{{field}, {BACKEND}}}"));
    one(
        &with("timeouts: {request: 10 seconds}"),
        &format!("{at}.timeouts.request"),
        "is not a duration",
    );
    let longer = with("timeouts: {request: 1s, backendRequest: 2s}");
    one(
        &longer,
        &format!("{at}.timeouts.backendRequest"),
        "may not be longer than the request timeout",
    );
    one(
        &with("retry: {attempts: 11}"),
        &format!("{at}.retry.attempts"),
        "11 is not 0-10",
    );
    one(
        &with("retry: {codes: [200]}"),
        &format!("{at}.retry.codes[0]"),
        "200 is not a status code",
    );
    one(
        &with("retry: {backoff: 1x}"),
        &format!("{at}.retry.backoff"),
        "is not a duration",
    );
}

#[test]
fn grpc_matches_and_filters_are_checked() {
    let at = "routes[0].spec.rules[0]";
    let with = |m: &str| {
        grpc(&format!("{{matches: [{{method: {m}}}], {BACKEND}}}"))
            .replace("name: web, port: 80", "name: echo, port: 9090")
    };
    one(
        &with("{type: Exact}"),
        &format!("{at}.matches[0].method"),
        "set `service`, `method` or both",
    );
    let service = with("{service: shop/Cart}");
    one(
        &service,
        &format!("{at}.matches[0].method.service"),
        "is not a gRPC service name",
    );
    let method = with("{method: 2Add}");
    one(
        &method,
        &format!("{at}.matches[0].method.method"),
        "is not a gRPC method name",
    );
    let regex = with(r#"{type: RegularExpression, method: "(Add"}"#);
    one(
        &regex,
        &format!("{at}.matches[0].method.method"),
        "is not a valid regular expression",
    );
    let ext = grpc(&format!(
        "{{filters: [{{type: ExtensionRef, extensionRef: {{group: example.com, kind: Auth, name: a}}}}], {BACKEND}}}"
    ));
    one(
        &ext,
        &format!("{at}.filters[0].extensionRef"),
        "ExtensionRef filters are not supported",
    );
}

#[test]
fn a_service_port_takes_one_kind_of_route() {
    // Equally old, so `shop/r` (first by name) keeps the port.
    let grpc_route = grpc(RULE).replace("name: r,", "name: z,");
    let both = format!("{}{grpc_route}", http(RULE));
    one(
        &both,
        "routes[1].spec.parentRefs[0]",
        "already has HTTPRoute shop/r attached",
    );
}
