//! `sockops` and `cgroup/sock_release` on pod cgroups: the lifetime of a captured connection's
//! record. At `connect()` the record is keyed by socket cookie; once the connection is
//! established it moves to the client tuple, the key the proxy can compute from its accepted
//! socket; it is deleted when the client socket reaches TCP_CLOSE. `sock_release` removes cookie
//! records of connects that failed before TCP sent anything (no sockops callback fires for those).
//!
//! The same callbacks put local meshed sockets into the acceleration map (`sockmap`): the pod's
//! captured socket, the server pod's accepted socket whose peer is the proxy, and, from
//! `weft_proxy_sockops` on the proxy's cgroup, the proxy's own two ends.

use core::{
    ffi::c_void,
    ptr::{addr_of, read_volatile},
};

use aya_ebpf::{
    bindings::{
        BPF_ANY, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_RTO_CB_FLAG, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
        BPF_SOCK_OPS_TCP_CONNECT_CB, BPF_TCP_CLOSE,
    },
    helpers::bpf_get_socket_cookie,
    macros::{cgroup_sock, sock_ops},
    programs::{SockContext, SockOpsContext},
};
use mesh_common::{ClientKey, as_v4, v4_mapped};

use crate::{
    connect::AF_INET,
    maps::{ORIG_BY_CLIENT, ORIG_BY_COOKIE},
    sockmap,
};

const IPPROTO_TCP: u32 = 6;

#[sock_ops]
pub fn weft_sockops(ctx: SockOpsContext) -> u32 {
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => watch_if_captured(&ctx),
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => {
            if on_established(&ctx) {
                sockmap::accelerate(&ctx, sockmap::sockops_key(&ctx));
            }
        }
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB => sockmap::accelerate_if_peer(&ctx),
        // args[1] is the new state.
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == BPF_TCP_CLOSE => {
            on_close(&ctx);
            sockmap::forget(&ctx);
        }
        _ => {}
    }
    1
}

/// On the proxy's cgroup: only same-node acceleration (the proxy's sockets carry no records).
#[sock_ops]
pub fn weft_proxy_sockops(ctx: SockOpsContext) -> u32 {
    match ctx.op() {
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => sockmap::accelerate_if_local_pod(&ctx),
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB => sockmap::accelerate_if_peer(&ctx),
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == BPF_TCP_CLOSE => sockmap::forget(&ctx),
        _ => {}
    }
    1
}

#[inline(always)]
fn cookie_of(ctx: &SockOpsContext) -> u64 {
    // SAFETY: the sockops context is a valid argument for this helper.
    unsafe { bpf_get_socket_cookie(ctx.ops.cast::<c_void>()) }
}

/// Fires before the SYN. Asking for state and RTO callbacks here (rather than at ESTABLISHED)
/// lets refused and timed-out connects clean up too.
#[inline(always)]
fn watch_if_captured(ctx: &SockOpsContext) {
    if ORIG_BY_COOKIE.get_ptr(cookie_of(ctx)).is_none() {
        return;
    }
    // The helper replaces the whole flag word, so keep what is already set.
    let flags = ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTO_CB_FLAG;
    let _ = ctx.set_cb_flags(flags as i32);
}

/// Moves a captured connection's record to its client tuple; false when it was not captured.
#[inline(always)]
fn on_established(ctx: &SockOpsContext) -> bool {
    let cookie = cookie_of(ctx);
    let Some(origin) = ORIG_BY_COOKIE.get_ptr(cookie) else {
        return false;
    };
    // SAFETY: the pointer comes from a successful lookup; the value is copied out at once.
    let origin = unsafe { *origin };
    // A failed insert leaves the proxy without an answer for this peer, which it must treat
    // as an unattributed connection; nothing better can be done from here.
    let _ = ORIG_BY_CLIENT.insert(client_key(ctx), origin, BPF_ANY as u64);
    let _ = ORIG_BY_COOKIE.remove(cookie);
    true
}

#[inline(always)]
fn on_close(ctx: &SockOpsContext) {
    let _ = ORIG_BY_CLIENT.remove(client_key(ctx));
    // Connects that never established (refused, timed out) still hold their cookie record.
    let _ = ORIG_BY_COOKIE.remove(cookie_of(ctx));
}

/// The client's (address, port) as the proxy sees its peer: IPv4 (also from v4-mapped IPv6
/// sockets) as `::ffff:a.b.c.d`, port in host order.
#[inline(always)]
fn client_key(ctx: &SockOpsContext) -> ClientKey {
    let ops = ctx.ops;
    // SAFETY: `ops` is the kernel's context pointer. Every `local_ip6` word gets its own 4-byte
    // load: copying the array makes LLVM derive a modified context pointer the verifier refuses.
    let (family, local_ip4, local_ip6, port) = unsafe {
        (
            read_volatile(addr_of!((*ops).family)),
            read_volatile(addr_of!((*ops).local_ip4)),
            [
                read_volatile(addr_of!((*ops).local_ip6[0])),
                read_volatile(addr_of!((*ops).local_ip6[1])),
                read_volatile(addr_of!((*ops).local_ip6[2])),
                read_volatile(addr_of!((*ops).local_ip6[3])),
            ],
            read_volatile(addr_of!((*ops).local_port)),
        )
    };
    let ip6 = if family == u32::from(AF_INET) || as_v4(&local_ip6).is_some() {
        v4_mapped(local_ip4)
    } else {
        local_ip6
    };
    ClientKey { ip6, port }
}

#[cgroup_sock(sock_release)]
pub fn weft_sock_release(ctx: SockContext) -> i32 {
    // SAFETY: `ctx.sock` is the kernel's context pointer; `protocol` is a readable 4-byte field.
    let protocol = unsafe { read_volatile(addr_of!((*ctx.sock).protocol)) };
    if protocol == IPPROTO_TCP {
        // SAFETY: the cgroup sock context is a valid argument for this helper.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast::<c_void>()) };
        let _ = ORIG_BY_COOKIE.remove(cookie);
    }
    1
}
