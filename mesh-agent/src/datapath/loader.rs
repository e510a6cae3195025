//! Loads the embedded kernel object with every map pinned in the node's pin directory, and
//! gives typed access to its programs and maps.
//!
//! The first agent of a node creates the maps; later ones (restart, upgrade) reopen the pins,
//! so enrolment, in-flight records and counters survive. Programs are always loaded fresh.

use std::os::fd::{AsFd as _, BorrowedFd};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, SockHash},
    programs::{CgroupSkb, CgroupSock, CgroupSockAddr, CgroupSockopt, SkMsg, SockOps},
};
use mesh_common::{
    AddrKey, CidrKey, ClientKey, NodeConfig, Origin, PodEntry, SockKey, SockState, maps,
};

use super::{pins::PinLayout, sys};

/// The kernel programs, compiled by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mesh-ebpf"));

/// The programs of the object and where each one is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prog {
    Connect4,
    Connect6,
    SockOps,
    SockRelease,
    Ingress,
    GetSockopt,
    /// Same-node acceleration on the proxy's cgroup.
    ProxySockOps,
    /// Attached to the SOCKHASH map, not to a cgroup.
    SkMsg,
}

impl Prog {
    /// Attached to every pod cgroup, in this order.
    pub const POD: [Prog; 5] = [
        Prog::Connect4,
        Prog::Connect6,
        Prog::SockOps,
        Prog::SockRelease,
        Prog::Ingress,
    ];
    /// Every program of the object, loaded at start.
    pub const ALL: [Prog; 8] = [
        Prog::Connect4,
        Prog::Connect6,
        Prog::SockOps,
        Prog::SockRelease,
        Prog::Ingress,
        Prog::GetSockopt,
        Prog::ProxySockOps,
        Prog::SkMsg,
    ];
    /// One per cgroup attach type weft uses: what a cgroup is asked about.
    pub const CGROUP_TYPES: [Prog; 6] = [
        Prog::Connect4,
        Prog::Connect6,
        Prog::SockOps,
        Prog::SockRelease,
        Prog::Ingress,
        Prog::GetSockopt,
    ];

    /// Function name in the object.
    pub const fn symbol(self) -> &'static str {
        match self {
            Prog::Connect4 => "weft_connect4",
            Prog::Connect6 => "weft_connect6",
            Prog::SockOps => "weft_sockops",
            Prog::SockRelease => "weft_sock_release",
            Prog::Ingress => "weft_ingress",
            Prog::GetSockopt => "weft_getsockopt",
            Prog::ProxySockOps => "weft_proxy_sockops",
            Prog::SkMsg => "weft_sk_msg",
        }
    }

    /// File name of the pinned link in a pod's link directory.
    pub const fn pin_name(self) -> &'static str {
        match self {
            Prog::Connect4 => "connect4",
            Prog::Connect6 => "connect6",
            Prog::SockOps => "sockops",
            Prog::SockRelease => "sock_release",
            Prog::Ingress => "ingress",
            Prog::GetSockopt => "getsockopt",
            Prog::ProxySockOps => "proxy_sockops",
            Prog::SkMsg => "sk_msg",
        }
    }

    pub const fn attach_type(self) -> u32 {
        match self {
            Prog::Connect4 => sys::ATTACH_INET4_CONNECT,
            Prog::Connect6 => sys::ATTACH_INET6_CONNECT,
            Prog::SockOps => sys::ATTACH_SOCK_OPS,
            Prog::SockRelease => sys::ATTACH_SOCK_RELEASE,
            Prog::Ingress => sys::ATTACH_INET_INGRESS,
            Prog::GetSockopt => sys::ATTACH_GETSOCKOPT,
            Prog::ProxySockOps => sys::ATTACH_SOCK_OPS,
            Prog::SkMsg => sys::ATTACH_SK_MSG_VERDICT,
        }
    }

    /// The attach type as bpftool prints it.
    pub const fn attach_label(self) -> &'static str {
        match self {
            Prog::Connect4 => "cgroup_inet4_connect",
            Prog::Connect6 => "cgroup_inet6_connect",
            Prog::SockOps => "sock_ops",
            Prog::SockRelease => "cgroup_inet_sock_release",
            Prog::Ingress => "cgroup_inet_ingress",
            Prog::GetSockopt => "cgroup_getsockopt",
            Prog::ProxySockOps => "sock_ops",
            Prog::SkMsg => "sk_msg_verdict",
        }
    }
}

/// Typed handles on the node's maps.
pub struct NodeMaps {
    pub config: Array<MapData, NodeConfig>,
    pub pods: HashMap<MapData, u64, PodEntry>,
    pub orig_by_cookie: HashMap<MapData, u64, Origin>,
    pub orig_by_client: HashMap<MapData, ClientKey, Origin>,
    pub exclude_cidrs: LpmTrie<MapData, CidrKey, u8>,
    pub exclude_ports: HashMap<MapData, u16, u8>,
    pub counters: PerCpuArray<MapData, u64>,
    pub inbound_allow: HashMap<MapData, AddrKey, u8>,
    pub sockhash: SockHash<MapData, SockKey>,
    pub sock_mirror: HashMap<MapData, SockKey, SockState>,
    pub local_pods: HashMap<MapData, AddrKey, u8>,
}

/// The loaded object's programs: verified and loaded, not attached. Keeping this alive keeps
/// the programs loaded for new attachments.
pub struct Loaded {
    ebpf: Ebpf,
}

impl Loaded {
    /// Loads the object; the maps are split out into typed handles.
    pub fn load(layout: &PinLayout) -> anyhow::Result<(Self, NodeMaps)> {
        let mut loader = EbpfLoader::new();
        for name in maps::ALL {
            loader.map_pin_path(name, layout.map_pin(name));
        }
        let mut ebpf = loader.load(OBJECT).with_context(|| {
            format!(
                "loading the kernel object with maps pinned in {}",
                layout.root().display()
            )
        })?;
        for prog in Prog::ALL {
            load_program(&mut ebpf, prog)
                .with_context(|| format!("loading program {}", prog.symbol()))?;
        }
        let maps = NodeMaps {
            config: typed(&mut ebpf, maps::CONFIG)?,
            pods: typed(&mut ebpf, maps::PODS)?,
            orig_by_cookie: typed(&mut ebpf, maps::ORIG_BY_COOKIE)?,
            orig_by_client: typed(&mut ebpf, maps::ORIG_BY_CLIENT)?,
            exclude_cidrs: typed(&mut ebpf, maps::EXCLUDE_CIDRS)?,
            exclude_ports: typed(&mut ebpf, maps::EXCLUDE_PORTS)?,
            counters: typed(&mut ebpf, maps::COUNTERS)?,
            inbound_allow: typed(&mut ebpf, maps::INBOUND_ALLOW)?,
            sockhash: typed(&mut ebpf, maps::SOCKHASH)?,
            sock_mirror: typed(&mut ebpf, maps::SOCK_MIRROR)?,
            local_pods: typed(&mut ebpf, maps::LOCAL_PODS)?,
        };
        Ok((Self { ebpf }, maps))
    }

    pub fn prog_fd(&self, prog: Prog) -> anyhow::Result<BorrowedFd<'_>> {
        let program = self
            .ebpf
            .program(prog.symbol())
            .ok_or_else(|| anyhow!("program {} missing from the object", prog.symbol()))?;
        Ok(program
            .fd()
            .with_context(|| format!("program {} is not loaded", prog.symbol()))?
            .as_fd())
    }
}

impl Loaded {
    /// The kernel's `bpf_prog_info` of one loaded program (id, run count, run time...).
    pub fn program_info(&self, prog: Prog) -> anyhow::Result<aya::programs::ProgramInfo> {
        let program = self
            .ebpf
            .program(prog.symbol())
            .ok_or_else(|| anyhow!("program {} missing from the object", prog.symbol()))?;
        program
            .info()
            .with_context(|| format!("reading the info of program {}", prog.symbol()))
    }
}

fn load_program(ebpf: &mut Ebpf, prog: Prog) -> anyhow::Result<()> {
    let program = ebpf
        .program_mut(prog.symbol())
        .ok_or_else(|| anyhow!("program missing from the object"))?;
    match prog {
        Prog::Connect4 | Prog::Connect6 => {
            let p: &mut CgroupSockAddr = program.try_into()?;
            p.load()?;
        }
        Prog::SockOps | Prog::ProxySockOps => {
            let p: &mut SockOps = program.try_into()?;
            p.load()?;
        }
        Prog::SkMsg => {
            let p: &mut SkMsg = program.try_into()?;
            p.load()?;
        }
        Prog::SockRelease => {
            let p: &mut CgroupSock = program.try_into()?;
            p.load()?;
        }
        Prog::Ingress => {
            let p: &mut CgroupSkb = program.try_into()?;
            p.load()?;
        }
        Prog::GetSockopt => {
            let p: &mut CgroupSockopt = program.try_into()?;
            p.load()?;
        }
    }
    Ok(())
}

fn typed<T>(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<T>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the object"))?;
    T::try_from(map)
        .with_context(|| format!("map {name} does not have the expected type or layout"))
}
