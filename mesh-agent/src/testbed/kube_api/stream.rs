//! Watch streams: JSON lines as the real API server sends them. The changes after the
//! requested resourceVersion, then new ones as they happen, a BOOKMARK every
//! `bookmark_every`, and an `ERROR` event with a 410 `Status` when the version is older than
//! the history (an HTTP 410 would make kube's watcher retry the same version forever; the
//! event makes it relist).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::select::Selector;
use super::server::{Body, Shared, Target, status_value};
use super::store::{Change, Event, RESOURCES};

pub(super) fn watch(
    shared: Arc<Shared>,
    target: Target,
    selector: Selector,
    query: &HashMap<String, String>,
) -> Response<Body> {
    // "" and "0" mean "from any version": the current objects first, as ADDED events.
    let from = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse::<u64>().ok())
        .filter(|rv| *rv != 0);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let stream = Stream {
        shared,
        target,
        selector,
        tx,
    };
    tokio::spawn(stream.run(from, timeout, bookmarks));
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    let mut response = Response::new(StreamBody::new(frames).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// One open watch.
struct Stream {
    shared: Arc<Shared>,
    target: Target,
    selector: Selector,
    tx: mpsc::Sender<Bytes>,
}

impl Stream {
    /// Streams until the client goes away, the timeout passes, or the fake ends every watch.
    async fn run(self, from: Option<u64>, timeout: Duration, bookmarks: bool) {
        let mut signals = self.shared.signal.subscribe();
        let epoch = signals.borrow().epoch;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let period = self.shared.bookmark_every;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut cursor = match from {
            Some(rv) => rv,
            None => match self.current().await {
                Some(rv) => rv,
                None => return,
            },
        };
        let mut bookmark_due = false;
        loop {
            cursor = match self.drain(cursor).await {
                Some(rv) => rv,
                None => return,
            };
            if bookmark_due && bookmarks {
                if !self.send(&self.bookmark(cursor)).await {
                    return;
                }
                self.shared.bookmarks.fetch_add(1, Ordering::Relaxed);
            }
            bookmark_due = false;
            tokio::select! {
                changed = signals.changed() => {
                    if changed.is_err() || signals.borrow().epoch != epoch {
                        return;
                    }
                }
                _ = ticker.tick() => bookmark_due = true,
                _ = &mut deadline => return,
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Sends the current objects as ADDED; `None` when the client is gone.
    async fn current(&self) -> Option<u64> {
        let (rv, objects) = self
            .shared
            .store()
            .objects(self.target.resource, self.target.namespace.as_deref());
        for object in objects.iter().filter(|o| self.selector.matches(o)) {
            if !self
                .send(&json!({"type": "ADDED", "object": &**object}))
                .await
            {
                return None;
            }
        }
        Some(rv)
    }

    /// Sends the changes after `cursor` this watch sees; the new cursor, or `None` when the
    /// stream must end (client gone, or history compacted past `cursor`).
    async fn drain(&self, cursor: u64) -> Option<u64> {
        let since = self.shared.store().since(self.target.resource, cursor);
        let (events, rv) = match since {
            Ok(found) => found,
            Err(expired) => {
                let message = format!(
                    "too old resource version: {} ({})",
                    expired.requested, expired.oldest
                );
                let status = status_value(StatusCode::GONE, "Expired", &message);
                self.send(&json!({"type": "ERROR", "object": status})).await;
                return None;
            }
        };
        for event in &events {
            if let Some((kind, object)) = self.visible(event)
                && !self.send(&json!({"type": kind, "object": object})).await
            {
                return None;
            }
        }
        Some(rv)
    }

    /// How this watch sees a change: a selector turns an object that starts (stops) matching
    /// into ADDED (DELETED), as the real server does.
    fn visible<'a>(&self, event: &'a Event) -> Option<(&'static str, &'a Value)> {
        let object = &*event.object;
        if let Some(ns) = &self.target.namespace {
            let own = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str);
            if own != Some(ns.as_str()) {
                return None;
            }
        }
        let now = self.selector.matches(object);
        let before = event
            .previous
            .as_ref()
            .is_some_and(|p| self.selector.matches(p));
        let kind = match (event.change, before, now) {
            (Change::Deleted, true, _) => "DELETED",
            (Change::Added, _, true) | (Change::Modified, false, true) => "ADDED",
            (Change::Modified, true, true) => "MODIFIED",
            (Change::Modified, true, false) => "DELETED",
            _ => return None,
        };
        Some((kind, object))
    }

    fn bookmark(&self, rv: u64) -> Value {
        let resource = &RESOURCES[self.target.resource];
        json!({"type": "BOOKMARK", "object": {
            "kind": resource.kind,
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
        }})
    }

    /// One JSON line; false when the client is gone.
    async fn send(&self, value: &Value) -> bool {
        let mut line = serde_json::to_vec(value).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }
}
