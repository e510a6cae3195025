//! The source's memory: for each kind, the records of the objects the API server has, kept
//! current event by event.
//!
//! A relist (at start, and after a 410 Gone) fills a side table that replaces the kind's table
//! at once when the list is complete, so a relist never shows half a kind. An object whose new
//! version is invalid leaves the table (what it now says cannot be applied, and the previous
//! version no longer exists) and is remembered as rejected until it changes or goes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kube::runtime::watcher;
use tracing::warn;

use super::kinds::Kind;
use super::translate::{ObjectKey, PodRecord, Record, Translated};

/// One watch event of one kind, its object already translated.
pub(super) struct Update {
    pub kind: Kind,
    pub change: Change,
}

pub(super) enum Change {
    Apply(ObjectKey, Translated),
    Delete(ObjectKey),
    /// A relist starts.
    Init,
    InitApply(ObjectKey, Translated),
    /// The relist is complete.
    InitDone,
    /// The watch failed; the watcher retries after a backoff.
    Failed(watcher::Error),
}

impl Change {
    /// The `type` label of `weft_kube_events_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Change::Apply(..) => "apply",
            Change::Delete(_) => "delete",
            Change::Init => "init",
            Change::InitApply(..) => "init_apply",
            Change::InitDone => "init_done",
            Change::Failed(_) => "error",
        }
    }
}

/// What applying an update did.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// The tables changed: a snapshot is due.
    pub changed: bool,
    /// The object was found invalid, and was not already rejected for the same reason.
    pub rejected: Option<(ObjectKey, String)>,
}

#[derive(Default)]
struct Table {
    objects: BTreeMap<ObjectKey, Record>,
    relist: Option<Relist>,
    /// Listed completely once (or not served by the API server): the source may publish.
    synced: bool,
}

#[derive(Default)]
struct Relist {
    objects: BTreeMap<ObjectKey, Record>,
    rejected: HashSet<ObjectKey>,
}

#[derive(Default)]
pub(super) struct Cache {
    tables: BTreeMap<Kind, Table>,
    /// Objects left out as invalid, with the reason.
    rejected: HashMap<(Kind, ObjectKey), String>,
}

impl Cache {
    pub fn new() -> Cache {
        let tables = Kind::ALL.map(|k| (k, Table::default())).into();
        Cache {
            tables,
            rejected: HashMap::new(),
        }
    }

    /// Every kind has been listed: a snapshot would not miss a kind's objects.
    pub fn synced(&self) -> bool {
        self.tables.values().all(|t| t.synced)
    }

    pub fn len(&self, kind: Kind) -> usize {
        self.tables.get(&kind).map_or(0, |t| t.objects.len())
    }

    pub fn records(&self, kind: Kind) -> impl Iterator<Item = (&ObjectKey, &Record)> {
        self.tables.get(&kind).into_iter().flat_map(|t| &t.objects)
    }

    /// The records of one namespace's objects of `kind`.
    pub fn records_in<'a>(
        &'a self,
        kind: Kind,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Record)> {
        let start = ObjectKey {
            namespace: namespace.to_string(),
            name: String::new(),
        };
        self.tables
            .get(&kind)
            .into_iter()
            .flat_map(move |t| t.objects.range(start.clone()..))
            .take_while(move |(k, _)| k.namespace == namespace)
    }

    /// The pods, mutable so that the snapshot can set their enrollment in place.
    pub fn pods_mut(&mut self) -> impl Iterator<Item = &mut PodRecord> {
        let table = self.tables.get_mut(&Kind::Pod);
        table
            .into_iter()
            .flat_map(|t| t.objects.values_mut())
            .filter_map(|r| match r {
                Record::Pod(p) => Some(p),
                _ => None,
            })
    }

    pub fn apply(&mut self, update: Update) -> Applied {
        let kind = update.kind;
        let table = self.tables.entry(kind).or_default();
        let mut applied = Applied::default();
        match update.change {
            Change::Apply(key, translated) => {
                match translated {
                    Ok(Some(mut record)) => {
                        let old = table.objects.get(&key);
                        carry_enrollment(old, &mut record);
                        // Most pod updates are status changes the model does not hold.
                        applied.changed = old != Some(&record);
                        if applied.changed {
                            table.objects.insert(key.clone(), record);
                        }
                    }
                    Ok(None) => applied.changed = table.objects.remove(&key).is_some(),
                    Err(reason) => {
                        applied.changed = table.objects.remove(&key).is_some();
                        applied.rejected = self.reject(kind, key, reason);
                        return applied;
                    }
                }
                self.rejected.remove(&(kind, key));
            }
            Change::Delete(key) => {
                applied.changed = table.objects.remove(&key).is_some();
                self.rejected.remove(&(kind, key));
            }
            Change::Init => table.relist = Some(Relist::default()),
            Change::InitApply(key, translated) => {
                let relist = table.relist.get_or_insert_default();
                match translated {
                    Ok(Some(record)) => {
                        relist.objects.insert(key.clone(), record);
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        relist.rejected.insert(key.clone());
                        applied.rejected = self.reject(kind, key, reason);
                        return applied;
                    }
                }
                self.rejected.remove(&(kind, key));
            }
            Change::InitDone => {
                let relist = table.relist.take().unwrap_or_default();
                table.objects = relist.objects;
                table.synced = true;
                applied.changed = true;
                // Rejected objects that were not listed again are gone.
                self.rejected
                    .retain(|(k, key), _| *k != kind || relist.rejected.contains(key));
            }
            Change::Failed(error) => {
                warn!(kind = %kind, error = %error, "Kubernetes watch failed; retrying");
                if !table.synced && not_served(&error) {
                    warn!(
                        kind = %kind,
                        "the API server does not serve this kind (CRD not installed?); \
                         treating it as empty until it does"
                    );
                    table.synced = true;
                    applied.changed = true;
                }
            }
        }
        applied
    }

    /// Remembers a rejection; returns it when it is new (not the same reason again).
    fn reject(
        &mut self,
        kind: Kind,
        key: ObjectKey,
        reason: String,
    ) -> Option<(ObjectKey, String)> {
        let slot = (kind, key.clone());
        if self.rejected.get(&slot) == Some(&reason) {
            return None;
        }
        self.rejected.insert(slot, reason.clone());
        Some((key, reason))
    }
}

/// A pod's enrollment is decided by the snapshot and kept in the record: a new version of the
/// pod keeps it, so that an unchanged pod compares equal and stays shared between snapshots.
fn carry_enrollment(old: Option<&Record>, new: &mut Record) {
    if let (Some(Record::Pod(old)), Record::Pod(new)) = (old, new)
        && new.workload.enrolled != old.workload.enrolled
    {
        Arc::make_mut(&mut new.workload).enrolled = old.workload.enrolled;
    }
}

/// The initial list failed with 404: the resource does not exist on this server.
fn not_served(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 404)
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
