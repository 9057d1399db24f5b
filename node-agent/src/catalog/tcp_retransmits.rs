//! TcpRetransmits: retransmitted segments per pod (and per peer), as
//! `TcpRetransSegs` counts them. Kernel side: `tp_btf/tcp_retransmit_skb`
//! and `tp_btf/tcp_retransmit_synack` in `ebpf/src/bpf/probes/tcp_retransmits.bpf.c`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netprobe_api::ProbeType;
use netprobe_api::plan::PlannedProbe;
use netprobe_ebpf::layout::{POD_PEERS, PeerKey, TYPE_RETRANS, metric};
use netprobe_ebpf::programs;

use super::{FamilySpec, Fill, Hook, KernelFacts, Needs, ProbeKind, peers};

pub struct TcpRetransmits;

const FAMILY: &str = "netprobe_tcp_retransmits_total";

impl ProbeKind for TcpRetransmits {
    fn tracepoints(&self) -> &'static [&'static str] {
        &["tcp_retransmit_skb", "tcp_retransmit_synack", "inet_sock_set_state"]
    }

    fn programs(&self, facts: &KernelFacts) -> Result<Vec<(&'static str, Hook)>, String> {
        // Linux 6.16 added the attempt's error to the tracepoint.
        let p = if facts.tracepoint("tcp_retransmit_skb")? >= 3 {
            programs::RETRANSMIT_SKB
        } else {
            programs::RETRANSMIT_SKB_V1
        };
        facts.tracepoint("tcp_retransmit_synack")?;
        facts.tracepoint("inet_sock_set_state")?;
        Ok(vec![
            (p, Hook::Tracepoint("tcp_retransmit_skb")),
            (programs::RETRANSMIT_SYNACK, Hook::Tracepoint("tcp_retransmit_synack")),
            // A socket's count is reconciled with the kernel's when it
            // closes, in the state-change program other types share.
            (programs::SOCK_STATE, Hook::Tracepoint("inet_sock_set_state")),
        ])
    }

    fn partial(&self, facts: &KernelFacts) -> Option<String> {
        (facts.args("tcp_retransmit_skb") < 3).then(|| {
            "retransmissions the local stack fails to send (counted by the kernel in \
             TcpExtTCPRetransFail, e.g. a full device backlog in a connection storm) are not \
             visible before Linux 6.16"
                .into()
        })
    }

    fn metrics(&self) -> &'static [u16] {
        &[metric::RETRANS_SEGS]
    }

    fn config_bit(&self) -> u32 {
        TYPE_RETRANS
    }

    fn needs(&self, p: &PlannedProbe, needs: &mut Needs) {
        if let PlannedProbe::TcpRetransmits(o) = p {
            if o.peer_labels {
                needs.target_flags |= POD_PEERS;
            }
            peers::needs(o.peers.as_ref(), needs);
        }
    }

    fn families(&self, p: &PlannedProbe, _bounds: &BTreeMap<u32, Vec<u64>>) -> Vec<FamilySpec> {
        let raw = matches!(p, PlannedProbe::TcpRetransmits(o) if o.peer_labels);
        vec![
            FamilySpec::counter(
                ProbeType::TcpRetransmits,
                FAMILY,
                "TCP segments retransmitted (as TcpRetransSegs counts them).",
                if raw { &["peer_address", "peer_port"] } else { &[] },
            )
            .with_peers(p.peers()),
        ]
    }

    fn fill(&self, f: &FamilySpec, out: &mut Fill<'_>) {
        if let Some(plan) = &f.peers {
            peers::fill_counter(out, plan, metric::RETRANS_SEGS, &|_| Vec::new());
            return;
        }
        let total: u64 = out.counters.of(metric::RETRANS_SEGS).map(|(_, v)| v).sum();
        // The family carries raw peer labels exactly when the plan asked for them.
        if f.extra_labels.is_empty() {
            if total > 0 {
                out.add(&[], total);
            }
            return;
        }
        let mut by_peers = 0;
        for (pk, v) in out
            .counters
            .peers
            .iter()
            .filter(|(k, _)| k.metric == metric::RETRANS_SEGS)
        {
            by_peers += v;
            let port = pk.port.to_string();
            out.add(&[&peer_addr(pk), &port], *v);
        }
        // Peers the bounded peer map could not hold: the pod total stays exact.
        if total > by_peers {
            out.add(&["other", "other"], total - by_peers);
        }
    }
}

fn peer_addr(k: &PeerKey) -> String {
    match k.family {
        2 => Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3]).to_string(),
        _ => {
            let v6 = Ipv6Addr::from(k.addr);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4).to_string(),
                None => v6.to_string(),
            }
        }
    }
}
