//! What the kernel knows about an accepted outbound socket: where the client was going and which
//! pod it is.
//!
//! The datapath's getsockopt hook, attached to the proxy's cgroup, answers two questions on an
//! accepted socket: `SO_ORIGINAL_DST` (the destination the client dialled, netfilter style) and
//! weft's own `WEFT_SO_ORIGIN` (the whole [`Origin`] record, including the pod cgroup id that
//! attests the source). A socket the datapath did not capture has no record; such a peer is
//! refused, never attributed by its source address.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use mesh_common::{Origin, SO_ORIGINAL_DST, SOL_IP, SOL_IPV6, SOL_WEFT, WEFT_SO_ORIGIN};
use tokio::net::TcpStream;

/// A captured connection as the kernel describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Captured {
    /// The destination the client dialled.
    pub original_dst: SocketAddr,
    pub origin: Origin,
}

/// Where the proxy learns about accepted sockets; the kernel in production, a fixed answer in
/// tests that run without the datapath.
pub trait OriginLookup: Send + Sync + 'static {
    /// `Ok(None)` when the socket has no origin record (it was not captured).
    fn lookup(&self, stream: &TcpStream) -> io::Result<Option<Captured>>;
}

/// Asks the datapath's getsockopt hook.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelOrigin;

impl OriginLookup for KernelOrigin {
    fn lookup(&self, stream: &TcpStream) -> io::Result<Option<Captured>> {
        let fd = stream.as_fd();
        let Some(origin) = origin_record(fd)? else {
            return Ok(None);
        };
        let recorded = origin_dst(&origin);
        // Both answers come from the same kernel entry; the record is authoritative, and
        // SO_ORIGINAL_DST could come from conntrack instead of the datapath if they differ.
        let v6_socket = stream.local_addr()?.is_ipv6();
        let original_dst = match original_dst(fd, v6_socket) {
            Ok(Some(dst)) if dst != recorded => {
                tracing::debug!(so_original_dst = %dst, origin_dst = %recorded,
                    "SO_ORIGINAL_DST disagrees with the origin record; using the record");
                recorded
            }
            _ => recorded,
        };
        Ok(Some(Captured {
            original_dst,
            origin,
        }))
    }
}

/// `getsockopt(SOL_WEFT, WEFT_SO_ORIGIN)`: the origin record of a captured socket.
pub fn origin_record(fd: BorrowedFd<'_>) -> io::Result<Option<Origin>> {
    let mut origin = MaybeUninit::<Origin>::zeroed();
    match getsockopt_raw(
        fd,
        SOL_WEFT,
        WEFT_SO_ORIGIN,
        origin.as_mut_ptr().cast(),
        size_of::<Origin>(),
    )? {
        // SAFETY: the buffer was zero-initialised and `Origin` is plain integers, so any
        // content (including a short answer) is a valid value.
        Some(len) if len == size_of::<Origin>() => Ok(Some(unsafe { origin.assume_init() })),
        Some(len) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "origin record of {len} bytes, expected {}",
                size_of::<Origin>()
            ),
        )),
        None => Ok(None),
    }
}

/// `getsockopt(SOL_IP/SOL_IPV6, SO_ORIGINAL_DST)`; IPv6 sockets (also dual-stack ones) ask at
/// the IPv6 level and get a `sockaddr_in6`.
pub fn original_dst(fd: BorrowedFd<'_>, v6_socket: bool) -> io::Result<Option<SocketAddr>> {
    if v6_socket {
        let mut sa = MaybeUninit::<libc::sockaddr_in6>::zeroed();
        let len = getsockopt_raw(
            fd,
            SOL_IPV6,
            SO_ORIGINAL_DST,
            sa.as_mut_ptr().cast(),
            size_of::<libc::sockaddr_in6>(),
        )?;
        // SAFETY: zero-initialised plain C struct; every bit pattern is valid.
        let sa = unsafe { sa.assume_init() };
        Ok(len.and_then(|_| sockaddr_in6_to_addr(&sa)))
    } else {
        let mut sa = MaybeUninit::<libc::sockaddr_in>::zeroed();
        let len = getsockopt_raw(
            fd,
            SOL_IP,
            SO_ORIGINAL_DST,
            sa.as_mut_ptr().cast(),
            size_of::<libc::sockaddr_in>(),
        )?;
        // SAFETY: zero-initialised plain C struct; every bit pattern is valid.
        let sa = unsafe { sa.assume_init() };
        Ok(len.and_then(|_| sockaddr_in_to_addr(&sa)))
    }
}

/// The destination stored in an origin record, IPv4 back in its plain form.
pub fn origin_dst(origin: &Origin) -> SocketAddr {
    let mut octets = [0u8; 16];
    for (chunk, word) in octets.chunks_exact_mut(4).zip(origin.dst_ip6) {
        // Each word holds four address bytes in network order, i.e. already in memory order.
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    let ip = IpAddr::V6(Ipv6Addr::from(octets)).to_canonical();
    SocketAddr::new(ip, origin.dst_port)
}

/// Runs getsockopt into `buf`; `Ok(None)` for the errors that mean "no record for this socket".
fn getsockopt_raw(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    buf: *mut libc::c_void,
    size: usize,
) -> io::Result<Option<usize>> {
    let mut len = libc::socklen_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "getsockopt buffer too large"))?;
    // SAFETY: `fd` is a live socket borrowed for the call; `buf` points to `size` writable
    // bytes owned by the caller and `len` tells the kernel that size.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, buf, &mut len) };
    if rc == 0 {
        return Ok(Some(len as usize));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // ENOENT: the hook has no entry for this peer. ENOPROTOOPT/EOPNOTSUPP: nothing answers
        // this level at all (no hook attached, no conntrack).
        Some(libc::ENOENT | libc::ENOPROTOOPT | libc::EOPNOTSUPP) => Ok(None),
        _ => Err(err),
    }
}

fn sockaddr_in_to_addr(sa: &libc::sockaddr_in) -> Option<SocketAddr> {
    if i32::from(sa.sin_family) != libc::AF_INET {
        return None;
    }
    let ip = Ipv4Addr::from(sa.sin_addr.s_addr.to_ne_bytes());
    Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sa.sin_port)))
}

fn sockaddr_in6_to_addr(sa: &libc::sockaddr_in6) -> Option<SocketAddr> {
    match i32::from(sa.sin6_family) {
        libc::AF_INET6 => {
            let ip = IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)).to_canonical();
            Some(SocketAddr::new(ip, u16::from_be(sa.sin6_port)))
        }
        // A hook may answer a dual-stack socket with a sockaddr_in.
        libc::AF_INET => {
            // SAFETY: sockaddr_in6 is larger than sockaddr_in and both start with the family;
            // the bytes were written by the kernel as a sockaddr_in.
            let sa4 = unsafe { &*(sa as *const libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
            sockaddr_in_to_addr(sa4)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_common::v4_mapped;

    #[test]
    fn origin_destination_decodes_v4_and_v6() {
        let origin = Origin {
            dst_ip6: v4_mapped(u32::from_ne_bytes([10, 96, 0, 10])),
            dst_port: 80,
            family: libc::AF_INET as u16,
            ..Origin::default()
        };
        assert_eq!(origin_dst(&origin), "10.96.0.10:80".parse().expect("addr"));

        let v6: Ipv6Addr = "fd00::a:1".parse().expect("ip");
        let o = v6.octets();
        let words = [0, 4, 8, 12].map(|i| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]));
        let origin = Origin {
            dst_ip6: words,
            dst_port: 443,
            ..Origin::default()
        };
        assert_eq!(
            origin_dst(&origin),
            "[fd00::a:1]:443".parse().expect("addr")
        );
    }

    #[test]
    fn sockaddrs_decode() {
        // SAFETY: plain C structs, zero is a valid value.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = 8080u16.to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes([10, 1, 2, 3]);
        assert_eq!(
            sockaddr_in_to_addr(&sa),
            Some("10.1.2.3:8080".parse().expect("addr"))
        );

        // SAFETY: as above.
        let mut sa6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sa6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa6.sin6_port = 80u16.to_be();
        sa6.sin6_addr.s6_addr = "::ffff:10.96.0.20"
            .parse::<Ipv6Addr>()
            .expect("ip")
            .octets();
        assert_eq!(
            sockaddr_in6_to_addr(&sa6),
            Some("10.96.0.20:80".parse().expect("addr"))
        );
    }

    #[tokio::test]
    async fn uncaptured_socket_has_no_record() -> io::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let _client = TcpStream::connect(listener.local_addr()?).await?;
        let (accepted, _) = listener.accept().await?;
        assert_eq!(KernelOrigin.lookup(&accepted)?, None);
        Ok(())
    }
}
