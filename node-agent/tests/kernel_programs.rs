//! Kernel tier, user programs: the samples of `config/samples/programs`
//! (their C, compiled by the build against `ebpf/include/netprobe.h`, and
//! their manifests) loaded through the `Program` type as a user ships them,
//! counted against the kernel's own counters in the pod's namespace; the
//! other helpers and decoders in a program built here (raw_tp, tracepoint,
//! cgroup_skb, kfree_skb by kernel enum, an array map); a sample run from
//! its manifest in standalone mode; an object whose digest differs, a
//! program the verifier refuses, a pinned map, a section or size the
//! agent's limits refuse each fail only their own probe. Every kernel of
//! the matrix runs it.

mod support;

use std::path::Path;
use std::time::Duration;

use netprobe_agent::agent::Agent;
use netprobe_agent::kernel::programs::{ProgramLimits, SectionKind};
use netprobe_agent::pipeline::desired::Desired;
use netprobe_agent::pipeline::desired::Target;
use netprobe_api::probes::program::ObjectSource;
use netprobe_api::{ClusterNetworkProbe, PlannedProbe, ProbePlan};
use netprobe_ebpf::sample_programs;
use prometheus::proto::MetricFamily;
use sha2::{Digest, Sha256};
use support::{Driver, Pod, counter_series, histogram, kernel_available, serial};

/// The plan of sample manifest `file`, its object at the build's copy, with
/// the object's real digest (as a user pins it) or `sha256`.
fn sample_plan(file: &str, object: &str, sha256: Option<String>) -> ProbePlan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/samples/programs")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("sample manifest");
    let p: ClusterNetworkProbe = serde_yaml::from_str(&text).expect("sample parses");
    let name = p.metadata.name.clone().expect("sample name");
    let mut plan = support::plan_cluster(&name, &p.spec.probe);
    let bytes = std::fs::read(Path::new(sample_programs::DIR).join(object)).expect("built sample object");
    let digest = hex(&Sha256::digest(&bytes));
    for probe in &mut plan.probes {
        if let PlannedProbe::Program(pp) = probe {
            pp.object = ObjectSource::Path {
                path: format!("{}/{object}", sample_programs::DIR),
            };
            pp.sha256 = Some(sha256.clone().unwrap_or_else(|| digest.clone()));
        }
    }
    plan
}

fn desired(plans: &[&ProbePlan], selected: &[Target], others: &[Target]) -> Desired {
    let mut d = Desired::default();
    for t in selected.iter().chain(others) {
        d.targets.insert(t.key.clone(), t.clone());
    }
    for p in plans {
        d.plans.insert(
            p.source.key(),
            netprobe_agent::pipeline::desired::PlanTargets {
                plan: std::sync::Arc::new((*p).clone()),
                targets: selected.iter().map(|t| t.key.clone()).collect(),
            },
        );
    }
    d
}

/// `n` connections from the pod to the peer's port 5001, each closed with
/// SO_LINGER 0: an abortive close, one RST from the pod's own socket.
fn aborts(n: usize, addr: &str) -> String {
    format!(
        r#"
import socket, struct
for _ in range({n}):
    s = socket.create_connection(("{addr}", 5001), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
"#
    )
}

/// A user's object built here as docs/programs.md says: `body` after the
/// includes, a license and a u32 → u64 hash map `m`. Objects are kept by
/// the digest of their source and the header under the target directory:
/// the kernel matrix's VMs read the tree the host run wrote, so clang runs
/// once per source, not once more per emulated kernel (where it is slow).
fn build_object(dir: &Path, name: &str, body: &str) -> String {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf/include");
    let source = format!(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_tracing.h>\n\
         #include <bpf/bpf_core_read.h>\n#include \"netprobe.h\"\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n\
         struct {{ __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64); __type(key, __u32); \
         __type(value, __u64); }} m SEC(\".maps\");\n{body}\n"
    );
    let header = std::fs::read(include.join("netprobe.h")).expect("read netprobe.h");
    let digest = hex(&Sha256::new().chain_update(&source).chain_update(&header).finalize());
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("user-objects");
    let cached = cache.join(format!("{name}-{}.bpf.o", &digest[..16]));
    if cached.exists() {
        return cached.display().to_string();
    }
    let src = dir.join(format!("{name}.bpf.c"));
    std::fs::write(&src, source).expect("write source");
    let obj = dir.join(format!("{name}.bpf.o"));
    let st = std::process::Command::new("clang")
        .args([
            "-target",
            "bpf",
            "-O2",
            "-g",
            "-D__TARGET_ARCH_x86",
            "-I/usr/include/x86_64-linux-gnu",
        ])
        .arg(format!("-I{}", include.display()))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("clang runs");
    assert!(st.success(), "{name} compiles");
    // Keep it for the next run when the tree is writable (a VM's is not).
    let tmp = cache.join(format!(".{name}-{}.{}", &digest[..16], std::process::id()));
    let kept = std::fs::create_dir_all(&cache).is_ok()
        && std::fs::copy(&obj, &tmp).is_ok()
        && std::fs::rename(&tmp, &cached).is_ok();
    if !kept {
        let _ = std::fs::remove_file(&tmp);
    }
    obj.display().to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn total(fams: &[MetricFamily], name: &str, pod: &str) -> u64 {
    counter_series(fams, name)
        .iter()
        .filter(|(l, _)| l.get("pod").map(String::as_str) == Some(pod))
        .map(|(_, v)| *v as u64)
        .sum()
}

#[test]
fn sample_programs_count_per_pod_like_the_kernel() {
    if !kernel_available("user programs") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let mut pod = Pod::new(Driver::Systemd);
    let mut other = Pod::new(Driver::Cgroupfs);
    pod.peer_spawn(&support::servers(&[(5001, support::Serve::Sink)]));
    other.peer_spawn(&support::servers(&[(5001, support::Serve::Sink)]));
    let aborts_plan = sample_plan("tcp-aborts.yaml", "tcp_aborts.bpf.o", None);
    let states_plan = sample_plan("sock-states.yaml", "sock_states.bpf.o", None);
    let me = pod.target("shop", "cache-0");
    let report = agent
        .set_desired(desired(
            &[&aborts_plan, &states_plan],
            std::slice::from_ref(&me),
            &[other.target("bank", "ledger-0")],
        ))
        .expect("apply");
    for plan in [&aborts_plan, &states_plan] {
        let state = report.programs.get(&plan.source.key());
        assert!(
            matches!(state, Some(Ok(p)) if !p.is_empty()),
            "{}: {state:?}",
            plan.source.key()
        );
    }
    let (rst0, opens0) = (pod.nstat("TcpOutRsts"), pod.nstat("TcpActiveOpens"));
    pod.run(&aborts(40, &pod.peer_ip4));
    // The pod the probes do not select aborts too: none of it may show.
    other.run(&aborts(25, &other.peer_ip4));
    let mut last = String::new();
    let mut fams = Vec::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        fams = agent.render();
        let rst = pod.nstat("TcpOutRsts") - rst0;
        let opens = pod.nstat("TcpActiveOpens") - opens0;
        let got_rst = total(&fams, "app_tcp_aborts_total", "cache-0");
        let syn_sent: u64 = counter_series(&fams, "app_tcp_state_transitions_total")
            .iter()
            .filter(|(l, _)| l.get("state").map(String::as_str) == Some("SYN_SENT"))
            .map(|(_, v)| *v as u64)
            .sum();
        last = format!("resets {got_rst} (kernel {rst}), SYN_SENT {syn_sent} (kernel active opens {opens})");
        if got_rst == rst && rst >= 40 && syn_sent == opens && opens >= 40 {
            last.clear();
            break;
        }
    }
    assert!(last.is_empty(), "user programs disagree with the kernel: {last}");
    println!("aborts: {:?}", counter_series(&fams, "app_tcp_aborts_total"));
    // By state through the static map: an abortive close sends its reset
    // after the socket moved to CLOSE, so every one of them is there.
    let by_state = counter_series(&fams, "app_tcp_aborts_total");
    let close: u64 = by_state
        .iter()
        .filter(|(l, _)| l.get("state").map(String::as_str) == Some("CLOSE"))
        .map(|(_, v)| *v as u64)
        .sum();
    assert_eq!(close, pod.nstat("TcpOutRsts") - rst0, "{by_state:?}");
    // Tenant isolation: the unselected pod has no series at all.
    for name in ["app_tcp_aborts_total", "app_tcp_state_transitions_total"] {
        assert!(
            counter_series(&fams, name)
                .iter()
                .all(|(l, _)| l.get("pod").is_none_or(|p| p != "ledger-0")
                    && l.get("workload").is_none_or(|w| w != "ledger-0")),
            "{name} shows a pod its probe does not select"
        );
    }
    // The connect histogram (granularity workload): one observation per
    // connect, in seconds, through the log2 buckets.
    let h = histogram(&fams, "app_tcp_connect_seconds", &[("workload", "cache-0")]).expect("connect histogram");
    assert_eq!(h.0, pod.nstat("TcpActiveOpens") - opens0, "{h:?}");
    assert!(h.1 > 0.0 && h.1 < 40.0, "{h:?}");
    // Log2 bounds in seconds: 2^i microseconds.
    assert_eq!(h.2.first().map(|b| b.0), Some(1e-6), "{h:?}");

    // Their kernel cost is the agent's own metric, named by probe and function.
    assert!(
        support::counter(
            &fams,
            "netprobe_agent_program_recursion_misses_total",
            &[
                ("program", "ClusterNetworkProbe/tcp-aborts/tcp_aborts"),
                ("type", "Program")
            ],
        )
        .is_some(),
        "user programs' kernel cost is exported"
    );
    // Hot reload: a changed spec loads the object again (new programs, the
    // old ones detached), and its counts start over.
    let before = support::programs_held_by(std::process::id());
    let mut changed = aborts_plan.clone();
    changed.source.generation = 2;
    if let Some(PlannedProbe::Program(pp)) = changed.probes.first_mut() {
        pp.metrics[0].help = "TCP resets, generation 2.".into();
    }
    agent
        .set_desired(desired(&[&changed, &states_plan], std::slice::from_ref(&me), &[]))
        .expect("apply");
    let reloaded = support::programs_held_by(std::process::id());
    assert_eq!(reloaded.len(), before.len(), "{before:?} → {reloaded:?}");
    assert_ne!(reloaded, before, "the changed probe's program is a new one");
    assert_eq!(total(&agent.render(), "app_tcp_aborts_total", "cache-0"), 0);

    // The probe deleted: its programs go and its series with it.
    let before = support::programs_held_by(std::process::id());
    agent
        .set_desired(desired(&[&states_plan], std::slice::from_ref(&me), &[]))
        .expect("apply");
    let after = support::programs_held_by(std::process::id());
    assert!(
        after.len() < before.len(),
        "tcp_aborts still held: {before:?} → {after:?}"
    );
    let fams = agent.render();
    assert!(counter_series(&fams, "app_tcp_aborts_total").is_empty());
    agent.set_desired(Desired::default()).expect("apply");
}

#[test]
fn a_bad_object_fails_only_its_own_probe() {
    if !kernel_available("user programs refused") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let pod = Pod::new(Driver::Systemd);
    let me = pod.target("shop", "cache-0");
    // A digest that is not the object's: refused, not loaded.
    let forged = sample_plan("tcp-aborts.yaml", "tcp_aborts.bpf.o", Some("ab".repeat(32)));
    // The verifier's refusal and a section the agent does not attach, in
    // objects built here as a user would.
    let dir = tempfile::tempdir().expect("tempdir");
    let build = |name: &str, body: &str| build_object(dir.path(), name, body);
    // Reads a map value without checking it for NULL: the verifier says no.
    let unchecked = build(
        "unchecked",
        "SEC(\"tp_btf/tcp_send_reset\") int BPF_PROG(bad, const void *sk) {\n\
         __u32 k = 0; __u64 *v = bpf_map_lookup_elem(&m, &k); *v += 1; return np_sock_pod(sk); }",
    );
    let kprobe = build(
        "kprobe",
        "SEC(\"kprobe/tcp_v4_connect\") int probe(void *ctx) { return 0; }",
    );
    let with = |name: &str, path: String| -> ProbePlan {
        let mut p = sample_plan("tcp-aborts.yaml", "tcp_aborts.bpf.o", None);
        p.source = netprobe_testutil::plans::source(None, name, name, 1);
        for probe in &mut p.probes {
            if let PlannedProbe::Program(pp) = probe {
                pp.object = ObjectSource::Path { path: path.clone() };
                pp.sha256 = None;
                pp.metrics[0].map = "m".into();
                pp.metrics[0].labels.truncate(1);
            }
        }
        p
    };
    // A pinned map would outlive the agent: refused before anything loads.
    let pinned = build(
        "pinned",
        "struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 8); __type(key, __u32); \
         __type(value, __u64); __uint(pinning, LIBBPF_PIN_BY_NAME); } np_test_pinned SEC(\".maps\");\n\
         SEC(\"tp_btf/tcp_send_reset\") int BPF_PROG(p, const void *sk) { __u32 k = 0; \
         bpf_map_lookup_elem(&np_test_pinned, &k); return np_sock_pod(sk); }",
    );
    let verifier = with("verifier", unchecked);
    let section = with("section", kprobe);
    let pinned = with("pinned", pinned);
    let good = sample_plan("sock-states.yaml", "sock_states.bpf.o", None);
    let report = agent
        .set_desired(desired(
            &[&forged, &verifier, &section, &pinned, &good],
            std::slice::from_ref(&me),
            &[],
        ))
        .expect("apply");
    let why = |p: &ProbePlan| match report.programs.get(&p.source.key()) {
        Some(Err(why)) => why.clone(),
        other => panic!("{}: expected a refusal, got {other:?}", p.source.key()),
    };
    let forged_why = why(&forged);
    assert!(
        forged_why.contains("SHA-256") && forged_why.contains("not loaded"),
        "{forged_why}"
    );
    let verifier_why = why(&verifier);
    assert!(verifier_why.contains("kernel refused program bad"), "{verifier_why}");
    println!("verifier: {verifier_why}");
    let section_why = why(&section);
    assert!(section_why.contains("kprobe/tcp_v4_connect"), "{section_why}");
    let pinned_why = why(&pinned);
    assert!(pinned_why.contains("np_test_pinned is pinned"), "{pinned_why}");
    assert!(!Path::new("/sys/fs/bpf/np_test_pinned").exists(), "nothing was pinned");
    // The good probe beside them runs.
    assert!(
        matches!(report.programs.get(&good.source.key()), Some(Ok(p)) if !p.is_empty()),
        "{:?}",
        report.programs
    );
    // The node's status for each: Failed with the reason, Running for the good one.
    let outcome = netprobe_agent::pipeline::selection::PlanOutcome {
        pods_matched: 1,
        ..Default::default()
    };
    let st = netprobe_agent::cluster::status::entry_for(&verifier, &outcome, &report, false);
    assert_eq!(st.phase, netprobe_api::NodePhase::Failed);
    assert_eq!(st.reason.as_deref(), Some("ProgramFailed"));
    let st = netprobe_agent::cluster::status::entry_for(&good, &outcome, &report, false);
    assert_eq!(st.phase, netprobe_api::NodePhase::Running, "{st:?}");
    assert!(st.programs.iter().any(|p| p == "sock_states"), "{st:?}");

    // The agent's limits: program types, map memory, programs at once.
    agent.set_desired(Desired::default()).expect("apply");
    agent.set_program_limits(ProgramLimits {
        max_programs: 1,
        max_map_bytes: 64 << 10,
        types: [SectionKind::TpBtf].into(),
    });
    let tcp_aborts = sample_plan("tcp-aborts.yaml", "tcp_aborts.bpf.o", None);
    let report = agent
        .set_desired(desired(&[&tcp_aborts, &good], std::slice::from_ref(&me), &[]))
        .expect("apply");
    let why = |p: &ProbePlan| format!("{:?}", report.programs.get(&p.source.key()));
    // 16384-entry per-CPU maps are far above 64 KiB.
    assert!(why(&good).contains("--program-map-memory"), "{}", why(&good));
    assert!(
        why(&tcp_aborts).contains("--program-map-memory"),
        "{}",
        why(&tcp_aborts)
    );
    agent.set_desired(Desired::default()).expect("apply");
    agent.set_program_limits(ProgramLimits {
        max_programs: 1,
        ..ProgramLimits::default()
    });
    let report = agent
        .set_desired(desired(&[&tcp_aborts, &good], std::slice::from_ref(&me), &[]))
        .expect("apply");
    let states: Vec<String> = [&good, &tcp_aborts].iter().map(|p| why_in(&report, p)).collect();
    assert!(
        states.iter().filter(|s| s.starts_with("Ok")).count() == 1
            && states.iter().any(|s| s.contains("--max-programs")),
        "{states:?}"
    );
    agent.set_desired(Desired::default()).expect("apply");
    agent.set_program_limits(ProgramLimits {
        types: [SectionKind::TpBtf].into(),
        ..ProgramLimits::default()
    });
    let raw = with(
        "raw",
        build(
            "raw",
            "SEC(\"raw_tp/inet_sock_set_state\") int BPF_PROG(r, const void *sk) { return np_sock_pod(sk) < 0; }",
        ),
    );
    let report = agent
        .set_desired(desired(&[&raw], std::slice::from_ref(&me), &[]))
        .expect("apply");
    let refused = why_in(&report, &raw);
    assert!(
        refused.contains("raw_tp") && refused.contains("--program-types"),
        "{refused}"
    );
    agent.set_desired(Desired::default()).expect("apply");
}

fn why_in(report: &netprobe_agent::kernel::manager::ApplyReport, p: &ProbePlan) -> String {
    format!(
        "{:?}",
        report
            .programs
            .get(&p.source.key())
            .cloned()
            .unwrap_or(Err("absent".into()))
    )
}

/// In a program built here: `np_current_pod` (a raw and a classic
/// tracepoint in the connecting task's context; also counted in an array
/// map by slot), `np_skb_pod` (a cgroup_skb program on the cgroup root) and
/// the `kernel_enum` decoder (kfree_skb by drop reason). SYN_SENT
/// transitions equal the pod's TcpActiveOpens, TCP and UDP packets sent
/// equal netfilter's counters on the pod's output hook, NETFILTER_DROP
/// equals an nft drop rule's counter.
#[test]
fn task_and_packet_helpers_attribute_like_the_kernel_counts() {
    if !kernel_available("user programs, task and packet helpers") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    let mut pod = Pod::new(Driver::Systemd);
    pod.peer_spawn(&support::traffic::traffic_peer());
    Pod::nft(&pod.ns, support::traffic::NFT_TRAFFIC);
    let dir = tempfile::tempdir().expect("tempdir");
    let object = build_object(
        dir.path(),
        "helpers",
        r#"
#include <bpf/bpf_endian.h>
struct key { __u32 pod; __u32 what; };
struct { __uint(type, BPF_MAP_TYPE_PERCPU_HASH); __uint(max_entries, 256);
         __type(key, struct key); __type(value, __u64); } counts SEC(".maps");
/* The same SYN_SENT count in an array indexed by the pod's slot. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, NP_MAX_TARGETS);
         __type(key, __u32); __type(value, __u64); } opens_by_slot SEC(".maps");

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(opens, const void *sk, int oldstate, int newstate)
{
	if (newstate != 2 /* TCP_SYN_SENT */)
		return 0;
	int pod = np_current_pod();
	if (pod < 0)
		return 0;
	struct key k = { .pod = pod, .what = 0 };
	np_counter_add(&counts, &k, 1);
	__u32 slot = pod;
	np_counter_add(&opens_by_slot, &slot, 1);
	return 0;
}

/* The same transitions through the classic tracepoint (its record's
 * fields by CO-RE). */
struct trace_event_raw_inet_sock_set_state { int oldstate; int newstate; } __attribute__((preserve_access_index));

SEC("tracepoint/sock/inet_sock_set_state")
int tp_opens(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->newstate != 2 /* TCP_SYN_SENT */)
		return 0;
	int pod = np_current_pod();
	if (pod < 0)
		return 0;
	struct key k = { .pod = pod, .what = 1 };
	np_counter_add(&counts, &k, 1);
	return 0;
}

/* Drops of the pod's own packets, by the kernel's drop reason. */
struct sk_buff { struct sock *sk; } __attribute__((preserve_access_index));
struct drop_key { __u32 pod; __u32 reason; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 256);
         __type(key, struct drop_key); __type(value, __u64); } drops SEC(".maps");

SEC("tp_btf/kfree_skb")
int BPF_PROG(dropped, struct sk_buff *skb, void *location, int reason)
{
	int pod = np_sock_pod(BPF_CORE_READ(skb, sk));
	if (pod < 0)
		return 0;
	struct drop_key k = { .pod = pod, .reason = reason };
	np_counter_add(&drops, &k, 1);
	return 0;
}

SEC("cgroup_skb/egress")
int sent(struct __sk_buff *skb)
{
	int pod = np_skb_pod(skb);
	if (pod < 0)
		return 1;
	__u8 proto = 0;
	if (skb->protocol == bpf_htons(0x0800))
		bpf_skb_load_bytes(skb, 9, &proto, 1);
	else if (skb->protocol == bpf_htons(0x86DD))
		bpf_skb_load_bytes(skb, 6, &proto, 1);
	if (proto != 6 && proto != 17)
		return 1;
	struct key k = { .pod = pod, .what = proto };
	np_counter_add(&counts, &k, 1);
	return 1;
}
"#,
    );
    let mut plan = sample_plan("tcp-aborts.yaml", "tcp_aborts.bpf.o", None);
    for probe in &mut plan.probes {
        if let PlannedProbe::Program(pp) = probe {
            pp.object = ObjectSource::Path { path: object.clone() };
            pp.sha256 = None;
            let m = &mut pp.metrics[0];
            m.name = "app_events_total".into();
            m.map = "counts".into();
            m.labels[1].name = "what".into();
            m.labels[1].static_map = Some(
                [
                    ("0", "syn_sent"),
                    ("1", "syn_sent_tp"),
                    ("6", "tcp_out"),
                    ("17", "udp_out"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            );
            let mut by_slot = pp.metrics[0].clone();
            by_slot.name = "app_opens_total".into();
            by_slot.map = "opens_by_slot".into();
            by_slot.labels.truncate(1);
            pp.metrics.push(by_slot);
            let mut drops = pp.metrics[0].clone();
            drops.name = "app_drops_total".into();
            drops.map = "drops".into();
            drops.labels[1] = netprobe_api::probes::program::ProgramLabel {
                kernel_enum: Some("skb_drop_reason".into()),
                ..netprobe_api::probes::program::ProgramLabel::new(
                    "reason",
                    4,
                    netprobe_api::probes::program::Decoder::KernelEnum,
                )
            };
            pp.metrics.push(drops);
        }
    }
    let report = agent
        .set_desired(desired(&[&plan], &[pod.target("shop", "web-0")], &[]))
        .expect("apply");
    let state = report.programs.get(&plan.source.key());
    assert!(matches!(state, Some(Ok(p)) if p.len() == 4), "{state:?}");
    let opens0 = pod.nstat("TcpActiveOpens");
    pod.run(&support::traffic::traffic_client(&pod, 20));
    // Every other datagram to port 5003 dropped on the pod's way out.
    Pod::nft(
        &pod.ns,
        "table inet nptest {\n chain out {\n type filter hook output priority 0;\n udp dport 5003 numgen inc mod 2 == 0 counter drop\n }\n}",
    );
    pod.run(&format!(
        "import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(30):\n    try:\n        u.sendto(b'x', ('{}', 5003))\n    except OSError:\n        pass\n",
        pod.peer_ip4
    ));
    let mut last = String::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let fams = agent.render();
        let got = |what: &str| {
            counter_series(&fams, "app_events_total")
                .iter()
                .filter(|(l, _)| {
                    l.get("what").map(String::as_str) == Some(what) && l.get("pod").map(String::as_str) == Some("web-0")
                })
                .map(|(_, v)| *v as u64)
                .sum::<u64>()
        };
        let nft = support::traffic::nft_traffic(&pod.ns);
        let tx = |p: &str| nft.get(&("tx".to_string(), p.to_string())).map_or(0, |c| c.0);
        let opens = pod.nstat("TcpActiveOpens") - opens0;
        last = format!(
            "SYN_SENT {} (kernel {opens}), TCP out {} (nft {}), UDP out {} (nft {})",
            got("syn_sent"),
            got("tcp_out"),
            tx("tcp"),
            got("udp_out"),
            tx("udp")
        );
        let in_array = total(&fams, "app_opens_total", "web-0");
        let nft_drops = Pod::nft_counter(&pod.ns);
        let drops = counter_series(&fams, "app_drops_total")
            .iter()
            .filter(|(l, _)| l.get("reason").map(String::as_str) == Some("NETFILTER_DROP"))
            .map(|(_, v)| *v as u64)
            .sum::<u64>();
        last.push_str(&format!(
            ", SYN_SENT in an array by slot {in_array}, NETFILTER_DROP {drops} (nft {nft_drops})"
        ));
        last.push_str(&format!(", SYN_SENT by the classic tracepoint {}", got("syn_sent_tp")));
        if got("syn_sent") == opens
            && got("syn_sent_tp") == opens
            && in_array == opens
            && drops == nft_drops
            && nft_drops > 0
            && opens > 0
            && got("tcp_out") == tx("tcp")
            && got("udp_out") == tx("udp")
            && tx("udp") > 0
        {
            println!("{last}");
            last.clear();
            break;
        }
    }
    assert!(last.is_empty(), "the helpers disagree with the kernel: {last}");
    agent.set_desired(Desired::default()).expect("apply");
}

/// Standalone mode end to end: the sample manifest read from disk (its
/// object by path), every cgroup a target; the pod's cgroup's series equal
/// its namespace's TcpOutRsts.
#[test]
fn a_sample_runs_in_standalone_mode_from_its_manifest() {
    if !kernel_available("user programs, standalone") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(true).expect("agent loads");
    let mut pod = Pod::new(Driver::Systemd);
    pod.peer_spawn(&support::servers(&[(5001, support::Serve::Sink)]));
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples/programs/tcp-aborts.yaml"),
    )
    .expect("sample")
    .replace("/usr/share/netprobe/programs", sample_programs::DIR);
    std::fs::write(dir.path().join("tcp-aborts.yaml"), manifest).expect("write manifest");
    let (plans, rejected) = netprobe_agent::standalone::load_plans(&[dir.path().to_path_buf()]).expect("manifests");
    assert!(rejected.is_empty(), "{rejected:?}");
    let mut targets = netprobe_agent::standalone::cgroup_targets(&pod.cgroup2, 3);
    netprobe_agent::standalone::assign_netns(&mut targets, Path::new("/proc"));
    let key = pod
        .pod_cgroup
        .strip_prefix(&pod.cgroup2)
        .expect("pod cgroup under the cgroup2 root")
        .display()
        .to_string();
    assert!(targets.contains_key(&key), "the pod's cgroup is a target");
    let report = agent
        .set_desired(netprobe_agent::standalone::desired(&plans, targets))
        .expect("apply");
    assert!(report.programs.values().all(Result::is_ok), "{:?}", report.programs);
    let rst0 = pod.nstat("TcpOutRsts");
    pod.run(&aborts(20, &pod.peer_ip4));
    let mut last = String::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let fams = agent.render();
        let rst = pod.nstat("TcpOutRsts") - rst0;
        let got: u64 = counter_series(&fams, "app_tcp_aborts_total")
            .iter()
            // The deepest target holding the socket: the pod's cgroup or
            // its container's, both targets here.
            .filter(|(l, _)| l.get("cgroup").is_some_and(|c| c.starts_with(&key)))
            .map(|(_, v)| *v as u64)
            .sum();
        last = format!("cgroup {key}: {got} aborts, kernel {rst}");
        if got == rst && rst >= 20 {
            println!("{last}");
            last.clear();
            break;
        }
    }
    assert!(last.is_empty(), "standalone: {last}");
    agent.set_desired(Desired::default()).expect("apply");
}
