//! Kernel tier, Traffic: the bytes and packets a pod's sockets send and
//! receive equal netfilter's counters in the pod's namespace, per direction
//! and protocol, for TCP bulk and UDP over IPv4 and IPv6; an unselected pod
//! on the same node has no series. Runs on every kernel of the matrix.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use netprobe_agent::agent::Agent;
use netprobe_agent::pipeline::desired::Desired;
use netprobe_api::{Probe, ProbeType};
use support::traffic::{NFT_TRAFFIC, nft_traffic, traffic_client, traffic_peer};
use support::{Driver, Pod, counter, kernel_available, serial, series_pods};

#[test]
fn traffic_equals_netfilter_counters_per_direction_and_protocol() {
    if !kernel_available("traffic") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let (selected, unselected) = pods_with_traffic(&agent, false);
    exchange_traffic(&[&selected, &unselected]);
    traffic_matches_netfilter(&agent, &selected);
}

/// On a node the agent attaches Traffic's and Dns's programs to the
/// kubelet's pods cgroup (`cgroups::pods_subtree`), not the root: a pod's
/// traffic is as exact as before, and a cgroup outside that subtree (the
/// host's services; here a kind-layout pod's) has none of them in effect,
/// so its packets run nothing.
#[test]
fn attached_to_the_pods_cgroup_traffic_is_exact_and_other_cgroups_run_none() {
    if !kernel_available("traffic on the pods cgroup") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let (selected, outside) = pods_with_traffic(&agent, true);
    let subtree = selected.kubepods_cgroup();
    let ours = skb_programs(&subtree, false);
    assert_eq!(ours.len(), 2, "both directions attached to {}", subtree.display());
    assert!(
        ours.is_subset(&skb_programs(&selected.container, true)),
        "in effect for the pod's containers"
    );
    assert!(
        ours.is_disjoint(&skb_programs(&outside.container, true)),
        "not in effect outside the pods cgroup"
    );
    assert!(
        ours.is_disjoint(&skb_programs(&selected.cgroup2, false)),
        "nothing of ours on the root"
    );
    exchange_traffic(&[&selected, &outside]);
    traffic_matches_netfilter(&agent, &selected);
}

/// A pod with the systemd layout ("web-0", selected) and one with kind's
/// (unselected, outside `kubepods.slice`), each with a traffic peer, and
/// Traffic applied, on the selected pod's `kubepods` cgroup or on the root:
/// both directions' programs attached.
fn pods_with_traffic(agent: &Agent, on_kubepods: bool) -> (Pod, Pod) {
    let mut selected = Pod::new(Driver::Systemd);
    let mut unselected = Pod::new(Driver::KindNested);
    for p in [&mut selected, &mut unselected] {
        p.peer_spawn(&traffic_peer());
    }
    if on_kubepods {
        agent.set_skb_cgroup(selected.kubepods_cgroup());
    }
    let report = support::apply_one_type(agent, Probe::new(ProbeType::Traffic), &selected, &unselected);
    assert_eq!(
        report.attached.get(&ProbeType::Traffic).map(Vec::len),
        Some(2),
        "{report:?}"
    );
    (selected, unselected)
}

/// Each pod's client exchanges TCP bulk and UDP with its peer, counted by
/// netfilter in the pod's namespace (NFT_TRAFFIC).
fn exchange_traffic(pods: &[&Pod]) {
    for p in pods {
        Pod::nft(&p.ns, NFT_TRAFFIC);
    }
    for p in pods {
        p.run(&traffic_client(p, 50));
    }
}

/// Ids of the `np_skb_*` programs attached to a cgroup, by bpftool; with
/// `effective`, also those its ancestors' attachments put in effect.
fn skb_programs(dir: &std::path::Path, effective: bool) -> BTreeSet<u64> {
    let which = if effective { "effective" } else { "" };
    let out = support::sh(&format!("bpftool -j cgroup show {} {which}", dir.display()));
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return BTreeSet::new(); // bpftool prints nothing for no programs
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("np_skb_")))
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

/// The selected pod's ("web-0") Traffic series equal netfilter's counters
/// in its namespace (NFT_TRAFFIC) within 3 s, and no other pod has one;
/// then the probe is removed and its series go.
fn traffic_matches_netfilter(agent: &Agent, selected: &Pod) {
    let mut last = String::new();
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(200));
        let fams = agent.render();
        let oracle = nft_traffic(&selected.ns);
        let mut diffs = Vec::new();
        for ((dir, proto), (packets, bytes)) in &oracle {
            let want = [
                ("pod", "web-0"),
                ("direction", dir.as_str()),
                ("protocol", proto.as_str()),
            ];
            let got_b = counter(&fams, "netprobe_traffic_bytes_total", &want).unwrap_or(0.0) as u64;
            let got_p = counter(&fams, "netprobe_traffic_packets_total", &want).unwrap_or(0.0) as u64;
            assert!(
                *packets > 0 && *bytes > 0,
                "the workload sends and receives {dir} {proto}"
            );
            if (got_p, got_b) != (*packets, *bytes) {
                diffs.push(format!(
                    "{dir} {proto}: netprobe {got_p} packets {got_b} B, nft {packets} packets {bytes} B"
                ));
            } else {
                last = format!("{dir} {proto}: {packets} packets, {bytes} B");
                println!("Traffic {last} (netprobe = nft)");
            }
        }
        assert_eq!(oracle.len(), 4, "{oracle:?}");
        if diffs.is_empty() {
            let pods: BTreeSet<String> = series_pods(&fams, "netprobe_traffic_bytes_total").into_iter().collect();
            assert_eq!(
                pods,
                BTreeSet::from(["web-0".to_string()]),
                "the unselected pod has no series"
            );
            agent.set_desired(Desired::default()).expect("apply");
            assert!(
                agent
                    .render()
                    .iter()
                    .all(|f| f.name() != "netprobe_traffic_bytes_total"),
                "no series once the probe is gone"
            );
            return;
        }
        last = diffs.join("; ");
    }
    panic!("netprobe does not match netfilter: {last}");
}

/// Where targets nest (standalone mode makes every cgroup down to a depth
/// a target), a packet belongs to the deepest target above its socket's
/// cgroup, as every other type attributes it: here a pod cgroup and its
/// container's cgroup are both targets, and the container's gets the
/// traffic.
#[test]
fn nested_targets_get_traffic_at_the_deepest() {
    if !kernel_available("traffic, nested targets") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let mut pod = Pod::new(Driver::Cgroupfs);
    pod.peer_spawn(&traffic_peer());
    let outer = pod.target("shop", "outer");
    let mut inner = pod.target("shop", "inner");
    inner.key = format!("{}-container", inner.key);
    inner.cgroup_id = netprobe_agent::cgroups::cgroup_id(&pod.container).expect("container cgroup id");
    let plan = support::plan_in("shop", "traffic", vec![Probe::new(ProbeType::Traffic)]);
    agent
        .set_desired(support::desired_of(plan, &[outer, inner], &[]))
        .expect("apply");
    pod.run(&traffic_client(&pod, 5));
    std::thread::sleep(Duration::from_millis(300));
    let pods: BTreeSet<String> = series_pods(&agent.render(), "netprobe_traffic_bytes_total")
        .into_iter()
        .collect();
    assert_eq!(pods, BTreeSet::from(["inner".to_string()]));
    agent.set_desired(Desired::default()).expect("apply");
}

/// Traffic with peer classes: the pod is a client of its peer (TCP bulk to
/// 5001, UDP echoes to 5002, IPv4 and IPv6) and a TCP server to it (port
/// 7000, three connections). The peer's IPv4 address is a pod of node n2
/// (zone z2) by the agent's peer world, its IPv6 one the user's class.
/// Per direction and protocol the series sum to netfilter's counters; each
/// carries the server's port and the pod's role; the server's three
/// connections make one series per direction.
#[test]
fn traffic_by_peer_sums_to_netfilter_with_role_and_server_port() {
    use netprobe_agent::pipeline::peers::{NodeInfo, PeerWorld};
    use netprobe_api::probes::peers::{PeerClass, PeerLabel, PeersOptions};
    use netprobe_api::probes::traffic::TrafficOptions;
    if !kernel_available("traffic by peer") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let mut pod = Pod::new(Driver::Systemd);
    let other = Pod::new(Driver::Cgroupfs);
    pod.peer_spawn(&traffic_peer());
    agent.set_peer_world(std::sync::Arc::new(PeerWorld::new(
        Some("n1"),
        vec![NodeInfo {
            name: "n2".into(),
            zone: Some("z2".into()),
            addresses: vec![],
            pod_cidrs: vec![format!("{}/32", pod.peer_ip4).parse().expect("cidr")],
        }],
        [],
        vec![],
    )));
    let probe = Probe {
        traffic: Some(TrafficOptions {
            peers: Some(PeersOptions {
                labels: Some(vec![
                    PeerLabel::PeerKind,
                    PeerLabel::PeerZone,
                    PeerLabel::PeerClass,
                    PeerLabel::Role,
                    PeerLabel::Port,
                ]),
                classes: vec![PeerClass {
                    name: "payments-vpc".into(),
                    cidrs: vec![format!("{}/128", pod.peer_ip6)],
                }],
            }),
        }),
        ..Probe::new(ProbeType::Traffic)
    };
    support::apply_one_type(&agent, probe, &pod, &other);
    Pod::nft(&pod.ns, NFT_TRAFFIC);
    let mut server = pod.spawn(&support::tcp_server(7000, 3, 100000));
    support::read_ready(&mut server);
    pod.peer_run(&support::tcp_clients(&pod.ip4, 7000, 3, 200000));
    let _ = server.wait();
    pod.run(&traffic_client(&pod, 20));
    let mut last = String::new();
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(200));
        let fams = agent.render();
        let oracle = nft_traffic(&pod.ns);
        let mut diffs = Vec::new();
        for ((dir, proto), (packets, bytes)) in &oracle {
            let want = [("direction", dir.as_str()), ("protocol", proto.as_str())];
            let got_b = counter(&fams, "netprobe_traffic_bytes_total", &want).unwrap_or(0.0) as u64;
            let got_p = counter(&fams, "netprobe_traffic_packets_total", &want).unwrap_or(0.0) as u64;
            if (got_p, got_b) != (*packets, *bytes) {
                diffs.push(format!(
                    "{dir} {proto}: netprobe {got_p} packets {got_b} B, nft {packets} packets {bytes} B"
                ));
            }
        }
        if !diffs.is_empty() {
            last = diffs.join("; ");
            continue;
        }
        let series = support::counter_series(&fams, "netprobe_traffic_bytes_total");
        for (l, v) in &series {
            let get = |k: &str| l.get(k).map(String::as_str).unwrap_or("");
            println!(
                "  bytes {} {} kind={} zone={} class={} role={} port={} : {v}",
                get("direction"),
                get("protocol"),
                get("peer_kind"),
                get("peer_zone"),
                get("peer_class"),
                get("role"),
                get("port")
            );
        }
        let find = |want: &[(&str, &str)]| {
            series
                .iter()
                .filter(|(l, _)| want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
                .count()
        };
        for (role, port, proto) in [
            ("client", "5001", "tcp"),
            ("client", "5002", "udp"),
            ("server", "7000", "tcp"),
        ] {
            for dir in ["tx", "rx"] {
                let base = [("direction", dir), ("protocol", proto), ("role", role), ("port", port)];
                let to_pod = [base.as_slice(), &[("peer_kind", "pod"), ("peer_zone", "z2")]].concat();
                assert_eq!(find(&to_pod), 1, "{dir} {proto} {role} {port} towards the pod on n2");
                if role == "client" {
                    let to_class = [base.as_slice(), &[("peer_class", "payments-vpc")]].concat();
                    assert_eq!(find(&to_class), 1, "{dir} {proto} {role} {port} towards payments-vpc");
                }
            }
        }
        for (l, _) in &series {
            assert!(
                matches!(l.get("port").map(String::as_str), Some("5001" | "5002" | "7000")),
                "a series with a port that is no server's: {l:?}"
            );
        }
        return;
    }
    panic!("traffic by peer does not sum to netfilter's counters: {last}");
}
