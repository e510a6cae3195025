//! A service's `trafficPolicy`: every field checked, every omitted one defaulted (the defaults
//! are in [`crate::state::TrafficPolicy`]'s module).

use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;

use super::Builder;
use crate::state::file::{
    BackoffSpec, CircuitBreakerSpec, HashSpec, LoadBalancerSpec, OutlierDetectionSpec,
    RetryBudgetSpec, RetrySpec, TrafficPolicySpec,
};
use crate::state::model::{
    Backoff, CircuitBreakerLimits, GrpcCode, HashKey, LoadBalancer, OutlierDetection, RetryBudget,
    RetryOn, RetryPolicy, TrafficPolicy,
};

/// More tries than this per request only pile onto a failing service.
const MAX_ATTEMPTS: i64 = 10;
/// Buffered request bodies cost memory per request in flight.
const MAX_REPLAY_BYTES: i64 = 16 * 1024 * 1024;

impl Builder {
    pub(super) fn traffic_policy(
        &mut self,
        at: &str,
        spec: Option<&TrafficPolicySpec>,
    ) -> TrafficPolicy {
        let Some(spec) = spec else {
            return TrafficPolicy::default();
        };
        TrafficPolicy {
            load_balancer: spec
                .load_balancer
                .as_ref()
                .map(|lb| self.load_balancer(&format!("{at}.loadBalancer"), lb))
                .unwrap_or_default(),
            circuit_breaker: spec
                .circuit_breaker
                .as_ref()
                .map(|cb| self.circuit_breaker(&format!("{at}.circuitBreaker"), cb))
                .unwrap_or_default(),
            outlier_detection: spec
                .outlier_detection
                .as_ref()
                .map(|od| self.outlier_detection(&format!("{at}.outlierDetection"), od)),
            retry: spec
                .retry
                .as_ref()
                .map(|r| self.retry(&format!("{at}.retry"), r))
                .unwrap_or_default(),
            retry_budget: spec
                .retry_budget
                .as_ref()
                .map(|b| self.retry_budget(&format!("{at}.retryBudget"), b))
                .unwrap_or_default(),
        }
    }

    fn load_balancer(&mut self, at: &str, spec: &LoadBalancerSpec) -> LoadBalancer {
        let policy = spec.policy.as_deref().unwrap_or("P2CEWMA");
        let lb = match policy {
            "P2CEWMA" => LoadBalancer::P2cEwma,
            "RoundRobin" => LoadBalancer::RoundRobin,
            "LeastRequest" => LoadBalancer::LeastRequest,
            "ConsistentHash" => {
                let Some(hash) = &spec.hash else {
                    self.problem(at, "policy ConsistentHash needs `hash`");
                    return LoadBalancer::default();
                };
                return match self.hash_key(&format!("{at}.hash"), hash) {
                    Some(hash) => LoadBalancer::ConsistentHash { hash },
                    None => LoadBalancer::default(),
                };
            }
            other => {
                let reason = format!(
                    "`{other}` is not one of P2CEWMA, RoundRobin, LeastRequest, ConsistentHash"
                );
                self.problem(format!("{at}.policy"), reason);
                return LoadBalancer::default();
            }
        };
        if spec.hash.is_some() {
            self.problem(
                format!("{at}.hash"),
                "only policy ConsistentHash takes `hash`",
            );
        }
        lb
    }

    fn hash_key(&mut self, at: &str, spec: &HashSpec) -> Option<HashKey> {
        let chosen = [
            spec.header.is_some(),
            spec.cookie.is_some(),
            spec.source_workload.is_some(),
        ];
        if chosen.iter().filter(|c| **c).count() != 1 {
            self.problem(
                at,
                "set exactly one of `header`, `cookie`, `sourceWorkload`",
            );
            return None;
        }
        if let Some(name) = &spec.header {
            return match HeaderName::from_str(name) {
                Ok(name) => Some(HashKey::Header(name)),
                Err(_) => {
                    let reason = format!("`{name}` is not an HTTP header name");
                    self.problem(format!("{at}.header"), reason);
                    None
                }
            };
        }
        if let Some(name) = &spec.cookie {
            // A cookie name is an HTTP token, the same characters as a header name.
            if name.is_empty() || HeaderName::from_str(name).is_err() {
                let reason = format!("`{name}` is not a cookie name");
                self.problem(format!("{at}.cookie"), reason);
                return None;
            }
            return Some(HashKey::Cookie(name.clone()));
        }
        if spec.source_workload == Some(false) {
            let reason = "`false` hashes nothing; use `true` or another key";
            self.problem(format!("{at}.sourceWorkload"), reason);
            return None;
        }
        Some(HashKey::SourceWorkload)
    }

    fn circuit_breaker(&mut self, at: &str, spec: &CircuitBreakerSpec) -> CircuitBreakerLimits {
        let d = CircuitBreakerLimits::default();
        CircuitBreakerLimits {
            max_connections: self.count(
                at,
                "maxConnections",
                spec.max_connections,
                1,
                d.max_connections,
            ),
            max_pending_requests: self.count(
                at,
                "maxPendingRequests",
                spec.max_pending_requests,
                1,
                d.max_pending_requests,
            ),
            max_requests: self.count(at, "maxRequests", spec.max_requests, 1, d.max_requests),
        }
    }

    fn outlier_detection(&mut self, at: &str, spec: &OutlierDetectionSpec) -> OutlierDetection {
        let d = OutlierDetection::default();
        let consecutive_5xx = self.count(
            at,
            "consecutive5xx",
            spec.consecutive_5xx,
            0,
            d.consecutive_5xx,
        );
        let consecutive_gateway_errors = self.count(
            at,
            "consecutiveGatewayErrors",
            spec.consecutive_gateway_errors,
            0,
            d.consecutive_gateway_errors,
        );
        if consecutive_5xx == 0 && consecutive_gateway_errors == 0 {
            let reason = "both triggers are 0, nothing would be ejected; remove outlierDetection \
                          to turn it off";
            self.problem(at, reason);
        }
        let base = self.duration(at, "baseEjectionTime", spec.base_ejection_time.as_deref());
        let max = self.duration(at, "maxEjectionTime", spec.max_ejection_time.as_deref());
        let base_ejection_time = base.unwrap_or(d.base_ejection_time);
        let max_ejection_time = max.unwrap_or(d.max_ejection_time.max(base_ejection_time));
        if max_ejection_time < base_ejection_time {
            let reason = "must not be shorter than baseEjectionTime";
            self.problem(format!("{at}.maxEjectionTime"), reason);
        }
        let percent = self.count(
            at,
            "maxEjectionPercent",
            spec.max_ejection_percent,
            0,
            u32::from(d.max_ejection_percent),
        );
        let max_ejection_percent = u8::try_from(percent).ok().filter(|p| *p <= 100);
        if max_ejection_percent.is_none() {
            self.problem(
                format!("{at}.maxEjectionPercent"),
                format!("{percent} is not 0-100"),
            );
        }
        OutlierDetection {
            consecutive_5xx,
            consecutive_gateway_errors,
            base_ejection_time,
            max_ejection_time,
            max_ejection_percent: max_ejection_percent.unwrap_or(d.max_ejection_percent),
        }
    }

    fn retry(&mut self, at: &str, spec: &RetrySpec) -> RetryPolicy {
        let d = RetryPolicy::default();
        let attempts = match spec.attempts {
            Some(n) if (0..=MAX_ATTEMPTS).contains(&n) => u32::try_from(n).unwrap_or(d.attempts),
            Some(n) => {
                self.problem(
                    format!("{at}.attempts"),
                    format!("{n} is not 0-{MAX_ATTEMPTS}"),
                );
                d.attempts
            }
            None => d.attempts,
        };
        let on = match &spec.on {
            None => d.on.clone(),
            Some(names) => {
                let mut on = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    match RetryOn::ALL.iter().find(|r| r.as_str() == name) {
                        Some(r) if !on.contains(r) => on.push(*r),
                        Some(_) => self
                            .problem(format!("{at}.on[{i}]"), format!("`{name}` is listed twice")),
                        None => {
                            let reason = format!(
                                "`{name}` is not one of connect-failure, 5xx, gateway-error, reset"
                            );
                            self.problem(format!("{at}.on[{i}]"), reason);
                        }
                    }
                }
                on.sort_unstable();
                on
            }
        };
        let mut grpc_statuses = Vec::new();
        for (i, name) in spec.grpc_statuses.iter().flatten().enumerate() {
            match GrpcCode::from_name(name) {
                Some(code) if code.0 != 0 && !grpc_statuses.contains(&code) => {
                    grpc_statuses.push(code)
                }
                Some(code) if code.0 != 0 => {
                    self.problem(
                        format!("{at}.grpcStatuses[{i}]"),
                        format!("`{name}` is listed twice"),
                    );
                }
                _ => {
                    let reason =
                        format!("`{name}` is not a gRPC error status (such as UNAVAILABLE)");
                    self.problem(format!("{at}.grpcStatuses[{i}]"), reason);
                }
            }
        }
        grpc_statuses.sort_unstable();
        let per_try_timeout = self.duration(at, "perTryTimeout", spec.per_try_timeout.as_deref());
        let backoff = spec
            .backoff
            .as_ref()
            .map(|b| self.backoff(&format!("{at}.backoff"), b))
            .unwrap_or(d.backoff);
        let max_replay_bytes = match spec.max_replay_bytes {
            Some(n) if (0..=MAX_REPLAY_BYTES).contains(&n) => {
                u32::try_from(n).unwrap_or(d.max_replay_bytes)
            }
            Some(n) => {
                let reason = format!("{n} is not 0-{MAX_REPLAY_BYTES}");
                self.problem(format!("{at}.maxReplayBytes"), reason);
                d.max_replay_bytes
            }
            None => d.max_replay_bytes,
        };
        RetryPolicy {
            attempts,
            on,
            codes: Vec::new(),
            grpc_statuses,
            per_try_timeout,
            backoff,
            max_replay_bytes,
        }
    }

    fn backoff(&mut self, at: &str, spec: &BackoffSpec) -> Backoff {
        let d = Backoff::default();
        let base = self
            .duration(at, "base", spec.base.as_deref())
            .unwrap_or(d.base);
        let max = self
            .duration(at, "max", spec.max.as_deref())
            .unwrap_or(d.max.max(base));
        if max < base {
            self.problem(format!("{at}.max"), "must not be shorter than base");
        }
        Backoff { base, max }
    }

    fn retry_budget(&mut self, at: &str, spec: &RetryBudgetSpec) -> RetryBudget {
        let d = RetryBudget::default();
        let ratio = match spec.ratio {
            Some(r) if (0.0..=1.0).contains(&r) => r,
            Some(r) => {
                self.problem(format!("{at}.ratio"), format!("{r} is not between 0 and 1"));
                d.ratio
            }
            None => d.ratio,
        };
        let min_retries_per_second = self.count(
            at,
            "minRetriesPerSecond",
            spec.min_retries_per_second,
            0,
            d.min_retries_per_second,
        );
        RetryBudget {
            ratio,
            min_retries_per_second,
        }
    }

    /// A count from `min` up to `u32::MAX`, or `default` when omitted.
    fn count(&mut self, at: &str, field: &str, value: Option<i64>, min: u32, default: u32) -> u32 {
        match value {
            None => default,
            Some(n) => match u32::try_from(n) {
                Ok(n) if n >= min => n,
                _ => {
                    let reason = format!("{n} is not a count from {min} to {}", u32::MAX);
                    self.problem(format!("{at}.{field}"), reason);
                    default
                }
            },
        }
    }

    /// A positive Gateway API duration (`250ms`, `30s`, `1m30s`).
    fn duration(&mut self, at: &str, field: &str, text: Option<&str>) -> Option<Duration> {
        let text = text?;
        match gateway_api::Duration::from_str(text) {
            Ok(d) if !d.is_zero() => Some(Duration::new(d.as_secs(), d.subsec_nanos())),
            _ => {
                let reason =
                    format!("`{text}` is not a positive duration (such as 250ms, 30s, 1m30s)");
                self.problem(format!("{at}.{field}"), reason);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
