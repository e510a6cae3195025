use std::path::Path;

use crate::state::parse_str;

const HEADER: &str = "namespaces: [{name: shop, labels: {weft.dev/mesh: enabled}}]
nodes: [{name: node-a}]
";

/// The problems of `HEADER` + `body`, each as Display prints it.
fn problems(body: &str) -> Vec<String> {
    problems_of(&format!("{HEADER}{body}"))
}

fn problems_of(yaml: &str) -> Vec<String> {
    match parse_str(Path::new("mesh.yaml"), yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

/// Exactly one problem, starting with `prefix` (file and field path) and containing `reason`.
fn assert_one(body: &str, prefix: &str, reason: &str) {
    let problems = problems(body);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with(&format!("mesh.yaml: {prefix}: ")),
        "{problems:#?}"
    );
    assert!(problems[0].contains(reason), "{problems:#?}");
}

fn workload(fields: &str) -> String {
    format!("workloads:\n  - {{name: w, namespace: shop, node: node-a, {fields}}}\n")
}

fn service(fields: &str) -> String {
    format!("services:\n  - {{name: s, namespace: shop, {fields}}}\n")
}

#[test]
fn names_must_be_dns_names() {
    assert_one(
        "workloads: [{name: Web_1, namespace: shop, node: node-a}]",
        "workloads[0].name",
        "`Web_1` is not a DNS-1123 subdomain",
    );
    assert_one(
        "services: [{name: a.b, namespace: shop}]",
        "services[0].name",
        "`a.b` is not a DNS-1123 label",
    );
    assert_one(
        &workload("serviceAccount: -sa"),
        "workloads[0].serviceAccount",
        "`-sa` is not a DNS-1123 subdomain",
    );
    let long = "a".repeat(64);
    let problems = problems_of(&format!("namespaces: [{{name: {long}}}]"));
    assert!(
        problems[0].starts_with("mesh.yaml: namespaces[0].name: "),
        "{problems:#?}"
    );
    assert_one(
        &service("ports: [{name: HTTP, port: 80}]"),
        "services[0].ports[0].name",
        "not a DNS-1123 label",
    );
}

#[test]
fn names_are_unique_in_their_scope() {
    let text = "namespaces: [{name: shop}, {name: shop}]\nnodes: [{name: n}, {name: n}]\n";
    let got = match parse_str(Path::new("mesh.yaml"), text) {
        Ok(_) => panic!("duplicates accepted"),
        Err(e) => e.problems,
    };
    assert_eq!(
        got,
        [
            "namespaces[1].name: namespace `shop` is declared twice",
            "nodes[1].name: node `n` is declared twice",
        ]
    );
    assert_one(
        "workloads:
  - {name: w, namespace: shop, node: node-a}
  - {name: w, namespace: shop, node: node-a, uid: other}",
        "workloads[1].name",
        "workload `shop/w` is declared twice",
    );
    assert_one(
        "services: [{name: s, namespace: shop}, {name: s, namespace: shop}]",
        "services[1].name",
        "service `shop/s` is declared twice",
    );
    assert_one(
        &service("ports: [{name: web, port: 80}, {name: web, port: 81}]"),
        "services[0].ports[1].name",
        "port name `web` is used twice",
    );
}

#[test]
fn same_name_in_two_namespaces_is_fine() {
    let yaml = "namespaces: [{name: a}, {name: b}]
nodes: [{name: n}]
workloads: [{name: w, namespace: a, node: n}, {name: w, namespace: b, node: n}]
services: [{name: s, namespace: a}, {name: s, namespace: b}]
";
    let state = parse_str(Path::new("mesh.yaml"), yaml).expect("valid");
    assert_eq!(state.workloads.len(), 2);
    assert_eq!(state.services.len(), 2);
}

#[test]
fn references_must_be_declared() {
    assert_one(
        "workloads: [{name: w, namespace: other, node: node-a}]",
        "workloads[0].namespace",
        "namespace `other` is not declared under `namespaces`",
    );
    assert_one(
        "workloads: [{name: w, namespace: shop, node: node-z}]",
        "workloads[0].node",
        "node `node-z` is not declared under `nodes`",
    );
    assert_one(
        "services: [{name: s, namespace: other}]",
        "services[0].namespace",
        "namespace `other` is not declared",
    );
}

#[test]
fn addresses_must_parse() {
    assert_eq!(
        problems_of("nodes: [{name: node-b, addresses: [10.0.0.256, \"fd00::1\"]}]"),
        ["mesh.yaml: nodes[0].addresses[0]: `10.0.0.256` is not an IP address"]
    );
    assert_one(
        &workload("ips: [10.0.0.1, 10.0.0.x]"),
        "workloads[0].ips[1]",
        "`10.0.0.x` is not an IP address",
    );
    assert_one(
        &service("vips: [10.96.0.1, \"::ffff:10.96.0.1\"]"),
        "services[0].vips[1]",
        "is listed twice",
    );
}

#[test]
fn ports_must_be_in_range() {
    assert_one(
        &service("ports: [{port: 80}, {port: 0}]"),
        "services[0].ports[1].port",
        "0 is not a valid port (1-65535)",
    );
    assert_one(
        &service("ports: [{port: 80, targetPort: 65536}]"),
        "services[0].ports[0].targetPort",
        "65536 is not a valid port (1-65535)",
    );
    assert_one(
        &service("ports: [{port: -1}]"),
        "services[0].ports[0].port",
        "-1 is not a valid port",
    );
    assert_one(
        &service("ports: [{port: 80, protocol: SCTP}]"),
        "services[0].ports[0].protocol",
        "`SCTP` is not TCP or UDP",
    );
}

#[test]
fn cgroup_must_be_absolute_and_plain() {
    assert_one(
        &workload("cgroup: kubepods/pod1"),
        "workloads[0].cgroup",
        "`kubepods/pod1` is not an absolute path",
    );
    assert_one(
        &workload("cgroup: /sys/fs/cgroup/../etc"),
        "workloads[0].cgroup",
        "without `.` or `..`",
    );
}

#[test]
fn workloads_do_not_share_ips_uids_or_cgroups() {
    assert_one(
        "workloads:
  - {name: a, namespace: shop, node: node-a, ips: [10.0.0.1]}
  - {name: b, namespace: shop, node: node-a, ips: [\"::ffff:10.0.0.1\"]}",
        "workloads[1].ips[0]",
        "10.0.0.1 is already the address of workloads[0] (shop/a)",
    );
    assert_one(
        "workloads:
  - {name: a, namespace: shop, node: node-a, uid: u1}
  - {name: b, namespace: shop, node: node-a, uid: u1}",
        "workloads[1].uid",
        "`u1` is already the uid of workloads[0]",
    );
    assert_one(
        &workload("uid: ../etc"),
        "workloads[0].uid",
        "must be 1-253 characters",
    );
    assert_one(
        "workloads:
  - {name: a, namespace: shop, node: node-a, cgroup: /cg/pod}
  - {name: b, namespace: shop, node: node-a, cgroup: /cg//pod/}",
        "workloads[1].cgroup",
        "is already the cgroup of workloads[0] (shop/a) on node `node-a`",
    );
}

#[test]
fn services_do_not_share_a_vip_port() {
    assert_one(
        "services:
  - {name: a, namespace: shop, vips: [10.96.0.1], ports: [{port: 80}]}
  - {name: b, namespace: shop, vips: [10.96.0.2, 10.96.0.1], ports: [{port: 443}, {port: 80}]}",
        "services[1].ports[1].port",
        "10.96.0.1:80/TCP is already served by services[0].ports[0] (shop/a)",
    );
    // The same port over TCP and UDP is two listeners, as in Kubernetes.
    let yaml = format!(
        "{HEADER}{}",
        service("vips: [10.96.0.1], ports: [{port: 53}, {port: 53, protocol: UDP}]")
    );
    parse_str(Path::new("mesh.yaml"), &yaml).expect("TCP and UDP on one port");
}

#[test]
fn the_mesh_label_takes_meaningful_values_only() {
    let problems = problems_of(
        "namespaces: [{name: x, labels: {weft.dev/mesh: enable}}, {name: shop}]
nodes: [{name: node-a}]
workloads: [{name: w, namespace: shop, node: node-a, labels: {weft.dev/mesh: enabled}}]",
    );
    assert_eq!(
        problems,
        [
            r#"mesh.yaml: namespaces[0].labels["weft.dev/mesh"]: `enable` is not one of `enabled`, `disabled`"#,
            r#"mesh.yaml: workloads[0].labels["weft.dev/mesh"]: `enabled` is not one of `disabled`"#,
        ]
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let problems = problems(
        "workloads:
  - {name: a, namespace: nowhere, node: node-a, ips: [1.2.3]}
  - {name: b, namespace: shop, node: node-x, cgroup: relative}
services:
  - {name: s, namespace: shop, vips: [bad], ports: [{port: 0}, {port: 70000}]}",
    );
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p.split(": ").nth(1).unwrap_or_default())
        .collect();
    assert_eq!(
        paths,
        [
            "workloads[0].namespace",
            "workloads[0].ips[0]",
            "workloads[1].node",
            "workloads[1].cgroup",
            "services[0].vips[0]",
            "services[0].ports[0].port",
            "services[0].ports[1].port",
        ],
        "{problems:#?}"
    );
}
