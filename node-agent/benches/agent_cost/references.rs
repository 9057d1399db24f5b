//! The reference programs `make bench` measures ours against on the same
//! events: empty programs on the same hooks (the floor), per-CPU array and
//! hash updates, and #20's bpftrace script.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Reference programs from the same object, attached beside ours for the
/// same workload passes: an empty program on every tracepoint we use (the
/// floor of a `tp_btf` program for exactly those events on this machine),
/// and on `kfree_skb` one that updates a per-CPU array and one that updates
/// a per-CPU hash (the usual reference points).
pub struct References {
    /// (label, tracepoint, object holding the program, program name)
    progs: Vec<(String, &'static str, aya::Ebpf, &'static str)>,
}

const REFERENCE_TRACEPOINTS: [&str; 5] = [
    "tcp_retransmit_skb",
    "tcp_send_reset",
    "tcp_receive_reset",
    "inet_sock_set_state",
    "kfree_skb",
];

impl References {
    /// `skb_cgroup`: where the agent's cgroup_skb programs are (the pods
    /// cgroup), for the empty cgroup_skb programs beside them.
    pub fn attach(skb_cgroup: &std::path::Path) -> Self {
        Self::attach_some(true, skb_cgroup)
    }

    /// Only the empty programs: a connection's floor.
    pub fn attach_empty(skb_cgroup: &std::path::Path) -> Self {
        Self::attach_some(false, skb_cgroup)
    }

    fn attach_some(with_map_updates: bool, skb_cgroup: &std::path::Path) -> Self {
        use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType};
        let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
        let mut progs = Vec::new();
        // Traffic's floor: empty cgroup_skb programs on the same cgroup.
        let dir = std::fs::File::open(skb_cgroup).expect("the pods cgroup");
        for (name, hook, kind) in [
            ("np_calib_skb_egress", "cgroup_skb/egress", CgroupSkbAttachType::Egress),
            (
                "np_calib_skb_ingress",
                "cgroup_skb/ingress",
                CgroupSkbAttachType::Ingress,
            ),
        ] {
            let mut ebpf = aya::EbpfLoader::new()
                .load(netprobe_ebpf::TESTING_OBJECT)
                .expect("object");
            let p: &mut CgroupSkb = ebpf.program_mut(name).expect(name).try_into().expect("cgroup_skb");
            p.load().expect("load reference program");
            p.attach(&dir, kind, CgroupAttachMode::Single)
                .expect("attach reference program");
            progs.push((format!("ref: empty on {hook}"), hook, ebpf, name));
        }
        for tp in REFERENCE_TRACEPOINTS {
            let names: &[&'static str] = if tp == "kfree_skb" && with_map_updates {
                &["np_calib_empty", "np_calib_map", "np_calib_hash"]
            } else {
                &["np_calib_empty"]
            };
            for name in names {
                // One object per program: a program loads for one tracepoint.
                let mut ebpf = aya::EbpfLoader::new()
                    .btf(Some(&btf))
                    .load(netprobe_ebpf::TESTING_OBJECT)
                    .expect("object");
                let p: &mut BtfTracePoint = ebpf.program_mut(name).expect(name).try_into().expect("tp_btf");
                p.load(tp, &btf).expect("load reference program");
                p.attach().expect("attach reference program");
                let label = match *name {
                    "np_calib_map" => "ref: per-CPU array update".to_string(),
                    "np_calib_hash" => "ref: per-CPU hash update".to_string(),
                    _ => format!("ref: empty on {tp}"),
                };
                progs.push((label, tp, ebpf, *name));
            }
        }
        References { progs }
    }

    /// (label, run_time_ns, run_count) of every reference program.
    pub fn stats(&self) -> Vec<(String, u64, u64)> {
        self.progs
            .iter()
            .map(|(label, _, ebpf, name)| {
                let i = ebpf.program(name).expect(name).info().expect("info");
                (label.clone(), i.run_time().as_nanos() as u64, i.run_count())
            })
            .collect()
    }
}

/// The bpftrace equivalent (#20): per-cgroup counters on the same
/// tracepoints and a per-cgroup connect-latency histogram, run by Debian's
/// bpftrace beside ours for the same passes. Its programs are found by
/// the ids that appear when it starts; each is labelled by its tracepoint
/// (the two on `inet_sock_set_state` are summed: both run on each event).
pub struct Bpftrace {
    child: std::process::Child,
    ids: Vec<(u32, String)>,
}

const BPFTRACE_SCRIPT: &str = r#"
tracepoint:sock:inet_sock_set_state /args->newstate == 2/ { @start[args->skaddr] = nsecs; }
tracepoint:sock:inet_sock_set_state /args->oldstate == 2 && @start[args->skaddr]/ { @connect[cgroup] = hist(nsecs - @start[args->skaddr]); delete(@start[args->skaddr]); }
tracepoint:tcp:tcp_retransmit_skb { @retrans[cgroup] = count(); }
tracepoint:tcp:tcp_send_reset { @rst_sent[cgroup] = count(); }
tracepoint:tcp:tcp_receive_reset { @rst_recv[cgroup] = count(); }
tracepoint:skb:kfree_skb { @drops[cgroup, args->reason] = count(); }
"#;

impl Bpftrace {
    pub fn start() -> Option<Self> {
        let ids = || -> std::collections::BTreeSet<u32> {
            aya::programs::loaded_programs()
                .filter_map(Result::ok)
                .map(|p| p.id())
                .collect()
        };
        let before = ids();
        let child = std::process::Command::new("bpftrace")
            .args(["-e", BPFTRACE_SCRIPT])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let started = Instant::now();
        let mut ids_new = Vec::new();
        while started.elapsed() < Duration::from_secs(20) && ids_new.len() < 6 {
            std::thread::sleep(Duration::from_millis(200));
            ids_new = aya::programs::loaded_programs()
                .filter_map(Result::ok)
                .filter(|p| !before.contains(&p.id()))
                .filter_map(|p| {
                    let name = p.name_as_str()?.to_string();
                    let tp = REFERENCE_TRACEPOINTS.iter().find(|t| t.starts_with(name.as_str()))?;
                    Some((p.id(), format!("ref: bpftrace on {tp}")))
                })
                .collect();
        }
        Some(Bpftrace { child, ids: ids_new })
    }

    /// (label, run_time_ns, run_count): per tracepoint, run time summed
    /// over its programs, runs of one of them.
    pub fn stats(&self) -> Vec<(String, u64, u64)> {
        let mut by: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for p in aya::programs::loaded_programs().filter_map(Result::ok) {
            if let Some((_, label)) = self.ids.iter().find(|(id, _)| *id == p.id()) {
                let e = by.entry(label.clone()).or_default();
                e.0 += p.run_time().as_nanos() as u64;
                e.1 = e.1.max(p.run_count());
            }
        }
        by.into_iter().map(|(l, (t, c))| (l, t, c)).collect()
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
