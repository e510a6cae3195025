//! Retry decisions: whether a failed attempt qualifies for a retry under a route's policy,
//! whether a method may be sent twice, and how long to wait before the next attempt.

use std::time::Duration;

use http::Method;

use super::clock::nanos;
use super::config::{RetryConfig, RetryOn};

/// What went wrong with one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// No connection to the endpoint could be made: the request never left.
    ConnectFailure,
    /// The connection or stream was reset before a response arrived.
    Reset,
    /// A response with this HTTP status.
    Status(u16),
    /// A gRPC response whose `grpc-status` is this code.
    GrpcStatus(u32),
    /// The per-try timeout fired before a response arrived.
    Timeout,
}

/// Whether `result` is one of the failures `cfg` retries. Attempt counts, idempotency, replay
/// size and the budget are checked by the caller.
pub fn retryable(cfg: &RetryConfig, result: &AttemptResult) -> bool {
    // No response at all is what a client would see as a 502/503/504.
    let no_response = RetryOn::RESET | RetryOn::GATEWAY_ERROR | RetryOn::SERVER_ERROR;
    match *result {
        AttemptResult::ConnectFailure => cfg.on.intersects(no_response | RetryOn::CONNECT_FAILURE),
        AttemptResult::Reset | AttemptResult::Timeout => cfg.on.intersects(no_response),
        AttemptResult::Status(status) => {
            (cfg.on.contains(RetryOn::SERVER_ERROR) && (500..=599).contains(&status))
                || (cfg.on.contains(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
                || cfg.codes.contains(&status)
        }
        AttemptResult::GrpcStatus(code) => cfg.grpc_statuses.contains(code),
    }
}

/// Methods that may be sent again after a response went missing (RFC 9110 §9.2.2). A request
/// that never left (connect failure) may be retried whatever its method.
pub fn idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// The wait before retry `attempt` (0 for the first retry): exponential with full jitter,
/// uniform in `[0, min(max, base * 2^attempt)]`, so that clients that failed together do not
/// retry together.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = 1u32
        .checked_shl(attempt)
        .map_or(max, |factor| base.saturating_mul(factor).min(max));
    Duration::from_nanos(fastrand::u64(..=nanos(ceiling)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::GrpcCodes;

    fn on(on: RetryOn) -> RetryConfig {
        RetryConfig {
            on,
            codes: vec![409, 429],
            grpc_statuses: GrpcCodes::new([GrpcCodes::UNAVAILABLE, GrpcCodes::CANCELLED]),
            ..RetryConfig::default()
        }
    }

    #[test]
    fn retryable_follows_the_retry_on_conditions() {
        use AttemptResult::*;
        let none = RetryOn::NONE;
        let connect = RetryOn::CONNECT_FAILURE;
        let reset = RetryOn::RESET;
        let gateway = RetryOn::GATEWAY_ERROR;
        let any5xx = RetryOn::SERVER_ERROR;
        // (conditions, result, retried)
        let table = [
            (none, ConnectFailure, false),
            (connect, ConnectFailure, true),
            (reset, ConnectFailure, true),
            (gateway, ConnectFailure, true),
            (any5xx, ConnectFailure, true),
            (connect, Reset, false),
            (reset, Reset, true),
            (gateway, Reset, true),
            (any5xx, Timeout, true),
            (connect, Timeout, false),
            (reset, Timeout, true),
            (gateway, Status(502), true),
            (gateway, Status(503), true),
            (gateway, Status(504), true),
            (gateway, Status(500), false),
            (any5xx, Status(500), true),
            (any5xx, Status(599), true),
            (any5xx, Status(404), false),
            (reset, Status(503), false),
            (connect, Status(503), false),
            (none, Status(409), true),
            (none, Status(429), true),
            (none, Status(408), false),
            (none, Status(200), false),
            (any5xx | gateway, Status(200), false),
            (none, GrpcStatus(14), true),
            (none, GrpcStatus(1), true),
            (any5xx, GrpcStatus(13), false),
            (none, GrpcStatus(0), false),
            (none, GrpcStatus(1000), false),
        ];
        for (conditions, result, expected) in table {
            assert_eq!(
                retryable(&on(conditions), &result),
                expected,
                "{conditions:?} {result:?}"
            );
        }
    }

    #[test]
    fn idempotent_methods() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(
                idempotent(&Method::from_bytes(m.as_bytes()).expect(m)),
                "{m}"
            );
        }
        for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(
                !idempotent(&Method::from_bytes(m.as_bytes()).expect(m)),
                "{m}"
            );
        }
    }

    #[test]
    fn backoff_stays_within_its_window() {
        fastrand::seed(7);
        let base = Duration::from_millis(25);
        let max = Duration::from_millis(250);
        for attempt in 0..40 {
            let ceiling = if attempt >= 4 {
                max
            } else {
                base * 2u32.pow(attempt)
            };
            let waits: Vec<Duration> = (0..200).map(|_| backoff(attempt, base, max)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "attempt {attempt}");
            // Full jitter: the waits spread over the whole window.
            assert!(waits.iter().any(|w| *w < ceiling / 4), "attempt {attempt}");
            assert!(
                waits.iter().any(|w| *w > ceiling * 3 / 4),
                "attempt {attempt}"
            );
        }
        assert_eq!(backoff(3, Duration::ZERO, max), Duration::ZERO);
        assert!(backoff(u32::MAX, base, Duration::MAX) <= Duration::from_secs(100 * 365 * 86400));
    }
}
