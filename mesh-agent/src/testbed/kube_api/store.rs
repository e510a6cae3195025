//! What the fake API server holds: the objects of each resource as JSON, one global
//! resourceVersion, and the history of changes that watches replay.
//!
//! The history is kept whole until [`Store::compact`] drops it, which is how a test makes a
//! client's resourceVersion too old (410 Gone). Every change is announced on a
//! [`tokio::sync::watch`] channel; watches then read the history from their own cursor, so a
//! slow watch never loses events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};

/// A collection the fake serves.
#[derive(Debug)]
pub(super) struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        match self.group {
            "" => self.version.to_string(),
            group => format!("{group}/{}", self.version),
        }
    }
}

const fn resource(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        namespaced,
    }
}

pub(super) const RESOURCES: &[Resource] = &[
    resource("", "v1", "Namespace", "namespaces", false),
    resource("", "v1", "Pod", "pods", true),
    resource("", "v1", "Service", "services", true),
    resource(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    resource(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
        true,
    ),
    resource(
        "gateway.networking.k8s.io",
        "v1",
        "GRPCRoute",
        "grpcroutes",
        true,
    ),
    resource(
        "weft.dev",
        "v1alpha1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        true,
    ),
    resource(
        "weft.dev",
        "v1alpha1",
        "PeerAuthentication",
        "peerauthentications",
        true,
    ),
];

/// Index into [`RESOURCES`].
pub(super) type ResourceId = usize;

pub(super) fn by_path(group: &str, version: &str, plural: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

pub(super) fn by_kind(kind: &str) -> Option<ResourceId> {
    RESOURCES.iter().position(|r| r.kind == kind)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Added,
    Modified,
    Deleted,
}

/// One change, with the object before it, so that a watch with a selector can tell an object
/// that stopped matching (DELETED for that watch) from one that never did.
#[derive(Clone, Debug)]
pub(super) struct Event {
    pub rv: u64,
    pub resource: ResourceId,
    pub change: Change,
    pub object: Arc<Value>,
    pub previous: Option<Arc<Value>>,
}

/// `(resource, namespace, name)`; the namespace is empty for cluster-scoped resources.
type Key = (ResourceId, String, String);

#[derive(Debug, Default)]
pub(super) struct Store {
    rv: u64,
    /// A watch may start from this resourceVersion or later; older ones get 410 Gone.
    floor: u64,
    uids: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    history: Vec<Event>,
    lists: HashMap<ResourceId, u64>,
}

/// Why a watch cannot start (or go on) from a resourceVersion.
#[derive(Debug)]
pub(super) struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

impl Store {
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Creates or replaces the object (found by its apiVersion and kind), and returns it as
    /// stored: `resourceVersion` set, `uid` and `creationTimestamp` kept from the object it
    /// replaces or set when absent.
    pub fn apply(&mut self, mut object: Value) -> Result<(Value, u64)> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let id = by_kind(kind).with_context(|| format!("kind `{kind}` is not served"))?;
        let resource = &RESOURCES[id];
        let api_version = object.get("apiVersion").and_then(Value::as_str);
        if api_version != Some(resource.api_version().as_str()) {
            bail!("{kind} objects are {}", resource.api_version());
        }
        let meta = metadata(&mut object)?;
        let name = text(meta, "name").context("metadata.name is missing")?;
        let namespace = match resource.namespaced {
            true => text(meta, "namespace").unwrap_or_else(|| "default".into()),
            false => String::new(),
        };
        if resource.namespaced {
            meta.insert("namespace".into(), Value::String(namespace.clone()));
        }
        let key = (id, namespace, name);
        let previous = self.objects.get(&key).cloned();
        let kept = |field: &str| {
            previous
                .as_ref()?
                .pointer(&format!("/metadata/{field}"))
                .cloned()
        };
        self.rv += 1;
        self.uids += 1;
        let uid = kept("uid").unwrap_or_else(|| Value::String(uid(self.uids)));
        let created = kept("creationTimestamp").unwrap_or_else(now);
        meta.entry("uid").or_insert(uid);
        meta.entry("creationTimestamp").or_insert(created);
        meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        let change = match previous {
            Some(_) => Change::Modified,
            None => Change::Added,
        };
        let stored = Arc::new(object);
        self.objects.insert(key, stored.clone());
        self.record(id, change, stored.clone(), previous);
        Ok(((*stored).clone(), self.rv))
    }

    /// Deletes the object; the DELETED event carries it with the deletion's resourceVersion.
    pub fn delete(&mut self, kind: &str, namespace: &str, name: &str) -> Option<u64> {
        let id = by_kind(kind)?;
        let namespace = if RESOURCES[id].namespaced {
            namespace
        } else {
            ""
        };
        let key = (id, namespace.to_string(), name.to_string());
        let previous = self.objects.remove(&key)?;
        self.rv += 1;
        let mut object = (*previous).clone();
        if let Ok(meta) = metadata(&mut object) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        self.record(id, Change::Deleted, Arc::new(object), Some(previous));
        Some(self.rv)
    }

    /// Forgets the history: a watch from any earlier resourceVersion gets 410 Gone.
    pub fn compact(&mut self) -> u64 {
        self.rv += 1;
        self.floor = self.rv;
        self.history.clear();
        self.rv
    }

    /// The objects of a resource (in `namespace`, when given), and the resourceVersion they
    /// are current at. Counts the request for [`Store::lists`].
    pub fn list(&mut self, id: ResourceId, namespace: Option<&str>) -> (u64, Vec<Arc<Value>>) {
        *self.lists.entry(id).or_default() += 1;
        self.objects(id, namespace)
    }

    /// [`Store::list`] without counting it: what a watch from "any version" starts with.
    pub fn objects(&self, id: ResourceId, namespace: Option<&str>) -> (u64, Vec<Arc<Value>>) {
        let objects = self
            .objects
            .iter()
            .filter(|((r, ns, _), _)| *r == id && namespace.is_none_or(|n| n == ns))
            .map(|(_, object)| object.clone())
            .collect();
        (self.rv, objects)
    }

    pub fn get(&self, id: ResourceId, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let namespace = if RESOURCES[id].namespaced {
            namespace
        } else {
            ""
        };
        let key = (id, namespace.to_string(), name.to_string());
        self.objects.get(&key).cloned()
    }

    pub fn lists(&self, kind: &str) -> u64 {
        by_kind(kind)
            .and_then(|id| self.lists.get(&id).copied())
            .unwrap_or(0)
    }

    /// The changes of a resource after `after`, and the resourceVersion they reach.
    pub fn since(&self, id: ResourceId, after: u64) -> Result<(Vec<Event>, u64), Expired> {
        if after < self.floor {
            return Err(Expired {
                requested: after,
                oldest: self.floor,
            });
        }
        let start = self.history.partition_point(|e| e.rv <= after);
        let events = self.history[start..]
            .iter()
            .filter(|e| e.resource == id)
            .cloned()
            .collect();
        Ok((events, self.rv))
    }

    fn record(
        &mut self,
        resource: ResourceId,
        change: Change,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        self.history.push(Event {
            rv: self.rv,
            resource,
            change,
            object,
            previous,
        });
    }
}

fn metadata(object: &mut Value) -> Result<&mut Map<String, Value>> {
    let object = object
        .as_object_mut()
        .context("an object must be a JSON object")?;
    let meta = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    meta.as_object_mut().context("metadata must be an object")
}

fn text(meta: &Map<String, Value>, key: &str) -> Option<String> {
    meta.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A UUID-shaped uid, unique within the store.
fn uid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn now() -> Value {
    Value::String(Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}
