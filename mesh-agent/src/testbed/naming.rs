//! Names and addresses of a test bed. Pure functions, so the whole plan is testable without root.
//!
//! Every kernel object of a bed (network namespaces, the cgroup subtree, bpffs pins) is named
//! `<prefix>` or `<prefix>-<name>`, with `<prefix> = <label>-<pid>-<n>`. Teardown and the removal
//! of leftovers from crashed runs find a bed's objects by that prefix alone.

use std::net::Ipv4Addr;

use anyhow::{Result, bail, ensure};

/// Longest label accepted by [`check_label`]: network namespace names end up in paths and log
/// lines, so the whole `<label>-<pid>-<n>-<name>` stays short.
const MAX_LABEL: usize = 8;
/// Longest node or pod name accepted by [`check_name`].
const MAX_NAME: usize = 12;
/// Name of the bed's switch namespace (`<prefix>-fabric`); no node or pod may be called this.
pub(crate) const FABRIC: &str = "fabric";
/// Node indexes run from 1 to this (the last octet of the fabric address).
pub(crate) const MAX_NODES: usize = 254;
/// Host part of a pod's address: `.1` is the node side of every pod link, so pods start at `.2`.
pub(crate) const FIRST_POD_HOST: u8 = 2;
pub(crate) const LAST_POD_HOST: u8 = 254;

/// A label is the first field of the prefix: lowercase letters and digits only, so the prefix can
/// be split on `-` without ambiguity.
pub(crate) fn check_label(label: &str) -> Result<()> {
    ensure!(
        !label.is_empty()
            && label.len() <= MAX_LABEL
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "test bed label {label:?}: use 1 to {MAX_LABEL} lowercase letters or digits"
    );
    Ok(())
}

/// Node and pod names: short DNS-like labels (`[a-z0-9][a-z0-9-]*`).
pub(crate) fn check_name(kind: &str, name: &str) -> Result<()> {
    let well_formed = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ensure!(
        well_formed,
        "{kind} name {name:?}: use 1 to {MAX_NAME} characters of [a-z0-9-], not starting with '-'"
    );
    if name == FABRIC {
        bail!("{kind} name {name:?} is reserved for the bed's switch namespace");
    }
    Ok(())
}

pub(crate) fn bed_prefix(label: &str, pid: u32, n: u32) -> String {
    format!("{label}-{pid}-{n}")
}

/// The bed-unique name of one of its objects.
pub(crate) fn scoped(prefix: &str, name: &str) -> String {
    format!("{prefix}-{name}")
}

/// Whether `name` is the bed's prefix itself or one of its scoped names. The separator matters:
/// `tb-1-1` must not claim `tb-1-10-a`.
pub(crate) fn belongs_to(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// Which bed an object name belongs to, read from the name: `(label, pid, prefix)`.
pub(crate) fn parse_bed_name(name: &str) -> Option<(&str, u32, &str)> {
    let mut fields = name.splitn(4, '-');
    let label = fields.next()?;
    let pid = fields.next()?;
    let n = fields.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if check_label(label).is_err() || !digits(pid) || !digits(n) {
        return None;
    }
    let prefix = &name[..label.len() + pid.len() + n.len() + 2];
    Some((label, pid.parse().ok()?, prefix))
}

/// Address of node `index` on the fabric (192.168.250.0/24).
pub(crate) fn node_fabric_ip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 250, index)
}

/// Pod CIDR of node `index`: 10.244.<index>.0/24.
pub(crate) fn node_pod_cidr(index: u8) -> (Ipv4Addr, u8) {
    (Ipv4Addr::new(10, 244, index, 0), 24)
}

/// The node-side address of every pod link on node `index`, and every such pod's gateway.
pub(crate) fn pod_gateway(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, index, 1)
}

pub(crate) fn pod_ip(node_index: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, node_index, host)
}

/// Name of a pod link's node end, unique within its node namespace (the pod end is `eth0`).
pub(crate) fn pod_veth(host: u8) -> String {
    format!("p{host}")
}

/// Name of a node link's fabric end, unique within the fabric namespace (the node end is `fab0`).
pub(crate) fn fabric_port(index: u8) -> String {
    format!("n{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names() {
        assert!(check_label("tb").is_ok());
        assert!(check_label("e2e1").is_ok());
        assert!(check_label("").is_err());
        assert!(
            check_label("a-b").is_err(),
            "a hyphen would make the prefix ambiguous"
        );
        assert!(check_label("Upper").is_err());
        assert!(check_label("waytoolong").is_err());

        assert!(check_name("node", "a").is_ok());
        assert!(check_name("pod", "client-1").is_ok());
        assert!(check_name("pod", "-x").is_err());
        assert!(check_name("pod", "a_b").is_err());
        assert!(check_name("pod", "thirteenchars").is_err());
        assert!(check_name("node", FABRIC).is_err());
    }

    #[test]
    fn prefix_round_trip() {
        let prefix = bed_prefix("tb", 4242, 7);
        assert_eq!(prefix, "tb-4242-7");
        let node = scoped(&prefix, "a-1");
        assert_eq!(node, "tb-4242-7-a-1");
        assert_eq!(parse_bed_name(&node), Some(("tb", 4242, "tb-4242-7")));
        assert_eq!(parse_bed_name(&prefix), Some(("tb", 4242, "tb-4242-7")));
    }

    #[test]
    fn foreign_names_are_not_beds() {
        for name in [
            "", "tb", "tb-12", "tb-x-1", "tb-1-", "tb--1-2", "TB-1-2", "cni-1a2b",
        ] {
            assert_eq!(parse_bed_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn membership_respects_the_separator() {
        assert!(belongs_to("tb-1-1", "tb-1-1"));
        assert!(belongs_to("tb-1-1-fabric", "tb-1-1"));
        assert!(!belongs_to("tb-1-10", "tb-1-1"));
        assert!(!belongs_to("tb-1-10-a", "tb-1-1"));
    }

    #[test]
    fn address_plan() {
        assert_eq!(node_fabric_ip(1), Ipv4Addr::new(192, 168, 250, 1));
        assert_eq!(node_pod_cidr(2), (Ipv4Addr::new(10, 244, 2, 0), 24));
        assert_eq!(pod_gateway(2), Ipv4Addr::new(10, 244, 2, 1));
        assert_eq!(pod_ip(2, FIRST_POD_HOST), Ipv4Addr::new(10, 244, 2, 2));
        assert_eq!(pod_veth(17), "p17");
        assert_eq!(fabric_port(3), "n3");
    }
}
