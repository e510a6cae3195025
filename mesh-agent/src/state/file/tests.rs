use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;
use crate::state::{Protocol, WorkloadKey};

/// The example of the file format, with two backends and a pod opted out.
pub(in crate::state) const GOOD: &str = r#"
namespaces:
  - name: shop
    labels: {weft.dev/mesh: enabled}
  - name: plain
nodes:
  - name: node-a
    addresses: [192.168.250.1]
  - name: node-b.example
    addresses: [192.168.250.2, "fd00::2"]
workloads:
  - name: client
    namespace: shop
    uid: 1f0c-client
    serviceAccount: client
    node: node-a
    ips: [10.244.1.2]
    labels: {app: client}
    cgroup: /sys/fs/cgroup/unified/kubepods/pod1f0c
  - name: backend-1
    namespace: shop
    node: node-a
    ips: [10.244.1.3]
    labels: {app: backend, version: v1}
  - name: backend-2
    namespace: shop
    node: node-b.example
    ips: [10.244.2.3]
    labels: {app: backend, version: v2, weft.dev/mesh: disabled}
  - name: stranger
    namespace: plain
    node: node-b.example
    ips: [10.244.2.4]
    labels: {app: backend}
services:
  - name: backend
    namespace: shop
    vips: [10.96.0.10]
    selector: {app: backend}
    ports:
      - name: http
        port: 80
        targetPort: 8080
        appProtocol: http
      - port: 53
        protocol: UDP
  - name: manual
    namespace: shop
    vips: [10.96.0.11]
    ports: [{port: 80}]
"#;

fn key(namespace: &str, name: &str) -> WorkloadKey {
    WorkloadKey {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn load(yaml: &str) -> Result<MeshState, ConfigError> {
    parse_str(Path::new("mesh.yaml"), yaml)
}

#[test]
fn good_file_builds_the_model() {
    let state = load(GOOD).expect("GOOD loads");

    assert_eq!(state.namespaces.len(), 2);
    assert_eq!(state.nodes["node-b.example"].addresses.len(), 2);
    let client = &state.workloads[&key("shop", "client")];
    assert_eq!(client.uid, "1f0c-client");
    assert_eq!(client.service_account, "client");
    assert_eq!(
        client.cgroup.as_deref(),
        Some(Path::new("/sys/fs/cgroup/unified/kubepods/pod1f0c"))
    );
    assert_eq!(client.cgroup_id, None);
    let backend = &state.workloads[&key("shop", "backend-1")];
    assert_eq!(backend.uid, "shop.backend-1", "default uid");
    assert_eq!(
        backend.service_account, "default",
        "default service account"
    );

    let svc = &state.services[&("shop".to_string(), "backend".to_string())];
    // Same namespace and labels match: the opted-out pod is still an endpoint, the pod of
    // another namespace is not.
    assert_eq!(
        svc.endpoints,
        vec![key("shop", "backend-1"), key("shop", "backend-2")]
    );
    assert_eq!(svc.ports[0].target_port, 8080);
    assert_eq!(svc.ports[1].target_port, 53, "targetPort defaults to port");
    assert_eq!(svc.ports[1].protocol, Protocol::Udp);
    assert_eq!(svc.ports[0].app_protocol.as_deref(), Some("http"));
    let manual = &state.services[&("shop".to_string(), "manual".to_string())];
    assert!(manual.endpoints.is_empty(), "no selector, no endpoints");
}

#[test]
fn service_for_finds_the_vip_port_also_ipv4_mapped() {
    let state = load(GOOD).expect("GOOD loads");
    let vip = Ipv4Addr::new(10, 96, 0, 10);

    for dst in [
        SocketAddr::new(IpAddr::V4(vip), 80),
        SocketAddr::new(IpAddr::V6(vip.to_ipv6_mapped()), 80),
    ] {
        let target = state.service_for(dst).expect("VIP:80 is a service port");
        assert_eq!(target.service.name, "backend", "{dst}");
        assert_eq!(target.port.port, 80);
        let endpoints: Vec<String> = target.endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(endpoints, ["10.244.1.3:8080", "10.244.2.3:8080"]);
    }
    assert!(
        state
            .service_for(SocketAddr::new(IpAddr::V4(vip), 8080))
            .is_none()
    );
    // UDP ports are not captured by the TCP proxy, so they are not indexed.
    assert!(
        state
            .service_for(SocketAddr::new(IpAddr::V4(vip), 53))
            .is_none()
    );
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 244, 1, 3).to_ipv6_mapped());
    assert_eq!(
        state.workload_by_ip(mapped).map(|w| w.key.clone()),
        Some(key("shop", "backend-1"))
    );
}

#[test]
fn enrollment_follows_namespace_label_and_pod_opt_out() {
    let state = load(GOOD).expect("GOOD loads");
    let enrolled = |ns, name| state.workloads[&key(ns, name)].enrolled;

    assert!(enrolled("shop", "client"));
    assert!(enrolled("shop", "backend-1"));
    assert!(!enrolled("shop", "backend-2"), "pod label opts out");
    assert!(!enrolled("plain", "stranger"), "namespace not labelled");
    let on_a: Vec<_> = state
        .enrolled_on("node-a")
        .map(|w| w.key.name.clone())
        .collect();
    assert_eq!(on_a, ["backend-1", "client"]);
    assert_eq!(state.enrolled_on("node-b.example").count(), 0);
}

#[test]
fn empty_file_and_empty_lists_are_an_empty_mesh() {
    for yaml in ["", "# nothing yet\n", "namespaces:\nworkloads: []\n"] {
        let state = load(yaml).unwrap_or_else(|e| panic!("{yaml:?}: {e}"));
        assert!(state.namespaces.is_empty() && state.workloads.is_empty());
    }
}

#[test]
fn unknown_field_names_the_object_the_field_and_the_position() {
    let yaml = GOOD.replace("    cgroup: /sys/fs/cgroup", "    cgroupp: /sys/fs/cgroup");
    let err = load(&yaml).expect_err("unknown field");

    assert_eq!(err.problems.len(), 1);
    let line = err.to_string();
    assert!(
        line.starts_with("mesh.yaml: workloads[0]: unknown field `cgroupp`, expected one of"),
        "{line}"
    );
    assert!(line.contains("line 19, column 5"), "{line}");

    let err = load("nodes: []\nservice: []\n").expect_err("unknown top-level key");
    assert!(
        err.to_string()
            .starts_with("mesh.yaml: unknown field `service`"),
        "{err}"
    );
}

#[test]
fn shape_and_syntax_errors_carry_path_and_position() {
    let err = load("nodes:\n  - name: a\n    addresses: 10.0.0.1\n").expect_err("not a list");
    assert!(
        err.to_string()
            .starts_with("mesh.yaml: nodes[0].addresses: "),
        "{err}"
    );
    assert!(err.to_string().contains("line 3"), "{err}");

    let err = load("namespaces:\n  - labels: {}\n").expect_err("missing name");
    assert!(
        err.to_string()
            .starts_with("mesh.yaml: namespaces[0]: missing field `name`"),
        "{err}"
    );

    let err = load("nodes: [\n").expect_err("syntax");
    assert!(err.to_string().contains("line 1, column"), "{err}");

    let err = load("nodes: []\nnodes: []\n").expect_err("duplicate key");
    assert_eq!(
        err.to_string(),
        "mesh.yaml: duplicate mapping key `nodes` is not allowed here at line 2, column 1"
    );

    let err = load("services:\n  - name: s\n    namespace: n\n    ports: [{port: http}]\n")
        .expect_err("port is a number");
    assert!(
        err.to_string()
            .starts_with("mesh.yaml: services[0].ports[0].port: "),
        "{err}"
    );
}

#[test]
fn unreadable_file_names_the_file() {
    let path = Path::new("/nonexistent/weft/mesh.yaml");
    let err = load_file(path).expect_err("no such file");
    assert_eq!(err.file, path);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/weft/mesh.yaml: cannot read the file: "),
        "{err}"
    );
}

#[test]
fn label_keys_with_dots_are_quoted_in_paths() {
    let mut path = String::from("namespaces[0].labels");
    push_key(&mut path, "weft.dev/mesh");
    assert_eq!(path, r#"namespaces[0].labels["weft.dev/mesh"]"#);
}

#[test]
fn the_model_serializes_like_the_file() {
    let state = load(GOOD).expect("GOOD loads");
    let json = serde_json::to_value(&state).expect("serializes");

    assert_eq!(json["namespaces"][0]["name"], "plain");
    assert_eq!(json["workloads"][1]["key"], "shop/backend-1");
    assert_eq!(json["workloads"][3]["serviceAccount"], "client");
    assert_eq!(json["services"][0]["ports"][0]["targetPort"], 8080);
    assert_eq!(json["services"][0]["ports"][1]["protocol"], "UDP");
    assert_eq!(json["services"][0]["endpoints"][0], "shop/backend-1");
    let yaml = serde_saphyr::to_string(&state).expect("serializes as YAML");
    assert!(yaml.contains("shop/backend-2"), "{yaml}");
}

#[test]
fn a_large_cluster_fits_the_parser_budget() {
    // 20,000 workloads are ~300,000 YAML nodes: over the parser's default budget.
    let mut yaml = String::from(
        "namespaces:\n  - name: shop\nnodes:\n  - name: n\n    addresses: [192.168.250.1]\nworkloads:\n",
    );
    for i in 0..20_000u32 {
        let [_, _, hi, lo] = i.to_be_bytes();
        yaml.push_str(&format!(
            "  - name: w-{i}\n    namespace: shop\n    node: n\n    ips: [10.128.{hi}.{lo}]\n    serviceAccount: w\n    labels: {{app: w}}\n"
        ));
    }
    let state = load(&yaml).expect("a large file loads");
    assert_eq!(state.workloads.len(), 20_000);
}
