//! Kernel tier, the agent around the probes: attribution across container
//! restarts and hostNetwork pods, the pod index on kubelet-shaped cgroups,
//! the program shared by three probe types, slots and tenants' histograms,
//! standalone attribution and the series flood. The agent as a process
//! (stop, capabilities, exposition) is `kernel_agent_process.rs`. Same
//! rules as `kernel.rs`.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use netprobe_agent::agent::Agent;
use netprobe_agent::pipeline::desired::{Desired, Target};
use netprobe_api::{Probe, ProbePlan, ProbeType};
use support::{Driver, Pod, counter, histogram, kernel_available, serial, series_pods};

fn plan(name: &str, probes: Vec<Probe>) -> ProbePlan {
    support::plan_in("shop", name, probes)
}

fn desired(plan: ProbePlan, selected: &[Target], others: &[Target]) -> Desired {
    support::desired_of(plan, selected, others)
}

#[test]
fn attribution_survives_container_restart_and_covers_host_network_pods() {
    if !kernel_available("attribution") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let mut pod = Pod::new(Driver::Systemd);
    let other = Pod::new(Driver::Systemd);
    let host = Pod::host_network(Driver::Cgroupfs);
    let p = plan("attr", vec![Probe::new(ProbeType::TcpResets)]);
    agent
        .set_desired(desired(
            p.clone(),
            &[pod.target("shop", "a"), host.target("shop", "h")],
            &[other.target("shop", "b")],
        ))
        .expect("apply");
    let refused = |p: &Pod, addr: &str, n: usize| {
        p.run(&format!(
            r#"
import socket
for _ in range({n}):
    fam = socket.AF_INET6 if ":" in "{addr}" else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.connect(("{addr}", 5995))
    except ConnectionRefusedError:
        pass
    s.close()
"#
        ));
    };
    refused(&pod, &pod.peer_ip4, 2);
    refused(&other, &other.peer_ip4, 2);
    refused(&host, "127.0.0.1", 3);
    let fams = agent.render();
    let got = |f: &[prometheus::proto::MetricFamily], name: &str| {
        counter(
            f,
            "netprobe_tcp_resets_total",
            &[("pod", name), ("direction", "received")],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(got(&fams, "a"), 2.0);
    assert_eq!(got(&fams, "h"), 3.0, "hostNetwork pods are attributed by cgroup");
    assert!(
        !series_pods(&fams, "netprobe_tcp_resets_total").contains(&"b".to_string()),
        "unselected pod b has no series"
    );
    pod.restart_container();
    refused(&pod, &pod.peer_ip6, 2);
    let fams = agent.render();
    println!(
        "attribution: pod a received resets before+after restart = {}",
        got(&fams, "a")
    );
    assert_eq!(
        got(&fams, "a"),
        4.0,
        "a new container cgroup keeps the pod's attribution"
    );
    // The pod leaves the plan: its series go.
    agent
        .set_desired(desired(p, &[host.target("shop", "h")], &[]))
        .expect("apply");
    let fams = agent.render();
    assert!(!series_pods(&fams, "netprobe_tcp_resets_total").contains(&"a".to_string()));
}

#[test]
fn pod_index_resolves_kubelet_cgroups_of_both_drivers() {
    use netprobe_agent::cluster::podindex::PodIndex;
    use std::os::unix::fs::MetadataExt;
    if !kernel_available("pod index") {
        return;
    }
    let _s = serial();
    // Every kubelet layout: both drivers, every QoS class, kind's nested
    // kubelet, a cgroupfs kubelet under --cgroup-root.
    let mut layouts: Vec<Pod> = Driver::ALL.into_iter().map(Pod::new).collect();
    let host = Pod::host_network(Driver::Systemd);
    let api_pod = |p: &Pod, host_network: bool| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "shop", "uid": p.uid},
            "spec": {"containers": [], "hostNetwork": host_network},
            "status": {"phase": "Running"}
        }))
        .expect("pod")
    };
    let cgroup2 = layouts[0].cgroup2.clone();
    let mut index = PodIndex::new(cgroup2.clone(), std::path::PathBuf::from("/proc"));
    let late_uid = format!("{:08x}-1111-4000-8000-000000000001", std::process::id());
    let late: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "late", "namespace": "shop", "uid": late_uid}, "spec": {"containers": []}, "status": {"phase": "Pending"}
    }))
    .expect("pod");
    let mut pods: Vec<_> = layouts.iter().map(|p| api_pod(p, false)).collect();
    pods.push(api_pod(&host, true));
    pods.push(late.clone());
    let (host_i, late_i) = (layouts.len(), layouts.len() + 1);
    let refs: Vec<&k8s_openapi::api::core::v1::Pod> = pods.iter().collect();
    let views = index.views(&refs);
    let netns_of = |p: &Pod| {
        std::fs::metadata(format!("/run/netns/{}", p.ns))
            .map(|m| m.ino() as u32)
            .ok()
    };
    for (view, pod) in views.iter().zip(&layouts) {
        assert_eq!(
            view.cgroup_id,
            netprobe_agent::cgroups::cgroup_id(&pod.pod_cgroup).ok(),
            "{}",
            pod.pod_cgroup.display()
        );
        assert_eq!(view.netns, netns_of(pod), "netns of {}", pod.ns);
        assert!(view.netns.is_some());
    }
    assert_eq!(
        views[host_i].cgroup_id,
        netprobe_agent::cgroups::cgroup_id(&host.pod_cgroup).ok()
    );
    assert_eq!(views[host_i].netns, None, "hostNetwork pods have no netns of their own");
    assert_eq!(views[late_i].cgroup_id, None, "late pod: no cgroup yet");
    // The kubelet creates the late pod's cgroup; the next pass finds it.
    let late_dir = cgroup2.join(format!("kubepods/besteffort/pod{late_uid}"));
    std::fs::create_dir_all(&late_dir).expect("late cgroup");
    let want = netprobe_agent::cgroups::cgroup_id(&late_dir).ok();
    let views = index.views(&refs);
    let _ = std::fs::remove_dir(&late_dir);
    assert!(want.is_some());
    assert_eq!(views[late_i].cgroup_id, want, "late cgroup resolved on a later pass");
    // A container restart changes the leaf, not the pod cgroup.
    let before = views[0].cgroup_id;
    layouts[0].restart_container();
    assert_eq!(index.views(&refs)[0].cgroup_id, before);
    println!("pod index: {:?}, hostNetwork and late pods resolved", Driver::ALL);
}

#[test]
fn connect_latency_rtt_and_retransmits_share_one_state_program() {
    if !kernel_available("shared socket-state program") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let mut pod = Pod::new(Driver::Systemd);
    pod.peer_spawn(&support::servers(&[(5003, support::Serve::Echo)]));
    let target = pod.target("shop", "s");
    let both = plan(
        "both",
        vec![
            Probe::new(ProbeType::TcpConnectLatency),
            Probe::new(ProbeType::TcpRtt),
            Probe::new(ProbeType::TcpRetransmits),
        ],
    );
    let report = agent
        .set_desired(desired(both, std::slice::from_ref(&target), &[]))
        .expect("apply");
    let shared = netprobe_ebpf::programs::SOCK_STATE.to_string();
    assert!(report.attached[&ProbeType::TcpConnectLatency].contains(&shared));
    assert!(report.attached[&ProbeType::TcpRtt].contains(&shared));
    // TcpRetransmits' reconciliation at close runs in it too: one program
    // run per state change on the node, whatever the number of types.
    assert!(report.attached[&ProbeType::TcpRetransmits].contains(&shared));
    use netprobe_ebpf::programs::{RETRANSMIT_SKB, RETRANSMIT_SKB_V1, RETRANSMIT_SYNACK};
    let own: Vec<&String> = report.attached[&ProbeType::TcpRetransmits]
        .iter()
        .filter(|p| *p != &shared)
        .collect();
    assert!(
        own.len() == 2
            && own
                .iter()
                .all(|p| [RETRANSMIT_SKB, RETRANSMIT_SKB_V1, RETRANSMIT_SYNACK].contains(&p.as_str())),
        "TcpRetransmits' own programs are on its two tracepoints only: {own:?}"
    );
    let loaded = |a: &Agent| {
        a.program_stats()
            .into_iter()
            .filter(|s| s.program == netprobe_ebpf::programs::SOCK_STATE)
            .count()
    };
    assert_eq!(loaded(&agent), 1, "attached once for the three types");
    let hold = |n: usize| {
        format!(
            "import socket, time\nconns = []\nfor _ in range({n}):\n    s = socket.socket(); s.connect(('{}', 5003)); s.sendall(b'x'); s.recv(8); conns.append(s)\nprint('ok', flush=True)\ntime.sleep(60)\n",
            pod.peer_ip4
        )
    };
    let mut first = pod.spawn(&hold(2));
    support::read_ready(&mut first);
    let fams = agent.render();
    assert_eq!(
        histogram(&fams, "netprobe_tcp_connect_latency_seconds", &[("pod", "s")]).map(|h| h.0),
        Some(2)
    );
    // Only TcpRtt left: the shared program stays, connect latency stops.
    let rtt_only = plan("both", vec![Probe::new(ProbeType::TcpRtt)]);
    agent
        .set_desired(desired(rtt_only, std::slice::from_ref(&target), &[]))
        .expect("apply");
    assert_eq!(loaded(&agent), 1);
    let mut second = pod.spawn(&hold(1));
    support::read_ready(&mut second);
    agent.rtt_sampler().expect("sampler").run().expect("iterator runs");
    let fams = agent.render();
    assert!(
        histogram(&fams, "netprobe_tcp_connect_latency_seconds", &[("pod", "s")]).is_none(),
        "connect latency is off"
    );
    let rtt = histogram(&fams, "netprobe_tcp_rtt_seconds", &[("pod", "s")]).map(|h| h.0);
    println!("shared program: rtt samples with connect latency detached = {rtt:?} (3 connections)");
    assert_eq!(
        rtt,
        Some(3),
        "connections marked before and after the change are sampled"
    );
    agent.set_desired(Desired::default()).expect("apply");
    assert_eq!(loaded(&agent), 0, "detached when no type uses it");
    for mut c in [first, second] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The counter maps as the manager resets them: a slot cleared before it is
/// handed to another pod loses everything in every map, the other slots
/// nothing; forgetting a probe type's metrics leaves the other types' alone.
/// Values are written on several CPUs' copies, as events on several CPUs
/// would.
#[test]
fn slot_clearing_and_metric_forgetting_touch_only_their_own_counters() {
    use aya::maps::{PerCpuArray, PerCpuHashMap, PerCpuValues};
    use netprobe_agent::kernel::counters::{clear_slot, forget_metrics, snapshot};
    use netprobe_ebpf::layout::{self, CounterKey, Hist, HistKey, PodCounters, metric};
    use netprobe_ebpf::maps;

    if !kernel_available("slot clearing") {
        return;
    }
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    let mut ebpf = aya::EbpfLoader::new()
        .btf(Some(&btf))
        .load(netprobe_ebpf::OBJECT)
        .expect("object loads");
    let cpus = aya::util::nr_cpus().expect("possible CPUs");
    fn per_cpu<T: aya::Pod>(v: T, cpus: usize) -> PerCpuValues<T> {
        PerCpuValues::try_from(vec![v; cpus]).expect("one value per CPU")
    }
    {
        let mut pods: PerCpuArray<_, PodCounters> =
            PerCpuArray::try_from(ebpf.map_mut(maps::POD_COUNTERS).expect("map")).expect("array");
        for slot in [1u32, 2] {
            let c = PodCounters {
                retrans_segs: 10 * u64::from(slot),
                rst_sent: 1,
                rst_recv: 2,
                connect_fail: [3, 0, 0, 0, 4],
            };
            pods.set(slot, per_cpu(c, cpus), 0).expect("set");
        }
    }
    {
        let mut hists: PerCpuHashMap<_, HistKey, Hist> =
            PerCpuHashMap::try_from(ebpf.map_mut(maps::HISTS).expect("map")).expect("hash");
        for (slot, which) in [
            (1, layout::BOUNDS_CONNECT),
            (1, layout::BOUNDS_RTT),
            (2, layout::BOUNDS_RTT),
        ] {
            let mut h = Hist::default();
            h.buckets[3] = 5;
            h.sum_ns = 700;
            hists
                .insert(HistKey { slot, which }, per_cpu(h, cpus), 0)
                .expect("insert");
        }
    }
    {
        let mut drops: PerCpuHashMap<_, CounterKey, u64> =
            PerCpuHashMap::try_from(ebpf.map_mut(maps::COUNTERS).expect("map")).expect("hash");
        for slot in [1, 2] {
            let k = CounterKey {
                slot,
                metric: metric::DROPS,
                sub: 12,
            };
            drops.insert(k, per_cpu(6u64, cpus), 0).expect("insert");
        }
    }
    let n = cpus as u64;
    let get = |snap: &netprobe_agent::kernel::counters::Snapshot, slot, m, sub| {
        snap.counters.get(&CounterKey { slot, metric: m, sub }).copied()
    };
    let s = snapshot(&ebpf, [1, 2]).expect("snapshot");
    assert_eq!(get(&s, 2, metric::RETRANS_SEGS, 0), Some(20 * n), "summed over CPUs");
    assert_eq!(get(&s, 1, metric::CONNECT_FAIL, 4), Some(4 * n));
    assert_eq!(get(&s, 1, metric::CONNECT_FAIL, 1), None, "zero counters are left out");
    assert_eq!(get(&s, 1, metric::CONNECT_BUCKET, 3), Some(5 * n));
    assert_eq!(get(&s, 1, metric::CONNECT_SUM, 0), Some(700 * n));
    assert_eq!(get(&s, 1, metric::DROPS, 12), Some(6 * n));

    // TcpResets detached: resets go, retransmits and failures stay.
    forget_metrics(&mut ebpf, &[1, 2], &[metric::RST_SENT, metric::RST_RECV]).expect("forget");
    let s = snapshot(&ebpf, [1, 2]).expect("snapshot");
    assert_eq!(get(&s, 1, metric::RST_SENT, 0), None);
    assert_eq!(get(&s, 2, metric::RST_RECV, 0), None);
    assert_eq!(get(&s, 1, metric::RETRANS_SEGS, 0), Some(10 * n));
    assert_eq!(get(&s, 1, metric::CONNECT_FAIL, 0), Some(3 * n));

    // RTT bounds changed: RTT histograms restart, connect latency stays.
    forget_metrics(&mut ebpf, &[1, 2], &[metric::RTT_BUCKET, metric::RTT_SUM]).expect("forget");
    let s = snapshot(&ebpf, [1, 2]).expect("snapshot");
    assert_eq!(get(&s, 1, metric::RTT_BUCKET, 3), None);
    assert_eq!(get(&s, 2, metric::RTT_SUM, 0), None);
    assert_eq!(get(&s, 1, metric::CONNECT_BUCKET, 3), Some(5 * n));

    // Slot 1 handed to another pod: nothing of it is left; slot 2 keeps all.
    clear_slot(&mut ebpf, 1).expect("clear");
    let s = snapshot(&ebpf, [1, 2]).expect("snapshot");
    let left: Vec<_> = s.counters.keys().filter(|k| k.slot == 1).collect();
    assert!(left.is_empty(), "slot 1 still has {left:?}");
    assert_eq!(get(&s, 2, metric::RETRANS_SEGS, 0), Some(20 * n));
    assert_eq!(get(&s, 2, metric::DROPS, 12), Some(6 * n));
    assert_eq!(get(&s, 2, metric::CONNECT_FAIL, 4), Some(4 * n));
}

/// Standalone mode: a network namespace belongs to the cgroup whose
/// processes live in it, so resets and drops without a socket in that
/// namespace count for that cgroup, as they count for a pod in cluster mode.
#[test]
fn standalone_counts_socketless_events_for_the_cgroup_owning_the_namespace() {
    if !kernel_available("standalone namespace ownership") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(true).expect("agent loads");
    let pod = Pod::new(Driver::Systemd);
    let key = pod
        .pod_cgroup
        .strip_prefix(&pod.cgroup2)
        .expect("pod cgroup under the cgroup2 root")
        .display()
        .to_string();
    let mut targets = netprobe_agent::standalone::cgroup_targets(&pod.cgroup2, 3);
    netprobe_agent::standalone::assign_netns(&mut targets, std::path::Path::new("/proc"));
    let ns_inode = std::fs::metadata(format!("/run/netns/{}", pod.ns))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m) as u32)
        .expect("netns inode");
    assert_eq!(
        targets.get(&key).and_then(|t| t.netns),
        Some(ns_inode),
        "the pod's namespace belongs to its cgroup"
    );
    let p = plan(
        "standalone",
        vec![Probe::new(ProbeType::TcpResets), Probe::new(ProbeType::PacketDrops)],
    );
    let report = agent
        .set_desired(netprobe_agent::standalone::desired(&[p], targets))
        .expect("apply");
    let (rst0, noports0) = (pod.nstat("TcpOutRsts"), pod.nstat("UdpNoPorts"));
    // The peer knocks on closed TCP and UDP ports of the namespace: the
    // namespace answers with resets and drops the datagrams, with no socket.
    pod.peer_run(&format!(
        r#"
import socket
for _ in range(4):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect(("{ip}", 5994))
    except ConnectionRefusedError:
        pass
    s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(6):
    u.sendto(b"x", ("{ip}", 5993))
"#,
        ip = pod.ip4
    ));
    std::thread::sleep(Duration::from_millis(300));
    let (rst, noports) = (pod.nstat("TcpOutRsts") - rst0, pod.nstat("UdpNoPorts") - noports0);
    let fams = agent.render();
    let sent = counter(
        &fams,
        "netprobe_tcp_resets_total",
        &[("cgroup", &key), ("direction", "sent")],
    )
    .unwrap_or(0.0) as u64;
    let dropped = counter(
        &fams,
        "netprobe_packet_drops_total",
        &[("cgroup", &key), ("reason", "NO_SOCKET")],
    )
    .unwrap_or(0.0) as u64;
    println!(
        "standalone {key}: TcpOutRsts {rst} / netprobe {sent}; UdpNoPorts {noports} / netprobe NO_SOCKET {dropped}"
    );
    assert_eq!((rst, noports), (4, 6), "the fixture's packets reached the namespace");
    // Each SYN to the closed TCP port is answered with a reset and then
    // dropped as NO_SOCKET, like each datagram to the closed UDP port.
    assert_eq!(dropped, noports + rst, "packets to closed ports count for the cgroup");
    match report.partial.get(&ProbeType::TcpResets) {
        Some(why) => println!("TcpResets Partial on this kernel ({why}): {sent} of {rst}"),
        None => assert_eq!(sent, rst, "resets to a closed port count for the cgroup"),
    }
}

/// Histograms are per probe and exact, whatever other tenants ask: two
/// probes with different buckets on one pod both count every connect
/// (`TcpActiveOpens`), and a probe of another namespace with 32 tiny bounds
/// on its own pod neither restarts nor rebins them.
#[test]
fn histograms_of_two_probes_on_one_pod_are_exact_and_other_tenants_cannot_touch_them() {
    use netprobe_api::HistogramOptions;
    if !kernel_available("per-probe histograms") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let mut a = Pod::new(Driver::Systemd);
    a.peer_spawn(&support::servers(&[(5004, support::Serve::AcceptClose)]));
    let b = Pod::new(Driver::Cgroupfs);
    let latency = |buckets: Vec<f64>| Probe {
        tcp_connect_latency: Some(netprobe_api::probes::tcp_connect_latency::TcpConnectLatencyOptions {
            histogram: HistogramOptions { buckets: Some(buckets) },
            peers: None,
        }),
        ..Probe::new(ProbeType::TcpConnectLatency)
    };
    let fast = plan("fast", vec![latency(vec![0.0005, 1.0])]);
    let slow = plan("slow", vec![latency(vec![0.001, 2.5])]);
    let tiny: Vec<f64> = netprobe_api::probes::histogram::bound_grid_ns()
        .iter()
        .take(32)
        .map(|ns| *ns as f64 / 1e9)
        .collect();
    let other = support::plan_in("other", "tiny", vec![latency(tiny)]);
    let (ta, tb) = (a.target("shop", "a"), b.target("other", "b"));
    agent
        .set_desired(support::desired_with(&[(&fast, &ta), (&slow, &ta)]))
        .expect("apply");
    let opens0 = a.nstat("TcpActiveOpens");
    let connects = |n: usize| {
        a.run(&format!(
            "import socket\nfor _ in range({n}):\n    s = socket.create_connection(('{}', 5004)); s.close()\nprint('ok')\n",
            a.peer_ip4
        ));
    };
    let of = |fams: &[prometheus::proto::MetricFamily], probe: &str| {
        histogram(
            fams,
            "netprobe_tcp_connect_latency_seconds",
            &[("pod", "a"), ("probe", &format!("NetworkProbe/shop/{probe}"))],
        )
    };
    connects(20);
    let fams = agent.render();
    let opens = a.nstat("TcpActiveOpens") - opens0;
    let (f, s) = (of(&fams, "fast").expect("fast"), of(&fams, "slow").expect("slow"));
    println!(
        "two probes on one pod after {opens} connects: fast {:?}, slow {:?}",
        f.2, s.2
    );
    assert_eq!((f.0, s.0), (opens, opens), "each probe counts every connect");
    assert_eq!(f.2.last().map(|b| b.1), Some(opens), "all within 1 s");
    assert_eq!(s.2.last().map(|b| b.1), Some(opens), "all within 2.5 s");
    assert!(f.2[0].1 <= s.2[0].1, "≤ 0.5 ms is at most ≤ 1 ms: {f:?} {s:?}");

    // Another namespace's probe with 32 tiny bounds, on its own pod.
    agent
        .set_desired(support::desired_with(&[(&fast, &ta), (&slow, &ta), (&other, &tb)]))
        .expect("apply");
    let fams = agent.render();
    assert_eq!(of(&fams, "fast"), Some(f.clone()), "not restarted, not rebinned");
    assert_eq!(of(&fams, "slow"), Some(s.clone()));
    connects(20);
    let fams = agent.render();
    let opens = a.nstat("TcpActiveOpens") - opens0;
    let (f2, s2) = (of(&fams, "fast").expect("fast"), of(&fams, "slow").expect("slow"));
    assert_eq!((f2.0, s2.0), (opens, opens), "still every connect: {f2:?} {s2:?}");
    assert_eq!(
        f2.2.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![0.0005, 1.0],
        "its own buckets"
    );
    agent.set_desired(Desired::default()).expect("apply");
}

/// Drop reasons differ between kernels: a filter naming one this kernel
/// does not have is reported for that plan (`UnknownDropReason` on the
/// node), not silently matched by nothing.
#[test]
fn drop_reasons_the_kernel_does_not_have_are_reported() {
    use netprobe_api::PacketDropsOptions;
    if !kernel_available("drop reason names") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let pod = Pod::new(Driver::Systemd);
    let p = plan(
        "drops",
        vec![Probe {
            packet_drops: Some(PacketDropsOptions {
                reasons: Some(vec!["NO_SOCKET".into(), "NOT_A_REAL_REASON".into()]),
            }),
            ..Probe::new(ProbeType::PacketDrops)
        }],
    );
    let key = p.source.key();
    let report = agent
        .set_desired(desired(p, &[pod.target("shop", "d")], &[]))
        .expect("apply");
    assert_eq!(
        report.unknown_drop_reasons.get(&key),
        Some(&vec!["NOT_A_REAL_REASON".to_string()]),
        "{report:?}"
    );
    agent.set_desired(Desired::default()).expect("apply");
}

/// `/readyz` follows the first apply: a DaemonSet rollout moves on only
/// once the new agent's probes are in the kernel.
#[test]
fn the_agent_is_ready_once_an_apply_succeeded() {
    if !kernel_available("readiness") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(true).expect("agent loads");
    let ready = agent.applied_flag();
    assert!(!ready.load(Ordering::Relaxed), "not ready before anything is applied");
    let pod = Pod::new(Driver::Systemd);
    agent
        .set_desired(desired(
            plan("r", vec![Probe::new(ProbeType::TcpRetransmits)]),
            &[pod.target("shop", "r")],
            &[],
        ))
        .expect("apply");
    assert!(ready.load(Ordering::Relaxed), "ready after the first apply");
    agent.set_desired(Desired::default()).expect("apply");
}

/// A probe's counters for a pod start when that probe starts counting it:
/// a second probe on a pod the first has counted for a while reports only
/// what happened since.
#[test]
fn a_new_probe_on_a_counted_pod_starts_at_zero() {
    if !kernel_available("per-probe baselines") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let pod = Pod::new(Driver::Systemd);
    let target = pod.target("shop", "r");
    let first = plan("first", vec![Probe::new(ProbeType::TcpResets)]);
    let second = plan("second", vec![Probe::new(ProbeType::TcpResets)]);
    let refused = |n: usize| {
        pod.run(&format!(
            "import socket\nfor _ in range({n}):\n    s = socket.socket(); s.settimeout(5)\n    try:\n        s.connect(('{}', 5999))\n    except OSError:\n        pass\n    s.close()\nprint('ok')\n",
            pod.peer_ip4
        ));
    };
    let resets = |probe: &str| {
        counter(
            &agent.render(),
            "netprobe_tcp_resets_total",
            &[("pod", "r"), ("probe", &format!("NetworkProbe/shop/{probe}"))],
        )
        .unwrap_or(0.0)
    };
    agent
        .set_desired(support::desired_with(&[(&first, &target)]))
        .expect("apply");
    refused(5);
    let before = resets("first");
    assert!(before >= 5.0, "{before}");
    agent
        .set_desired(support::desired_with(&[(&first, &target), (&second, &target)]))
        .expect("apply");
    assert_eq!(resets("second"), 0.0, "starts at zero");
    refused(2);
    let (a, b) = (resets("first"), resets("second"));
    println!("baselines: first {before} → {a}, second {b}");
    assert!(b > 0.0);
    assert_eq!(
        b,
        a - before,
        "the second counts exactly what happened since it started"
    );
    agent.set_desired(Desired::default()).expect("apply");
}

/// The series flood a tenant could aim at the node: 16 probes with peer
/// labels over one pod that connects to 5,000 distinct peers. The agent
/// exports at most its node limit (plus one overflow series per probe),
/// every probe's total is still the kernel's, and deleting the probes
/// forgets every series. (Memory and scrape time: `make bench`.)
#[test]
fn a_peer_series_flood_stays_within_the_node_limit_and_exact() {
    if !kernel_available("series flood") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let limit = 20_000;
    agent.set_series_limit(limit);
    let pod = Pod::new(Driver::Systemd);
    let target = pod.target("shop", "f");
    let d = support::flood_desired(&target, 16);
    agent.set_desired(d).expect("apply");
    let since = support::RetransOracle::start(|c| pod.nstat(c));
    support::connect_to_distinct_dropped_peers(&pod, 5000);
    std::thread::sleep(Duration::from_millis(500));
    let fams = agent.render();
    let series: Vec<_> = fams
        .iter()
        .filter(|f| f.name() == "netprobe_tcp_retransmits_total")
        .flat_map(|f| f.get_metric().iter())
        .collect();
    println!(
        "flood: {} retransmit series (limit {limit} + 16 overflow)",
        series.len()
    );
    assert!(series.len() <= limit + 16, "{}", series.len());
    assert!(
        series.len() >= limit,
        "the limit is used, not undershot: {}",
        series.len()
    );
    for i in 0..16 {
        let total = counter(
            &fams,
            "netprobe_tcp_retransmits_total",
            &[("probe", &format!("NetworkProbe/shop/flood-{i}"))],
        );
        let missed = counter(
            &fams,
            "netprobe_agent_program_recursion_misses_total",
            &[("type", "TcpRetransmits")],
        )
        .unwrap_or(0.0) as u64;
        since
            .check(|c| pod.nstat(c), total, missed)
            .unwrap_or_else(|e| panic!("flood-{i}: {e}"));
    }
    agent.set_desired(Desired::default()).expect("apply");
    let fams = agent.render();
    assert!(
        !fams.iter().any(|f| f.name() == "netprobe_tcp_retransmits_total"),
        "deleted probes leave no series"
    );
}
