//! The fake against the real kube client: lists with selectors, watches (replay, selectors,
//! bookmarks, 410 Gone and the watcher's relist), TokenReviews.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;

use super::FakeApi;

fn pod(ns: &str, name: &str, node: &str, app: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
    })
}

fn names(pods: &[Pod]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn lists_honour_namespaces_and_selectors() -> anyhow::Result<()> {
    let fake = FakeApi::start().await?;
    fake.apply(pod("shop", "a", "node-a", "web"))?;
    fake.apply(pod("shop", "b", "node-b", "web"))?;
    fake.apply(pod("ops", "c", "node-a", "db"))?;
    let all: Api<Pod> = Api::all(fake.client()?);
    let on_a = all
        .list(&ListParams::default().fields("spec.nodeName=node-a"))
        .await?;
    assert_eq!(names(&on_a.items), ["a", "c"]);
    let web = all.list(&ListParams::default().labels("app=web")).await?;
    assert_eq!(names(&web.items), ["a", "b"]);
    let shop: Api<Pod> = Api::namespaced(fake.client()?, "shop");
    assert_eq!(
        names(&shop.list(&ListParams::default()).await?.items),
        ["a", "b"]
    );
    let b = shop.get("b").await?;
    assert_eq!(b.metadata.uid.as_deref().map(str::len), Some(36));
    assert!(b.metadata.creation_timestamp.is_some());
    let rv: u64 = on_a.metadata.resource_version.unwrap_or_default().parse()?;
    assert_eq!(rv, fake.resource_version());
    let services: Api<Service> = Api::all(fake.client()?);
    assert!(
        services
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn watches_replay_stream_and_bookmark() -> anyhow::Result<()> {
    let fake = FakeApi::start().await?;
    let first = fake.apply(pod("shop", "a", "node-a", "web"))?;
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    fake.apply(pod("shop", "b", "node-b", "web"))?;
    let api: Api<Pod> = Api::all(fake.client()?);
    let params = WatchParams::default().fields("spec.nodeName=node-a");
    let mut events = api.watch(&params, &rv).await?.boxed();
    // `b` (after rv) is on node-b: not replayed. Moving `a` to node-b makes it leave the
    // selection: DELETED for this watch.
    fake.apply(pod("shop", "a", "node-b", "web"))?;
    fake.apply(pod("shop", "c", "node-a", "web"))?;
    let mut seen = Vec::new();
    let mut bookmarked = false;
    while seen.len() < 2 || !bookmarked {
        let event = tokio::time::timeout(PATIENCE, events.try_next()).await??;
        match event {
            Some(WatchEvent::Added(p)) => {
                seen.push(format!("added {}", p.metadata.name.unwrap_or_default()))
            }
            Some(WatchEvent::Deleted(p)) => {
                seen.push(format!("deleted {}", p.metadata.name.unwrap_or_default()))
            }
            Some(WatchEvent::Bookmark(b)) => {
                bookmarked = true;
                assert_eq!(
                    b.metadata.resource_version,
                    fake.resource_version().to_string()
                );
            }
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["deleted a", "added c"]);
    Ok(())
}

#[tokio::test]
async fn compaction_makes_the_watcher_relist() -> anyhow::Result<()> {
    let fake = FakeApi::start().await?;
    fake.apply(pod("shop", "a", "node-a", "web"))?;
    let api: Api<Pod> = Api::all(fake.client()?);
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut next = async || -> anyhow::Result<watcher::Event<Pod>> {
        match tokio::time::timeout(PATIENCE, stream.next()).await? {
            Some(Ok(event)) => Ok(event),
            // A 410 surfaces as an error; the watcher relists on the next poll.
            Some(Err(e)) => Err(e.into()),
            None => anyhow::bail!("the watcher ended"),
        }
    };
    assert!(matches!(next().await?, watcher::Event::Init));
    assert!(matches!(next().await?, watcher::Event::InitApply(_)));
    assert!(matches!(next().await?, watcher::Event::InitDone));
    assert_eq!(fake.list_requests("Pod"), 1);
    fake.apply(pod("shop", "b", "node-a", "web"))?;
    assert!(matches!(next().await?, watcher::Event::Apply(_)));
    fake.compact();
    let error = next().await.expect_err("the resumed watch is too old");
    let gone = matches!(
        error.downcast_ref::<watcher::Error>(),
        Some(watcher::Error::WatchError(status)) if status.code == 410
    );
    assert!(gone, "{error:?}");
    assert!(matches!(next().await?, watcher::Event::Init));
    // Both pods, listed again.
    assert!(matches!(next().await?, watcher::Event::InitApply(_)));
    assert!(matches!(next().await?, watcher::Event::InitApply(_)));
    assert!(matches!(next().await?, watcher::Event::InitDone));
    assert_eq!(fake.list_requests("Pod"), 2);
    Ok(())
}

#[tokio::test]
async fn token_reviews_answer_from_the_map() -> anyhow::Result<()> {
    let fake = FakeApi::start().await?;
    let extra = BTreeMap::from([(
        "authentication.kubernetes.io/pod-name".to_string(),
        vec!["agent-x".to_string()],
    )]);
    fake.set_token("good", "system:serviceaccount:weft:agent", extra);
    let api: Api<TokenReview> = Api::all(fake.client()?);
    let review = |token: &str| TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences: Some(vec!["weft-ca".to_string()]),
        },
        ..TokenReview::default()
    };
    let ok = api.create(&PostParams::default(), &review("good")).await?;
    let status = ok.status.unwrap_or_default();
    assert_eq!(status.authenticated, Some(true));
    let user = status.user.unwrap_or_default();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:weft:agent")
    );
    assert_eq!(
        user.extra.unwrap_or_default()["authentication.kubernetes.io/pod-name"],
        ["agent-x"]
    );
    assert_eq!(status.audiences, Some(vec!["weft-ca".to_string()]));
    let bad = api.create(&PostParams::default(), &review("bad")).await?;
    assert_eq!(bad.status.unwrap_or_default().authenticated, Some(false));
    Ok(())
}
