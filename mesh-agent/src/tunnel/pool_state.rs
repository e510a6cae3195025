//! The pool's bookkeeping, kept under one lock: connections per key, dials in progress, and
//! the stream counts that decide when a connection is full or idle.
//!
//! `pool.rs` asks [`Inner::step`] what to do for a connect; `dial.rs` reports dials that ended
//! and connections that closed or idled out. Each stream holds a [`Lease`] on its connection's
//! count, so the count is right however the stream ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::Notify;

use super::TunnelError;
use super::config::PoolConfig;
use super::dial;
use super::pool::PoolKey;

pub(crate) struct Inner {
    pub(crate) cfg: PoolConfig,
    keys: Mutex<HashMap<PoolKey, Entry>>,
    /// Connections whose driver task runs (open sockets).
    pub(super) open: AtomicUsize,
    /// Connects waiting for a stream to end, and their wake-up.
    pub(super) waiting: AtomicUsize,
    pub(super) freed: Notify,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Entry {
    conns: Vec<Arc<Conn>>,
    dialing: Option<(u64, Dialing)>,
}

type Dialing = Shared<BoxFuture<'static, Result<(), TunnelError>>>;

/// A pooled connection: the handle that opens streams, and its bookkeeping.
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) sender: h2::client::SendRequest<Bytes>,
    pub(crate) state: Arc<ConnState>,
}

/// What a connection's driver shares with the pool (the driver holds no `SendRequest`, so a
/// connection the pool dropped closes once its streams end).
#[derive(Default)]
pub(crate) struct ConnState {
    pub(crate) streams: AtomicUsize,
    /// Streams ever opened: tells the idle check whether the connection was used meanwhile.
    pub(crate) uses: AtomicU64,
    /// Signalled when the last stream ends.
    pub(crate) idle: Notify,
    pub(crate) dead: AtomicBool,
}

/// One stream's place on its connection; released when both halves of the stream are gone.
pub(crate) struct Lease {
    state: Arc<ConnState>,
    pool: Weak<Inner>,
}

/// What a connect does next.
pub(super) enum Step {
    Ready(Arc<Conn>, Lease),
    Dial(Dialing),
    Full,
}

impl Inner {
    pub(super) fn new(cfg: PoolConfig) -> Self {
        Inner {
            cfg,
            keys: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
            next_id: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, Entry>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `checkout` does next, decided under the lock.
    pub(super) fn step(self: &Arc<Self>, key: &PoolKey, tls: &Arc<rustls::ClientConfig>) -> Step {
        let mut keys = self.lock();
        if !keys.contains_key(key) {
            keys.insert(key.clone(), Entry::default());
        }
        let Some(entry) = keys.get_mut(key) else {
            return Step::Full;
        };
        entry.conns.retain(|c| !c.state.dead.load(SeqCst));
        let max = self.cfg.max_streams_per_conn.max(1);
        for conn in &entry.conns {
            let limit = max.min(conn.sender.current_max_send_streams());
            if conn.state.streams.load(SeqCst) < limit {
                conn.state.streams.fetch_add(1, SeqCst);
                conn.state.uses.fetch_add(1, SeqCst);
                let lease = Lease {
                    state: conn.state.clone(),
                    pool: Arc::downgrade(self),
                };
                return Step::Ready(conn.clone(), lease);
            }
        }
        if let Some((_, dialing)) = &entry.dialing {
            return Step::Dial(dialing.clone());
        }
        if entry.conns.len() >= self.cfg.max_conns_per_key.max(1) {
            return Step::Full;
        }
        let id = self.next_id.fetch_add(1, SeqCst);
        let task = tokio::spawn(dial::dial(self.clone(), key.clone(), tls.clone(), id));
        let dialing = async move {
            task.await
                .unwrap_or_else(|e| Err(TunnelError::Connect(format!("tunnel dial task: {e}"))))
        }
        .boxed()
        .shared();
        entry.dialing = Some((id, dialing.clone()));
        Step::Dial(dialing)
    }

    /// The end of dial `id` for `key`: its connection joins the pool (if it made one).
    pub(crate) fn dialed(&self, key: &PoolKey, id: u64, conn: Option<Arc<Conn>>) {
        let mut keys = self.lock();
        let Some(entry) = keys.get_mut(key) else {
            return;
        };
        if entry.dialing.as_ref().is_some_and(|(d, _)| *d == id) {
            entry.dialing = None;
        }
        entry.conns.extend(conn);
        if entry.conns.is_empty() && entry.dialing.is_none() {
            keys.remove(key);
        }
    }

    /// Connection `id` of `key` leaves the pool (it ended or is unusable).
    pub(crate) fn remove(&self, key: &PoolKey, id: u64) {
        {
            let mut keys = self.lock();
            if let Some(entry) = keys.get_mut(key) {
                entry.conns.retain(|c| c.id != id);
                if entry.conns.is_empty() && entry.dialing.is_none() {
                    keys.remove(key);
                }
            }
        }
        // Connects waiting because the key was full may dial a replacement now.
        self.wake_waiters();
    }

    /// Removes connection `id` if it has had no stream since it counted `uses` of them.
    pub(crate) fn remove_if_idle(&self, key: &PoolKey, id: u64, uses: u64) -> bool {
        let mut keys = self.lock();
        let Some(entry) = keys.get_mut(key) else {
            return true;
        };
        let Some(at) = entry.conns.iter().position(|c| c.id == id) else {
            return true;
        };
        let state = &entry.conns[at].state;
        if state.streams.load(SeqCst) > 0 || state.uses.load(SeqCst) != uses {
            return false;
        }
        entry.conns.swap_remove(at);
        if entry.conns.is_empty() && entry.dialing.is_none() {
            keys.remove(key);
        }
        true
    }

    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, SeqCst);
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, SeqCst);
    }

    fn wake_waiters(&self) {
        if self.waiting.load(SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.state.streams.fetch_sub(1, SeqCst) == 1 {
            self.state.idle.notify_one();
        }
        if let Some(pool) = self.pool.upgrade() {
            pool.wake_waiters();
        }
    }
}
