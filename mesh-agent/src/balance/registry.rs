//! The balancers of every service port, kept across state snapshots: a snapshot is replaced
//! whole on every change, but what the balancers learned about endpoints must survive it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use super::Config;
use super::balancer::{Balancer, Preview, Shared};
use crate::resilience::clock::Clock;

#[derive(Debug, Default)]
pub struct Balancers {
    by_key: RwLock<HashMap<String, Arc<Balancer>>>,
}

impl Balancers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The balancer of `key` (e.g. `shop/backend:80`), created or updated so that its endpoint
    /// set equals `endpoints` (the state of surviving endpoints kept) and its policy equals
    /// `config`. A map lookup and a comparison when nothing changed.
    pub fn get(&self, key: &str, endpoints: &[SocketAddr], config: &Config) -> Arc<Balancer> {
        self.get_with(key, endpoints, config, &mut Clock::default())
    }

    /// What the balancer of `key` would choose for a request with `hash` (see
    /// [`Balancer::pick`]) and the state of every endpoint, without creating the balancer or
    /// counting a request.
    pub fn preview(
        &self,
        key: &str,
        endpoints: &[SocketAddr],
        config: &Config,
        hash: Option<u64>,
    ) -> Preview {
        let mut clock = Clock::default();
        let existing = self.existing(key);
        match existing {
            Some(balancer) => balancer.preview(endpoints, config, hash, &mut clock),
            None => {
                Shared::build(endpoints, config, None, clock.now()).preview(hash, &mut clock, false)
            }
        }
    }

    fn existing(&self, key: &str) -> Option<Arc<Balancer>> {
        self.by_key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Drops the balancers of services that are gone (those for which `keep` is false).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.by_key
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| keep(key));
    }

    pub fn len(&self) -> usize {
        self.by_key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn get_with(
        &self,
        key: &str,
        endpoints: &[SocketAddr],
        config: &Config,
        clock: &mut Clock,
    ) -> Arc<Balancer> {
        let existing = self.existing(key);
        match existing {
            Some(balancer) => {
                balancer.sync(endpoints, config, clock);
                balancer
            }
            None => {
                let mut by_key = self.by_key.write().unwrap_or_else(PoisonError::into_inner);
                let balancer = by_key
                    .entry(key.to_owned())
                    .or_insert_with(|| Arc::new(Balancer::new(endpoints, config, clock.now())));
                // Another caller may have created it meanwhile, from another snapshot.
                balancer.sync(endpoints, config, clock);
                Arc::clone(balancer)
            }
        }
    }
}
