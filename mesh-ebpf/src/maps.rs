//! The maps shared with the agent (names, types and sizes from `mesh_common`) and the small
//! helpers every program uses on them.

use aya_ebpf::{
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, SockHash},
};
use mesh_common::{
    AddrKey, CidrKey, ClientKey, Counter, MAX_CGROUP_DEPTH, MAX_EXCLUDED_CIDRS, MAX_EXCLUDED_PORTS,
    MAX_INBOUND_ALLOW, MAX_INFLIGHT, MAX_LOCAL_POD_ADDRS, MAX_PODS, MAX_SOCKETS, NodeConfig,
    Origin, PodEntry, SockKey, SockState,
};

/// Where captured connections go; written by the agent, one entry.
#[map]
pub static CONFIG: Array<NodeConfig> = Array::with_max_entries(1, 0);

/// Enrolled pods, keyed by the id of the pod cgroup.
#[map]
pub static PODS: HashMap<u64, PodEntry> = HashMap::with_max_entries(MAX_PODS, 0);

/// Original destination per socket cookie, from `connect()` until ESTABLISHED.
#[map]
pub static ORIG_BY_COOKIE: LruHashMap<u64, Origin> = LruHashMap::with_max_entries(MAX_INFLIGHT, 0);

/// Original destination per client tuple, from ESTABLISHED until the client socket closes.
#[map]
pub static ORIG_BY_CLIENT: LruHashMap<ClientKey, Origin> =
    LruHashMap::with_max_entries(MAX_INFLIGHT, 0);

/// Destination networks never captured (IPv4 as `::ffff:a.b.c.d`, prefix + 96).
#[map]
pub static EXCLUDE_CIDRS: LpmTrie<CidrKey, u8> = LpmTrie::with_max_entries(MAX_EXCLUDED_CIDRS, 0);

/// Destination ports (host order) never captured.
#[map]
pub static EXCLUDE_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_EXCLUDED_PORTS, 0);

/// Source addresses a STRICT pod accepts plaintext connections from: every address of the
/// node's network namespace (IPv4 as `::ffff:a.b.c.d`).
#[map]
pub static INBOUND_ALLOW: HashMap<AddrKey, u8> = HashMap::with_max_entries(MAX_INBOUND_ALLOW, 0);

/// Same-node acceleration: local meshed sockets, keyed as their own side sees them. The agent
/// attaches `weft_sk_msg` to this map before any socket can enter it.
#[map]
pub static SOCKHASH: SockHash<SockKey> = SockHash::with_max_entries(MAX_SOCKETS, 0);

/// The keys present in `SOCKHASH` with each socket's send decision ([`mesh_common::sock_state`]):
/// redirecting to a key missing from the sockhash would drop the message, and a sockhash cannot
/// be asked cheaply whether it holds a key. LRU, so a socket whose close went unseen (its pod
/// was released meanwhile) cannot fill it.
#[map]
pub static SOCK_MIRROR: LruHashMap<SockKey, SockState> =
    LruHashMap::with_max_entries(MAX_SOCKETS, 0);

/// Addresses of the node's enrolled pods: the proxy's connections to them are accelerated.
#[map]
pub static LOCAL_PODS: HashMap<AddrKey, u8> = HashMap::with_max_entries(MAX_LOCAL_POD_ADDRS, 0);

/// Per-CPU decision counters, indexed by [`Counter`]; per-CPU because the BPF target has no
/// atomic add we could use here.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[inline(always)]
pub fn count(counter: Counter) {
    count_n(counter, 1);
}

#[inline(always)]
pub fn count_n(counter: Counter, n: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer comes from a successful lookup in a per-CPU array, so it points at
        // this CPU's slot, which no other program can touch concurrently.
        unsafe { *slot += n };
    }
}

#[inline(always)]
fn is_pod(cgroup_id: u64) -> bool {
    PODS.get_ptr(cgroup_id).is_some()
}

/// The enrolled pod cgroup of the calling task: its own cgroup, or the nearest enrolled ancestor
/// (containers run in sub-cgroups of the pod cgroup).
#[inline(always)]
pub fn current_pod() -> Option<u64> {
    // SAFETY: helper without arguments; valid in every program type that calls this.
    let own = unsafe { bpf_get_current_cgroup_id() };
    enrolled_ancestor(own, |level| {
        // SAFETY: plain helper call with a scalar argument.
        unsafe { bpf_get_current_ancestor_cgroup_id(level) }
    })
}

/// The nearest enrolled cgroup at or above `own`, where `ancestor(level)` is the id of the
/// ancestor at `level` (0 is the root; 0 past `own`'s level), as the kernel's
/// `*_ancestor_cgroup_id` helpers answer.
#[inline(always)]
pub fn enrolled_ancestor(own: u64, ancestor: impl Fn(i32) -> u64) -> Option<u64> {
    if is_pod(own) {
        return Some(own);
    }
    // Ancestor levels count from the root (0), so first find the own level (a cgroup deeper
    // than MAX_CGROUP_DEPTH gets the deepest levels searched), then walk up from its parent and
    // stop at the first match. Returning at once, rather than keeping the last match of a
    // downward walk, keeps LLVM from OR-ing the lookups' pointers together, which the verifier
    // refuses.
    let mut own_level = MAX_CGROUP_DEPTH as i32 + 1;
    let mut level = 1;
    while level <= MAX_CGROUP_DEPTH as i32 {
        let id = ancestor(level);
        if id == 0 || id == own {
            own_level = level;
            break;
        }
        level += 1;
    }
    let mut level = own_level - 1;
    while level >= 1 {
        let id = ancestor(level);
        if is_pod(id) {
            return Some(id);
        }
        level -= 1;
    }
    None
}

/// Whether the destination (IPv6 words in network order, IPv4 mapped) or port is excluded by
/// the agent's configuration.
#[inline(always)]
pub fn excluded_by_config(ip6: [u32; 4], port: u16) -> bool {
    if EXCLUDE_PORTS.get_ptr(port).is_some() {
        return true;
    }
    // SAFETY: `[u32; 4]` and `[u8; 16]` have the same size and every bit pattern is valid; the
    // words are already in network order, so the bytes come out in address order.
    let data: CidrKey = unsafe { core::mem::transmute::<[u32; 4], CidrKey>(ip6) };
    EXCLUDE_CIDRS
        .get(aya_ebpf::maps::lpm_trie::Key::new(128, data))
        .is_some()
}
