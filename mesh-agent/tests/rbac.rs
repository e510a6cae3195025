//! `deploy/rbac/`: the agent and the CA get exactly the access they use, no wildcard, bound to
//! their service accounts in `weft-system`; the agent may read every kind `deploy/crds/`
//! defines, and its role is compared with the calls the real Kubernetes source makes.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use mesh_agent::kubernetes::{self, KubeMetrics, KubeSourceConfig};
use mesh_agent::state::MeshState;
use mesh_agent::testbed::kube_api::{BOOKMARK_INTERVAL, FakeApi, audit};
use serde_json::Value;
use tokio::time::Instant;

const NAMESPACE: &str = "weft-system";
/// How long the source may take to list and watch every kind.
const PATIENCE: Duration = Duration::from_secs(15);

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

fn with_verbs(group_resources: &[(&str, &str)], verbs: &[&str]) -> Grants {
    let mut out = Grants::new();
    for (group, resource) in group_resources {
        for verb in verbs {
            out.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    out
}

fn list_watch(group_resources: &[(&str, &str)]) -> Grants {
    with_verbs(group_resources, &["list", "watch"])
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
    let expected = list_watch(&[
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

/// The CA runs the agents' Kubernetes source (`--state-source kubernetes`), whose calls
/// `the_agent_role_is_measured_from_the_source` measures, and creates TokenReviews.
#[test]
fn the_ca_reviews_tokens_and_reads_what_the_source_reads() {
    let m = manifest("ca.yaml");
    check_binding(&m, "weft-ca");
    let mut expected = grants(&manifest("agent.yaml").role);
    expected.insert((
        "authentication.k8s.io".into(),
        "tokenreviews".into(),
        "create".into(),
    ));
    assert_eq!(grants(&m.role), expected);
}

/// What a component called on the fake API server, as RBAC grants.
fn measured(fake: &FakeApi) -> Grants {
    audit::distinct(&fake.requests())
        .into_iter()
        .map(|c| (c.group, c.resource, c.verb))
        .collect()
}

/// The agent's ClusterRole is exactly what the real Kubernetes source calls: it runs against
/// the fake API server until its first snapshot, then until it has called everything the role
/// grants and a quiet period passed; the calls logged must equal the grants.
#[tokio::test]
async fn the_agent_role_is_measured_from_the_source() -> anyhow::Result<()> {
    let granted = grants(&manifest("agent.yaml").role);
    let fake = FakeApi::start().await?;
    let (tx, mut rx) = tokio::sync::watch::channel(Arc::new(MeshState::default()));
    let metrics = KubeMetrics::new(&prometheus::Registry::new())?;
    let source = tokio::spawn(kubernetes::run(
        fake.client()?,
        KubeSourceConfig::new("node-a"),
        tx,
        metrics,
    ));
    tokio::time::timeout(PATIENCE, rx.changed()).await??;
    let deadline = Instant::now() + PATIENCE;
    while !measured(&fake).is_superset(&granted) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything the source calls later than its first watches (re-gets, writes) shows up here.
    tokio::time::sleep(2 * BOOKMARK_INTERVAL).await;
    source.abort();
    assert_eq!(measured(&fake), granted);
    Ok(())
}
