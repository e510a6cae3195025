//! Resilience mechanics for the HTTP proxy: which failed attempts may be retried and how long to
//! back off ([`retryable`], [`idempotent`], [`backoff`]), a retry budget that keeps retries a
//! bounded share of the traffic ([`RetryBudget`]), and per-service circuit breakers that turn
//! overflow away at once instead of queueing it ([`CircuitBreaker`]).
//!
//! Nothing here does I/O, sleeps or waits: the proxy asks, acts, and reports back. Outlier
//! detection runs inside the balancer ([`crate::balance`]), which owns the per-endpoint state;
//! its settings ([`OutlierConfig`]) are defined here with the other policy settings.

mod breaker;
mod budget;
pub(crate) mod clock;
mod config;
mod convert;
mod retry;

pub use breaker::{BreakerLoad, CircuitBreaker, ConnectionPermit, PendingPermit, RequestPermit};
pub use budget::RetryBudget;
pub use config::{
    BreakerLimits, BudgetConfig, DEFAULT_BUDGET_TTL, GrpcCodes, OutlierConfig, RetryConfig, RetryOn,
};
pub use retry::{AttemptResult, backoff, idempotent, retryable};
