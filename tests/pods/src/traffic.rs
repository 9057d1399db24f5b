//! The Traffic probe's oracle: netfilter's own counters on the pod's side
//! of the veth (the `output` and `input` hooks of the pod's namespace), and
//! the workload they count: TCP bulk and UDP echoes, IPv4 and IPv6.

use std::collections::BTreeMap;

use crate::{Pod, sh};

/// Named counters per direction and protocol, in `table inet nptraffic`.
pub const NFT_TRAFFIC: &str = "table inet nptraffic {
 counter tx_tcp {}
 counter tx_udp {}
 counter rx_tcp {}
 counter rx_udp {}
 chain out { type filter hook output priority 0; meta l4proto tcp counter name tx_tcp; meta l4proto udp counter name tx_udp; }
 chain in { type filter hook input priority 0; meta l4proto tcp counter name rx_tcp; meta l4proto udp counter name rx_udp; }
}";

/// (direction, protocol) → (packets, bytes) as netfilter counted them in `ns`.
pub fn nft_traffic(ns: &str) -> BTreeMap<(String, String), (u64, u64)> {
    let out = sh(&format!("ip netns exec {ns} nft -j list counters table inet nptraffic"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft json");
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("counter"))
        .filter_map(|c| {
            let (dir, proto) = c["name"].as_str()?.split_once('_')?;
            Some((
                (dir.to_string(), proto.to_string()),
                (c["packets"].as_u64()?, c["bytes"].as_u64()?),
            ))
        })
        .collect()
}

/// The peer side: a TCP sink on 5001 and a UDP echo on 5002, IPv4 and
/// IPv6; prints "ready".
pub fn traffic_peer() -> String {
    let mut s = crate::servers(&[(5001, crate::Serve::Sink)]);
    let udp = "def udp_echo(fam, addr):\n    \
               u = socket.socket(fam, socket.SOCK_DGRAM)\n    \
               if fam == socket.AF_INET6:\n        u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n    \
               u.bind((addr, 5002))\n    \
               while True:\n        d, a = u.recvfrom(65536)\n        u.sendto(d, a)\n\
               for fam, addr in [(socket.AF_INET, '0.0.0.0'), (socket.AF_INET6, '::')]:\n    \
               threading.Thread(target=udp_echo, args=(fam, addr), daemon=True).start()\n";
    let at = s.find("print('ready'").unwrap_or(s.len());
    s.insert_str(at, udp);
    s
}

/// The pod side: the bulk TCP transfers of [`crate::bulk_client`], then
/// `datagrams` UDP datagrams of growing size to the echo per family, each
/// echo awaited (so no reply reaches a closed socket).
pub fn traffic_client(pod: &Pod, datagrams: usize) -> String {
    let mut s = crate::bulk_client(pod);
    s.push_str(&format!(
        "for fam, addr in [(socket.AF_INET, \"{}\"), (socket.AF_INET6, \"{}\")]:\n    \
         u = socket.socket(fam, socket.SOCK_DGRAM); u.settimeout(10)\n    \
         for i in range({datagrams}):\n        \
         u.sendto(b'y' * (100 + 7 * i), (addr, 5002))\n        \
         assert len(u.recvfrom(65536)[0]) == 100 + 7 * i\n    \
         u.close()\n\
         print('udp done')\n",
        pod.peer_ip4, pod.peer_ip6
    ));
    s
}
