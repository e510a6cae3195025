//! weft's kernel programs.
//!
//! Pod cgroups get `connect4`/`connect6` (capture: rewrite the destination to the node proxy and
//! record the original), `sockops` (carry the record from the socket cookie to the client tuple
//! once the connection is established, and forget it when the socket closes), `sock_release`
//! (forget records of connects that never reached TCP) and `cgroup_skb/ingress` (STRICT pods:
//! drop plaintext connection attempts from outside the node). The proxy's cgroup gets
//! `getsockopt`, which answers `SO_ORIGINAL_DST` and weft's own origin query from the client-tuple
//! map. For same-node acceleration, `sockops` (pods) and `weft_proxy_sockops` (the proxy's
//! cgroup) put local meshed sockets into `SOCKHASH`, where `weft_sk_msg` hands each send straight
//! to the peer socket. The maps and their layouts come from `mesh-common`; the agent pins them
//! per node.
#![no_std]
#![no_main]

mod connect;
mod inbound;
mod maps;
mod sockmap;
mod sockops;
mod sockopt;

/// Kernel helpers used here (`bpf_get_current_ancestor_cgroup_id`, `bpf_get_netns_cookie`, ...)
/// are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    loop {}
}
