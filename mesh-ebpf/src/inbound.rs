//! `cgroup_skb/ingress` on pod cgroups: STRICT peer authentication for plaintext TCP. A
//! connection attempt (SYN without ACK) into a STRICT pod is dropped, and counted, unless it
//! comes from the node itself (`INBOUND_ALLOW`: every address of the node's network namespace,
//! which covers the node proxy delivering tunnelled traffic and kubelet probes) or from the pod
//! itself (source equals destination, or loopback).
//!
//! Stateless on purpose: replies to the pod's own connections (SYN+ACK) and every segment of an
//! established flow pass, so nothing has to be tracked. UDP and other protocols pass. IPv6 is
//! inspected only when the TCP header follows the fixed header directly; a SYN behind extension
//! headers passes.
//!
//! The program runs for sockets of the pod cgroup and its sub-cgroups (it is attached to the pod
//! cgroup with the connect programs). The pod is found from the receiving socket's cgroup
//! (`bpf_skb_cgroup_id`, walking ancestors like the connect programs), not from the calling
//! task: ingress runs in softirq, where the current task is whoever was interrupted.

use aya_ebpf::{
    helpers::{bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use mesh_common::{AddrKey, Counter, as_v4, pod_flags, v4_mapped};

use crate::maps::{INBOUND_ALLOW, PODS, count, enrolled_ancestor};

/// Return codes of cgroup_skb programs.
const PASS: i32 = 1;
const DROP: i32 = 0;

const IPPROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// Offset of the flags byte in the TCP header.
const TCP_FLAGS: usize = 13;
const IPV6_HEADER_LEN: usize = 40;

/// Source and destination of a connection attempt, IPv4 mapped, network-order words.
struct Attempt {
    src: AddrKey,
    dst: AddrKey,
}

#[cgroup_skb(ingress)]
pub fn weft_ingress(ctx: SkBuffContext) -> i32 {
    match connection_attempt(&ctx) {
        Some(attempt) if must_drop(&ctx, &attempt) => {
            count(Counter::DroppedPlaintext);
            DROP
        }
        _ => PASS,
    }
}

/// The addresses of a TCP segment with SYN set and ACK clear; `None` for anything else (and for
/// packets too short to tell, which TCP itself will discard). At ingress the data starts at the
/// network header.
#[inline(always)]
fn connection_attempt(ctx: &SkBuffContext) -> Option<Attempt> {
    let first: u8 = ctx.load(0).ok()?;
    let (tcp, src, dst) = match first >> 4 {
        4 => {
            if ctx.load::<u8>(9).ok()? != IPPROTO_TCP {
                return None;
            }
            let src: u32 = ctx.load(12).ok()?;
            let dst: u32 = ctx.load(16).ok()?;
            let ihl = usize::from(first & 0x0f) * 4;
            (ihl, v4_mapped(src), v4_mapped(dst))
        }
        6 => {
            // Next header: only TCP directly after the fixed header is inspected.
            if ctx.load::<u8>(6).ok()? != IPPROTO_TCP {
                return None;
            }
            let src: AddrKey = ctx.load(8).ok()?;
            let dst: AddrKey = ctx.load(24).ok()?;
            (IPV6_HEADER_LEN, src, dst)
        }
        _ => return None,
    };
    let flags: u8 = ctx.load(tcp + TCP_FLAGS).ok()?;
    if flags & TCP_SYN == 0 || flags & TCP_ACK != 0 {
        return None;
    }
    Some(Attempt { src, dst })
}

/// Cheap address checks first: most SYNs into a STRICT pod come from the node proxy.
#[inline(always)]
fn must_drop(ctx: &SkBuffContext, attempt: &Attempt) -> bool {
    if attempt.src == attempt.dst || is_loopback(&attempt.src) {
        return false;
    }
    if INBOUND_ALLOW.get_ptr(attempt.src).is_some() {
        return false;
    }
    let Some(pod) = socket_pod(ctx) else {
        return false;
    };
    match PODS.get_ptr(pod) {
        Some(entry) => {
            // SAFETY: the pointer comes from a successful lookup; the field is read at once.
            let flags = unsafe { (*entry).flags };
            flags & pod_flags::STRICT != 0
        }
        None => false,
    }
}

/// The enrolled pod cgroup of the receiving socket (its own cgroup or the nearest enrolled
/// ancestor). The kernel sets the skb's socket to the receiver while the program runs.
#[inline(always)]
fn socket_pod(ctx: &SkBuffContext) -> Option<u64> {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the program's context pointer, a valid argument for both helpers.
    let own = unsafe { bpf_skb_cgroup_id(skb) };
    if own == 0 {
        return None;
    }
    enrolled_ancestor(own, |level| {
        // SAFETY: as above; the level is a plain scalar.
        unsafe { bpf_skb_ancestor_cgroup_id(skb, level) }
    })
}

/// 127.0.0.0/8 or ::1.
#[inline(always)]
fn is_loopback(ip6: &AddrKey) -> bool {
    match as_v4(ip6) {
        // The first address byte is the lowest-addressed byte of the network-order word.
        Some(ip4) => ip4.to_ne_bytes()[0] == 127,
        None => ip6[0] | ip6[1] | ip6[2] == 0 && ip6[3] == u32::to_be(1),
    }
}
