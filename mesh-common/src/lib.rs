//! Types shared by weft's kernel programs (`mesh-ebpf`) and the node agent (`mesh-agent`).
//!
//! Everything here crosses the user/kernel boundary through BPF maps or `getsockopt`, so each
//! struct is `#[repr(C)]` with explicit padding and a fixed size; a layout change must bump
//! [`LAYOUT_VERSION`], because pinned maps outlive the agent that created them.
#![no_std]

/// Version of the map layouts below. Pinned maps live under `<pin dir>/v<LAYOUT_VERSION>/`, so an
/// agent with a different layout never reuses maps it cannot read.
pub const LAYOUT_VERSION: u32 = 4;

/// Default TCP port of the node proxy's outbound listener (captured connections land here).
pub const OUTBOUND_PORT: u16 = 15001;
/// Default node-local address of the proxy: a /32 on the node's `lo`, reachable from every pod
/// through its default route, identical on every node.
pub const PROXY_IPV4: [u8; 4] = [169, 254, 7, 1];

/// `getsockopt(SOL_IP | SOL_IPV6, SO_ORIGINAL_DST)`, as in netfilter: the answer is a
/// `sockaddr_in` (SOL_IP) or `sockaddr_in6` (SOL_IPV6) with the destination the client dialled.
pub const SO_ORIGINAL_DST: i32 = 80;
pub const SOL_IP: i32 = 0;
pub const SOL_IPV6: i32 = 41;
/// weft's private `getsockopt` level ("mesh" in ASCII). With [`WEFT_SO_ORIGIN`] it returns the
/// whole [`Origin`] record of an accepted proxy socket: destination and source attestation.
pub const SOL_WEFT: i32 = 0x6d65_7368;
pub const WEFT_SO_ORIGIN: i32 = 1;

/// Cgroup levels the connect programs walk up from the calling task to find its pod cgroup
/// (containers live in sub-cgroups of the pod cgroup).
pub const MAX_CGROUP_DEPTH: u32 = 16;

/// Sizes of the per-node maps.
pub const MAX_PODS: u32 = 4096;
pub const MAX_INFLIGHT: u32 = 65_536;
pub const MAX_EXCLUDED_CIDRS: u32 = 256;
pub const MAX_EXCLUDED_PORTS: u32 = 256;
/// Room for every address of the node's network namespace (one link-local address per pod veth
/// included).
pub const MAX_INBOUND_ALLOW: u32 = 4096;
/// Sockets in the same-node acceleration map (`SOCKHASH`) and its mirror (`SOCK_MIRROR`).
pub const MAX_SOCKETS: u32 = 65_536;
/// Addresses of the node's enrolled pods (`LOCAL_PODS`); a pod may have an IPv4 and an IPv6.
pub const MAX_LOCAL_POD_ADDRS: u32 = 2 * MAX_PODS;

/// Flags in [`NodeConfig::flags`].
pub mod node_flags {
    /// The proxy listens and accepts: capture connections. Cleared when it stops.
    pub const READY: u32 = 1;
    /// While not ready, refuse connections (EPERM) instead of letting them through.
    pub const FAIL_CLOSED: u32 = 2;
    /// Same-node acceleration: new local meshed connections enter `SOCKHASH`, and their data
    /// skips the TCP/IP stack. Clearing it stops new entries; sockets already in keep theirs.
    pub const SOCKMAP: u32 = 4;
}

/// Flags in [`PodEntry::flags`].
pub mod pod_flags {
    /// STRICT peer authentication: plaintext TCP connection attempts into the pod are dropped,
    /// except from the node itself (`INBOUND_ALLOW`) and from the pod itself.
    pub const STRICT: u32 = 1;
}

/// The single entry of the `CONFIG` array map: where to send captured connections.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// Proxy IPv4 address, network byte order (same representation as `bpf_sock_addr.user_ip4`).
    pub proxy_ip4: u32,
    /// Proxy IPv6 address, each word in network byte order; all zero when the node has none,
    /// in which case native IPv6 destinations are not captured.
    pub proxy_ip6: [u32; 4],
    /// Outbound listener port, host byte order.
    pub proxy_port: u32,
    /// [`node_flags`].
    pub flags: u32,
}

/// Entry of the `PODS` hash map, keyed by the pod cgroup's id (the inode of its cgroup v2
/// directory). Its presence is what makes a pod's sockets capturable.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodEntry {
    /// [`pod_flags`].
    pub flags: u32,
    pub _pad: u32,
}

/// What the kernel knows about one captured connection: recorded by `connect4`/`connect6` (keyed
/// by socket cookie), moved to the client-tuple map at ESTABLISHED, returned to the proxy by
/// `getsockopt(SOL_WEFT, WEFT_SO_ORIGIN)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// Original destination address. IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`); each word in
    /// network byte order.
    pub dst_ip6: [u32; 4],
    /// Original destination port, host byte order.
    pub dst_port: u16,
    /// Address family of the client socket (`AF_INET` = 2, `AF_INET6` = 10).
    pub family: u16,
    pub _pad: u32,
    /// Cgroup id of the pod the connecting task belongs to (the `PODS` key that matched).
    pub pod_cgroup_id: u64,
    /// Network namespace cookie of the connecting socket.
    pub netns_cookie: u64,
}

/// Key of the `ORIG_BY_CLIENT` map: the client's address and port as the proxy sees the peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// Client address, IPv4-mapped for IPv4; each word in network byte order.
    pub ip6: [u32; 4],
    /// Client port, host byte order.
    pub port: u32,
}

/// Key of `SOCKHASH` and `SOCK_MIRROR`: one TCP socket as its own side sees it. The peer of a
/// local connection has the same key with local and remote swapped ([`SockKey::peer`]). There is
/// no network-namespace component: each node agent has its own maps and only inserts sockets of
/// its own pods and proxy, whose tuples are unique on the node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockKey {
    /// IPv4 as `::ffff:a.b.c.d`; each word in network byte order.
    pub local_ip6: [u32; 4],
    pub remote_ip6: [u32; 4],
    /// Host byte order.
    pub local_port: u32,
    pub remote_port: u32,
}

impl SockKey {
    /// The key of the socket at the other end of this connection.
    pub const fn peer(&self) -> SockKey {
        SockKey {
            local_ip6: self.remote_ip6,
            remote_ip6: self.local_ip6,
            local_port: self.remote_port,
            remote_port: self.local_port,
        }
    }
}

/// Values of `SOCK_MIRROR`: what the socket's sends do, and how far it is ahead of its peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockState {
    /// One of [`sock_state`].
    pub state: u32,
    /// Bytes redirected since the peer last sent anything (saturating).
    pub unanswered: u32,
}

/// A redirected send is charged to the receiving socket without regard to its receive window,
/// so a reader slower than its writer would let the queue grow until the kernel's TCP memory
/// limit (and the writer's next send fails with ENOMEM). A socket that redirects this many
/// bytes without a word from its peer is a one-way stream: it falls back to TCP, whose flow
/// control bounds the queue. Request/response traffic, where the peer answers, stays
/// accelerated. 4 MiB is the default maximum of a TCP send buffer (`tcp_wmem`).
pub const SOCKMAP_UNANSWERED_MAX: u32 = 4 << 20;

/// States of [`SockState::state`]. The decision is taken at the first send and only ever moves
/// to [`sock_state::PASS`]: bytes redirected earlier sit in the receiver's socket queue, which
/// it reads before its TCP queue, so a switch to TCP keeps the byte order, and a switch back
/// would not.
pub mod sock_state {
    /// In the map, no data sent yet.
    pub const UNDECIDED: u32 = 0;
    /// Sends go straight into the peer socket's receive queue.
    pub const REDIRECT: u32 = 1;
    /// Sends take the TCP path (the peer was not accelerated, a redirect failed, or the socket
    /// sent [`super::SOCKMAP_UNANSWERED_MAX`] bytes without an answer).
    pub const PASS: u32 = 2;
}

/// Key of the `INBOUND_ALLOW` hash map: an IPv6 address, IPv4 as `::ffff:a.b.c.d`, each word in
/// network byte order.
pub type AddrKey = [u32; 4];

/// Key of the `EXCLUDE_CIDRS` LPM trie: an IPv6 address (IPv4 as `::ffff:a.b.c.d`, prefix + 96).
pub type CidrKey = [u8; 16];

/// Indexes of the per-CPU `COUNTERS` array: what the connect programs decided, and what the
/// ingress program dropped.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Redirected to the node proxy.
    Captured = 0,
    /// The socket's cgroup is not (or no longer) an enrolled pod: passed untouched.
    PassedNotEnrolled = 1,
    /// Destination in the exclusion set (or a family the node proxy does not serve): untouched.
    PassedExcluded = 2,
    /// Proxy not ready, fail-open: passed untouched.
    PassedNotReady = 3,
    /// Proxy not ready, fail-closed: the connect was refused.
    RejectedNotReady = 4,
    /// A map update or helper failed; the connection was passed untouched.
    Errors = 5,
    /// A plaintext TCP SYN into a STRICT pod from neither the node nor the pod itself: dropped
    /// (each retransmitted SYN counts again).
    DroppedPlaintext = 6,
    /// Sockets that entered the same-node acceleration map.
    SockmapSockets = 7,
    /// Messages (one per send, or per chunk of a large send) redirected to the peer socket.
    SockmapRedirected = 8,
    /// Bytes of those messages.
    SockmapRedirectedBytes = 9,
    /// Messages of accelerated sockets that took the TCP path: the peer was not in the map, or
    /// the socket fell back.
    SockmapPassed = 10,
    /// Sockets that fell back to TCP after [`SOCKMAP_UNANSWERED_MAX`] unanswered bytes.
    SockmapFallbacks = 11,
}

impl Counter {
    pub const COUNT: u32 = 12;
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Captured,
        Counter::PassedNotEnrolled,
        Counter::PassedExcluded,
        Counter::PassedNotReady,
        Counter::RejectedNotReady,
        Counter::Errors,
        Counter::DroppedPlaintext,
        Counter::SockmapSockets,
        Counter::SockmapRedirected,
        Counter::SockmapRedirectedBytes,
        Counter::SockmapPassed,
        Counter::SockmapFallbacks,
    ];

    /// Whether this counts same-node acceleration rather than a connection decision.
    pub const fn is_sockmap(self) -> bool {
        matches!(
            self,
            Counter::SockmapSockets
                | Counter::SockmapRedirected
                | Counter::SockmapRedirectedBytes
                | Counter::SockmapPassed
                | Counter::SockmapFallbacks
        )
    }

    /// Stable label used in metrics and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Captured => "captured",
            Counter::PassedNotEnrolled => "passed_not_enrolled",
            Counter::PassedExcluded => "passed_excluded",
            Counter::PassedNotReady => "passed_not_ready",
            Counter::RejectedNotReady => "rejected_not_ready",
            Counter::Errors => "errors",
            Counter::DroppedPlaintext => "dropped_plaintext",
            Counter::SockmapSockets => "sockmap_sockets",
            Counter::SockmapRedirected => "sockmap_redirected",
            Counter::SockmapRedirectedBytes => "sockmap_redirected_bytes",
            Counter::SockmapPassed => "sockmap_passed",
            Counter::SockmapFallbacks => "sockmap_fallbacks",
        }
    }
}

/// Names of the maps, shared so the loader pins exactly what the programs declare.
pub mod maps {
    pub const CONFIG: &str = "CONFIG";
    pub const PODS: &str = "PODS";
    pub const ORIG_BY_COOKIE: &str = "ORIG_BY_COOKIE";
    pub const ORIG_BY_CLIENT: &str = "ORIG_BY_CLIENT";
    pub const EXCLUDE_CIDRS: &str = "EXCLUDE_CIDRS";
    pub const EXCLUDE_PORTS: &str = "EXCLUDE_PORTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const INBOUND_ALLOW: &str = "INBOUND_ALLOW";
    pub const SOCKHASH: &str = "SOCKHASH";
    pub const SOCK_MIRROR: &str = "SOCK_MIRROR";
    pub const LOCAL_PODS: &str = "LOCAL_PODS";
    pub const ALL: [&str; 11] = [
        CONFIG,
        PODS,
        ORIG_BY_COOKIE,
        ORIG_BY_CLIENT,
        EXCLUDE_CIDRS,
        EXCLUDE_PORTS,
        COUNTERS,
        INBOUND_ALLOW,
        SOCKHASH,
        SOCK_MIRROR,
        LOCAL_PODS,
    ];
}

/// `::ffff:a.b.c.d` as four network-order words, from an IPv4 address in network order.
pub const fn v4_mapped(ip4_be: u32) -> [u32; 4] {
    [0, 0, u32::to_be(0xffff), ip4_be]
}

/// The IPv4 address (network order) inside an IPv4-mapped address, if it is one.
pub const fn as_v4(ip6: &[u32; 4]) -> Option<u32> {
    if ip6[0] == 0 && ip6[1] == 0 && ip6[2] == u32::to_be(0xffff) {
        Some(ip6[3])
    } else {
        None
    }
}

#[cfg(feature = "user")]
mod pod_impls {
    // SAFETY: plain-old-data: `#[repr(C)]`, integer fields only, explicit padding, no invalid
    // bit patterns.
    unsafe impl aya::Pod for super::NodeConfig {}
    unsafe impl aya::Pod for super::PodEntry {}
    unsafe impl aya::Pod for super::Origin {}
    unsafe impl aya::Pod for super::ClientKey {}
    unsafe impl aya::Pod for super::SockKey {}
    unsafe impl aya::Pod for super::SockState {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<NodeConfig>(), 28);
        assert_eq!(core::mem::size_of::<PodEntry>(), 8);
        assert_eq!(core::mem::size_of::<Origin>(), 40);
        assert_eq!(core::mem::size_of::<ClientKey>(), 20);
        assert_eq!(core::mem::size_of::<SockKey>(), 40);
        assert_eq!(core::mem::size_of::<SockState>(), 8);
    }

    #[test]
    fn peer_key_swaps_the_ends() {
        let key = SockKey {
            local_ip6: v4_mapped(u32::from_ne_bytes([10, 244, 1, 2])),
            remote_ip6: v4_mapped(u32::from_ne_bytes(PROXY_IPV4)),
            local_port: 40_000,
            remote_port: u32::from(OUTBOUND_PORT),
        };
        let peer = key.peer();
        assert_eq!(peer.local_ip6, key.remote_ip6);
        assert_eq!(peer.remote_port, 40_000);
        assert_eq!(peer.local_port, 15_001);
        assert_eq!(peer.peer(), key);
        assert_ne!(peer, key);
    }

    #[test]
    fn counters_and_maps_are_listed_once_each() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{}", c.name());
        }
        for (i, a) in maps::ALL.iter().enumerate() {
            assert!(!maps::ALL[i + 1..].contains(a), "{a} listed twice");
        }
        assert!(maps::ALL.contains(&maps::INBOUND_ALLOW));
    }

    #[test]
    fn v4_mapped_round_trips() {
        let ip = u32::from_ne_bytes([10, 96, 0, 10]);
        assert_eq!(as_v4(&v4_mapped(ip)), Some(ip));
        assert_eq!(as_v4(&[0, 0, 0, u32::to_be(1)]), None);
    }
}
