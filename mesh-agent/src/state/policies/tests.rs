use std::path::Path;

use crate::policy::{Action, PeerAuthMode};
use crate::state::parse_str;

const HEADER: &str = "namespaces: [{name: shop}, {name: frontend}]\n";

/// Every problem of `HEADER` + `body`, without the file name.
fn problems(body: &str) -> Vec<String> {
    match parse_str(Path::new("mesh.yaml"), &format!("{HEADER}{body}")) {
        Ok(_) => panic!("accepted:\n{body}"),
        Err(e) => e.problems,
    }
}

/// Exactly one problem, at `path`, containing `reason`.
#[track_caller]
fn assert_one(body: &str, path: &str, reason: &str) {
    let found = problems(body);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with(&format!("{path}: ")), "{found:#?}");
    assert!(found[0].contains(reason), "{found:#?}");
}

fn policy(fields: &str) -> String {
    format!("authorizationPolicies:\n  - {{name: p, namespace: shop, {fields}}}\n")
}

#[test]
fn a_good_file_keeps_both_lists_and_dumps_them() -> anyhow::Result<()> {
    let yaml = format!(
        "{HEADER}authorizationPolicies:
  - name: api-readers
    namespace: shop
    selector: {{matchLabels: {{app: api}}}}
    action: DENY
    rules:
      - from: [{{principals: [cluster.local/ns/frontend/sa/web], notNamespaces: [other]}}]
        to: [{{ports: [8080], methods: [GET], paths: [/api/*], notPaths: [\"*.map\"]}}]
        when: [{{header: x-env, values: [prod], notValues: [test]}}]
peerAuthentications:
  - {{name: default, namespace: shop, mode: STRICT}}
"
    );
    let state = parse_str(Path::new("mesh.yaml"), &yaml)?;
    assert_eq!(state.authorization_policies.len(), 1);
    assert_eq!(state.authorization_policies[0].key(), "shop/api-readers");
    assert_eq!(state.authorization_policies[0].spec.action, Action::Deny);
    assert_eq!(
        state.peer_authentications[0].spec.mode,
        PeerAuthMode::Strict
    );
    let dump = serde_json::to_value(&state)?;
    assert_eq!(dump["authorizationPolicies"][0]["name"], "api-readers");
    assert_eq!(dump["authorizationPolicies"][0]["action"], "DENY");
    let to = &dump["authorizationPolicies"][0]["rules"][0]["to"][0];
    assert_eq!(to["paths"][0], "/api/*");
    assert_eq!(dump["peerAuthentications"][0]["mode"], "STRICT");
    Ok(())
}

#[test]
fn enums_are_checked_with_their_path() {
    assert_one(
        &policy("action: PERMIT"),
        "authorizationPolicies[0].action",
        "unknown variant `PERMIT`, expected `ALLOW` or `DENY`",
    );
    assert_one(
        "peerAuthentications: [{name: p, namespace: shop, mode: DISABLE}]",
        "peerAuthentications[0].mode",
        "unknown variant `DISABLE`, expected `STRICT` or `PERMISSIVE`",
    );
    assert_one(
        "peerAuthentications: [{name: p, namespace: shop}]",
        "peerAuthentications[0]",
        "missing field `mode`",
    );
}

#[test]
fn unknown_fields_are_named() {
    assert_one(
        &policy("rules: [{from: [{principal: [a/ns/b/sa/c]}]}]"),
        "authorizationPolicies[0].rules[0].from[0].principal",
        "unknown field",
    );
    assert_one(
        &policy("selector: {labels: {app: api}}"),
        "authorizationPolicies[0].selector.labels",
        "unknown field",
    );
    assert_one(
        "peerAuthentications: [{name: p, namespace: shop, mode: STRICT, mtls: {}}]",
        "peerAuthentications[0].mtls",
        "unknown field",
    );
}

#[test]
fn patterns_and_values_are_checked() {
    let rule = |to: &str| policy(&format!("rules: [{{to: [{to}]}}]"));
    let at = "authorizationPolicies[0].rules[0].to[0]";
    assert_one(
        &rule("{paths: [/ok, /a/*/b]}"),
        &format!("{at}.paths[1]"),
        "`/a/*/b` may hold `*` only as the whole value, its first or its last character",
    );
    assert_one(
        &rule("{paths: [api]}"),
        &format!("{at}.paths[0]"),
        "does not start with `/`",
    );
    assert_one(
        &rule("{notPaths: [\"/a?b=c\"]}"),
        &format!("{at}.notPaths[0]"),
        "query",
    );
    assert_one(
        &rule("{methods: [get]}"),
        &format!("{at}.methods[0]"),
        "write `GET`",
    );
    assert_one(
        &rule("{ports: [0]}"),
        &format!("{at}.ports[0]"),
        "0 is not a valid port",
    );
    assert_one(
        &rule("{notPorts: [http]}"),
        &format!("{at}.notPorts[0]"),
        "`http` is not a valid port",
    );
    assert_one(
        &policy("rules: [{from: [{principals: [ns/frontend/sa/web]}]}]"),
        "authorizationPolicies[0].rules[0].from[0].principals[0]",
        "is not a principal",
    );
    assert_one(
        &policy("rules: [{from: [{namespaces: [Front_End]}]}]"),
        "authorizationPolicies[0].rules[0].from[0].namespaces[0]",
        "DNS-1123 label",
    );
    assert_one(
        &policy("rules: [{when: [{header: \"bad header\", values: [x]}]}]"),
        "authorizationPolicies[0].rules[0].when[0].header",
        "is not an HTTP header name",
    );
}

#[test]
fn empty_lists_and_entries_are_refused() {
    assert_one(
        &policy("rules: [{from: []}]"),
        "authorizationPolicies[0].rules[0].from",
        "must not be empty",
    );
    assert_one(
        &policy("rules: [{from: [{}]}]"),
        "authorizationPolicies[0].rules[0].from[0]",
        "names no principals",
    );
    assert_one(
        &policy("rules: [{to: [{paths: []}]}]"),
        "authorizationPolicies[0].rules[0].to[0].paths",
        "must not be empty",
    );
    assert_one(
        &policy("rules: [{when: [{header: x-env}]}]"),
        "authorizationPolicies[0].rules[0].when[0]",
        "needs `values` or `notValues`",
    );
}

#[test]
fn names_namespaces_and_duplicates_are_checked() {
    let twice = "authorizationPolicies:
  - {name: p, namespace: shop}
  - {name: p, namespace: frontend}
  - {name: p, namespace: shop, action: DENY}
";
    assert_one(
        twice,
        "authorizationPolicies[2].name",
        "`shop/p` is declared twice (first as authorizationPolicies[0])",
    );
    assert_one(
        "authorizationPolicies: [{name: p, namespace: nowhere}]",
        "authorizationPolicies[0].namespace",
        "namespace `nowhere` is not declared",
    );
    assert_one(
        "authorizationPolicies: [{namespace: shop}]",
        "authorizationPolicies[0].name",
        "missing",
    );
    assert_one(
        "peerAuthentications: [{name: Bad_Name, namespace: shop, mode: STRICT}]",
        "peerAuthentications[0].name",
        "DNS-1123 subdomain",
    );
    assert_one(
        "peerAuthentications:
  - {name: a, namespace: shop, mode: STRICT}
  - {name: b, namespace: shop, selector: {matchLabels: {app: x}}, mode: PERMISSIVE}
  - {name: c, namespace: shop, mode: PERMISSIVE}
",
        "peerAuthentications[2]",
        "namespace `shop` already has a namespace-wide peer authentication (`a`)",
    );
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let found = problems(
        "authorizationPolicies:
  - {name: a, namespace: shop, action: AUDIT}
  - {name: b, namespace: shop, rules: [{to: [{paths: [\"**\"], methods: [get]}]}]}
peerAuthentications:
  - {name: c, namespace: shop, mode: strict}
",
    );
    let at: Vec<&str> = found
        .iter()
        .map(|p| p.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        at,
        [
            "authorizationPolicies[0].action",
            "authorizationPolicies[1].rules[0].to[0].methods[0]",
            "authorizationPolicies[1].rules[0].to[0].paths[0]",
            "peerAuthentications[0].mode",
        ],
        "{found:#?}"
    );
}
