//! Kernel tier, the agent as a process and what it reads of itself: nothing
//! stays in the kernel after it stops (even on SIGKILL), its exposition
//! passes promtool, the capabilities it needs, and its recursion-miss
//! figure is the kernel's. Same rules as `kernel.rs`.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use netprobe_agent::agent::Agent;
use netprobe_api::{Probe, ProbeType};
use support::{Driver, Pod, kernel_available, serial};

/// The probe types whose programs are tracing programs (no cgroup_skb).
const TRACING_TYPES: [ProbeType; 5] = [
    ProbeType::TcpRetransmits,
    ProbeType::TcpResets,
    ProbeType::TcpConnectLatency,
    ProbeType::TcpRtt,
    ProbeType::PacketDrops,
];

fn np_programs() -> BTreeSet<u64> {
    support::np_programs().into_keys().collect()
}

#[test]
fn nothing_remains_in_the_kernel_after_stop_or_sigkill() {
    if !kernel_available("cleanup") {
        return;
    }
    let _s = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.yaml"),
        support::standalone_manifest("x", &TRACING_TYPES, ""),
    )
    .expect("write manifest");
    // A user's program too (a Program probe, its object by path).
    std::fs::write(
        dir.path().join("program.yaml"),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/samples/programs/tcp-aborts.yaml"
        ))
        .expect("sample")
        .replace("/usr/share/netprobe/programs", netprobe_ebpf::sample_programs::DIR),
    )
    .expect("write manifest");
    let user_programs = || -> BTreeSet<u64> {
        let out = support::sh("bpftool -j prog show");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == "tcp_aborts")
            .filter_map(|p| p["id"].as_u64())
            .collect()
    };
    for signal in ["TERM", "KILL"] {
        let before = np_programs();
        let users_before = user_programs();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_netprobe-agent"))
            .args([
                "--standalone",
                &dir.path().display().to_string(),
                "--metrics-addr",
                "127.0.0.1:0",
                "--rescan-interval",
                "0.2",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start agent");
        // Deadlines for a hung agent, not a slow one: a debug agent under
        // TCG (the kernel matrix) takes many seconds to load and attach.
        let mut ours = BTreeSet::new();
        for _ in 0..1200 {
            ours = np_programs().difference(&before).copied().collect();
            if ours.len() >= 7 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(ours.len() >= 7, "the agent attached every program: {ours:?}");
        let mut users = BTreeSet::new();
        for _ in 0..1200 {
            users = user_programs().difference(&users_before).copied().collect();
            if !users.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!users.is_empty(), "the agent loaded the user's program");
        ours.extend(users);
        support::sh(&format!("kill -{signal} {}", child.id()));
        let _ = child.wait();
        let mut left = BTreeSet::new();
        for _ in 0..50 {
            left = np_programs()
                .union(&user_programs())
                .copied()
                .collect::<BTreeSet<u64>>()
                .intersection(&ours)
                .copied()
                .collect();
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "cleanup after SIG{signal}: {} programs attached, {} left",
            ours.len(),
            left.len()
        );
        assert!(left.is_empty(), "programs left after SIG{signal}: {left:?}");
    }
}

#[test]
fn exposition_with_every_probe_type_passes_promtool() {
    if !kernel_available("exposition") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let pod = Pod::new(Driver::Systemd);
    let probes = ProbeType::BUILT_IN.iter().map(|t| Probe::new(*t)).collect();
    // A user's program too (the sock-states sample: a counter and a
    // histogram decoded from its maps).
    let sample: netprobe_api::ClusterNetworkProbe = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/samples/programs/sock-states.yaml"
        ))
        .expect("sample")
        .replace("/usr/share/netprobe/programs", netprobe_ebpf::sample_programs::DIR),
    )
    .expect("sample parses");
    let program = support::plan_cluster("sock-states", &sample.spec.probe);
    let mut d = support::desired_of(support::plan_in("shop", "all", probes), &[pod.target("shop", "p")], &[]);
    d.plans.insert(
        program.source.key(),
        netprobe_agent::pipeline::desired::PlanTargets {
            plan: std::sync::Arc::new(program),
            targets: d.targets.keys().cloned().collect(),
        },
    );
    let report = agent.set_desired(d).expect("apply");
    assert!(report.programs.values().all(Result::is_ok), "{:?}", report.programs);
    pod.run(&format!(
        "import socket\nfor _ in range(3):\n    s = socket.socket()\n    try:\n        s.connect(('{}', 5994))\n    except OSError:\n        pass\n    s.close()\n",
        pod.peer_ip4
    ));
    // And one connection that is established (the histogram's observation).
    pod.run("import socket\nl = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\nc = socket.create_connection(l.getsockname()); c.close(); l.close()\n");
    let text = agent.exposition();
    assert!(text.contains("netprobe_tcp_resets_total"), "{text}");
    assert!(text.contains("netprobe_tcp_connect_failures_total"), "{text}");
    assert!(text.contains("app_tcp_state_transitions_total{"), "{text}");
    assert!(text.contains("app_tcp_connect_seconds_bucket{"), "{text}");
    netprobe_testutil::promtool_check("agent exposition", &text);
}

/// The agent's recursion-miss figure is the kernel's: a program that
/// re-enters itself (its bpf_printk fires the tracepoint it is attached to)
/// has one skipped run per trigger, and `bpf_sys::recursion_misses` reads
/// exactly that from the kernel.
#[test]
fn recursion_misses_are_read_from_the_kernel() {
    use aya::programs::BtfTracePoint;
    use std::os::fd::AsFd;

    if !kernel_available("recursion misses") {
        return;
    }
    let _s = serial();
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    // The test program loaded and attached on `tp`, in an object of its own
    // (a program loads for one tracepoint).
    let reenter_on = |tp: &str| {
        let mut ebpf = aya::EbpfLoader::new()
            .btf(Some(&btf))
            .load(netprobe_ebpf::TESTING_OBJECT)
            .expect("object loads");
        let p: &mut BtfTracePoint = ebpf
            .program_mut("np_test_reenter")
            .expect("test program")
            .try_into()
            .expect("tp_btf");
        p.load(tp, &btf).expect("load");
        p.attach().expect("attach");
        ebpf
    };
    let ebpf = reenter_on("bpf_trace_printk");
    let p: &BtfTracePoint = ebpf
        .program("np_test_reenter")
        .expect("test program")
        .try_into()
        .expect("tp_btf");
    let fd = p.fd().expect("fd").as_fd().try_clone_to_owned().expect("dup");
    let misses = || netprobe_agent::kernel::bpf_sys::recursion_misses(fd.as_fd()).expect("prog info");
    assert_eq!(misses(), 0, "nothing triggered it yet");
    // Trigger: another bpf_printk, from a second copy of the program on a
    // tracepoint the test hits (kfree_skb of a UDP drop).
    let _trigger = reenter_on("kfree_skb");
    let pod = Pod::new(Driver::Systemd);
    Pod::nft(
        &pod.ns,
        "table inet nptest2 {\n chain output {\n type filter hook output priority 0;\n udp dport 9998 drop\n }\n}",
    );
    pod.run(&format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(20):\n    try:\n        s.sendto(b'x', ('{}', 9998))\n    except OSError:\n        pass\n",
        pod.peer_ip4
    ));
    let n = misses();
    println!("recursion misses of the re-entering program: {n} (20 drops triggered it)");
    // At least one per drop; more when other packets on the node are freed
    // meanwhile, but not without bound (a misread field would be).
    assert!(
        (20..1000).contains(&n),
        "each trigger makes one nested run that the kernel skips: {n}"
    );
}

/// How an agent run under a reduced bounding set ended.
enum CapsRun {
    /// Its /metrics, read once `/readyz` said the first apply is done.
    Served(String),
    /// It exited before serving (stderr's tail).
    Exited(String),
    /// It neither served nor exited within the deadline (stderr's tail).
    Silent(String),
}

impl CapsRun {
    fn served(self, what: &str) -> String {
        match self {
            CapsRun::Served(m) => m,
            CapsRun::Exited(why) => panic!("{what}: the agent exited: {why}"),
            CapsRun::Silent(why) => panic!("{what}: {why}"),
        }
    }

    /// Whether the agent loaded no more than `most` programs: it exited,
    /// or it served with at most that many loaded. Silence is no answer.
    fn loaded_at_most(&self, most: f64) -> Result<bool, String> {
        match self {
            CapsRun::Served(m) => Ok(metric_value(m, "netprobe_agent_programs_loaded").unwrap_or(0.0) <= most),
            CapsRun::Exited(_) => Ok(true),
            CapsRun::Silent(why) => Err(why.clone()),
        }
    }
}

/// The agent starts in seconds on the host, but a debug build parsing the
/// kernel's BTF under TCG (the kernel matrix's VMs) has taken over 15 s:
/// the deadline is for a hung agent, not a slow one.
const CAPS_DEADLINE: Duration = Duration::from_secs(180);

/// The real agent, standalone with every probe type, under a capability
/// bounding set (`setpriv`, as a container's capabilities bound a root
/// process): what each capability the DaemonSet requests is for, measured.
fn agent_with_caps(caps: &str, manifests: &std::path::Path) -> CapsRun {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let stderr = tempfile::NamedTempFile::new().expect("stderr file");
    let mut child = std::process::Command::new("setpriv")
        .args(["--bounding-set", caps, "--"])
        .arg(env!("CARGO_BIN_EXE_netprobe-agent"))
        .args(["--standalone", &manifests.display().to_string()])
        .args(["--standalone-depth", "3", "--rescan-interval", "0.5"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(stderr.reopen().expect("stderr file"))
        .spawn()
        .expect("setpriv runs");
    let tail = || {
        let text = std::fs::read_to_string(stderr.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let start = std::time::Instant::now();
    let run = loop {
        std::thread::sleep(Duration::from_millis(250));
        if let Ok(Some(status)) = child.try_wait() {
            break CapsRun::Exited(format!("{status}: {}", tail()));
        }
        // Ready once the first apply is in the kernel (the manifest, the
        // cgroups and their namespaces as the first rescan found them):
        // its metrics are that apply's, not a start's still loading.
        if netprobe_testutil::http_get(addr, "/readyz").is_ok_and(|(code, _)| code == 200) {
            break match netprobe_testutil::http_get(addr, "/metrics") {
                Ok((200, m)) => CapsRun::Served(m),
                other => CapsRun::Silent(format!("stopped serving ({other:?}): {}", tail())),
            };
        }
        if start.elapsed() > CAPS_DEADLINE {
            break CapsRun::Silent(format!("no /metrics after {CAPS_DEADLINE:?}: {}", tail()));
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    run
}

fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Least privilege, measured: BPF and PERFMON load every tracing program;
/// NET_ADMIN is what the kernel asks to load the cgroup_skb programs of
/// Traffic and Dns; SYS_PTRACE is what lets the agent read the network namespace of
/// pod processes running as another user (socketless events are attributed
/// by namespace).
#[test]
fn the_agent_needs_bpf_perfmon_net_admin_and_sys_ptrace_and_nothing_else() {
    if !kernel_available("capabilities") {
        return;
    }
    let _s = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.yaml"),
        support::standalone_manifest("x", &ProbeType::BUILT_IN, ""),
    )
    .expect("write manifest");
    // A pod whose only process runs as nobody in the pod's namespace.
    let pod = Pod::new(Driver::Systemd);
    let mut nobody =
        pod.spawn("import os, time\nos.setgid(65534)\nos.setuid(65534)\nprint('ok', flush=True)\ntime.sleep(120)\n");
    support::read_ready(&mut nobody);

    let granted = agent_with_caps("-all,+bpf,+perfmon,+net_admin,+sys_ptrace", dir.path()).served("with all four");
    let loaded = metric_value(&granted, "netprobe_agent_programs_loaded").unwrap_or(0.0);
    assert!(
        !granted.contains("netprobe_agent_probe_unsupported{"),
        "every probe type loads with these four"
    );
    assert!(loaded >= 9.0, "programs loaded: {loaded}");
    let no_net_admin = agent_with_caps("-all,+bpf,+perfmon,+sys_ptrace", dir.path()).served("without NET_ADMIN");
    let unsupported: Vec<&str> = no_net_admin
        .lines()
        .filter(|l| l.starts_with("netprobe_agent_probe_unsupported{"))
        .collect();
    println!("capabilities: without NET_ADMIN: {unsupported:?}");
    assert_eq!(
        unsupported,
        vec![
            "netprobe_agent_probe_unsupported{type=\"Traffic\"} 1",
            "netprobe_agent_probe_unsupported{type=\"Dns\"} 1"
        ],
        "without NET_ADMIN only the cgroup_skb programs (Traffic, Dns) are refused"
    );
    let with_ptrace = metric_value(&granted, "netprobe_agent_map_entries{map=\"pod_by_netns\"}").unwrap_or(0.0);
    let no_ptrace = agent_with_caps("-all,+bpf,+perfmon,+net_admin", dir.path()).served("without SYS_PTRACE");
    let without_ptrace = metric_value(&no_ptrace, "netprobe_agent_map_entries{map=\"pod_by_netns\"}").unwrap_or(0.0);
    println!(
        "capabilities: BPF+PERFMON+NET_ADMIN+SYS_PTRACE: {loaded} programs, {with_ptrace} namespaces; without SYS_PTRACE: {without_ptrace} namespaces"
    );
    assert!(
        with_ptrace > without_ptrace,
        "without SYS_PTRACE the namespace of a pod process of another user is unknown"
    );
    let no_bpf = agent_with_caps("-all,+perfmon,+net_admin,+sys_ptrace", dir.path());
    assert_eq!(no_bpf.loaded_at_most(0.0), Ok(true), "nothing loads without BPF");
    let no_perfmon = agent_with_caps("-all,+bpf,+net_admin,+sys_ptrace", dir.path());
    assert_eq!(
        no_perfmon.loaded_at_most(loaded - 1.0),
        Ok(true),
        "tracing programs need PERFMON"
    );
    let _ = nobody.kill();
    let _ = nobody.wait();
}
