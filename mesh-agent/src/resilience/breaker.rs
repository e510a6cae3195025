//! Per-service circuit breaker: caps on open connections, waiting requests and requests in
//! flight. A caller that finds a cap reached fails at once (Envoy's overflow): queueing behind
//! an overloaded service only makes it slower to recover.
//!
//! Each cap is an atomic counter; a permit holds one unit and gives it back when dropped, so a
//! request that ends any way at all (error, cancellation, panic) releases its slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::config::BreakerLimits;

#[derive(Debug)]
pub struct CircuitBreaker {
    gauges: Arc<Gauges>,
}

/// What a breaker has handed out, for metrics and the CLI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreakerLoad {
    pub connections: u32,
    pub pending_requests: u32,
    pub requests: u32,
}

impl CircuitBreaker {
    pub fn new(limits: &BreakerLimits) -> Self {
        let gauges = Gauges::default();
        gauges.set_limits(limits);
        Self {
            gauges: Arc::new(gauges),
        }
    }

    /// A slot for one request in flight, or `None` when `max_requests` are already in flight.
    pub fn try_request(&self) -> Option<RequestPermit> {
        self.acquire(Kind::Request)
            .map(|slot| RequestPermit { _slot: slot })
    }

    /// A slot for one upstream connection, or `None` when `max_connections` are open.
    pub fn try_connection(&self) -> Option<ConnectionPermit> {
        self.acquire(Kind::Connection)
            .map(|slot| ConnectionPermit { _slot: slot })
    }

    /// A place in the queue of requests waiting for a connection or a request slot, or `None`
    /// when `max_pending_requests` are already waiting. Drop it once the wait is over.
    pub fn try_pending(&self) -> Option<PendingPermit> {
        self.acquire(Kind::Pending)
            .map(|slot| PendingPermit { _slot: slot })
    }

    /// New limits, effective for the next permit; permits already out stay valid, and nothing
    /// new is admitted until the counts are back under the new limits.
    pub fn set_limits(&self, limits: &BreakerLimits) {
        self.gauges.set_limits(limits);
    }

    pub fn load(&self) -> BreakerLoad {
        let used = |kind: Kind| self.gauges.gauge(kind).used.load(Ordering::Relaxed);
        BreakerLoad {
            connections: used(Kind::Connection),
            pending_requests: used(Kind::Pending),
            requests: used(Kind::Request),
        }
    }

    fn acquire(&self, kind: Kind) -> Option<Permit> {
        let gauge = self.gauges.gauge(kind);
        let limit = gauge.limit.load(Ordering::Relaxed);
        gauge
            .used
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |used| {
                if limit != 0 && used >= limit {
                    None
                } else {
                    used.checked_add(1)
                }
            })
            .ok()?;
        Some(Permit {
            gauges: Arc::clone(&self.gauges),
            kind,
        })
    }
}

/// One request in flight; released on drop.
#[derive(Debug)]
pub struct RequestPermit {
    _slot: Permit,
}

/// One open upstream connection; keep it as long as the connection lives.
#[derive(Debug)]
pub struct ConnectionPermit {
    _slot: Permit,
}

/// One request waiting; released on drop.
#[derive(Debug)]
pub struct PendingPermit {
    _slot: Permit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Connection,
    Pending,
    Request,
}

#[derive(Debug, Default)]
struct Gauge {
    /// 0: no limit.
    limit: AtomicU32,
    used: AtomicU32,
}

#[derive(Debug, Default)]
struct Gauges {
    connections: Gauge,
    pending: Gauge,
    requests: Gauge,
}

impl Gauges {
    fn gauge(&self, kind: Kind) -> &Gauge {
        match kind {
            Kind::Connection => &self.connections,
            Kind::Pending => &self.pending,
            Kind::Request => &self.requests,
        }
    }

    fn set_limits(&self, limits: &BreakerLimits) {
        let set = |kind: Kind, limit: u32| self.gauge(kind).limit.store(limit, Ordering::Relaxed);
        set(Kind::Connection, limits.max_connections);
        set(Kind::Pending, limits.max_pending_requests);
        set(Kind::Request, limits.max_requests);
    }
}

#[derive(Debug)]
struct Permit {
    gauges: Arc<Gauges>,
    kind: Kind,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gauges
            .gauge(self.kind)
            .used
            .fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections: u32, pending: u32, requests: u32) -> BreakerLimits {
        BreakerLimits {
            max_connections: connections,
            max_pending_requests: pending,
            max_requests: requests,
        }
    }

    #[test]
    fn overflow_fails_at_once_and_drop_releases() {
        let breaker = CircuitBreaker::new(&limits(1, 2, 3));
        let requests: Vec<_> = (0..3).map(|_| breaker.try_request()).collect();
        assert!(requests.iter().all(Option::is_some));
        assert!(breaker.try_request().is_none());
        let connection = breaker.try_connection().expect("first connection");
        assert!(breaker.try_connection().is_none());
        let pending = [breaker.try_pending(), breaker.try_pending()];
        assert!(pending.iter().all(Option::is_some));
        assert!(breaker.try_pending().is_none());
        assert_eq!(
            breaker.load(),
            BreakerLoad {
                connections: 1,
                pending_requests: 2,
                requests: 3
            }
        );

        drop(requests);
        assert!(breaker.try_request().is_some());
        drop(connection);
        assert!(breaker.try_connection().is_some());
        drop(pending);
        assert_eq!(breaker.load(), BreakerLoad::default());
    }

    #[test]
    fn zero_means_no_limit() {
        let breaker = CircuitBreaker::new(&limits(0, 0, 0));
        let held: Vec<_> = (0..10_000).filter_map(|_| breaker.try_request()).collect();
        assert_eq!(held.len(), 10_000);
    }

    #[test]
    fn new_limits_apply_to_the_next_permit() {
        let breaker = CircuitBreaker::new(&limits(0, 0, 4));
        let held: Vec<_> = (0..4).filter_map(|_| breaker.try_request()).collect();
        breaker.set_limits(&limits(0, 0, 2));
        assert!(breaker.try_request().is_none());
        drop(held);
        let again: Vec<_> = (0..3).filter_map(|_| breaker.try_request()).collect();
        assert_eq!(again.len(), 2);
        breaker.set_limits(&limits(0, 0, 3));
        assert!(breaker.try_request().is_some());
    }

    #[test]
    fn permits_are_released_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RequestPermit>();
        send_sync::<ConnectionPermit>();
        send_sync::<PendingPermit>();
        send_sync::<crate::resilience::RetryBudget>();

        let breaker = Arc::new(CircuitBreaker::new(&limits(0, 0, 8)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let breaker = Arc::clone(&breaker);
                std::thread::spawn(move || {
                    let mut admitted = 0;
                    for _ in 0..10_000 {
                        if let Some(permit) = breaker.try_request() {
                            admitted += 1;
                            drop(permit);
                        }
                    }
                    admitted
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().expect("thread") > 0);
        }
        assert_eq!(breaker.load().requests, 0);
    }
}
