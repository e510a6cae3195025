//! The bed's wiring as iproute2 commands: the fabric switch, a node on it, a pod behind its node.
//! One `ip` batch per namespace keeps a node or pod to a handful of processes.

use anyhow::Result;

use super::{Node, PROXY_IP, SERVICE_CIDR, exec, iproute, naming};

/// The switch all nodes hang off: a bridge with no address, so nothing can reach it by IP.
pub(crate) fn create_fabric(fabric: &str) -> Result<()> {
    iproute::ip(&["netns", "add", fabric])?;
    let setup = [
        "link set lo up",
        "link add br0 type bridge",
        "link set br0 up",
    ];
    iproute::batch(Some(fabric), &setup.map(String::from), false)
}

/// Node `index` in namespace `netns`: a port on the fabric, the proxy address on `lo`, the
/// service blackhole, and pod CIDR routes to and from every node in `peers`.
pub(crate) fn create_node(fabric: &str, netns: &str, index: u8, peers: &[&Node]) -> Result<()> {
    let ip = naming::node_fabric_ip(index);
    let (cidr, cidr_len) = naming::node_pod_cidr(index);
    iproute::ip(&["netns", "add", netns])?;
    // Before any interface exists: new interfaces copy `conf.default`, and the kernel applies the
    // larger of `conf.all.rp_filter` and the interface's own value.
    exec::set_sysctls(
        netns,
        &[
            ("ipv4.ip_forward", "1"),
            ("ipv4.conf.all.rp_filter", "0"),
            ("ipv4.conf.default.rp_filter", "0"),
        ],
    )?;
    let port = naming::fabric_port(index);
    let fabric_side = [
        format!("link add {port} type veth peer name fab0 netns {netns}"),
        format!("link set {port} master br0 up"),
    ];
    iproute::batch(Some(fabric), &fabric_side, false)?;
    let mut node_side = vec![
        "link set lo up".to_owned(),
        "link set fab0 up".to_owned(),
        format!("address add {ip}/24 dev fab0"),
        format!("address add {PROXY_IP}/32 dev lo"),
        format!("route add blackhole {SERVICE_CIDR}"),
    ];
    for peer in peers {
        let (peer_cidr, peer_len) = peer.pod_cidr;
        node_side.push(format!("route add {peer_cidr}/{peer_len} via {}", peer.ip));
    }
    iproute::batch(Some(netns), &node_side, false)?;
    let route = [format!("route add {cidr}/{cidr_len} via {ip}")];
    peers
        .iter()
        .try_for_each(|peer| iproute::batch(Some(&peer.netns), &route, false))
}

/// Pod `host` of node `node_index` in namespace `netns`, linked to the node namespace
/// `node_netns` by a veth whose node end is [`naming::pod_veth`].
pub(crate) fn create_pod(node_netns: &str, netns: &str, node_index: u8, host: u8) -> Result<()> {
    let ip = naming::pod_ip(node_index, host);
    let gateway = naming::pod_gateway(node_index);
    let veth = naming::pod_veth(host);
    iproute::ip(&["netns", "add", netns])?;
    // Created inside the node namespace with its peer placed straight into the pod's: no
    // interface name ever exists in the host namespace.
    let node_side = [
        format!("link add {veth} type veth peer name eth0 netns {netns}"),
        format!("link set {veth} up"),
        format!("address add {gateway}/32 dev {veth}"),
        format!("route add {ip}/32 dev {veth}"),
    ];
    iproute::batch(Some(node_netns), &node_side, false)?;
    let pod_side = [
        "link set lo up".to_owned(),
        "link set eth0 up".to_owned(),
        format!("address add {ip}/32 dev eth0"),
        format!("route add {gateway}/32 dev eth0 scope link"),
        format!("route add default via {gateway} dev eth0"),
        format!("route add blackhole {SERVICE_CIDR}"),
    ];
    iproute::batch(Some(netns), &pod_side, false)
}
