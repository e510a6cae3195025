use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;
use crate::state::load_file;
use crate::state::scratch::Scratch;

const TICK: Duration = Duration::from_millis(20);
const WAIT: Duration = Duration::from_secs(5);

fn version(workloads: &[&str]) -> String {
    let mut yaml = String::from("namespaces: [{name: shop}]\nnodes: [{name: n}]\nworkloads:\n");
    for name in workloads {
        yaml.push_str(&format!("  - {{name: {name}, namespace: shop, node: n}}\n"));
    }
    yaml
}

fn names(state: &MeshState) -> Vec<String> {
    state.workloads.keys().map(|k| k.name.clone()).collect()
}

/// Starts a watcher whose `prepare` marks every workload (cgroup id 7) and whose reload
/// results arrive on the returned channel.
fn start(
    path: &Path,
) -> (
    watch::Receiver<Arc<MeshState>>,
    JoinHandle<()>,
    mpsc::UnboundedReceiver<ReloadResult>,
) {
    let prepare = |state: &mut MeshState| {
        for w in state.workloads.values_mut() {
            Arc::make_mut(w).cgroup_id = Some(7);
        }
    };
    // As the agent does: the initial snapshot is prepared like every later one.
    let mut initial = load_file(path).expect("initial version loads");
    prepare(&mut initial);
    let (results_tx, results) = mpsc::unbounded_channel();
    let on_reload = move |result| {
        let _ = results_tx.send(result);
    };
    let (rx, task) = watch_file(
        path.to_path_buf(),
        TICK,
        Arc::new(initial),
        prepare,
        on_reload,
    );
    (rx, task, results)
}

async fn next(results: &mut mpsc::UnboundedReceiver<ReloadResult>) -> ReloadResult {
    timeout(WAIT, results.recv())
        .await
        .expect("a reload within the wait")
        .expect("watcher alive")
}

#[tokio::test]
async fn publishes_good_versions_and_keeps_the_last_good_one() {
    let scratch = Scratch::new("watch-good-bad");
    let path = scratch.0.join("mesh.yaml");
    std::fs::write(&path, version(&["a"])).expect("write v1");
    let (mut rx, task, mut results) = start(&path);

    std::fs::write(&path, version(&["a", "b"])).expect("write v2");
    assert_eq!(next(&mut results).await, ReloadResult::Accepted);
    timeout(WAIT, rx.changed())
        .await
        .expect("published")
        .expect("sender alive");
    let v2 = rx.borrow_and_update().clone();
    assert_eq!(names(&v2), ["a", "b"]);
    assert!(
        v2.workloads.values().all(|w| w.cgroup_id == Some(7)),
        "prepare ran"
    );

    std::fs::write(&path, version(&["a", "b"]).replace("node: n}", "nod: n}")).expect("break");
    assert_eq!(next(&mut results).await, ReloadResult::Rejected);
    assert!(
        !rx.has_changed().expect("sender alive"),
        "a rejected file is not published"
    );
    assert!(
        Arc::ptr_eq(&rx.borrow(), &v2),
        "the last good snapshot stays"
    );

    std::fs::write(&path, version(&["a", "b", "c"])).expect("fix");
    assert_eq!(next(&mut results).await, ReloadResult::Accepted);
    timeout(WAIT, rx.changed())
        .await
        .expect("published")
        .expect("sender alive");
    assert_eq!(names(&rx.borrow_and_update()), ["a", "b", "c"]);
    assert!(results.try_recv().is_err(), "one result per change");

    drop(rx);
    timeout(WAIT, task)
        .await
        .expect("stops without receivers")
        .expect("no panic");
}

#[tokio::test]
async fn a_missing_file_is_rejected_once_and_unchanged_content_is_not_republished() {
    let scratch = Scratch::new("watch-missing");
    let path = scratch.0.join("mesh.yaml");
    std::fs::write(&path, version(&["a"])).expect("write v1");
    let (rx, task, mut results) = start(&path);

    // Let the first check confirm the initial snapshot, then remove the file.
    tokio::time::sleep(TICK * 4).await;
    std::fs::remove_file(&path).expect("remove");
    assert_eq!(next(&mut results).await, ReloadResult::Rejected);
    tokio::time::sleep(TICK * 5).await;
    assert!(
        results.try_recv().is_err(),
        "a file that stays missing is reported once"
    );

    // The same content again, then a comment: accepted, but readers see no change.
    let initial = rx.borrow().clone();
    std::fs::write(&path, version(&["a"])).expect("restore");
    assert_eq!(next(&mut results).await, ReloadResult::Accepted);
    std::fs::write(&path, format!("# a comment\n{}", version(&["a"]))).expect("comment only");
    assert_eq!(next(&mut results).await, ReloadResult::Accepted);
    assert!(
        !rx.has_changed().expect("sender alive"),
        "same model, no publish"
    );
    assert!(Arc::ptr_eq(&rx.borrow(), &initial));

    task.abort();
}

#[test]
fn a_route_change_is_a_change_of_content() {
    let base = "namespaces: [{name: shop}]\nservices:\n  - {name: web, namespace: shop, ports: [{port: 80}]}\n  - {name: v1, namespace: shop, ports: [{port: 80}]}\n";
    let with_route = |path: &str| {
        let route = format!(
            "routes:\n  - {{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, \
             metadata: {{name: r, namespace: shop}}, spec: {{parentRefs: [{{group: \"\", kind: \
             Service, name: web}}], rules: [{{matches: [{{path: {{value: {path}}}}}], \
             backendRefs: [{{name: v1, port: 80}}]}}]}}}}\n"
        );
        parse_str(Path::new("mesh.yaml"), &format!("{base}{route}")).expect("loads")
    };
    assert!(same_content(&with_route("/a"), &with_route("/a")));
    assert!(!same_content(&with_route("/a"), &with_route("/b")));
}

#[test]
fn a_policy_change_is_a_change_of_content() {
    let with = |policies: &str| {
        let yaml = format!("namespaces: [{{name: shop}}]\n{policies}");
        parse_str(Path::new("mesh.yaml"), &yaml).expect("loads")
    };
    let allow = "authorizationPolicies: [{name: p, namespace: shop, rules: [{}]}]\n";
    let deny = "authorizationPolicies: [{name: p, namespace: shop, action: DENY, rules: [{}]}]\n";
    let strict = "peerAuthentications: [{name: d, namespace: shop, mode: STRICT}]\n";
    let permissive = "peerAuthentications: [{name: d, namespace: shop, mode: PERMISSIVE}]\n";
    assert!(same_content(&with(allow), &with(allow)));
    assert!(!same_content(&with(allow), &with(deny)));
    assert!(!same_content(&with(strict), &with(permissive)));
}
