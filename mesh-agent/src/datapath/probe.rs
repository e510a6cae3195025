//! What the node's kernel must offer before the agent touches it: the program types, attach
//! types, helpers and map types the kernel object uses, a mounted cgroup v2 hierarchy and the
//! bpf file system. `mesh-agent run` checks all of them first and refuses to start with the
//! full list of what is missing (one missing hook found at attach time, then the next one after
//! an upgrade, is what this avoids); `mesh-agent probe` prints the same table.
//!
//! [`Kernel`] answers one requirement at a time so a test can fake one feature missing;
//! [`host::Host`] asks the running kernel.

mod host;

use std::fmt::Write as _;

use aya::{maps::MapType, programs::ProgramType, sys::BpfHelper};
use serde::Serialize;

use super::sys;

pub use host::Host;

/// One thing the kernel must support.
#[derive(Clone, Copy, Debug)]
pub enum Feature {
    Program(ProgramType),
    /// A program of this type loaded for this `enum bpf_attach_type` value.
    Attach(ProgramType, u32),
    Helper(ProgramType, BpfHelper),
    Map(MapType),
    /// A cgroup v2 hierarchy is mounted (pods are enrolled by their cgroup v2 directories).
    Cgroup2Mounted,
    /// The kernel offers the bpf file system (maps and links are pinned on it).
    BpfFs,
}

/// A named requirement and the part of the datapath that needs it.
#[derive(Clone, Copy, Debug)]
pub struct Requirement {
    pub name: &'static str,
    pub feature: Feature,
    pub used_by: &'static str,
}

const fn req(name: &'static str, feature: Feature, used_by: &'static str) -> Requirement {
    Requirement {
        name,
        feature,
        used_by,
    }
}

use BpfHelper as H;
use Feature::{Attach, Helper, Map, Program};
use ProgramType as P;

/// Everything the kernel object (`mesh-ebpf`) and the loader use.
#[rustfmt::skip]
pub const REQUIREMENTS: &[Requirement] = &[
    req("cgroup_sock_addr", Program(P::CgroupSockAddr), "connect capture"),
    req("sock_ops", Program(P::SockOps), "original destination by client"),
    req("cgroup_sock", Program(P::CgroupSock), "in-flight cleanup"),
    req("cgroup_skb", Program(P::CgroupSkb), "STRICT inbound"),
    req("cgroup_sockopt", Program(P::CgroupSockopt), "SO_ORIGINAL_DST"),
    req("cgroup_inet4_connect", Attach(P::CgroupSockAddr, sys::ATTACH_INET4_CONNECT), "connect capture (IPv4)"),
    req("cgroup_inet6_connect", Attach(P::CgroupSockAddr, sys::ATTACH_INET6_CONNECT), "connect capture (IPv6, v4-mapped)"),
    req("sock_ops_attach", Attach(P::SockOps, sys::ATTACH_SOCK_OPS), "original destination by client"),
    req("cgroup_inet_sock_release", Attach(P::CgroupSock, sys::ATTACH_SOCK_RELEASE), "in-flight cleanup"),
    req("cgroup_inet_ingress", Attach(P::CgroupSkb, sys::ATTACH_INET_INGRESS), "STRICT inbound"),
    req("cgroup_getsockopt", Attach(P::CgroupSockopt, sys::ATTACH_GETSOCKOPT), "SO_ORIGINAL_DST"),
    req("bpf_get_socket_cookie", Helper(P::CgroupSockAddr, H::BPF_FUNC_get_socket_cookie), "connect capture"),
    req("bpf_get_netns_cookie", Helper(P::CgroupSockAddr, H::BPF_FUNC_get_netns_cookie), "connect capture"),
    req("bpf_get_current_cgroup_id", Helper(P::CgroupSockAddr, H::BPF_FUNC_get_current_cgroup_id), "pod lookup"),
    req("bpf_get_current_ancestor_cgroup_id", Helper(P::CgroupSockAddr, H::BPF_FUNC_get_current_ancestor_cgroup_id), "pod lookup (containers)"),
    req("bpf_get_socket_cookie (sock_ops)", Helper(P::SockOps, H::BPF_FUNC_get_socket_cookie), "original destination by client"),
    req("bpf_skb_cgroup_id", Helper(P::CgroupSkb, H::BPF_FUNC_skb_cgroup_id), "STRICT inbound"),
    req("bpf_skb_ancestor_cgroup_id", Helper(P::CgroupSkb, H::BPF_FUNC_skb_ancestor_cgroup_id), "STRICT inbound"),
    req("hash map", Map(MapType::Hash), "pods, exclusions"),
    req("lru_hash map", Map(MapType::LruHash), "in-flight records"),
    req("lpm_trie map", Map(MapType::LpmTrie), "excluded CIDRs"),
    req("array map", Map(MapType::Array), "node configuration"),
    req("percpu_array map", Map(MapType::PerCpuArray), "counters"),
    req("cgroup v2 mounted", Feature::Cgroup2Mounted, "pod enrolment"),
    req("bpf file system", Feature::BpfFs, "pinned maps and links"),
];

/// Answers whether the kernel supports one requirement; `Err` when it could not tell (e.g.
/// `bpf(2)` refused for lack of privilege).
pub trait Kernel {
    fn supports(&self, requirement: &Requirement) -> Result<bool, String>;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum Status {
    Supported,
    Missing,
    Unknown(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub used_by: &'static str,
    #[serde(flatten)]
    pub status: Status,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

/// Asks `kernel` about every requirement.
pub fn probe(kernel: &dyn Kernel) -> Report {
    let checks = REQUIREMENTS
        .iter()
        .map(|r| Check {
            name: r.name,
            used_by: r.used_by,
            status: match kernel.supports(r) {
                Ok(true) => Status::Supported,
                Ok(false) => Status::Missing,
                Err(reason) => Status::Unknown(reason),
            },
        })
        .collect();
    Report { checks }
}

/// The kernel lacks (or would not say whether it has) something the datapath needs.
#[derive(Debug, thiserror::Error)]
#[error("this kernel cannot run weft's datapath; missing: {}", .0.join("; "))]
pub struct MissingFeatures(pub Vec<String>);

impl Report {
    /// Every requirement not known to be supported.
    pub fn unmet(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status != Status::Supported)
    }

    /// `Ok` when everything is supported, otherwise every unmet requirement by name.
    pub fn require(&self) -> Result<(), MissingFeatures> {
        let unmet: Vec<String> = self
            .unmet()
            .map(|c| match &c.status {
                Status::Unknown(reason) => format!("{} ({}: {reason})", c.name, c.used_by),
                _ => format!("{} ({})", c.name, c.used_by),
            })
            .collect();
        if unmet.is_empty() {
            Ok(())
        } else {
            Err(MissingFeatures(unmet))
        }
    }

    /// One line per requirement: name, status, what needs it.
    pub fn table(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let status = match &c.status {
                Status::Supported => "ok".to_string(),
                Status::Missing => "MISSING".to_string(),
                Status::Unknown(reason) => format!("UNKNOWN ({reason})"),
            };
            let _ = writeln!(out, "{:width$}  {:8}  {}", c.name, status, c.used_by);
        }
        out
    }
}

/// The start-up check of `mesh-agent run`: probes this host's kernel.
pub fn require_kernel_features() -> Result<(), MissingFeatures> {
    probe(&Host).require()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything supported except the named requirement.
    struct Without(&'static str);

    impl Kernel for Without {
        fn supports(&self, r: &Requirement) -> Result<bool, String> {
            Ok(r.name != self.0)
        }
    }

    #[test]
    fn a_missing_program_type_is_named_in_the_refusal() {
        let report = probe(&Without("cgroup_sockopt"));
        let err = report
            .require()
            .expect_err("a missing program type must refuse");
        let msg = err.to_string();
        assert!(msg.contains("cgroup_sockopt (SO_ORIGINAL_DST)"), "{msg}");
        assert_eq!(err.0.len(), 1, "only the faked feature is missing: {msg}");
        assert!(report.table().contains("cgroup_sockopt"));
    }

    #[test]
    fn every_requirement_supported_passes() {
        struct All;
        impl Kernel for All {
            fn supports(&self, _: &Requirement) -> Result<bool, String> {
                Ok(true)
            }
        }
        let report = probe(&All);
        assert!(report.require().is_ok());
        assert_eq!(report.checks.len(), REQUIREMENTS.len());
    }

    #[test]
    fn json_names_each_check_and_its_status() -> anyhow::Result<()> {
        let report = probe(&Without("lpm_trie map"));
        let json = serde_json::to_value(&report)?;
        let lpm = json["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "lpm_trie map")
            .ok_or_else(|| anyhow::anyhow!("no lpm_trie check in {json}"))?;
        assert_eq!(lpm["status"], "missing");
        Ok(())
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = REQUIREMENTS.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REQUIREMENTS.len());
    }

    /// The real kernel of this machine (root: `bpf(2)` needs CAP_BPF).
    #[test]
    fn this_host_has_every_feature() {
        if !nix_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let report = probe(&Host);
        assert!(report.require().is_ok(), "{}", report.table());
    }

    fn nix_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
}
