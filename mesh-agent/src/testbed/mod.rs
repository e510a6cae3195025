//! A network-namespace test bed that simulates Kubernetes nodes and pods on one machine, shared
//! by the integration tests, the demo and the benchmarks.
//!
//! ```text
//!                      fabric netns: bridge br0 (no address)
//!                n1 |                              | n2
//!   fab0 192.168.250.1/24                  fab0 192.168.250.2/24
//!   node netns a: 169.254.7.1/32 on lo     node netns b: 169.254.7.1/32 on lo
//!   p2 10.244.1.1/32, route 10.244.1.2     p2 10.244.2.1/32, route 10.244.2.2
//!   route 10.244.2.0/24 via .250.2         route 10.244.1.0/24 via .250.1
//!      | eth0 10.244.1.2/32                   | eth0 10.244.2.2/32
//!   pod netns: default via 10.244.1.1      pod netns: default via 10.244.2.1
//! ```
//!
//! Every node and pod namespace blackholes [`SERVICE_CIDR`], so a connection the datapath did not
//! redirect fails at once and locally. Nothing is connected to the host namespace, and no
//! interface is ever created there. Node namespaces forward and have `rp_filter` off.
//!
//! Names: every kernel object of a bed carries its prefix `<label>-<pid>-<n>`. Callers use the
//! short names they passed to [`TestBed::add_node`] and [`TestBed::add_pod`]; a short name is used
//! once per bed, by a node or by a pod. [`Node::name`] is the bed-unique full name
//! (`<prefix>-<short>`), so it can name per-node state shared by the whole kernel, such as the
//! agent's pins under `/sys/fs/bpf/weft/<Node::name>`, which teardown removes. [`Pod::name`] stays
//! short (it is only a key); its namespace and cgroup are prefixed.
//!
//! Cgroups: `<cgroup2>/<prefix>/<node>/agent` for the node agent and
//! `<cgroup2>/<prefix>/<node>/pods/<pod>` for each pod (`<node>` is the short name).
//!
//! Teardown, in `Drop` and so also on panic: `cgroup.kill` on the whole subtree (children started
//! here die even if the caller leaked their `Child`), cgroups removed leaf first, pins removed,
//! `ip netns del`, and the bed's work directory (see [`TestBed::work_dir`]) deleted.
//! [`TestBed::new`] purges beds with the same label whose process is gone.
//!
//! Around the bed: [`AgentProcess`] runs a node agent on a node, [`MeshSpec`] writes the mesh
//! state file describing the bed's pods, [`kube_api::FakeApi`] plays a Kubernetes API server.

mod agent;
mod ca;
mod capture;
mod cgroup;
mod exec;
mod iproute;
pub mod kube_api;
mod mesh;
mod naming;
mod netfilter;
mod teardown;
mod topology;

pub use agent::{
    AgentProcess, METRICS_ADDR, example_bin_dir, field, http_get, message, node_pin_dir,
};
pub use ca::{CA_PORT, MeshCa, TRUST_DOMAIN};
pub use capture::Capture;
pub use mesh::{MeshSpec, ServiceSpec, WorkloadSpec, write_atomically};

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use naming::{FABRIC, scoped};

/// Kubernetes service range: blackholed in every node and pod namespace.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

/// The node proxy's address, a /32 on every node's `lo`, reached from pods by their default route.
pub const PROXY_IP: Ipv4Addr = {
    let [a, b, c, d] = mesh_common::PROXY_IPV4;
    Ipv4Addr::new(a, b, c, d)
};

/// A simulated node: a network namespace on the fabric, with a pod CIDR and two cgroups.
#[derive(Clone, Debug)]
pub struct Node {
    /// Bed-unique full name, `<prefix>-<short name>`.
    pub name: String,
    pub netns: String,
    /// Address on the fabric.
    pub ip: Ipv4Addr,
    pub pod_cidr: (Ipv4Addr, u8),
    /// Where the node agent runs ([`TestBed::spawn_on_node`]).
    pub agent_cgroup: PathBuf,
    /// Parent of the node's pod cgroups.
    pub pods_cgroup: PathBuf,
}

/// A simulated pod: a network namespace behind a veth to its node, and a cgroup.
#[derive(Clone, Debug)]
pub struct Pod {
    /// The short name the pod was added with.
    pub name: String,
    /// Short name of its node.
    pub node: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub cgroup: PathBuf,
}

/// A running bed; dropping it tears everything down.
#[derive(Debug)]
pub struct TestBed {
    prefix: String,
    cgroup2: PathBuf,
    cgroup_root: PathBuf,
    work_dir: PathBuf,
    fabric: String,
    nodes: Vec<NodeSlot>,
    pods: Vec<PodSlot>,
}

#[derive(Debug)]
struct NodeSlot {
    short: String,
    index: u8,
    /// Host part of the next pod address; never reused, so a removed pod's address stays unused.
    next_host: u8,
    node: Node,
}

#[derive(Debug)]
struct PodSlot {
    /// The pod link's end in the node namespace.
    veth: String,
    pod: Pod,
}

impl TestBed {
    /// Creates an empty bed (the fabric only). Needs root and cgroup v2; mounts bpffs at
    /// /sys/fs/bpf if needed and leaves it mounted.
    pub fn new(label: &str) -> Result<TestBed> {
        naming::check_label(label)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the test bed needs root (network namespaces, cgroups, bpffs)");
        }
        let cgroup2 = cgroup::cgroup2_mount()?;
        cgroup::ensure_bpffs()?;
        if let Err(err) = teardown::remove_leftovers(label, &cgroup2) {
            eprintln!("test bed: could not remove leftovers of earlier runs: {err:#}");
        }
        static BEDS: AtomicU32 = AtomicU32::new(0);
        let n = BEDS.fetch_add(1, Ordering::Relaxed);
        let prefix = naming::bed_prefix(label, std::process::id(), n);
        // From here on `Drop` removes whatever was made, also if a later step fails.
        let bed = TestBed {
            cgroup_root: cgroup2.join(&prefix),
            work_dir: teardown::work_root().join(&prefix),
            fabric: scoped(&prefix, FABRIC),
            prefix,
            cgroup2,
            nodes: Vec::new(),
            pods: Vec::new(),
        };
        fs::create_dir(&bed.cgroup_root)
            .with_context(|| format!("creating cgroup {}", bed.cgroup_root.display()))?;
        fs::create_dir_all(&bed.work_dir)
            .with_context(|| format!("creating {}", bed.work_dir.display()))?;
        topology::create_fabric(&bed.fabric)?;
        Ok(bed)
    }

    /// Adds a node, wired to the fabric and routed to and from every other node's pod CIDR.
    pub fn add_node(&mut self, name: &str) -> Result<&Node> {
        naming::check_name("node", name)?;
        self.check_unused(name)?;
        let max = naming::MAX_NODES;
        ensure!(self.nodes.len() < max, "a bed has at most {max} nodes");
        let index = u8::try_from(self.nodes.len() + 1)?;
        let netns = scoped(&self.prefix, name);
        let peers: Vec<&Node> = self.nodes.iter().map(|slot| &slot.node).collect();
        topology::create_node(&self.fabric, &netns, index, &peers)?;

        let node_cgroup = self.cgroup_root.join(name);
        let node = Node {
            name: netns.clone(),
            netns,
            ip: naming::node_fabric_ip(index),
            pod_cidr: naming::node_pod_cidr(index),
            agent_cgroup: node_cgroup.join("agent"),
            pods_cgroup: node_cgroup.join("pods"),
        };
        cgroup::create(&node.agent_cgroup)?;
        cgroup::create(&node.pods_cgroup)?;
        let short = name.to_owned();
        let next_host = naming::FIRST_POD_HOST;
        self.nodes.push(NodeSlot {
            short,
            index,
            next_host,
            node,
        });
        Ok(&self.nodes[self.nodes.len() - 1].node)
    }

    /// Adds a pod on `node` (short or full name) with the node's next free address.
    pub fn add_pod(&mut self, node: &str, name: &str) -> Result<&Pod> {
        self.add_pod_in(node, name, &Path::new("pods").join(name))
    }

    /// [`TestBed::add_pod`] with the pod's cgroup at `cgroup`, relative to the node's cgroup
    /// directory: e.g. `kubepods/besteffort/pod<uid>` to lay pods out like a kubelet does.
    pub fn add_pod_in(&mut self, node: &str, name: &str, cgroup: &Path) -> Result<&Pod> {
        naming::check_name("pod", name)?;
        self.check_unused(name)?;
        let at = self.node_slot(node)?;
        let slot = &mut self.nodes[at];
        let host = slot.next_host;
        ensure!(
            host <= naming::LAST_POD_HOST,
            "node {node} has no pod address left"
        );
        slot.next_host += 1;
        let netns = scoped(&self.prefix, name);
        topology::create_pod(&slot.node.netns, &netns, slot.index, host)?;

        let node_cgroup = slot.node.pods_cgroup.parent().unwrap_or(&self.cgroup_root);
        let cgroup = node_cgroup.join(cgroup);
        ensure!(
            cgroup.starts_with(node_cgroup),
            "pod cgroup {} is outside the node's cgroup",
            cgroup.display()
        );
        cgroup::create(&cgroup)?;
        let pod = Pod {
            name: name.to_owned(),
            node: slot.short.clone(),
            netns,
            ip: naming::pod_ip(slot.index, host),
            cgroup,
        };
        self.pods.push(PodSlot {
            veth: naming::pod_veth(host),
            pod,
        });
        Ok(&self.pods[self.pods.len() - 1].pod)
    }

    /// The node called `name` (short or full name). Panics if there is none.
    pub fn node(&self, name: &str) -> &Node {
        match self.node_slot(name) {
            Ok(slot) => &self.nodes[slot].node,
            Err(err) => panic!("{err:#}"),
        }
    }

    /// The pod called `name`. Panics if there is none.
    pub fn pod(&self, name: &str) -> &Pod {
        match self.pod_slot(name) {
            Ok(slot) => &self.pods[slot].pod,
            Err(err) => panic!("{err:#}"),
        }
    }

    /// `<prefix>`, the start of every name this bed gives to kernel objects.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The nodes, in the order they were added.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().map(|slot| &slot.node)
    }

    /// The pods, in the order they were added.
    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().map(|slot| &slot.pod)
    }

    /// A directory for the bed's files (configurations, logs): `<temp dir>/weft-testbed/<prefix>`,
    /// deleted at teardown.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// `<cgroup2 mount>/<prefix>`, the bed's cgroup subtree.
    pub fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
    }

    /// Adds `ip` as a secondary address on the pod's `eth0`, for tests that spoof a source. If no
    /// pod of the bed owns `ip`, the node also routes it to this pod, so connections from it can
    /// complete; another pod's address keeps routing to its owner, as on a real node.
    pub fn add_pod_address(&self, pod: &str, ip: Ipv4Addr) -> Result<()> {
        let PodSlot { veth, pod: info } = &self.pods[self.pod_slot(pod)?];
        let address = format!("{ip}/32");
        iproute::ip(&["-n", &info.netns, "address", "add", &address, "dev", "eth0"])?;
        if !self.pods.iter().any(|other| other.pod.ip == ip) {
            let node_netns = &self.node(&info.node).netns;
            iproute::ip(&["-n", node_netns, "route", "add", &address, "dev", veth])?;
        }
        Ok(())
    }

    /// Starts `cmd` inside the pod: it joins the pod cgroup, then enters the pod's network
    /// namespace. Stdio is as the caller set it on `cmd`.
    pub fn spawn_in_pod(&self, pod: &str, cmd: Command) -> Result<Child> {
        let pod = &self.pods[self.pod_slot(pod)?].pod;
        exec::spawn_in(&pod.cgroup, &pod.netns, cmd)
    }

    /// Starts `cmd` in the node's network namespace and its agent cgroup.
    pub fn spawn_on_node(&self, node: &str, cmd: Command) -> Result<Child> {
        let node = &self.nodes[self.node_slot(node)?].node;
        exec::spawn_in(&node.agent_cgroup, &node.netns, cmd)
    }

    /// Runs `cmd` to completion inside the pod, capturing stdout and stderr (stdin is null). Past
    /// `timeout` the process is killed and an error returned.
    pub fn run_in_pod(&self, pod: &str, mut cmd: Command, timeout: Duration) -> Result<Output> {
        exec::capture_output(&mut cmd);
        let what = format!("{} in pod {pod}", cmd.get_program().to_string_lossy());
        let child = self.spawn_in_pod(pod, cmd)?;
        exec::wait_with_timeout(child, &what, timeout)
    }

    /// Runs `f` on a new thread that has entered `netns`: a node's or pod's short name or
    /// namespace name, or the fabric's. Sockets `f` opens live in that namespace, e.g. to scrape
    /// an agent's 127.0.0.1 metrics port from the test process.
    pub fn in_netns<T: Send>(&self, netns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
        let netns = self.resolve_netns(netns)?;
        exec::on_thread_in(netns, f)
    }

    /// Kills every process of the pod and removes it: cgroup, link and namespace.
    pub fn remove_pod(&mut self, name: &str) -> Result<()> {
        let PodSlot { veth, pod } = self.pods.remove(self.pod_slot(name)?);
        cgroup::kill_and_remove(&pod.cgroup)?;
        // Deleting the node end removes both ends at once; a namespace is destroyed lazily.
        iproute::ip(&["-n", &self.node(&pod.node).netns, "link", "del", &veth])?;
        iproute::ip(&["netns", "del", &pod.netns])
    }

    fn check_unused(&self, name: &str) -> Result<()> {
        let taken = self.nodes.iter().any(|n| n.short == name)
            || self.pods.iter().any(|p| p.pod.name == name);
        ensure!(
            !taken,
            "test bed {}: the name {name:?} is already used by a node or pod",
            self.prefix
        );
        Ok(())
    }

    fn node_slot(&self, name: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.short == name || n.node.name == name)
            .with_context(|| {
                let known: Vec<&str> = self.nodes.iter().map(|n| n.short.as_str()).collect();
                format!(
                    "test bed {}: no node {name:?} (nodes: {known:?})",
                    self.prefix
                )
            })
    }

    fn pod_slot(&self, name: &str) -> Result<usize> {
        self.pods
            .iter()
            .position(|p| p.pod.name == name)
            .with_context(|| {
                let known: Vec<&str> = self.pods.iter().map(|p| p.pod.name.as_str()).collect();
                format!(
                    "test bed {}: no pod {name:?} (pods: {known:?})",
                    self.prefix
                )
            })
    }

    fn resolve_netns<'a>(&'a self, name: &'a str) -> Result<&'a str> {
        if name == self.fabric {
            return Ok(name);
        }
        let node = self
            .nodes
            .iter()
            .find(|n| n.short == name || n.node.netns == name);
        let pod = self
            .pods
            .iter()
            .find(|p| p.pod.name == name || p.pod.netns == name);
        match (node, pod) {
            (Some(node), _) => Ok(&node.node.netns),
            (None, Some(pod)) => Ok(&pod.pod.netns),
            (None, None) => bail!(
                "test bed {}: no node or pod namespace {name:?}",
                self.prefix
            ),
        }
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        if let Err(err) = teardown::purge(&self.prefix, &self.cgroup2) {
            eprintln!("{err:#}");
        }
    }
}
