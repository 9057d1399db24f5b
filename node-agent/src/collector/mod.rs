//! Where kernel state becomes a metric: per-slot counters read from the
//! kernel are aggregated into each plan's series (by its granularity, its
//! drop-reason filter and its histogram buckets), bounded by the plan's
//! series budget. Pure: the agent hands in a snapshot and gets families.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netprobe_api::plan::PlannedProbe;
use netprobe_api::{Granularity, ProbePlan};
use netprobe_ebpf::layout::{self, CounterKey, PeerKey, metric};
use prometheus::proto::{Bucket, Counter, Histogram, LabelPair, Metric, MetricFamily, MetricType};

use crate::desired::{Desired, KernelState, Owner, Target};
use crate::manager::Snapshot;

/// Label value of the one series that absorbs everything past the budget.
pub const OVERFLOW: &str = "_overflow";

/// Names of kernel drop reasons, by value (from the kernel's BTF).
pub type ReasonNames = BTreeMap<u16, String>;

/// Series admitted under each plan's budget, remembered across scrapes so a
/// series never flips between its own name and the overflow.
#[derive(Default, Debug)]
pub struct Budget {
    admitted: BTreeMap<String, BTreeSet<Vec<String>>>,
    exhausted: BTreeSet<String>,
}

impl Budget {
    /// Plans that had more series than their budget at the last render.
    pub fn exhausted(&self) -> &BTreeSet<String> {
        &self.exhausted
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

/// Owner label names for a granularity.
fn owner_label_names(g: Granularity, standalone: bool) -> &'static [&'static str] {
    if standalone {
        return &["cgroup"];
    }
    match g {
        Granularity::Pod => &["namespace", "pod"],
        Granularity::Workload => &["namespace", "workload"],
        Granularity::Namespace => &["namespace"],
    }
}

fn owner_label_values(o: &Owner, g: Granularity) -> Vec<String> {
    match o {
        Owner::Cgroup { path } => vec![path.clone()],
        Owner::Pod {
            namespace,
            pod,
            workload,
        } => match g {
            Granularity::Pod => vec![namespace.clone(), pod.clone()],
            Granularity::Workload => vec![namespace.clone(), workload.clone().unwrap_or_else(|| pod.clone())],
            Granularity::Namespace => vec![namespace.clone()],
        },
    }
}

/// Values of one series: a counter or a histogram over kernel bucket indices.
#[derive(Clone, Debug, Default, PartialEq)]
struct Acc {
    value: u64,
    /// By kernel bucket index (histograms only).
    buckets: BTreeMap<u16, u64>,
    sum_ns: u64,
}

/// A family under construction: series key (owner labels + extra labels) → values.
struct Fam {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    extra_labels: &'static [&'static str],
    series: BTreeMap<Vec<String>, Acc>,
    /// Histogram bounds of the plan (seconds) and the kernel's union bounds (ns).
    bounds: Option<(Vec<f64>, Vec<u64>)>,
    /// Label values this family may export (the drop-reason allow-list).
    allow: Option<Vec<String>>,
}

fn fam(name: &'static str, help: &'static str, kind: MetricType, extra: &'static [&'static str]) -> Fam {
    Fam {
        name,
        help,
        kind,
        extra_labels: extra,
        series: BTreeMap::new(),
        bounds: None,
        allow: None,
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

/// Render every plan's families from one kernel snapshot.
pub fn render(
    desired: &Desired,
    kernel: &KernelState,
    slots: &BTreeMap<String, u32>,
    snap: &Snapshot,
    reasons: &ReasonNames,
    standalone: bool,
    budget: &mut Budget,
) -> Vec<MetricFamily> {
    // Counters by slot, once.
    let mut by_slot: BTreeMap<u32, Vec<(&CounterKey, u64)>> = BTreeMap::new();
    for (k, v) in &snap.counters {
        by_slot.entry(k.slot).or_default().push((k, *v));
    }
    let mut peers_by_slot: BTreeMap<u32, Vec<(&PeerKey, u64)>> = BTreeMap::new();
    for (k, v) in &snap.peers {
        peers_by_slot.entry(k.slot).or_default().push((k, *v));
    }

    let mut out: BTreeMap<&'static str, MetricFamily> = BTreeMap::new();
    budget.exhausted.clear();
    for (plan_key, pt) in &desired.plans {
        let plan = &pt.plan;
        let g = plan.metrics.granularity;
        let mut fams = plan_families(plan, kernel);
        for target_key in &pt.targets {
            let (Some(t), Some(slot)) = (desired.targets.get(target_key), slots.get(target_key)) else {
                continue;
            };
            add_target(&mut fams, t, g, by_slot.get(slot), peers_by_slot.get(slot), reasons);
        }
        let admitted = budget.admitted.entry(plan_key.clone()).or_default();
        let max = plan.metrics.max_series_per_node as usize;
        // Forget series that no longer exist, then admit new ones in order.
        let present: BTreeSet<Vec<String>> = fams
            .iter()
            .flat_map(|f| f.series.keys().map(|k| series_id(f.name, k)))
            .collect();
        admitted.retain(|s| present.contains(s));
        let mut over = false;
        for f in &mut fams {
            let mut overflow = Acc::default();
            let mut any_overflow = false;
            let keys: Vec<Vec<String>> = f.series.keys().cloned().collect();
            for k in keys {
                let id = series_id(f.name, &k);
                if admitted.contains(&id) {
                    continue;
                }
                if admitted.len() < max {
                    admitted.insert(id);
                    continue;
                }
                over = true;
                any_overflow = true;
                if let Some(acc) = f.series.remove(&k) {
                    overflow.value += acc.value;
                    overflow.sum_ns += acc.sum_ns;
                    for (b, c) in acc.buckets {
                        *overflow.buckets.entry(b).or_default() += c;
                    }
                }
            }
            if any_overflow {
                let n = owner_label_names(g, standalone).len() + f.extra_labels.len();
                f.series.insert(vec![OVERFLOW.to_string(); n], overflow);
            }
        }
        if over {
            budget.exhausted.insert(plan_key.clone());
        }
        let probe_label = plan.source.key();
        for f in fams {
            let mf = out.entry(f.name).or_insert_with(|| {
                let mut mf = MetricFamily::default();
                mf.set_name(f.name.to_string());
                mf.set_help(f.help.to_string());
                mf.set_field_type(f.kind);
                mf
            });
            let names = owner_label_names(g, standalone);
            for (k, acc) in &f.series {
                let mut m = Metric::default();
                let mut labels = vec![label("probe", &probe_label)];
                for (n, v) in names.iter().chain(f.extra_labels.iter()).zip(k.iter()) {
                    labels.push(label(n, v));
                }
                m.set_label(labels);
                match f.kind {
                    MetricType::HISTOGRAM => m.set_histogram(histogram(acc, f.bounds.as_ref())),
                    _ => {
                        let mut c = Counter::default();
                        c.set_value(acc.value as f64);
                        m.set_counter(c);
                    }
                }
                mf.mut_metric().push(m);
            }
        }
    }
    out.into_values().filter(|mf| !mf.get_metric().is_empty()).collect()
}

fn series_id(family: &str, key: &[String]) -> Vec<String> {
    let mut id = vec![family.to_string()];
    id.extend(key.iter().cloned());
    id
}

fn histogram(acc: &Acc, bounds: Option<&(Vec<f64>, Vec<u64>)>) -> Histogram {
    let mut h = Histogram::default();
    let total: u64 = acc.buckets.values().sum();
    h.set_sample_count(total);
    h.set_sample_sum(acc.sum_ns as f64 / 1e9);
    let mut buckets = Vec::new();
    if let Some((plan_bounds, union_ns)) = bounds {
        for b in plan_bounds {
            let b_ns = (b * 1e9).round() as u64;
            // Kernel bucket i counts values ≤ union[i] and > union[i-1]; all
            // plan bounds are in the union, so this sum is exact.
            let cumulative: u64 = acc
                .buckets
                .iter()
                .filter(|(i, _)| union_ns.get(**i as usize).is_some_and(|u| *u <= b_ns))
                .map(|(_, c)| *c)
                .sum();
            let mut bk = Bucket::default();
            bk.set_upper_bound(*b);
            bk.set_cumulative_count(cumulative);
            buckets.push(bk);
        }
    }
    h.set_bucket(buckets);
    h
}

fn plan_families(plan: &ProbePlan, kernel: &KernelState) -> Vec<Fam> {
    let mut fams = Vec::new();
    for p in &plan.probes {
        match p {
            PlannedProbe::TcpRetransmits { peer_labels } => fams.push(fam(
                "netprobe_tcp_retransmits_total",
                "TCP segments retransmitted (as TcpRetransSegs counts them).",
                MetricType::COUNTER,
                if *peer_labels {
                    &["peer_address", "peer_port"]
                } else {
                    &[]
                },
            )),
            PlannedProbe::TcpResets {} => fams.push(fam(
                "netprobe_tcp_resets_total",
                "TCP resets sent and received.",
                MetricType::COUNTER,
                &["direction"],
            )),
            PlannedProbe::TcpConnectLatency { buckets } => {
                let mut f = fam(
                    "netprobe_tcp_connect_latency_seconds",
                    "Active TCP open latency, SYN sent to established.",
                    MetricType::HISTOGRAM,
                    &[],
                );
                f.bounds = Some((buckets.clone(), kernel.connect_bounds.clone()));
                fams.push(f);
                fams.push(fam(
                    "netprobe_tcp_connect_failures_total",
                    "Active TCP opens that failed, by reason.",
                    MetricType::COUNTER,
                    &["reason"],
                ));
            }
            PlannedProbe::TcpRtt { buckets } => {
                let mut f = fam(
                    "netprobe_tcp_rtt_seconds",
                    "Smoothed RTT of established TCP connections, sampled per connection periodically and at close.",
                    MetricType::HISTOGRAM,
                    &[],
                );
                f.bounds = Some((buckets.clone(), kernel.rtt_bounds.clone()));
                fams.push(f);
            }
            PlannedProbe::PacketDrops { reasons } => {
                let mut f = fam(
                    "netprobe_packet_drops_total",
                    "Packets dropped by the kernel, by drop reason.",
                    MetricType::COUNTER,
                    &["reason"],
                );
                f.allow = (!reasons.is_empty()).then(|| reasons.clone());
                fams.push(f);
            }
        }
    }
    fams
}

fn add_target(
    fams: &mut [Fam],
    t: &Target,
    g: Granularity,
    counters: Option<&Vec<(&CounterKey, u64)>>,
    peers: Option<&Vec<(&PeerKey, u64)>>,
    reasons: &ReasonNames,
) {
    let owner = owner_label_values(&t.owner, g);
    let key = |extra: &[&str]| -> Vec<String> {
        let mut k = owner.clone();
        k.extend(extra.iter().map(|s| s.to_string()));
        k
    };
    for f in fams.iter_mut() {
        match f.name {
            "netprobe_tcp_retransmits_total" => {
                // The family carries peer labels exactly when the plan asked for them.
                let peer_labels = !f.extra_labels.is_empty();
                let total: u64 = counters
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| k.metric == metric::RETRANS_SEGS)
                    .map(|(_, v)| *v)
                    .sum();
                if !peer_labels {
                    if total > 0 {
                        f.series.entry(key(&[])).or_default().value += total;
                    }
                    continue;
                }
                let mut by_peers = 0;
                for (pk, v) in peers.into_iter().flatten() {
                    by_peers += v;
                    let port = pk.port.to_string();
                    f.series.entry(key(&[&peer_addr(pk), &port])).or_default().value += v;
                }
                // Peers the bounded peer map could not hold: the pod total
                // stays exact.
                if total > by_peers {
                    f.series.entry(key(&["other", "other"])).or_default().value += total - by_peers;
                }
            }
            "netprobe_tcp_resets_total" => {
                for (k, v) in counters.into_iter().flatten() {
                    let dir = match k.metric {
                        metric::RST_SENT => "sent",
                        metric::RST_RECV => "received",
                        _ => continue,
                    };
                    f.series.entry(key(&[dir])).or_default().value += v;
                }
            }
            "netprobe_tcp_connect_failures_total" => {
                for (k, v) in counters
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| k.metric == metric::CONNECT_FAIL)
                {
                    let r = layout::CONNECT_FAIL_REASONS
                        .get(k.sub as usize)
                        .copied()
                        .unwrap_or("other");
                    f.series.entry(key(&[r])).or_default().value += v;
                }
            }
            "netprobe_packet_drops_total" => {
                for (k, v) in counters
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| k.metric == metric::DROPS)
                {
                    let name = match reasons.get(&k.sub) {
                        Some(n) => n.clone(),
                        None if k.sub == layout::DROP_SUBSYSTEM => "SUBSYSTEM".to_string(),
                        None => k.sub.to_string(),
                    };
                    if f.allow.as_ref().is_some_and(|allow| !allow.contains(&name)) {
                        continue;
                    }
                    f.series.entry(key(&[&name])).or_default().value += v;
                }
            }
            name => {
                let (bucket_m, sum_m) = if name == "netprobe_tcp_connect_latency_seconds" {
                    (metric::CONNECT_BUCKET, metric::CONNECT_SUM)
                } else {
                    (metric::RTT_BUCKET, metric::RTT_SUM)
                };
                let mut acc = Acc::default();
                for (k, v) in counters.into_iter().flatten() {
                    if k.metric == bucket_m {
                        *acc.buckets.entry(k.sub).or_default() += v;
                    } else if k.metric == sum_m {
                        acc.sum_ns += v;
                    }
                }
                if !acc.buckets.is_empty() {
                    let e = f.series.entry(key(&[])).or_default();
                    e.sum_ns += acc.sum_ns;
                    for (b, c) in acc.buckets {
                        *e.buckets.entry(b).or_default() += c;
                    }
                }
            }
        }
    }
}

/// Drop reason names from the kernel's `enum skb_drop_reason`, without the
/// `SKB_DROP_REASON_` prefix.
pub fn drop_reason_names(btf: &netprobe_ebpf::btf::Btf) -> ReasonNames {
    btf.enum_values("skb_drop_reason")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(n, v)| {
            let v = u16::try_from(v).ok()?;
            Some((v, n.strip_prefix("SKB_DROP_REASON_").unwrap_or(&n).to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
