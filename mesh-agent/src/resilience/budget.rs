//! A retry budget in the manner of Finagle and Linkerd: each request deposits into a balance,
//! each retry withdraws from it, and both count only for a sliding window (`ttl`). With
//! ratio `r`, `n` requests allow `r * n` retries; a reserve allows `min_retries_per_second`
//! on top, so a quiet service can still retry.
//!
//! The balance is a ring of time slots of atomic counters; a lock is taken only when the
//! window moves on to a new slot. Concurrent withdrawals may overdraw by a few retries, which
//! is the accepted cost of not serializing every request.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::clock::{self, nanos};
use super::config::BudgetConfig;

/// Slots per window: deposits leave the balance in steps of `ttl / SLOTS`.
const SLOTS: usize = 10;
/// A deposit is worth this many units; a retry costs `SCALE / ratio`. Integer units keep the
/// balance in atomics while allowing ratios like 0.2 or 3.
const SCALE: i64 = 1000;

#[derive(Debug)]
pub struct RetryBudget {
    deposit: i64,
    withdrawal: i64,
    /// Units that are always available: `min_retries_per_second * ttl` retries.
    reserve: i64,
    slot_ns: u64,
    slots: [AtomicI64; SLOTS],
    /// Index (time / slot length) of the slot deposits go to now.
    generation: AtomicU64,
    rotating: Mutex<()>,
}

impl RetryBudget {
    pub fn new(cfg: &BudgetConfig) -> Self {
        Self::starting_at(cfg, clock::now())
    }

    pub(crate) fn starting_at(cfg: &BudgetConfig, now: u64) -> Self {
        let ttl = cfg
            .ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let (deposit, withdrawal) = if cfg.ratio.is_finite() && cfg.ratio > 0.0 {
            let cost = (SCALE as f64 / cfg.ratio).round();
            (SCALE, (cost as i64).max(1))
        } else {
            // No ratio: requests earn nothing, only the reserve pays for retries.
            (0, SCALE)
        };
        let reserve_retries = (f64::from(cfg.min_retries_per_second) * ttl.as_secs_f64()) as i64;
        let slot_ns = (nanos(ttl) / SLOTS as u64).max(1);
        Self {
            deposit,
            withdrawal,
            reserve: reserve_retries.saturating_mul(withdrawal),
            slot_ns,
            slots: Default::default(),
            generation: AtomicU64::new(now / slot_ns),
            rotating: Mutex::new(()),
        }
    }

    /// Records a request (first attempts only, not retries).
    pub fn deposit(&self) {
        self.deposit_at(clock::now());
    }

    /// Takes the cost of one retry if the budget has it; `false`: do not retry.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(clock::now())
    }

    pub(crate) fn deposit_at(&self, now: u64) {
        if self.deposit != 0 {
            self.current_slot(now)
                .fetch_add(self.deposit, Ordering::Relaxed);
        }
    }

    pub(crate) fn try_withdraw_at(&self, now: u64) -> bool {
        let slot = self.current_slot(now);
        let balance = self.slots.iter().fold(self.reserve, |sum, s| {
            sum.saturating_add(s.load(Ordering::Relaxed))
        });
        if balance < self.withdrawal {
            return false;
        }
        slot.fetch_sub(self.withdrawal, Ordering::Relaxed);
        true
    }

    /// The slot of `now`, after clearing the slots that fell out of the window.
    fn current_slot(&self, now: u64) -> &AtomicI64 {
        let target = now / self.slot_ns;
        let mut current = self.generation.load(Ordering::Acquire);
        if target > current {
            let _rotating = self.rotating.lock().unwrap_or_else(PoisonError::into_inner);
            current = self.generation.load(Ordering::Acquire);
            if target > current {
                let expired = (target - current).min(SLOTS as u64);
                for generation in target + 1 - expired..=target {
                    self.slots[(generation % SLOTS as u64) as usize].store(0, Ordering::Relaxed);
                }
                self.generation.store(target, Ordering::Release);
                current = target;
            }
        }
        // A caller that read the clock just before a rotation writes to the newer slot.
        &self.slots[(current % SLOTS as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
        let cfg = BudgetConfig {
            ratio,
            min_retries_per_second: min_per_second,
            ttl: Duration::from_secs(10),
        };
        RetryBudget::starting_at(&cfg, 100 * SEC)
    }

    fn withdrawals(budget: &RetryBudget, now: u64) -> usize {
        (0..10_000)
            .take_while(|_| budget.try_withdraw_at(now))
            .count()
    }

    #[test]
    fn ratio_allows_that_share_of_requests_as_retries() {
        let b = budget(0.2, 0);
        assert!(!b.try_withdraw_at(100 * SEC));
        for i in 0..100 {
            b.deposit_at(100 * SEC + i * SEC / 100);
        }
        assert_eq!(withdrawals(&b, 101 * SEC), 20);
        // Ratios above one allow several retries per request.
        let generous = budget(3.0, 0);
        for _ in 0..10 {
            generous.deposit_at(100 * SEC);
        }
        assert_eq!(withdrawals(&generous, 100 * SEC), 30);
    }

    #[test]
    fn deposits_expire_after_the_window() {
        let b = budget(0.5, 0);
        for _ in 0..10 {
            b.deposit_at(100 * SEC);
        }
        assert!(b.try_withdraw_at(105 * SEC));
        assert!(!b.try_withdraw_at(111 * SEC));
    }

    #[test]
    fn minimum_per_second_applies_without_traffic_and_renews() {
        let b = budget(0.0, 10);
        b.deposit_at(100 * SEC);
        // 10 per second over a 10 s window.
        assert_eq!(withdrawals(&b, 100 * SEC), 100);
        assert!(!b.try_withdraw_at(105 * SEC));
        // The withdrawals leave the window as the deposits would, and the reserve is whole again.
        assert_eq!(withdrawals(&b, 111 * SEC), 100);
    }

    #[test]
    fn reserve_and_ratio_add_up() {
        let b = budget(0.1, 1);
        for _ in 0..100 {
            b.deposit_at(100 * SEC);
        }
        assert_eq!(withdrawals(&b, 100 * SEC), 10 + 10);
    }

    #[test]
    fn nonsense_ratios_mean_no_ratio() {
        for ratio in [-1.0, f64::NAN, f64::INFINITY] {
            let b = budget(ratio, 0);
            b.deposit_at(100 * SEC);
            assert!(!b.try_withdraw_at(100 * SEC), "{ratio}");
        }
    }
}
