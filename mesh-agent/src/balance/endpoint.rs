//! The state a balancer keeps per endpoint, shared by every version of the balancer that
//! contains the endpoint, so an update of the endpoint set keeps what was learned about it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ewma::PeakEwma;
use crate::resilience::clock::{self, Clock};

/// Latency estimates are floored here (1 µs) when computing a cost, so that requests in flight
/// still weigh when an idle estimate has decayed to almost nothing.
const MIN_ESTIMATE_NS: f64 = 1_000.0;

#[derive(Debug)]
pub(super) struct Endpoint {
    pub(super) addr: SocketAddr,
    pub(super) in_flight: AtomicU32,
    ewma: Mutex<PeakEwma>,
    pub(super) consecutive_5xx: AtomicU32,
    pub(super) consecutive_gateway: AtomicU32,
    /// End of the current ejection; 0: eligible. Reset to 0 by whoever first sees it passed.
    pub(super) ejected_until: AtomicU64,
    /// End of the latest ejection, kept after it passed: how long the endpoint has been
    /// healthy since decides whether its ejection count is forgiven.
    pub(super) last_ejection_end: AtomicU64,
    pub(super) times_ejected: AtomicU32,
}

/// One endpoint as a balancer sees it (for the CLI and the admin endpoint).
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointStatus {
    pub addr: SocketAddr,
    pub in_flight: u32,
    /// Latency estimate now, in milliseconds.
    pub ewma_ms: f64,
    /// When the current ejection ends; `None`: not ejected.
    pub ejected_until: Option<Instant>,
    /// Ejections that still count toward the length of the next one.
    pub times_ejected: u32,
}

impl Endpoint {
    pub(super) fn new(addr: SocketAddr, default_rtt: Duration, now: u64) -> Self {
        Self {
            addr,
            in_flight: AtomicU32::new(0),
            ewma: Mutex::new(PeakEwma::new(default_rtt, now)),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            last_ejection_end: AtomicU64::new(0),
            times_ejected: AtomicU32::new(0),
        }
    }

    fn estimate_ns(&self, now: u64, tau_ns: f64) -> f64 {
        let ewma = self.ewma.lock().unwrap_or_else(PoisonError::into_inner);
        ewma.estimate(now, tau_ns)
    }

    /// Peak-EWMA cost: what a request sent here now is expected to wait.
    pub(super) fn ewma_cost(&self, now: u64, tau_ns: f64) -> f64 {
        let waiting = f64::from(self.in_flight.load(Ordering::Relaxed)) + 1.0;
        self.estimate_ns(now, tau_ns).max(MIN_ESTIMATE_NS) * waiting
    }

    pub(super) fn observe(&self, latency: Duration, now: u64, tau_ns: f64) {
        let mut ewma = self.ewma.lock().unwrap_or_else(PoisonError::into_inner);
        ewma.observe(latency, now, tau_ns);
    }

    /// Whether the endpoint may be picked; the clock is read only if it was ejected.
    pub(super) fn eligible(&self, clock: &mut Clock) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if until > clock.now() {
            return false;
        }
        // Re-admitted. Clearing lets later picks skip the clock; a failed exchange means a new
        // ejection was stored meanwhile, which must stay.
        let _ = self
            .ejected_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        true
    }

    pub(super) fn ejected_at(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    pub(super) fn status(&self, now: u64, tau_ns: f64) -> EndpointStatus {
        let until = self.ejected_until.load(Ordering::Relaxed);
        EndpointStatus {
            addr: self.addr,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            ewma_ms: self.estimate_ns(now, tau_ns) / 1e6,
            ejected_until: (until > now).then(|| clock::instant(until)),
            times_ejected: self.times_ejected.load(Ordering::Relaxed),
        }
    }
}
