//! What a finished call teaches the balancer: a latency sample, or a failure toward ejection.
//!
//! Outlier detection follows Envoy's: consecutive 5xx (gateway errors included) and
//! consecutive gateway errors are counted per endpoint, and a success resets both. Reaching a
//! threshold ejects the endpoint for `base * 2^(ejections - 1)`, capped at the maximum, unless
//! the service already has its maximum share of endpoints ejected; one endpoint always stays.
//! An endpoint that stays healthy is forgiven one past ejection per `base` of healthy time, so
//! an old incident does not lengthen a new ejection forever.

use std::sync::PoisonError;
use std::sync::atomic::{AtomicU32, Ordering};

use super::balancer::{CallOutcome, Shared};
use crate::resilience::OutlierConfig;
use crate::resilience::clock::{Clock, nanos};

impl Shared {
    pub(super) fn record(&self, index: usize, outcome: CallOutcome, clock: &mut Clock) {
        let endpoint = &self.endpoints[index];
        match outcome {
            CallOutcome::Success { latency } => {
                endpoint.observe(latency, clock.now(), self.tau_ns);
                reset(&endpoint.consecutive_5xx);
                reset(&endpoint.consecutive_gateway);
            }
            CallOutcome::ServerError => self.failure(index, false, clock),
            CallOutcome::GatewayError => self.failure(index, true, clock),
        }
    }

    fn failure(&self, index: usize, gateway: bool, clock: &mut Clock) {
        let Some(cfg) = &self.config.outlier else {
            return;
        };
        let endpoint = &self.endpoints[index];
        let now = clock.now();
        if endpoint.ejected_at(now) {
            // Calls sent before the ejection, ending now, say nothing new.
            return;
        }
        let in_a_row_5xx = endpoint.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        let in_a_row_gateway = if gateway {
            endpoint.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            reset(&endpoint.consecutive_gateway);
            0
        };
        let tripped = |threshold: u32, count: u32| threshold > 0 && count >= threshold;
        if tripped(cfg.consecutive_5xx, in_a_row_5xx)
            || tripped(cfg.consecutive_gateway_errors, in_a_row_gateway)
        {
            self.eject(index, cfg, now);
        }
    }

    /// Ejects endpoint `index` unless that would pass the ejection limit. If it would, the
    /// counts stay, and the next failure tries again (another ejection may have ended).
    fn eject(&self, index: usize, cfg: &OutlierConfig, now: u64) {
        let _deciding = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
        let endpoint = &self.endpoints[index];
        if endpoint.ejected_at(now) {
            return;
        }
        let total = self.endpoints.len();
        let allowed = (total * usize::from(cfg.max_ejection_percent.min(100)) / 100)
            .min(total.saturating_sub(1));
        let ejected = self.endpoints.iter().filter(|e| e.ejected_at(now)).count();
        if ejected >= allowed {
            return;
        }

        let base = nanos(cfg.base_ejection_time);
        let healthy_for = now.saturating_sub(endpoint.last_ejection_end.load(Ordering::Relaxed));
        let forgiven = u32::try_from(healthy_for / base.max(1)).unwrap_or(u32::MAX);
        let times = endpoint
            .times_ejected
            .load(Ordering::Relaxed)
            .saturating_sub(forgiven)
            .saturating_add(1);
        let until = now.saturating_add(ejection_ns(cfg, times));

        endpoint.times_ejected.store(times, Ordering::Relaxed);
        endpoint.last_ejection_end.store(until, Ordering::Relaxed);
        endpoint.ejected_until.store(until, Ordering::Relaxed);
        reset(&endpoint.consecutive_5xx);
        reset(&endpoint.consecutive_gateway);
    }
}

/// Length of ejection number `times` (from 1): `base * 2^(times - 1)`, at most the maximum.
fn ejection_ns(cfg: &OutlierConfig, times: u32) -> u64 {
    let doubled = 1u32
        .checked_shl(times.saturating_sub(1))
        .map_or(cfg.max_ejection_time, |factor| {
            cfg.base_ejection_time.saturating_mul(factor)
        });
    nanos(doubled.min(cfg.max_ejection_time))
}

/// Stores 0 only if needed: successes are the common case, and a store would dirty the cache
/// line other cores read.
fn reset(counter: &AtomicU32) {
    if counter.load(Ordering::Relaxed) != 0 {
        counter.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "outlier_tests.rs"]
mod tests;
