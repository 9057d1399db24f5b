//! Unit tests of metric rendering from kernel snapshots.

use super::*;
use std::sync::Arc;

use netprobe_api::plan::PlannedProbe;
use netprobe_api::probes::{HistogramPlan, PacketDropsPlan, TcpConnectLatencyPlan, TcpResetsPlan, TcpRetransmitsPlan};
use netprobe_ebpf::layout::{self, BOUNDS_CONNECT, metric};

use crate::pipeline::desired::testing::plan;

fn pod(key: &str, name: &str, workload: &str) -> Target {
    Target {
        key: key.into(),
        owner: Owner::Pod {
            namespace: "shop".into(),
            pod: name.into(),
            workload: Some(workload.into()),
        },
        cgroup_id: 1,
        netns: None,
    }
}

fn setup(plans: Vec<(Arc<ProbePlan>, Vec<&str>)>, targets: Vec<Target>) -> (Desired, BTreeMap<String, u32>) {
    let slots = targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.key.clone(), i as u32))
        .collect();
    (crate::pipeline::desired::testing::desired(plans, targets), slots)
}

/// One render under `budget`, without baselines.
fn render_with(
    d: &Desired,
    slots: &BTreeMap<String, u32>,
    snap: &Snapshot,
    names: &ReasonNames,
    budget: &mut Budget,
) -> Vec<MetricFamily> {
    render(
        d,
        &d.kernel(),
        slots,
        snap,
        names,
        &Baselines::new(),
        false,
        budget,
        &PeerWorld::default(),
    )
}

/// One render with a fresh budget, the usual case of these tests.
fn render_once(d: &Desired, slots: &BTreeMap<String, u32>, snap: &Snapshot, names: &ReasonNames) -> Vec<MetricFamily> {
    render_with(d, slots, snap, names, &mut Budget::default())
}

fn ck(slot: u32, m: u16, sub: u16) -> CounterKey {
    CounterKey { slot, metric: m, sub }
}

fn values(fams: &[MetricFamily], name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    fams.iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .map(|m| {
            let l = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            (l, m.get_counter().get_value())
        })
        .collect()
}

#[test]
fn two_plans_see_the_same_kernel_count_once_each() {
    let a = plan(
        "a",
        vec![PlannedProbe::TcpRetransmits(TcpRetransmitsPlan::default())],
        Granularity::Pod,
        10,
    );
    let b = plan(
        "b",
        vec![PlannedProbe::TcpRetransmits(TcpRetransmitsPlan::default())],
        Granularity::Workload,
        10,
    );
    let (d, slots) = setup(
        vec![(a, vec!["u1", "u2"]), (b, vec!["u1", "u2"])],
        vec![pod("u1", "web-1", "web"), pod("u2", "web-2", "web")],
    );
    let mut snap = Snapshot::default();
    snap.counters.insert(ck(0, metric::RETRANS_SEGS, 0), 5);
    snap.counters.insert(ck(1, metric::RETRANS_SEGS, 0), 7);
    let fams = render_once(&d, &slots, &snap, &ReasonNames::new());
    let v = values(&fams, "netprobe_tcp_retransmits_total");
    let get = |probe: &str, k: &str, val: &str| {
        v.iter()
            .find(|(l, _)| l.contains(&("probe".into(), probe.into())) && l.contains(&(k.into(), val.into())))
            .map(|x| x.1)
    };
    assert_eq!(get("NetworkProbe/shop/a", "pod", "web-1"), Some(5.0));
    assert_eq!(get("NetworkProbe/shop/a", "pod", "web-2"), Some(7.0));
    assert_eq!(get("NetworkProbe/shop/b", "workload", "web"), Some(12.0));
    assert_eq!(v.len(), 3);
}

#[test]
fn unselected_pods_yield_no_series() {
    let a = plan(
        "a",
        vec![PlannedProbe::TcpResets(TcpResetsPlan::default())],
        Granularity::Pod,
        10,
    );
    let (d, slots) = setup(vec![(a, vec!["u1"])], vec![pod("u1", "a", "a"), pod("u2", "b", "b")]);
    let mut snap = Snapshot::default();
    snap.counters.insert(ck(0, metric::RST_SENT, 0), 1);
    snap.counters.insert(ck(1, metric::RST_SENT, 0), 9);
    let fams = render_once(&d, &slots, &snap, &ReasonNames::new());
    let v = values(&fams, "netprobe_tcp_resets_total");
    assert_eq!(v.len(), 1);
    assert!(v[0].0.contains(&("pod".into(), "a".into())));
    assert!(v[0].0.contains(&("direction".into(), "sent".into())));
}

#[test]
fn budget_overflows_into_one_series_and_is_stable() {
    let a = plan(
        "a",
        vec![PlannedProbe::PacketDrops(PacketDropsPlan { reasons: vec![] })],
        Granularity::Pod,
        2,
    );
    let (d, slots) = setup(
        vec![(a, vec!["u1", "u2", "u3"])],
        vec![pod("u1", "a", "a"), pod("u2", "b", "b"), pod("u3", "c", "c")],
    );
    let names: ReasonNames = [(12u16, "NETFILTER_DROP".to_string())].into();
    let mut snap = Snapshot::default();
    snap.counters.insert(ck(2, metric::DROPS, 12), 3);
    let mut budget = Budget::default();
    render_with(&d, &slots, &snap, &names, &mut budget);
    snap.counters.insert(ck(0, metric::DROPS, 12), 1);
    snap.counters.insert(ck(1, metric::DROPS, 12), 2);
    let fams = render_with(&d, &slots, &snap, &names, &mut budget);
    let v = values(&fams, "netprobe_packet_drops_total");
    assert_eq!(v.len(), 3, "{v:?}");
    // c came first and keeps its own series; a is admitted; b overflows.
    assert!(
        v.iter()
            .any(|(l, x)| l.contains(&("pod".into(), "c".into())) && *x == 3.0)
    );
    assert!(
        v.iter()
            .any(|(l, x)| l.contains(&("pod".into(), "a".into())) && *x == 1.0)
    );
    assert!(
        v.iter()
            .any(|(l, x)| l.contains(&("pod".into(), OVERFLOW.into())) && *x == 2.0)
    );
    assert!(budget.exhausted().contains("NetworkProbe/shop/a"));
}

#[test]
fn drop_reason_filter_and_names() {
    let a = plan(
        "a",
        vec![PlannedProbe::PacketDrops(PacketDropsPlan {
            reasons: vec!["NETFILTER_DROP".into()],
        })],
        Granularity::Pod,
        10,
    );
    let (d, slots) = setup(vec![(a, vec!["u1"])], vec![pod("u1", "a", "a")]);
    let names: ReasonNames = [(2u16, "NOT_SPECIFIED".to_string()), (12, "NETFILTER_DROP".into())].into();
    let mut snap = Snapshot::default();
    snap.counters.insert(ck(0, metric::DROPS, 12), 4);
    snap.counters.insert(ck(0, metric::DROPS, 2), 40);
    let fams = render_once(&d, &slots, &snap, &names);
    let v = values(&fams, "netprobe_packet_drops_total");
    assert_eq!(v.len(), 1);
    assert!(v[0].0.contains(&("reason".into(), "NETFILTER_DROP".into())));
    assert_eq!(v[0].1, 4.0);
}

#[test]
fn subsystem_drop_reasons_are_one_series() {
    let a = plan(
        "a",
        vec![PlannedProbe::PacketDrops(PacketDropsPlan { reasons: vec![] })],
        Granularity::Pod,
        10,
    );
    let (d, slots) = setup(vec![(a, vec!["u1"])], vec![pod("u1", "a", "a")]);
    let names: ReasonNames = [(12u16, "NETFILTER_DROP".to_string())].into();
    let mut snap = Snapshot::default();
    snap.counters.insert(ck(0, metric::DROPS, layout::DROP_SUBSYSTEM), 5);
    snap.counters.insert(ck(0, metric::DROPS, 12), 1);
    let fams = render_once(&d, &slots, &snap, &names);
    let v = values(&fams, "netprobe_packet_drops_total");
    let sub = v
        .iter()
        .find(|(labels, _)| labels.contains(&("reason".into(), "SUBSYSTEM".into())))
        .map(|(_, n)| *n);
    assert_eq!(sub, Some(5.0), "{v:?}");
    assert_eq!(v.len(), 2);
}

#[test]
fn histograms_rebin_exactly_onto_plan_bounds() {
    let a = plan(
        "a",
        vec![PlannedProbe::TcpConnectLatency(TcpConnectLatencyPlan {
            histogram: HistogramPlan {
                buckets: vec![0.01, 1.0],
            },
            peers: None,
        })],
        Granularity::Pod,
        10,
    );
    let b = plan(
        "b",
        vec![PlannedProbe::TcpConnectLatency(TcpConnectLatencyPlan {
            histogram: HistogramPlan {
                buckets: vec![0.001, 1.0, 2.0],
            },
            peers: None,
        })],
        Granularity::Pod,
        10,
    );
    let (d, slots) = setup(vec![(a, vec!["u1"]), (b, vec!["u1"])], vec![pod("u1", "a", "a")]);
    let k = d.kernel();
    // The kernel counts on the whole grid, whatever either plan asks.
    let grid = netprobe_api::probes::histogram::bound_grid_ns();
    assert_eq!(k.bounds_at(BOUNDS_CONNECT), grid.as_slice());
    let at = |ns: u64| grid.iter().position(|g| *g == ns).unwrap() as u16;
    let mut snap = Snapshot::default();
    // 3 fast (in the bucket ending at 1 ms), 2 at ~1 s, 1 beyond the grid (+Inf).
    snap.counters.insert(ck(0, metric::CONNECT_BUCKET, at(1_000_000)), 3);
    snap.counters
        .insert(ck(0, metric::CONNECT_BUCKET, at(1_000_000_000)), 2);
    snap.counters
        .insert(ck(0, metric::CONNECT_BUCKET, grid.len() as u16), 1);
    snap.counters.insert(ck(0, metric::CONNECT_SUM, 0), 5_000_000_000);
    assert_eq!(k, d.kernel());
    let fams = render_once(&d, &slots, &snap, &ReasonNames::new());
    let h: Vec<_> = fams
        .iter()
        .filter(|f| f.name() == "netprobe_tcp_connect_latency_seconds")
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_histogram().clone())
        .collect();
    assert_eq!(h.len(), 2);
    let cum = |h: &Histogram| {
        h.get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect::<Vec<_>>()
    };
    assert_eq!(cum(&h[0]), vec![(0.01, 3), (1.0, 5)]);
    assert_eq!(cum(&h[1]), vec![(0.001, 3), (1.0, 5), (2.0, 5)]);
    assert_eq!(h[0].get_sample_count(), 6);
    assert_eq!(h[0].get_sample_sum(), 5.0);
}

#[test]
fn peers_render_with_mapped_addresses_and_remainder() {
    let a = plan(
        "a",
        vec![PlannedProbe::TcpRetransmits(TcpRetransmitsPlan {
            peer_labels: true,
            peers: None,
        })],
        Granularity::Pod,
        10,
    );
    let (d, slots) = setup(vec![(a, vec!["u1"])], vec![pod("u1", "a", "a")]);
    let mut snap = Snapshot::default();
    snap.counters.insert(ck(0, metric::RETRANS_SEGS, 0), 10);
    let mut mapped = [0u8; 16];
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped[12..].copy_from_slice(&[10, 0, 0, 2]);
    snap.peers.insert(
        PeerKey {
            slot: 0,
            family: 10,
            port: 6379,
            addr: mapped,
            metric: metric::RETRANS_SEGS,
            role: 0,
            sub: 0,
        },
        6,
    );
    let mut v4 = [0u8; 16];
    v4[..4].copy_from_slice(&[10, 0, 0, 3]);
    snap.peers.insert(
        PeerKey {
            slot: 0,
            family: 2,
            port: 80,
            addr: v4,
            metric: metric::RETRANS_SEGS,
            role: 0,
            sub: 0,
        },
        3,
    );
    let fams = render_once(&d, &slots, &snap, &ReasonNames::new());
    let v = values(&fams, "netprobe_tcp_retransmits_total");
    let find = |addr: &str| {
        v.iter()
            .find(|(l, _)| l.contains(&("peer_address".into(), addr.into())))
            .map(|x| x.1)
    };
    assert_eq!(find("10.0.0.2"), Some(6.0));
    assert_eq!(find("10.0.0.3"), Some(3.0));
    assert_eq!(find("other"), Some(1.0));
}

/// The node's limit is shared equally between tenants: a namespace with
/// many series cannot starve another, and gets the room back when the other
/// leaves; plans that lose series to the share are reported exhausted.
#[test]
fn the_node_limit_is_shared_equally_between_namespaces() {
    let retrans = || vec![PlannedProbe::TcpRetransmits(TcpRetransmitsPlan::default())];
    let mut greedy = plan("greedy", retrans(), Granularity::Pod, 1000);
    let mut small = plan("small", retrans(), Granularity::Pod, 1000);
    for (p, ns) in [(&mut greedy, "big"), (&mut small, "tiny")] {
        let p = Arc::get_mut(p).expect("unshared");
        p.source.id.namespace = Some(ns.into());
        p.scope = netprobe_api::PlanScope::Namespace { namespace: ns.into() };
    }
    let big: Vec<String> = (0..30).map(|i| format!("b{i}")).collect();
    let pods: Vec<Target> = big
        .iter()
        .map(|k| pod(k, k, k))
        .chain((0..3).map(|i| pod(&format!("t{i}"), &format!("t{i}"), "t")))
        .collect();
    let mut snap = Snapshot::default();
    for i in 0..33u32 {
        snap.counters.insert(ck(i, metric::RETRANS_SEGS, 0), 1);
    }
    let both = vec![
        (greedy.clone(), big.iter().map(String::as_str).collect::<Vec<_>>()),
        (small.clone(), vec!["t0", "t1", "t2"]),
    ];
    let (d, slots) = setup(both, pods.clone());
    let mut budget = Budget::with_node_limit(10);
    let count = |fams: &[MetricFamily], probe: &str| {
        values(fams, "netprobe_tcp_retransmits_total")
            .iter()
            .filter(|(l, _)| l.contains(&("probe".into(), probe.into())) && !l.iter().any(|(_, v)| v == OVERFLOW))
            .count()
    };
    let fams = render_with(&d, &slots, &snap, &ReasonNames::new(), &mut budget);
    assert_eq!(count(&fams, "NetworkProbe/big/greedy"), 5, "half of 10");
    assert_eq!(count(&fams, "NetworkProbe/tiny/small"), 3, "not starved");
    assert!(budget.exhausted().contains("NetworkProbe/big/greedy"));
    assert!(!budget.exhausted().contains("NetworkProbe/tiny/small"));
    // Everything still adds up: the rest of greedy's pods is in its overflow.
    let total: f64 = values(&fams, "netprobe_tcp_retransmits_total")
        .iter()
        .filter(|(l, _)| l.contains(&("probe".into(), "NetworkProbe/big/greedy".into())))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 30.0);
    // The other tenant leaves: the whole limit is greedy's, and what it no
    // longer has is forgotten.
    let (d, slots) = setup(vec![(greedy, big.iter().map(String::as_str).collect())], pods);
    let fams = render_with(&d, &slots, &snap, &ReasonNames::new(), &mut budget);
    assert_eq!(count(&fams, "NetworkProbe/big/greedy"), 10);
}

fn peer(addr: [u8; 4], port: u16, m: u16, role: u8, sub: u8) -> PeerKey {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&addr);
    PeerKey {
        slot: 0,
        family: 2,
        port,
        addr: a,
        metric: m,
        role,
        sub,
    }
}

/// Raw peers become the probe's classes: kinds, nodes and zones from the
/// world, the user's classes for external peers, the server's port and
/// role; a server's clients fold into one series per port; what the peer
/// map could not hold is the pod's remainder, labelled unknown.
#[test]
fn peer_classes_fold_raw_peers_and_keep_the_pod_total() {
    use crate::pipeline::peers::{NodeInfo, PeerWorld};
    use netprobe_api::probes::peers::{PeerClassPlan, PeerLabel};
    let peers = netprobe_api::probes::PeersPlan {
        labels: vec![
            PeerLabel::PeerKind,
            PeerLabel::PeerZone,
            PeerLabel::PeerClass,
            PeerLabel::Role,
            PeerLabel::Port,
            PeerLabel::Zone,
        ],
        classes: vec![PeerClassPlan {
            name: "payments-vpc".into(),
            cidrs: vec!["10.20.0.0/16".parse().unwrap()],
        }],
    };
    let a = plan(
        "a",
        vec![
            PlannedProbe::TcpRetransmits(TcpRetransmitsPlan {
                peer_labels: false,
                peers: Some(peers.clone()),
            }),
            PlannedProbe::TcpResets(TcpResetsPlan {
                peers: Some(peers.clone()),
            }),
        ],
        Granularity::Pod,
        100,
    );
    let (d, slots) = setup(vec![(a, vec!["u1"])], vec![pod("u1", "a", "a")]);
    let node = |name: &str, zone: &str, addr: &str, cidr: &str| NodeInfo {
        name: name.into(),
        zone: Some(zone.into()),
        addresses: vec![addr.parse().unwrap()],
        pod_cidrs: vec![cidr.parse().unwrap()],
    };
    let world = PeerWorld::new(
        Some("n1"),
        vec![
            node("n1", "z1", "192.168.0.1", "10.244.1.0/24"),
            node("n2", "z2", "192.168.0.2", "10.244.2.0/24"),
        ],
        [],
        vec![],
    );
    let mut snap = Snapshot::default();
    snap.counters.insert(ck(0, metric::RETRANS_SEGS, 0), 20);
    snap.counters.insert(ck(0, metric::RST_SENT, 0), 2);
    let m = metric::RETRANS_SEGS;
    // Two clients of this pod's port 6379 in zone z2: one series.
    snap.peers.insert(peer([10, 244, 2, 5], 6379, m, 1, 0), 4);
    snap.peers.insert(peer([10, 244, 2, 6], 6379, m, 1, 0), 5);
    snap.peers.insert(peer([10, 20, 1, 1], 443, m, 0, 0), 3);
    snap.peers.insert(peer([8, 8, 8, 8], 53, m, 0, 0), 2);
    snap.peers.insert(peer([192, 168, 0, 2], 10250, m, 0, 0), 1);
    snap.peers
        .insert(peer([10, 244, 2, 5], 6379, metric::RST_SENT, 1, 0), 2);
    let mut budget = Budget::default();
    let fams = render(
        &d,
        &d.kernel(),
        &slots,
        &snap,
        &ReasonNames::new(),
        &Baselines::new(),
        false,
        &mut budget,
        &world,
    );
    let v = values(&fams, "netprobe_tcp_retransmits_total");
    let get = |kind: &str, zone: &str, class: &str, role: &str, port: &str| {
        v.iter()
            .find(|(l, _)| {
                let has = |k: &str, val: &str| l.contains(&(k.to_string(), val.to_string()));
                has("peer_kind", kind)
                    && has("peer_zone", zone)
                    && has("peer_class", class)
                    && has("role", role)
                    && has("port", port)
                    && has("zone", "z1")
            })
            .map(|x| x.1)
    };
    assert_eq!(get("pod", "z2", "", "server", "6379"), Some(9.0));
    assert_eq!(get("external", "", "payments-vpc", "client", "443"), Some(3.0));
    assert_eq!(get("external", "", "external", "client", "53"), Some(2.0));
    assert_eq!(get("node", "z2", "", "client", "10250"), Some(1.0));
    assert_eq!(get("unknown", "", "unknown", "unknown", "unknown"), Some(5.0));
    assert_eq!(v.len(), 5, "{v:?}");
    assert_eq!(v.iter().map(|x| x.1).sum::<f64>(), 20.0);
    let r = values(&fams, "netprobe_tcp_resets_total");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].1, 2.0);
    assert!(r[0].0.contains(&("direction".into(), "sent".into())));
}
