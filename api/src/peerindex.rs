//! The peer index: what every agent needs to know of the cluster's nodes to
//! name a peer's kind, node and zone (peer classes), published by the
//! operator in a few ConfigMaps instead of every agent watching every Node.
//! A Node object changes every few minutes (status, conditions, images) and
//! weighs kilobytes; at 5,000 nodes a Node watch in each agent would fan
//! each of those changes out 5,000 times. The index holds only the name,
//! zone, addresses and pod CIDRs (~150 bytes a node), is sharded by node
//! name so one node joining rewrites one shard of about 1/16 of it, and is
//! written only when its content changes.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Label on every index ConfigMap (the agents' watch selects it).
pub const PEER_INDEX_LABEL: &str = "netprobe.dev/peer-index";
/// The data key of a shard: a JSON array of [`IndexedNode`], sorted by name.
pub const PEER_INDEX_DATA_KEY: &str = "nodes.json";
/// Shards of the index: 5,000 nodes make 16 ConfigMaps of ~50 KB.
pub const PEER_INDEX_SHARDS: u32 = 16;
/// The zone label the index reads.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// One node as peers need it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexedNode {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "z", default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<IpNet>,
}

impl IndexedNode {
    /// A Node's entry: its zone label, its IP addresses (InternalIP and
    /// ExternalIP; hostnames are not addresses) and its pod CIDRs. Fields it
    /// cannot parse are left out.
    pub fn from_node(node: &Node) -> IndexedNode {
        let name = node.metadata.name.clone().unwrap_or_default();
        let zone = node.metadata.labels.as_ref().and_then(|l| l.get(ZONE_LABEL)).cloned();
        let mut addresses: Vec<IpAddr> = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        addresses.sort();
        addresses.dedup();
        let spec = node.spec.as_ref();
        let mut pod_cidrs: Vec<IpNet> = spec
            .and_then(|s| s.pod_cidrs.clone())
            .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.parse::<IpNet>().ok().map(|n| n.trunc()))
            .collect();
        pod_cidrs.sort();
        pod_cidrs.dedup();
        IndexedNode {
            name,
            zone,
            addresses,
            pod_cidrs,
        }
    }
}

/// The shard a node's entry lives in (stable across versions: a hash of the
/// name, not a process-seeded one).
pub fn shard_of(node: &str) -> u32 {
    let d = Sha256::digest(node.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % PEER_INDEX_SHARDS
}

/// The ConfigMap name of shard `i`.
pub fn shard_name(i: u32) -> String {
    format!("netprobe-peers-{i:02}")
}

/// The shards' contents from every node's entry: deterministic bytes, so
/// an unchanged shard is never rewritten.
pub fn shards(mut nodes: Vec<IndexedNode>) -> Vec<String> {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<Vec<IndexedNode>> = vec![Vec::new(); PEER_INDEX_SHARDS as usize];
    for n in nodes {
        out[shard_of(&n.name) as usize].push(n);
    }
    out.iter()
        .map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into()))
        .collect()
}

/// A shard's entries; an unreadable shard is an error the agent logs (its
/// nodes are then unknown, their peers `external`).
pub fn parse_shard(text: &str) -> Result<Vec<IndexedNode>, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_becomes_a_compact_entry_and_shards_round_trip() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "labels": {ZONE_LABEL: "eu-1a"}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]},
            "status": {"addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "InternalIP", "address": "192.168.0.1"},
                {"type": "InternalIP", "address": "192.168.0.1"}]}
        }))
        .unwrap();
        let e = IndexedNode::from_node(&node);
        assert_eq!(e.zone.as_deref(), Some("eu-1a"));
        assert_eq!(e.addresses, vec!["192.168.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(e.pod_cidrs.len(), 2);
        let s = shards(vec![e.clone()]);
        assert_eq!(s.len(), PEER_INDEX_SHARDS as usize);
        let i = shard_of("n1") as usize;
        assert_eq!(parse_shard(&s[i]).unwrap(), vec![e]);
        assert!(s.iter().enumerate().all(|(j, t)| j == i || t == "[]"));
        // ~150 bytes a node: 5,000 nodes fit 16 shards far below 1 MiB each.
        assert!(s[i].len() < 150, "{}", s[i]);
    }
}
