//! weft's datapath: loads the kernel programs, attaches them to pod cgroups so that their
//! outbound TCP `connect()`s land on the node proxy, and to the proxy's cgroup so that it can ask
//! where each connection was going (`getsockopt(SO_ORIGINAL_DST)` or the full [`Origin`]
//! record). No iptables. Pods in STRICT mode also get their plaintext connection attempts from
//! outside the node dropped in the kernel ([`PodAttachment::strict`], [`inbound`]).
//!
//! Everything a node needs survives the agent: maps and pod links are pinned under
//! `<bpffs>/weft/<node>/v<LAYOUT_VERSION>/` ([`pins`]), and the next agent adopts them instead of
//! attaching again ([`pods`]). Only the proxy's getsockopt link lives and dies with the agent,
//! and so do the links of same-node acceleration ([`sockmap`]).
//!
//! [`Origin`]: mesh_common::Origin

mod cgroups;
mod inbound;
mod loader;
mod pins;
mod pods;
pub mod probe;
mod sockmap;
mod stats;
mod sys;
mod tables;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
};

use anyhow::{Context as _, bail};
use mesh_common::{Counter, node_flags};
use tracing::{info, warn};

use cgroups::CgroupRoot;
use loader::{Loaded, NodeMaps, Prog};
use pins::PinLayout;
use pods::Inspection;

pub use inbound::local_addresses;
pub use stats::ProgramRuns;

/// How a node's datapath is set up.
#[derive(Clone, Debug)]
pub struct DatapathConfig {
    /// Names the pin directory `<bpffs>/weft/<node>/v<LAYOUT_VERSION>/`.
    pub node: String,
    /// Where bpffs is (or gets) mounted; usually `/sys/fs/bpf`.
    pub bpffs: PathBuf,
    pub proxy_ip4: Ipv4Addr,
    /// Native IPv6 destinations are captured only when this is set.
    pub proxy_ip6: Option<Ipv6Addr>,
    pub outbound_port: u16,
    /// While the proxy is not ready, refuse pod connects (EPERM) instead of passing them.
    pub fail_closed: bool,
    pub exclude_cidrs: Vec<(IpAddr, u8)>,
    pub exclude_ports: Vec<u16>,
    /// cgroup v2 directory of the proxy; the getsockopt program is attached here.
    pub proxy_cgroup: PathBuf,
    /// Same-node acceleration: local meshed connections exchange data socket to socket
    /// (sockops + sk_msg + sockhash) instead of through the TCP/IP stack.
    pub sockmap: bool,
}

/// A pod whose cgroup must be captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAttachment {
    pub uid: String,
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
    /// STRICT peer authentication: plaintext TCP connection attempts into the pod are dropped
    /// unless they come from the node ([`Datapath::set_inbound_allow`]) or the pod itself.
    pub strict: bool,
}

/// What a [`Datapath::sync`] changed, by pod uid.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub attached: Vec<String>,
    pub adopted: Vec<String>,
    pub released: Vec<String>,
}

/// A program attached directly to a cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedProgram {
    /// As bpftool names it, e.g. `cgroup_inet4_connect`.
    pub attach_type: &'static str,
    pub prog_id: u32,
}

struct PodState {
    cgroup_id: u64,
    /// Found pinned by a previous agent; reported once in [`SyncReport::adopted`].
    adopted: bool,
    reported: bool,
}

/// The datapath of one node, loaded and attached.
pub struct Datapath {
    cfg: DatapathConfig,
    layout: PinLayout,
    loaded: Loaded,
    /// Behind a lock only because aya's map updates take `&mut`; each one is a single syscall.
    maps: Mutex<NodeMaps>,
    cgroups: CgroupRoot,
    pods: BTreeMap<String, PodState>,
    /// The proxy's getsockopt attachment: deliberately not pinned, it ends with this agent.
    _proxy_link: OwnedFd,
    /// sk_msg on SOCKHASH and sockops on the proxy cgroup, when acceleration is on.
    _accel: Option<sockmap::AccelLinks>,
    /// Keeps the kernel's program run statistics on while the agent runs ([`stats`]).
    _run_stats: Option<OwnedFd>,
}

impl Datapath {
    /// Loads the object with every map pinned under `<pin dir>/maps` (first load creates, later
    /// loads reuse), writes CONFIG with READY cleared, replaces the exclusion maps, attaches
    /// getsockopt to the proxy cgroup, and adopts the pod links a previous agent pinned (moving
    /// them onto the fresh programs).
    pub fn open(cfg: DatapathConfig) -> anyhow::Result<Datapath> {
        let layout = PinLayout::new(&cfg.bpffs, &cfg.node)?;
        pins::ensure_bpffs(&cfg.bpffs)?;
        layout.create().with_context(|| {
            format!("creating pin directories under {}", layout.root().display())
        })?;
        let (loaded, mut maps) = Loaded::load(&layout)?;
        let config = tables::node_config(
            cfg.proxy_ip4,
            cfg.proxy_ip6,
            cfg.outbound_port,
            cfg.fail_closed,
            false,
        );
        tables::write_config(&mut maps, &config)?;
        tables::replace_exclusions(&mut maps, &cfg.exclude_cidrs, &cfg.exclude_ports)?;

        let proxy_cgroup = sys::open_dir(&cfg.proxy_cgroup)
            .with_context(|| format!("opening proxy cgroup {}", cfg.proxy_cgroup.display()))?;
        let proxy_link = sys::link_create(
            loaded.prog_fd(Prog::GetSockopt)?,
            proxy_cgroup.as_fd(),
            Prog::GetSockopt.attach_type(),
        )
        .with_context(|| format!("attaching getsockopt to {}", cfg.proxy_cgroup.display()))?;
        let accel = if cfg.sockmap {
            let links = sockmap::attach(&loaded, &maps, proxy_cgroup.as_fd())?;
            // Only now: a socket entering SOCKHASH before sk_msg was attached would keep no
            // program.
            tables::set_flag(&mut maps, node_flags::SOCKMAP, true)?;
            Some(links)
        } else {
            None
        };

        // Only now that the new programs loaded: a failed load leaves the old datapath running.
        for dir in pins::remove_other_versions(&cfg.bpffs, &cfg.node)? {
            info!(pins = %dir.display(), "removed the datapath of another layout version");
        }

        let cgroups = CgroupRoot::open().context("opening the cgroup2 mount")?;
        let mut datapath = Datapath {
            cfg,
            layout,
            loaded,
            maps: Mutex::new(maps),
            cgroups,
            pods: BTreeMap::new(),
            _proxy_link: proxy_link,
            _accel: accel,
            _run_stats: stats::enable(),
        };
        for uid in datapath.layout.pod_uids().context("listing pinned pods")? {
            datapath.adopt_or_collect(&uid, None)?;
        }
        datapath.prune_pods()?;
        info!(
            node = %datapath.cfg.node,
            pins = %datapath.layout.root().display(),
            adopted = datapath.pods.len(),
            sockmap = datapath.cfg.sockmap,
            "datapath loaded"
        );
        Ok(datapath)
    }

    /// Makes the attached set equal `pods`. New pods get the five pod programs attached and
    /// pinned, then their PODS entry; pods no longer wanted lose their PODS entry first, then
    /// their links. Attached and adopted pods keep their links; their PODS entry is rewritten,
    /// which is how a change of mode (STRICT or not) takes effect. Pinned links of removed
    /// cgroups are garbage-collected.
    pub fn sync(&mut self, pods: &[PodAttachment]) -> anyhow::Result<SyncReport> {
        let mut wanted = BTreeMap::new();
        for pod in pods {
            pins::validate_component("pod uid", &pod.uid)?;
            if wanted.insert(pod.uid.as_str(), pod).is_some() {
                bail!("pod uid {} listed twice", pod.uid);
            }
        }
        let mut report = SyncReport::default();

        let tracked: Vec<(String, u64)> = self
            .pods
            .iter()
            .map(|(uid, s)| (uid.clone(), s.cgroup_id))
            .collect();
        for (uid, cgroup_id) in tracked {
            let keep = match wanted.get(uid.as_str()) {
                Some(pod) if pod.cgroup_id == cgroup_id => self.cgroup_alive(cgroup_id),
                _ => false,
            };
            if !keep {
                self.release(&uid, Some(cgroup_id))?;
                report.released.push(uid);
            }
        }
        for uid in self.layout.pod_uids().context("listing pinned pods")? {
            if !self.pods.contains_key(&uid) {
                let want = wanted.get(uid.as_str()).map(|p| p.cgroup_id);
                if self.adopt_or_collect(&uid, want)? {
                    report.released.push(uid);
                }
            }
        }

        for (uid, pod) in wanted {
            if let Some(state) = self.pods.get_mut(uid) {
                if state.adopted && !state.reported {
                    state.reported = true;
                    report.adopted.push(uid.to_owned());
                }
                let cgroup_id = state.cgroup_id;
                // Carries a change of mode; also, an agent may have died between attaching and
                // enrolling.
                tables::enrol(self.maps_mut(), cgroup_id, pod.strict)?;
                continue;
            }
            let Some(cgroup) = pods::open_cgroup(&pod.cgroup, pod.cgroup_id)? else {
                warn!(uid, cgroup = %pod.cgroup.display(), "pod cgroup is gone; not attaching");
                continue;
            };
            pods::attach(&self.loaded, &self.layout, uid, &cgroup)
                .with_context(|| format!("attaching pod {uid} ({})", pod.cgroup.display()))?;
            tables::enrol(self.maps_mut(), pod.cgroup_id, pod.strict)?;
            self.pods.insert(
                uid.to_owned(),
                PodState {
                    cgroup_id: pod.cgroup_id,
                    adopted: false,
                    reported: true,
                },
            );
            report.attached.push(uid.to_owned());
        }
        self.prune_pods()?;
        Ok(report)
    }

    /// Replaces the source addresses STRICT pods accept plaintext connections from: the node's
    /// own addresses ([`local_addresses`] in the agent's network namespace).
    pub fn set_inbound_allow(&mut self, addrs: &[IpAddr]) -> anyhow::Result<()> {
        inbound::replace(self.maps_mut(), addrs)
    }

    /// Replaces the addresses of the node's enrolled pods: the proxy's connections to them are
    /// accelerated (when [`DatapathConfig::sockmap`] is on).
    pub fn set_local_pods(&mut self, addrs: &[IpAddr]) -> anyhow::Result<()> {
        sockmap::set_local_pods(self.maps_mut(), addrs)
    }

    /// Sets or clears READY: whether captured connections go to the proxy now.
    pub fn set_ready(&self, ready: bool) -> anyhow::Result<()> {
        tables::set_ready(&mut self.lock_maps(), ready)
    }

    /// Kernel decision counters summed over CPUs, in [`Counter::ALL`] order.
    pub fn counters(&self) -> anyhow::Result<Vec<(Counter, u64)>> {
        tables::counters(&self.lock_maps())
    }

    /// Run count and run time of each of the agent's programs, from the kernel.
    pub fn program_runs(&self) -> anyhow::Result<Vec<ProgramRuns>> {
        stats::read(&self.loaded)
    }

    /// Current number of entries of PODS, ORIG_BY_COOKIE, ORIG_BY_CLIENT, INBOUND_ALLOW,
    /// SOCKHASH, SOCK_MIRROR and LOCAL_PODS.
    pub fn map_entries(&self) -> anyhow::Result<Vec<(&'static str, usize)>> {
        let maps = self.lock_maps();
        let mut entries = tables::entries(&maps)?;
        entries.extend(sockmap::entries(&maps)?);
        Ok(entries)
    }

    /// `<bpffs>/weft/<node>/v<LAYOUT_VERSION>`.
    pub fn pin_dir(&self) -> &Path {
        self.layout.root()
    }

    /// `keep = true`: clear READY and leave every pin for the next agent. `keep = false`:
    /// withdraw every pod, detach every pod program and remove the node's pin directory.
    pub fn close(mut self, keep: bool) -> anyhow::Result<()> {
        tables::set_ready(self.maps_mut(), false)?;
        // The sk_msg link ends with this agent: no socket may enter SOCKHASH without it.
        tables::set_flag(self.maps_mut(), node_flags::SOCKMAP, false)?;
        if keep {
            info!(node = %self.cfg.node, "datapath left pinned for the next agent");
            return Ok(());
        }
        // Withdraw every pod first, so connects pass untouched while links are detached.
        tables::prune_pods(self.maps_mut(), &BTreeSet::new())?;
        let Datapath {
            cfg,
            loaded,
            maps,
            _proxy_link: proxy_link,
            _accel: accel,
            ..
        } = self;
        drop(accel);
        drop(proxy_link);
        drop(maps);
        drop(loaded);
        remove_node_pins(&cfg.bpffs, &cfg.node)?;
        info!(node = %cfg.node, "datapath removed");
        Ok(())
    }

    fn cgroup_alive(&self, cgroup_id: u64) -> bool {
        self.cgroups.exists(cgroup_id).unwrap_or_else(|e| {
            // Unknown is treated as alive: never tear down a pod on a failed lookup.
            warn!(cgroup_id, error = %e, "cannot tell whether a cgroup exists");
            true
        })
    }

    /// Looks at a pinned pod directory this agent does not track yet: adopts it when its cgroup
    /// is alive (and, if `want` is given, is the wanted cgroup), otherwise removes it. Returns
    /// whether it was removed.
    fn adopt_or_collect(&mut self, uid: &str, want: Option<u64>) -> anyhow::Result<bool> {
        let inspection = pods::inspect(&self.layout, uid, &self.cgroups)?;
        match inspection {
            Inspection::Live { cgroup_id, links } if want.is_none_or(|w| w == cgroup_id) => {
                pods::upgrade(&self.loaded, uid, &links);
                self.pods.insert(
                    uid.to_owned(),
                    PodState {
                        cgroup_id,
                        adopted: true,
                        reported: false,
                    },
                );
                Ok(false)
            }
            Inspection::Live { cgroup_id, .. } => {
                self.release(uid, Some(cgroup_id))?;
                Ok(true)
            }
            Inspection::Stale { cgroup_id } => {
                info!(
                    uid,
                    ?cgroup_id,
                    "removing pinned links of a cgroup that no longer exists"
                );
                self.release(uid, cgroup_id)?;
                Ok(true)
            }
            Inspection::Empty => {
                self.release(uid, None)?;
                Ok(false)
            }
        }
    }

    fn release(&mut self, uid: &str, cgroup_id: Option<u64>) -> anyhow::Result<()> {
        if let Some(id) = cgroup_id {
            tables::withdraw(self.maps_mut(), id)?;
        }
        self.pods.remove(uid);
        pods::release(&self.layout, uid)
    }

    fn prune_pods(&mut self) -> anyhow::Result<()> {
        let keep = self.pods.values().map(|s| s.cgroup_id).collect();
        tables::prune_pods(self.maps_mut(), &keep)
    }

    fn maps_mut(&mut self) -> &mut NodeMaps {
        // A panic while holding the lock cannot leave a map handle half-updated.
        self.maps.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_maps(&self) -> MutexGuard<'_, NodeMaps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Programs attached directly to `cgroup` for the attach types weft uses (programs inherited
/// from parent cgroups are not listed).
pub fn attached_programs(cgroup: &Path) -> anyhow::Result<Vec<AttachedProgram>> {
    let fd =
        sys::open_dir(cgroup).with_context(|| format!("opening cgroup {}", cgroup.display()))?;
    let mut attached = Vec::new();
    for prog in Prog::CGROUP_TYPES {
        let ids = sys::prog_query(fd.as_fd(), prog.attach_type()).with_context(|| {
            format!(
                "querying {} programs of {}",
                prog.attach_label(),
                cgroup.display()
            )
        })?;
        attached.extend(ids.into_iter().map(|prog_id| AttachedProgram {
            attach_type: prog.attach_label(),
            prog_id,
        }));
    }
    Ok(attached)
}

/// Inode number of a cgroup v2 directory: the id the kernel reports for it.
pub fn cgroup_id(path: &Path) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

/// The directory under `bpffs` that holds everything pinned for `node`.
pub fn node_pin_dir(bpffs: &Path, node: &str) -> PathBuf {
    pins::node_dir(bpffs, node)
}

/// Detaches and removes everything pinned for `node` under `bpffs`: uninstall, or cleanup after
/// an agent that died.
pub fn remove_node_pins(bpffs: &Path, node: &str) -> anyhow::Result<()> {
    pins::remove_node_pins(bpffs, node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datapath_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Datapath>();
    }
}
