//! `deploy/rbac/`: the agent and the CA get exactly the access they use, no wildcard, bound to
//! their service accounts in `weft-system`; the agent may read every kind `deploy/crds/`
//! defines.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::Value;

const NAMESPACE: &str = "weft-system";

/// (api group, resource, verb) triples.
type Grants = BTreeSet<(String, String, String)>;

struct Manifest {
    account: ServiceAccount,
    role: ClusterRole,
    binding: ClusterRoleBinding,
}

fn manifest(file: &str) -> Manifest {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/rbac")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(
        docs.len(),
        3,
        "{file}: a service account, a role and a binding"
    );
    Manifest {
        account: one(file, &docs, "ServiceAccount"),
        role: one(file, &docs, "ClusterRole"),
        binding: one(file, &docs, "ClusterRoleBinding"),
    }
}

/// The only document of `kind` in `docs`.
fn one<T: serde::de::DeserializeOwned>(file: &str, docs: &[Value], kind: &str) -> T {
    let mut found = docs.iter().filter(|d| d["kind"] == kind);
    let doc = found.next().unwrap_or_else(|| panic!("{file}: no {kind}"));
    assert!(found.next().is_none(), "{file}: two {kind}s");
    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{file}: {kind}: {e}"))
}

fn grants(role: &ClusterRole) -> Grants {
    let mut out = Grants::new();
    for rule in role.rules.iter().flatten() {
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "{rule:?}"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for part in [group, resource, verb] {
                        assert!(!part.contains('*'), "wildcard in {rule:?}");
                    }
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

fn read_only(group_resources: &[(&str, &str)]) -> Grants {
    let mut out = Grants::new();
    for (group, resource) in group_resources {
        for verb in ["get", "list", "watch"] {
            out.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    out
}

fn check_binding(m: &Manifest, name: &str) {
    assert_eq!(m.account.metadata.name.as_deref(), Some(name));
    assert_eq!(m.account.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(m.role.metadata.name.as_deref(), Some(name));
    let role_ref = &m.binding.role_ref;
    assert_eq!(
        (
            role_ref.api_group.as_deref().unwrap_or_default(),
            role_ref.kind.as_str(),
            role_ref.name.as_str()
        ),
        ("rbac.authorization.k8s.io", "ClusterRole", name)
    );
    let subjects: Vec<_> = m
        .binding
        .subjects
        .iter()
        .flatten()
        .map(|s| (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()))
        .collect();
    assert_eq!(subjects, [("ServiceAccount", name, Some(NAMESPACE))]);
}

#[test]
fn the_agent_reads_the_mesh_model_and_nothing_else() {
    let m = manifest("agent.yaml");
    check_binding(&m, "weft-agent");
    let expected = read_only(&[
        ("", "namespaces"),
        ("", "pods"),
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.networking.k8s.io", "grpcroutes"),
        ("weft.dev", "authorizationpolicies"),
        ("weft.dev", "peerauthentications"),
    ]);
    assert_eq!(grants(&m.role), expected);
    for crd in mesh_agent::crd::definitions() {
        let (group, plural) = (&crd.spec.group, &crd.spec.names.plural);
        assert!(
            expected.contains(&(group.clone(), plural.clone(), "watch".into())),
            "the agent cannot watch {plural}.{group}"
        );
    }
}

#[test]
fn the_ca_reviews_tokens_and_reads_pods() {
    let m = manifest("ca.yaml");
    check_binding(&m, "weft-ca");
    let mut expected = read_only(&[("", "namespaces"), ("", "pods")]);
    expected.insert((
        "authentication.k8s.io".into(),
        "tokenreviews".into(),
        "create".into(),
    ));
    assert_eq!(grants(&m.role), expected);
}
