//! The CRDs: the files in `deploy/crds/` are what the code renders, the definitions carry the
//! names, columns and a structural schema Kubernetes accepts, and a resource as users write it
//! reads back as the spec the state file reads.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::policy::spec::{API_GROUP, API_VERSION};
use crate::policy::{Action, AuthorizationPolicySpec, PeerAuthMode, PeerAuthenticationSpec};

fn deploy_crds() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds")
}

#[test]
fn deploy_crds_are_current() {
    let stale = stale(&deploy_crds()).expect("reading deploy/crds");
    assert!(
        stale.is_empty(),
        "deploy/crds is stale ({}): run `cargo xtask crds` and commit the result",
        stale.join("; ")
    );
}

#[test]
fn write_replaces_changed_files_and_removes_retired_ones() {
    let dir = std::env::temp_dir().join(format!("weft-crds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        stale(&dir).expect("missing dir").len(),
        render().expect("render").len()
    );
    write(&dir).expect("write");
    assert_eq!(stale(&dir).expect("stale"), Vec::<String>::new());

    let policy = dir.join("authorizationpolicies.weft.dev.yaml");
    std::fs::write(&policy, format!("{HEADER}edited: by hand\n")).expect("edit");
    let retired = dir.join("retired.weft.dev.yaml");
    std::fs::write(&retired, format!("{HEADER}kind: Gone\n")).expect("retired");
    let mine = dir.join("notes.yaml");
    std::fs::write(&mine, "not generated\n").expect("own file");
    assert_eq!(
        stale(&dir).expect("stale"),
        [
            "authorizationpolicies.weft.dev.yaml differs",
            "retired.weft.dev.yaml is no longer generated"
        ]
    );
    write(&dir).expect("write again");
    assert_eq!(stale(&dir).expect("stale"), Vec::<String>::new());
    assert!(!retired.exists() && mine.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn definitions_carry_names_scope_and_columns() {
    let expected = [
        (
            "AuthorizationPolicy",
            "authorizationpolicies",
            "authz",
            "Action",
            ".spec.action",
        ),
        (
            "PeerAuthentication",
            "peerauthentications",
            "peerauth",
            "Mode",
            ".spec.mode",
        ),
    ];
    let crds = definitions();
    assert_eq!(crds.len(), expected.len());
    for (crd, (kind, plural, short, column, path)) in crds.iter().zip(expected) {
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{plural}.{API_GROUP}").as_str())
        );
        let spec = &crd.spec;
        assert_eq!(
            (spec.group.as_str(), spec.scope.as_str()),
            (API_GROUP, "Namespaced")
        );
        assert_eq!(
            (spec.names.kind.as_str(), spec.names.plural.as_str()),
            (kind, plural)
        );
        assert_eq!(
            spec.names.short_names.as_deref(),
            Some(&[short.to_owned()][..])
        );
        assert_eq!(
            spec.names.categories.as_deref(),
            Some(&["weft".to_owned()][..])
        );
        let [version] = spec.versions.as_slice() else {
            panic!("{kind}: {} versions", spec.versions.len());
        };
        assert_eq!(version.name, API_VERSION);
        assert!(version.served && version.storage);
        let columns: Vec<(&str, &str, &str)> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            columns,
            [
                (column, "string", path),
                ("Age", "date", ".metadata.creationTimestamp")
            ]
        );
    }
}

/// Kubernetes refuses a CRD whose schema is not structural: every node needs a type (or is
/// int-or-string), and `spec` must not allow unknown fields it would keep.
#[test]
fn schemas_are_structural() {
    for crd in definitions() {
        let schema = schema(&crd);
        let mut problems = Vec::new();
        untyped(schema, "", &mut problems);
        assert!(problems.is_empty(), "{}: {problems:?}", crd.spec.names.kind);
        let spec = &schema.properties.as_ref().expect("properties")["spec"];
        assert_eq!(spec.x_kubernetes_preserve_unknown_fields, None);
    }
}

#[test]
fn schemas_hold_the_enums_and_port_types() {
    let crds = definitions();
    let authz = &schema(&crds[0]).properties.as_ref().expect("root")["spec"];
    let action = &authz.properties.as_ref().expect("spec")["action"];
    let values = |p: &JSONSchemaProps| -> Vec<String> {
        p.enum_.iter().flatten().map(|v| v.0.to_string()).collect()
    };
    assert_eq!(values(action), [r#""ALLOW""#, r#""DENY""#]);
    let rule = items(&authz.properties.as_ref().expect("spec")["rules"]);
    let to = items(&rule.properties.as_ref().expect("rule")["to"]);
    let port = items(&to.properties.as_ref().expect("to")["ports"]);
    assert_eq!(port.x_kubernetes_int_or_string, Some(true));

    let peer = &schema(&crds[1]).properties.as_ref().expect("root")["spec"];
    assert_eq!(peer.required.as_deref(), Some(&["mode".to_owned()][..]));
    let mode = &peer.properties.as_ref().expect("spec")["mode"];
    assert_eq!(values(mode), [r#""STRICT""#, r#""PERMISSIVE""#]);
}

#[test]
fn resources_read_back_as_the_state_file_specs() {
    let yaml = r#"
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: api-readers, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  action: DENY
  rules:
    - from: [{namespaces: [frontend]}]
      to: [{ports: [8080, "9090"], methods: [GET]}]
"#;
    let policy: AuthorizationPolicy = serde_saphyr::from_str(yaml).expect("policy");
    let model = named(&policy).expect("namespaced");
    assert_eq!(
        (model.name.as_str(), model.namespace.as_str()),
        ("api-readers", "shop")
    );
    assert_eq!(model.spec.action, Action::Deny);
    let to = &model.spec.rules.as_ref().expect("rules")[0]
        .to
        .as_ref()
        .expect("to")[0];
    assert_eq!(
        to.ports.as_deref(),
        Some(&[IntOrString::Int(8080), IntOrString::String("9090".into())][..])
    );
    let flat: AuthorizationPolicySpec =
        serde_saphyr::from_str(&serde_saphyr::to_string(&model.spec).expect("ser")).expect("de");
    assert_eq!(flat, model.spec);

    let peer = PeerAuthentication::new(
        "default",
        PeerAuthenticationSpec {
            selector: None,
            mode: PeerAuthMode::Strict,
        },
    );
    assert!(named(&peer).is_none(), "no namespace");
    let text = serde_json::to_value(&peer).expect("json");
    assert_eq!(text["apiVersion"], format!("{API_GROUP}/{API_VERSION}"));
    assert_eq!(text["spec"], serde_json::json!({"mode": "STRICT"}));
}

fn schema(crd: &CustomResourceDefinition) -> &JSONSchemaProps {
    crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("an openAPIV3Schema")
}

fn items(array: &JSONSchemaProps) -> &JSONSchemaProps {
    match array.items.as_ref() {
        Some(JSONSchemaPropsOrArray::Schema(items)) => items,
        other => panic!("not an array of one schema: {other:?}"),
    }
}

/// Paths of the schema nodes without a type (int-or-string and preserved nodes excepted).
fn untyped(node: &JSONSchemaProps, path: &str, problems: &mut Vec<String>) {
    let free = node.x_kubernetes_int_or_string == Some(true)
        || node.x_kubernetes_preserve_unknown_fields == Some(true);
    if node.type_.is_none() && !free {
        problems.push(format!("{path}: no type"));
    }
    for combinator in [&node.all_of, &node.any_of, &node.one_of]
        .into_iter()
        .flatten()
    {
        problems.push(format!(
            "{path}: a combinator ({} schemas)",
            combinator.len()
        ));
    }
    for (name, child) in node.properties.iter().flatten() {
        untyped(child, &format!("{path}.{name}"), problems);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &node.items {
        untyped(items, &format!("{path}[]"), problems);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(values)) =
        &node.additional_properties
    {
        untyped(values, &format!("{path}{{}}"), problems);
    }
}
