//! Userspace side of the node maps: the proxy configuration, the exclusion sets, enrolment
//! entries, and the read-only views (counters, entry counts).

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context as _, bail};
use aya::maps::{MapError, lpm_trie::Key};
use mesh_common::{CidrKey, Counter, NodeConfig, PodEntry, maps, node_flags, pod_flags};

use super::loader::NodeMaps;

/// Address of a destination as the kernel stores it: IPv4 in network order.
pub fn ip4_word(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// IPv6 address as four network-order words.
pub fn ip6_words(ip: Ipv6Addr) -> [u32; 4] {
    let o = ip.octets();
    [0, 4, 8, 12].map(|i| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
}

pub fn node_config(
    proxy_ip4: Ipv4Addr,
    proxy_ip6: Option<Ipv6Addr>,
    port: u16,
    fail_closed: bool,
    ready: bool,
) -> NodeConfig {
    let mut flags = 0;
    if fail_closed {
        flags |= node_flags::FAIL_CLOSED;
    }
    if ready {
        flags |= node_flags::READY;
    }
    NodeConfig {
        proxy_ip4: ip4_word(proxy_ip4),
        proxy_ip6: proxy_ip6.map(ip6_words).unwrap_or([0; 4]),
        proxy_port: u32::from(port),
        flags,
    }
}

pub fn write_config(maps: &mut NodeMaps, config: &NodeConfig) -> anyhow::Result<()> {
    maps.config.set(0, config, 0).context("writing CONFIG")
}

pub fn set_ready(maps: &mut NodeMaps, ready: bool) -> anyhow::Result<()> {
    set_flag(maps, node_flags::READY, ready)
}

/// Sets or clears one of [`node_flags`] in CONFIG, keeping the others.
pub fn set_flag(maps: &mut NodeMaps, flag: u32, on: bool) -> anyhow::Result<()> {
    let mut config = maps.config.get(&0, 0).context("reading CONFIG")?;
    if on {
        config.flags |= flag;
    } else {
        config.flags &= !flag;
    }
    write_config(maps, &config)
}

/// LPM key of a CIDR: IPv4 as `::ffff:a.b.c.d` with the prefix moved by 96, host bits cleared.
pub fn cidr_key(ip: IpAddr, prefix: u8) -> anyhow::Result<Key<CidrKey>> {
    let (octets, bits) = match ip {
        IpAddr::V4(v4) => {
            if prefix > 32 {
                bail!("excluded CIDR {ip}/{prefix}: an IPv4 prefix is at most 32");
            }
            (v4.to_ipv6_mapped().octets(), u32::from(prefix) + 96)
        }
        IpAddr::V6(v6) => {
            if prefix > 128 {
                bail!("excluded CIDR {ip}/{prefix}: an IPv6 prefix is at most 128");
            }
            (v6.octets(), u32::from(prefix))
        }
    };
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    let masked = u128::from_be_bytes(octets) & mask;
    Ok(Key::new(bits, masked.to_be_bytes()))
}

/// Makes the exclusion maps hold exactly the configured sets.
pub fn replace_exclusions(
    maps: &mut NodeMaps,
    cidrs: &[(IpAddr, u8)],
    ports: &[u16],
) -> anyhow::Result<()> {
    let wanted_cidrs = cidrs
        .iter()
        .map(|&(ip, prefix)| cidr_key(ip, prefix).map(|k| (k.prefix_len(), k.data())))
        .collect::<anyhow::Result<BTreeSet<_>>>()?;
    let present = maps
        .exclude_cidrs
        .keys()
        .collect::<Result<Vec<_>, MapError>>()
        .context("listing EXCLUDE_CIDRS")?;
    for key in present {
        if !wanted_cidrs.contains(&(key.prefix_len(), key.data())) {
            maps.exclude_cidrs
                .remove(&key)
                .context("pruning EXCLUDE_CIDRS")?;
        }
    }
    for &(prefix_len, data) in &wanted_cidrs {
        maps.exclude_cidrs
            .insert(&Key::new(prefix_len, data), 1, 0)
            .context("filling EXCLUDE_CIDRS")?;
    }

    let wanted_ports: BTreeSet<u16> = ports.iter().copied().collect();
    let present = maps
        .exclude_ports
        .keys()
        .collect::<Result<Vec<_>, MapError>>()
        .context("listing EXCLUDE_PORTS")?;
    for port in present {
        if !wanted_ports.contains(&port) {
            maps.exclude_ports
                .remove(&port)
                .context("pruning EXCLUDE_PORTS")?;
        }
    }
    for port in wanted_ports {
        maps.exclude_ports
            .insert(port, 1, 0)
            .context("filling EXCLUDE_PORTS")?;
    }
    Ok(())
}

/// Enrols a pod cgroup, or updates its mode (idempotent).
pub fn enrol(maps: &mut NodeMaps, cgroup_id: u64, strict: bool) -> anyhow::Result<()> {
    maps.pods
        .insert(cgroup_id, pod_entry(strict), 0)
        .with_context(|| format!("adding cgroup {cgroup_id} to PODS"))
}

pub fn pod_entry(strict: bool) -> PodEntry {
    PodEntry {
        flags: if strict { pod_flags::STRICT } else { 0 },
        _pad: 0,
    }
}

/// Withdraws a pod cgroup; a missing entry is fine.
pub fn withdraw(maps: &mut NodeMaps, cgroup_id: u64) -> anyhow::Result<()> {
    match maps.pods.remove(&cgroup_id) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing cgroup {cgroup_id} from PODS")),
    }
}

/// Removes every PODS entry whose cgroup is not in `keep` (left over from a crashed agent).
pub fn prune_pods(maps: &mut NodeMaps, keep: &BTreeSet<u64>) -> anyhow::Result<()> {
    let present = maps
        .pods
        .keys()
        .collect::<Result<Vec<_>, MapError>>()
        .context("listing PODS")?;
    for id in present.into_iter().filter(|id| !keep.contains(id)) {
        withdraw(maps, id)?;
    }
    Ok(())
}

pub fn counters(maps: &NodeMaps) -> anyhow::Result<Vec<(Counter, u64)>> {
    Counter::ALL
        .iter()
        .map(|&counter| {
            let per_cpu = maps
                .counters
                .get(&(counter as u32), 0)
                .with_context(|| format!("reading counter {}", counter.name()))?;
            Ok((
                counter,
                per_cpu.iter().copied().fold(0u64, u64::wrapping_add),
            ))
        })
        .collect()
}

pub fn entries(maps: &NodeMaps) -> anyhow::Result<Vec<(&'static str, usize)>> {
    let count = |keys: Result<usize, MapError>, name: &'static str| {
        keys.map(|n| (name, n))
            .with_context(|| format!("counting {name}"))
    };
    Ok(vec![
        count(
            maps.pods.keys().try_fold(0, |n, k| k.map(|_| n + 1)),
            maps::PODS,
        )?,
        count(
            maps.orig_by_cookie
                .keys()
                .try_fold(0, |n, k| k.map(|_| n + 1)),
            maps::ORIG_BY_COOKIE,
        )?,
        count(
            maps.orig_by_client
                .keys()
                .try_fold(0, |n, k| k.map(|_| n + 1)),
            maps::ORIG_BY_CLIENT,
        )?,
        count(
            maps.inbound_allow
                .keys()
                .try_fold(0, |n, k| k.map(|_| n + 1)),
            maps::INBOUND_ALLOW,
        )?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_cidrs_are_mapped_and_masked() {
        let key = cidr_key(IpAddr::V4(Ipv4Addr::new(10, 96, 3, 7)), 12).expect("valid");
        assert_eq!(key.prefix_len(), 108);
        let mut expected = [0u8; 16];
        expected[10] = 0xff;
        expected[11] = 0xff;
        expected[12] = 10;
        expected[13] = 96;
        assert_eq!(key.data(), expected);
    }

    #[test]
    fn ipv6_cidrs_keep_their_prefix() {
        let key = cidr_key("fd00::1".parse().expect("ip"), 8).expect("valid");
        assert_eq!(key.prefix_len(), 8);
        assert_eq!(key.data()[0], 0xfd);
        assert!(key.data()[1..].iter().all(|&b| b == 0));
        assert!(cidr_key("fd00::".parse().expect("ip"), 129).is_err());
        assert!(cidr_key("10.0.0.0".parse().expect("ip"), 33).is_err());
        assert_eq!(
            cidr_key("::".parse().expect("ip"), 0)
                .expect("valid")
                .prefix_len(),
            0
        );
    }

    #[test]
    fn config_words_are_in_network_order() {
        let cfg = node_config(Ipv4Addr::new(169, 254, 7, 1), None, 15001, true, false);
        assert_eq!(cfg.proxy_ip4.to_ne_bytes(), [169, 254, 7, 1]);
        assert_eq!(cfg.proxy_port, 15001);
        assert_eq!(cfg.flags, node_flags::FAIL_CLOSED);
        assert_eq!(cfg.proxy_ip6, [0; 4]);
        let v6 = node_config(
            Ipv4Addr::LOCALHOST,
            Some("fd00::7".parse().expect("ip")),
            1,
            false,
            true,
        );
        assert_eq!(v6.proxy_ip6[0].to_ne_bytes(), [0xfd, 0, 0, 0]);
        assert_eq!(v6.proxy_ip6[3].to_ne_bytes(), [0, 0, 0, 7]);
        assert_eq!(v6.flags, node_flags::READY);
        assert_eq!(
            mesh_common::as_v4(&ip6_words(Ipv4Addr::new(10, 96, 0, 10).to_ipv6_mapped())),
            Some(ip4_word(Ipv4Addr::new(10, 96, 0, 10)))
        );
    }
}
