//! Same-node acceleration, the agent's side: attach `weft_sk_msg` to the node's `SOCKHASH` and
//! `weft_proxy_sockops` to the proxy's cgroup, keep `LOCAL_PODS` (the addresses of the node's
//! enrolled pods, whose connections from the proxy are accelerated) and count the map.
//!
//! Both links belong to this agent, like the getsockopt one: the proxy's sockets end with it, and
//! a socket keeps the sk_msg program it got when it entered the map, so pod sockets accelerated
//! before a restart stay accelerated after it. The SOCKMAP flag in CONFIG is set only once
//! sk_msg is attached: a socket that entered the map without it would never be redirected.

use std::{
    net::IpAddr,
    os::fd::{AsFd as _, BorrowedFd, OwnedFd},
};

use anyhow::Context as _;
use aya::maps::MapError;
use mesh_common::{MAX_LOCAL_POD_ADDRS, maps};

use super::{
    inbound,
    loader::{Loaded, NodeMaps, Prog},
    sys,
};

/// The links that make acceleration work; dropping them stops new sockets from entering.
pub struct AccelLinks {
    _sk_msg: OwnedFd,
    _proxy_sockops: OwnedFd,
}

/// Attaches sk_msg to SOCKHASH first (a socket takes the map's program when it enters), then
/// sockops to the proxy's cgroup.
pub fn attach(
    loaded: &Loaded,
    maps: &NodeMaps,
    proxy_cgroup: BorrowedFd<'_>,
) -> anyhow::Result<AccelLinks> {
    let sk_msg = sys::link_create(
        loaded.prog_fd(Prog::SkMsg)?,
        maps.sockhash.fd().as_fd(),
        Prog::SkMsg.attach_type(),
    )
    .with_context(|| format!("attaching sk_msg to {}", maps::SOCKHASH))?;
    let proxy_sockops = sys::link_create(
        loaded.prog_fd(Prog::ProxySockOps)?,
        proxy_cgroup,
        Prog::ProxySockOps.attach_type(),
    )
    .context("attaching sockops to the proxy cgroup")?;
    Ok(AccelLinks {
        _sk_msg: sk_msg,
        _proxy_sockops: proxy_sockops,
    })
}

/// Makes `LOCAL_PODS` hold exactly the addresses of the node's enrolled pods.
pub fn set_local_pods(maps: &mut NodeMaps, addrs: &[IpAddr]) -> anyhow::Result<()> {
    inbound::replace_set(
        &mut maps.local_pods,
        maps::LOCAL_PODS,
        MAX_LOCAL_POD_ADDRS,
        addrs,
    )
}

/// Sockets in SOCKHASH and keys in SOCK_MIRROR.
pub fn entries(maps: &NodeMaps) -> anyhow::Result<[(&'static str, usize); 3]> {
    let count =
        |keys: Result<usize, MapError>, name| keys.with_context(|| format!("counting {name}"));
    Ok([
        (
            maps::SOCKHASH,
            count(
                maps.sockhash.keys().try_fold(0, |n, k| k.map(|_| n + 1)),
                maps::SOCKHASH,
            )?,
        ),
        (
            maps::SOCK_MIRROR,
            count(
                maps.sock_mirror.keys().try_fold(0, |n, k| k.map(|_| n + 1)),
                maps::SOCK_MIRROR,
            )?,
        ),
        (
            maps::LOCAL_PODS,
            count(
                maps.local_pods.keys().try_fold(0, |n, k| k.map(|_| n + 1)),
                maps::LOCAL_PODS,
            )?,
        ),
    ])
}
