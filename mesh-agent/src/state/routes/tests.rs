use serde_json::json;

use super::*;

fn unknown(read: Value, written: Value) -> Vec<String> {
    let mut problems = Vec::new();
    unknown_fields(&read, &written, &mut "routes[0]".to_string(), &mut problems);
    problems
}

#[test]
fn keys_that_do_not_come_back_are_unknown() {
    let read = json!({"spec": {"rules": [{"a": 1}, {"a": 1, "b": {"c": 2}}], "x.y": 1}});
    let written = json!({"spec": {"rules": [{"a": 1}, {"a": 1, "b": {}}]}});
    assert_eq!(
        unknown(read, written),
        [
            "routes[0].spec.rules[1].b.c: unknown field",
            r#"routes[0].spec["x.y"]: unknown field"#,
        ]
    );
}

#[test]
fn null_values_are_absent_keys() {
    let read = json!({"spec": {"hostnames": null, "rules": []}});
    let written = json!({"spec": {"rules": []}});
    assert!(unknown(read, written).is_empty());
}

#[test]
fn typed_reads_report_the_path_of_a_bad_value() {
    let value = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "g", "namespace": "shop"},
        "spec": {"rules": [{"backendRefs": [{"name": "b", "port": "eighty"}]}]}
    });
    let mut problems = Vec::new();
    assert!(typed::<GrpcRoute>("routes[2]", &value, &mut problems).is_none());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("routes[2].spec.rules[0].backendRefs[0].port: invalid type"),
        "{problems:?}"
    );
}
