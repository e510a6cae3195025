//! From the mesh state's policy types to the settings the mechanics use: the one place that
//! knows both forms. Defaults are the state's too, so an omitted field means the same
//! everywhere.

use super::config::{
    BreakerLimits, BudgetConfig, DEFAULT_BUDGET_TTL, GrpcCodes, OutlierConfig, RetryConfig, RetryOn,
};
use crate::state;

impl From<state::RetryOn> for RetryOn {
    fn from(on: state::RetryOn) -> Self {
        match on {
            state::RetryOn::ConnectFailure => RetryOn::CONNECT_FAILURE,
            state::RetryOn::Status5xx => RetryOn::SERVER_ERROR,
            state::RetryOn::GatewayError => RetryOn::GATEWAY_ERROR,
            state::RetryOn::Reset => RetryOn::RESET,
        }
    }
}

impl From<&state::RetryPolicy> for RetryConfig {
    fn from(policy: &state::RetryPolicy) -> Self {
        RetryConfig {
            attempts: policy.attempts,
            on: policy
                .on
                .iter()
                .map(|&on| RetryOn::from(on))
                .fold(RetryOn::NONE, RetryOn::union),
            codes: policy.codes.clone(),
            grpc_statuses: GrpcCodes::new(policy.grpc_statuses.iter().map(|c| u32::from(c.0))),
            per_try_timeout: policy.per_try_timeout,
            backoff_base: policy.backoff.base,
            backoff_max: policy.backoff.max,
            max_replay_bytes: usize::try_from(policy.max_replay_bytes).unwrap_or(usize::MAX),
        }
    }
}

impl From<&state::RetryBudget> for BudgetConfig {
    fn from(budget: &state::RetryBudget) -> Self {
        BudgetConfig {
            ratio: budget.ratio,
            min_retries_per_second: budget.min_retries_per_second,
            ttl: DEFAULT_BUDGET_TTL,
        }
    }
}

impl From<&state::CircuitBreakerLimits> for BreakerLimits {
    fn from(limits: &state::CircuitBreakerLimits) -> Self {
        BreakerLimits {
            max_connections: limits.max_connections,
            max_pending_requests: limits.max_pending_requests,
            max_requests: limits.max_requests,
        }
    }
}

impl From<&state::OutlierDetection> for OutlierConfig {
    fn from(detection: &state::OutlierDetection) -> Self {
        OutlierConfig {
            consecutive_5xx: detection.consecutive_5xx,
            consecutive_gateway_errors: detection.consecutive_gateway_errors,
            base_ejection_time: detection.base_ejection_time,
            max_ejection_time: detection.max_ejection_time,
            max_ejection_percent: detection.max_ejection_percent,
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig::from(&state::RetryPolicy::default())
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig::from(&state::RetryBudget::default())
    }
}

impl Default for BreakerLimits {
    fn default() -> Self {
        BreakerLimits::from(&state::CircuitBreakerLimits::default())
    }
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig::from(&state::OutlierDetection::default())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::state::{Backoff, GrpcCode};

    #[test]
    fn a_retry_policy_converts_whole() {
        let policy = state::RetryPolicy {
            attempts: 3,
            on: vec![state::RetryOn::GatewayError, state::RetryOn::Reset],
            codes: vec![429],
            grpc_statuses: vec![GrpcCode::UNAVAILABLE, GrpcCode(4)],
            per_try_timeout: Some(Duration::from_millis(300)),
            backoff: Backoff {
                base: Duration::from_millis(10),
                max: Duration::from_millis(90),
            },
            max_replay_bytes: 1000,
        };
        let cfg = RetryConfig::from(&policy);
        assert_eq!(
            cfg,
            RetryConfig {
                attempts: 3,
                on: RetryOn::GATEWAY_ERROR | RetryOn::RESET,
                codes: vec![429],
                grpc_statuses: GrpcCodes::new([4, 14]),
                per_try_timeout: Some(Duration::from_millis(300)),
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(90),
                max_replay_bytes: 1000,
            }
        );
        for on in state::RetryOn::ALL {
            assert_ne!(RetryOn::from(on), RetryOn::NONE, "{on:?}");
        }
    }

    #[test]
    fn defaults_are_the_states() {
        let retry = RetryConfig::default();
        assert_eq!(retry.attempts, state::DEFAULT_RETRY_ATTEMPTS);
        assert_eq!(retry.on, RetryOn::CONNECT_FAILURE);
        let budget = BudgetConfig::default();
        assert_eq!(budget.ratio, state::DEFAULT_RETRY_BUDGET_RATIO);
        assert_eq!(budget.ttl, DEFAULT_BUDGET_TTL);
        assert_eq!(
            BreakerLimits::default().max_requests,
            state::DEFAULT_MAX_REQUESTS
        );
        let outlier = OutlierConfig::default();
        assert_eq!(outlier.consecutive_5xx, state::DEFAULT_CONSECUTIVE_5XX);
        assert_eq!(
            outlier.max_ejection_percent,
            state::DEFAULT_MAX_EJECTION_PERCENT
        );
    }
}
