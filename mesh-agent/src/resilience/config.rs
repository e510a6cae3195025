//! Resilience settings, in the form the mechanics use. The mesh state's policy types convert
//! into these (`convert.rs`, which also takes the defaults from the state), so the mechanics
//! never depend on how a policy is written down.

use std::ops::BitOr;
use std::time::Duration;

/// Which failed attempts a route retries, named after Envoy's `retry_on` conditions.
///
/// A failure with no response at all (connect failure, reset, per-try timeout) counts as a
/// 5xx and as a gateway error, as in Envoy: the client would have seen a 502/503/504.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RetryOn(u8);

impl RetryOn {
    pub const NONE: RetryOn = RetryOn(0);
    /// The upstream connection could not be established (`connect-failure`).
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1);
    /// No response: connection or stream reset, or the per-try timeout fired (`reset`).
    pub const RESET: RetryOn = RetryOn(1 << 1);
    /// 502, 503, 504, or no response at all (`gateway-error`).
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 2);
    /// Any 5xx, or no response at all (`5xx`).
    pub const SERVER_ERROR: RetryOn = RetryOn(1 << 3);

    pub const fn union(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    /// Every condition of `other` is in `self`.
    pub const fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    /// At least one condition of `other` is in `self`.
    pub const fn intersects(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for RetryOn {
    type Output = RetryOn;

    fn bitor(self, rhs: RetryOn) -> RetryOn {
        self.union(rhs)
    }
}

/// A set of gRPC status codes (0 to 16; others are never members).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GrpcCodes(u32);

impl GrpcCodes {
    pub const CANCELLED: u32 = 1;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;

    pub const NONE: GrpcCodes = GrpcCodes(0);

    /// The set of `codes`; codes above 16 are not gRPC statuses and are left out.
    pub fn new(codes: impl IntoIterator<Item = u32>) -> GrpcCodes {
        GrpcCodes(
            codes
                .into_iter()
                .filter(|&c| c <= 16)
                .fold(0, |set, c| set | 1 << c),
        )
    }

    pub const fn contains(self, code: u32) -> bool {
        code <= 16 && self.0 & (1 << code) != 0
    }

    /// The members, in ascending order.
    pub fn codes(self) -> impl Iterator<Item = u32> {
        (0..=16).filter(move |&c| self.contains(c))
    }
}

/// How a route retries. Whether a request may be retried at all (its method, its body size, the
/// budget) is the proxy's decision; this says which failures qualify and how to pace retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    /// Retries after the first attempt; 0 disables retries.
    pub attempts: u32,
    pub on: RetryOn,
    /// Response statuses retried besides those `on` names.
    pub codes: Vec<u16>,
    /// gRPC statuses (from `grpc-status`) that are retried.
    pub grpc_statuses: GrpcCodes,
    /// Deadline of each attempt; `None`: only the request's overall deadline applies.
    pub per_try_timeout: Option<Duration>,
    /// Backoff before retry `n` (from 0) is uniform in `[0, min(backoff_max, backoff_base * 2^n)]`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Request bodies up to this size are buffered so they can be sent again; a larger request
    /// is not retried.
    pub max_replay_bytes: usize,
}

/// How long a budget counts deposits and withdrawals (Linkerd's and Finagle's window).
pub const DEFAULT_BUDGET_TTL: Duration = Duration::from_secs(10);

/// A retry budget: retries may add `ratio` of the requests, plus `min_retries_per_second`
/// however little traffic there is, both counted over the last `ttl`.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    pub ratio: f64,
    pub min_retries_per_second: u32,
    /// How long a request's deposit (and a retry's withdrawal) counts; 1 s to 60 s.
    pub ttl: Duration,
}

/// Circuit-breaker limits of one service. 0 means no limit (as an unset limit in Istio), never
/// "reject everything".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerLimits {
    /// Open upstream connections.
    pub max_connections: u32,
    /// Requests waiting for a connection or a request slot.
    pub max_pending_requests: u32,
    /// Requests in flight.
    pub max_requests: u32,
}

/// Outlier detection: when an endpoint fails too often in a row, the balancer stops sending it
/// requests for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Consecutive 5xx answers (gateway errors included) that eject an endpoint; 0: not used.
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors (connect failure, 502, 503, 504) that eject; 0: not used.
    pub consecutive_gateway_errors: u32,
    /// The first ejection lasts this long; each further one doubles it.
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    /// At most this share of a service's endpoints is ejected at once (and never all of them).
    pub max_ejection_percent: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_is_a_set() {
        let on = RetryOn::RESET | RetryOn::GATEWAY_ERROR;
        assert!(on.contains(RetryOn::RESET));
        assert!(!on.contains(RetryOn::RESET | RetryOn::SERVER_ERROR));
        assert!(on.intersects(RetryOn::RESET | RetryOn::SERVER_ERROR));
        assert!(!RetryOn::NONE.intersects(on));
    }

    #[test]
    fn grpc_codes_hold_only_grpc_statuses() {
        let codes = GrpcCodes::new([GrpcCodes::UNAVAILABLE, 0, 16, 17, 99]);
        assert_eq!(codes.codes().collect::<Vec<_>>(), [0, 14, 16]);
        assert!(!codes.contains(17));
        assert!(!codes.contains(u32::MAX));
    }
}
