//! Load balancing over the endpoints of a service port.
//!
//! The proxy keeps one [`Balancers`] registry across state snapshots and asks it, per request,
//! for the [`Balancer`] of the service port it routes to; the registry keeps each balancer's
//! endpoint set in step with the snapshot while the state of surviving endpoints (latency
//! estimate, requests in flight, ejection) carries over. A balancer picks an endpoint with:
//!
//! - power of two choices over peak-EWMA latency weighted by requests in flight (the default,
//!   Linkerd's algorithm; [`Algorithm::P2cEwma`]),
//! - round robin, least request (power of two choices over requests in flight),
//! - consistent hashing on a ring, so adding or removing one of `n` endpoints moves only about
//!   `1/n` of the keys.
//!
//! Outlier detection also runs here, since it needs the same per-endpoint state: endpoints that
//! fail several times in a row are ejected for a while (settings in
//! [`crate::resilience::OutlierConfig`]). A [`Pick`] counts as in flight until it is finished
//! or dropped; finishing it reports the outcome that feeds the latency estimate and the outlier
//! detection.
//!
//! Picking never allocates, and its locks are brief: a read lock on the current endpoint set and
//! one per candidate around its latency estimate; counters and ejection deadlines are atomics.

mod balancer;
mod endpoint;
mod ewma;
mod outlier;
mod registry;
mod ring;

use std::time::Duration;

pub use balancer::{Balancer, CallOutcome, Pick, Preview};
pub use endpoint::EndpointStatus;
pub use registry::Balancers;

use crate::resilience::OutlierConfig;
use crate::state;

/// How a balancer chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Power of two choices; cost = peak-EWMA latency * (requests in flight + 1).
    P2cEwma,
    RoundRobin,
    /// Power of two choices; cost = requests in flight.
    LeastRequest,
    /// A hash ring over the endpoints, keyed by the request's hash (see [`hash_key`]). Requests
    /// without a hash key are balanced as with [`Algorithm::P2cEwma`].
    ConsistentHash,
}

impl Algorithm {
    /// The name of the mesh state's `loadBalancer.policy` setting.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::P2cEwma => "P2CEWMA",
            Algorithm::RoundRobin => "RoundRobin",
            Algorithm::LeastRequest => "LeastRequest",
            Algorithm::ConsistentHash => "ConsistentHash",
        }
    }
}

/// A balancer's policy; the mesh state's `TrafficPolicy` converts into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub algorithm: Algorithm,
    /// `None`: no endpoint is ever ejected.
    pub outlier: Option<OutlierConfig>,
    /// Time constant of the latency estimate's decay ([`DEFAULT_DECAY`]).
    pub decay: Duration,
    /// Latency estimate of an endpoint that has not answered yet: new endpoints look this slow
    /// until they prove otherwise, so they are tried carefully ([`DEFAULT_RTT`]).
    pub default_rtt: Duration,
}

/// Linkerd's time constant for the latency estimate's decay.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);
/// Linkerd's latency estimate for endpoints that have not answered yet.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

impl From<&state::LoadBalancer> for Algorithm {
    fn from(lb: &state::LoadBalancer) -> Self {
        match lb {
            state::LoadBalancer::P2cEwma => Algorithm::P2cEwma,
            state::LoadBalancer::RoundRobin => Algorithm::RoundRobin,
            state::LoadBalancer::LeastRequest => Algorithm::LeastRequest,
            // What is hashed is the proxy's business: it computes the key.
            state::LoadBalancer::ConsistentHash { .. } => Algorithm::ConsistentHash,
        }
    }
}

impl From<&state::TrafficPolicy> for Config {
    fn from(policy: &state::TrafficPolicy) -> Self {
        Self {
            algorithm: Algorithm::from(&policy.load_balancer),
            outlier: policy.outlier_detection.as_ref().map(OutlierConfig::from),
            decay: DEFAULT_DECAY,
            default_rtt: DEFAULT_RTT,
        }
    }
}

impl Default for Config {
    /// The state's default policy (peak-EWMA, no ejection) with Linkerd's estimator settings.
    fn default() -> Self {
        Self::from(&state::TrafficPolicy::default())
    }
}

/// The hash key of a request attribute (a header value, a cookie, a workload name) for
/// [`Balancer::pick`]. Stable across processes, agents and releases, so every node sends the
/// same key to the same endpoint.
pub fn hash_key(bytes: &[u8]) -> u64 {
    ring::mix(ring::fnv1a(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traffic_policy_converts() {
        let policy = state::TrafficPolicy {
            load_balancer: state::LoadBalancer::ConsistentHash {
                hash: state::HashKey::SourceWorkload,
            },
            outlier_detection: Some(state::OutlierDetection::default()),
            ..state::TrafficPolicy::default()
        };
        let cfg = Config::from(&policy);
        assert_eq!(cfg.algorithm, Algorithm::ConsistentHash);
        assert_eq!(cfg.outlier, Some(OutlierConfig::default()));
        assert_eq!(cfg.decay, DEFAULT_DECAY);
        let default = Config::default();
        assert_eq!(default.algorithm, Algorithm::P2cEwma);
        assert_eq!(default.outlier, None);
        // The key is stable: every agent must compute the same one.
        assert_eq!(hash_key(b"user-42"), hash_key(b"user-42"));
        assert_ne!(hash_key(b"user-42"), hash_key(b"user-43"));
    }
}
