//! What this proxy keeps per destination service across snapshots: its traffic policy in the
//! form the balancer and the resilience mechanics take, its circuit breaker and connection
//! slots, and its retry budget.
//!
//! Converting is the `From` impls' job (in `balance` and `resilience`); here it happens only
//! when a service's policy changes, never per request. A request finds its service's
//! [`ServiceGuard`] with a read-locked map lookup and one comparison of the snapshot's policy
//! with the one the guard was built from. When they differ the guard is rebuilt, keeping
//! what must outlive a policy change: the breaker's counts (permits in flight stay valid under
//! new limits) and, while its settings are unchanged, the retry budget.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::slots::ServiceLimits;
use crate::balance;
use crate::resilience::{BreakerLimits, BudgetConfig, CircuitBreaker, RetryBudget, RetryConfig};
use crate::state::{MeshState, RetryPolicy, TrafficPolicy};

/// Distinct rule retry policies remembered per service; beyond it the oldest is forgotten.
const RULE_RETRIES: usize = 32;

/// The converted policy and the shared state of one destination service.
#[derive(Debug)]
pub struct ServiceGuard {
    /// The policy the rest was converted from.
    policy: TrafficPolicy,
    pub balance: balance::Config,
    /// The service's own retry policy (a rule's replaces it: [`ServiceGuard::rule_retry`]).
    pub retry: RetryConfig,
    pub budget: Arc<RetryBudget>,
    budget_config: BudgetConfig,
    limits: Arc<ServiceLimits>,
    rule_retries: Arc<RuleRetries>,
}

impl ServiceGuard {
    /// A guard for `policy`, carrying over `previous`'s breaker, rule retries and (if its
    /// settings are the same) retry budget.
    fn new(policy: &TrafficPolicy, previous: Option<&ServiceGuard>) -> Self {
        let breaker_limits = BreakerLimits::from(&policy.circuit_breaker);
        let budget_config = BudgetConfig::from(&policy.retry_budget);
        let limits = match previous {
            Some(p) => {
                p.limits.set_limits(&breaker_limits);
                Arc::clone(&p.limits)
            }
            None => Arc::new(ServiceLimits::new(&breaker_limits)),
        };
        let budget = match previous {
            Some(p) if p.budget_config == budget_config => Arc::clone(&p.budget),
            _ => Arc::new(RetryBudget::new(&budget_config)),
        };
        ServiceGuard {
            policy: policy.clone(),
            balance: balance::Config::from(policy),
            retry: RetryConfig::from(&policy.retry),
            budget,
            budget_config,
            limits,
            rule_retries: previous.map_or_else(Arc::default, |p| Arc::clone(&p.rule_retries)),
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        self.limits.breaker()
    }

    pub fn limits(&self) -> &Arc<ServiceLimits> {
        &self.limits
    }

    /// A route rule's own retry policy, converted once and then remembered.
    pub fn rule_retry(&self, policy: &RetryPolicy) -> Arc<RetryConfig> {
        self.rule_retries.get(policy)
    }
}

/// Rule retry policies of routes to one service, converted. Keyed by value, not by rule: the
/// rules live in snapshots that come and go, and few distinct policies lead to one service.
#[derive(Debug, Default)]
struct RuleRetries {
    converted: RwLock<Vec<(RetryPolicy, Arc<RetryConfig>)>>,
}

impl RuleRetries {
    fn get(&self, policy: &RetryPolicy) -> Arc<RetryConfig> {
        let find = |all: &[(RetryPolicy, Arc<RetryConfig>)]| {
            all.iter()
                .find(|(p, _)| p == policy)
                .map(|(_, cfg)| Arc::clone(cfg))
        };
        let converted = self
            .converted
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(cfg) = find(&converted) {
            return cfg;
        }
        drop(converted);
        let mut all = self
            .converted
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(cfg) = find(&all) {
            return cfg;
        }
        if all.len() >= RULE_RETRIES {
            all.remove(0);
        }
        let cfg = Arc::new(RetryConfig::from(policy));
        all.push((policy.clone(), Arc::clone(&cfg)));
        cfg
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.converted
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The guards of every service, kept across snapshots.
#[derive(Debug, Default)]
pub struct ServiceGuards {
    by_service: RwLock<HashMap<(String, String), Arc<ServiceGuard>>>,
}

impl ServiceGuards {
    /// The guard of `service`, rebuilt first if its policy is not `policy` any more.
    pub fn get(&self, service: &(String, String), policy: &TrafficPolicy) -> Arc<ServiceGuard> {
        let found = self
            .by_service
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
            .filter(|g| g.policy == *policy)
            .cloned();
        if let Some(guard) = found {
            return guard;
        }
        let mut all = self
            .by_service
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = all.get(service);
        if let Some(guard) = previous.filter(|g| g.policy == *policy) {
            // Another request rebuilt it meanwhile.
            return Arc::clone(guard);
        }
        let guard = Arc::new(ServiceGuard::new(policy, previous.map(|g| &**g)));
        all.insert(service.clone(), Arc::clone(&guard));
        guard
    }

    /// Brings every guard to `state`: guards of removed services are forgotten, those whose
    /// policy changed are rebuilt now, so that new limits also reach requests already waiting.
    pub fn sync(&self, state: &MeshState) {
        let mut all = self
            .by_service
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        all.retain(|service, guard| match state.services.get(service) {
            None => false,
            Some(s) => {
                if guard.policy != s.traffic_policy {
                    let rebuilt = ServiceGuard::new(&s.traffic_policy, Some(guard));
                    *guard = Arc::new(rebuilt);
                }
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state;

    fn svc() -> (String, String) {
        ("shop".to_owned(), "cart".to_owned())
    }

    #[test]
    fn guards_are_shared_per_service_and_follow_the_policy() {
        let guards = ServiceGuards::default();
        let mut policy = TrafficPolicy::default();
        policy.circuit_breaker.max_requests = 1;
        let a = guards.get(&svc(), &policy);
        assert!(Arc::ptr_eq(&a, &guards.get(&svc(), &policy)));
        let held = a.breaker().try_request();
        assert!(held.is_some());
        assert!(
            guards
                .get(&svc(), &policy)
                .breaker()
                .try_request()
                .is_none()
        );

        policy.circuit_breaker.max_requests = 2;
        policy.load_balancer = state::LoadBalancer::RoundRobin;
        let b = guards.get(&svc(), &policy);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.balance.algorithm, balance::Algorithm::RoundRobin);
        // The breaker carries over: the permit held counts against the new limit.
        assert!(Arc::ptr_eq(a.limits(), b.limits()));
        assert!(Arc::ptr_eq(&a.budget, &b.budget));
        let second = b.breaker().try_request();
        assert!(second.is_some());
        assert!(b.breaker().try_request().is_none());

        policy.retry_budget.ratio = 0.5;
        let c = guards.get(&svc(), &policy);
        assert!(!Arc::ptr_eq(&b.budget, &c.budget));
    }

    #[test]
    fn sync_applies_new_policies_and_forgets_removed_services() {
        let guards = ServiceGuards::default();
        let old = guards.get(&svc(), &TrafficPolicy::default());
        guards.sync(&MeshState::default());
        let fresh = guards.get(&svc(), &TrafficPolicy::default());
        assert!(!Arc::ptr_eq(old.limits(), fresh.limits()));
        assert_eq!(
            fresh.retry.attempts,
            state::DEFAULT_RETRY_ATTEMPTS,
            "the service's retry is converted with the guard"
        );
    }

    #[test]
    fn rule_retries_are_converted_once() {
        let guards = ServiceGuards::default();
        let guard = guards.get(&svc(), &TrafficPolicy::default());
        let rule = RetryPolicy {
            attempts: 3,
            codes: vec![429],
            ..RetryPolicy::default()
        };
        let first = guard.rule_retry(&rule);
        assert_eq!(first.codes, [429]);
        assert!(Arc::ptr_eq(&first, &guard.rule_retry(&rule.clone())));
        for attempts in 0..(RULE_RETRIES as u32 + 5) {
            guard.rule_retry(&RetryPolicy {
                attempts,
                ..RetryPolicy::default()
            });
        }
        assert_eq!(guard.rule_retries.len(), RULE_RETRIES);
    }
}
