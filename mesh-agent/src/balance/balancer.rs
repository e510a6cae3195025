//! One service port's balancer: the endpoint set and policy in force (a [`Shared`] version,
//! replaced whole when either changes) and the choice of an endpoint per request.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use super::endpoint::{Endpoint, EndpointStatus};
use super::ring::Ring;
use super::{Algorithm, Config};
use crate::resilience::clock::{self, Clock};

/// Random draws for an eligible endpoint before falling back to a scan: with at most a few
/// endpoints ejected, the first draw nearly always succeeds.
const DRAWS: usize = 4;

pub struct Balancer {
    current: RwLock<Arc<Shared>>,
}

/// How a call to a picked endpoint ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// An answer that says nothing bad about the endpoint (any status below 500), after
    /// `latency` (time to the response head).
    Success { latency: Duration },
    /// A 5xx other than 502, 503, 504.
    ServerError,
    /// Connect failure, 502, 503 or 504.
    GatewayError,
}

/// An endpoint chosen for one call. It counts as in flight until finished or dropped; dropping
/// it unfinished means cancelled: no latency sample, no failure.
pub struct Pick {
    shared: Arc<Shared>,
    index: usize,
    /// When the pick was made, if choosing read the clock: `picked_at + latency` dates a
    /// latency sample well enough, and saves reading the clock again (about half the cost of
    /// a pick and its finish).
    picked_at: Option<u64>,
}

/// What a balancer would do with the next request, and what it knows of each endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Preview {
    pub algorithm: Algorithm,
    /// `None`: no endpoints.
    pub chosen: Option<SocketAddr>,
    pub endpoints: Vec<EndpointStatus>,
    /// Whether the balancer exists (it has balanced requests); if not, the preview is that of
    /// a new one, which knows nothing about its endpoints yet.
    pub active: bool,
}

/// One version of a balancer: its endpoints and its policy.
pub(super) struct Shared {
    pub(super) addrs: Box<[SocketAddr]>,
    pub(super) endpoints: Box<[Arc<Endpoint>]>,
    pub(super) config: Config,
    pub(super) tau_ns: f64,
    ring: Option<Arc<Ring>>,
    /// Round-robin position.
    next: AtomicUsize,
    /// Serializes ejection decisions, so two failing endpoints cannot both take the last
    /// ejection the percentage allows.
    pub(super) ejecting: Mutex<()>,
}

impl Balancer {
    pub(super) fn new(endpoints: &[SocketAddr], config: &Config, now: u64) -> Self {
        Self {
            current: RwLock::new(Arc::new(Shared::build(endpoints, config, None, now))),
        }
    }

    /// Chooses an endpoint; `hash` is the request's hash key for
    /// [`Algorithm::ConsistentHash`] (ignored otherwise). `None`: no endpoints.
    pub fn pick(&self, hash: Option<u64>) -> Option<Pick> {
        self.pick_with(hash, &mut Clock::default())
    }

    /// Every endpoint with its state, in the order of the endpoint list.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.endpoints_at(clock::now())
    }

    pub(super) fn pick_with(&self, hash: Option<u64>, clock: &mut Clock) -> Option<Pick> {
        let shared = self.shared();
        let index = shared.choose(hash, clock)?;
        shared.endpoints[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        Some(Pick {
            shared,
            index,
            picked_at: clock.known(),
        })
    }

    pub(super) fn endpoints_at(&self, now: u64) -> Vec<EndpointStatus> {
        self.shared().statuses(now)
    }

    /// What a request with `hash` would be sent to now if the balancer's endpoints and policy
    /// were `endpoints` and `config`, without counting a request or changing the balancer (a
    /// round robin does not advance). For `explain`.
    pub(super) fn preview(
        &self,
        endpoints: &[SocketAddr],
        config: &Config,
        hash: Option<u64>,
        clock: &mut Clock,
    ) -> Preview {
        let current = self.shared();
        let shared = if current.matches(endpoints, config) {
            current
        } else {
            Arc::new(Shared::build(
                endpoints,
                config,
                Some(&current),
                clock.now(),
            ))
        };
        shared.preview(hash, clock, true)
    }

    /// Brings the endpoint set and policy in line with `endpoints` and `config`; a read and a
    /// comparison when nothing changed.
    pub(super) fn sync(&self, endpoints: &[SocketAddr], config: &Config, clock: &mut Clock) {
        let unchanged = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .matches(endpoints, config);
        if unchanged {
            return;
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if !current.matches(endpoints, config) {
            let next = Shared::build(endpoints, config, Some(&current), clock.now());
            *current = Arc::new(next);
        }
    }

    pub(super) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared();
        f.debug_struct("Balancer")
            .field("endpoints", &shared.addrs)
            .field("config", &shared.config)
            .finish()
    }
}

impl Pick {
    pub fn addr(&self) -> SocketAddr {
        self.shared.addrs[self.index]
    }

    /// Reports how the call ended: feeds the latency estimate and the outlier detection.
    pub fn finish(self, outcome: CallOutcome) {
        self.finish_with(outcome, &mut Clock::default());
    }

    pub(super) fn finish_with(self, outcome: CallOutcome, clock: &mut Clock) {
        let mut clock = match (clock.known(), self.picked_at, outcome) {
            (None, Some(picked_at), CallOutcome::Success { latency }) => {
                Clock::at(picked_at.saturating_add(clock::nanos(latency)))
            }
            _ => std::mem::take(clock),
        };
        self.shared.record(self.index, outcome, &mut clock);
        // Dropping `self` ends the in-flight count.
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        self.shared.endpoints[self.index]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pick").field("addr", &self.addr()).finish()
    }
}

impl Shared {
    /// A version over `endpoints`, reusing the state of those already in `previous`.
    pub(super) fn build(
        endpoints: &[SocketAddr],
        config: &Config,
        previous: Option<&Shared>,
        now: u64,
    ) -> Self {
        let known: HashMap<SocketAddr, &Arc<Endpoint>> = previous
            .map(|p| p.addrs.iter().copied().zip(p.endpoints.iter()).collect())
            .unwrap_or_default();
        let endpoint_state = endpoints
            .iter()
            .map(|addr| match known.get(addr) {
                Some(existing) => Arc::clone(existing),
                None => Arc::new(Endpoint::new(*addr, config.default_rtt, now)),
            })
            .collect();
        let ring = (config.algorithm == Algorithm::ConsistentHash).then(|| {
            previous
                .filter(|p| *p.addrs == *endpoints)
                .and_then(|p| p.ring.clone())
                .unwrap_or_else(|| Arc::new(Ring::new(endpoints)))
        });
        Self {
            addrs: endpoints.into(),
            endpoints: endpoint_state,
            config: config.clone(),
            tau_ns: clock::nanos(config.decay) as f64,
            ring,
            next: AtomicUsize::new(previous.map_or(0, |p| p.next.load(Ordering::Relaxed))),
            ejecting: Mutex::new(()),
        }
    }

    pub(super) fn preview(&self, hash: Option<u64>, clock: &mut Clock, active: bool) -> Preview {
        let chosen = match (self.config.algorithm, self.endpoints.len()) {
            (_, 0) => None,
            (Algorithm::RoundRobin, n) => {
                let start = self.next.load(Ordering::Relaxed);
                let eligible = (start..start + n)
                    .map(|i| i % n)
                    .find(|&i| self.endpoints[i].eligible(clock));
                Some(eligible.unwrap_or(start % n))
            }
            _ => self.choose(hash, clock),
        };
        Preview {
            algorithm: self.config.algorithm,
            chosen: chosen.map(|i| self.addrs[i]),
            endpoints: self.statuses(clock.now()),
            active,
        }
    }

    fn statuses(&self, now: u64) -> Vec<EndpointStatus> {
        self.endpoints
            .iter()
            .map(|e| e.status(now, self.tau_ns))
            .collect()
    }

    fn matches(&self, endpoints: &[SocketAddr], config: &Config) -> bool {
        *self.addrs == *endpoints && self.config == *config
    }

    fn choose(&self, hash: Option<u64>, clock: &mut Clock) -> Option<usize> {
        match self.endpoints.len() {
            0 => return None,
            1 => return Some(0),
            _ => {}
        }
        match (self.config.algorithm, hash, &self.ring) {
            (Algorithm::ConsistentHash, Some(key), Some(ring)) => {
                ring.lookup(key, |i| self.endpoints[i].eligible(clock))
            }
            (Algorithm::RoundRobin, ..) => Some(self.round_robin(clock)),
            (Algorithm::LeastRequest, ..) => {
                Some(self.two_choices(clock, |e, _| f64::from(e.in_flight.load(Ordering::Relaxed))))
            }
            _ => {
                let tau_ns = self.tau_ns;
                Some(self.two_choices(clock, |e, now| e.ewma_cost(now, tau_ns)))
            }
        }
    }

    fn round_robin(&self, clock: &mut Clock) -> usize {
        let n = self.endpoints.len();
        for _ in 0..n {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
            if self.endpoints[i].eligible(clock) {
                return i;
            }
        }
        // Everything ejected (possible only after endpoints were removed): ignore ejection.
        self.next.fetch_add(1, Ordering::Relaxed) % n
    }

    /// Power of two choices: the cheaper of two distinct random eligible endpoints.
    fn two_choices(&self, clock: &mut Clock, cost: impl Fn(&Endpoint, u64) -> f64) -> usize {
        let n = self.endpoints.len();
        let (a, b) = match self.draw(clock, None) {
            Some(a) => (a, self.draw(clock, Some(a))),
            // Everything ejected (possible only after endpoints were removed): ignore ejection.
            None => {
                let a = fastrand::usize(..n);
                (a, Some(other_than(a, n)))
            }
        };
        let Some(b) = b else { return a };
        let now = clock.now();
        if cost(&self.endpoints[b], now) < cost(&self.endpoints[a], now) {
            b
        } else {
            a
        }
    }

    /// A random eligible endpoint other than `exclude`, if there is one. Needs `n >= 2`.
    fn draw(&self, clock: &mut Clock, exclude: Option<usize>) -> Option<usize> {
        let n = self.endpoints.len();
        let random = || match exclude {
            Some(x) => other_than(x, n),
            None => fastrand::usize(..n),
        };
        for _ in 0..DRAWS {
            let i = random();
            if self.endpoints[i].eligible(clock) {
                return Some(i);
            }
        }
        // Many endpoints ejected: scan from a random place so the choice stays spread.
        let start = fastrand::usize(..n);
        (start..start + n)
            .map(|i| i % n)
            .find(|&i| Some(i) != exclude && self.endpoints[i].eligible(clock))
    }
}

/// A uniformly random index in `0..n` other than `x` (`n >= 2`).
fn other_than(x: usize, n: usize) -> usize {
    let i = fastrand::usize(..n - 1);
    if i >= x { i + 1 } else { i }
}

#[cfg(test)]
#[path = "balancer_tests.rs"]
mod tests;
