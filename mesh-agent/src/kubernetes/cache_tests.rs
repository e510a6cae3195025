//! The cache's bookkeeping: no-op updates, relists, rejections remembered once.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::*;
use crate::kubernetes::translate;

fn pod_key(name: &str) -> ObjectKey {
    ObjectKey {
        namespace: "shop".into(),
        name: name.into(),
    }
}

fn pod(name: &str, ip: &str, phase_detail: &str) -> Translated {
    let value: Value = json!({
        "metadata": {"namespace": "shop", "name": name, "uid": format!("uid-{name}")},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c"}]},
        "status": {"podIP": ip, "message": phase_detail},
    });
    let pod: Pod = serde_json::from_value(value).expect("a test pod");
    translate::pod(pod)
}

fn apply(cache: &mut Cache, change: Change) -> Applied {
    cache.apply(Update {
        kind: Kind::Pod,
        change,
    })
}

#[test]
fn updates_the_model_does_not_hold_change_nothing() {
    let mut cache = Cache::new();
    let first = apply(
        &mut cache,
        Change::Apply(pod_key("a"), pod("a", "10.0.0.1", "x")),
    );
    assert!(first.changed);
    let same = apply(
        &mut cache,
        Change::Apply(pod_key("a"), pod("a", "10.0.0.1", "y")),
    );
    assert!(!same.changed, "a status message is not in the model");
    let moved = apply(
        &mut cache,
        Change::Apply(pod_key("a"), pod("a", "10.0.0.2", "y")),
    );
    assert!(moved.changed);
    assert!(!apply(&mut cache, Change::Delete(pod_key("never-seen"))).changed);
}

#[test]
fn a_relist_replaces_the_table_when_complete() {
    let mut cache = Cache::new();
    apply(
        &mut cache,
        Change::Apply(pod_key("a"), pod("a", "10.0.0.1", "")),
    );
    apply(&mut cache, Change::Init);
    apply(
        &mut cache,
        Change::InitApply(pod_key("b"), pod("b", "10.0.0.2", "")),
    );
    assert_eq!(
        cache.len(Kind::Pod),
        1,
        "the old table stays until the list is complete"
    );
    assert!(!cache.synced());
    assert!(apply(&mut cache, Change::InitDone).changed);
    let names: Vec<String> = cache
        .records(Kind::Pod)
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(names, ["shop/b"]);
}

#[test]
fn a_rejection_is_reported_once_per_reason() {
    let mut cache = Cache::new();
    let bad = || Change::Apply(pod_key("a"), pod("a", "nope", ""));
    let first = apply(&mut cache, bad());
    assert!(
        first
            .rejected
            .is_some_and(|(_, reason)| reason.contains("`nope`"))
    );
    assert!(
        apply(&mut cache, bad()).rejected.is_none(),
        "the same rejection again"
    );
    // A relist that no longer finds it forgets it; seen again, it counts again.
    apply(&mut cache, Change::Init);
    apply(&mut cache, Change::InitDone);
    assert!(apply(&mut cache, bad()).rejected.is_some());
}
