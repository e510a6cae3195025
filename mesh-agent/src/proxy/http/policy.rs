//! A service's traffic policy in the form the balancers and the resilience mechanics take, and
//! the per-service state they keep across snapshots (circuit breaker, retry budget).
//!
//! Conversions are plain copies of small values, cheap enough to run per request; the
//! per-service state is found with one read-locked map lookup.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::balance::{self, Algorithm};
use crate::resilience::{
    BreakerLimits, BudgetConfig, CircuitBreaker, GrpcCodes, OutlierConfig, RetryBudget,
    RetryConfig, RetryOn,
};
use crate::state::{self, LoadBalancer, TrafficPolicy};

/// The balancer policy of a service.
pub fn balance_config(policy: &TrafficPolicy) -> balance::Config {
    let algorithm = match policy.load_balancer {
        LoadBalancer::P2cEwma => Algorithm::P2cEwma,
        LoadBalancer::RoundRobin => Algorithm::RoundRobin,
        LoadBalancer::LeastRequest => Algorithm::LeastRequest,
        LoadBalancer::ConsistentHash { .. } => Algorithm::ConsistentHash,
    };
    let outlier = policy.outlier_detection.map(|o| OutlierConfig {
        consecutive_5xx: o.consecutive_5xx,
        consecutive_gateway_errors: o.consecutive_gateway_errors,
        base_ejection_time: o.base_ejection_time,
        max_ejection_time: o.max_ejection_time,
        max_ejection_percent: o.max_ejection_percent,
    });
    balance::Config {
        algorithm,
        outlier,
        ..balance::Config::default()
    }
}

/// A retry policy (a rule's or the service's) as the retry mechanics take it.
pub fn retry_config(policy: &state::RetryPolicy) -> RetryConfig {
    let on = policy.on.iter().fold(RetryOn::NONE, |on, cond| {
        on | match cond {
            state::RetryOn::ConnectFailure => RetryOn::CONNECT_FAILURE,
            state::RetryOn::Status5xx => RetryOn::SERVER_ERROR,
            state::RetryOn::GatewayError => RetryOn::GATEWAY_ERROR,
            state::RetryOn::Reset => RetryOn::RESET,
        }
    });
    RetryConfig {
        attempts: policy.attempts,
        on,
        grpc_statuses: GrpcCodes::new(policy.grpc_statuses.iter().map(|c| u32::from(c.0))),
        // The policy's extra status codes are checked against the policy itself, so that
        // converting per request allocates nothing.
        codes: Vec::new(),
        per_try_timeout: policy.per_try_timeout,
        backoff_base: policy.backoff.base,
        backoff_max: policy.backoff.max,
        max_replay_bytes: usize::try_from(policy.max_replay_bytes).unwrap_or(usize::MAX),
    }
}

fn breaker_limits(policy: &TrafficPolicy) -> BreakerLimits {
    let l = policy.circuit_breaker;
    BreakerLimits {
        max_connections: l.max_connections,
        max_pending_requests: l.max_pending_requests,
        max_requests: l.max_requests,
    }
}

fn budget_config(policy: &TrafficPolicy) -> BudgetConfig {
    BudgetConfig {
        ratio: policy.retry_budget.ratio,
        min_retries_per_second: policy.retry_budget.min_retries_per_second,
        ..BudgetConfig::default()
    }
}

/// What this proxy keeps per destination service: its breaker and its retry budget.
#[derive(Debug)]
pub struct ServiceGuard {
    pub breaker: CircuitBreaker,
    pub budget: RetryBudget,
    /// The breaker limits last applied, so that unchanged limits cost loads, not stores to
    /// counters every request shares.
    applied: [AtomicU32; 3],
    /// The policy the budget was built from: a changed budget policy starts a new budget.
    budget_config: BudgetConfig,
}

impl ServiceGuard {
    /// Brings the breaker's limits to `limits`; permits already held stay valid.
    fn apply(&self, limits: &BreakerLimits) {
        let wanted = [
            limits.max_connections,
            limits.max_pending_requests,
            limits.max_requests,
        ];
        let same = self
            .applied
            .iter()
            .zip(wanted)
            .all(|(a, w)| a.load(Ordering::Relaxed) == w);
        if !same {
            self.breaker.set_limits(limits);
            for (a, w) in self.applied.iter().zip(wanted) {
                a.store(w, Ordering::Relaxed);
            }
        }
    }
}

/// The guards of every service, kept across snapshots.
#[derive(Debug, Default)]
pub struct ServiceGuards {
    by_service: RwLock<HashMap<(String, String), Arc<ServiceGuard>>>,
}

impl ServiceGuards {
    /// The guard of `service`, with limits set from `policy`.
    pub fn get(&self, service: &(String, String), policy: &TrafficPolicy) -> Arc<ServiceGuard> {
        let budget = budget_config(policy);
        let found = self
            .by_service
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
            .cloned();
        let limits = breaker_limits(policy);
        if let Some(guard) = found.filter(|g| g.budget_config == budget) {
            guard.apply(&limits);
            return guard;
        }
        let guard = Arc::new(ServiceGuard {
            breaker: CircuitBreaker::new(&limits),
            budget: RetryBudget::new(&budget),
            applied: [
                AtomicU32::new(limits.max_connections),
                AtomicU32::new(limits.max_pending_requests),
                AtomicU32::new(limits.max_requests),
            ],
            budget_config: budget,
        });
        let mut all = self
            .by_service
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match all.get(service) {
            // Another request created it meanwhile; use that one so limits are shared.
            Some(existing) if existing.budget_config == guard.budget_config => existing.clone(),
            _ => {
                all.insert(service.clone(), guard.clone());
                guard
            }
        }
    }

    /// Forgets services for which `keep` is false.
    pub fn retain(&self, keep: impl Fn(&(String, String)) -> bool) {
        self.by_service
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| keep(k));
    }
}

/// A short string built on the stack (balancer keys such as `shop/backend:80`), so the per
/// request lookup does not allocate. Longer text spills to the heap.
pub struct StackStr {
    buf: [u8; 160],
    len: usize,
    spill: Option<String>,
}

impl StackStr {
    pub fn balancer_key(service: &(String, String), port: u16) -> Self {
        let mut s = StackStr {
            buf: [0; 160],
            len: 0,
            spill: None,
        };
        let _ = write!(s, "{}/{}:{port}", service.0, service.1);
        s
    }

    pub fn as_str(&self) -> &str {
        match &self.spill {
            Some(s) => s,
            // Only whole `&str`s are copied in, so the bytes are UTF-8.
            None => std::str::from_utf8(&self.buf[..self.len]).unwrap_or(""),
        }
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(spill) = &mut self.spill {
            spill.push_str(s);
            return Ok(());
        }
        let end = self.len + s.len();
        if end <= self.buf.len() {
            self.buf[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        } else {
            let mut spill = String::with_capacity(end);
            spill.push_str(std::str::from_utf8(&self.buf[..self.len]).unwrap_or(""));
            spill.push_str(s);
            self.spill = Some(spill);
        }
        Ok(())
    }
}

/// The service of a balancer key, for pruning keys of removed services.
pub fn service_of_key(key: &str) -> Option<(&str, &str)> {
    let (service, _port) = key.rsplit_once(':')?;
    service.split_once('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{GrpcCode, RetryPolicy};

    #[test]
    fn retry_policies_convert() {
        let policy = RetryPolicy {
            attempts: 3,
            on: vec![state::RetryOn::GatewayError, state::RetryOn::Reset],
            grpc_statuses: vec![GrpcCode::UNAVAILABLE],
            ..RetryPolicy::default()
        };
        let cfg = retry_config(&policy);
        assert_eq!(cfg.attempts, 3);
        assert!(cfg.on.contains(RetryOn::GATEWAY_ERROR | RetryOn::RESET));
        assert!(
            !cfg.on
                .intersects(RetryOn::SERVER_ERROR | RetryOn::CONNECT_FAILURE)
        );
        assert!(cfg.grpc_statuses.contains(14));
        assert_eq!(cfg.max_replay_bytes, 64 * 1024);
    }

    #[test]
    fn guards_are_shared_per_service_and_follow_limits() {
        let guards = ServiceGuards::default();
        let svc = ("shop".to_owned(), "cart".to_owned());
        let mut policy = TrafficPolicy::default();
        policy.circuit_breaker.max_requests = 1;
        let a = guards.get(&svc, &policy);
        let held = a.breaker.try_request();
        assert!(held.is_some());
        assert!(guards.get(&svc, &policy).breaker.try_request().is_none());
        policy.circuit_breaker.max_requests = 2;
        assert!(guards.get(&svc, &policy).breaker.try_request().is_some());
        guards.retain(|_| false);
        assert!(
            guards
                .by_service
                .read()
                .map(|m| m.is_empty())
                .unwrap_or(false)
        );
    }

    #[test]
    fn balancer_keys_are_built_without_allocating() {
        let svc = ("shop".to_owned(), "backend".to_owned());
        let key = StackStr::balancer_key(&svc, 80);
        assert!(key.spill.is_none());
        assert_eq!(key.as_str(), "shop/backend:80");
        assert_eq!(service_of_key(key.as_str()), Some(("shop", "backend")));
        let long = ("n".repeat(100), "s".repeat(100));
        let key = StackStr::balancer_key(&long, 8080);
        assert_eq!(key.as_str().len(), 206);
        assert!(key.as_str().ends_with("s:8080"));
    }
}
