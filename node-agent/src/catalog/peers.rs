//! Peer labels, shared by the types that have `peers` (TcpRetransmits,
//! TcpResets, TcpConnectLatency): a target's raw per-peer counters become
//! series by the probe's peer labels, and what the bounded peer map could
//! not hold is the difference to the pod's own counter, labelled unknown,
//! so the pod's total over its peers stays exact.

use std::collections::BTreeMap;

use netprobe_api::probes::{PeerLabel, PeersPlan};
use netprobe_ebpf::layout::{PeerKey, ROLES, metric};

use super::{Fill, Needs};
use crate::pipeline::peers::{PeerKind, PeerWorld, addr_of};
use netprobe_ebpf::layout::POD_PEERS;

/// A probe with peers asks the kernel to count its targets per peer.
pub(super) fn needs(p: Option<&PeersPlan>, needs: &mut Needs) {
    if p.is_some() {
        needs.target_flags |= POD_PEERS;
    }
}

/// The peer label values of raw peer `k` (None: the remainder no peer
/// entry holds), in the plan's label order.
fn values(world: &PeerWorld, plan: &PeersPlan, k: Option<&PeerKey>) -> Vec<String> {
    let addr = k.and_then(addr_of);
    let peer = addr.map(|a| world.classify(a));
    let kind = peer.map_or(PeerKind::Unknown, |p| p.kind);
    let node = peer.and_then(|p| p.node);
    plan.labels
        .iter()
        .map(|l| match l {
            PeerLabel::PeerKind => kind.as_str().to_string(),
            PeerLabel::PeerNode => node.map(|i| world.node_name(i).to_string()).unwrap_or_default(),
            PeerLabel::PeerZone => node.and_then(|i| world.node_zone(i)).unwrap_or_default().to_string(),
            PeerLabel::PeerClass => match (kind, addr) {
                (PeerKind::External, Some(a)) => plan.class_of(a).unwrap_or("external").to_string(),
                (PeerKind::Unknown, _) => "unknown".to_string(),
                _ => String::new(),
            },
            PeerLabel::Role => match k {
                Some(k) => ROLES.get(k.role as usize).copied().unwrap_or("unknown").to_string(),
                None => "unknown".to_string(),
            },
            PeerLabel::Port => match k {
                Some(k) if k.family != 0 => k.port.to_string(),
                _ => "unknown".to_string(),
            },
            PeerLabel::Zone => world.zone().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Counter `m` of a target by peer, after the labels `own(sub)` gives each
/// of its sub values (a reason, a direction; empty for none).
pub(super) fn fill_counter(out: &mut Fill<'_>, plan: &PeersPlan, m: u16, own: &dyn Fn(u16) -> Vec<&'static str>) {
    let mut by_sub: BTreeMap<u16, u64> = BTreeMap::new();
    for (sub, v) in out.counters.of(m) {
        *by_sub.entry(sub).or_default() += v;
    }
    let mut add: Vec<(Vec<String>, u64)> = Vec::new();
    for (k, v) in out.counters.peers.iter().filter(|(k, _)| k.metric == m) {
        let sub = u16::from(k.sub);
        if let Some(left) = by_sub.get_mut(&sub) {
            *left = left.saturating_sub(*v);
        }
        add.push((labels(own(sub), values(out.world, plan, Some(k))), *v));
    }
    for (sub, left) in by_sub {
        if left > 0 {
            add.push((labels(own(sub), values(out.world, plan, None)), left));
        }
    }
    for (extra, v) in add {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        out.add(&extra, v);
    }
}

fn labels(own: Vec<&'static str>, peer: Vec<String>) -> Vec<String> {
    own.into_iter().map(str::to_string).chain(peer).collect()
}

/// The connect latency histogram by peer (the kernel's per-peer
/// histograms, flattened into bucket and sum entries), and the remainder
/// against the pod's own histogram.
pub(super) fn fill_connect_histogram(out: &mut Fill<'_>, plan: &PeersPlan) {
    let mut left_buckets: BTreeMap<u16, u64> = BTreeMap::new();
    for (sub, v) in out.counters.of(metric::CONNECT_BUCKET) {
        *left_buckets.entry(sub & 0xff).or_default() += v;
    }
    let mut left_sum: u64 = out.counters.of(metric::CONNECT_SUM).map(|(_, v)| v).sum();
    let mut per: BTreeMap<Vec<String>, (u64, BTreeMap<u16, u64>)> = BTreeMap::new();
    for (k, v) in out.counters.peers {
        let e = match k.metric {
            metric::CONNECT_BUCKET | metric::CONNECT_SUM => per.entry(values(out.world, plan, Some(k))).or_default(),
            _ => continue,
        };
        if k.metric == metric::CONNECT_SUM {
            e.0 += v;
            left_sum = left_sum.saturating_sub(*v);
        } else {
            *e.1.entry(u16::from(k.sub)).or_default() += v;
            if let Some(l) = left_buckets.get_mut(&u16::from(k.sub)) {
                *l = l.saturating_sub(*v);
            }
        }
    }
    left_buckets.retain(|_, v| *v > 0);
    if !left_buckets.is_empty() {
        let e = per.entry(values(out.world, plan, None)).or_default();
        e.0 += left_sum;
        for (b, n) in left_buckets {
            *e.1.entry(b).or_default() += n;
        }
    }
    for (extra, (sum, buckets)) in per {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let e = out.series.entry((out.key)(&extra)).or_default();
        e.sum_ns += sum;
        for (b, n) in buckets {
            *e.buckets.entry(b).or_default() += n;
        }
    }
}
