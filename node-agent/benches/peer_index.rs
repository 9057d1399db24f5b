//! Peer classes at the largest cluster size (#17): 5,000 nodes (three
//! zones, dual-stack: two addresses and two pod CIDRs each) and 100,000 pod
//! addresses spread over their CIDRs. Prints the operator's index (shards,
//! bytes), the agent's peer world built from it (bytes, resident memory it
//! added, build time) and the cost of classifying one peer address, which
//! the collector pays once per raw peer entry per scrape (never per event).
//! Prints figures; asserts nothing about speed.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use netprobe_agent::pipeline::peers::{NodeInfo, PeerKind, PeerWorld};
use netprobe_api::peerindex;

const NODES: u32 = 5_000;
const PODS: u32 = 100_000;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn node(i: u32) -> NodeInfo {
    let (hi, lo) = ((i >> 8) as u8, (i & 0xff) as u8);
    NodeInfo {
        name: format!("ip-10-0-{hi}-{lo}.eu-west-1.compute.internal"),
        zone: Some(format!("eu-west-1{}", ["a", "b", "c"][(i % 3) as usize])),
        addresses: vec![
            IpAddr::V4(Ipv4Addr::new(10, 0, hi, lo)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, i as u16, 1)),
        ],
        pod_cidrs: vec![
            format!("10.{}.{}.0/24", 64 + (i >> 8), i & 0xff)
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            format!("fd10:0:{:x}::/64", i).parse().unwrap_or_else(|e| panic!("{e}")),
        ],
    }
}

fn main() {
    let nodes: Vec<NodeInfo> = (0..NODES).map(node).collect();
    let shards = peerindex::shards(nodes);
    let total: usize = shards.iter().map(String::len).sum();
    let largest = shards.iter().map(String::len).max().unwrap_or(0);
    println!(
        "peer index: {NODES} nodes in {} ConfigMaps, {:.0} KiB in all, largest shard {:.0} KiB (ConfigMap limit 1024 KiB)",
        shards.len(),
        total as f64 / 1024.0,
        largest as f64 / 1024.0
    );

    let rss0 = rss_kib();
    let started = Instant::now();
    let mut parsed = Vec::new();
    for s in &shards {
        parsed.extend(peerindex::parse_shard(s).unwrap_or_else(|e| panic!("{e}")));
    }
    // This node's 110 pods (the kubelet's default maximum).
    let local = (0..110u32).map(|p| IpAddr::V4(Ipv4Addr::new(10, 64, 0, p as u8 + 2)));
    let world = PeerWorld::new(
        Some("ip-10-0-0-0.eu-west-1.compute.internal"),
        parsed,
        local,
        vec!["172.20.0.0/16".parse().unwrap_or_else(|e| panic!("{e}"))],
    );
    let built = started.elapsed();
    let rss1 = rss_kib();
    println!(
        "peer world: {} nodes, ~{:.1} MiB by its own count, resident memory +{:.1} MiB (bound: 20 MiB), built in {:.0} ms",
        world.nodes(),
        world.approx_bytes() as f64 / 1048576.0,
        rss1.saturating_sub(rss0) as f64 / 1024.0,
        built.as_secs_f64() * 1e3
    );

    // 100,000 pod addresses over the nodes' CIDRs, then external ones.
    let pods: Vec<IpAddr> = (0..PODS)
        .map(|p| {
            let n = p % NODES;
            IpAddr::V4(Ipv4Addr::new(
                10,
                64 + (n >> 8) as u8,
                (n & 0xff) as u8,
                (p / NODES) as u8 + 2,
            ))
        })
        .collect();
    let external: Vec<IpAddr> = (0..PODS).map(|p| IpAddr::V4(Ipv4Addr::from(0x0800_0000 + p))).collect();
    for (what, addrs, want) in [
        ("pod", &pods, PeerKind::Pod),
        ("external", &external, PeerKind::External),
    ] {
        let started = Instant::now();
        let mut ok = 0u32;
        for _ in 0..5 {
            for a in addrs.iter() {
                if black_box(world.classify(*a)).kind == want {
                    ok += 1;
                }
            }
        }
        let ns = started.elapsed().as_nanos() as f64 / (5 * addrs.len()) as f64;
        println!(
            "classify a {what} address: {ns:.0} ns ({} of {} as {})",
            ok / 5,
            addrs.len(),
            want.as_str()
        );
    }
}
