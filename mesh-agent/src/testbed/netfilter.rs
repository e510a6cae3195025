//! iptables capture for a pod: the classic alternative to the datapath's cgroup programs, so the
//! benchmark and its test can feed the same proxy either way (`mesh-agent run --capture
//! iptables`).
//!
//! The rule lives in the pod's node namespace, on the pod's veth, and only matches the service
//! range: `PREROUTING -i <veth> -p tcp -d 10.96.0.0/12 -j DNAT --to-destination <proxy>`. The
//! pod's own blackhole for that range goes (its connect would fail before any packet left);
//! the node's blackhole stays behind the rule, so nothing of the range leaves the node.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{PROXY_IP, SERVICE_CIDR, TestBed, iproute};

impl TestBed {
    /// Redirects `pod`'s TCP to the service range into the node proxy at `PROXY_IP:proxy_port`.
    pub fn capture_with_iptables(&self, pod: &str, proxy_port: u16) -> Result<()> {
        let slot = &self.pods[self.pod_slot(pod)?];
        let node_netns = &self.node(&slot.pod.node).netns;
        let to = format!("{PROXY_IP}:{proxy_port}");
        iptables(
            node_netns,
            &[
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-i",
                &slot.veth,
                "-p",
                "tcp",
                "-d",
                SERVICE_CIDR,
                "-j",
                "DNAT",
                "--to-destination",
                &to,
            ],
        )?;
        iproute::ip(&[
            "-n",
            &slot.pod.netns,
            "route",
            "del",
            "blackhole",
            SERVICE_CIDR,
        ])
    }
}

/// `ip netns exec <netns> iptables <args>` (iptables' nft backend is fine: the rules live in the
/// namespace and go with it).
fn iptables(netns: &str, args: &[&str]) -> Result<()> {
    let iptables = ["/usr/sbin/iptables", "/sbin/iptables"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("iptables");
    let out = Command::new(iproute::ip_binary())
        .args(["netns", "exec", netns, iptables, "-w"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running iptables (cargo xtask setup installs it)")?;
    if !out.status.success() {
        bail!(
            "iptables {} in {netns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
