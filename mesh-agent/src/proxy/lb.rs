//! Endpoint selection: round robin per service.
//!
//! State snapshots are replaced on every reload, so the rotation cannot live in them; it is kept
//! here, keyed by service name, and survives snapshot swaps. A service whose endpoint list
//! changes simply continues its rotation over the new list.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: Mutex<HashMap<String, usize>>,
}

impl RoundRobin {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next endpoint of `service`, or `None` when it has no endpoints.
    pub fn pick(&self, service: &str, endpoints: &[SocketAddr]) -> Option<SocketAddr> {
        if endpoints.is_empty() {
            return None;
        }
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let counter = match next.get_mut(service) {
            Some(c) => c,
            None => next.entry(service.to_owned()).or_insert(0),
        };
        let chosen = endpoints[*counter % endpoints.len()];
        *counter = counter.wrapping_add(1);
        Some(chosen)
    }

    /// The endpoint the next [`RoundRobin::pick`] would return, without advancing.
    pub fn peek(&self, service: &str, endpoints: &[SocketAddr]) -> Option<SocketAddr> {
        if endpoints.is_empty() {
            return None;
        }
        let next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let counter = next.get(service).copied().unwrap_or(0);
        Some(endpoints[counter % endpoints.len()])
    }

    /// Whether `service` has been balanced.
    pub fn has(&self, service: &str) -> bool {
        self.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(service)
    }

    /// Forgets services for which `keep` is false, so removed services do not accumulate.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        next.retain(|name, _| keep(name));
    }

    /// Number of services with a rotation.
    pub fn len(&self) -> usize {
        self.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 8080)))
            .collect()
    }

    #[test]
    fn rotates_through_every_endpoint_per_service() {
        let lb = RoundRobin::new();
        let eps = addrs(3);
        let picks: Vec<_> = (0..6).filter_map(|_| lb.pick("ns/a", &eps)).collect();
        assert_eq!(picks, [eps[0], eps[1], eps[2], eps[0], eps[1], eps[2]]);
        // Another service has its own rotation.
        assert_eq!(lb.pick("ns/b", &eps), Some(eps[0]));
    }

    #[test]
    fn survives_endpoint_changes_and_empty_lists() {
        let lb = RoundRobin::new();
        assert_eq!(lb.pick("ns/a", &[]), None);
        let three = addrs(3);
        assert_eq!(lb.pick("ns/a", &three), Some(three[0]));
        assert_eq!(lb.pick("ns/a", &three), Some(three[1]));
        let two = addrs(2);
        // Position 2 over a list of two wraps around instead of going out of range.
        assert_eq!(lb.pick("ns/a", &two), Some(two[0]));
        assert_eq!(lb.pick("ns/a", &two), Some(two[1]));
    }

    #[test]
    fn retain_forgets_removed_services() {
        let lb = RoundRobin::new();
        let eps = addrs(2);
        lb.pick("ns/a", &eps);
        lb.pick("ns/b", &eps);
        lb.retain(|name| name == "ns/b");
        assert_eq!(lb.len(), 1);
        assert_eq!(lb.pick("ns/b", &eps), Some(eps[1]));
        assert_eq!(lb.pick("ns/a", &eps), Some(eps[0]));
    }
}
