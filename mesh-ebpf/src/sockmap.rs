//! Same-node acceleration: the proxy's local hops skip the TCP/IP stack.
//!
//! A captured connection is two TCP connections on one kernel: the client pod's socket to the
//! proxy's accepted socket, and (when the destination is a pod of this node) the proxy's upstream
//! socket to the server pod's accepted socket. Both ends of each are put in `SOCKHASH` once
//! established, and `weft_sk_msg` (attached to that map) moves every send straight into the
//! peer socket's receive queue. Handshakes, FIN and RST still travel as TCP.
//!
//! Who enters the map (only while CONFIG has `SOCKMAP`):
//! - a pod's captured socket at ACTIVE_ESTABLISHED (its peer is always this node's proxy);
//! - the proxy's upstream socket at ACTIVE_ESTABLISHED when the destination is in `LOCAL_PODS`;
//! - any passive socket (proxy or pod) whose peer is already in the map: the active side
//!   always establishes first, so this is how "both ends are local and meshed" is known.
//!
//! `SOCK_MIRROR` lists the keys present (the sockhash itself cannot be probed from sk_msg) and
//! holds each socket's send decision, taken at its first send, which only ever moves from
//! redirect to TCP (the receiver reads its redirected bytes first, so that keeps the order).
//! A failed redirect never drops: the program always returns SK_PASS, which the kernel turns
//! into a redirect only when the helper succeeded.
//!
//! Backpressure: a redirected send is not bounded by the receiver's window, so a socket that
//! has redirected `SOCKMAP_UNANSWERED_MAX` bytes since its peer last sent anything (a one-way
//! stream, e.g. an upload to a slow reader) falls back to TCP for good; each send of the peer
//! resets the count, so request/response traffic stays accelerated.

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_F_INGRESS, BPF_SOCK_OPS_STATE_CB_FLAG, sk_msg_md},
    macros::sk_msg,
    programs::{SkMsgContext, SockOpsContext},
};
use mesh_common::{
    Counter, SOCKMAP_UNANSWERED_MAX, SockKey, SockState, as_v4, node_flags, sock_state, v4_mapped,
};

use crate::{
    connect::AF_INET,
    maps::{CONFIG, LOCAL_PODS, SOCK_MIRROR, SOCKHASH, count, count_n},
};

/// sk_msg verdict: let the message go (redirected if the helper succeeded).
const SK_PASS: u32 = 1;

/// The raw fields both context types expose, in their own representations.
struct RawTuple {
    family: u32,
    local_ip4: u32,
    remote_ip4: u32,
    local_ip6: [u32; 4],
    remote_ip6: [u32; 4],
    local_port: u32,
    /// Network order in the upper 16 bits, as both contexts report it.
    remote_port: u32,
}

impl RawTuple {
    /// IPv4 (also from v4-mapped IPv6 sockets) as `::ffff:a.b.c.d`, ports in host order.
    #[inline(always)]
    fn key(&self) -> SockKey {
        let v4 = self.family == u32::from(AF_INET) || as_v4(&self.local_ip6).is_some();
        let (local_ip6, remote_ip6) = if v4 {
            (v4_mapped(self.local_ip4), v4_mapped(self.remote_ip4))
        } else {
            (self.local_ip6, self.remote_ip6)
        };
        SockKey {
            local_ip6,
            remote_ip6,
            local_port: self.local_port,
            remote_port: u32::from_be(self.remote_port),
        }
    }
}

/// The socket's key. Every field gets its own 4-byte load: copying the arrays makes LLVM derive
/// a modified context pointer the verifier refuses.
#[inline(always)]
pub fn sockops_key(ctx: &SockOpsContext) -> SockKey {
    let ops = ctx.ops;
    // SAFETY: `ops` is the kernel's context pointer; these fields are readable with 4-byte loads.
    let raw = unsafe {
        RawTuple {
            family: read_volatile(addr_of!((*ops).family)),
            local_ip4: read_volatile(addr_of!((*ops).local_ip4)),
            remote_ip4: read_volatile(addr_of!((*ops).remote_ip4)),
            local_ip6: [
                read_volatile(addr_of!((*ops).local_ip6[0])),
                read_volatile(addr_of!((*ops).local_ip6[1])),
                read_volatile(addr_of!((*ops).local_ip6[2])),
                read_volatile(addr_of!((*ops).local_ip6[3])),
            ],
            remote_ip6: [
                read_volatile(addr_of!((*ops).remote_ip6[0])),
                read_volatile(addr_of!((*ops).remote_ip6[1])),
                read_volatile(addr_of!((*ops).remote_ip6[2])),
                read_volatile(addr_of!((*ops).remote_ip6[3])),
            ],
            local_port: read_volatile(addr_of!((*ops).local_port)),
            remote_port: read_volatile(addr_of!((*ops).remote_port)),
        }
    };
    raw.key()
}

#[inline(always)]
fn msg_key(msg: *mut sk_msg_md) -> SockKey {
    // SAFETY: `msg` is the kernel's context pointer; as above, one 4-byte load per field.
    let raw = unsafe {
        RawTuple {
            family: read_volatile(addr_of!((*msg).family)),
            local_ip4: read_volatile(addr_of!((*msg).local_ip4)),
            remote_ip4: read_volatile(addr_of!((*msg).remote_ip4)),
            local_ip6: [
                read_volatile(addr_of!((*msg).local_ip6[0])),
                read_volatile(addr_of!((*msg).local_ip6[1])),
                read_volatile(addr_of!((*msg).local_ip6[2])),
                read_volatile(addr_of!((*msg).local_ip6[3])),
            ],
            remote_ip6: [
                read_volatile(addr_of!((*msg).remote_ip6[0])),
                read_volatile(addr_of!((*msg).remote_ip6[1])),
                read_volatile(addr_of!((*msg).remote_ip6[2])),
                read_volatile(addr_of!((*msg).remote_ip6[3])),
            ],
            local_port: read_volatile(addr_of!((*msg).local_port)),
            remote_port: read_volatile(addr_of!((*msg).remote_port)),
        }
    };
    raw.key()
}

#[inline(always)]
fn enabled() -> bool {
    CONFIG
        .get(0)
        .is_some_and(|cfg| cfg.flags & node_flags::SOCKMAP != 0)
}

/// Puts the socket in `SOCKHASH` and its key in `SOCK_MIRROR`, and asks for the state callback
/// that takes the key out again at close.
#[inline(always)]
pub fn accelerate(ctx: &SockOpsContext, key: SockKey) {
    if !enabled() {
        return;
    }
    // SAFETY: `ops` is the live sockops context, the argument bpf_sock_hash_update expects.
    let ops = unsafe { &mut *ctx.ops };
    if SOCKHASH.update(key, ops, BPF_ANY as u64).is_err() {
        count(Counter::Errors);
        return;
    }
    // Written even over a stale entry: a new socket starts undecided.
    if SOCK_MIRROR
        .insert(key, SockState::default(), BPF_ANY as u64)
        .is_err()
    {
        count(Counter::Errors);
    }
    let flags = ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG;
    let _ = ctx.set_cb_flags(flags as i32);
    count(Counter::SockmapSockets);
}

/// Passive sockets join only when their peer (the active side, established first) is in.
#[inline(always)]
pub fn accelerate_if_peer(ctx: &SockOpsContext) {
    let key = sockops_key(ctx);
    if SOCK_MIRROR.get_ptr(key.peer()).is_some() {
        accelerate(ctx, key);
    }
}

/// The proxy's upstream connections to this node's enrolled pods.
#[inline(always)]
pub fn accelerate_if_local_pod(ctx: &SockOpsContext) {
    let key = sockops_key(ctx);
    if LOCAL_PODS.get_ptr(key.remote_ip6).is_some() {
        accelerate(ctx, key);
    }
}

/// At TCP_CLOSE. The kernel removes the socket from `SOCKHASH` itself.
#[inline(always)]
pub fn forget(ctx: &SockOpsContext) {
    let _ = SOCK_MIRROR.remove(sockops_key(ctx));
}

#[sk_msg]
pub fn weft_sk_msg(ctx: SkMsgContext) -> u32 {
    let key = msg_key(ctx.msg);
    let Some(state) = SOCK_MIRROR.get_ptr_mut(key) else {
        // Evicted from the mirror: never redirect this socket again.
        count(Counter::SockmapPassed);
        return SK_PASS;
    };
    let size = ctx.size();
    let peer = key.peer();
    let peer_state = SOCK_MIRROR.get_ptr_mut(peer);
    if let Some(p) = peer_state {
        // The peer hears from this socket: its one-way count starts again. A plain store: a
        // race with the peer's own update only makes its count a send late.
        // SAFETY: the pointer comes from a successful lookup of a live entry.
        unsafe { (*p).unanswered = 0 };
    }
    // SAFETY: as above; sends on one socket run under its lock, so nothing else updates this
    // socket's decision meanwhile.
    let mine = unsafe { &mut *state };
    let unanswered = mine.unanswered.saturating_add(size);
    let redirect = match mine.state {
        sock_state::PASS => false,
        sock_state::UNDECIDED if peer_state.is_none() => false,
        _ if unanswered > SOCKMAP_UNANSWERED_MAX => {
            count(Counter::SockmapFallbacks);
            false
        }
        _ => SOCKHASH.redirect_msg(&ctx, peer, u64::from(BPF_F_INGRESS)) == i64::from(SK_PASS),
    };
    if redirect {
        mine.state = sock_state::REDIRECT;
        mine.unanswered = unanswered;
        count(Counter::SockmapRedirected);
        count_n(Counter::SockmapRedirectedBytes, u64::from(size));
    } else {
        mine.state = sock_state::PASS;
        count(Counter::SockmapPassed);
    }
    SK_PASS
}
