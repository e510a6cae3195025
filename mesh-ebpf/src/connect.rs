//! `cgroup/connect4` and `cgroup/connect6`: decide whether a pod's TCP `connect()` is captured,
//! and if so record the original destination under the socket cookie and point the socket at the
//! node proxy. Every decision after "is it TCP" is counted in `COUNTERS`.

use core::{
    ffi::c_void,
    ptr::{addr_of, addr_of_mut, read_volatile, write_volatile},
};

use aya_ebpf::{
    bindings::{BPF_ANY, bpf_sock_addr},
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use mesh_common::{Counter, NodeConfig, Origin, as_v4, node_flags, v4_mapped};

use crate::maps::{CONFIG, ORIG_BY_COOKIE, count, current_pod, excluded_by_config};

const IPPROTO_TCP: u32 = 6;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// Return codes of cgroup sock_addr programs.
const ALLOW: i32 = 1;
const REJECT: i32 = 0;

/// Where a captured socket must be sent.
enum Target {
    /// Rewrite the IPv4 address (`user_ip4`, or the last word of a v4-mapped `user_ip6`).
    V4(u32),
    /// Rewrite the whole native IPv6 address.
    V6([u32; 4]),
}

#[cgroup_sock_addr(connect4)]
pub fn weft_connect4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: `sa` is the kernel's context pointer; 4-byte reads of these fields are allowed.
    let (protocol, ip4, port) = unsafe {
        (
            read_volatile(addr_of!((*sa).protocol)),
            read_volatile(addr_of!((*sa).user_ip4)),
            read_volatile(addr_of!((*sa).user_port)),
        )
    };
    if protocol != IPPROTO_TCP {
        return ALLOW;
    }
    capture::<AF_INET>(&ctx, v4_mapped(ip4), port_from_ctx(port))
}

#[cgroup_sock_addr(connect6)]
pub fn weft_connect6(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: as above; each `user_ip6` word is read with its own 4-byte load, because the
    // verifier refuses wider loads of that field.
    let (protocol, ip6, port) = unsafe {
        (
            read_volatile(addr_of!((*sa).protocol)),
            [
                read_volatile(addr_of!((*sa).user_ip6[0])),
                read_volatile(addr_of!((*sa).user_ip6[1])),
                read_volatile(addr_of!((*sa).user_ip6[2])),
                read_volatile(addr_of!((*sa).user_ip6[3])),
            ],
            read_volatile(addr_of!((*sa).user_port)),
        )
    };
    if protocol != IPPROTO_TCP {
        return ALLOW;
    }
    capture::<AF_INET6>(&ctx, ip6, port_from_ctx(port))
}

/// `user_port` holds the network-order port in its low 16 bits.
#[inline(always)]
fn port_from_ctx(raw: u32) -> u16 {
    u16::from_be(raw as u16)
}

/// `FAMILY` is the program's own family (connect4: `AF_INET`, connect6: `AF_INET6`); it is a
/// constant so that each program only contains the context stores its attach type allows.
#[inline(always)]
fn capture<const FAMILY: u16>(ctx: &SockAddrContext, ip6: [u32; 4], port: u16) -> i32 {
    let Some(pod_cgroup_id) = current_pod() else {
        count(Counter::PassedNotEnrolled);
        return ALLOW;
    };
    let Some(cfg) = CONFIG.get(0) else {
        count(Counter::Errors);
        return ALLOW;
    };
    let Some(target) = target_for(cfg, ip6, port) else {
        count(Counter::PassedExcluded);
        return ALLOW;
    };
    if cfg.flags & node_flags::READY == 0 {
        if cfg.flags & node_flags::FAIL_CLOSED != 0 {
            count(Counter::RejectedNotReady);
            return REJECT;
        }
        count(Counter::PassedNotReady);
        return ALLOW;
    }

    let ctx_ptr = ctx.sock_addr.cast::<c_void>();
    // SAFETY: both helpers accept the sock_addr context they are given here.
    let (cookie, netns_cookie) = unsafe {
        (
            bpf_get_socket_cookie(ctx_ptr),
            bpf_get_netns_cookie(ctx_ptr),
        )
    };
    let origin = Origin {
        dst_ip6: ip6,
        dst_port: port,
        family: FAMILY,
        _pad: 0,
        pod_cgroup_id,
        netns_cookie,
    };
    // Never redirect without a record: the proxy could not tell where the client wanted to go.
    if ORIG_BY_COOKIE
        .insert(cookie, origin, BPF_ANY as u64)
        .is_err()
    {
        count(Counter::Errors);
        return ALLOW;
    }
    rewrite::<FAMILY>(ctx.sock_addr, &target, cfg.proxy_port as u16);
    count(Counter::Captured);
    ALLOW
}

/// The proxy address for this destination, or `None` when it must not be captured.
#[inline(always)]
fn target_for(cfg: &NodeConfig, ip6: [u32; 4], port: u16) -> Option<Target> {
    let proxy_port = cfg.proxy_port as u16;
    let target = match as_v4(&ip6) {
        Some(ip4) => {
            // 127.0.0.0/8: first address byte, which is the lowest-addressed byte of the word.
            if ip4.to_ne_bytes()[0] == 127 || (ip4 == cfg.proxy_ip4 && port == proxy_port) {
                return None;
            }
            Target::V4(cfg.proxy_ip4)
        }
        None => {
            let proxy6 = cfg.proxy_ip6;
            let no_proxy6 = proxy6[0] | proxy6[1] | proxy6[2] | proxy6[3] == 0;
            let loopback = ip6[0] | ip6[1] | ip6[2] == 0 && ip6[3] == u32::to_be(1);
            if no_proxy6 || loopback || (ip6 == proxy6 && port == proxy_port) {
                return None;
            }
            Target::V6(proxy6)
        }
    };
    if excluded_by_config(ip6, port) {
        return None;
    }
    Some(target)
}

/// Point the socket at the proxy. Each store is a separate 4-byte write, the only width the
/// verifier accepts for these fields.
#[inline(always)]
fn rewrite<const FAMILY: u16>(sa: *mut bpf_sock_addr, target: &Target, proxy_port: u16) {
    // SAFETY: `sa` is the kernel's context pointer; connect programs may write `user_ip4`,
    // `user_ip6` and `user_port` with 4-byte stores.
    unsafe {
        match target {
            // connect4 rewrites `user_ip4`; in connect6 the v4 address is the last word of a
            // v4-mapped destination.
            Target::V4(ip4) => {
                if FAMILY == AF_INET {
                    write_volatile(addr_of_mut!((*sa).user_ip4), *ip4);
                } else {
                    write_volatile(addr_of_mut!((*sa).user_ip6[3]), *ip4);
                }
            }
            // Only connect6 can see a native IPv6 destination; the constant test keeps the
            // `user_ip6` stores out of connect4, whose verifier would refuse them.
            Target::V6(ip6) if FAMILY == AF_INET6 => {
                write_volatile(addr_of_mut!((*sa).user_ip6[0]), ip6[0]);
                write_volatile(addr_of_mut!((*sa).user_ip6[1]), ip6[1]);
                write_volatile(addr_of_mut!((*sa).user_ip6[2]), ip6[2]);
                write_volatile(addr_of_mut!((*sa).user_ip6[3]), ip6[3]);
            }
            Target::V6(_) => return,
        }
        write_volatile(addr_of_mut!((*sa).user_port), u32::from(proxy_port.to_be()));
    }
}
