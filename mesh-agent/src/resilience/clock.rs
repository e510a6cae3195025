//! Monotonic time as nanoseconds since a process-wide epoch.
//!
//! One `u64` fits in an atomic, so per-endpoint ejection deadlines and budget windows need no
//! lock; and the logic takes the time as an argument, so tests pass their own values instead
//! of sleeping.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Durations longer than this are treated as this long, so sums of times never overflow.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Nanoseconds since the epoch.
pub(crate) fn now() -> u64 {
    nanos(EPOCH.elapsed())
}

/// `d` in nanoseconds, capped at 100 years.
pub(crate) fn nanos(d: Duration) -> u64 {
    // 100 years in nanoseconds is about 3.2e18, below u64::MAX (1.8e19).
    u64::try_from(d.min(LONGEST).as_nanos()).unwrap_or(u64::MAX)
}

/// The instant `ns` nanoseconds after the epoch.
pub(crate) fn instant(ns: u64) -> Instant {
    // Every value handed in is an uptime plus at most a capped duration: centuries below what
    // an `Instant` holds, so the fallback is never taken.
    EPOCH
        .checked_add(Duration::from_nanos(ns))
        .unwrap_or(*EPOCH)
}

/// The time of one operation: read from the system clock at most once, and only when needed
/// (a round-robin pick with no ejected endpoint never reads it).
#[derive(Debug, Default)]
pub(crate) struct Clock {
    now: Option<u64>,
}

impl Clock {
    /// A clock stopped at `now` (nanoseconds since the epoch).
    pub(crate) fn at(now: u64) -> Self {
        Self { now: Some(now) }
    }

    pub(crate) fn now(&mut self) -> u64 {
        *self.now.get_or_insert_with(now)
    }

    /// The time if it was read (or set) already, without reading the system clock.
    pub(crate) fn known(&self) -> Option<u64> {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_system_clock_once_and_caps_durations() {
        let mut clock = Clock::default();
        let first = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.now(), first);
        assert!(now() > first);
        assert_eq!(Clock::at(7).now(), 7);
        assert_eq!(Clock::default().known(), None);
        assert_eq!(clock.known(), Some(first));
        assert_eq!(nanos(Duration::MAX), nanos(LONGEST));
        assert_eq!(
            instant(1_000_000_000).duration_since(instant(0)),
            Duration::from_secs(1)
        );
    }
}
