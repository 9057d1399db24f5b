//! What probes cost: kernel ns per event of every program (bpf_stats), TCP
//! throughput and connection rate with and without probes (interleaved A/B),
//! and the agent's footprint at 250 pods. Prints figures; asserts nothing
//! about speed (a slow machine is not a failure). Run with `make bench`.

#[path = "../../tests/support/mod.rs"]
mod support;

mod footprint;
mod measure;
mod references;

use measure::{ab_switch, agent_run_time, median, program_share};
use references::{Bpftrace, References};

use std::collections::BTreeMap;
use std::time::Duration;

use netprobe_agent::agent::Agent;
use netprobe_agent::pipeline::desired::{Desired, Owner, Target};
use netprobe_api::{Probe, ProbeType};
use support::{Driver, Pod, kernel_available, sh};

/// The pod plus `extra` registered pods that never see traffic (the filter
/// map holding 1 or 1,000 pods).
fn desired(types: &[ProbeType], pod: &Target, extra: usize) -> Desired {
    desired_probes(probes_of(types), pod, extra)
}

/// One probe of each type, with its defaults.
fn probes_of(types: &[ProbeType]) -> Vec<Probe> {
    types.iter().map(|t| Probe::new(*t)).collect()
}

/// The types #20's bpftrace script covers (references.rs): like for like
/// with it, per event and per connection.
const SCRIPT_TYPES: [ProbeType; 4] = [
    ProbeType::TcpRetransmits,
    ProbeType::TcpResets,
    ProbeType::TcpConnectLatency,
    ProbeType::PacketDrops,
];

/// Every type, those that have them with peer classes (#17): what a pod
/// whose probes ask for peers costs per event.
fn with_peers() -> Vec<Probe> {
    use netprobe_api::probes::peers::{PeerLabel, PeersOptions};
    let peers = || {
        Some(PeersOptions {
            labels: Some(vec![
                PeerLabel::PeerKind,
                PeerLabel::PeerZone,
                PeerLabel::Role,
                PeerLabel::Port,
            ]),
            classes: Vec::new(),
        })
    };
    ProbeType::BUILT_IN
        .iter()
        .map(|t| {
            let mut p = Probe::new(*t);
            match t {
                ProbeType::TcpRetransmits => {
                    p.tcp_retransmits = Some(netprobe_api::TcpRetransmitsOptions {
                        peers: peers(),
                        peer_labels: None,
                    })
                }
                ProbeType::TcpResets => {
                    p.tcp_resets = Some(netprobe_api::probes::tcp_resets::TcpResetsOptions { peers: peers() })
                }
                ProbeType::TcpConnectLatency => {
                    p.tcp_connect_latency = Some(netprobe_api::probes::tcp_connect_latency::TcpConnectLatencyOptions {
                        histogram: Default::default(),
                        peers: peers(),
                    })
                }
                ProbeType::Traffic => {
                    p.traffic = Some(netprobe_api::probes::traffic::TrafficOptions { peers: peers() })
                }
                _ => {}
            }
            p
        })
        .collect()
}

fn desired_probes(probes: Vec<Probe>, pod: &Target, extra: usize) -> Desired {
    let fakes: Vec<Target> = (0..extra)
        .map(|i| Target {
            key: format!("fake-{i}"),
            owner: Owner::Pod {
                namespace: "bench".into(),
                pod: format!("fake-{i}"),
                workload: None,
            },
            cgroup_id: (1 << 40) + i as u64,
            netns: Some(0x7000_0000 + i as u32),
        })
        .collect();
    let mut selected = vec![pod.clone()];
    selected.extend(fakes);
    support::desired_of(support::plan_in("bench", "bench", probes), &selected, &[])
}

fn workloads(pod: &Pod) -> Vec<(&'static str, String)> {
    let peer = &pod.peer_ip4;
    vec![
        (
            "retransmits",
            format!(
                "import socket\nfor _ in range(2):\n    s = socket.socket(); s.connect(('{peer}', 5001))\n    for _ in range(64):\n        s.sendall(b'x' * 65536)\n    s.shutdown(socket.SHUT_WR)\n    while s.recv(65536):\n        pass\n    s.close()\n"
            ),
        ),
        (
            "resets+connects",
            format!(
                "import socket\nfor _ in range(300):\n    for port in (5002, 5999):\n        s = socket.socket()\n        try:\n            s.connect(('{peer}', port))\n        except OSError:\n            pass\n        s.close()\n"
            ),
        ),
        (
            "drops",
            format!(
                "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(3000):\n    try:\n        s.sendto(b'x', ('{peer}', 9998))\n    except OSError:\n        pass\n"
            ),
        ),
    ]
}

/// The tracepoint a program of ours runs on (for its floor).
fn tracepoint_of(program: &str) -> Option<&'static str> {
    use netprobe_ebpf::programs::*;
    Some(match program {
        p if p == RETRANSMIT_SKB || p == RETRANSMIT_SKB_V1 => "tcp_retransmit_skb",
        p if p == SEND_RESET => "tcp_send_reset",
        p if p == RECEIVE_RESET => "tcp_receive_reset",
        p if p == SOCK_STATE => "inet_sock_set_state",
        p if p == KFREE_SKB || p == KFREE_SKB_V1 => "kfree_skb",
        p if p == SKB_EGRESS => "cgroup_skb/egress",
        p if p == SKB_INGRESS => "cgroup_skb/ingress",
        _ => return None,
    })
}

fn kernel_cost(agent: &Agent, pod: &Pod, target: &Target) {
    println!("\n== 1. kernel cost per event (bpf_stats: run_time_ns / run_cnt, median of 5 passes) ==");
    println!("floor = an empty program on the same tracepoint, same events, same passes");
    let mut refs: Option<References> = None;
    let mut bpftrace: Option<Option<Bpftrace>> = None;
    // (program or reference) -> (probe type, [median 1 pod, 1000 pods,
    // 1000 pods with peers, netprobe detached, the script's types at 1000 pods])
    let mut table: BTreeMap<String, (String, [f64; 5])> = BTreeMap::new();
    // Column 3 detaches ours: bpftrace then runs first on every hook and
    // pays the cold socket and cgroup misses itself, as ours do in the
    // other columns, so "netprobe at 1000 pods" against it is like for like.
    // Column 4 attaches only the types the script does: on the state-change
    // hook, every type also runs TcpRtt's marking, which the script lacks.
    for (col, extra, probes) in [
        (0, 0usize, Some(probes_of(&ProbeType::BUILT_IN))),
        (1, 999, Some(probes_of(&ProbeType::BUILT_IN))),
        (2, 999, Some(with_peers())),
        (3, 0, None),
        (4, 999, Some(probes_of(&SCRIPT_TYPES))),
    ] {
        let desired = match probes {
            None => Desired::default(),
            Some(probes) => desired_probes(probes, target, extra),
        };
        agent.set_desired(desired).expect("apply");
        // After ours: programs on one tracepoint run in attach order, and
        // the first to touch a cold socket or cgroup pays the cache misses.
        let refs = &*refs.get_or_insert_with(|| References::attach(&pod.kubepods_cgroup()));
        let bpftrace = &*bpftrace.get_or_insert_with(|| {
            let b = Bpftrace::start();
            if b.is_none() {
                println!("(bpftrace not found: Debian's bpftrace is the #20 reference)");
            }
            b
        });
        let mut samples: BTreeMap<String, (String, Vec<f64>)> = BTreeMap::new();
        let ours = || -> Vec<(String, String, u64, u64)> {
            agent
                .program_stats()
                .into_iter()
                .map(|s| (s.program.to_string(), s.probe.to_string(), s.run_time_ns, s.run_count))
                .chain(refs.stats().into_iter().map(|(l, t, c)| (l, "reference".into(), t, c)))
                .chain(
                    bpftrace
                        .iter()
                        .flat_map(Bpftrace::stats)
                        .map(|(l, t, c)| (l, "bpftrace".into(), t, c)),
                )
                .collect()
        };
        for _ in 0..5 {
            let before: BTreeMap<String, (u64, u64)> = ours().into_iter().map(|(n, _, t, c)| (n, (t, c))).collect();
            for (_, w) in workloads(pod) {
                pod.run(&w);
            }
            if let Some(s) = agent.rtt_sampler() {
                let _ = s.run();
            }
            for (name, probe, t, c) in ours() {
                let Some((t0, c0)) = before.get(&name) else { continue };
                let runs = c.saturating_sub(*c0);
                if runs > 0 {
                    let ns = t.saturating_sub(*t0) as f64 / runs as f64;
                    samples.entry(name).or_insert_with(|| (probe, Vec::new())).1.push(ns);
                }
            }
        }
        for (name, (probe, v)) in samples {
            table.entry(name).or_insert((probe, [f64::NAN; 5])).1[col] = median(v);
        }
    }
    agent.set_desired(Desired::default()).expect("detach");
    println!(
        "{:<34} {:>18} {:>12} {:>15} {:>10} {:>22} {:>16} {:>16} {:>22} {:>22}",
        "program",
        "type",
        "1 pod ns/ev",
        "1000 pods ns/ev",
        "floor ns",
        "above floor (1000 pods)",
        "with peers ns/ev",
        "netprobe detached",
        "script's types ns/ev",
        "above its floor"
    );
    // The floor of a hook in one column (its passes): the empty program's.
    let floor = |tp: &str, col: usize| table.get(&format!("ref: empty on {tp}")).map(|(_, v)| v[col]);
    for (name, (probe, [a, b, p, alone, like])) in &table {
        let hook = tracepoint_of(name)
            .or_else(|| name.strip_prefix("ref: bpftrace on "))
            .or_else(|| name.starts_with("ref: per-CPU").then_some("kfree_skb"));
        let above = |col: usize, v: f64| match hook.and_then(|h| floor(h, col)) {
            Some(f) => format!("{:.1}", v - f),
            None => "-".into(),
        };
        let f_s = hook.and_then(|h| floor(h, 1)).map_or("-".into(), |f| format!("{f:.1}"));
        let (above_b, above_like) = (above(1, *b), above(4, *like));
        println!(
            "{name:<34} {probe:>18} {a:>12.1} {b:>15.1} {f_s:>10} {above_b:>22} {p:>16.1} {alone:>16.1} {like:>22.1} {above_like:>22}"
        );
    }
}

/// iperf3 in the pod (its cgroup and netns, as `pod.run` places it): only
/// there do Traffic's and Dns's `cgroup_skb` programs, attached to the pods
/// cgroup, see its packets. Until 2026-12-03 it ran in the pod's netns alone,
/// outside any pod cgroup, so section 2 measured no pod's packets.
fn iperf(pod: &Pod) -> f64 {
    let out = pod.run(&format!(
        "import subprocess, sys\nr = subprocess.run(['iperf3', '-c', '{}', '-t', '3', '-J'], capture_output=True)\nsys.stdout.write(r.stdout.decode())\n",
        pod.peer_ip4
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 json");
    v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0)
}

/// Connection-rate windows: short and many. On this VM the rate of one
/// arm moves ±10–15% between half-second windows with nothing changed, so
/// a ratio to two digits needs many alternations, not long ones.
const CONN_WINDOW_S: f64 = 1.5;
const CONN_RUNS: usize = 15;

fn conn_rate(pod: &Pod) -> f64 {
    let out = pod.run(&format!(
        // SO_LINGER 0: no TIME_WAIT pile-up between runs (and a reset each).
        "import socket, struct, time\nn = 0\nend = time.monotonic() + {CONN_WINDOW_S}\nwhile time.monotonic() < end:\n    s = socket.socket(); s.connect(('{}', 5002))\n    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); s.close(); n += 1\nprint(n / {CONN_WINDOW_S})\n",
        pod.peer_ip4
    ));
    out.trim().parse().unwrap_or(0.0)
}

/// DNS queries per second: dnsperf in the pod (its cgroup and netns) for
/// 3 s against dnsmasq on the peer, which answers every name under `test.`
/// from its configuration: both in C, so neither bounds the rate the way a
/// Python client or server does, and the ratio shows what the programs add
/// to each query and response.
fn dns_rate(pod: &Pod, queries: &str) -> f64 {
    let out = pod.run(&format!(
        "import subprocess
r = subprocess.run(['dnsperf', '-s', '{}', '-d', '{queries}', '-l', '3', '-c', '1', '-q', '64'],          capture_output=True, text=True)
print(r.stdout)
",
        pod.peer_ip4
    ));
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn ab(name: &str, agent: &Agent, target: &Target, types: &[ProbeType], f: impl Fn() -> f64) {
    ab_over(name, agent, target, &[], types, 7, f)
}

/// `types` against `base` (nothing attached when empty), ABBA, `per_arm`
/// runs on each side.
fn ab_over(
    name: &str,
    agent: &Agent,
    target: &Target,
    base: &[ProbeType],
    types: &[ProbeType],
    per_arm: usize,
    f: impl Fn() -> f64,
) {
    ab_switch(
        name,
        per_arm,
        |attached| {
            let d = match (attached, base.is_empty()) {
                (true, _) => desired(types, target, 0),
                (false, true) => Desired::default(),
                (false, false) => desired(base, target, 0),
            };
            agent.set_desired(d).expect("apply");
        },
        f,
    )
}

fn main() {
    if !kernel_available("bench") {
        return;
    }
    let stats_before = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default();
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
    let agent = Agent::new(false).expect("agent");
    let mut pod = Pod::new(Driver::Systemd);
    // As in a cluster (main.rs): Traffic's and Dns's programs on the
    // kubelet's pods cgroup; the peer's processes are outside it.
    agent.set_skb_cgroup(pod.kubepods_cgroup());
    pod.peer_spawn(&support::servers(&[
        (5001, support::Serve::Sink),
        (5002, support::Serve::AcceptClose),
    ]));
    Pod::nft(
        &pod.peer_ns,
        "table inet nptest {\n chain input {\n type filter hook input priority 0;\n tcp dport 5001 numgen inc mod 50 == 0 drop\n }\n}",
    );
    Pod::nft(
        &pod.ns,
        "table inet nptest2 {\n chain output {\n type filter hook output priority 0;\n udp dport 9998 drop\n }\n}",
    );
    let target = pod.target("bench", "pod");
    // NETPROBE_BENCH_ONLY=kernel|throughput|dns|conn|footprint (or several, comma-separated): those sections only.
    let only = std::env::var("NETPROBE_BENCH_ONLY").unwrap_or_default();
    let want = |section: &str| only.is_empty() || only.split(',').any(|s| s == section);
    if want("kernel") {
        kernel_cost(&agent, &pod, &target);
    }
    // bpf_stats adds two clock reads to every program run: measure the
    // A/B ratios as users run, with it off.
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");

    if want("throughput") {
        println!("\n== 2. TCP bulk throughput over veth, iperf3, every probe type vs none, ABBA order, 7 runs each ==");
        sh(&format!("ip netns exec {} nft delete table inet nptest", pod.peer_ns));
        let mut server = std::process::Command::new("ip")
            .args(["netns", "exec", &pod.peer_ns, "iperf3", "-s"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("iperf3 server");
        std::thread::sleep(Duration::from_millis(500));
        ab("throughput (bits/s)", &agent, &target, &ProbeType::BUILT_IN, || {
            iperf(&pod)
        });
        for (name, types) in [
            ("throughput, every type", &ProbeType::BUILT_IN[..]),
            ("throughput, Traffic only", &[ProbeType::Traffic][..]),
        ] {
            agent.set_desired(desired(types, &target, 0)).expect("apply");
            program_share(
                name,
                "MB",
                3,
                || agent_run_time(&agent),
                || iperf(&pod) * 3.0 / 8.0 / 1e6,
            );
            agent.set_desired(Desired::default()).expect("detach");
        }
        // Traffic runs per packet: its own ratio (target ≥ 0.97).
        ab(
            "throughput (bits/s), Traffic only",
            &agent,
            &target,
            &[ProbeType::Traffic],
            || iperf(&pod),
        );
        let _ = server.kill();
        let _ = server.wait();
    }
    if want("dns") {
        println!(
            "\n== 2b. DNS queries per second over UDP, dnsperf against dnsmasq, Dns vs none, ABBA order, 7 runs each =="
        );
        let queries = std::env::temp_dir().join(format!("netprobe-dnsperf-{}", std::process::id()));
        std::fs::write(&queries, "a.test A\nb.test AAAA\n").expect("dnsperf queries");
        let mut dnsmasq = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &pod.peer_ns,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
            ])
            .args([
                "--bind-interfaces",
                "--port=53",
                "--cache-size=0",
                "--user=root",
                "--pid-file=",
            ])
            .arg(format!("--listen-address={}", pod.peer_ip4))
            .args(["--address=/test/192.0.2.1", "--address=/test/2001:db8::1"])
            .spawn()
            .expect("dnsmasq (Debian: dnsmasq-base)");
        std::thread::sleep(Duration::from_millis(500));
        let q = queries.display().to_string();
        ab("DNS queries/s, Dns only", &agent, &target, &[ProbeType::Dns], || {
            dns_rate(&pod, &q)
        });
        // What Dns itself adds where the cgroup_skb programs already run.
        ab_over(
            "DNS queries/s, Traffic+Dns vs Traffic",
            &agent,
            &target,
            &[ProbeType::Traffic],
            &[ProbeType::Traffic, ProbeType::Dns],
            7,
            || dns_rate(&pod, &q),
        );
        ab(
            "DNS queries/s, Traffic only (the cgroup_skb programs' share)",
            &agent,
            &target,
            &[ProbeType::Traffic],
            || dns_rate(&pod, &q),
        );
        let _ = dnsmasq.kill();
        let _ = dnsmasq.wait();
        let _ = std::fs::remove_file(&queries);
    }

    // `NETPROBE_BENCH_ALONE=TcpRtt,...`: section 3 runs only these types'
    // own A/B arms (a quick check of one type's change).
    let alone = std::env::var("NETPROBE_BENCH_ALONE").unwrap_or_default();
    let conn = |name: &str, types: &[ProbeType]| {
        ab_over(name, &agent, &target, &[], types, CONN_RUNS, || conn_rate(&pod));
    };
    if want("conn") && !alone.is_empty() {
        println!(
            "\n== 3. short-lived connections per second, ABBA order, {CONN_RUNS} runs of {CONN_WINDOW_S} s each side: {alone} alone =="
        );
        for t in ProbeType::BUILT_IN {
            if alone.split(',').any(|a| a == t.to_string()) {
                conn(&format!("   connections/s, {t} only"), &[t]);
            }
        }
    } else if want("conn") {
        println!(
            "\n== 3. short-lived connections per second, ABBA order, {CONN_RUNS} runs of {CONN_WINDOW_S} s each side =="
        );
        conn("connections/s, every type", &ProbeType::BUILT_IN);
        // Where a connection's CPU goes, from the same windows (the ratios
        // above move with the machine between windows; this does not).
        let conns = || conn_rate(&pod) * CONN_WINDOW_S;
        let share_of = |name: &str, types: &[ProbeType]| {
            agent.set_desired(desired(types, &target, 0)).expect("apply");
            program_share(name, "connection", 5, || agent_run_time(&agent), conns);
            agent.set_desired(Desired::default()).expect("detach");
        };
        share_of("   every type", &ProbeType::BUILT_IN);
        // Like for like with the bpftrace script below: the types it does.
        share_of(
            "   the bpftrace script's types (TcpRetransmits, TcpResets, TcpConnectLatency, PacketDrops)",
            &SCRIPT_TYPES,
        );
        for t in ProbeType::BUILT_IN {
            share_of(&format!("   {t} only"), &[t]);
        }
        {
            let refs = References::attach_empty(&pod.kubepods_cgroup());
            program_share(
                "   empty programs on every hook",
                "connection",
                5,
                || refs.stats().iter().map(|(_, t, _)| t).sum(),
                conns,
            );
        }
        if let Some(b) = Bpftrace::start() {
            program_share(
                "   the bpftrace equivalent",
                "connection",
                5,
                || b.stats().iter().map(|(_, t, _)| t).sum(),
                conns,
            );
        }
        conn(
            "connections/s, TcpConnectLatency+TcpResets+TcpRtt",
            &[ProbeType::TcpConnectLatency, ProbeType::TcpResets, ProbeType::TcpRtt],
        );
        // The references on the same workload: what any program on these
        // hooks costs a connection (empty programs on every tracepoint and
        // cgroup_skb hook the types use), and the bpftrace equivalent.
        let mut empty: Option<References> = None;
        ab_switch(
            "connections/s, empty programs on every hook",
            CONN_RUNS,
            |on| empty = on.then(|| References::attach_empty(&pod.kubepods_cgroup())),
            || conn_rate(&pod),
        );
        let mut bpftrace: Option<Bpftrace> = None;
        if Bpftrace::start().is_some() {
            ab_switch(
                "connections/s, the bpftrace equivalent",
                CONN_RUNS,
                |on| bpftrace = if on { Bpftrace::start() } else { None },
                || conn_rate(&pod),
            );
        }
        println!("   each type alone (where the cost comes from):");
        for t in ProbeType::BUILT_IN {
            conn(&format!("   connections/s, {t} only"), &[t]);
        }
    }
    drop(pod);
    drop(agent);
    if want("footprint") {
        footprint::footprint();
    }
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", stats_before.trim());
}
