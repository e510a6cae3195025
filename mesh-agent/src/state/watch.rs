//! Hot reload of the state file.
//!
//! The file is polled (metadata every tick, content only when the metadata moved) rather than
//! watched with inotify: polling also follows editors that replace the file and Kubernetes
//! ConfigMap volumes that swap a symlink, and needs no extra dependency. A new snapshot is
//! published only when it loads and validates; a rejected file is logged and the last good
//! snapshot stays in force, so a typo never empties the mesh.

use std::hash::{DefaultHasher, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::file::{ConfigError, parse_str};
use super::model::MeshState;

/// What one reload attempt ended with; the label of `weft_config_reloads_total{result}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    /// The changed file loaded and validated; its snapshot is in force.
    Accepted,
    /// The changed file (or its absence) was refused; the last good snapshot stays in force.
    Rejected,
}

impl ReloadResult {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Accepted => "accepted",
            ReloadResult::Rejected => "rejected",
        }
    }
}

/// Watches `path` and publishes each good version of it.
///
/// Every `interval` the file's metadata is checked; once a change has settled (the same metadata
/// on two consecutive ticks, so a file caught half-written is not loaded) and its content hash
/// differs, it is loaded, `prepare` runs on the new snapshot (the agent resolves cgroups there),
/// and the snapshot is published unless it equals the current one. Failures are logged as
/// `config reload rejected` and leave the current snapshot alone. `on_reload` is told about
/// every attempt, once per distinct outcome.
///
/// `initial` is the snapshot the caller loaded from `path`; the first check compares against it,
/// so a change made between that load and this call is still picked up. The task ends when every
/// receiver is dropped. Must be called within a Tokio runtime.
pub fn watch_file(
    path: PathBuf,
    interval: Duration,
    initial: Arc<MeshState>,
    prepare: impl Fn(&mut MeshState) + Send + 'static,
    on_reload: impl Fn(ReloadResult) + Send + 'static,
) -> (watch::Receiver<Arc<MeshState>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(initial.clone());
    let mut poller = Poller {
        path,
        prepare,
        current: initial,
        seen: None,
        loaded: None,
        content: None,
        failure: None,
        baseline: true,
        changed_at: None,
    };
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if tx.is_closed() {
                return;
            }
            // Reading, parsing and resolving cgroups are blocking file-system work.
            let polled = tokio::task::spawn_blocking(move || {
                let outcome = poller.poll();
                (poller, outcome)
            })
            .await;
            let outcome = match polled {
                Ok((back, outcome)) => {
                    poller = back;
                    outcome
                }
                Err(e) => {
                    error!(error = %e, "config watcher stopped: a reload panicked");
                    return;
                }
            };
            if let Some(result) = outcome {
                if result == ReloadResult::Accepted {
                    // Only replace when it differs: receivers re-sync on every change.
                    tx.send_if_modified(|current| {
                        let changed = !Arc::ptr_eq(current, &poller.current);
                        *current = poller.current.clone();
                        changed
                    });
                }
                on_reload(result);
            }
        }
    });
    (rx, task)
}

/// What identifies a version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    modified: Option<SystemTime>,
}

struct Poller<P> {
    path: PathBuf,
    prepare: P,
    current: Arc<MeshState>,
    /// Metadata at the previous tick: a change is loaded once it holds for a whole tick.
    seen: Option<Stamp>,
    /// Metadata of the version last loaded (good or bad).
    loaded: Option<Stamp>,
    /// Hash of the content last loaded (good or bad): a touch without an edit is no reload.
    content: Option<u64>,
    /// The last failure reported, so a file that stays broken is reported once.
    failure: Option<String>,
    /// The first load only confirms `initial`: no reload is counted if it matches.
    baseline: bool,
    /// When the metadata last changed: where a reload's way to the datapath starts.
    changed_at: Option<Instant>,
}

impl<P: Fn(&mut MeshState)> Poller<P> {
    /// One tick. `Some` when a reload was attempted: with `Accepted`, `current` holds the
    /// snapshot to publish (the same `Arc` if nothing changed).
    fn poll(&mut self) -> Option<ReloadResult> {
        let stamp = match stamp_of(&self.path) {
            Ok(stamp) => stamp,
            Err(e) => return self.unreadable(&e),
        };
        let settled = self.seen == Some(stamp);
        if self.seen != Some(stamp) {
            self.changed_at = Some(Instant::now());
        }
        self.seen = Some(stamp);
        if !settled || self.loaded == Some(stamp) {
            return None;
        }
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => return self.unreadable(&e),
        };
        // A writer got in between the stat and the read: wait for it to settle.
        if stamp_of(&self.path).ok() != Some(stamp) {
            return None;
        }
        self.loaded = Some(stamp);
        let hash = {
            let mut h = DefaultHasher::new();
            h.write(text.as_bytes());
            h.finish()
        };
        if self.content == Some(hash) {
            return None;
        }
        self.content = Some(hash);
        match parse_str(&self.path, &text) {
            Ok(mut state) => {
                (self.prepare)(&mut state);
                self.failure = None;
                let first = std::mem::replace(&mut self.baseline, false);
                if same_content(&state, &self.current) {
                    return (!first).then_some(ReloadResult::Accepted);
                }
                info!(
                    file = %self.path.display(),
                    workloads = state.workloads.len(),
                    services = state.services.len(),
                    "config reloaded"
                );
                state.changed_at = self.changed_at;
                self.current = Arc::new(state);
                Some(ReloadResult::Accepted)
            }
            Err(e) => {
                self.baseline = false;
                self.fail(e)
            }
        }
    }

    /// The file is gone or unreadable: whatever appears at `path` next, even the content loaded
    /// last, deserves a full look.
    fn unreadable(&mut self, e: &std::io::Error) -> Option<ReloadResult> {
        self.seen = None;
        self.loaded = None;
        self.content = None;
        self.fail(ConfigError {
            file: self.path.clone(),
            problems: vec![format!("cannot read the file: {e}")],
        })
    }

    fn fail(&mut self, error: ConfigError) -> Option<ReloadResult> {
        let text = error.to_string();
        if self.failure.as_ref() == Some(&text) {
            return None;
        }
        warn!(
            file = %self.path.display(),
            problems = error.problems.len(),
            "config reload rejected, keeping the last good state:\n{text}"
        );
        self.failure = Some(text);
        Some(ReloadResult::Rejected)
    }
}

fn stamp_of(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// Equal as far as any reader can tell (the indexes and route tables derive from these).
fn same_content(a: &MeshState, b: &MeshState) -> bool {
    a.namespaces == b.namespaces
        && a.nodes == b.nodes
        && a.workloads == b.workloads
        && a.services == b.services
        && a.routes == b.routes
        && a.authorization_policies == b.authorization_policies
        && a.peer_authentications == b.peer_authentications
}

#[cfg(test)]
mod tests;
