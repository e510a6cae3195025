//! The node's side of STRICT peer authentication: which source addresses count as "the node
//! itself" for the kernel's ingress program (`INBOUND_ALLOW`), and how to list them.
//!
//! A STRICT pod accepts plaintext connections only from its own node (the node proxy delivering
//! tunnelled traffic, kubelet probes) and from itself. The node is recognised by source address:
//! every address of the agent's network namespace, node IPs, pod gateways and the proxy's
//! `lo` address alike. A pod that spoofs one of them cannot complete a handshake, because the
//! reply is routed to the node, not back to the pod.

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context as _, bail};
use aya::maps::{HashMap, MapData, MapError};
use mesh_common::{AddrKey, MAX_INBOUND_ALLOW, maps};

use super::{loader::NodeMaps, tables};

/// Every address assigned in the calling thread's network namespace (`getifaddrs`), sorted and
/// without duplicates.
pub fn local_addresses() -> io::Result<Vec<IpAddr>> {
    let list = IfAddrs::get()?;
    let mut addrs = BTreeSet::new();
    let mut entry = list.0;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, alive until `list` drops.
        let ifa = unsafe { &*entry };
        // SAFETY: a non-null `ifa_addr` points at a sockaddr of the family it names.
        if let Some(ip) = unsafe { sockaddr_ip(ifa.ifa_addr) } {
            addrs.insert(ip);
        }
        entry = ifa.ifa_next;
    }
    Ok(addrs.into_iter().collect())
}

/// # Safety
/// `addr` is null or points at a valid sockaddr whose size matches its family.
unsafe fn sockaddr_ip(addr: *const libc::sockaddr) -> Option<IpAddr> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: per the contract, a non-null pointer names a valid sockaddr of its family.
    unsafe {
        match i32::from((*addr).sa_family) {
            libc::AF_INET => {
                let sin = &*addr.cast::<libc::sockaddr_in>();
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            }
            libc::AF_INET6 => {
                let sin6 = &*addr.cast::<libc::sockaddr_in6>();
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

/// The list getifaddrs allocated, freed on drop.
struct IfAddrs(*mut libc::ifaddrs);

impl IfAddrs {
    fn get() -> io::Result<Self> {
        let mut head = std::ptr::null_mut();
        // SAFETY: `head` is a valid out-pointer; on success the list is ours to free.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(IfAddrs(head))
    }
}

impl Drop for IfAddrs {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the list came from getifaddrs and is freed exactly once.
            unsafe { libc::freeifaddrs(self.0) };
        }
    }
}

/// The `INBOUND_ALLOW` key of an address: IPv6 as four network-order words, IPv4 mapped.
pub fn addr_key(ip: IpAddr) -> AddrKey {
    match ip {
        IpAddr::V4(v4) => tables::ip6_words(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => tables::ip6_words(v6),
    }
}

/// Makes `INBOUND_ALLOW` hold exactly `addrs`.
pub fn replace(maps: &mut NodeMaps, addrs: &[IpAddr]) -> anyhow::Result<()> {
    replace_set(
        &mut maps.inbound_allow,
        maps::INBOUND_ALLOW,
        MAX_INBOUND_ALLOW,
        addrs,
    )
}

/// Makes an address set (`INBOUND_ALLOW`, `LOCAL_PODS`) hold exactly `addrs`. New addresses go
/// in before stale ones come out, so an address in both sets is never missing.
pub fn replace_set(
    map: &mut HashMap<MapData, AddrKey, u8>,
    name: &str,
    max: u32,
    addrs: &[IpAddr],
) -> anyhow::Result<()> {
    let wanted: BTreeSet<AddrKey> = addrs.iter().map(|&ip| addr_key(ip)).collect();
    if wanted.len() > max as usize {
        bail!("{name}: {} addresses, at most {max} fit", wanted.len());
    }
    for key in &wanted {
        map.insert(key, 1, 0)
            .with_context(|| format!("filling {name}"))?;
    }
    let present = map
        .keys()
        .collect::<Result<Vec<_>, MapError>>()
        .with_context(|| format!("listing {name}"))?;
    for key in present.iter().filter(|k| !wanted.contains(*k)) {
        match map.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(e).with_context(|| format!("pruning {name}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_keys_are_mapped_and_in_network_order() {
        let key = addr_key("10.244.1.1".parse().expect("ip"));
        assert_eq!(
            mesh_common::as_v4(&key),
            Some(u32::from_ne_bytes([10, 244, 1, 1]))
        );
        let key6 = addr_key("fd00::1".parse().expect("ip"));
        assert_eq!(key6[0].to_ne_bytes(), [0xfd, 0, 0, 0]);
        assert_eq!(key6[3].to_ne_bytes(), [0, 0, 0, 1]);
        assert_eq!(mesh_common::as_v4(&key6), None);
    }

    /// Every process has a loopback interface in its namespace.
    #[test]
    fn local_addresses_include_loopback() -> io::Result<()> {
        let addrs = local_addresses()?;
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
        let mut sorted = addrs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, addrs);
        Ok(())
    }
}
