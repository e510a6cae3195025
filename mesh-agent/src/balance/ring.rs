//! Consistent hashing: a ring of points, each owned by an endpoint; a key belongs to the owner
//! of the first point at or after the key's position. Every endpoint owns many points spread
//! by a hash of its address, so shares are even, and adding or removing one endpoint only moves
//! the keys of its own points (about `1/n` of them).
//!
//! Point positions depend only on the endpoint addresses, never on their order or on the
//! process, so every agent maps a key to the same endpoint.

use std::net::{IpAddr, SocketAddr};

/// Points per endpoint: the standard deviation of an endpoint's share is about `1/sqrt(128)`,
/// 9 % of the share.
const POINTS_PER_ENDPOINT: usize = 128;
/// Past this many points (512 endpoints) each endpoint gets fewer, down to
/// [`MIN_POINTS_PER_ENDPOINT`], to keep the ring's memory bounded. Resizing a service across
/// that threshold moves more keys than `1/n`.
const MAX_POINTS: usize = 64 * 1024;
const MIN_POINTS_PER_ENDPOINT: usize = 16;

#[derive(Debug)]
pub(super) struct Ring {
    /// Sorted point positions.
    points: Box<[u64]>,
    /// `owners[i]`: index (into the balancer's endpoints) of the owner of `points[i]`.
    owners: Box<[u32]>,
}

impl Ring {
    pub(super) fn new(endpoints: &[SocketAddr]) -> Self {
        let per_endpoint = (MAX_POINTS / endpoints.len().max(1))
            .clamp(MIN_POINTS_PER_ENDPOINT, POINTS_PER_ENDPOINT);
        let mut points: Vec<(u64, SocketAddr, u32)> =
            Vec::with_capacity(endpoints.len() * per_endpoint);
        for (index, addr) in endpoints.iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            let base = fnv1a(&addr_bytes(addr));
            for replica in 0..per_endpoint as u64 {
                points.push((mix(base ^ replica.wrapping_mul(GOLDEN)), *addr, index));
            }
        }
        // Ties (astronomically rare) are broken by address, not by input order.
        points.sort_unstable_by_key(|&(position, addr, _)| (position, addr));
        Self {
            points: points.iter().map(|p| p.0).collect(),
            owners: points.iter().map(|p| p.2).collect(),
        }
    }

    /// The owner of `key`: the first owner clockwise from the key's position that `accept`
    /// takes, or the key's own owner when it takes none. `None`: empty ring.
    pub(super) fn lookup(&self, key: u64, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        let len = self.points.len();
        if len == 0 {
            return None;
        }
        let position = mix(key);
        let start = self.points.partition_point(|&p| p < position) % len;
        let owner = |i: usize| self.owners[i % len] as usize;
        (start..start + len)
            .map(owner)
            .find(|&o| accept(o))
            .or(Some(owner(start)))
    }
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// FNV-1a, 64 bits: a fixed, documented function, unlike std's hashers.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// MurmurHash3's 64-bit finalizer: spreads every input bit over the whole output, so nearby
/// keys (or poor caller hashes) land far apart on the ring.
pub(super) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn addr_bytes(addr: &SocketAddr) -> [u8; 18] {
    let mut bytes = [0; 18];
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    bytes[..16].copy_from_slice(&ip);
    bytes[16..].copy_from_slice(&addr.port().to_be_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 1, i], 8080)))
            .collect()
    }

    fn owner_addr(ring: &Ring, endpoints: &[SocketAddr], key: u64) -> SocketAddr {
        let owner = ring.lookup(key, |_| true).expect("non-empty ring");
        endpoints[owner]
    }

    #[test]
    fn adding_one_endpoint_to_ten_moves_about_an_eleventh_of_the_keys() {
        let ten = addrs(10);
        let eleven = addrs(11);
        let (before, after) = (Ring::new(&ten), Ring::new(&eleven));
        let mut moved = 0;
        for key in 0..10_000u64 {
            let (a, b) = (
                owner_addr(&before, &ten, key),
                owner_addr(&after, &eleven, key),
            );
            if a != b {
                moved += 1;
                // Keys only move to the new endpoint.
                assert_eq!(b, eleven[10], "key {key}");
            }
        }
        // 10,000 / 11 = 909; the newcomer's share varies by about 9 %.
        assert!((650..=1200).contains(&moved), "{moved} keys moved");
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_keys() {
        let ten = addrs(10);
        let nine: Vec<_> = ten.iter().copied().filter(|a| *a != ten[3]).collect();
        let (before, after) = (Ring::new(&ten), Ring::new(&nine));
        for key in 0..10_000u64 {
            let a = owner_addr(&before, &ten, key);
            if a != ten[3] {
                assert_eq!(owner_addr(&after, &nine, key), a, "key {key}");
            }
        }
    }

    #[test]
    fn shares_are_even_and_independent_of_order() {
        let mut endpoints = addrs(10);
        let ring = Ring::new(&endpoints);
        let mut counts = [0u32; 10];
        for key in 0..10_000u64 {
            counts[ring.lookup(key, |_| true).expect("owner")] += 1;
        }
        assert!(
            counts.iter().all(|&c| (600..=1400).contains(&c)),
            "{counts:?}"
        );

        let before: Vec<_> = (0..1000)
            .map(|k| owner_addr(&ring, &endpoints, k))
            .collect();
        endpoints.reverse();
        let reversed = Ring::new(&endpoints);
        let after: Vec<_> = (0..1000)
            .map(|k| owner_addr(&reversed, &endpoints, k))
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn lookup_skips_owners_not_accepted() {
        let endpoints = addrs(3);
        let ring = Ring::new(&endpoints);
        for key in 0..1000u64 {
            let first = ring.lookup(key, |_| true).expect("owner");
            let next = ring.lookup(key, |o| o != first).expect("owner");
            assert_ne!(next, first);
            // Nobody accepted: the key's own owner.
            assert_eq!(ring.lookup(key, |_| false), Some(first));
        }
        assert_eq!(Ring::new(&[]).lookup(1, |_| true), None);
    }

    #[test]
    fn hashes_are_fixed() {
        // Agents on different nodes (and releases) must agree.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(mix(0), 0);
        assert_ne!(mix(1), mix(2));
    }
}
