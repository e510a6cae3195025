//! `cgroup/getsockopt` on the proxy's cgroup: answers, for an accepted socket whose peer is a
//! captured client, `SO_ORIGINAL_DST` at `SOL_IP` (`sockaddr_in`) and `SOL_IPV6`
//! (`sockaddr_in6`), and weft's own `(SOL_WEFT, WEFT_SO_ORIGIN)` with the whole [`Origin`].
//! It runs after the kernel's handler; anything it does not recognise keeps the kernel's answer.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_unaligned, write_volatile};

use aya_ebpf::{bindings::bpf_sockopt, macros::cgroup_sockopt, programs::SockoptContext};
use mesh_common::{
    ClientKey, Origin, SO_ORIGINAL_DST, SOL_IP, SOL_IPV6, SOL_WEFT, WEFT_SO_ORIGIN, as_v4,
    v4_mapped,
};

use crate::{
    connect::{AF_INET, AF_INET6},
    maps::ORIG_BY_CLIENT,
};

/// `struct sockaddr_in`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrIn {
    family: u16,
    port_be: u16,
    addr_be: u32,
    zero: [u8; 8],
}

/// `struct sockaddr_in6`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrIn6 {
    family: u16,
    port_be: u16,
    flowinfo: u32,
    addr: [u32; 4],
    scope_id: u32,
}

/// getsockopt programs must return 1; 0 would turn the call into EPERM.
const PASS: i32 = 1;

#[cgroup_sockopt(getsockopt)]
pub fn weft_getsockopt(ctx: SockoptContext) -> i32 {
    let opt = ctx.sockopt;
    // SAFETY: `opt` is the kernel's context pointer; these fields are readable with their width.
    let (level, optname) = unsafe {
        (
            read_volatile(addr_of!((*opt).level)),
            read_volatile(addr_of!((*opt).optname)),
        )
    };
    let answered = match (level, optname) {
        (SOL_IP, SO_ORIGINAL_DST) | (SOL_IPV6, SO_ORIGINAL_DST) | (SOL_WEFT, WEFT_SO_ORIGIN) => {
            match peer_origin(opt) {
                Some(origin) => answer(opt, level, &origin),
                None => None,
            }
        }
        _ => None,
    };
    if let Some(len) = answered {
        // SAFETY: getsockopt programs may write `optlen` and `retval`. Two volatile 4-byte
        // stores, because LLVM merges plain adjacent stores into one 8-byte store the verifier
        // refuses.
        unsafe {
            write_volatile(addr_of_mut!((*opt).optlen), len);
            write_volatile(addr_of_mut!((*opt).retval), 0);
        }
    }
    PASS
}

/// The record of the accepted socket's peer, if it is a captured client.
#[inline(always)]
fn peer_origin(opt: *mut bpf_sockopt) -> Option<Origin> {
    // SAFETY: `sk` is a socket pointer the verifier tracks; its fields are read with 4-byte
    // loads. All of them are read unconditionally: reading only the family's address lets LLVM
    // merge the two loads into one with a computed offset, which the verifier refuses.
    let key = unsafe {
        let sk = read_volatile(addr_of!((*opt).__bindgen_anon_1.sk));
        if sk.is_null() {
            return None;
        }
        let family = read_volatile(addr_of!((*sk).family));
        let port = u32::from(u16::from_be(read_volatile(addr_of!((*sk).dst_port))));
        let ip4 = read_volatile(addr_of!((*sk).dst_ip4));
        let ip6 = [
            read_volatile(addr_of!((*sk).dst_ip6[0])),
            read_volatile(addr_of!((*sk).dst_ip6[1])),
            read_volatile(addr_of!((*sk).dst_ip6[2])),
            read_volatile(addr_of!((*sk).dst_ip6[3])),
        ];
        let ip6 = if family == u32::from(AF_INET) {
            v4_mapped(ip4)
        } else {
            ip6
        };
        ClientKey { ip6, port }
    };
    let origin = ORIG_BY_CLIENT.get_ptr(key)?;
    // SAFETY: the pointer comes from a successful lookup; the value is copied out at once.
    Some(unsafe { *origin })
}

/// Writes the answer for `level` into the option buffer and returns its length, or `None` when
/// the buffer is too short or the destination cannot be expressed at that level.
#[inline(always)]
fn answer(opt: *mut bpf_sockopt, level: i32, origin: &Origin) -> Option<i32> {
    // SAFETY: reading the buffer bounds from the context.
    let (optval, optval_end) = unsafe {
        (
            read_volatile(addr_of!((*opt).__bindgen_anon_2.optval)).cast::<u8>(),
            read_volatile(addr_of!((*opt).__bindgen_anon_3.optval_end)).cast::<u8>(),
        )
    };
    match level {
        SOL_IP => {
            let addr_be = as_v4(&origin.dst_ip6)?;
            let value = SockaddrIn {
                family: AF_INET,
                port_be: origin.dst_port.to_be(),
                addr_be,
                zero: [0; 8],
            };
            put(optval, optval_end, value)
        }
        SOL_IPV6 => {
            let value = SockaddrIn6 {
                family: AF_INET6,
                port_be: origin.dst_port.to_be(),
                flowinfo: 0,
                addr: origin.dst_ip6,
                scope_id: 0,
            };
            put(optval, optval_end, value)
        }
        _ => put(optval, optval_end, *origin),
    }
}

/// Copies `value` to the start of the option buffer if it fits.
#[inline(always)]
fn put<T: Copy>(optval: *mut u8, optval_end: *mut u8, value: T) -> Option<i32> {
    let len = core::mem::size_of::<T>();
    // The verifier only allows the store after this explicit bounds check against optval_end.
    if optval.wrapping_add(len) > optval_end {
        return None;
    }
    // SAFETY: the check above proves `len` bytes from `optval` lie inside the kernel's buffer.
    unsafe { write_unaligned(optval.cast::<T>(), value) };
    Some(len as i32)
}
