//! One watcher per kind (kube's `watcher` with its default backoff, so a failed list or watch
//! is retried, and a 410 Gone relists), merged into one stream of translated [`Update`]s.
//!
//! Objects are translated as they arrive and only the records are kept, so the source's
//! memory is what the model needs, not the objects. All pods of the cluster are watched (a
//! node proxy tunnels to pods of every node and needs their node and identity); finished pods
//! are filtered out by the API server.

use std::fmt::Debug;

use futures_util::StreamExt;
use futures_util::stream::{BoxStream, SelectAll};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use super::cache::{Change, Update};
use super::kinds::Kind;
use super::translate::{self, ObjectKey, Translated};

/// Pods that can still hold an address (the API server supports this selector on pods).
const LIVE_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";

pub(super) fn updates(client: &Client) -> SelectAll<BoxStream<'static, Update>> {
    let config = watcher::Config::default;
    let mut all = SelectAll::new();
    all.push(stream(
        Api::<Namespace>::all(client.clone()),
        config(),
        Kind::Namespace,
        translate::namespace,
    ));
    all.push(stream(
        Api::<Pod>::all(client.clone()),
        config().fields(LIVE_PODS),
        Kind::Pod,
        translate::pod,
    ));
    all.push(stream(
        Api::<Service>::all(client.clone()),
        config(),
        Kind::Service,
        translate::service,
    ));
    all.push(stream(
        Api::<EndpointSlice>::all(client.clone()),
        config(),
        Kind::EndpointSlice,
        translate::endpoint_slice,
    ));
    let dynamic: [(Kind, Translate<DynamicObject>); 4] = [
        (Kind::HttpRoute, translate::http_route),
        (Kind::GrpcRoute, translate::grpc_route),
        (Kind::AuthorizationPolicy, translate::authorization_policy),
        (Kind::PeerAuthentication, translate::peer_authentication),
    ];
    for (kind, translate) in dynamic {
        if let Some(resource) = kind.dynamic_resource() {
            let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
            all.push(stream(api, config(), kind, translate));
        }
    }
    all
}

/// How a kind's objects become records.
type Translate<K> = fn(K) -> Translated;

fn stream<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind,
    translate: Translate<K>,
) -> BoxStream<'static, Update>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config)
        .default_backoff()
        .map(move |event| {
            let change = match event {
                Ok(watcher::Event::Apply(o)) => Change::Apply(key(&o), translate(o)),
                Ok(watcher::Event::Delete(o)) => Change::Delete(key(&o)),
                Ok(watcher::Event::Init) => Change::Init,
                Ok(watcher::Event::InitApply(o)) => Change::InitApply(key(&o), translate(o)),
                Ok(watcher::Event::InitDone) => Change::InitDone,
                Err(e) => Change::Failed(e),
            };
            Update { kind, change }
        })
        .boxed()
}

fn key<K: Resource>(object: &K) -> ObjectKey {
    let meta = object.meta();
    ObjectKey {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}
