//! Peak-EWMA latency estimate (Finagle's and Linkerd's): a sample above the estimate replaces
//! it at once, so an endpoint that slows down is avoided immediately; lower samples pull it
//! down with a time constant, so recovery is believed only gradually. Between samples the
//! estimate decays toward zero, so an endpoint that looked slow long ago is probed again.
//!
//! The weight of a sample grows with the time since the previous one: `w = exp(-elapsed/tau)`
//! is kept of the old estimate. Times are nanoseconds on [`crate::resilience::clock`].

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct PeakEwma {
    estimate_ns: f64,
    /// When the last sample arrived.
    stamp: u64,
}

impl PeakEwma {
    pub(super) fn new(initial: Duration, now: u64) -> Self {
        Self {
            estimate_ns: initial.as_nanos() as f64,
            stamp: now,
        }
    }

    /// Records a latency sample taken at `now`. `tau_ns` is the decay time constant.
    pub(super) fn observe(&mut self, sample: Duration, now: u64, tau_ns: f64) {
        let sample = sample.as_nanos() as f64;
        if sample > self.estimate_ns {
            self.estimate_ns = sample;
        } else {
            let kept = decay(now.saturating_sub(self.stamp), tau_ns);
            self.estimate_ns = self.estimate_ns * kept + sample * (1.0 - kept);
        }
        self.stamp = self.stamp.max(now);
    }

    /// The estimate at `now`, in nanoseconds.
    pub(super) fn estimate(&self, now: u64, tau_ns: f64) -> f64 {
        self.estimate_ns * decay(now.saturating_sub(self.stamp), tau_ns)
    }
}

/// The share of an estimate kept after `elapsed` nanoseconds.
fn decay(elapsed: u64, tau_ns: f64) -> f64 {
    (-(elapsed as f64) / tau_ns.max(1.0)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const TAU: f64 = 10_000.0 * MS as f64;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn estimate_ms(e: &PeakEwma, now: u64) -> f64 {
        e.estimate(now, TAU) / MS as f64
    }

    #[test]
    fn a_peak_replaces_the_estimate_at_once() {
        let mut e = PeakEwma::new(ms(10), 0);
        e.observe(ms(100), MS, TAU);
        assert_eq!(estimate_ms(&e, MS), 100.0);
    }

    #[test]
    fn lower_samples_pull_the_estimate_down_with_the_time_constant() {
        let mut e = PeakEwma::new(ms(10), 0);
        e.observe(ms(100), 0, TAU);
        // A 10 ms answer every 100 ms for one time constant: 10 + 90 / e.
        let mut now = 0;
        for _ in 0..100 {
            now += 100 * MS;
            e.observe(ms(10), now, TAU);
        }
        let after_tau = estimate_ms(&e, now);
        assert!(
            (after_tau - (10.0 + 90.0 / std::f64::consts::E)).abs() < 0.5,
            "{after_tau}"
        );
        // Three time constants: within 5 ms of the new latency.
        for _ in 0..200 {
            now += 100 * MS;
            e.observe(ms(10), now, TAU);
        }
        let after_3tau = estimate_ms(&e, now);
        assert!(after_3tau > 10.0 && after_3tau < 15.0, "{after_3tau}");
    }

    #[test]
    fn the_estimate_decays_while_idle() {
        let mut e = PeakEwma::new(ms(30), 0);
        e.observe(ms(50), 0, TAU);
        assert_eq!(estimate_ms(&e, 0), 50.0);
        let one_tau = estimate_ms(&e, 10_000 * MS);
        assert!(
            (one_tau - 50.0 / std::f64::consts::E).abs() < 1e-9,
            "{one_tau}"
        );
        // Reading does not change the state.
        assert_eq!(estimate_ms(&e, 0), 50.0);
    }

    #[test]
    fn out_of_order_and_degenerate_times_stay_finite() {
        let mut e = PeakEwma::new(ms(30), 5 * MS);
        e.observe(ms(1), MS, TAU);
        assert_eq!(estimate_ms(&e, 5 * MS), 30.0);
        e.observe(ms(1), 6 * MS, 0.0);
        assert!(e.estimate(6 * MS, 0.0).is_finite());
    }
}
