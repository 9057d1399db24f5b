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
    let mut selected = Pod::new(Driver::Systemd);
    let mut unselected = Pod::new(Driver::KindNested);
    for p in [&mut selected, &mut unselected] {
        p.peer_spawn(&traffic_peer());
    }
    let report = support::apply_one_type(&agent, Probe::new(ProbeType::Traffic), &selected, &unselected);
    assert_eq!(
        report.attached.get(&ProbeType::Traffic).map(Vec::len),
        Some(2),
        "{report:?}"
    );
    for p in [&selected, &unselected] {
        Pod::nft(&p.ns, NFT_TRAFFIC);
    }
    for p in [&selected, &unselected] {
        p.run(&traffic_client(p, 50));
    }
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
