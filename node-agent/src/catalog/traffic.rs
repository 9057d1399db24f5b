//! Traffic: IP bytes and packets each pod's sockets send and receive, by
//! protocol. Kernel side: `ebpf/src/bpf/probes/traffic.bpf.c`, run by the
//! `cgroup_skb` programs it shares with Dns (`probes/skb.bpf.c`, on the
//! cgroup root, selected by its bit in `np_config.types`).

use std::collections::BTreeMap;

use netprobe_api::ProbeType;
use netprobe_api::plan::PlannedProbe;
use netprobe_ebpf::layout::{TRAFFIC_DIRECTIONS, TRAFFIC_PROTOCOLS, TYPE_TRAFFIC, metric};
use netprobe_ebpf::programs;

use super::{FamilySpec, Fill, Hook, KernelFacts, Needs, ProbeKind, peers};

pub struct Traffic;

/// The `cgroup_skb` programs Traffic and Dns share, one per direction.
pub(super) fn skb_programs() -> Vec<(&'static str, Hook)> {
    vec![
        (programs::SKB_EGRESS, Hook::CgroupSkb { egress: true }),
        (programs::SKB_INGRESS, Hook::CgroupSkb { egress: false }),
    ]
}

pub const BYTES: &str = "netprobe_traffic_bytes_total";
pub const PACKETS: &str = "netprobe_traffic_packets_total";

impl ProbeKind for Traffic {
    fn tracepoints(&self) -> &'static [&'static str] {
        &[]
    }

    fn programs(&self, _facts: &KernelFacts) -> Result<Vec<(&'static str, Hook)>, String> {
        Ok(skb_programs())
    }

    fn metrics(&self) -> &'static [u16] {
        &[metric::TRAFFIC_BYTES, metric::TRAFFIC_PACKETS]
    }

    fn config_bit(&self) -> u32 {
        TYPE_TRAFFIC
    }

    fn needs(&self, p: &PlannedProbe, needs: &mut Needs) {
        peers::needs(p.peers(), needs);
    }

    fn families(&self, p: &PlannedProbe, _bounds: &BTreeMap<u32, Vec<u64>>) -> Vec<FamilySpec> {
        vec![
            FamilySpec::counter(
                ProbeType::Traffic,
                BYTES,
                "IP bytes the pod's sockets sent (tx) and received (rx), by protocol.",
                &["direction", "protocol"],
            )
            .with_peers(p.peers()),
            FamilySpec::counter(
                ProbeType::Traffic,
                PACKETS,
                "IP packets the pod's sockets sent (tx) and received (rx), by protocol; a GSO or GRO \
                 aggregate counts once, as netfilter counts it.",
                &["direction", "protocol"],
            )
            .with_peers(p.peers()),
        ]
    }

    fn fill(&self, f: &FamilySpec, out: &mut Fill<'_>) {
        let m = match f.name.as_ref() {
            BYTES => metric::TRAFFIC_BYTES,
            _ => metric::TRAFFIC_PACKETS,
        };
        let labels = |sub: u16| -> Option<[&'static str; 2]> {
            let (dir, proto) = (
                usize::from(sub) / TRAFFIC_PROTOCOLS.len(),
                usize::from(sub) % TRAFFIC_PROTOCOLS.len(),
            );
            Some([TRAFFIC_DIRECTIONS.get(dir)?, TRAFFIC_PROTOCOLS[proto]])
        };
        if let Some(plan) = &f.peers {
            let own = |sub: u16| labels(sub).map(Vec::from).unwrap_or_else(|| vec!["unknown", "unknown"]);
            return peers::fill_counter(out, plan, m, &own);
        }
        let values: Vec<(u16, u64)> = out.counters.of(m).collect();
        for (sub, v) in values {
            if let Some(l) = labels(sub) {
                out.add(&l, v);
            }
        }
    }
}
