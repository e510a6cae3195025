//! Upstream connection slots of a service: `maxConnections` and `maxPendingRequests`, in
//! Envoy's manner adapted to our pools.
//!
//! An HTTP/1.1 request holds one slot from its attempt until its response body is done (one
//! in-use connection per request in flight; idle pooled connections hold none). An HTTP/2
//! connection, shared by every request to its endpoint, holds one slot for as long as it
//! lives; requests over it need no slot of their own. A request that finds every slot taken
//! waits, if fewer than `maxPendingRequests` are already waiting, until a slot frees, a shared
//! connection to its endpoint appears or the limits are raised; one more overflows at once.
//!
//! The counts are the circuit breaker's (the L4 path takes its connection slots here too); the
//! waiting is done here, since the breaker itself never waits: a freed slot wakes the oldest
//! waiter.

use std::pin::pin;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::resilience::{BreakerLimits, CircuitBreaker, ConnectionPermit};

/// The breaker of one service, and the requests waiting for one of its connection slots.
#[derive(Debug)]
pub struct ServiceLimits {
    breaker: CircuitBreaker,
    /// Woken when a slot frees (one waiter), or when the limits change or a shared connection
    /// appears (every waiter, so each looks again).
    changed: Notify,
}

/// Every connection slot and pending place is taken: the request is refused at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

/// One connection slot; gives it back, and wakes a waiter, when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    permit: Option<ConnectionPermit>,
    limits: Arc<ServiceLimits>,
}

impl ServiceLimits {
    pub fn new(limits: &BreakerLimits) -> Self {
        ServiceLimits {
            breaker: CircuitBreaker::new(limits),
            changed: Notify::new(),
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// New limits for the next slot; waiters look again, in case the limits were raised.
    pub fn set_limits(&self, limits: &BreakerLimits) {
        self.breaker.set_limits(limits);
        self.changed.notify_waiters();
    }

    /// A slot if one is free now.
    pub fn try_connection(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let permit = self.breaker.try_connection()?;
        Some(ConnectionSlot {
            permit: Some(permit),
            limits: Arc::clone(self),
        })
    }

    /// A slot for a new connection, waiting for one as a pending request when all are taken.
    /// `Ok(None)` when `usable` says the request can go without one (a shared connection to
    /// its endpoint exists). Waiting ends only with a slot or a usable connection: the caller's
    /// deadline bounds it.
    pub async fn connection(
        self: &Arc<Self>,
        usable: impl Fn() -> bool,
    ) -> Result<Option<ConnectionSlot>, Overflow> {
        if usable() {
            return Ok(None);
        }
        if let Some(slot) = self.try_connection() {
            return Ok(Some(slot));
        }
        let _pending = self.breaker.try_pending().ok_or(Overflow)?;
        loop {
            // Registered before looking, so a slot freed in between still wakes this waiter.
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            if usable() {
                return Ok(None);
            }
            if let Some(slot) = self.try_connection() {
                return Ok(Some(slot));
            }
            changed.await;
        }
    }
}

impl ConnectionSlot {
    /// Wakes every waiter of the service so that each looks again: a connection they may share
    /// is being made.
    pub fn wake_waiters(&self) {
        self.limits.changed.notify_waiters();
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        // The count goes down before the waiter looks at it.
        drop(self.permit.take());
        self.limits.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    fn limits(connections: u32, pending: u32) -> Arc<ServiceLimits> {
        Arc::new(ServiceLimits::new(&BreakerLimits {
            max_connections: connections,
            max_pending_requests: pending,
            max_requests: 0,
        }))
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_freed_slot_goes_to_a_waiter_and_overflow_is_refused() {
        let l = limits(1, 1);
        let held = l.try_connection().expect("first slot");
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.connection(|| false).await.map(|s| s.is_some()) }
        });
        tokio::time::timeout(WAIT, async {
            while l.breaker().load().pending_requests == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("waiter is pending");
        assert_eq!(l.connection(|| false).await.err(), Some(Overflow));
        drop(held);
        let got = tokio::time::timeout(WAIT, waiter).await.expect("woken");
        assert_eq!(got.expect("task"), Ok(true));
        assert_eq!(l.breaker().load().pending_requests, 0);
    }

    #[tokio::test]
    async fn raised_limits_and_usable_connections_end_the_wait() {
        let l = limits(1, 0);
        let _held = l.try_connection().expect("first slot");
        let raised = tokio::spawn({
            let l = l.clone();
            async move { l.connection(|| false).await.map(|s| s.is_some()) }
        });
        let shared = Arc::new(AtomicBool::new(false));
        let joined = tokio::spawn({
            let (l, shared) = (l.clone(), shared.clone());
            async move {
                l.connection(|| shared.load(Ordering::SeqCst))
                    .await
                    .map(|s| s.is_some())
            }
        });
        tokio::time::timeout(WAIT, async {
            while l.breaker().load().pending_requests < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("both pending");
        shared.store(true, Ordering::SeqCst);
        l.set_limits(&BreakerLimits {
            max_connections: 2,
            max_pending_requests: 0,
            max_requests: 0,
        });
        let raised = tokio::time::timeout(WAIT, raised).await.expect("woken");
        assert_eq!(raised.expect("task"), Ok(true));
        let joined = tokio::time::timeout(WAIT, joined).await.expect("woken");
        assert_eq!(joined.expect("task"), Ok(false));
    }
}
