//! Where a connection's other end is: the bounded peer classes of
//! TcpRetransmits, TcpResets and TcpConnectLatency (`peers`). The kernel
//! counts per raw peer (address, server port, role; `ebpf/src/bpf/peers.h`);
//! this turns an address into its kind, node and zone from what the agent
//! knows of the cluster, compactly: per node its name, zone, addresses and
//! pod CIDRs (the operator's peer index, `netprobe_api::peerindex`, not a
//! Node watch), this node's pods' addresses, and the service CIDRs the
//! agent is given (`--service-cidrs`). About 200 bytes a
//! node, so 5,000 nodes stay near 1 MiB (the benchmark prints it). Nothing
//! here knows a pod of another node by name: pods elsewhere are known by
//! their node's pod CIDR only.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;
use netprobe_ebpf::layout::PeerKey;

/// What a peer is, as `peer_kind` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerKind {
    /// This node itself: loopback, or one of its own addresses.
    Host,
    /// Another node's address.
    Node,
    /// A ClusterIP (seen before translation, for the client's side).
    Service,
    /// An address of a pod (a known pod IP, or in a node's pod CIDR).
    Pod,
    External,
    /// The kernel could not read the peer (a reset for a segment whose
    /// headers were not readable).
    Unknown,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Host => "host",
            PeerKind::Node => "node",
            PeerKind::Service => "service",
            PeerKind::Pod => "pod",
            PeerKind::External => "external",
            PeerKind::Unknown => "unknown",
        }
    }
}

/// One node as peers need it: the operator's peer index entry.
pub use netprobe_api::peerindex::IndexedNode as NodeInfo;

/// A classified peer: its kind and, for pods, nodes and the host, the node
/// it is on (an index into the world's nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub kind: PeerKind,
    pub node: Option<usize>,
}

/// What the agent knows to classify peers. Built whole and swapped (an
/// `Arc`), so the collector reads one consistent view.
#[derive(Clone, Debug, Default)]
pub struct PeerWorld {
    /// This node's name (its index in `nodes` when the cluster knows it).
    this_node: Option<usize>,
    nodes: Vec<NodeInfo>,
    node_addrs: HashMap<IpAddr, usize>,
    /// Pod CIDRs by prefix length, then network → node.
    pod_cidrs: Vec<(u8, HashMap<IpNet, usize>)>,
    /// Addresses of this node's pods (classified `pod` even where pod
    /// CIDRs are not per node, as with many CNIs).
    local_pods: HashMap<IpAddr, usize>,
    services: Vec<IpNet>,
}

impl PeerWorld {
    /// The world of `nodes`, seen from `this_node`, with this node's pods'
    /// addresses and the cluster's service CIDRs.
    pub fn new(
        this_node: Option<&str>,
        mut nodes: Vec<NodeInfo>,
        local_pods: impl IntoIterator<Item = IpAddr>,
        services: Vec<IpNet>,
    ) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        let this = this_node.and_then(|n| nodes.binary_search_by(|x| x.name.as_str().cmp(n)).ok());
        let mut node_addrs = HashMap::new();
        let mut by_len: HashMap<u8, HashMap<IpNet, usize>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for a in &n.addresses {
                node_addrs.insert(canonical(*a), i);
            }
            for c in &n.pod_cidrs {
                by_len.entry(c.prefix_len()).or_default().insert(c.trunc(), i);
            }
        }
        let mut pod_cidrs: Vec<(u8, HashMap<IpNet, usize>)> = by_len.into_iter().collect();
        // Longest prefix first.
        pod_cidrs.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        let local_pods = match this {
            Some(i) => local_pods.into_iter().map(|a| (canonical(a), i)).collect(),
            None => HashMap::new(),
        };
        PeerWorld {
            this_node: this,
            nodes,
            node_addrs,
            pod_cidrs,
            local_pods,
            services,
        }
    }

    /// An empty world (standalone mode, or before the first Node list):
    /// loopback is the host, service CIDRs are services, the rest external.
    pub fn standalone(services: Vec<IpNet>) -> Arc<Self> {
        Arc::new(PeerWorld::new(None, Vec::new(), [], services))
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes this world holds, roughly (the benchmark's figure).
    pub fn approx_bytes(&self) -> usize {
        let strings: usize = self
            .nodes
            .iter()
            .map(|n| n.name.capacity() + n.zone.as_ref().map_or(0, String::capacity))
            .sum();
        let vecs: usize = self
            .nodes
            .iter()
            .map(|n| n.addresses.capacity() * size_of::<IpAddr>() + n.pod_cidrs.capacity() * size_of::<IpNet>())
            .sum();
        let entry = size_of::<IpAddr>() + size_of::<usize>() + 8;
        let maps = (self.node_addrs.capacity() + self.local_pods.capacity()) * entry
            + self
                .pod_cidrs
                .iter()
                .map(|(_, m)| m.capacity() * (size_of::<IpNet>() + size_of::<usize>() + 8))
                .sum::<usize>();
        self.nodes.capacity() * size_of::<NodeInfo>() + strings + vecs + maps
    }

    /// This node's zone (`zone` on every series of a probe that asks).
    pub fn zone(&self) -> Option<&str> {
        self.this_node.and_then(|i| self.nodes[i].zone.as_deref())
    }

    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    pub fn node_zone(&self, i: usize) -> Option<&str> {
        self.nodes[i].zone.as_deref()
    }

    /// The kind of `addr`, and its node where that is known. The host comes
    /// first (a pod talking to its own node), then nodes, services, pods.
    pub fn classify(&self, addr: IpAddr) -> Peer {
        let addr = canonical(addr);
        if addr.is_loopback() {
            return Peer {
                kind: PeerKind::Host,
                node: self.this_node,
            };
        }
        if let Some(&i) = self.node_addrs.get(&addr) {
            let kind = if Some(i) == self.this_node {
                PeerKind::Host
            } else {
                PeerKind::Node
            };
            return Peer { kind, node: Some(i) };
        }
        if self.services.iter().any(|s| s.contains(&addr)) {
            return Peer {
                kind: PeerKind::Service,
                node: None,
            };
        }
        if let Some(&i) = self.local_pods.get(&addr) {
            return Peer {
                kind: PeerKind::Pod,
                node: Some(i),
            };
        }
        for (len, nets) in &self.pod_cidrs {
            if let Ok(n) = IpNet::new(addr, *len)
                && let Some(&i) = nets.get(&n.trunc())
            {
                return Peer {
                    kind: PeerKind::Pod,
                    node: Some(i),
                };
            }
        }
        Peer {
            kind: PeerKind::External,
            node: None,
        }
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's IPv4 peer) as IPv4.
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
        v4 => v4,
    }
}

/// The peer address of a kernel key; None when the kernel could not read it.
pub fn addr_of(k: &PeerKey) -> Option<IpAddr> {
    match k.family {
        2 => Some(IpAddr::V4(Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3]))),
        10 => Some(canonical(IpAddr::V6(Ipv6Addr::from(k.addr)))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, zone: &str, addr: &str, cidr: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            zone: Some(zone.into()),
            addresses: vec![addr.parse().unwrap()],
            pod_cidrs: vec![cidr.parse().unwrap()],
        }
    }

    fn world() -> PeerWorld {
        PeerWorld::new(
            Some("a"),
            vec![
                node("b", "z2", "192.168.0.2", "10.244.2.0/24"),
                node("a", "z1", "192.168.0.1", "10.244.1.0/24"),
                NodeInfo {
                    pod_cidrs: vec!["fd00:10:244:3::/64".parse().unwrap(), "10.244.3.0/25".parse().unwrap()],
                    ..node("c", "z2", "192.168.0.3", "10.244.3.0/25")
                },
            ],
            ["172.16.9.9".parse().unwrap()],
            vec!["10.96.0.0/12".parse().unwrap()],
        )
    }

    fn kind(w: &PeerWorld, a: &str) -> (PeerKind, Option<String>) {
        let p = w.classify(a.parse().unwrap());
        (p.kind, p.node.map(|i| w.node_name(i).to_string()))
    }

    #[test]
    fn kinds_nodes_and_zones() {
        let w = world();
        assert_eq!(w.zone(), Some("z1"));
        assert_eq!(kind(&w, "127.0.0.1"), (PeerKind::Host, Some("a".into())));
        assert_eq!(kind(&w, "192.168.0.1"), (PeerKind::Host, Some("a".into())));
        assert_eq!(kind(&w, "192.168.0.2"), (PeerKind::Node, Some("b".into())));
        assert_eq!(kind(&w, "::ffff:192.168.0.3"), (PeerKind::Node, Some("c".into())));
        assert_eq!(kind(&w, "10.96.0.10"), (PeerKind::Service, None));
        assert_eq!(kind(&w, "10.244.2.7"), (PeerKind::Pod, Some("b".into())));
        assert_eq!(kind(&w, "10.244.3.7"), (PeerKind::Pod, Some("c".into())));
        assert_eq!(kind(&w, "10.244.3.200"), (PeerKind::External, None));
        assert_eq!(kind(&w, "fd00:10:244:3::5"), (PeerKind::Pod, Some("c".into())));
        assert_eq!(kind(&w, "172.16.9.9"), (PeerKind::Pod, Some("a".into())));
        assert_eq!(kind(&w, "8.8.8.8"), (PeerKind::External, None));
        let i = w.classify("10.244.2.7".parse().unwrap()).node.unwrap();
        assert_eq!(w.node_zone(i), Some("z2"));
    }

    #[test]
    fn standalone_knows_loopback_and_services_only() {
        let w = PeerWorld::standalone(vec!["10.96.0.0/12".parse().unwrap()]);
        assert_eq!(kind(&w, "::1").0, PeerKind::Host);
        assert_eq!(kind(&w, "10.96.1.1").0, PeerKind::Service);
        assert_eq!(kind(&w, "10.244.2.7").0, PeerKind::External);
        assert_eq!(w.zone(), None);
    }
}
